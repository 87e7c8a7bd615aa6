"""Phone numbers as people write them → E.164 digits without the '+', or a NumberError that says why not.

Every number mail2sms sends to comes through `normalize()`: RCPT local parts, `mobile:` lines and CSV cells.
The reading rule (DESIGN.md "address"): a number is international when it starts with `+` or `00`, or when its
digits form a *valid* number with a `+` in front; otherwise it is national in the route's region.

Two levels of strictness, on purpose:
- An explicit `+`/`00` number only has to be *possible* (a known country code and a length that fits it). The
  writer told us it is international; refusing it because a new number range is missing from the library's
  metadata would block real recipients, and the provider has the final word anyway.
- Bare digits are read as international only when they form a *valid* number. This is a guess, and a guess
  based on length alone would swallow national numbers (eight Kuwaiti digits are also a "possible" number in
  several countries), so it must match a number range that really exists.
National numbers (explicit region) again only have to be possible, for the same reason as `+`/`00`.

Error messages go to the sender in SMTP replies and outcome mail: they name the value (shortened) and why.
This module does no I/O after import and must never accept a value it cannot turn into plain digits.

All of the library's number metadata is loaded when this module is imported (about 50 ms, 2 MB): phonenumbers
otherwise imports each region's module on first use, under its own lock, and when that import failed under a
file-descriptor flood ("too many open files") the lock stayed held and every later RCPT hung.
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from mail2sms.errors import NumberError

phonenumbers.PhoneMetadata.load_all()  # no lazy metadata import later, when file descriptors may have run out

MAX_DIGITS = 15  # ITU-T E.164: country code + national number
_SHOWN = 40  # longer values are shortened in messages: a reply line has little room

# Separators people put into numbers: whitespace (incl. no-break space), dashes of all kinds, dots, brackets.
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212.()\[\]]+")
_SHAPE = re.compile(r"(\+|00)?([0-9]+)")
_SHARED_CODES = frozenset({1, 7})  # +1: US, Canada and the Caribbean; +7: Russia and Kazakhstan

_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "the wrong length",
}


def normalize(value: str, region: str | None) -> str:
    """Read `value` by the rule in the module docstring; return E.164 digits such as '96550000000'."""
    shown = _show(value)
    compact = _ascii_digits(_SEPARATORS.sub("", value))
    match = _SHAPE.fullmatch(compact)
    if match is None:
        if not any(c.isdigit() for c in compact):
            raise NumberError(f"{shown} is not a phone number: it has no digits")
        raise NumberError(
            f"{shown} is not a phone number: only digits, spaces, dashes, dots, brackets "
            "and a leading + or 00 are allowed"
        )
    prefix, digits = match.groups()
    if len(digits) > MAX_DIGITS:
        raise NumberError(f"{shown} has {len(digits)} digits, but a phone number has at most {MAX_DIGITS}")
    if prefix:
        return _international(digits, shown)
    guess = _parse("+" + digits, None)
    if guess is not None and phonenumbers.is_valid_number(guess):
        return _e164(guess)
    if region is None:
        raise NumberError(
            f"{shown} is a national number but the route has no region: write it with + and the country code"
        )
    return _national(digits, region, shown)


def _international(digits: str, shown: str) -> str:
    code = _country_code(digits)
    if code is None:
        raise NumberError(f"{shown} does not start with a known country code")
    if len(digits) == len(str(code)):
        raise NumberError(f"{shown} is too short for {_place(code)}: it has only the country code")
    number = _parse("+" + digits, None)
    if number is None:
        raise NumberError(f"{shown} is too short for {_place(code)}")
    _require_possible(number, shown)
    return _e164(number)


def _national(digits: str, region: str, shown: str) -> str:
    code = phonenumbers.country_code_for_region(region)
    if not code:
        raise NumberError(f"{shown} is a national number, but the route's region {region!r} is not known")
    number = _parse(digits, region)
    if number is None:
        raise NumberError(f"{shown} is not a possible number for {_place(code)}{_lengths(code)}")
    _require_possible(number, shown)
    e164 = _e164(number)
    if len(e164) > MAX_DIGITS:
        raise NumberError(f"{shown} is too long for {_place(number.country_code or code)}")
    return e164


def _require_possible(number: phonenumbers.PhoneNumber, shown: str) -> None:
    if number.italian_leading_zero or not number.national_number:
        # Zeros right after the country code: Italy's are part of the number, but elsewhere the library reads
        # them differently each time (+49001000 → +4901000 → +491000): only a number that reads back as itself
        # is one we can send to (and dedupe, and report) consistently.
        e164 = _e164(number)
        again = _parse("+" + e164, None)
        if again is None or _e164(again) != e164:
            raise NumberError(f"{shown} is not a phone number: the zeros after the country code are not part of it")
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == ValidationResult.IS_POSSIBLE:
        return
    code = number.country_code or 0
    if reason == ValidationResult.INVALID_COUNTRY_CODE:
        raise NumberError(f"{shown} does not start with a known country code")
    if reason == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        raise NumberError(f"{shown} is too short for {_place(code)}: is the area code missing?")
    why = _REASONS.get(reason, "not a possible number")
    raise NumberError(f"{shown} is {why} for {_place(code)}{_lengths(code)}")


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


def _e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164).removeprefix("+")


def _country_code(digits: str) -> int | None:
    # Country codes are a prefix code (no code is the start of another), so the first hit is the only one.
    if digits.startswith("0"):
        return None
    for size in (1, 2, 3):
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return code
    return None


def _place(code: int) -> str:
    """'Kuwait' for 965; '+1 numbers' where so many countries share the code that one name would mislead."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    name = _region_name(regions[0]) if regions and code not in _SHARED_CODES else ""
    return name or f"+{code} numbers"


def _region_name(region: str) -> str:
    # phonenumbers.geocoder loads the whole geocoding database (hundreds of ms); the locale table is enough.
    # Imported here: the locale table costs ~100 MB of memory and only error messages need a country's name.
    # That import can fail when file descriptors run out (a flood): then the message says "+965 numbers".
    try:
        from phonenumbers.geodata.locale import LOCALE_DATA
    except (ImportError, OSError):
        return ""

    names = LOCALE_DATA.get(region, {})
    name = names.get("en", "")
    if name.startswith("*"):
        name = names.get(name[1:], "")
    return name


def _lengths(code: int) -> str:
    """': numbers there have 8 digits after +965' — the hint that lets a sender fix the number."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    if not regions:
        return ""
    if regions[0] == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
        meta = phonenumbers.PhoneMetadata.metadata_for_nongeo_region(code)
    else:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(regions[0])
    if meta is None or meta.general_desc is None or not meta.general_desc.possible_length:
        return ""
    sizes = [str(size) for size in sorted(set(meta.general_desc.possible_length))]
    count = sizes[0] if len(sizes) == 1 else ", ".join(sizes[:-1]) + " or " + sizes[-1]
    return f": numbers there have {count} digits after +{code}"


def _ascii_digits(text: str) -> str:
    # Arabic-Indic and other decimal digits (٩٦٥…) are common in Kuwait; read them as the digits they are.
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() and not c.isascii() else c for c in text)


def _show(value: str) -> str:
    text = value if len(value) <= _SHOWN else value[: _SHOWN - 1] + "…"
    return repr(text)
