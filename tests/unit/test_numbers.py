"""Phone numbers as people write them → E.164 digits, or a NumberError that says which value and why."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mail2sms.errors import NumberError
from mail2sms.parse.numbers import normalize


@pytest.mark.parametrize(
    ("value", "region"),
    [
        ("+96550000000", None),
        ("0096550000000", None),
        ("96550000000", None),
        ("+965 5000 0000", None),
        ("+965-5000-0000", None),
        ("(+965) 5000.0000", None),
        ("00 965 [5000] 0000", None),
        ("+96550000000", "GB"),
        ("96550000000", "KW"),
        ("50000000", "KW"),
        ("5000 0000", "KW"),
        ("٩٦٥٥٠٠٠٠٠٠٠", None),
        ("\u00a0+965\u00a05000\u20110000 ", None),
    ],
)
def test_kuwait_number_in_every_form(value: str, region: str | None) -> None:
    """A Kuwaiti mobile with +, 00, bare, national, separators or Arabic digits reads as one number."""
    assert normalize(value, region) == "96550000000"


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("07777123456", "GB", "447777123456"),
        ("07777 123 456", "GB", "447777123456"),
        ("+44 7777 123456", None, "447777123456"),
        ("+44 (0)7777 123456", None, "447777123456"),
        ("447777123456", None, "447777123456"),
        ("0044 7777 123456", "KW", "447777123456"),
        ("2025550100", "US", "12025550100"),
        ("+1 202 555 0100", None, "12025550100"),
    ],
)
def test_other_countries(value: str, region: str | None, expected: str) -> None:
    """UK and US numbers read right in national and international forms, whatever the route's region."""
    assert normalize(value, region) == expected


def test_explicit_plus_accepts_a_possible_but_unallocated_number() -> None:
    """A +number whose length fits its country passes even if the range is unknown (new ranges must work)."""
    assert normalize("+96510000000", None) == "96510000000"


def test_bare_digits_need_a_valid_number_to_be_read_as_international() -> None:
    """Bare digits that are only "possible" with a + are not guessed international; they read as national."""
    with pytest.raises(NumberError, match="national number but the route has no region"):
        normalize("96510000000", None)


def test_bare_valid_international_wins_over_the_region() -> None:
    """Digits that form a valid number with + in front are international even on a route with a region."""
    assert normalize("447777123456", "KW") == "447777123456"


@pytest.mark.parametrize(
    ("value", "region", "message"),
    [
        ("12ab", None, "'12ab' is not a phone number: only digits, spaces, dashes, dots, brackets"),
        ("+965+5000", None, "'+965+5000' is not a phone number"),
        ("abc", None, "'abc' is not a phone number: it has no digits"),
        ("", "KW", "'' is not a phone number: it has no digits"),
        ("+9655", None, "'+9655' is too short for Kuwait"),
        ("+965", None, "'+965' is too short for Kuwait: it has only the country code"),
        (
            "+96550000000000",
            None,
            "'+96550000000000' is too long for Kuwait: numbers there have 7 or 8 digits",
        ),
        (
            "0501234567",
            None,
            "'0501234567' is a national number but the route has no region: write it with +",
        ),
        ("0501234567", "KW", "'0501234567' is too long for Kuwait"),
        ("+999 1234", None, "'+999 1234' does not start with a known country code"),
        ("+0123456", None, "'+0123456' does not start with a known country code"),
        ("1234567890123456", None, "has 16 digits, but a phone number has at most 15"),
        ("+44 7777", None, "is too short for United Kingdom"),
        ("+1555", None, "'+1555' is too short for +1 numbers"),
    ],
)
def test_refusals_name_the_value_and_the_reason(value: str, region: str | None, message: str) -> None:
    """Every refusal names the value as written and says in plain words what is wrong with it."""
    with pytest.raises(NumberError) as caught:
        normalize(value, region)
    assert message in str(caught.value)


def test_long_values_are_shortened_in_messages() -> None:
    """A huge value is cut short in the message so that an SMTP reply line stays readable."""
    with pytest.raises(NumberError) as caught:
        normalize("x" * 5000, None)
    assert len(str(caught.value)) < 200


def test_unknown_region_is_named() -> None:
    """A national number on a route whose region is not a real region code says so."""
    with pytest.raises(NumberError, match="region 'XX' is not known"):
        normalize("50000000", "XX")


@given(st.text(max_size=40), st.sampled_from([None, "KW", "GB", "US", "DE"]))
def test_normalize_returns_digits_or_raises_number_error(value: str, region: str | None) -> None:
    """Any input gives at most 15 plain digits or a NumberError; nothing else escapes."""
    try:
        result = normalize(value, region)
    except NumberError:
        return
    else:
        assert result.isascii()
        assert result.isdigit()
        assert len(result) <= 15


@given(st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True))
def test_normalize_is_idempotent(value: str) -> None:
    """A number's own E.164 digits, written with +, read back as the same digits."""
    try:
        first = normalize(value, None)
    except NumberError:
        return
    assert normalize("+" + first, None) == first
