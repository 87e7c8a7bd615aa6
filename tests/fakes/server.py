"""A tiny fake-HTTP harness for stateful fake SMS providers, served over real HTTP on 127.0.0.1.

`FakeProvider` runs the stdlib `ThreadingHTTPServer` in a daemon thread on a random loopback port, so the
system under test may run in this process (asyncio) or in another one. It records every request (method,
path, form parameters decoded with the charset the subclass names, raw body, headers), and applies injected
faults to the next requests: an HTTP status, a delay, or a reset after the request was read. "Connection
refused" is the server being stopped (`refuse()`), keeping its port so `.url` stays the same.

Subclasses implement `handle(request) -> Reply` and answer exactly as `docs/providers.md` says; the harness
itself must never decide a provider's answer, and never print requests (they carry passwords).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

Fault = tuple[Any, ...]
FAULT_KINDS = ("status", "delay", "reset_after_read")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str  # without the query string
    query: str  # raw query string
    params: dict[str, list[str]]  # query and form parameters, decoded with `charset`
    body: bytes
    headers: dict[str, str]  # names lower-cased
    charset: str

    def param(self, name: str, default: str | None = None) -> str | None:
        """The first value of parameter `name`."""
        values = self.params.get(name)
        return values[0] if values else default


@dataclass
class Reply:
    """What a fake answers: status, body (str is sent as UTF-8) and extra headers."""

    status: int = 200
    body: str | bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/html; charset=UTF-8"  # what a PHP script sends unless told otherwise


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeProvider) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, ConnectionError):
            self.fake.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.fake._serve(self)

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines of GET-style APIs carry passwords."""


def _raw_params(text: str) -> dict[str, list[bytes]]:
    """Form/query parameters as bytes (percent-escapes and raw bytes alike), before any charset is applied."""
    parsed = parse_qs(text, keep_blank_values=True, encoding="latin-1", errors="strict")
    return {
        k.encode("latin-1").decode("ascii", "replace"): [v.encode("latin-1") for v in vs]
        for k, vs in parsed.items()
    }


class FakeProvider:
    """Base of the fake providers: lifecycle, request recording and fault injection."""

    base_path = "/"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._faults: deque[Fault] = deque()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._stopping = threading.Event()
        self.errors: list[BaseException] = []  # exceptions inside the fake's own code: a test should see none

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Self:
        """Listen on 127.0.0.1 (a random port the first time, the same port after `stop()`)."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self._port or 0), self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; delayed requests still in progress are dropped without an answer."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def refuse(self) -> None:
        """Simulate "connection refused": stop listening, keep `.url` (call `start()` to listen again)."""
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the fake has not been started")
        return self._port

    @property
    def url(self) -> str:
        """The API's base URL, with a trailing slash, e.g. `http://127.0.0.1:PORT/API/`."""
        return f"http://127.0.0.1:{self.port}{self.base_path}"

    # -- inspection -------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request recorded so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def wait_for(self, n: int, timeout: float = 30.0) -> list[RecordedRequest]:
        """Block until at least `n` requests have been recorded; TimeoutError if they do not come in time (a bound
        against a hang on a busy machine, not a timing assertion)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._requests) >= n, timeout):
                raise TimeoutError(f"{len(self._requests)} of {n} requests arrived within {timeout} s")
            return list(self._requests)

    def wait_until(self, predicate: Any, timeout: float = 30.0) -> None:
        """Block until `predicate()` (evaluated under the fake's lock) is true; TimeoutError otherwise."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise TimeoutError(f"condition not met within {timeout} s")

    # -- fault injection --------------------------------------------------------------------------
    def inject(self, *faults: Fault) -> None:
        """Queue faults for the next requests, one each, in order.

        `("status", code, body, headers)` answers with that status instead of the fake's own answer;
        `("delay", seconds)` waits, then answers normally (state changes happen after the wait);
        `("reset_after_read",)` reads and records the request, then resets the connection (RST, no answer).
        """
        for fault in faults:
            if not fault or fault[0] not in FAULT_KINDS:
                raise ValueError(f"unknown fault {fault!r}; refuse the connection with refuse()")
        with self._lock:
            self._faults.extend(faults)

    def fail_next(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        self.inject(("status", status, body, headers or {}))

    def delay_next(self, seconds: float) -> None:
        self.inject(("delay", seconds))

    def reset_next(self) -> None:
        self.inject(("reset_after_read",))

    # -- to be provided by subclasses -------------------------------------------------------------
    def form_charset(self, raw: dict[str, list[bytes]]) -> str:
        """The charset the provider reads this request's parameters in (from the still-undecoded params)."""
        return "utf-8"

    def handle(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    # -- the request path -------------------------------------------------------------------------
    def _serve(self, handler: _Handler) -> None:
        request = self._read(handler)
        with self._changed:
            self._requests.append(request)
            fault = self._faults.popleft() if self._faults else None
            self._changed.notify_all()
        if fault is not None:
            kind = fault[0]
            if kind == "status":
                status, body, headers = (
                    fault[1],
                    fault[2] if len(fault) > 2 else "",
                    fault[3] if len(fault) > 3 else {},
                )
                self._write(handler, Reply(status=status, body=body, headers=dict(headers or {})))
                return
            if kind == "reset_after_read":
                self._reset(handler)
                return
            if kind == "delay" and self._stopping.wait(float(fault[1])):
                handler.close_connection = True
                return
        with self._changed:
            reply = self.handle(request)
            self._changed.notify_all()
        self._write(handler, reply)

    def _read(self, handler: _Handler) -> RecordedRequest:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        raw = _raw_params(split.query)
        content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if body and content_type in ("", "application/x-www-form-urlencoded"):
            for key, values in _raw_params(body.decode("latin-1")).items():
                raw.setdefault(key, []).extend(values)
        charset = self.form_charset(raw)
        params = {k: [v.decode(charset, "replace") for v in vs] for k, vs in raw.items()}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        return RecordedRequest(handler.command, split.path, split.query, params, body, headers, charset)

    @staticmethod
    def _write(handler: _Handler, reply: Reply) -> None:
        body = reply.body.encode("utf-8") if isinstance(reply.body, str) else reply.body
        try:
            handler.send_response(reply.status)
            headers = {"Content-Type": reply.content_type, **reply.headers}
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            pass  # the client gave up (e.g. its read timeout): the provider's answer is lost, as in life
        handler.close_connection = True

    @staticmethod
    def _reset(handler: _Handler) -> None:
        """Close with SO_LINGER 0: the kernel sends RST instead of FIN, and no answer is written."""
        sock = handler.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.close_connection = True
        handler.rfile.close()  # drop the file's reference so that close() really closes now
        sock.close()
