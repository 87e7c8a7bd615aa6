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

from mail2sms.observability import SECRETS

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
    """aiosmtpd authenticator for PLAIN and LOGIN against `[[users]]`; `auth_data` becomes the user name."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)  # name → scrypt hash

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if mechanism not in ("PLAIN", "LOGIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        name = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        SECRETS.add([password])
        encoded = self.users.get(name)
        ok = encoded is not None and verify_password(password, encoded)
        return AuthResult(success=ok, handled=False, auth_data=name if ok else None)
