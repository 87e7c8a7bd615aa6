"""Worker processes: `server.workers = N` makes `mail2sms serve` a supervisor of N serving processes.

Each worker is a whole mail2sms (`app.serve`): it binds the same listening addresses with SO_REUSEPORT, so the
kernel spreads new connections over the workers, and shares the spool (SQLite file or PostgreSQL). The supervisor
serves nothing itself. It restarts a worker that dies (jobs the dead worker held are recovered by the others:
`owner_is_dead` for this host), passes SIGHUP on (each worker reloads its config: app.reload_from), forwards
SIGTERM/SIGINT for a graceful drain, and exits when every worker is gone: 0 when all stopped cleanly. A worker that
keeps dying right after it starts (a port in use, a broken spool) makes the supervisor stop everything and exit 1
instead of restarting it forever.

Under systemd (`Type=notify`) the workers notify the supervisor, not systemd: it says `READY=1` once every worker
has, passes `WATCHDOG=1` pings on, and says `STOPPING=1` at SIGTERM, so `NotifyAccess=main` keeps working.

Metrics: the workers count into one `$PROMETHEUS_MULTIPROC_DIR` (the operator's, emptied at start, or a private
temporary directory removed at exit), so any worker's `/metrics` shows the sum (mail2sms.metrics); a dead
worker's live gauges (open sessions) are dropped when it is reaped.

The supervisor never opens the spool or a listening socket, and never kills a worker except after the drain
deadline.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from types import FrameType

from mail2sms import sdnotify
from mail2sms.observability import get_logger

log = get_logger("mail2sms.workers")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # mail2sms.metrics reads it in each worker

QUICK_EXIT = 5.0  # seconds: a worker that dies sooner than this after starting counts as failing to start
MAX_QUICK_EXITS = 5  # in a row, for one worker slot: give up
POLL = 0.2


@dataclass
class _Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_exits: int = 0
    restart_at: float = 0.0


class Supervisor:
    """Starts `count` copies of `command`, keeps them running, and drains them on SIGTERM."""

    def __init__(self, command: list[str], count: int, drain_deadline: float) -> None:
        self.command = command
        self.slots = [_Slot(i) for i in range(count)]
        self.drain_deadline = drain_deadline
        self._stopping = False
        self._systemd = sdnotify.Notifier.from_environ()
        self._relay: socket.socket | None = None
        self._relay_name = ""
        self._ready = 0
        self._metrics_dir = ""
        self._own_metrics_dir = False

    def _open_metrics_dir(self) -> None:
        """One directory for every worker's metric files; stale files from an earlier run would add up wrongly."""
        given = os.environ.get(MULTIPROC_ENV, "")
        if given:
            os.makedirs(given, exist_ok=True)
            for name in os.listdir(given):
                if name.endswith(".db"):
                    os.unlink(os.path.join(given, name))
            self._metrics_dir = given
        else:
            self._metrics_dir = tempfile.mkdtemp(prefix="mail2sms-metrics-")
            self._own_metrics_dir = True

    def _reaped(self, pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self._metrics_dir)  # type: ignore[no-untyped-call]

    def _open_relay(self) -> None:
        """A notify socket for the workers (abstract namespace: nothing on disk), when systemd gave us one."""
        if not self._systemd.enabled:
            return
        self._relay_name = f"@mail2sms-workers-{os.getpid()}-{secrets.token_hex(4)}"
        self._relay = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._relay.bind("\0" + self._relay_name[1:])
        self._relay.setblocking(False)

    def _relay_notifications(self) -> None:
        while self._relay is not None:
            try:
                fields = self._relay.recv(4096).decode("utf-8", "replace").split("\n")
            except BlockingIOError:
                return
            if "READY=1" in fields:
                self._ready += 1
                if self._ready == len(self.slots):
                    self._systemd.ready(status=f"{len(self.slots)} workers serving")
            if "WATCHDOG=1" in fields:
                self._systemd.watchdog()

    def _start(self, slot: _Slot) -> None:
        env = dict(os.environ, MAIL2SMS_SUPERVISOR=str(os.getpid()))
        if self._metrics_dir:
            env[MULTIPROC_ENV] = self._metrics_dir
        if self._relay is not None:
            env["NOTIFY_SOCKET"] = self._relay_name
            env.pop("WATCHDOG_PID", None)  # systemd's watchdog is meant for us; the workers ping us instead
        slot.proc = subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL)  # noqa: S603 our own argv
        slot.started = time.monotonic()
        log.info("worker started", worker=slot.index, pid=slot.proc.pid)

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            log.info("stopping workers", signal=signal.Signals(signum).name)
            self._systemd.stopping(status="draining")
        self._stopping = True
        self._forward(signal.SIGTERM)

    def _reload(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: each worker re-reads the config itself (app.reload_from); the supervisor holds none of it."""
        log.info("reloading workers")
        self._forward(signal.SIGHUP)

    def _forward(self, sig: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(sig)

    def run(self) -> int:
        """Supervise until every worker is gone; the exit status for `mail2sms serve`."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._signal)
        signal.signal(signal.SIGHUP, self._reload)
        self._open_relay()
        self._open_metrics_dir()
        for slot in self.slots:
            self._start(slot)
        failed = False
        while not self._stopping:
            time.sleep(POLL)
            self._relay_notifications()
            now = time.monotonic()
            for slot in self.slots:
                if slot.proc is None:
                    if now >= slot.restart_at and not self._stopping:
                        self._start(slot)
                    continue
                code = slot.proc.poll()
                if code is None or self._stopping:
                    continue
                self._reaped(slot.proc.pid)
                quick = now - slot.started < QUICK_EXIT
                slot.quick_exits = slot.quick_exits + 1 if quick else 0
                slot.proc = None
                log.warning("worker exited; restarting it", worker=slot.index, status=code,
                            quick_exits=slot.quick_exits)
                if slot.quick_exits >= MAX_QUICK_EXITS:
                    log.error("a worker keeps failing right after it starts; stopping", worker=slot.index)
                    failed = True
                    self._stopping = True
                    self._forward(signal.SIGTERM)
                    break
                slot.restart_at = now + min(30.0, 0.5 * 2 ** slot.quick_exits) if quick else now
        return self._wait_all(failed)

    def _wait_all(self, failed: bool) -> int:
        deadline = time.monotonic() + self.drain_deadline + 10.0
        status = 1 if failed else 0
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                code = slot.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker did not stop in time; killing it", worker=slot.index, pid=slot.proc.pid)
                slot.proc.kill()
                code = slot.proc.wait()
            if code != 0:
                status = 1
        log.info("all workers stopped", status=status)
        if self._relay is not None:
            self._relay.close()
        if self._own_metrics_dir:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
        return status


def worker_command(config_path: str | None, log_level: str, listen: str | None = None) -> list[str]:
    """How the supervisor starts one worker: this same mail2sms, told it is a worker."""
    command = [sys.executable, "-m", "mail2sms", "--log-level", log_level, "serve", "--worker"]
    if config_path:
        command += ["--config", os.path.abspath(config_path)]
    if listen:
        command += ["--listen", listen]
    return command


def exit_with_supervisor() -> None:
    """In a worker: stop gracefully (SIGTERM to itself) if the supervisor disappears, e.g. it was SIGKILLed."""
    parent = os.environ.get("MAIL2SMS_SUPERVISOR", "")
    if not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
