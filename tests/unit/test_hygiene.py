"""Envelope addresses and DATA framing: what smtp.hygiene lets through and what it refuses."""

from __future__ import annotations

import pytest

from mail2sms.smtp.hygiene import address_problem, smuggling_problem


@pytest.mark.parametrize("address", [
    "alice@example.org",
    "+96550000000@sms.localhost",
    "0096550000000@sms.test",
    "root@localhost",
    "alarm@panel",
    "first.last+tag@sub.example.co.uk",
    "a@[192.0.2.1]",
    "a@[IPv6:2001:db8::1]",
    "a@example.org.",
])
def test_plain_addresses_pass(address: str) -> None:
    """Ordinary, local and LAN-style addresses are accepted, including special-use names such as localhost."""
    assert address_problem(address) is None


@pytest.mark.parametrize(("address", "why"), [
    ("", "empty"),
    ("a\rb@example.org", "line break"),
    ("a\nb@example.org", "line break"),
    ("a\0b@example.org", "NUL"),
    ("a b@example.org", "space"),
    ("a\tb@example.org", "control"),
    ("a\x7fb@example.org", "control"),
    ("\u00e9@example.org", "ASCII"),
    ('"a b"@example.org', "space"),
    ('"ab"@example.org', "before the @"),
    ("a..b@example.org", "before the @"),
    ("a@b@example.org", "before the @"),
    ("example.org", "local@domain"),
    ("a@", "local@domain"),
    ("a@-x.org", "host name"),
    ("a@x_y.org", "host name"),
    ("a@[999.1.1.1]", "address literal"),
    ("a" * 250 + "@x.org", "longer"),
])
def test_illegal_addresses_are_named(address: str, why: str) -> None:
    """Each refused address comes with a reason that says what is wrong with it."""
    problem = address_problem(address)
    assert problem is not None
    assert why in problem


@pytest.mark.parametrize("content", [
    b"Subject: x\r\n\r\nhello\r\n",
    b"Subject: x\r\n\r\n.\r\nafter a lone dot line (already unstuffed)\r\n",
    b"Subject: x\r\n\r\nprice 3.\r\n",
    b"Subject: x\r\n\r\nbare\nLF lines without dots\r\n",
    b"Subject: x\r\n\r\n\r\n\r\n",
])
def test_ordinary_content_is_not_smuggling(content: bytes) -> None:
    """CRLF text, a properly stuffed dot line and bare LFs away from any dot are not refused."""
    assert smuggling_problem(content) is None


@pytest.mark.parametrize("content", [
    b"text\n.\nMAIL FROM:<x@y>\r\n",
    b"text\r.\rMAIL FROM:<x@y>\r\n",
    b"text\n.\r\nMAIL FROM:<x@y>\r\n",
    b"text\r.\r\nMAIL FROM:<x@y>\r\n",
    b"text\r\n\nMAIL FROM:<x@y>\r\n",  # <CRLF>.<LF> after aiosmtpd removed the dot
    b"text\r\n\rMAIL FROM:<x@y>\r\n",  # <CRLF>.<CR> likewise
    b"\nMAIL FROM:<x@y>\r\n",  # the very first line was ".<LF>"
])
def test_fake_ends_of_data_are_smuggling(content: bytes) -> None:
    """Every bare-CR/LF variant of an end-of-data sequence is found."""
    assert smuggling_problem(content) is not None
