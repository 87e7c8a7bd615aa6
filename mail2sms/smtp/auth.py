"""SMTP AUTH: scrypt password hashes (`mail2sms hash-password`) and aiosmtpd's authenticator.

Hash format: `scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`. Verification is constant-time. The password an SMTP
client sends is registered as a secret for log redaction before anything else touches it, and never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from aiosmtpd.smtp import AuthResult, LoginPassword

from mail2sms import metrics
from mail2sms.observability import SECRETS, get_logger

log = get_logger("mail2sms.smtp")

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


class Authenticator:
    """PLAIN and LOGIN credentials checked against `[[users]]`; the session's `auth_data` becomes the user name.

    `verify()` takes about 40 ms of CPU (scrypt), so the SMTP server calls it on a worker thread; an unknown
    name is checked against a dummy hash so that the time taken does not tell which names exist.
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)  # name → scrypt hash
        self._dummy = hash_password(secrets.token_urlsafe(16))

    def verify(self, mechanism: str, login: bytes, password: bytes) -> str | None:
        """The user name when `password` is right for `login`, else None. Registers the password as a secret."""
        text = password.decode("utf-8", "replace")
        SECRETS.add([text])
        name = login.decode("utf-8", "replace")
        encoded = self.users.get(name)
        ok = verify_password(text, encoded if encoded is not None else self._dummy) and encoded is not None
        metrics.AUTH.labels("success" if ok else "failure").inc()
        if not ok:
            # An unknown "name" is sometimes a password typed into the wrong field: do not log it.
            log.info("auth failed", mechanism=mechanism, user=name if encoded is not None else "(unknown)")
        return name if ok else None

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        """aiosmtpd's authenticator interface (blocking; mail2sms's server uses `verify()` off the loop)."""
        if mechanism not in ("PLAIN", "LOGIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        name = self.verify(mechanism, auth_data.login, auth_data.password)
        return AuthResult(success=name is not None, handled=False, auth_data=name)
