"""mail2sms against the ceiling of its stack, in one run on this machine: `python bench/run.py`.

Measures (1) a bare aiosmtpd server that accepts and discards (the baseline), (2) mail2sms's durable accept rate
(SQLite, `workers = 2`), (3) end-to-end SMS per second to a local fake provider over HTTP, (4) p50/p99
end-of-DATA→250 latency at half the maximum accept rate, (5) HTTP requests for a 1,000-recipient broadcast, and
(6) the accept rate on PostgreSQL. Prints a markdown table and writes it to bench/results.md (or `--out`).

Load comes from this script's own asyncio SMTP client: N connections, several mails per connection (as an MTA
sends), every reply checked. Servers run as separate processes on 127.0.0.1; nothing leaves this machine.
The benchmark never asserts anything: targets are reported, not enforced (a smoke test runs it with `--quick`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import ProcessServer, free_port, write_config  # noqa: E402

KWT_LIMIT = 200  # KwtSMS: numbers per request (mail2sms/providers/kwtsms.py)
CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "bench"
password = "bench"
sender = "KWT-MESSAGE"
rate = {rate}

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
"""


# -- servers this script runs as child processes ------------------------------------------------------------


def serve_bare(port: int) -> None:
    """A bare aiosmtpd SMTP server that accepts every mail and discards it: the stack's ceiling."""
    from aiosmtpd.smtp import SMTP, Envelope, Session

    class Discard:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            return "250 2.0.0 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Discard(), hostname="bare.test"), "127.0.0.1", port,
                                          reuse_port=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def serve_fake(port: int) -> None:
    """A lean fake of KwtSMS's `send/` (keep-alive HTTP/1.1) that counts requests and SMS; `GET /stats` tells."""
    stats = {"requests": 0, "sms": 0, "first": 0.0, "last": 0.0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                if path.endswith("/send/") and method == "POST":
                    numbers = parse_qs(body.decode("latin-1")).get("mobile", [""])[0].split(",")
                    now = time.time()
                    stats["requests"] += 1
                    stats["sms"] += len(numbers)
                    stats["first"] = stats["first"] or now
                    stats["last"] = now
                    reply = f"OK:{uuid.uuid4().hex}:{len(numbers)}:{len(numbers)}:1000000:{int(now)}"
                elif path == "/stats":
                    reply = json.dumps(stats)
                    if method == "POST":
                        stats.update(requests=0, sms=0, first=0.0, last=0.0)
                else:
                    reply = "ERROR:ERR002"
                data = reply.encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=UTF-8\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
                await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextlib.contextmanager
def child(mode: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, __file__, mode, str(port)], stdin=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def wait_port(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def fake_stats(port: int, reset: bool = False) -> dict[str, float]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST" if reset else "GET", "/stats")
    data: dict[str, float] = json.loads(conn.getresponse().read())
    conn.close()
    return data


@contextlib.contextmanager
def mail2sms(tmp: Path, fake_port: int, rate: float, spool_url: str | None = None,
             workers: int = 2) -> Iterator[ProcessServer]:
    home = Path(tempfile.mkdtemp(dir=tmp))
    path, port = write_config(home, CONFIG.format(url=f"http://127.0.0.1:{fake_port}/API/", rate=rate))
    text = path.read_text().replace('hostname = "sms.test"', f'hostname = "sms.test"\nworkers = {workers}\n'
                                    "max_connections = 1000\nmax_connections_per_client = 1000\n"
                                    'shutdown_deadline = "2s"')
    if spool_url:
        text = text.replace(f'url = "sqlite://{home}/spool.db"', f'url = "{spool_url}"')
    path.write_text(text)
    server = ProcessServer(path, port, home / "server.log").start()
    time.sleep(0.5 if workers > 1 else 0.1)  # let every worker bind
    try:
        yield server
    finally:
        server.terminate(60)


# -- the load client ----------------------------------------------------------------------------------------


@dataclass
class Load:
    sent: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def mail(i: int, rcpts: list[str], run: str) -> tuple[list[str], bytes]:
    body = (f"From: bench@example.org\r\nTo: {rcpts[0]}\r\nSubject: bench\r\nMessage-ID: <{run}.{i}@bench>\r\n"
            f"\r\nBenchmark message {run} {i}\r\n.\r\n")
    return rcpts, body.encode()


async def _reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def load(port: int, count: int, connections: int, per_connection: int = 10, *, rate: float | None = None,
               rcpts_per_mail: int = 1, run: str = "") -> Load:
    """Send `count` mails over `connections` parallel sessions; `rate` makes it open-loop (mails/s)."""
    result = Load()
    run = run or uuid.uuid4().hex[:8]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    start = time.perf_counter()

    async def session() -> None:
        while not queue.empty():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                await _reply(reader)
                writer.write(b"EHLO client.bench\r\n")
                await _reply(reader)
                for _ in range(per_connection):
                    if queue.empty():
                        break
                    i = queue.get_nowait()
                    if rate:
                        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                    rcpts, data = mail(i, [f"9656{(i * rcpts_per_mail + r) % 10**7:07d}@sms.test"
                                           for r in range(rcpts_per_mail)], run)
                    writer.write(b"MAIL FROM:<bench@example.org>\r\n")
                    ok = await _reply(reader) == 250
                    for rcpt in rcpts:
                        writer.write(f"RCPT TO:<{rcpt}>\r\n".encode())
                        ok = await _reply(reader) == 250 and ok
                    writer.write(b"DATA\r\n")
                    if await _reply(reader) != 354:
                        result.failed += 1
                        writer.write(b"RSET\r\n")
                        await _reply(reader)
                        continue
                    writer.write(data)
                    t0 = time.perf_counter()
                    code = await _reply(reader)
                    result.latencies.append(time.perf_counter() - t0)
                    if code == 250 and ok:
                        result.sent += 1
                    else:
                        result.failed += 1
                writer.write(b"QUIT\r\n")
                await _reply(reader)
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

    await asyncio.gather(*(session() for _ in range(connections)))
    result.seconds = time.perf_counter() - start
    return result


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] if ordered else 0.0


# -- the run ------------------------------------------------------------------------------------------------


def run(quick: bool) -> list[tuple[str, str, str, str]]:
    n = 100 if quick else 6000
    conns = 4 if quick else 32
    rows: list[tuple[str, str, str, str]] = []
    tmp = Path(tempfile.mkdtemp(prefix="mail2sms-bench-"))
    fake_port = free_port()
    with child("fake", fake_port):
        bare_port = free_port()
        with child("bare", bare_port):
            asyncio.run(load(bare_port, n // 10, conns))  # warm-up
            bare = asyncio.run(load(bare_port, n, conns))
            with child("bare", bare_port):  # a second process on the same port (SO_REUSEPORT), like workers = 2
                time.sleep(1.0)  # the port already answers (the first process): give the second time to bind
                asyncio.run(load(bare_port, n // 10, conns))
                bare2 = asyncio.run(load(bare_port, n, conns))
        rows.append(("1. bare aiosmtpd, accept and discard (1 process)", f"{bare.rate:,.0f} mails/s", "1.00×",
                     "baseline"))
        rows.append(("1b. bare aiosmtpd, 2 processes on one port", f"{bare2.rate:,.0f} mails/s",
                     f"{bare2.rate / bare.rate:.2f}×", "the stack's ceiling on both cores"))
        print(f"bare aiosmtpd: {bare.rate:.0f}/s, 2 processes {bare2.rate:.0f}/s", flush=True)

        with mail2sms(tmp, fake_port, rate=0.1) as server:  # the provider is throttled: accept only
            asyncio.run(load(server.port, n // 10, conns))
            accept = asyncio.run(load(server.port, n, conns))
            rows.append(("2. mail2sms durable accept (SQLite, workers = 2)", f"{accept.rate:,.0f} mails/s",
                         f"{accept.rate / bare.rate:.2f}×", "≥ 1.0×"))
            print(f"mail2sms accept: {accept.rate:.0f}/s ({accept.failed} failed)", flush=True)
            half = accept.rate / 2
            lat = asyncio.run(load(server.port, int(half * (1 if quick else 10)), conns, rate=half))
            p50, p99 = percentile(lat.latencies, 50) * 1000, percentile(lat.latencies, 99) * 1000
            rows.append((f"4. end-of-DATA→250 latency at {half:,.0f} mails/s (half of 2.)",
                         f"p50 {p50:.1f} ms, p99 {p99:.1f} ms", "", "p99 ≤ 50 ms"))
            print(f"latency p50 {p50:.1f} ms p99 {p99:.1f} ms at {half:.0f}/s", flush=True)

        with mail2sms(tmp, fake_port, rate=100_000) as server:
            fake_stats(fake_port, reset=True)
            m = n // 2
            t0 = time.time()
            asyncio.run(load(server.port, m, conns))
            deadline = time.monotonic() + 120
            while fake_stats(fake_port)["sms"] < m and time.monotonic() < deadline:
                time.sleep(0.05)
            stats = fake_stats(fake_port)
            e2e = stats["sms"] / max(1e-9, stats["last"] - t0)
            rows.append(("3. end-to-end SMS/s to a fake provider over HTTP (1 request per SMS)",
                         f"{e2e:,.0f} SMS/s", f"{e2e / bare.rate:.2f}×", "≥ 0.8×"))
            print(f"end-to-end: {e2e:.0f} SMS/s ({int(stats['sms'])} of {m})", flush=True)

        # One worker: this row counts how a broadcast is batched. With two, each worker may claim part of it (claims
        # are shared between workers, mail2sms/dispatch/claims.py), one more request per worker that took a part.
        with mail2sms(tmp, fake_port, rate=100_000, workers=1) as server:
            fake_stats(fake_port, reset=True)
            t0 = time.time()
            asyncio.run(load(server.port, 1, 1, rcpts_per_mail=1000))
            deadline = time.monotonic() + 60
            while fake_stats(fake_port)["sms"] < 1000 and time.monotonic() < deadline:
                time.sleep(0.01)
            stats = fake_stats(fake_port)
            rows.append(("5. HTTP requests for one 1,000-recipient broadcast", f"{int(stats['requests'])} requests, "
                         f"all 1,000 SMS out {stats['last'] - t0:.2f} s after the first RCPT", "",
                         f"= ⌈1000/{KWT_LIMIT}⌉ = {math.ceil(1000 / KWT_LIMIT)}"))
            print(f"broadcast: {int(stats['requests'])} requests for {int(stats['sms'])} SMS", flush=True)

        rows.append(postgres_row(tmp, fake_port, n, conns, accept.rate))
    with contextlib.suppress(OSError):
        import shutil

        shutil.rmtree(tmp)
    return sorted(rows, key=lambda row: row[0])


def postgres_row(tmp: Path, fake_port: int, n: int, conns: int, sqlite_rate: float) -> tuple[str, str, str, str]:
    from tests.pgcluster import Cluster, why_unavailable

    name = "6. mail2sms durable accept on PostgreSQL (workers = 2) vs SQLite"
    why = why_unavailable()
    if why:
        return (name, "n/a", "", why)
    cluster = Cluster(durable=True).start()
    try:
        with mail2sms(tmp, fake_port, rate=0.1, spool_url=cluster.new_database()) as server:
            asyncio.run(load(server.port, n // 10, conns))
            pg = asyncio.run(load(server.port, n, conns))
    finally:
        cluster.stop()
    print(f"postgres accept: {pg.rate:.0f}/s ({pg.failed} failed)", flush=True)
    return (name, f"{pg.rate:,.0f} mails/s", f"{pg.rate / sqlite_rate:.2f}× SQLite", "fsync on, same machine")


def table(rows: list[tuple[str, str, str, str]]) -> str:
    cpu = os.cpu_count()
    out = [f"Measured {time.strftime('%Y-%m-%d')} on this machine ({cpu} cores), `python bench/run.py`.", "",
           "| measure | result | vs baseline | target |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("mode", nargs="?", default="run", choices=["run", "bare", "fake"])
    p.add_argument("port", nargs="?", type=int)
    p.add_argument("--quick", action="store_true", help="tiny counts (for the smoke test)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results.md"))
    args = p.parse_args()
    if args.mode == "bare":
        serve_bare(args.port)
        return
    if args.mode == "fake":
        serve_fake(args.port)
        return
    started = time.monotonic()
    text = table(run(args.quick))
    print(text)
    print(f"({time.monotonic() - started:.0f} s)")
    Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
