"""SMS text: cut a mail body down to the message, and measure what it will cost (GSM-7 or UCS-2, parts).

`clean_body()` removes what a mail client adds around the words a person meant to send: the signature,
quoted reply history, everything after a route's end marker. `analyze()` tells the sender and the provider
how the text will travel: one part holds 160 GSM-7 septets or 70 UTF-16 units; longer texts are split into
parts of 153 / 67 because each part carries a 6-byte concatenation header (3GPP TS 23.040 9.2.3.24.1), and a
part never ends in the middle of a two-septet escape or a surrogate pair.

Pure functions: no I/O, and nothing here ever rejects a text — callers decide what is too long or empty.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# 3GPP TS 23.038 6.2.1: the default alphabet, and the extension table reached through ESC (two septets each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_GSM7 = 160
PART_GSM7 = 153
SINGLE_UCS2 = 70
PART_UCS2 = 67

Encoding = Literal["gsm7", "ucs2"]


@dataclass(frozen=True)
class SmsShape:
    """How a text travels: its encoding, how many SMS parts, and its length in septets or UTF-16 units."""

    encoding: Encoding
    parts: int
    units: int


def is_gsm7(text: str) -> bool:
    """True when every character has a GSM-7 code, so the text need not be sent as UCS-2."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def analyze(text: str) -> SmsShape:
    """Encoding, parts and units of `text`; empty text is 0 units in 1 part (callers refuse it separately)."""
    if is_gsm7(text):
        widths = [2 if c in GSM7_EXTENSION else 1 for c in text]
        return SmsShape("gsm7", _pack(widths, SINGLE_GSM7, PART_GSM7), sum(widths))
    widths = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return SmsShape("ucs2", _pack(widths, SINGLE_UCS2, PART_UCS2), sum(widths))


def _pack(widths: list[int], single: int, part: int) -> int:
    total = sum(widths)
    if total <= single:
        return 1
    parts, used = 1, 0
    for width in widths:
        if used + width > part:  # an escape pair or surrogate pair is never split across two parts
            parts, used = parts + 1, 0
        used += width
    return parts


# Reply attributions from the common clients, in the languages mail2sms's users write.
_ATTRIBUTION = re.compile(
    r"^\s*(On\s.*\swrote|Am\s.*\sschrieb|Le\s.*\sa\s+écrit|El\s.*\sescribió|Op\s.*\sschreef)\s*:\s*$",
    re.IGNORECASE,
)
_ATTRIBUTION_START = re.compile(r"^\s*(On|Am|Le|El|Op)\s", re.IGNORECASE)
# Outlook quotes without '>' but puts one of these above the original; all below it is history.
_ORIGINAL = re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.IGNORECASE)
_RULE = re.compile(r"^\s*_{10,}\s*$")  # Outlook on the web: a rule, then "From: …" of the original
_SIGNATURE = re.compile(r"^--[ \t]?$")


def clean_body(text: str, end_markers: Sequence[str] = ()) -> str:
    """The words meant for the SMS: signature, end-marker tail and quoted history cut, blank lines tidied."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    markers = tuple(m for m in end_markers if m)
    kept: list[str] = []
    for i, line in enumerate(lines):
        if _SIGNATURE.match(line) or _ORIGINAL.match(line):
            break
        if _RULE.match(line) and i + 1 < len(lines) and lines[i + 1].lstrip().lower().startswith("from:"):
            break
        if markers and line.lstrip().startswith(markers):
            break
        kept.append(line.rstrip())
    kept = _drop_quotes(kept)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _drop_quotes(lines: list[str]) -> list[str]:
    """Remove "On … wrote:" with the quoted block under it, and a quoted block that ends the mail."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        span = _attribution_span(lines, i)
        if span:
            j = i + span
            while j < len(lines) and (_quoted(lines[j]) or not lines[j].strip()):
                j += 1
            i = j
            continue
        out.append(lines[i])
        i += 1
    end = len(out)
    while end and (_quoted(out[end - 1]) or not out[end - 1].strip()):
        end -= 1
    return out[:end]


def _attribution_span(lines: list[str], i: int) -> int:
    """Lines taken by an attribution at `i` that a quoted block follows (clients wrap long ones), else 0."""
    if not _ATTRIBUTION_START.match(lines[i]):
        return 0
    for span in (1, 2):
        if i + span > len(lines) or not _ATTRIBUTION.match(" ".join(lines[i : i + span])):
            continue
        j = i + span
        while j < len(lines) and not lines[j].strip():
            j += 1
        return span if j < len(lines) and _quoted(lines[j]) else 0
    return 0
