"""Helpers for the security tests: trustme certificates, configs with extra `[server]`/`[http]` keys, a raw SMTP socket.

The raw client exists because smtplib refuses to send what these tests must send (bare CR/LF, commands pipelined
after STARTTLS); it reads replies line by line and never interprets them.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.harness import free_port, write_config


@dataclass
class Tls:
    """A test CA and a server certificate for 127.0.0.1 written to PEM files."""

    ca: trustme.CA
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


def make_tls(tmp: Path) -> Tls:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost", "sms.test")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    for pem in issued.cert_chain_pems:
        pem.write_to_path(str(cert), append=True)
    issued.private_key_pem.write_to_path(str(key))
    return Tls(ca, cert, key)


# The KwtSMS account and the one address route most security tests need; tests add routes and users after it.
KWT_ADDRESS = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "kwtuser"
password = "kwt-config-secret"
sender = "KWT-MESSAGE"
rate = 50

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
"""


def config(tmp: Path, body: str, *, server: str = "", http: bool = False, port: int | None = None
           ) -> tuple[Path, int, int | None]:
    """`write_config` plus `server` lines in `[server]` and with `http` an `[http] listen`: (path, smtp, http)."""
    path, smtp_port = write_config(tmp, body, port)
    text = path.read_text(encoding="utf-8")
    text = text.replace('hostname = "sms.test"\n', f'hostname = "sms.test"\n{server}\n', 1)
    http_port = free_port() if http else None
    if http_port is not None:
        text = text.replace('[http]\nlisten = ""', f'[http]\nlisten = "127.0.0.1:{http_port}"', 1)
    path.write_text(text, encoding="utf-8")
    return path, smtp_port, http_port


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """GET http://127.0.0.1:port/path; (status, body) whatever the status."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class RawSmtp:
    """A line-level SMTP client on a plain socket, optionally wrapped in TLS later."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=30)
        self._buffer = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply: its code and its lines' texts joined by newlines."""
        texts = []
        while True:
            line = self.line()
            texts.append(line[4:].decode("ascii", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(texts)

    def command(self, text: str) -> tuple[int, str]:
        self.send(text.encode("utf-8") + b"\r\n")
        return self.reply()

    def starttls(self, context: ssl.SSLContext) -> None:
        assert not self._buffer, "unread plaintext before TLS"
        self.sock = context.wrap_socket(self.sock, server_hostname="127.0.0.1")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send(b"QUIT\r\n")
        self.sock.close()
