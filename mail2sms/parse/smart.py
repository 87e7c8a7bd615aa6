"""Smart replacement: typographic characters → their GSM-7 look-alikes, when that is all that forces UCS-2.

Mail clients and word processors turn `'` into `’`, `"` into `“ ”`, `-` into `–`, `...` into `…`, and put
no-break or thin spaces, soft hyphens and zero-width marks where the writer typed nothing visible. One such
character makes the whole SMS UCS-2: 70 characters a part instead of 160, two to three times the price. When
replacing them gives a text that GSM-7 can carry, the replaced text is sent and the report says so; when the
text needs UCS-2 anyway (Arabic, emoji, Chinese, …) nothing is touched, because the phone shows the original
characters at no extra cost.

Pure: no I/O. It must never change a character that has no look-alike here (letters are never transliterated:
`ç` stays `ç`), and never change a text that does not become GSM-7 by it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from mail2sms.parse.text import is_gsm7

_SINGLE_QUOTES = "\u2018\u2019\u201a\u201b\u2032\u2035\u00b4\u0060\u02bc\u02b9\u2039\u203a"  # ‘ ’ ‚ ‛ ′ ‵ ´ ` ʼ ʹ ‹ ›
_DOUBLE_QUOTES = "\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb\u02ba"  # “ ” „ ‟ ″ ‶ « » ʺ
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe58\ufe63\uff0d"  # ‐ ‑ ‒ – — ― − ⁃ ﹘ ﹣ －
_SPACES = "\t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"  # soft hyphen, zero-width space/(non-)joiner, word joiner, BOM

REPLACEMENTS: dict[str, str] = {
    **dict.fromkeys(_SINGLE_QUOTES, "'"),
    **dict.fromkeys(_DOUBLE_QUOTES, '"'),
    **dict.fromkeys(_DASHES, "-"),
    **dict.fromkeys(_SPACES, " "),
    **dict.fromkeys(_INVISIBLE, ""),
    "\u2026": "...",  # …
    "\u2022": "-",  # • bullet
    "\u2044": "/",  # ⁄ fraction slash
    "\u02c6": "^",  # ˆ modifier circumflex
    "\u02dc": "~",  # ˜ small tilde
    "\ufb00": "ff",
    "\ufb01": "fi",
    "\ufb02": "fl",
    "\ufb03": "ffi",
    "\ufb04": "ffl",
}
_TABLE = str.maketrans(REPLACEMENTS)
NOTE = "typographic characters replaced to fit GSM-7"
NOTE_EXAMPLES = 6  # replaced characters named in the note


@dataclass(frozen=True)
class SmartResult:
    """The text to send, and the distinct characters that were replaced (empty: the text is unchanged)."""

    text: str
    replaced: tuple[str, ...] = ()

    @property
    def note(self) -> str | None:
        """What the report says about the replacement, e.g. `… GSM-7: ’ → ', – → -`; None when none was made."""
        if not self.replaced:
            return None
        shown = ", ".join(_describe(c) for c in self.replaced[:NOTE_EXAMPLES])
        more = f" and {len(self.replaced) - NOTE_EXAMPLES} more" if len(self.replaced) > NOTE_EXAMPLES else ""
        return f"{NOTE}: {shown}{more}"


def smart_replace(text: str) -> SmartResult:
    """Replace typographic characters with GSM-7 ones when that makes the whole text GSM-7; else leave it."""
    if is_gsm7(text):
        return SmartResult(text)
    replaced = text.translate(_TABLE)
    if not is_gsm7(replaced):
        return SmartResult(text)
    return SmartResult(replaced, tuple(dict.fromkeys(c for c in text if c in REPLACEMENTS)))


def _show(ch: str) -> str:
    """A character as a reader can see it: itself when visible, else its Unicode name."""
    if ch == "":
        return "nothing"
    if ch.isprintable() and not ch.isspace():
        return ch
    if ch == " ":
        return "space"
    if ch == "\t":
        return "tab"
    return unicodedata.name(ch, f"U+{ord(ch):04X}").lower()


def _describe(ch: str) -> str:
    new = REPLACEMENTS[ch]
    if not new:
        return f"{_show(ch)} removed"
    return f"{_show(ch)} → {_show(new) if new != ' ' else 'space'}"
