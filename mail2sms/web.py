"""The small HTTP endpoint on `[http] listen`: `GET /healthz`, `GET /metrics` (Prometheus text format), and
`GET`/`POST /receipts/<provider name>/<token>` for providers that push delivery receipts (dispatch/receipt_push.py).

A deliberately tiny HTTP/1.x server on asyncio streams, in the application's own loop: one request per
connection, bounded request size and time, no keep-alive, a body only on a receipt push (read after its token
is checked, at most `receipt_push.MAX_BODY`, else 413). `/healthz` answers 200 while the
spool answers and the server is not draining, else 503; `/metrics` renders `mail2sms.metrics` after setting the
queue and session gauges. Meant for a loopback or management address, not the internet.

It must never reveal a secret, an address, a phone number or a message text: it shows only counts, state names,
reply names and provider names. It serves at most MAX_CONNECTIONS connections at once (issue 12: floods).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from mail2sms import metrics
from mail2sms.config import parse_hostport
from mail2sms.dispatch.receipt_push import MAX_BODY as TOO_BIG_AT
from mail2sms.dispatch.receipt_push import TOO_BIG, ReceiptDoor, split_path
from mail2sms.model import JobState
from mail2sms.observability import get_logger
from mail2sms.spool.base import Spool

log = get_logger("mail2sms.web")

MAX_REQUEST = 8192  # request line plus headers
REQUEST_TIMEOUT = 10.0
# Connections served at once; more get an immediate 503 and are closed, so a flood of idle connections costs
# at most this many (each for REQUEST_TIMEOUT) and never the process's file descriptors.
MAX_CONNECTIONS = 64
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n"
        b"Connection: close\r\nCache-Control: no-store\r\n\r\nbusy\n")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
            413: "Content Too Large", 503: "Service Unavailable"}


class WebServer:
    """`/healthz` and `/metrics` for one App."""

    def __init__(self, listen: str, spool: Spool, *, sessions: Callable[[], int] = lambda: 0,
                 draining: Callable[[], bool] = lambda: False, reuse_port: bool = False,
                 max_connections: int = MAX_CONNECTIONS, receipts: ReceiptDoor | None = None) -> None:
        self.host, self.port = parse_hostport(listen, 8026)
        self.max_connections = max_connections
        self.open = 0  # connections being served now
        self.reuse_port = reuse_port  # server.workers > 1: every worker binds the same address
        self.spool = spool
        self.sessions = sessions
        self.draining = draining
        self.receipts = receipts  # None: /receipts/ answers 404 (no sink yet, or no provider pushes)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_REQUEST,
                                                  reuse_address=True, reuse_port=self.reuse_port or None)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= self.max_connections:
            writer.write(BUSY)  # fits the socket buffer: no waiting on a client that may never read
            writer.close()
            return
        self.open += 1
        try:
            await self._serve_one(reader, writer)
        finally:
            self.open -= 1

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            method, status, ctype, body = await asyncio.wait_for(self._answer(reader), REQUEST_TIMEOUT)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            status, ctype, body = 400, "text/plain; charset=utf-8", b"bad request\n"
        except Exception:
            log.exception("http request failed")
            status, ctype, body = 503, "text/plain; charset=utf-8", b"error\n"
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode("ascii") + (b"" if method == "HEAD" else body))
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[str, int, str, bytes]:
        """(method, status, content type, body) for one request."""
        first = await reader.readuntil(b"\n")
        line = first.decode("latin-1").split()
        total = len(first)
        fields: dict[str, str] = {}  # read only by a receipt push (Content-Length, Content-Type)
        while True:  # headers, within MAX_REQUEST
            header = await reader.readuntil(b"\n")
            total += len(header)
            if total > MAX_REQUEST:
                raise ValueError("request too big")
            if header in (b"\r\n", b"\n"):
                break
            name, _, value = header.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        if len(line) != 3 or not line[2].startswith("HTTP/1."):
            raise ValueError("not an HTTP/1.x request line")
        method, target = line[0], line[1].split("?", 1)[0]
        if target.startswith("/receipts/"):
            query = line[1].split("?", 1)[1] if "?" in line[1] else ""
            return (method, *await self._receipt(reader, method, target, query, fields))
        if target not in ("/healthz", "/metrics"):
            return method, 404, "text/plain; charset=utf-8", b"not found\n"
        if method not in ("GET", "HEAD"):
            return method, 405, "text/plain; charset=utf-8", b"method not allowed\n"
        if target == "/metrics":
            await self._refresh()
            return method, 200, metrics.CONTENT_TYPE, metrics.render()
        return (method, *await self._health())

    async def _receipt(self, reader: asyncio.StreamReader, method: str, target: str, query: str,
                       fields: dict[str, str]) -> tuple[int, str, bytes]:
        """A receipt push: the token first (404, counted), then the body within its limit, then the door."""
        plain = "text/plain; charset=utf-8"
        where = split_path(target)
        if self.receipts is None or where is None or not self.receipts.admits(*where):
            if self.receipts is not None:
                self.receipts.refuse(where[0] if where is not None else "")
            return 404, plain, b"not found\n"
        if method not in ("GET", "POST"):
            return 405, plain, b"method not allowed\n"
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return 411, plain, b"length required\n"
        length = fields.get("content-length", "0") or "0"
        if not length.isdigit():
            raise ValueError("bad Content-Length")
        if int(length) > TOO_BIG_AT:
            return TOO_BIG.status, plain, TOO_BIG.body
        body = await reader.readexactly(int(length)) if int(length) else b""
        answer = await self.receipts.deliver(where[0], method, query, body, fields.get("content-type", ""))
        return answer.status, plain, answer.body

    async def _refresh(self) -> None:
        with contextlib.suppress(Exception):  # a spool in trouble still lets the other metrics be read
            metrics.set_queue(await self.spool.counts(), [s.value for s in JobState])
        metrics.SESSIONS.set(self.sessions())

    async def _health(self) -> tuple[int, str, bytes]:
        try:
            counts = await asyncio.wait_for(self.spool.live_counts(), 5.0)  # live work only, read by index
        except Exception:
            # A damage the spool already found names itself; otherwise all we know is that it did not answer.
            failed = {"status": "error", "spool": self.spool.problem() or "not answering"}
            return 503, "application/json", json.dumps(failed).encode() + b"\n"
        problem = self.spool.problem()
        status = "draining" if self.draining() else "error" if problem else "ok"
        queue = {k: counts[k] for k in sorted(counts)}
        body: dict[str, object] = {"status": status, "queue": queue, "sessions": self.sessions()}
        if problem:
            body["spool"] = problem
        return (200 if status == "ok" else 503), "application/json", json.dumps(body).encode() + b"\n"
