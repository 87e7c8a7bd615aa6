"""The README's Quick start is true: its test command is what CI runs, and its serve command serves the default."""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.harness import ROOT, wait_until

README = ROOT / "README.md"


def quick_start_commands() -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.DOTALL)


def test_quick_start_has_exactly_two_commands() -> None:
    """Quick start shows two one-line commands: one serves, one tests."""
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert commands[0].endswith("mail2sms serve")
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the README's test command verbatim."""
    assert quick_start_commands()[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT does not count: the server reuses too
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
def test_quick_start_serve_command_works(tmp_path: Path) -> None:
    """The first command, run verbatim in a fresh copy (in a venv), serves the embedded default on 127.0.0.1:8025."""
    if not _port_free(8025):
        pytest.skip("port 8025 is in use on this machine")
    copy = tmp_path / "mail2sms"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "PIP_NO_INPUT": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(["bash", "-c", quick_start_commands()[0]], cwd=copy, env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        def listening() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", 8025), timeout=2) as probe:
                    return probe.recv(4).startswith(b"220")
            except OSError:
                return False

        wait_until(listening, timeout=300, interval=0.5)
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "you@example.org", "96550000000@sms.localhost", "test"
        msg.set_content("Hello from mail2sms")
        if shutil.which("swaks"):
            subprocess.run(["swaks", "--server", "127.0.0.1:8025", "--from", "you@example.org", "--to",
                            "96550000000@sms.localhost", "--body", "Hello from mail2sms"],
                           check=True, capture_output=True, timeout=60)
        else:
            with smtplib.SMTP("127.0.0.1", 8025, timeout=30) as smtp:
                smtp.send_message(msg)
        outbox = copy / "mail2sms-data" / "outbox.jsonl"
        wait_until(lambda: outbox.exists() and "96550000000" in outbox.read_text(), timeout=120)
        assert "Hello from mail2sms" in outbox.read_text()
        wait_until(lambda: any((copy / "mail2sms-data" / "reports" / "new").glob("*")), timeout=120)
        assert "swaks --server 127.0.0.1:8025" in (tmp_path / "serve.log").read_text()  # the first-SMS hint
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
