"""A throwaway PostgreSQL cluster for tests and the benchmark: initdb in a temporary directory, 127.0.0.1 only.

It uses the server binaries on this machine (`initdb` on PATH, or Debian's /usr/lib/postgresql/*/bin); `.ci/run`
installs Debian's `postgresql` when they are missing. PostgreSQL refuses to run as root, so as root the cluster
runs as `nobody` (via `runuser`). It never touches a cluster it did not create, and it is stopped (immediate
mode) and deleted when the caller is done.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.harness import free_port


def find_bindir() -> Path | None:
    """Where `initdb`, `pg_ctl` and `postgres` are, or None."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name, reverse=True)
    for bindir in candidates:
        if all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def why_unavailable() -> str | None:
    """Why no cluster can be started here (for a skip message), or None when one can."""
    if find_bindir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl, postgres): apt-get install postgresql"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root and runuser is missing: PostgreSQL refuses to run as root"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -e '.[postgres]'"
    return None


class Cluster:
    """One PostgreSQL server on 127.0.0.1:<random port>, its data and socket in a temporary directory."""

    def __init__(self, *, durable: bool = False) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries")
        self.bindir = bindir
        self.durable = durable  # fsync on: the benchmark measures real commits; tests need no crash safety
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mail2sms-pg-"))
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            self._as = ["runuser", "-u", "nobody", "--"]
        self.dir.chmod(0o700)
        self.started = False

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120,
                       cwd=self.dir, stdin=subprocess.DEVNULL)

    def start(self) -> Cluster:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync", "--locale=C")
        fsync = "on" if self.durable else "off"
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync={fsync} "
                   f"-c synchronous_commit=on -c max_connections=200 -c shared_buffers=128MB")
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                      str(self.dir / "server.log"), "-w", "-t", "60", "start")
        except subprocess.CalledProcessError as exc:
            log = self.dir / "server.log"
            raise RuntimeError(f"PostgreSQL did not start: {log.read_text() if log.exists() else exc}") from exc
        self.started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)
