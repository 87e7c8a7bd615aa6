"""The KwtSMS SMTP-API `key:value` body: what it reads, and errors that name the line but no secret."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mail2sms.errors import ContentError, LimitError
from mail2sms.parse.keyvalue import KeyValueMessage, parse_keyvalue

SEED_SAMPLE = """username:xx2xxx
password:xx3xxx
sender:SenderID
mobile:96597119220,96566074414
lang:1
text:Meet me at starbuck!
"""


def test_seed_sample() -> None:
    """The sample body from KwtSMS's own documentation reads field by field."""
    message = parse_keyvalue(SEED_SAMPLE)
    assert message == KeyValueMessage(
        username="xx2xxx",
        password="xx3xxx",
        sender="SenderID",
        mobiles=("96597119220", "96566074414"),
        lang=1,
        text="Meet me at starbuck!",
        test=False,
        sendtime=None,
        lines={"username": 1, "password": 2, "sender": 3, "mobile": 4, "lang": 5, "text": 6},
    )


def test_plus_means_space_in_sender_and_text() -> None:
    """'+' is a space in sender and text (KwtSMS rule), but not in other fields."""
    message = parse_keyvalue("sender:My+Shop\nmobile:+96550000000\ntext:Meet+me+at+5")
    assert message.sender == "My Shop"
    assert message.text == "Meet me at 5"
    assert message.mobiles == ("+96550000000",)


def test_plus_as_space_can_be_turned_off() -> None:
    """With plus_as_space=False a '+' in the text is a plus."""
    message = parse_keyvalue("sender:A+B\nmobile:96550000000\ntext:1+1=2", plus_as_space=False)
    assert (message.sender, message.text) == ("A+B", "1+1=2")


def test_keys_are_case_insensitive_and_trimmed() -> None:
    """Keys match in any case, with spaces around the key and the value."""
    message = parse_keyvalue("  MOBILE : 96550000000 \r\nText:  hello  \r\n")
    assert message.mobiles == ("96550000000",)
    assert message.text == "hello"


def test_repeated_text_lines_join_with_newlines() -> None:
    """Several text: lines make a multi-line SMS; an empty text: line keeps a blank line."""
    message = parse_keyvalue("mobile:96550000000\ntext:line one\ntext:\ntext:line three")
    assert message.text == "line one\n\nline three"
    assert message.lines["text"] == 2


def test_repeated_mobile_lines_add_numbers() -> None:
    """Numbers from several mobile: lines and separators (comma, semicolon, space) all count."""
    body = "mobile:96550000000, 96550000001;96550000002\nmobile:96550000003 96550000004\ntext:hi"
    assert parse_keyvalue(body).mobiles == tuple(f"9655000000{i}" for i in range(5))


def test_spaces_inside_a_formatted_number_do_not_split_it() -> None:
    """'+965 5000 0000' is one number: spaces split only tokens that are whole numbers by themselves."""
    message = parse_keyvalue("mobile:+965 5000 0000, 0044 7777 123456\ntext:hi")
    assert message.mobiles == ("+965 5000 0000", "0044 7777 123456")


def test_colon_inside_the_value_is_kept() -> None:
    """Only the first colon separates key and value."""
    assert parse_keyvalue("mobile:96550000000\ntext:Meet at 10:30").text == "Meet at 10:30"


def test_blank_lines_and_signature_are_ignored() -> None:
    """Blank lines are skipped and everything after a '-- ' signature line is ignored."""
    body = "\n\nmobile:96550000000\n\n\ntext:hi\n-- \nAli Hassan\nSales: +965 2222 2222\n"
    message = parse_keyvalue(body)
    assert (message.mobiles, message.text) == (("96550000000",), "hi")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("no", False), ("", False)],
)
def test_test_flag(value: str, expected: bool) -> None:
    """test: is true for 1/yes/true and false for 0/no/false or empty."""
    assert parse_keyvalue(f"mobile:96550000000\ntext:hi\ntest:{value}").test is expected


def test_sendtime_and_lang_are_read() -> None:
    """sendtime is kept as written; lang is a number 1-4."""
    message = parse_keyvalue("mobile:96550000000\ntext:hi\nlang:3\nsendtime:2025-01-31 10:00")
    assert (message.lang, message.sendtime) == (3, "2025-01-31 10:00")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "username:u\npassword:p\nsender:S\nmobil:96550000000\ntext:hi",
            "line 4: unknown key 'mobil' "
            "(known keys: username, password, sender, mobile, lang, text, test, sendtime, flash)",
        ),
        ("mobile:96550000000\ntext:hi\nlang:5", "line 3: lang must be 1, 2, 3 or 4"),
        (
            "mobile:96550000000\nlang:arabic\ntext:hi",
            "line 2: lang must be 1, 2, 3 or 4 (1 English, 2 Arabic",
        ),
        (
            "mobile:96550000000\ntext:hi\ntest:maybe",
            "line 3: test must be 1, yes or true (or 0, no, false), not",
        ),
        ("text:hi", "no mobile: line"),
        ("mobile:\ntext:hi", "line 1: mobile: has no number"),
        ("mobile:96550000000", "the text: line is missing or empty"),
        ("mobile:96550000000\ntext:   ", "the text: line is missing or empty"),
        ("mobile:96550000000\ntext:+++", "the text: line is missing or empty"),
        ("mobile:96550000000\nhello there\ntext:hi", "line 2: expected key:value, but the line has no colon"),
        (
            "sender:A\nsender:B\nmobile:96550000000\ntext:hi",
            "line 2: sender: is given twice (first on line 1)",
        ),
    ],
)
def test_errors_name_the_line_and_key(body: str, message: str) -> None:
    """Each mistake is reported with its line number and key, so the writer can fix it."""
    with pytest.raises(ContentError) as caught:
        parse_keyvalue(body)
    assert message in str(caught.value)


def test_wrapped_text_line_gets_a_hint() -> None:
    """A text line broken by the mail client says that every text line needs its own text: key."""
    with pytest.raises(ContentError, match=r"line 3: .*start every line with text:"):
        parse_keyvalue("mobile:96550000000\ntext:a long message that the client\nwrapped here")


SECRET = "S3cr3t-pa55"


@pytest.mark.parametrize(
    "body",
    [
        f"password:{SECRET}\npassword:{SECRET}\nmobile:96550000000\ntext:hi",
        f"password {SECRET}\nmobile:96550000000\ntext:hi",
        f"password {SECRET}:x\nmobile:96550000000\ntext:hi",
        f"pasword:{SECRET}\nmobile:96550000000\ntext:hi",
        f"{SECRET}\nmobile:96550000000\ntext:hi",
        f"password:{SECRET}\ntext:hi",
        f"password:{SECRET}\nmobile:96550000000",
        f"password:{SECRET}\nmobile:96550000000\ntext:hi\nlang:{SECRET}",
        f"mobile:96550000000\ntext:hi\ntest:{SECRET}\npassword:{SECRET}",
        f"mobile:96550000000\n{SECRET}:x\npassword:{SECRET}\ntext:hi",
        f"pasword:{SECRET}\nmobile:96550000000\ntext:hi\nlang:{SECRET}",
    ],
)
def test_password_never_appears_in_errors(body: str) -> None:
    """However the body is wrong, the error message never contains the password value."""
    with pytest.raises(ContentError) as caught:
        parse_keyvalue(body)
    assert SECRET not in str(caught.value)


def test_password_not_in_repr() -> None:
    """The parsed message's repr does not show the password."""
    message = parse_keyvalue(f"username:u\npassword:{SECRET}\nmobile:96550000000\ntext:hi")
    assert message.password == SECRET
    assert SECRET not in repr(message)


def test_byte_order_mark_is_ignored() -> None:
    """A BOM at the start of the body does not make the first key unknown."""
    assert parse_keyvalue("\ufeffmobile:96550000000\ntext:hi").mobiles == ("96550000000",)


@given(st.text(max_size=300))
def test_any_body_gives_a_message_or_content_error(body: str) -> None:
    """Arbitrary text never raises anything but ContentError."""
    try:
        parse_keyvalue(body)
    except ContentError:
        return


def test_more_numbers_than_the_cap_is_a_limit_error_naming_it() -> None:
    """A body listing more numbers than `max_numbers` stops with a LimitError naming the line and the limit."""
    numbers = ",".join(f"9655{i:07d}" for i in range(10_000))
    with pytest.raises(LimitError) as caught:
        parse_keyvalue(f"mobile:{numbers}\ntext:hi", max_numbers=1000)
    assert "at most 1000" in str(caught.value)
    assert str(caught.value).startswith("line 1:")
    assert len(parse_keyvalue(f"mobile:{numbers}\ntext:hi").mobiles) == 10_000  # no cap given: no limit here
