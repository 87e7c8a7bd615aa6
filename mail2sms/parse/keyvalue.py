"""The KwtSMS SMTP-API body (`key:value` lines) → `KeyValueMessage`, or a ContentError naming the line.

KwtSMS's own gateway drops a mail with a typo silently; mail2sms answers with the line number and the key, so
the writer can fix it. Rules (DESIGN.md "keyvalue", providers.md "KwtSMS"): one `key:value` per line with the
value on the same line; keys are case-insensitive; `+` means a space in `sender` and `text` (the KwtSMS rule,
a route may turn it off); repeated `text:` lines join with a newline and repeated `mobile:` lines add numbers.
A signature after a `-- ` line is ignored.

The password is a secret: it never appears in an error message or a repr, not even when its line is malformed.
Numbers are returned as written; `numbers.normalize()` reads them. No I/O. With `max_numbers`, reading stops with
a LimitError as soon as the mail lists more numbers than that, so a 10,000-number body costs no more than the
limit (the caller passes the route's cap; 552 5.3.4 names it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mail2sms.errors import ContentError, LimitError

KEYS = ("username", "password", "sender", "mobile", "lang", "text", "test", "sendtime", "flash")
_SINGLE = frozenset({"username", "password", "sender", "lang", "test", "sendtime", "flash"})
_LANGS = "1 English, 2 Arabic in Windows-1256, 3 Arabic in UTF-8, 4 Unicode"
_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off", ""})
_SHOWABLE_KEY = re.compile(r"[A-Za-z0-9_.-]{1,30}")
_NEWLINES = re.compile(r"\r\n|\r|\n")
# A whitespace-separated token this long is a whole number, not a group of a formatted one ("+965 5000 0000").
_WHOLE_NUMBER = re.compile(r"\+?[0-9]{7,}")


@dataclass(frozen=True)
class KeyValueMessage:
    """One KwtSMS-style mail. `lines` maps each key given to the line it first appeared on, for messages."""

    username: str | None
    password: str | None = field(repr=False)
    sender: str | None
    mobiles: tuple[str, ...]
    lang: int | None
    text: str
    test: bool
    sendtime: str | None
    lines: dict[str, int] = field(default_factory=dict)
    flash: bool = False  # mail2sms's extra key: send as a flash SMS where the provider can


def parse_keyvalue(body: str, *, plus_as_space: bool = True, max_numbers: int | None = None) -> KeyValueMessage:
    """Read the `key:value` lines of `body`; ContentError names the line and key of the first problem.

    LimitError when the `mobile:` lines list more than `max_numbers` numbers (repeats included)."""
    rows = _rows(body)
    # Values of password-like lines, misspelt ones included, are never quoted back in any error.
    show = _Shower({value for _, key, value in rows if key and key.startswith(("pass", "pw")) and value})
    single: dict[str, str] = {}
    texts: list[str] = []
    mobiles: list[str] = []
    lines: dict[str, int] = {}
    previous = ""
    for number, key, value in rows:
        if key is None:
            hint = " (a long text must start every line with text:)" if previous == "text" else ""
            raise ContentError(f"line {number}: expected key:value, but the line has no colon{hint}")
        if key not in KEYS:
            raise ContentError(f"line {number}: unknown key {show.key(key)} (known keys: {', '.join(KEYS)})")
        if key in _SINGLE and key in lines:
            raise ContentError(f"line {number}: {key}: is given twice (first on line {lines[key]})")
        lines.setdefault(key, number)
        previous = key
        if key == "text":
            texts.append(value)
        elif key == "mobile":
            found = _split_numbers(value)
            if not found:
                raise ContentError(f"line {number}: mobile: has no number")
            mobiles += found
            if max_numbers is not None and len(mobiles) > max_numbers:
                raise LimitError(f"line {number}: the mail lists more than {max_numbers} phone numbers; this route "
                                 f"takes at most {max_numbers} per mail")
        else:
            single[key] = value
    if not mobiles:
        raise ContentError("no mobile: line (write mobile: and the numbers, separated by commas)")
    text = "\n".join(texts)
    sender = single.get("sender") or None
    if plus_as_space:
        text = text.replace("+", " ")
        sender = sender.replace("+", " ").strip() if sender else None
    text = text.strip()
    if not text:
        raise ContentError("the text: line is missing or empty")
    return KeyValueMessage(
        username=single.get("username") or None,
        password=single.get("password") or None,
        sender=sender or None,
        mobiles=tuple(mobiles),
        lang=_lang(single.get("lang", ""), lines.get("lang", 0), show),
        text=text,
        test=_test(single.get("test", ""), lines.get("test", 0), show),
        sendtime=single.get("sendtime") or None,
        flash=_flag("flash", single.get("flash", ""), lines.get("flash", 0), show),
        lines=lines,
    )


def _rows(body: str) -> list[tuple[int, str | None, str]]:
    """(line number, lowercased key or None when there is no colon, value) for each non-blank line."""
    rows: list[tuple[int, str | None, str]] = []
    for number, raw in enumerate(_NEWLINES.split(body.removeprefix("\ufeff")), start=1):
        if raw.rstrip(" \t") == "--":  # "-- " signature separator: the rest is not for us
            break
        if not raw.strip():
            continue
        key, colon, value = raw.partition(":")
        rows.append((number, key.strip().lower() if colon else None, value.strip()))
    return rows


class _Shower:
    """Quotes what the writer wrote back in an error, unless it could carry the password."""

    def __init__(self, secrets: set[str]) -> None:
        self.secrets = secrets

    def value(self, text: str) -> str:
        if any(secret in text for secret in self.secrets):
            return "(not shown: it contains the password)"
        return repr(text if len(text) <= 40 else text[:39] + "…")

    def key(self, key: str) -> str:
        # A mistyped key is echoed so the writer sees the typo, unless it could be part of a password line
        # ("pasword", "password xyz"): then only the line number is given.
        if not _SHOWABLE_KEY.fullmatch(key) or key.startswith(("pass", "pw")):
            return "(not shown: it may be part of a password line)"
        return self.value(key)


def _split_numbers(value: str) -> list[str]:
    """Numbers of one mobile: line: commas and semicolons separate; spaces separate only whole numbers."""
    found: list[str] = []
    for piece in re.split(r"[,;]", value):
        tokens = piece.split()
        if len(tokens) > 1 and all(_WHOLE_NUMBER.fullmatch(t) for t in tokens):
            found += tokens
        elif tokens:
            found.append(" ".join(tokens))
    return found


def _lang(value: str, line: int, show: _Shower) -> int | None:
    if not value:
        return None
    if value not in ("1", "2", "3", "4"):
        raise ContentError(f"line {line}: lang must be 1, 2, 3 or 4 ({_LANGS}), not {show.value(value)}")
    return int(value)


def _flag(key: str, value: str, line: int, show: _Shower) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ContentError(f"line {line}: {key} must be 1, yes or true (or 0, no, false), not {show.value(value)}")


def _test(value: str, line: int, show: _Shower) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ContentError(f"line {line}: test must be 1, yes or true (or 0, no, false), not {show.value(value)}")
