"""parse.headers: every header bound refuses with a message naming it, real-world headers pass, nested parts count,
and the cheap scan sends only simple mails to the event loop."""

from __future__ import annotations

import pytest

from mail2sms.errors import LimitError
from mail2sms.parse import headers
from mail2sms.parse.headers import HeaderLimitError, cheap_to_parse, check_top
from mail2sms.parse.mime import MAX_LINES, read_message


def fold(name: str, items: list[str], sep: str = " ") -> bytes:
    lines = [sep.join(items[i : i + 8]) for i in range(0, len(items), 8)]
    return f"{name}: ".encode() + (sep.rstrip() + "\r\n ").join(lines).encode() + b"\r\n"


BOUNDS = {
    "field size": (fold("Subject", ["x" * 70] * 300), "Subject header is larger than"),
    "field words": (fold("Subject", ["w"] * 1600), "Subject header has more than 1500 words"),
    "encoded words": (b"".join(fold(f"X-{i}", ["=?utf-8?q?a?="] * 200) for i in range(6)), "encoded words"),
    "rfc 2231": (b"".join(b"X-%d: a; x*0*=a; x*1*=b; x*2=c\r\n" % i for i in range(40)), "RFC 2231"),
    "field parameters": (b"Content-Type: text/plain" + b"; a=b" * 40 + b"\r\n", "more than 32 parameters"),
    "header block": (b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(300)), "header block is larger"),
}


@pytest.mark.parametrize(("head", "named"), BOUNDS.values(), ids=BOUNDS.keys())
def test_each_bound_names_itself(head: bytes, named: str) -> None:
    """A header block over one bound raises HeaderLimitError (a LimitError: 552 5.3.4) whose text names the bound."""
    with pytest.raises(HeaderLimitError) as caught:
        read_message(head + b"\r\nbody\r\n")
    assert named in str(caught.value)
    assert isinstance(caught.value, LimitError)


def test_real_world_headers_pass() -> None:
    """A hundred Received lines, a DKIM signature, a References of 150 ids and a long RFC 2231 file name are fine."""
    received = b"".join(
        b"Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\r\n\tby relay.example.org (Postfix)"
        b" with ESMTPS id 4F%d for <a@sms.test>; Tue, 1 Dec 2026 17:33:48 +0000 (UTC)\r\n" % (i, i, i % 250, i)
        for i in range(100)
    )
    dkim = fold(
        "DKIM-Signature",
        [
            "v=1;",
            "a=rsa-sha256;",
            "c=relaxed/relaxed;",
            "d=example.org;",
            "s=s1;",
            "h=from:to:subject:date:message-id;",
            "bh=" + "A" * 44 + ";",
            "b=" + "B" * 344,
        ],
    )
    references = fold("References", [f"<id{i}.{'x' * 30}@mail.example.org>" for i in range(150)])
    part = (
        b"Content-Type: application/pdf; name*0*=utf-8''long%20name%20one; name*1*=%20two; name*2*=.pdf\r\n"
        b"Content-Disposition: attachment; filename*0*=utf-8''long%20name; filename*1*=.pdf\r\n"
    )
    raw = (
        received + dkim + references + b"Subject: =?utf-8?q?caf=C3=A9?= menu\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n"
        + part
        + b"\r\nJVBERi0=\r\n--b--\r\n"
    )
    content = read_message(raw)
    assert content.text == "hello"
    assert content.received_count == 100
    assert content.subject == "caf\u00e9 menu"


def test_nested_part_headers_are_bounded_too() -> None:
    """A part's header block inside a multipart counts: 40 parameters in a nested Content-Type are refused."""
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain"
        + b"; a=b" * 40
        + b"\r\n\r\nhello\r\n--b--\r\n"
    )
    assert check_top(raw).params == 1  # the top-level block alone passes
    with pytest.raises(HeaderLimitError, match="more than 32 parameters"):
        read_message(raw)


def test_total_parameters_over_all_parts() -> None:
    """Many parts, each within the per-field bound, still cannot exceed MAX_PARAMS together."""
    part = b"--b\r\nContent-Type: text/plain" + b"; a=b" * 30 + b"\r\n\r\nx\r\n"
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + part * 40 + b"--b--\r\n"
    with pytest.raises(HeaderLimitError, match=f"more than {headers.MAX_PARAMS} parameters"):
        read_message(raw)


def test_too_many_lines_is_a_limit() -> None:
    """More lines than MAX_LINES (CRLF, LF or bare CR each end one) is refused before any parser runs."""
    with pytest.raises(LimitError, match=f"more than {MAX_LINES} lines"):
        read_message(b"Subject: x\r\n\r\n" + b"\r" * (MAX_LINES + 1))


def test_only_the_first_subject_and_from_are_read() -> None:
    """Twenty copies of a costly From are parsed once: the first is the sender, the rest are ignored."""
    many = fold("From", [f"a{i}@example.org" for i in range(500)], ", ")
    content = read_message(b"From: first@example.org\r\n" + many * 20 + b"Subject: s\r\n\r\nbody\r\n")
    assert content.from_ == "first@example.org"


CHEAP = {
    "plain": (b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n", True),
    "few encoded words": (b"Subject: =?utf-8?q?a?= =?utf-8?q?b?=\r\n\r\nhello\r\n", True),
    "many encoded words": (fold("Subject", ["=?utf-8?q?a?="] * 30) + b"\r\nhello\r\n", False),
    "rfc 2231": (b"Content-Type: text/plain; x*0*=utf-8''a\r\n\r\nhello\r\n", False),
    "multipart": (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n", False),
    "wide field": (fold("To", [f"a{i}@example.org" for i in range(150)], ", ") + b"\r\nhello\r\n", False),
    "many lines": (b"Subject: s\r\n\r\n" + b"a\r\n" * 3000, False),
    "big": (b"Subject: s\r\n\r\n" + b"a" * 70_000, False),
    "over a bound": (fold("Subject", ["w"] * 1600) + b"\r\nhello\r\n", False),
}


@pytest.mark.parametrize(("raw", "cheap"), CHEAP.values(), ids=CHEAP.keys())
def test_cheap_scan_chooses_the_loop_only_for_simple_mail(raw: bytes, cheap: bool) -> None:
    """Small single-part mails with plain headers parse on the loop; anything costly goes to the worker."""
    assert cheap_to_parse(raw) is cheap


def test_relayed_mail_with_many_received_lines_is_still_cheap() -> None:
    """Separators spread over many Received lines do not make one wide field: the mail stays on the loop."""
    received = b"".join(
        b"Received: from a%d (b [192.0.2.1]) by c with ESMTP id %d; Tue, 1 Dec 2026 (UTC)\r\n" % (i, i)
        for i in range(30)
    )
    assert cheap_to_parse(received + b"Subject: hi\r\n\r\nhello\r\n")
