"""Provider options and limits shared by the adapters: documented options only, checked when a provider is built."""

from __future__ import annotations

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError, ContentError
from mail2sms.parse.keyvalue import parse_keyvalue
from mail2sms.providers.registry import build_provider
from mail2sms.providers.wire import form_body, international_digits


def build(kind: str, **settings: object) -> object:
    config = ProviderConfig.model_validate({"type": kind, "key": "k", "sender": "Shop", **settings})
    return build_provider("p", config, httpx.AsyncClient())


def test_kapow_can_flash_and_schedule_a_year_ahead() -> None:
    """Kapow's limits say it sends flash SMS (FLASH prefix) and schedules up to 365 days ahead."""
    limits = build("kapow").limits  # type: ignore[attr-defined]
    assert (limits.flash, limits.schedule_days) == (True, 365)


def test_kwtsms_page_limit_can_be_lowered_only() -> None:
    """KwtSMS takes at most 6 pages; options.max_parts may lower that, never raise it."""
    assert build("kwtsms", options={"max_parts": 2}).limits.max_parts == 2  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"providers\.p\.options\.max_parts: must be a whole number from 1 to 6"):
        build("kwtsms", options={"max_parts": 7})


@pytest.mark.parametrize(
    ("kind", "options", "problem"),
    [
        ("kapow", {"route": "abc"}, "providers.p.options.route: may only use digits"),
        ("kapow", {"timezone": "Nowhere/City"}, "providers.p.options.timezone: 'Nowhere/City' is not a time zone"),
        ("kapow", {"returnid": True}, "providers.p.options.returnid: unknown option (known: dlr, flash_prefix, "
                                      "receipt_url, route, timezone)"),
        ("kwtsms", {"lang": 3}, "providers.p.options.lang: unknown option (known: api, max_parts, receipt_path, "
                                "test)"),
    ],
)
def test_unknown_or_bad_options_name_the_key(kind: str, options: dict[str, object], problem: str) -> None:
    """A misspelt, unknown or invalid option is a ConfigError naming its key path and the rule."""
    with pytest.raises(ConfigError) as info:
        build(kind, options=options)
    assert info.value.problems[0].startswith(problem)


def test_documented_kapow_options_are_accepted() -> None:
    """route (a shortcode), dlr, timezone and flash_prefix are Kapow's documented extras."""
    build("kapow", options={"route": "66100", "dlr": "reports@example.org", "timezone": "UTC", "flash_prefix": "F"})


@pytest.mark.parametrize(("number", "wire"), [("+96550000000", "96550000000"), ("0044 7700 900123", "447700900123"),
                                              ("447700900123", "447700900123"), ("12ab", None), ("123", None)])
def test_international_digits(number: str, wire: str | None) -> None:
    """Numbers go to providers as international digits without + or 00; non-numbers are None."""
    assert international_digits(number) == wire


def test_form_body_refuses_what_the_charset_cannot_carry() -> None:
    """An ISO-8859-1 form carries é as one byte and refuses a character it has no byte for."""
    assert form_body([("message", "Café")], "iso-8859-1") == b"message=Caf%E9"
    with pytest.raises(UnicodeEncodeError):
        form_body([("message", "€")], "iso-8859-1")


@pytest.mark.parametrize(("value", "flash"), [("yes", True), ("1", True), ("TRUE", True), ("no", False), ("", False)])
def test_keyvalue_flash_key(value: str, flash: bool) -> None:
    """The keyvalue `flash:` key asks for a flash SMS; yes/1/true and no/0/false are understood."""
    assert parse_keyvalue(f"mobile:96550000000\nflash:{value}\ntext:hi").flash is flash


def test_keyvalue_flash_key_with_a_bad_value_names_the_line() -> None:
    """Any other flash: value is refused with its line number."""
    with pytest.raises(ContentError, match=r"^line 2: flash must be 1, yes or true \(or 0, no, false\), not 'maybe'"):
        parse_keyvalue("mobile:96550000000\nflash:maybe\ntext:hi")
