"""SMTP listeners: aiosmtpd wired with mail2sms's envelope, limits, connection caps, TLS and AUTH rules.

Listeners are plain asyncio servers in the application's own loop (not aiosmtpd's threaded Controller), so the
dispatcher and the SMTP sessions share one loop and a SIGTERM can stop accepting before draining.

TLS and AUTH: `listen` entries offer STARTTLS when `tls_cert`/`tls_key` are set; `tls_listen` entries speak TLS
from the first byte (port 465 style). AUTH PLAIN and LOGIN are offered and accepted only on an encrypted
connection (`538 5.7.11` before), except on `listen` entries named in `auth_without_tls`, which config.py allows
only on loopback addresses. Never offered when there are no `[[users]]`. TLS 1.2 is the floor.

Each session binds a short `session` id into structlog's context, so every log line of a mail carries it (the
`queued` line adds the submission id). A mail whose DATA looks like SMTP smuggling is refused here, before the
handler parses anything (smtp.hygiene). Replies to MAIL, RCPT, DATA and AUTH are counted for metrics by table name,
and every refusal among them is logged once (`smtp refused`, with its reply name and reason) in `_replied`.
This module must never accept AUTH on a plaintext connection other than a marked loopback listener, nor run the
scrypt check on the event loop.

Floods (issue 12): DATA is collected by smtp.data in one buffer per mail within the process's memory budget
(`server.max_memory`), never one object per line. On `tls_listen` the TLS handshake runs after the connection is
counted by the ConnectionGate (an idle handshake holds a slot, like any session) and must finish within
`tls_handshake_timeout`. A session that only sends NOOP, RSET, HELP, VRFY, EXPN, HELO or EHLO gets `421` after
`max_idle_commands` of them without a mail, and every session gets `421` at `session_lifetime`. `accept()`
failing for want of file descriptors is logged once a minute with a count, not as a traceback per attempt.

MAIL FROM and RCPT TO paths: aiosmtpd reads each with the `email` header parser and defines a typing class on
every call, which was a tenth of a worker's busy time under load. `simple_path()` answers the common
`<local@domain>` form (dot-atoms only) with exactly aiosmtpd's result (tests/unit/test_smtp_path.py compares
them) and leaves everything else to aiosmtpd.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import functools
import os
import re
import secrets
import socket
import ssl
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, AnyStr

import structlog
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, syntax

from mail2sms import metrics
from mail2sms.config import Config, parse_hostport
from mail2sms.observability import get_logger
from mail2sms.smtp import replies
from mail2sms.smtp.auth import Authenticator
from mail2sms.smtp.data import DataCollector, MemoryBudget
from mail2sms.smtp.handler import Handler, RoutedEnvelope
from mail2sms.smtp.hygiene import smuggling_problem

log = get_logger("mail2sms.smtp")

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*)>")


def simple_path(arg: str, local_part_limit: int = 0) -> tuple[str | None, str | None] | None:
    """aiosmtpd's `_getaddr(arg)` for `<dot-atom@dot-atom>` and what follows it; None for any other form."""
    match = _SIMPLE_PATH.match(arg)
    if match is None:
        return None
    rest = arg[match.end() :]
    if rest[:1] in (" ", "\t"):
        rest = rest.lstrip()  # the whitespace after '>' is folding white space to the email parser
    if rest[:1] == "(":
        return None  # a comment: the email parser's business
    address = match.group(1)
    if local_part_limit and len(address.rpartition("@")[0]) > local_part_limit:
        return None, None
    return address, rest


# scrypt costs ~40 ms of CPU and 16 MiB per check: two threads keep an AUTH storm off the loop and bounded.
_AUTH_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="auth")
AUTH_FAILURE_DELAY = 1.0  # seconds before "535": slows password guessing without holding the loop
DATA_CHUNK = 64 * 1024  # bytes read from the client at a time during DATA
ACCEPT_LOG_INTERVAL = 60.0  # seconds between two log lines about accept() failing


@dataclass(frozen=True)
class Listener:
    """One configured SMTP listener: its address and how it treats TLS and AUTH."""

    address: str
    implicit_tls: bool = False
    auth_without_tls: bool = False

    @property
    def hostport(self) -> tuple[str, int]:
        return parse_hostport(self.address, 465 if self.implicit_tls else 25)


def configured_listeners(config: Config) -> list[Listener]:
    local = {parse_hostport(item, 25) for item in config.server.auth_without_tls}
    plain = [Listener(item, auth_without_tls=parse_hostport(item, 25) in local) for item in config.server.listen]
    return plain + [Listener(item, implicit_tls=True) for item in config.server.tls_listen]


class Mail2SmsSMTP(SMTP):
    """aiosmtpd's SMTP with our envelope type, connection caps, AUTH-over-TLS rule and smuggling check."""

    def __init__(self, handler: Handler, gate: ConnectionGate, *, listener: Listener = Listener(""),
                 max_idle_commands: int = 30, session_lifetime: float = 3600.0, **kwargs: Any) -> None:
        self._listener = listener
        self._max_idle_commands = max_idle_commands
        self._idle_commands = 0
        self._session_lifetime = session_lifetime
        self._lifetime: asyncio.TimerHandle | None = None
        self._bare_line_ends = True  # set by each DATA (smtp.data counts them as the bytes arrive)
        self._users: Authenticator | None = kwargs.get("authenticator")
        self._offers_auth = self._users is not None
        self._in_ehlo = False
        if listener.implicit_tls:
            kwargs["tls_context"] = None  # already TLS: no STARTTLS inside it
        kwargs["auth_require_tls"] = not (listener.implicit_tls or listener.auth_without_tls)
        super().__init__(handler, **kwargs)
        self._gate = gate
        self._gate_key: str | None = None

    def _create_envelope(self) -> Envelope:
        return RoutedEnvelope()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        fast = simple_path(arg, self.local_part_limit)
        return fast if fast is not None else super()._getaddr(arg)

    @property
    def encrypted(self) -> bool:
        return self._listener.implicit_tls or self._tls_protocol is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._gate_key is not None:
            # aiosmtpd calls this again once STARTTLS's handshake is done: same session, already counted.
            super().connection_made(transport)
            return
        structlog.contextvars.bind_contextvars(session=secrets.token_hex(4))  # copied into the session's task
        peer = transport.get_extra_info("peername")
        key = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        refusal = self._gate.enter(key, self)
        if refusal is not None:
            # Answer and close before any SMTP state exists (RFC 5321 3.1: 421 at greeting).
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(f"{refusal}\r\n".encode())
            transport.close()
            return
        self._gate_key = key
        self.begin(transport)

    def begin(self, transport: asyncio.BaseTransport) -> None:
        """Start the SMTP session on `transport`; the gate has already counted it (connection_made, TlsAcceptor)."""
        self._lifetime = self.loop.call_later(self._session_lifetime, self.hang_up, str(replies.SESSION_TOO_LONG))
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lifetime is not None:
            self._lifetime.cancel()
            self._lifetime = None
        if self._gate_key is not None:
            self._gate.leave(self._gate_key, self)
            self._gate_key = None
            super().connection_lost(exc)

    async def _idle_command(self, command: str) -> bool:
        """Count a command that brings no mail closer; True (after a 421 and closing) when there were too many."""
        self._idle_commands += 1
        if self._idle_commands <= self._max_idle_commands:
            return False
        log.info("session closed: too many commands without a mail", peer=self._gate_key, command=command)
        self.hang_up(str(replies.TOO_MANY_COMMANDS))
        return True

    @syntax("NOOP [ignored]")
    async def smtp_NOOP(self, arg: str) -> None:
        if not await self._idle_command("NOOP"):
            await super().smtp_NOOP(arg)

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:
        if not await self._idle_command("RSET"):
            await super().smtp_RSET(arg)

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str) -> None:
        if not await self._idle_command("HELP"):
            await super().smtp_HELP(arg)

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str) -> None:
        if not await self._idle_command("VRFY"):
            await super().smtp_VRFY(arg)

    async def smtp_EXPN(self, arg: str) -> None:
        if not await self._idle_command("EXPN"):
            await super().smtp_EXPN(arg)

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        if not await self._idle_command("HELO"):
            await super().smtp_HELO(hostname)

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        if await self._idle_command("EHLO"):
            return
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    async def push(self, status: AnyStr) -> None:
        if self._in_ehlo and not self._offers_auth and isinstance(status, str) and status.startswith("250-AUTH"):
            return  # no [[users]]: do not offer what always fails
        await super().push(status)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if await self.check_helo_needed("EHLO"):
            return
        assert self.session is not None
        if self.session.extended_smtp and not self._offers_auth:
            await self.push(str(replies.AUTH_UNAVAILABLE))
            return
        if self.session.extended_smtp and not (self.encrypted or self._listener.auth_without_tls):
            self._replied("AUTH", str(replies.ENCRYPTION_REQUIRED))
            await self.push(str(replies.ENCRYPTION_REQUIRED))  # RFC 4954 6; aiosmtpd's own wording differs
            return
        await super().smtp_AUTH(arg)

    # RFC 4616 (PLAIN) and the LOGIN draft, with the scrypt check on a worker thread: aiosmtpd's own methods call
    # the authenticator synchronously, which would stall every session for each guess.
    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        blob = await self._auth_response(args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")  # [authzid] NUL authcid NUL passwd
        if len(parts) != 3:
            await self.push("501 5.5.2 PLAIN needs authzid, user and password separated by NUL")
            return AuthResult(success=False, handled=True)
        return await self._verify("PLAIN", parts[1], parts[2])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        login = await self._auth_response(args, self.AuthLoginUsernameChallenge)
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING or not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)  # challenge_auth has answered 501
        return await self._verify("LOGIN", login, password)

    async def _auth_response(self, args: list[str], challenge: str) -> bytes | None:
        """The client's first response: given after the mechanism name (RFC 4954 4), or asked for."""
        if len(args) == 1:
            answer = await self.challenge_auth(challenge)
            return answer if isinstance(answer, bytes) else None
        if args[1] == "=":  # RFC 4954 4: an empty initial response
            return b""
        try:
            return base64.b64decode(args[1], validate=True)
        except binascii.Error:
            await self.push("501 5.5.2 cannot decode base64")
            return None

    async def _verify(self, mechanism: str, login: bytes, password: bytes) -> AuthResult:
        if self._users is None:
            return AuthResult(success=False, handled=False)
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # the session id reaches the thread's log lines
        user = await loop.run_in_executor(_AUTH_POOL, context.run, self._users.verify, mechanism, login, password)
        if user is None:
            await asyncio.sleep(AUTH_FAILURE_DELAY)
            return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8
        return AuthResult(success=True, auth_data=user)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA with the collection replaced (smtp.data): one buffer, the memory budget, 452 when full."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        collector = DataCollector(self.data_size_limit, self._gate.memory)
        try:
            await self._collect(collector)
            self._idle_commands = 0  # a whole mail arrived: the session is making progress
            if collector.state == "too big":
                self._replied("DATA", str(replies.TOO_BIG), size=collector.received)
                await self.push(str(replies.TOO_BIG))  # RFC 5321 4.2.5: answered after the data, not during
            elif collector.state == "no memory":
                self._replied("DATA", str(replies.MEMORY_FULL), size=collector.received)
                await self.push(str(replies.MEMORY_FULL))
            else:
                self.envelope.original_content = collector.content()
                self.envelope.content = self.envelope.original_content  # decode_data is off: the same bytes
                self._bare_line_ends = collector.bare
                status = await self._call_handler_hook("DATA")
                self._set_post_data_state()  # type: ignore[no-untyped-call]
                await self.push("250 OK" if status is MISSING else status)
                return
            self._set_post_data_state()  # type: ignore[no-untyped-call]
        finally:
            collector.free()

    async def _collect(self, collector: DataCollector) -> None:
        while True:
            chunk = await self._reader.read(DATA_CHUNK)
            if not chunk:  # the client went away; eof_received cancels this task
                raise asyncio.CancelledError
            rest = collector.feed(chunk)
            if rest is not None:
                if rest:
                    # Pipelined commands after the end of data go back in front of what the reader still holds.
                    self._reader._buffer[:0] = rest  # type: ignore[attr-defined]
                return

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "DATA":
            metrics.MAILS_RECEIVED.inc()
            problem = None
            if self.envelope is not None and self._bare_line_ends:
                problem = await _smuggling(self.envelope.original_content or b"")
            if problem is not None:
                status: Any = replies.SMUGGLING.with_detail(problem)
                self._replied(command, status)
                return status
        status = await super()._call_handler_hook(command, *args)
        if isinstance(status, str):
            address = args[0] if command in ("MAIL", "RCPT") and args else None
            self._replied(command, status, **({"rcpt" if command == "RCPT" else "sender": address}
                                                if isinstance(address, str) else {}))
        return status

    def _replied(self, command: str, status: str, **context: Any) -> None:
        """The one place replies to MAIL, RCPT, DATA and AUTH are counted, and each refusal logged: once, with
        its reply name (smtp.replies) and the reason the client was given. Server trouble (4.3.x: memory, spool,
        parse time) is a warning; everything else a client did is info."""
        metrics.smtp_reply(command, status)
        if status[:1] not in ("4", "5"):
            return
        code, _, text = status.partition(" ")
        enhanced, _, reason = text.partition(" ")
        level = log.warning if enhanced.startswith("4.3.") else log.info
        level("smtp refused", command=command, reply=replies.reason(status), code=int(code),
              reason=reason if enhanced[:1].isdigit() else text, peer=self._gate_key, **context)

    def _timeout_cb(self) -> None:
        # aiosmtpd closes silently; RFC 5321 3.8 asks a server that gives up on a client to say 421 first.
        self.hang_up(str(replies.IDLE_TIMEOUT))

    def hang_up(self, reply: str) -> None:
        """Say `reply` and close: used for sessions still open when a graceful shutdown's deadline passes."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(f"{reply}\r\n".encode())
            transport.close()


async def _smuggling(raw: bytes) -> str | None:
    """smtp.hygiene's smuggling check without holding the loop: its regex took 1 s over 10 MiB of empty lines.

    Every pattern it looks for contains a bare CR or LF, so it runs only for a mail where smtp.data saw one (it
    counts CRs, LFs and CRLFs chunk by chunk as DATA arrives); a big one is searched on a worker thread."""
    if len(raw) <= DATA_CHUNK:
        return smuggling_problem(raw)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, smuggling_problem, raw)


class ConnectionGate:
    """Counts open sessions; refuses new ones above the caps or while draining.

    Draining (SIGTERM) keeps the listeners open so that a new client hears `421 4.3.2` and retries later, instead
    of a connection refused that some clients treat as a hard error.
    """

    def __init__(self, max_total: int = 200, max_per_client: int = 20, max_memory: int = 1024 * 1024 * 1024) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.memory = MemoryBudget(max_memory)
        self.open: Counter[str] = Counter()
        self.sessions: set[Mail2SmsSMTP] = set()
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def total(self) -> int:
        return len(self.sessions)

    def enter(self, key: str, session: Mail2SmsSMTP) -> str | None:
        if self.draining:
            return str(replies.SHUTTING_DOWN)
        if self.total >= self.max_total or self.open[key] >= self.max_per_client:
            return str(replies.TOO_BUSY)
        self.open[key] += 1
        self.sessions.add(session)
        # Kept current here, not only when /metrics is scraped: with workers the scrape sums every worker's last
        # value, and a worker that is never scraped would otherwise report its sessions from long ago.
        metrics.SESSIONS.set(len(self.sessions))
        self._idle.clear()
        return None

    def leave(self, key: str, session: Mail2SmsSMTP) -> None:
        self.open[key] -= 1
        if self.open[key] <= 0:
            del self.open[key]
        self.sessions.discard(session)
        metrics.SESSIONS.set(len(self.sessions))
        if not self.sessions:
            self._idle.set()

    async def drain(self, deadline: float) -> int:
        """Refuse new sessions; wait up to `deadline` s for open ones to end; hang up on the rest (421)."""
        self.draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), deadline)
        left = list(self.sessions)
        for session in left:
            session.hang_up(str(replies.SHUTTING_DOWN))
        return len(left)


class TlsAcceptor(asyncio.Protocol):
    """A `tls_listen` connection before its handshake: counted by the gate at once, handshake bounded in time.

    asyncio's own `create_server(ssl=...)` calls the protocol only after the handshake, so idle handshakes were
    invisible to `max_connections` (10,000 of them took 2.9 GB), and a failed one was never reported to it.
    Here the gate counts the connection as it is accepted; `start_tls` runs the handshake with
    `tls_handshake_timeout`; success hands the encrypted transport to the session, failure frees the slot."""

    def __init__(self, session: Mail2SmsSMTP, gate: ConnectionGate, context: ssl.SSLContext, timeout: float) -> None:
        self.session = session
        self.gate = gate
        self.context = context
        self.timeout = timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the ClientHello is for start_tls's protocol, not for this one
        structlog.contextvars.bind_contextvars(session=secrets.token_hex(4))  # copied into the handshake task
        peer = transport.get_extra_info("peername")
        key = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if self.gate.enter(key, self.session) is not None:
            transport.abort()  # a plaintext 421 would be noise to a client expecting TLS
            return
        self.session._gate_key = key
        task = asyncio.get_running_loop().create_task(self._handshake(transport, key))
        _HANDSHAKES.add(task)
        task.add_done_callback(_HANDSHAKES.discard)

    async def _handshake(self, transport: asyncio.Transport, key: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            encrypted = await loop.start_tls(transport, self.session, self.context, server_side=True,
                                             ssl_handshake_timeout=self.timeout)
        except Exception as exc:  # timeout, TLS alert, reset: the client never got a session
            log.debug("tls handshake failed", peer=key, error=type(exc).__name__)
            encrypted = None
        if encrypted is None or encrypted.is_closing():
            transport.abort()
            if self.session._gate_key is not None:
                self.gate.leave(key, self.session)
                self.session._gate_key = None
            return
        self.session.begin(encrypted)

    def connection_lost(self, exc: Exception | None) -> None:
        pass  # lost before start_tls took over: the handshake task sees it and frees the slot

    def data_received(self, data: bytes) -> None:
        pass  # reading is paused until start_tls; nothing arrives here


_HANDSHAKES: set[asyncio.Task[None]] = set()  # strong references: a running handshake is not garbage


class AcceptErrorLog:
    """The loop's exception handler, with `accept()` failures (EMFILE, ENFILE, ENOBUFS) logged once per interval.

    asyncio reports each failed accept with a traceback and retries a second later, per listener; a descriptor
    flood made that 172,000 tracebacks a minute. Other exceptions go to the previous handler unchanged."""

    def __init__(self, previous: Any, interval: float = ACCEPT_LOG_INTERVAL) -> None:
        self.previous = previous
        self.interval = interval
        self.suppressed = 0
        self.last = float("-inf")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if not message.startswith("socket.accept() out of system resource"):
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = loop.time()
        if now - self.last < self.interval:
            self.suppressed += 1
            return
        exc = context.get("exception")
        log.error("accept failed: out of file descriptors or memory; new connections wait",
                  error=type(exc).__name__ if exc is not None else "", errno=getattr(exc, "errno", None),
                  suppressed=self.suppressed, interval=self.interval)
        self.last = now
        self.suppressed = 0


def log_accept_errors_once(loop: asyncio.AbstractEventLoop) -> None:
    if not isinstance(loop.get_exception_handler(), AcceptErrorLog):
        loop.set_exception_handler(AcceptErrorLog(loop.get_exception_handler()))


def tls_context(config: Config) -> ssl.SSLContext | None:
    if not config.server.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config.server.tls_cert, config.server.tls_key)
    return ctx


async def start_listeners(
    config: Config, handler: Handler, gate: ConnectionGate, reuse_port: bool = False, *,
    tls: ssl.SSLContext | None = None, authenticator: Authenticator | None = None,
) -> list[asyncio.Server]:
    """Bind every `listen` and `tls_listen` address; the caller closes the servers.

    `tls` and `authenticator` given by the caller are shared by every session, so the caller can reload the
    certificate and the users in place (app.App.reload); by default they are built from `config`."""
    loop = asyncio.get_running_loop()
    tls = tls if tls is not None else tls_context(config)
    if authenticator is None:
        users = {u.name: u.password_hash.get_secret_value() for u in config.users}
        authenticator = Authenticator(users) if users else None
    gate.memory.total = config.server.max_memory
    log_accept_errors_once(loop)

    def factory(listener: Listener) -> Mail2SmsSMTP:
        return Mail2SmsSMTP(
            handler,
            gate,
            listener=listener,
            hostname=config.server.hostname,
            ident="mail2sms",
            data_size_limit=config.server.max_message_size,
            tls_context=tls,
            require_starttls=False,
            authenticator=authenticator,
            timeout=config.server.idle_timeout,
            max_idle_commands=config.server.max_idle_commands,
            session_lifetime=config.server.session_lifetime,
            loop=loop,
        )

    def tls_acceptor(listener: Listener) -> TlsAcceptor:
        assert tls is not None  # config.py requires tls_cert for tls_listen
        return TlsAcceptor(factory(listener), gate, tls, config.server.tls_handshake_timeout)

    servers: list[asyncio.Server] = []
    for listener in configured_listeners(config):
        host, port = listener.hostport
        make: Any = tls_acceptor if listener.implicit_tls else factory
        try:
            server = await loop.create_server(
                functools.partial(make, listener),
                host=host, port=port, reuse_address=True, reuse_port=reuse_port or None, family=socket.AF_UNSPEC,
            )
        except OSError as exc:  # the caller reports it as one line: which setting, which address, why
            for bound in servers:
                bound.close()
            setting = "server.tls_listen" if listener.implicit_tls else "server.listen"
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise OSError(exc.errno, f"cannot listen on {host}:{port} ({setting}): {why}") from None
        servers.append(server)
    return servers
