"""Receiving DATA in bounded memory: one growing buffer per mail and one memory budget for the whole process.

aiosmtpd reads DATA one line at a time and keeps every line as its own bytearray in a list, so 10 MiB of empty
lines cost some 700 MiB (an object and a list slot per two bytes), and the per-line coroutine round trips held
the event loop. `DataCollector` takes the bytes as they arrive, in chunks, undoes dot-stuffing and finds the end
of data with C-level `find`/`replace` over each chunk (RFC 5321 4.5.2), and appends to a single bytearray: the
memory is the mail's size plus the buffer's slack, whatever its lines look like. A chunk without a dot skips both
searches (a memchr), and the collector notes whether any CR or LF stood alone, so the smuggling check's regex
(1 s over 10 MiB of empty lines) runs only for mails that have one. Lines longer than RFC 5321's
1,000 octets are kept (aiosmtpd answered them with 500; 4.5.3.1.6 lets a server accept more); the size limit holds.

`MemoryBudget` is the process-wide bound (`server.max_memory`): a mail being received reserves what it will cost
(MEMORY_PER_BYTE times its size so far: the buffer, the bytes handed to the handler, the parse) as it grows, and
gives it back when its DATA reply is sent. A mail that cannot reserve more is read to its end without being
kept and refused with a temporary `452`; mails larger than SMALL_MAIL may not take the budget's last
`1/RESERVE_FRACTION`, so a flood of big mails leaves room for ordinary ones.

This module never blocks waiting for memory (waiting could deadlock: each waiting mail holds part of the budget)
and never keeps a mail that went over `max_message_size`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

END = b"\r\n.\r\n"  # RFC 5321 4.1.1.4: the end of mail data is a line holding only "."
# The receive buffer, its bytes copy, and the stdlib parse (decoded text, one string per line, payloads): a
# base64 attachment measured 8.75 bytes of peak per mail byte, plain text 5 (tracemalloc, Python 3.11).
MEMORY_PER_BYTE = 10
RESERVE_STEP = 256 * 1024  # reserve in steps, not per chunk
SMALL_MAIL = 1024 * 1024
RESERVE_FRACTION = 8


@dataclass
class MemoryBudget:
    """Bytes that mails being received may hold at once; `reserve` says no rather than wait."""

    total: int
    used: int = 0
    refused: int = field(default=0)

    def reserve(self, amount: int, *, large: bool) -> bool:
        limit = self.total - self.total // RESERVE_FRACTION if large else self.total
        if self.used + amount > limit:
            self.refused += 1
            return False
        self.used += amount
        return True

    def release(self, amount: int) -> None:
        self.used = max(0, self.used - amount)


class DataCollector:
    """The bytes of one DATA transfer, unstuffed, with its size limit and its share of the memory budget.

    `feed(chunk)` returns None while the end of data has not arrived, then the bytes that followed it (pipelined
    commands, handed back to the command reader). `state` says what the reply will be: "ok", "too big" or
    "no memory"."""

    def __init__(self, limit: int | None, budget: MemoryBudget | None) -> None:
        self.limit = limit
        self.budget = budget
        self.state = "ok"
        self.received = 0  # raw bytes, dot-stuffing included, as aiosmtpd counted them
        self.reserved = 0
        self.bare = False  # a CR or LF not part of a CRLF was seen (what smtp.hygiene's smuggling check looks for)
        self._buffer = bytearray()
        # A virtual CRLF in front: the first line starts a line too, so a "." alone there ends an empty mail and
        # a leading dot there is unstuffed. It is dropped from the first part kept.
        self._carry = b"\r\n"
        self._virtual = True

    def feed(self, chunk: bytes) -> bytes | None:
        data = self._carry + chunk
        # No dot, no end of data and nothing to unstuff: a memchr, where searching CRLF-dense data for END and
        # CRLF-dot cost 50 ms per 10 MiB of empty lines on the event loop.
        dotted = b"." in data
        end = data.find(END) if dotted else -1
        if end >= 0:
            self._keep(data[: end + 2])
            self._carry = b""
            return data[end + len(END) :]
        # Carry the longest tail that could begin END (or a CRLF-dot to unstuff) into the next chunk.
        keep = next((k for k in (4, 3, 2, 1) if data.endswith(END[:k])), 0)
        self._keep(data[: len(data) - keep], dotted)
        self._carry = data[len(data) - keep :]
        return None

    def _keep(self, part: bytes, dotted: bool = True) -> None:
        if not part:
            return
        skip = 2 if self._virtual else 0
        self._virtual = False
        self.received += len(part) - skip
        if self.state != "ok":
            return
        if self.limit and self.received > self.limit:
            self._drop("too big")
            return
        if not self.bare:
            # A part never ends inside a CRLF (feed carries a trailing CR), so counting per part is exact.
            pairs = part.count(b"\r\n")
            self.bare = part.count(b"\r") != pairs or part.count(b"\n") != pairs
        unstuffed = part.replace(b"\r\n.", b"\r\n") if dotted else part  # RFC 5321 4.5.2: leading dots doubled
        if not self._grow(len(self._buffer) + len(unstuffed) - skip):
            self._drop("no memory")
            return
        self._buffer += memoryview(unstuffed)[skip:]

    def _grow(self, size: int) -> bool:
        if self.budget is None:
            return True
        need = size * MEMORY_PER_BYTE
        if need <= self.reserved:
            return True
        step = max(need - self.reserved, RESERVE_STEP * MEMORY_PER_BYTE)
        if not self.budget.reserve(step, large=size > SMALL_MAIL):
            return False
        self.reserved += step
        return True

    def _drop(self, state: str) -> None:
        self.state = state
        self._buffer = bytearray()  # discard at once; the rest of the transfer is only scanned for its end
        self.free()

    def content(self) -> bytes:
        """The mail as received (without the virtual CRLF); the buffer is freed."""
        data = bytes(self._buffer)
        self._buffer = bytearray()
        return data

    def free(self) -> None:
        """Give the reservation back; idempotent."""
        if self.budget is not None and self.reserved:
            self.budget.release(self.reserved)
        self.reserved = 0
