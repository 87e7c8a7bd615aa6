"""smtp.data: DATA collected in one buffer reads exactly what aiosmtpd's line-by-line reading did, within the budget."""

from __future__ import annotations

import random
import re

import pytest

from mail2sms.smtp.data import MEMORY_PER_BYTE, DataCollector, MemoryBudget

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")  # a CR or LF that is not part of a CRLF


def line_by_line(stream: bytes) -> tuple[bytes, bytes]:
    """RFC 5321 4.5.2 the way aiosmtpd reads it: CRLF lines, '.' alone ends, a leading dot is removed."""
    lines, pos = [], 0
    while True:
        end = stream.index(b"\r\n", pos) + 2
        line, pos = stream[pos:end], end
        if line == b".\r\n":
            return b"".join(lines), stream[pos:]
        lines.append(line[1:] if line.startswith(b".") else line)


def collect(
    stream: bytes, chunks: list[int], limit: int | None = None, budget: MemoryBudget | None = None
) -> tuple[DataCollector, bytes]:
    collector = DataCollector(limit, budget)
    pos = 0
    for size in chunks:
        rest = collector.feed(stream[pos : pos + size])
        pos += size
        if rest is not None:
            return collector, rest + stream[pos:]
    raise AssertionError("no end of data")


def test_any_split_reads_like_line_by_line() -> None:
    """Random mails in random chunks give aiosmtpd's content and leftover; `bare` says if a lone CR or LF is in it."""
    rng = random.Random(12)
    pieces = [b"\r", b"\n", b".", b"a", b"\r\n", b"\r\n.", b".\r\n", b"\r\n..\r\n"]
    checked = 0
    for _ in range(5000):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 24)))
        stream = body + b"\r\n.\r\nQUIT\r\n"
        expected = line_by_line(stream)
        collector, rest = collect(stream, [rng.randint(1, 6) for _ in range(len(stream) + 1)])
        assert collector.bare == bool(BARE.search(expected[0])), stream
        assert (collector.content(), rest) == expected, stream
        checked += 1
    assert checked == 5000


def test_empty_mail_and_dot_stuffing_at_the_start() -> None:
    """A '.' first ends an empty mail; a doubled dot on the first line loses one dot."""
    assert collect(b".\r\n", [3])[0].content() == b""
    assert collect(b"..hidden\r\n.\r\n", [4, 100])[0].content() == b".hidden\r\n"


def test_empty_lines_are_one_buffer() -> None:
    """A million empty lines are kept as one bytes object of the same size, not one object per line."""
    stream = b"\r\n" * 1_000_000 + b".\r\n"
    collector, _ = collect(stream, [65536] * (len(stream) // 65536 + 1))
    content = collector.content()
    assert content == b"\r\n" * 1_000_000


def test_over_the_size_limit_is_dropped_but_read_to_the_end() -> None:
    """Past the limit nothing more is kept, the transfer is still read to its end, and the state says 'too big'."""
    stream = b"x" * 1000 + b"\r\n.\r\nNOOP\r\n"
    collector, rest = collect(stream, [100] * 20, limit=500)
    assert collector.state == "too big"
    assert collector.content() == b""
    assert rest == b"NOOP\r\n"


def test_budget_refuses_what_does_not_fit_and_gets_everything_back() -> None:
    """A mail that cannot reserve its share gets 'no memory'; freeing returns the budget to zero."""
    budget = MemoryBudget(4 * 1024 * 1024)
    big = b"y" * (1024 * 1024) + b"\r\n.\r\n"
    first, _ = collect(big, [65536] * 20, budget=budget)
    assert first.state == "no memory"  # 1 MiB needs 10 MiB of budget at MEMORY_PER_BYTE
    assert budget.used == 0
    assert budget.refused == 1
    small = b"z" * 1000 + b"\r\n.\r\n"
    second, _ = collect(small, [65536], budget=budget)
    assert second.state == "ok"
    assert budget.used >= len(small) * MEMORY_PER_BYTE
    second.free()
    assert budget.used == 0


@pytest.mark.parametrize("large", [True, False])
def test_large_mails_leave_the_last_eighth(large: bool) -> None:
    """Mails over SMALL_MAIL may not take the budget's last eighth; small ones may."""
    budget = MemoryBudget(800)
    assert budget.reserve(650, large=large)
    assert budget.reserve(100, large=large) is (not large)
