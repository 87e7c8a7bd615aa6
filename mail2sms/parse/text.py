"""SMS text: cut a mail body down to the message, and measure what it will cost (GSM-7 or UCS-2, parts).

`clean_body()` removes what a mail client adds around the words a person meant to send: the signature,
quoted reply history, everything after a route's end marker, control characters, indentation and runs of
spaces (an SMS has no monospace layout, and every character is paid for). `analyze()` tells the sender and
the provider how the text will travel: one part holds 160 GSM-7 septets or 70 UTF-16 units; longer texts are
split into parts of 153 / 67 because each part carries a 6-byte concatenation header (3GPP TS 23.040
9.2.3.24.1), and a part never ends in the middle of a two-septet escape or a surrogate pair. `split_parts()`
shows that split; `truncate()` shortens a text to a number of parts (and characters) with an ellipsis,
never cutting a character, an escape or surrogate pair, or a combining sequence.

Pure functions: no I/O, and nothing here ever rejects a text — callers decide what is too long or empty.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parseaddr
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


def encoding_of(text: str) -> Encoding:
    """"gsm7" when every character has a GSM-7 code, else "ucs2"."""
    return "gsm7" if is_gsm7(text) else "ucs2"


def widths(text: str, encoding: Encoding) -> list[int]:
    """Units per character: septets (an extension-table character is an escape pair: 2) or UTF-16 units."""
    if encoding == "gsm7":
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def analyze(text: str) -> SmsShape:
    """Encoding, parts and units of `text`; empty text is 0 units in 1 part (callers refuse it separately)."""
    encoding = encoding_of(text)
    units = widths(text, encoding)
    return SmsShape(encoding, len(_starts(units, encoding)), sum(units))


def split_parts(text: str) -> list[str]:
    """The pieces `text` travels in, in order; joined they are `text` (an empty text is one empty part).

    Each piece holds at most 160 septets / 70 units when the text fits one SMS, else at most 153 / 67, and no
    piece ends inside an escape pair or a surrogate pair (both are one Python character).
    """
    encoding = encoding_of(text)
    starts = _starts(widths(text, encoding), encoding)
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


def _starts(units: list[int], encoding: Encoding) -> list[int]:
    """Index of the first character of each part."""
    single, part = (SINGLE_GSM7, PART_GSM7) if encoding == "gsm7" else (SINGLE_UCS2, PART_UCS2)
    if sum(units) <= single:
        return [0]
    starts, used = [0], 0
    for i, width in enumerate(units):
        if used + width > part:  # an escape pair or surrogate pair is never split across two parts
            starts.append(i)
            used = 0
        used += width
    return starts


ELLIPSIS: dict[Encoding, str] = {"gsm7": "...", "ucs2": "\u2026"}  # GSM-7 has no "…"; in UCS-2 it is one unit


def truncate(text: str, max_parts: int | None = None, max_chars: int | None = None) -> str:
    """`text` cut so that it fits `max_parts` SMS parts and `max_chars` characters, ending in an ellipsis.

    A text that already fits is returned unchanged. The cut keeps the longest prefix that fits together with
    the ellipsis of its own encoding ("..." for GSM-7, "…" for UCS-2), drops trailing spaces before the
    ellipsis, and never separates a base character from its combining marks, variation selectors or emoji
    modifiers, a zero-width-joiner sequence, or the two halves of a flag.
    """
    if _fits(text, max_parts, max_chars):
        return text
    # Every character is at least one unit, so no prefix longer than this can fit: the search stays small
    # however long the mail was.
    bound = len(text)
    if max_parts is not None:
        bound = min(bound, max_parts * SINGLE_GSM7)
    if max_chars is not None:
        bound = min(bound, max_chars)
    lo, hi = 0, bound  # _cut(lo) fits (at worst the ellipsis alone); find the largest k that does
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fits(_cut(text, mid), max_parts, max_chars):
            lo = mid
        else:
            hi = mid - 1
    k = lo
    while k > 0 and (_splits_cluster(text, k) or not _fits(_cut(text, k), max_parts, max_chars)):
        k -= 1
    cut = _cut(text, k)
    return cut if _fits(cut, max_parts, max_chars) else ""  # not even the ellipsis fits (max_chars < 3)


def _cut(text: str, k: int) -> str:
    head = text[:k].rstrip()
    return head + ELLIPSIS[encoding_of(head)]


def _fits(text: str, max_parts: int | None, max_chars: int | None) -> bool:
    if max_chars is not None and len(text) > max_chars:
        return False
    return max_parts is None or analyze(text).parts <= max_parts


_ZWJ = "\u200d"
_REGIONAL = range(0x1F1E6, 0x1F200)


def _extends(ch: str) -> bool:
    """A character that belongs to the one before it: combining mark, joiner, variation selector, skin tone."""
    code = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Mc", "Me")
        or ch == _ZWJ
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
        or 0x1F3FB <= code <= 0x1F3FF
        or 0xE0020 <= code <= 0xE007F  # emoji tag sequences (subdivision flags)
    )


def _splits_cluster(text: str, k: int) -> bool:
    """True when cutting `text` before index `k` would split what a phone shows as one character."""
    if k <= 0 or k >= len(text):
        return False
    if _extends(text[k]) or text[k - 1] == _ZWJ:
        return True
    if ord(text[k]) in _REGIONAL:
        run = 0
        while k - run - 1 >= 0 and ord(text[k - run - 1]) in _REGIONAL:
            run += 1
        return run % 2 == 1
    return False


# Reply attributions from the common clients, in the languages mail2sms's users write.
_ATTRIBUTION = re.compile(
    r"^\s*>?\s*(On\s.*\swrote|Am\s.*\sschrieb|Le\s.*\sa\s+écrit|El\s.*\sescribió|Op\s.*\sschreef)\s*:\s*$",
    re.IGNORECASE,
)
_ATTRIBUTION_START = re.compile(r"^\s*>?\s*(On|Am|Le|El|Op)\s", re.IGNORECASE)
# A real attribution names when or who: a time, a year, an address or a day or month name. "On db1 the backup
# job wrote:" above a "> 90% disk" line is an alarm, not a reply.
_ATTRIBUTION_EVIDENCE = re.compile(
    r"@|\d{1,2}[:.]\d{2}|\b(?:19|20)\d{2}\b|\b(?:mon|tue|wed|thu|fri|sat|sun|jan|feb|mar|apr|may|jun|jul|aug|sep"
    r"|oct|nov|dec)[a-z]*\b",
    re.IGNORECASE,
)
# Separators above a quoted or forwarded original (Outlook desktop in plain text, Gmail's and Apple Mail's
# forwards): all below is history.
_ORIGINAL = re.compile(
    r"^\s*(-{2,}\s*(Original Message|Forwarded message|Ursprüngliche Nachricht|Message d'origine|Mensaje original"
    r"|Oorspronkelijk bericht)\s*-{2,}|Begin forwarded message:)\s*$",
    re.IGNORECASE,
)
_RULE = re.compile(r"^\s*_{10,}\s*$")  # Outlook on the web: a rule, then "From: …" of the original
_SIGNATURE = re.compile(r"^--[ \t]?$")
# Outlook's header block of the original ("From: / Sent: / To: / Subject:", or the forward's "Date:"), with or
# without a rule or separator above it: a From line followed, before a blank line, by a date and a subject line.
# An alarm's own "From: door sensor 12" line has neither below it and stays.
_HEADER_FROM = re.compile(r"^\s*\*?(From|Von|De|Van|Da|Från|Fra)\s*:", re.IGNORECASE)
_HEADER_DATE = re.compile(
    r"^\s*\*?(Sent|Date|Gesendet|Datum|Envoyé|Enviado|Fecha|Verzonden|Inviato|Data|Skickat|Sendt)\s*:", re.IGNORECASE
)
_HEADER_SUBJECT = re.compile(r"^\s*\*?(Subject|Betreff|Objet|Asunto|Onderwerp|Oggetto|Ämne|Emne|Assunto)\s*:",
                             re.IGNORECASE)
_HEADER_LINES = 6
# Trailers a phone's mail app adds to every mail; never meant for the SMS.
_TRAILER = re.compile(
    r"^(Sent from my \w+( \w+)?|Sent from (Outlook|Mail) for \w+|Get Outlook for \w+|Sent from Yahoo Mail.*"
    r"|Von meinem \w+ gesendet|Envoyé de mon \w+|Enviado desde mi \w+)\.?$",
    re.IGNORECASE,
)
# Sign-offs that start a signature without a "-- " line (Outlook, Apple Mail), in a reply only.
_SIGN_OFF = re.compile(
    r"^(best|best regards|kind regards|regards|many thanks|thanks|thank you|cheers|br|mit freundlichen grüßen|"
    r"viele grüße|gruß|grüße|cordialement|saludos|groeten|met vriendelijke groet)[,.!]?$",
    re.IGNORECASE,
)
_SIGNATURE_LINES = 6  # non-empty lines a signature without a "-- " line may have; a longer tail is a message


# C0 controls other than tab and line feed, DEL and C1 controls: invisible in a mail, and in an SMS they would
# be junk (a form feed even costs an escape pair). Tabs become spaces.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[ \t]+")


def clean_body(text: str, end_markers: Sequence[str] = (), sender: str = "", reply: bool = False) -> str:
    """The words meant for the SMS: signature, end-marker tail and quoted history cut, whitespace normalised.

    Quoted history is what mail clients put under (or above) a reply: an "On … wrote:" attribution with its
    quoted block, Outlook's "-----Original Message-----" or "From: / Sent: / To: / Subject:" header block, a
    quoted block that ends the mail and looks like a quote (an empty "> " line, a nested or quoted attribution).
    `sender` is the mail's From header: in a reply (history was cut here, or `reply`: the mail has In-Reply-To,
    and an HTML body's marked history was already dropped by parse.html), a trailing signature without a "-- "
    line that starts with the sender's name or a sign-off ("Regards,") goes too. A phone's "Sent from my iPhone" always
    goes. Nothing else is cut: a "> 90% disk" or "From: door sensor" line of an alarm stays. A forward with nothing
    written above it (an alarm mail forwarded to a number) is not cut to nothing: its original's body is the text,
    without the separator and the original's header block.

    Whitespace: CRLF and CR become LF, control characters go, tabs and runs of spaces become one space, lines
    lose their indentation and trailing spaces, runs of blank lines shrink to one, and the text is stripped.
    Other Unicode spaces (no-break, thin, …) are left to smart replacement.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return _clean(lines, tuple(m for m in end_markers if m), sender, reply, unwrap=True)


def _clean(lines: list[str], markers: tuple[str, ...], sender: str, reply: bool, *, unwrap: bool) -> str:
    kept: list[str] = []
    history: int | None = None  # the line where a forwarded or quoted original begins
    for i, line in enumerate(lines):
        if _SIGNATURE.match(line):
            break
        if _history_starts(lines, i):
            history = i
            break
        if markers and line.lstrip().startswith(markers):
            break
        kept.append(_SPACES.sub(" ", _CONTROLS.sub("", line)).strip(" "))
    kept, quoted = _drop_quotes(kept)
    kept = _drop_trailer(kept)
    if history is not None or quoted or reply:
        kept = _drop_signature(kept, sender)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    if not text and history is not None and unwrap:  # once: a forward of a forward is not unpacked again
        return _clean(lines[_original_body(lines, history) :], markers, sender, reply, unwrap=False)
    return text


def _original_body(lines: list[str], start: int) -> int:
    """Where the body of the original that begins at `start` begins: after its separator or rule line and its
    header block ("From: … Date: … Subject: …", up to the first blank line)."""
    i = start + 1 if _ORIGINAL.match(lines[start]) or _RULE.match(lines[start]) else start
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i < len(lines) and _HEADER_FROM.match(lines[i]):
        while i < len(lines) and lines[i].strip():
            i += 1
    return i


def _history_starts(lines: list[str], i: int) -> bool:
    """Whether line `i` begins a forwarded or quoted original that runs to the end of the mail."""
    line = lines[i]
    if _ORIGINAL.match(line):
        return True
    if _RULE.match(line) and i + 1 < len(lines) and _HEADER_FROM.match(lines[i + 1]):
        return True
    return bool(_HEADER_FROM.match(line)) and _header_block(lines, i)


def _header_block(lines: list[str], i: int) -> bool:
    """A From line at `i` with a date and a subject line below it before the next blank line."""
    date = subject = False
    for line in lines[i + 1 : i + 1 + _HEADER_LINES]:
        if not line.strip():
            break
        date = date or bool(_HEADER_DATE.match(line))
        subject = subject or bool(_HEADER_SUBJECT.match(line))
    return date and subject


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _drop_quotes(lines: list[str]) -> tuple[list[str], bool]:
    """Remove "On … wrote:" with the quoted block under it, and a quoted block that ends the mail and looks like
    a quote; also say whether anything was removed."""
    out: list[str] = []
    removed = False
    i = 0
    while i < len(lines):
        span = _attribution_span(lines, i)
        if span:
            j = i + span
            while j < len(lines) and (_quoted(lines[j]) or not lines[j].strip()):
                j += 1
            i = j
            removed = True
            continue
        out.append(lines[i])
        i += 1
    end = len(out)
    while end and (_quoted(out[end - 1]) or not out[end - 1].strip()):
        end -= 1
    tail = out[end:]
    if _looks_quoted(tail):
        return out[:end], True
    return out, removed


def _looks_quoted(block: list[str]) -> bool:
    """A trailing '>' block is reply history when it has what a client's quote has: an empty quoted line between
    paragraphs, a quote inside a quote, or a quoted attribution (Apple Mail quotes its "On … wrote:" too).
    A lone "> 90% disk" at the end of an alarm has none of these."""
    quoted = [line.lstrip()[1:] for line in block if _quoted(line)]
    if not quoted:
        return False
    if any(not rest.strip() or rest.lstrip().startswith(">") for rest in quoted):
        return True
    return _attribution_span(quoted, 0) > 0 or _is_attribution(quoted[0])


def _is_attribution(line: str) -> bool:
    return bool(_ATTRIBUTION.match(line)) and bool(_ATTRIBUTION_EVIDENCE.search(line))


def _attribution_span(lines: list[str], i: int) -> int:
    """Lines taken by an attribution at `i` that a quoted block follows (clients wrap long ones), else 0."""
    if not _ATTRIBUTION_START.match(lines[i]):
        return 0
    for span in (1, 2):
        if i + span > len(lines) or not _is_attribution(" ".join(lines[i : i + span])):
            continue
        j = i + span
        while j < len(lines) and not lines[j].strip():
            j += 1
        return span if j < len(lines) and _quoted(lines[j]) else 0
    return 0


def _drop_trailer(lines: list[str]) -> list[str]:
    """Without a phone's "Sent from my iPhone" line at the end (when something else is left)."""
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    if end and _TRAILER.match(lines[end - 1]) and any(line.strip() for line in lines[: end - 1]):
        return lines[: end - 1]
    return lines


def _name_words(sender: str) -> frozenset[str]:
    """Words of the sender's name (display name, else the address's local part): "Jan Novak" → {jan, novak}."""
    name, address = parseaddr(sender)
    source = name or address.rpartition("@")[0]
    return frozenset(re.findall(r"[^\W\d_]+", source.casefold()))


def _signs(line: str, name: frozenset[str]) -> bool:
    """Whether `line` is a sign-off ("Regards,") or the sender's name or part of it ("Jan", "— Jan Novak")."""
    if _SIGN_OFF.match(line):
        return True
    words = re.findall(r"[^\W\d_]+", line.casefold())
    if not name or not words or len(words) > 4 or len(line) > 60 or re.search(r"[^\W\d_]\s*[:;]", line):
        return False
    return set(words) <= name and not re.search(r"\d", line)


def _drop_signature(lines: list[str], sender: str) -> list[str]:
    """A reply's trailing signature without a "-- " line: from a sign-off or name line (after a blank line, or
    right after a sign-off) to the end, when that tail is short and something is written above it."""
    name = _name_words(sender)
    filled = [k for k, line in enumerate(lines) if line.strip()]
    # Only the last few filled lines can start a signature, and the first filled line never does: linear
    # however long the reply.
    for k in filled[max(1, len(filled) - _SIGNATURE_LINES) :]:
        line = lines[k]
        after_break = not lines[k - 1].strip() or bool(_SIGN_OFF.match(lines[k - 1]))
        if _SIGN_OFF.match(line) or (after_break and _signs(line, name)):
            return lines[:k]
    return lines
