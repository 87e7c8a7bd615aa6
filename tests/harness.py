"""Run a real mail2sms for tests: in a thread of the test process, or as a separate process that can be killed.

Both run exactly what `mail2sms serve` runs (`App`), on 127.0.0.1, with a config written to a temporary
directory; tests talk to it with the stdlib `smtplib`, as any mail client would.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from mail2sms import config as configmod
from mail2sms.app import App

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp: Path, body: str, port: int | None = None) -> tuple[Path, int]:
    """A config file: `[server]`, `[spool]`, `[reports]` and `[http]` filled in for `tmp`, then `body`."""
    port = port or free_port()
    text = f"""
[server]
listen = ["127.0.0.1:{port}"]
hostname = "sms.test"

[spool]
url = "sqlite://{tmp}/spool.db"

[reports]
maildir = "{tmp}/reports"
from = "mail2sms@sms.test"

[http]
listen = ""

[dispatch]
retry_base = 0.2
retry_cap = 1.0
poll_interval = 0.2
""" + body
    path = tmp / "mail2sms.toml"
    path.write_text(text, encoding="utf-8")
    return path, port


class ThreadServer:
    """mail2sms in a background thread with its own event loop."""

    def __init__(self, config_path: Path) -> None:
        self.config = configmod.load(str(config_path))
        self.loop = asyncio.new_event_loop()
        self.app: App | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ThreadServer:
        self._thread.start()

        async def boot() -> App:
            app = App(self.config)
            await app.start()
            return app

        self.app = asyncio.run_coroutine_threadsafe(boot(), self.loop).result(120)  # a bound against a hang
        return self

    @property
    def port(self) -> int:
        assert self.app is not None
        return self.app.smtp_ports[0]

    def stop(self) -> None:
        if self.app is not None:
            asyncio.run_coroutine_threadsafe(self.app.stop(5.0), self.loop).result(120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class ProcessServer:
    """`python -m mail2sms serve` as a child process; stdout and stderr go to a log file."""

    def __init__(self, config_path: Path, port: int, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.port = port
        self.log_path = log_path
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> ProcessServer:  # Python's start-up on a busy machine: seconds
        env = dict(os.environ, **self.env)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mail2sms", "serve", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.config_path.parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mail2sms exited with {self.proc.returncode}: {self.log_path.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                s.recv(100)
                return self
            time.sleep(0.05)
        raise RuntimeError("mail2sms did not start listening")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 120.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def message(to: str | list[str], body: str, *, sender: str = "alice@example.org", subject: str = "sms",
            headers: dict[str, str] | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to if isinstance(to, str) else ", ".join(to)
    msg["Subject"] = subject
    msg["Message-ID"] = email.utils.make_msgid(domain="example.org")
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    return msg


def send(port: int, msg: EmailMessage, *, sender: str = "alice@example.org",
         rcpts: list[str] | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    """Send with smtplib; return the DATA reply (code, text). Refused recipients raise as smtplib does.
    `timeout` bounds each socket wait: a big mail's DATA reply on a busy machine needs more than the default."""
    to = rcpts or [a.strip() for a in str(msg["To"]).split(",")]
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as client:
        client.ehlo("client.example.org")
        code, text = client.mail(sender)
        assert code == 250, text
        for rcpt in to:
            code, text = client.rcpt(rcpt)
            if code != 250:
                return code, text
        return client.data(msg.as_bytes(policy=email.policy.SMTP))


def wait_until(predicate: Any, timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something true, and return that. `timeout` is a bound against a hang, never
    a timing assertion: generous, because the suite runs on shared, busy CI machines (a pass returns at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def reports(maildir: Path) -> list[email.message.EmailMessage]:
    new = maildir / "new"
    if not new.is_dir():
        return []
    out = []
    for path in sorted(new.iterdir()):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        out.append(parsed)
    return out


Seen = dict[str, tuple[str, dict[str, Any], str, email.message.EmailMessage]]


def outcome_of(
    maildir: Path, seen: Seen, sid: str, secrets: tuple[str, ...] = ()
) -> tuple[dict[str, Any], str, email.message.EmailMessage] | None:
    """The outcome mail of submission `sid` in `maildir` (results.json, text part, mail), or None while it is not
    there; `seen` caches every mail already read (by file name), and none may carry one of `secrets`."""
    new = maildir / "new"
    for path in sorted(new.iterdir()) if new.is_dir() else []:
        if path.name not in seen:
            mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(mail, email.message.EmailMessage)
            data = report_json(mail)
            seen[path.name] = (data["submission"], data, report_text(mail), mail)
    for found_sid, data, text, mail in seen.values():
        if found_sid == sid:
            for secret in secrets:
                assert secret not in mail.as_string()
            return data, text, mail
    return None


def report_text(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def report_json(msg: email.message.EmailMessage) -> dict[str, Any]:
    for part in msg.iter_attachments():
        if part.get_filename() == "results.json":
            data = part.get_content()
            return json.loads(data if isinstance(data, str) else data.decode())  # type: ignore[no-any-return]
    raise AssertionError("no results.json")


@contextlib.contextmanager
def thread_server(config_path: Path) -> Iterator[ThreadServer]:
    server = ThreadServer(config_path).start()
    try:
        yield server
    finally:
        server.stop()
