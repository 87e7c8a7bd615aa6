"""Start-up and disk trouble say what is wrong (issue 13, item 7): a held spool lock, a read-only directory and a
damaged spool file each stop `mail2sms serve` with one clear line and exit status 1, and the SQLite spool
checkpoints its write-ahead log itself, off the commit path.

Each test runs the real `python -m mail2sms serve` as a child process against the fault.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mail2sms.errors import SpoolError
from mail2sms.model import Job, Submission
from mail2sms.spool.sqlite import SqliteSpool
from mail2sms.web import WebServer
from tests.harness import ROOT, ProcessServer, message, send, wait_until, write_config

CONFIG = """
[providers.out]
type = "outbox"
path = "{outbox}"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "out"
region = "KW"
"""


def config(tmp: Path, spool_extra: str = "", spool_dir: Path | None = None) -> Path:
    """A config in `tmp`; `spool_extra` lines go into [spool]; the spool file lives in `spool_dir` (default tmp)."""
    path, _ = write_config(tmp, CONFIG.format(outbox=tmp / "outbox.jsonl"))
    text = path.read_text(encoding="utf-8")
    spool = (spool_dir or tmp) / "spool.db"
    text = text.replace(f'url = "sqlite://{tmp}/spool.db"', f'url = "sqlite://{spool}"\n{spool_extra}')
    path.write_text(text, encoding="utf-8")
    return path


def serve(path: Path, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `mail2sms serve` until it exits by itself (it is expected to refuse to start)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([*(prefix or []), sys.executable, "-m", "mail2sms", "serve", "--config", str(path)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=path.parent,
                          stdin=subprocess.DEVNULL, check=False)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_a_held_spool_lock_is_logged_and_start_gives_up_naming_the_holder(tmp_path: Path) -> None:
    """With the spool's open lock held by another process, serve logs that it waits, then exits 1 naming the lock,
    the holder's pid and the setting, without a traceback."""
    path = config(tmp_path, 'lock_timeout = "2s"')
    fd = os.open(tmp_path / "spool.db.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())
        result = serve(path)
    finally:
        os.close(fd)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "waiting for the spool lock held by another process" in output
    assert last_line(result) == (f"mail2sms: the spool lock {tmp_path}/spool.db.lock is held by another process "
                                 f"(pid {os.getpid()}); gave up after 2 s (spool.lock_timeout): stop that process "
                                 "or remove its hold")
    assert "Traceback" not in output


def read_only_prefix(directory: Path) -> list[str]:
    """A command prefix that runs the server with `directory` read-only (a private read-only bind mount as root)."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("running as root without unshare: no way to make a directory read-only for root")
    probe = subprocess.run([unshare, "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("unshare -m is not permitted here: no way to make a directory read-only for root")
    script = f'mount --bind "{directory}" "{directory}" && mount -o remount,bind,ro "{directory}" && exec "$@"'
    return [unshare, "-m", "--propagation", "private", "sh", "-c", script, "sh"]


def test_a_read_only_spool_directory_is_one_clear_line(tmp_path: Path) -> None:
    """A spool in a read-only directory: exit 1 with one line naming the file and the reason, no traceback."""
    data = tmp_path / "data"
    data.mkdir()
    path = config(tmp_path, spool_dir=data)
    result = serve(path, read_only_prefix(data))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    line = last_line(result)
    assert line.startswith(f"mail2sms: cannot open spool {data}/spool.db: "), line
    assert "Read-only file system" in line or "Permission denied" in line


async def make_spool(path: Path, mails: int) -> None:
    """A spool file holding `mails` submissions of one job each, closed cleanly (WAL checkpointed into the file)."""
    spool = SqliteSpool(f"sqlite://{path}")
    await spool.open()
    for i in range(mails):
        number = f"9655{i:07d}"
        sub = Submission(envelope_from="a@example.org", recipients=[f"{number}@sms.test"], route="*@sms.test",
                         jobs=[Job(number=number, text="x" * 300, provider="out")], received_at=1.0 + i)
        await spool.commit(sub, [f"k{i}"], 86400.0)
    await spool.close()


def damage_a_table_page(path: Path) -> None:
    """Overwrite the first page of the jobs table's b-tree with garbage, as a failing disk might."""
    with sqlite3.connect(path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]
    with path.open("r+b") as f:
        f.seek((root - 1) * page_size + 8)  # past the page header's type byte: a page that no longer adds up
        f.write(os.urandom(page_size - 8))


async def test_a_damaged_spool_refuses_to_start(tmp_path: Path) -> None:
    """A spool file with a damaged page: serve exits 1 saying the file is damaged and what to do, instead of
    starting and answering healthy."""
    await make_spool(tmp_path / "spool.db", 200)
    damage_a_table_page(tmp_path / "spool.db")
    result = serve(config(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    line = last_line(result)
    assert line.startswith(f"mail2sms: the spool file {tmp_path}/spool.db is damaged ("), line
    assert line.endswith("mail2sms will not start on it: restore it from a backup, or move it aside to start with "
                         "an empty spool")


def healthz(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_corruption_met_while_running_turns_healthz_to_error(tmp_path: Path) -> None:
    """A damaged page found by a read while serving makes /healthz answer 503 naming the damage, though the
    spool still answers the health check's own query."""
    await make_spool(tmp_path / "spool.db", 200)
    spool = SqliteSpool(f"sqlite://{tmp_path}/spool.db")
    await spool.open()
    web = WebServer("127.0.0.1:0", spool)
    await web.start()
    try:
        assert (await asyncio.to_thread(healthz, web.port))[0] == 200
        damage_a_table_page(tmp_path / "spool.db")
        with sqlite3.connect(tmp_path / "spool.db") as other:  # another process writes: the spool re-reads pages
            other.execute("INSERT INTO dedupe VALUES ('other', 'x', 1)")
        entries = await spool.queue_list(500)

        async def read_every_submission() -> None:
            for entry in entries:
                await spool.get(entry.submission_id)
        with pytest.raises(SpoolError):
            await read_every_submission()
        status, body = await asyncio.to_thread(healthz, web.port)
        assert status == 503
        assert body["status"] == "error"
        assert body["spool"] == "the spool file is damaged (SQLite reports corruption)"
    finally:
        await web.close()
        await spool.close()


def checkpointed_submissions(spool: Path, scratch: Path) -> int:
    """Submissions in the database file itself, leaving out what is still only in its write-ahead log."""
    shutil.copyfile(spool, scratch)
    try:
        with sqlite3.connect(scratch) as conn:
            count: int = conn.execute("SELECT COUNT(*) FROM submissions").fetchone()[0]
    except sqlite3.OperationalError:  # not even the schema has been checkpointed yet
        count = 0
    scratch.unlink()
    return count


def test_the_server_checkpoints_the_wal_itself(tmp_path: Path) -> None:
    """Accepted mail reaches the database file through the server's own PASSIVE checkpoints (SQLite's automatic
    checkpoint, which runs inside a commit, is off and would not copy a WAL this small anyway)."""
    path = config(tmp_path)
    port = int(path.read_text(encoding="utf-8").split('listen = ["127.0.0.1:')[1].split('"')[0])
    server = ProcessServer(path, port, tmp_path / "server.log").start()
    try:
        for i in range(20):
            code, _ = send(port, message(f"9655{i:07d}@sms.test", f"checkpoint {i}"))
            assert code == 250
        wait_until(lambda: checkpointed_submissions(tmp_path / "spool.db", tmp_path / "copy.db") == 20,
                   timeout=60, interval=0.2)
    finally:
        assert server.terminate() == 0
