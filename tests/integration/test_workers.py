"""`server.workers = 2`: two serving processes share the port and the SQLite spool under a supervisor that
restarts a dead worker and drains them all on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
from pathlib import Path

from mail2sms.smtp import replies
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ProcessServer, free_port, message, send, wait_until, write_config

CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "user"
password = "pass"
sender = "KWT-MESSAGE"
rate = 200

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
"""


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def listening(pid: int, port: int) -> bool:
    """True when process `pid` holds a socket listening on `port` (from /proc, no connection made)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                return True
    return False


def test_two_workers_share_port_and_spool_and_are_supervised(tmp_path: Path) -> None:
    """Both workers listen on the port; mail through them is sent once each; a killed worker is replaced; SIGTERM
    drains everything and the supervisor exits 0."""
    with FakeKwtSms(accounts={"user": ("pass", 1_000_000.0)}, same_number_interval=0) as kwt:
        path, port = write_config(tmp_path, CONFIG.format(url=kwt.url))
        text = path.read_text().replace('hostname = "sms.test"', 'hostname = "sms.test"\nworkers = 2')
        path.write_text(text.replace('listen = ""', f'listen = "127.0.0.1:{free_port()}"'))  # both serve /healthz
        server = ProcessServer(path, port, tmp_path / "server.log").start()
        assert server.proc is not None
        try:
            wait_until(lambda: len(children(server.proc.pid)) == 2
                       and all(listening(c, port) for c in children(server.proc.pid)), timeout=30)
            first = children(server.proc.pid)
            numbers = [f"965600{i:05d}" for i in range(40)]
            for number in numbers[:20]:
                code, text = send(port, message(f"{number}@sms.test", f"workers {number}"))
                assert replies.QUEUED.matches(code, text), text
            os.kill(first[0], signal.SIGKILL)
            wait_until(lambda: len(kids := children(server.proc.pid)) == 2 and first[0] not in kids
                       and all(listening(c, port) for c in kids), timeout=30)
            for number in numbers[20:]:
                code, text = send(port, message(f"{number}@sms.test", f"workers {number}"))
                assert replies.QUEUED.matches(code, text), text
            wait_until(lambda: len({s.number for s in kwt.sent}) >= len(numbers) - 1, timeout=120)
        finally:
            assert server.terminate() == 0
        assert all(not Path(f"/proc/{c}").exists() for c in first[1:])
        counts = {n: sum(1 for s in kwt.sent if s.number == n) for n in numbers}
        assert max(counts.values()) == 1  # the killed worker may have left one request `unknown`, never a double


def test_supervisor_speaks_for_its_workers_to_systemd(tmp_path: Path) -> None:
    """With workers = 2 under Type=notify, systemd hears READY=1 once, WATCHDOG=1 and STOPPING=1, all from the
    supervisor's own pid (so NotifyAccess=main works)."""
    directory = Path("/tmp") / f"m2s-{os.urandom(4).hex()}"
    directory.mkdir()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(directory / "notify"))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(30)  # a hang fails the test instead of stalling the suite
    try:
        path, port = write_config(tmp_path, CONFIG.format(url="http://127.0.0.1:9/API/"))
        path.write_text(path.read_text().replace('hostname = "sms.test"', 'hostname = "sms.test"\nworkers = 2'))
        server = ProcessServer(path, port, tmp_path / "server.log",
                               env={"NOTIFY_SOCKET": str(directory / "notify"), "WATCHDOG_USEC": "400000"})
        server.start()
        assert server.proc is not None
        heard: list[tuple[int, set[str]]] = []

        def receive() -> tuple[int, set[str]]:
            data, ancdata, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
            pid = next(struct.unpack("3i", d[:12])[0] for level, kind, d in ancdata
                       if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
            heard.append((pid, set(data.decode().split("\n"))))
            return heard[-1]

        while "READY=1" not in receive()[1]:
            pass
        while "WATCHDOG=1" not in receive()[1]:
            pass
        assert server.terminate() == 0
        while "STOPPING=1" not in receive()[1]:
            pass
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)
    assert {pid for pid, _ in heard} == {server.proc.pid}
    assert sum("READY=1" in fields for _, fields in heard) == 1
