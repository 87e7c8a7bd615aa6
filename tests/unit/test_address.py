"""Address format: the number in an RCPT local part, and Kapow mail-form credentials in the body."""

from __future__ import annotations

import pytest

from mail2sms.errors import ContentError, NumberError
from mail2sms.parse.address import parse_kapow_credentials, parse_local_part


@pytest.mark.parametrize(
    ("local", "region"),
    [
        ("+96550000000", None),
        ("0096550000000", None),
        ("96550000000", None),
        ("50000000", "KW"),
        ("96550000000", "GB"),
    ],
)
def test_local_part_forms(local: str, region: str | None) -> None:
    """+, 00, bare international and national local parts all name the same Kuwaiti number."""
    assert parse_local_part(local, region) == "96550000000"


def test_uk_national_local_part() -> None:
    """A UK national number on a GB route reads as +44."""
    assert parse_local_part("07777123456", "GB") == "447777123456"


@pytest.mark.parametrize(
    ("local", "region", "message"),
    [
        ("sms-96550000000", None, "'sms-96550000000' is not a phone number"),
        ("96550000000+tag", None, "is not a phone number"),
        ("info", "KW", "'info' is not a phone number: it has no digits"),
        ("0501234567", None, "national number but the route has no region"),
        ("+9655", None, "too short for Kuwait"),
    ],
)
def test_bad_local_parts_are_named(local: str, region: str | None, message: str) -> None:
    """A local part that is not a number is refused with a NumberError naming it and the reason."""
    with pytest.raises(NumberError) as caught:
        parse_local_part(local, region)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("myuser\nmypass\n", ("myuser", "mypass")),
        ("\r\n  myuser  \r\n\r\n my pass \r\n", ("myuser", "my pass")),
        ("username: myuser\npassword: mypass", ("myuser", "mypass")),
        ("Password:mypass\nUSERNAME:myuser", ("myuser", "mypass")),
        ("myuser\nmypass\n-- \nSent from my phone", ("myuser", "mypass")),
        ("myuser\nmypass\nKind regards", ("myuser", "mypass")),
    ],
)
def test_kapow_credentials(body: str, expected: tuple[str, str]) -> None:
    """Username and password come from two lines, labelled or not; later lines are ignored."""
    assert parse_kapow_credentials(body) == expected


@pytest.mark.parametrize("body", ["", "\n\n  \n", "-- \nsignature only"])
def test_no_kapow_credentials(body: str) -> None:
    """An empty body (a trusted sender) carries no credentials."""
    assert parse_kapow_credentials(body) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("onlyuser", "the body has one line"),
        ("username: myuser", "no password: line"),
        ("password: hunter2-secret", "no username: line"),
    ],
)
def test_incomplete_kapow_credentials(body: str, message: str) -> None:
    """Half the credentials is an error, and the error never repeats the password."""
    with pytest.raises(ContentError) as caught:
        parse_kapow_credentials(body)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)
