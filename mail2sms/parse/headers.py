"""Bounds on mail headers, checked on the raw bytes before the stdlib `email` parser reads any of them.

The stdlib's header parser (`policy.default`) is quadratic in the tokens of one field: 100,000 folded encoded
words in one Subject grew a server to 23 GB; 4,600 RFC 2231 `x*N*=` parameter sections took 2 s to decode (10 s
on a loaded loop); 80 KB of comments took 6 s; 50,000 From addresses 50 s. Measured on this parser, a field of at
most MAX_FIELD_WORDS separators costs a few milliseconds, so the limits below make the worst mail cheap:

- one header block (one MIME part's headers) at most MAX_HEADER_BLOCK bytes, all of a mail's at most MAX_HEADERS;
- one field, folded lines included, at most MAX_FIELD bytes, MAX_FIELD_WORDS separators (space, tab, comma,
  semicolon, parentheses: what splits addresses, words, comments and parameters) and MAX_FIELD_PARAMS semicolons;
  all fields of the mail at most MAX_WORDS separators and MAX_PARAMS semicolons;
- at most MAX_ENCODED_WORDS `=?...?=` encoded words and MAX_RFC2231 RFC 2231 parameter sections in the mail.

Generous for real mail (a long References is a few KB; a long file name is a handful of `name*N*` sections).
`HeaderBounds` is fed one header line at a time by whoever walks the raw mail (mime's prescan walks every part);
`check_top()` does the top-level block alone: first with C-level counts over the whole block (when the block as a
whole is within one field's bounds, no field can pass them: most mails end there), else line by line.
`cheap_to_parse()` says whether a mail is simple enough to parse on the event loop. This module does no I/O and
raises only HeaderLimitError, whose message names the limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mail2sms.errors import LimitError

MAX_HEADER_BLOCK = 256 * 1024
MAX_HEADERS = 1024 * 1024
MAX_FIELD = 16 * 1024
MAX_FIELD_WORDS = 1500
MAX_WORDS = 30_000
MAX_FIELD_PARAMS = 32  # semicolons: the stdlib's get_param() is quadratic in them (990 took 1.2 s per part)
MAX_PARAMS = 1000
MAX_ENCODED_WORDS = 1000
MAX_RFC2231 = 100

# What the event loop may parse itself (choose by a cheap scan, not by size alone): a few encoded words, no
# RFC 2231 sections, short fields, a single part with not too many lines.
INLINE_MAX_BYTES = 64 * 1024
INLINE_MAX_ENCODED_WORDS = 20
INLINE_MAX_FIELD_WORDS = 200
INLINE_MAX_LINES = 200  # a keyvalue mail of 200 numbers: about 25 ms of number checks on the loop

_SEPARATORS = b" \t,;()"
_RFC2231 = re.compile(rb"\*[0-9]*\*?[ \t]*=")  # name*=, name*0=, name*0*= (RFC 2231 3 and 4)
# email.feedparser's header-line test; any other line ends a header block (and begins the body).
_HEADER_LINE = re.compile(rb"(From |[\x21-\x39\x3b-\x7e]*:|[\t ])")


class HeaderLimitError(LimitError):
    """A mail's headers exceed one of this module's bounds (552 5.3.4); the message names the limit."""


@dataclass
class HeaderBounds:
    """Running counts over the header lines of one mail; raises HeaderLimitError as soon as a bound is passed."""

    total: int = 0
    block: int = 0
    encoded_words: int = 0
    rfc2231: int = 0
    words: int = 0
    params: int = 0
    widest_field: int = 0  # the most separators seen in one field
    nested: bool = False  # a Content-Type of multipart/* or message/* was seen
    _field: bytes = b""  # the current field's name
    _field_size: int = 0
    _field_words: int = 0
    _field_params: int = 0

    def line(self, line: bytes) -> None:
        """One header line, without its line end; a line starting with space or tab continues the field."""
        size = len(line) + 2
        self.total += size
        self.block += size
        if self.block > MAX_HEADER_BLOCK:
            raise HeaderLimitError(f"a header block is larger than {MAX_HEADER_BLOCK} bytes")
        if self.total > MAX_HEADERS:
            raise HeaderLimitError(f"the headers of all MIME parts are larger than {MAX_HEADERS} bytes")
        if line[:1] not in (b" ", b"\t"):
            self._field = line.split(b":", 1)[0][:40]
            if self._field.lower() == b"content-type":
                self.nested = self.nested or line[13:].lstrip().lower().startswith((b"multipart/", b"message/"))
            self._field_size = 0
            self._field_words = 0
            self._field_params = 0
        self._field_size += size
        if self._field_size > MAX_FIELD:
            raise HeaderLimitError(f"the {self._name()} header is larger than {MAX_FIELD} bytes")
        words = len(line) - len(line.translate(None, _SEPARATORS))
        self._field_words += words
        self.words += words
        self.widest_field = max(self.widest_field, self._field_words)
        if self._field_words > MAX_FIELD_WORDS:
            raise HeaderLimitError(
                f"the {self._name()} header has more than {MAX_FIELD_WORDS} words, commas, semicolons or comments"
            )
        if self.words > MAX_WORDS:
            raise HeaderLimitError(f"the headers have more than {MAX_WORDS} words, commas, semicolons or comments")
        params = line.count(b";")
        self._field_params += params
        self.params += params
        if self._field_params > MAX_FIELD_PARAMS:
            raise HeaderLimitError(f"the {self._name()} header has more than {MAX_FIELD_PARAMS} parameters")
        if self.params > MAX_PARAMS:
            raise HeaderLimitError(f"the headers have more than {MAX_PARAMS} parameters")
        self.encoded_words += line.count(b"=?")
        if self.encoded_words > MAX_ENCODED_WORDS:
            raise HeaderLimitError(f"the headers have more than {MAX_ENCODED_WORDS} encoded words (=?...?=)")
        if b"*" in line:
            self.rfc2231 += len(_RFC2231.findall(line))
            if self.rfc2231 > MAX_RFC2231:
                raise HeaderLimitError(f"the headers have more than {MAX_RFC2231} RFC 2231 parameter sections")

    def end_block(self) -> None:
        self.block = 0
        self._field = b""

    def _name(self) -> str:
        name = self._field.decode("ascii", "replace")
        return name if name.isprintable() and name else "a"


def check_top(raw: bytes) -> HeaderBounds:
    """Bound the top-level header block of `raw` (HeaderLimitError); the counts say how costly it is to parse.

    The last small mail's result is remembered (by identity): the handler's cheap_to_parse() and the parse's
    read_message() both ask, one after the other, about the same bytes."""
    last = _LAST
    if last is not None and last[0] is raw:
        return last[1]
    bounds = _scan_top(raw)
    if len(raw) <= INLINE_MAX_BYTES:
        globals()["_LAST"] = (raw, bounds)  # one tuple store: safe between the loop and a parse thread
    return bounds


_LAST: tuple[bytes, HeaderBounds] | None = None


# The run of header lines at the start of a mail, as feedparser reads them (its header-line test, per line).
_HEAD = re.compile(rb"(?:(?:From |[\x21-\x39\x3b-\x7e]*:|[\t ])[^\r\n]*(?:\r\n|\n|\r(?!\n)|\Z))*")


def _scan_top(raw: bytes) -> HeaderBounds:
    head = _HEAD.match(raw)
    block = raw[: head.end()] if head is not None else b""
    words = len(block) - len(block.translate(None, _SEPARATORS))
    params, encoded = block.count(b";"), block.count(b"=?")
    if (
        len(block) <= MAX_FIELD
        and words <= MAX_FIELD_WORDS
        and params <= MAX_FIELD_PARAMS
        and encoded <= MAX_ENCODED_WORDS
    ):
        rfc2231 = len(_RFC2231.findall(block)) if b"*" in block else 0
        if rfc2231 <= MAX_RFC2231:
            # Counted over the whole block, no bound is passed: one field is never more than its block.
            # (Most mails: the line-by-line walk below costs more than the fast parse of the whole mail.)
            lower = block.lower()
            return HeaderBounds(
                total=len(block),
                encoded_words=encoded,
                rfc2231=rfc2231,
                words=words,
                params=params,
                widest_field=words,
                nested=b"multipart/" in lower or b"message/" in lower,  # at worst: off the loop
            )
    return _walk_top(raw)


def _walk_top(raw: bytes) -> HeaderBounds:
    bounds = HeaderBounds()
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end
        line = raw[pos:end]
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line or not _HEADER_LINE.match(line):
            break
        bounds.line(line)
        pos = end + 1
    bounds.end_block()
    return bounds


def cheap_to_parse(raw: bytes) -> bool:
    """True when `raw` is small, single-part and its headers simple: parsing it on the event loop costs little.

    Anything else (and a mail over a bound: the worker thread refuses it) is parsed off the loop."""
    if len(raw) > INLINE_MAX_BYTES or raw.count(b"\n") > INLINE_MAX_LINES:
        return False
    try:
        bounds = check_top(raw)
        if bounds.widest_field > INLINE_MAX_FIELD_WORDS:
            bounds = _walk_top(raw)  # the quick count was over the whole block: find the widest field itself
    except HeaderLimitError:
        return False
    return (
        bounds.encoded_words <= INLINE_MAX_ENCODED_WORDS
        and bounds.rfc2231 == 0
        and bounds.widest_field <= INLINE_MAX_FIELD_WORDS
        and not bounds.nested
    )
