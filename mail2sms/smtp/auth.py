"""SMTP AUTH: scrypt password hashes (`mail2sms hash-password`), aiosmtpd's authenticator, and login throttling.

Hash format: `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`. Verification is constant-time. A password is registered
with the log scrubber only once it is verified: a failed one is attacker-chosen text (`info`, `127.0.0.1`), and
masking it everywhere would blind the log. Passwords are never stored or logged.

Failed logins are counted per client network (an IPv4 address, an IPv6 /64) in a sliding window. A network over
`server.auth_max_failures` is answered `454 4.7.0` after a pause that only its own session waits for, and its
guesses never reach scrypt, so an AUTH flood neither tests passwords nor takes the check threads from others.
The counts are in this process's memory (each worker counts on its own) and bounded in size.

The handler's `handle_AUTH` hook (which knows the client's address) puts a `LoginAttempt` into `ATTEMPT` before
aiosmtpd runs the mechanism; the context variable travels with the session into the check thread, so `verify()`
can name and count the client without the SMTP server passing it along.
This module must never log, store or register a password that was not verified.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import AuthResult, LoginPassword

from mail2sms import metrics
from mail2sms.observability import SECRETS, get_logger

log = get_logger("mail2sms.smtp")

THROTTLED_DELAY = 2.0  # seconds a refused network's session waits before 454: slows a flood, blocks no one else

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def client_network(ip: str) -> str:
    """What failed logins are counted by: the IPv4 address, or the /64 of an IPv6 address (one site's LAN)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class LoginThrottle:
    """Failed logins per client network in the last `window` seconds; `blocked()` once there are `max_failures`.

    Memory is bounded: at most `max_clients` networks are remembered (the least recently failing are forgotten
    first), and each keeps at most `max_failures` times. Thread-safe: `failed()` runs on the check threads.
    """

    def __init__(self, max_failures: int = 10, window: float = 900.0, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def failed(self, ip: str) -> None:
        key, now = client_network(ip), self._clock()
        with self._lock:
            times = self._failures.get(key)
            if times is None:
                times = self._failures[key] = deque(maxlen=self.max_failures)
            times.append(now)
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def blocked(self, ip: str) -> bool:
        """True while the client's network has `max_failures` failures in the last `window` seconds."""
        key, horizon = client_network(ip), self._clock() - self.window
        with self._lock:
            times = self._failures.get(key)
            if times is None:
                return False
            while times and times[0] <= horizon:
                times.popleft()
            if not times:
                del self._failures[key]
                return False
            return len(times) >= self.max_failures

    def __len__(self) -> int:
        """How many client networks are remembered (for tests)."""
        return len(self._failures)


@dataclass(frozen=True)
class LoginAttempt:
    """Who is trying to log in: set by the handler's AUTH hook, read by `Authenticator.verify()`."""

    ip: str
    throttle: LoginThrottle | None = None


ATTEMPT: ContextVar[LoginAttempt | None] = ContextVar("mail2sms_login_attempt", default=None)


class Authenticator:
    """PLAIN and LOGIN credentials checked against `[[users]]`; the session's `auth_data` becomes the user name.

    `verify()` takes about 40 ms of CPU (scrypt), so the SMTP server calls it on a worker thread; an unknown
    name is checked against a dummy hash so that the time taken does not tell which names exist.
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)  # name → scrypt hash
        self._dummy = hash_password(secrets.token_urlsafe(16))

    def verify(self, mechanism: str, login: bytes, password: bytes) -> str | None:
        """The user name when `password` is right for `login`, else None. Registers a verified password."""
        attempt = ATTEMPT.get()
        peer = attempt.ip if attempt is not None else ""
        name = login.decode("utf-8", "replace")
        encoded = self.users.get(name)
        if attempt is not None and attempt.throttle is not None and attempt.throttle.blocked(peer):
            ok = False  # over the limit while this guess waited: not checked, so it tells the guesser nothing
        else:
            text = password.decode("utf-8", "replace")
            ok = verify_password(text, encoded if encoded is not None else self._dummy) and encoded is not None
            if ok:
                SECRETS.add([text])
        metrics.AUTH.labels("success" if ok else "failure").inc()
        if not ok:
            if attempt is not None and attempt.throttle is not None:
                attempt.throttle.failed(peer)
            # An unknown "name" is sometimes a password typed into the wrong field: do not log it.
            log.info("auth failed", mechanism=mechanism, user=name if encoded is not None else "(unknown)",
                     peer=peer)
        return name if ok else None

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        """aiosmtpd's authenticator interface (blocking; mail2sms's server uses `verify()` off the loop)."""
        if mechanism not in ("PLAIN", "LOGIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        name = self.verify(mechanism, auth_data.login, auth_data.password)
        return AuthResult(success=name is not None, handled=False, auth_data=name)
