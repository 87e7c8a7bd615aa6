"""SMTP listeners: aiosmtpd wired with mail2sms's envelope, limits, and connection caps.

Listeners are plain asyncio servers in the application's own loop (not aiosmtpd's threaded Controller), so the
dispatcher and the SMTP sessions share one loop and a SIGTERM can stop accepting before draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import Counter
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope

from mail2sms.config import Config, parse_hostport
from mail2sms.smtp import replies
from mail2sms.smtp.auth import Authenticator
from mail2sms.smtp.handler import Handler, RoutedEnvelope


class Mail2SmsSMTP(SMTP):
    """aiosmtpd's SMTP with our envelope type and global / per-client connection caps."""

    def __init__(self, handler: Handler, gate: ConnectionGate, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._gate = gate
        self._gate_key: str | None = None

    def _create_envelope(self) -> Envelope:
        return RoutedEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
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
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._gate_key is not None:
            self._gate.leave(self._gate_key, self)
            self._gate_key = None
            super().connection_lost(exc)

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


class ConnectionGate:
    """Counts open sessions; refuses new ones above the caps or while draining.

    Draining (SIGTERM) keeps the listeners open so that a new client hears `421 4.3.2` and retries later, instead
    of a connection refused that some clients treat as a hard error.
    """

    def __init__(self, max_total: int = 200, max_per_client: int = 20) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
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
        self._idle.clear()
        return None

    def leave(self, key: str, session: Mail2SmsSMTP) -> None:
        self.open[key] -= 1
        if self.open[key] <= 0:
            del self.open[key]
        self.sessions.discard(session)
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


def tls_context(config: Config) -> ssl.SSLContext | None:
    if not config.server.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config.server.tls_cert, config.server.tls_key)
    return ctx


async def start_listeners(
    config: Config, handler: Handler, gate: ConnectionGate, reuse_port: bool = False
) -> list[asyncio.Server]:
    """Bind every `listen` address; the caller closes the servers."""
    loop = asyncio.get_running_loop()
    tls = tls_context(config)
    users = {u.name: u.password_hash.get_secret_value() for u in config.users}
    authenticator = Authenticator(users) if users else None

    def factory() -> Mail2SmsSMTP:
        return Mail2SmsSMTP(
            handler,
            gate,
            hostname=config.server.hostname,
            ident="mail2sms",
            data_size_limit=config.server.max_message_size,
            tls_context=tls,
            require_starttls=False,
            auth_require_tls=True,
            authenticator=authenticator,
            timeout=config.server.idle_timeout,
            loop=loop,
        )

    servers = []
    for item in config.server.listen:
        host, port = parse_hostport(item, 25)
        server = await loop.create_server(
            factory, host=host, port=port, reuse_address=True, reuse_port=reuse_port or None,
            family=socket.AF_UNSPEC,
        )
        servers.append(server)
    return servers
