"""The fast path for simple mails (parse/mime.py `_simple`) reads exactly what the full stdlib path reads.

Generated simple mails (encoded-word subjects in several charsets, display names, QP / base64 / 7bit / 8bit
bodies, CRLF or LF, folded headers, format=flowed) and byte soups built from header-like fragments: whenever
the fast path answers, its MailContent must equal the full path's; when it declines, read_message still works.
"""

from __future__ import annotations

import base64
import quopri
from email.header import Header

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mail2sms.parse.mime import MailContent, _read_full, _simple, read_message

CHARSETS = ["utf-8", "UTF-8", "iso-8859-1", "windows-1252", "us-ascii", "koi8-r", "iso-8859-6", "bogus-x"]
WORDS = [
    "hello",
    "Ali",
    "é",
    "ß",
    "مرحبا",
    "ok!",
    "a.b",
    "x_y",
    "=?",
    "?=",
    '"q"',
    "<>",
    "(c)",
    ",",
    ";",
    ":",
    "\\",
    "  ",
    "\t",
    "50%",
    "a=b",
    "Привет",
    "€",
    "😀",
]


def _same(a: MailContent, b: MailContent) -> None:
    assert (a.subject, a.message_id, a.from_, a.received_count, a.text, a.attachments) == (
        b.subject,
        b.message_id,
        b.from_,
        b.received_count,
        b.text,
        b.attachments,
    )
    assert dict(a.headers) == dict(b.headers)


def _check(raw: bytes) -> bool:
    """Compare both paths on `raw`; True when the fast path answered."""
    fast = _simple(raw)
    if fast is None:
        read_message(raw)  # the full path still reads it (or raises its own LimitError / ContentError)
        return False
    _same(fast, _read_full(raw, 1000, 20))
    return True


def _encoded_word(text: str, charset: str, how: str) -> str:
    try:
        data = text.encode(charset)
    except (UnicodeError, LookupError):
        data = text.encode("utf-8")
    if how == "b":
        return f"=?{charset}?B?{base64.b64encode(data).decode()}?="
    q = quopri.encodestring(data, header=True).decode().replace("?", "=3F")
    return f"=?{charset}?q?{q}?="


@st.composite
def header_text(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(WORDS), max_size=5))
    out = []
    for part in parts:
        style = draw(st.sampled_from(["plain", "plain", "b", "q", "header"]))
        if style == "plain" and part.isascii():
            out.append(part)
        elif style == "header":
            out.append(Header(part, "iso-8859-1" if part.isascii() or part in "éß" else "utf-8").encode())
        else:
            out.append(_encoded_word(part, draw(st.sampled_from(CHARSETS)), style if style != "plain" else "b"))
    return draw(st.sampled_from(["", " ", "  "])).join(out) + draw(st.sampled_from(["", " ", "\t"]))


@st.composite
def simple_mail(draw: st.DrawFn) -> bytes:
    nl = draw(st.sampled_from(["\r\n", "\n"]))
    lines: list[str] = []
    subject = draw(header_text())
    if draw(st.booleans()) and " " in subject.strip():
        subject = subject.replace(" ", nl + " ", 1)  # folded
    lines.append(f"Subject: {subject}")
    name = draw(
        st.sampled_from(
            [
                "",
                "Ali",
                "Ali Baba",
                '"Ali Baba"',
                '"Ali, Baba"',
                "Ali  Baba",
                "Ali.B",
                _encoded_word("Ålí", "utf-8", "b"),
            ]
        )
    )
    address = draw(
        st.sampled_from(["ali@example.org", "a.b+c@ex-ample.org", '"a b"@x.org', "ali@[1.2.3.4]", "ali", "ali@", ""])
    )
    lines.append(f"From: {name} <{address}>" if name else f"From:{draw(st.sampled_from([' ', '', '  ']))}{address}")
    if draw(st.booleans()):
        lines.append(
            "Message-ID: "
            + draw(
                st.sampled_from(
                    ["<a.1@b>", "<a@b.c>", "a@b", "<a b@c>", "<>", "", "<a..b@c>", " <x@y> (c)", "<x@y><z@w>"]
                )
            )
        )
    for _ in range(draw(st.integers(0, 3))):
        lines.append("Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000")
    for loop in draw(
        st.lists(
            st.sampled_from(
                [
                    "Auto-Submitted: auto-replied",
                    "Precedence: bulk",
                    "List-Id: <l.x.org>",
                    "References: <a@b> <c@d>",
                    "In-Reply-To: <a@b>",
                    "auto-submitted: no",
                    "References: " + _encoded_word("é", "utf-8", "q"),
                ]
            ),
            max_size=3,
        )
    ):
        lines.append(loop)
    charset = draw(st.sampled_from([None, *CHARSETS]))
    ctype = draw(st.sampled_from([None, "text/plain", "Text/Plain", "text/html", "multipart/mixed"]))
    if ctype is not None:
        params = ""
        if charset is not None:
            params += draw(
                st.sampled_from(
                    [
                        f"; charset={charset}",
                        f'; charset="{charset}"',
                        f";{nl}\tcharset={charset}",
                        f"; CHARSET={charset}",
                    ]
                )
            )
        params += draw(
            st.sampled_from(
                [
                    "",
                    "; format=flowed",
                    "; format=Flowed; delsp=yes",
                    "; format=fixed",
                    "; name=a.txt",
                    "; charset*=utf-8''x",
                    "; format=flowed; format=fixed",
                ]
            )
        )
        lines.append(f"Content-Type: {ctype}{params}")
    cte = draw(
        st.sampled_from(
            [None, "7bit", "8bit", "binary", "quoted-printable", "Base64", "BASE64", "x-uue", "base64 ", "weird"]
        )
    )
    if cte is not None:
        lines.append(f"Content-Transfer-Encoding: {cte}")
    if draw(st.integers(0, 9)) == 0:
        lines.append("Content-Disposition: " + draw(st.sampled_from(["inline", "attachment; filename=a.txt"])))
    lines = draw(st.permutations(lines))
    text = draw(st.text(st.sampled_from("ab \t\r\n.>-éßمرحبا€😀"), max_size=60))
    try:
        data = text.encode(charset or "ascii")
    except (UnicodeError, LookupError):
        data = text.encode("utf-8")
    kind = (cte or "").strip().lower()
    if kind == "quoted-printable":
        data = quopri.encodestring(data)
    elif kind == "base64":
        data = base64.encodebytes(data)
        if draw(st.booleans()):
            data = data[:-2]  # a damaged tail: the stdlib's lenient decoding must be kept
    body = data.replace(b"\r\n", b"\n").replace(b"\n", nl.encode()) if kind != "binary" else data
    return (nl.join(lines) + nl + nl).encode("ascii") + body


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(simple_mail())
def test_fast_path_reads_what_the_full_path_reads(raw: bytes) -> None:
    _check(raw)


FRAGMENTS = [
    b"Subject: hi",
    b"Subject:",
    b"From: a@b",
    b"From: A B <a@b>",
    b"Message-ID: <x@y>",
    b"Received: x",
    b"Content-Type: text/plain",
    b"Content-Type: text/plain; charset=utf-8",
    b"content-type: TEXT/plain",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable",
    b" folded",
    b"\t=?utf-8?q?=C3=A9?=",
    b"From x",
    b"X: \xc3\xa9",
    b"\x00",
    b"\r",
    b"\n",
    b"\r\n",
    b":",
    b" ",
    b"aGVsbG8=",
    b"=C3=A9=",
    b"hello",
    b"--b",
    b"Content-Type: multipart/mixed; boundary=b",
    b"Content-Type: message/rfc822",
    b"Precedence: bulk",
    b"References: <a@b>",
]


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=14))
def test_fast_path_on_byte_soup(fragments: list[bytes]) -> None:
    _check(b"".join(fragments))


def test_a_plain_mail_takes_the_fast_path() -> None:
    raw = (
        b"From: bench@example.org\r\nTo: +96550000000@sms.test\r\nSubject: bench\r\n"
        b"Message-ID: <run.1@bench>\r\n\r\nBenchmark message run 1\r\n"
    )
    assert _check(raw)
    assert read_message(raw).text == "Benchmark message run 1\n"
    raw = (
        b'From: "Ali" <ali@example.org>\nSubject: =?utf-8?b?2YXYsdit2KjYpw==?=\n'
        b'Content-Type: text/plain; charset="UTF-8"; format=flowed\nContent-Transfer-Encoding: base64\n\n'
        + base64.encodebytes("مرحبا \nworld\n".encode())
    )
    assert _check(raw)
    assert read_message(raw).subject == "مرحبا"
    assert read_message(raw).text == "مرحبا world\n"


def test_other_mails_take_the_full_path() -> None:
    for raw in (
        b"Subject: x\r\nContent-Type: text/html\r\n\r\n<p>hi</p>",
        b"Subject: x\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nhi",
        b"Subject: \xc3\xa9\r\n\r\nhi",
        b"From x\r\nSubject: y\r\n\r\nhi",
        b"Subject: x\r\n",
        b"Subject: x\rFrom: y\r\n\r\nhi",
        b"\r\nhi",
    ):
        assert not _check(raw)
