"""MAIL FROM / RCPT TO paths: mail2sms's fast reading of `<local@domain>` equals aiosmtpd's own `_getaddr`."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from mail2sms.smtp.server import simple_path

PIECES = [
    "a",
    "Z9",
    "b.c",
    "+965",
    "!#$%&'*+/=?^_`{|}~-",
    ".",
    "..",
    "@",
    "<",
    ">",
    " ",
    "\t",
    "\n",
    "(",
    ")",
    "c)",
    '"',
    "\\",
    "[1.2.3.4]",
    ":",
    ",",
    ";",
    "é",
    "SIZE=10",
    "BODY=8BITMIME",
    "=",
    "x" * 70,
]


def _aiosmtpd(arg: str, limit: int) -> tuple[str | None, str | None]:
    return SMTP._getaddr(SimpleNamespace(local_part_limit=limit), arg)  # type: ignore[arg-type]


ATOMS = ["a", "Z9", "b.c", "+965", "!#$%&'*+/=?^_`{|}~-", "x" * 70]


@st.composite
def path(draw: st.DrawFn) -> str:
    """Mostly `<local@domain>` followed by parameters, with odd pieces mixed in anywhere."""

    def part() -> str:
        return "".join(
            draw(st.lists(st.sampled_from(ATOMS + PIECES if draw(st.booleans()) else ATOMS), min_size=1, max_size=3))
        )

    head = draw(st.sampled_from(["<", "<", "<", "", " <"]))
    tail = "".join(draw(st.lists(st.sampled_from(PIECES), max_size=4)))
    return f"{head}{part()}@{part()}{draw(st.sampled_from(['>', '>', '']))}{tail}"


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(path(), st.sampled_from([0, 0, 3, 64]))
def test_simple_path_is_aiosmtpd_getaddr(arg: str, limit: int) -> None:
    fast = simple_path(arg, limit)
    if fast is not None:
        assert fast == _aiosmtpd(arg, limit)


def test_common_paths_take_the_fast_reading() -> None:
    for arg in (
        "<ali@example.org>",
        "<+96550000000@sms.test> SIZE=120",
        "<a.b@c.d>\tBODY=8BITMIME  ",
        "<x@y>SIZE=1",
        "<x@y>   ",
    ):
        assert simple_path(arg) == _aiosmtpd(arg, 0)
    assert simple_path("<abcd@x>", 3) == (None, None) == _aiosmtpd("<abcd@x>", 3)
    for arg in ("<>", "ali@example.org", '<"a b"@x>', "<a@[1.2.3.4]>", "<x@y> (comment)", " <x@y>", "<a..b@c>"):
        assert simple_path(arg) is None
