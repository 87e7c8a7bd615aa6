"""The text-fit hook an adapter may offer, and the characters some providers charge for but never deliver.

An adapter with text rules of its own puts a `fit_text(text, lang=..., strip=...)` (a `TextHook`, defined with
`TextFix` in `mail2sms.limits`) into its `Limits`; `parse/fit.py` calls it for every text before the mail is
accepted, so a provider's own rules are checked at DATA without parse/ importing providers/: the hook returns
the text to send and notes for the outcome mail (`TextFix`), or raises ContentError naming the first character
that cannot go and where it is.

`undeliverable()` names what KwtSMS's official SDKs strip before every send because such messages sit in the
queue, charged and never delivered: emoji and pictographs (including the ones outside the BMP that travel as
UTF-16 surrogate pairs, flags, keycaps and tag sequences), and invisible characters (zero-width space and joiner,
word joiner, BOM, soft hyphen, bidi controls, variation selectors). ZERO WIDTH NON-JOINER (U+200C) is left
alone on purpose: Persian spelling needs it, and no SDK strips it.

Pure: no I/O. It must never remove a character unless the caller asked for removal, and never quote an
invisible character itself in a message (a reader could not see it): always its name and U+XXXX.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass

from mail2sms.limits import TextFix as TextFix  # re-exported: the hook's result type lives with Limits
from mail2sms.limits import TextHook as TextHook

_INVISIBLE = frozenset(
    [
        0x00AD,
        0x034F,
        0x061C,
        0x180E,
        0x200B,
        0x200D,
        0x200E,
        0x200F,
        0xFEFF,
        *range(0x202A, 0x202F),  # bidi embeddings and overrides
        *range(0x2060, 0x2065),  # word joiner, invisible operators
        *range(0x2066, 0x206A),  # bidi isolates
    ]
)
_VARIATION = ((0xFE00, 0xFE0F), (0xE0100, 0xE01EF))
_TAGS = (0xE0000, 0xE007F)  # subdivision flags (England, Scotland) are tag sequences
_EMOJI_RANGES = (
    (0x1F000, 0x1FAFF),  # mahjong, cards, enclosed (regional indicators), pictographs, emoticons, transport, ...
    (0x2600, 0x27BF),  # miscellaneous symbols and dingbats (the SDKs strip the whole blocks)
    (0x20E3, 0x20E3),  # combining enclosing keycap
    (0x231A, 0x231B),
    (0x2328, 0x2328),
    (0x23CF, 0x23CF),
    (0x23E9, 0x23F3),
    (0x23F8, 0x23FA),
    (0x2B05, 0x2B07),
    (0x2B1B, 0x2B1C),
    (0x2B50, 0x2B50),
    (0x2B55, 0x2B55),
    (0x3030, 0x3030),
    (0x303D, 0x303D),
    (0x3297, 0x3297),
    (0x3299, 0x3299),
)
_SURROGATES = (0xD800, 0xDFFF)  # a lone half of a pair: never a character a phone can show
_PRIVATE = ((0xE000, 0xF8FF), (0xF0000, 0x10FFFF))


def _within(cp: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= cp <= high for low, high in ranges)


def undeliverable(ch: str) -> str | None:
    """What kind of character `ch` is when KwtSMS-style providers cannot deliver it, or None when it is text."""
    cp = ord(ch)
    if cp in _INVISIBLE or _within(cp, _VARIATION) or _within(cp, (_TAGS,)):
        return "invisible character"
    if _within(cp, _EMOJI_RANGES):
        return "emoji"
    if _within(cp, (_SURROGATES,)):
        return "broken character"
    if _within(cp, _PRIVATE):
        return "private-use character"
    return None


def char_name(ch: str) -> str:
    """`GRINNING FACE (U+1F600)`: the Unicode name and code point, never the character itself."""
    name = unicodedata.name(ch, "")
    return f"{name} (U+{ord(ch):04X})" if name else f"U+{ord(ch):04X}"


@dataclass(frozen=True)
class Found:
    """One character that cannot go, and where it is: line and character within the line, from 1."""

    char: str
    kind: str
    line: int
    column: int


def find(text: str) -> list[Found]:
    """Every undeliverable character of `text`, in order, with its line and position in the line."""
    found: list[Found] = []
    line, column = 1, 0
    for ch in text:
        if ch == "\n":
            line, column = line + 1, 0
            continue
        column += 1
        kind = undeliverable(ch)
        if kind is not None:
            found.append(Found(ch, kind, line, column))
    return found


def refusal(found: list[Found], provider: str) -> str:
    """Why the text cannot go, naming the first character and where it is, for a 554 reply."""
    first = found[0]
    more = len(found) - 1
    also = f" (and {more} more such character{'s' if more != 1 else ''})" if more else ""
    article = "an" if first.kind[0] in "aeiou" else "a"
    return (
        f"the text has {article} {first.kind}, {char_name(first.char)}, at line {first.line}, character "
        f"{first.column}{also}; {provider} charges for emoji and invisible characters but never delivers the "
        "SMS: remove them (or ask for strip_unsupported = true on this route, which removes them)"
    )


def strip(text: str, found: list[Found], provider: str) -> TextFix:
    """`text` without the characters in `found`, and a note naming what was removed (bounded: 5 names)."""
    drop = {f.char for f in found}
    kept = "".join(ch for ch in text if ch not in drop)
    counts = Counter(f.char for f in found)
    names = [f"{char_name(ch)}{f' x{n}' if n > 1 else ''}" for ch, n in counts.items()]
    if len(names) > 5:
        names = [*names[:5], f"and {len(names) - 5} more kinds"]
    total = len(found)
    note = f"removed {total} character{'s' if total != 1 else ''} that {provider} cannot deliver: " + ", ".join(names)
    return TextFix(kept, (note,))
