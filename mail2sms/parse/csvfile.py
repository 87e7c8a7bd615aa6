"""Kapow-style CSV Email2SMS input → one `CsvRow` per data row, each with its row number and its own problem.

What is read (providers.md "CSV Email2SMS"): rows `mobile,message[,from_id[,sendtime]]`, or a header row (first
cell not a number, or any cell a known column name) naming the columns in any order with the aliases in
`COLUMN_ALIASES`. Bytes are decoded as UTF-8 (with or without BOM), UTF-16/32 with BOM, the declared charset,
then Windows-1252. Quoting is RFC 4180 (commas, quotes and line breaks inside double quotes); CRLF, LF and CR all
end a row; blank rows (also Excel's `;;;`) are skipped. The delimiter is comma, semicolon (Excel in locales
with a decimal comma) or tab, chosen from the first rows by which one makes the first cell a phone number.

Row numbers are the 1-based physical line on which a row starts, counting the header and blank lines, so a
quoted message spanning three lines makes the next row's number jump by three — the line a text editor shows.

A bad row is not an exception: its `CsvRow.error` says what is wrong, so the caller can send the good rows and
report the bad ones (or refuse the mail, per route policy). Only problems that make the rest of the file
unreadable (a quote never closed) raise ContentError, and more rows than allowed raise LimitError.

A `sendtime` cell is read by `parse.schedule` (ISO 8601 or Kapow's `DD-MM-YY HH:MM`, UTC without a zone) and
returned in ISO UTC; whether the time is too early or too far ahead depends on the provider and is decided when
the job is scheduled, not here.

Pure and bounded: no I/O, no clock, rows are produced one at a time from the decoded text (no second copy of
it), and at most `MAX_KEPT_CELLS` cells of a row are kept. This module must never accept a number that
`numbers.normalize()` refuses.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass

from mail2sms.errors import ContentError, LimitError, NumberError
from mail2sms.parse.charsets import LATIN1_LABELS, charset_codec
from mail2sms.parse.numbers import normalize
from mail2sms.parse.schedule import parse_sendtime, to_iso

DEFAULT_MAX_ROWS = 100_000
DELIMITERS = (",", ";", "\t")  # in order of preference when the sample cannot tell them apart
SAMPLE_CHARS = 64 * 1024  # the delimiter is chosen from at most this much text ...
SAMPLE_ROWS = 20  # ... and at most this many rows
NUMBER_CACHE = 1000  # numbers remembered as read: repeats at the top of a file are cheap, memory stays bounded
MAX_KEPT_CELLS = 64  # cells of one row kept for results.csv; a row with more is an error row anyway
FIELD_LIMIT = csv.field_size_limit()  # the stdlib's per-field bound (128 KiB), left as it is: it is global

# Header names (lower case, spaces and dashes read as '_') → the column they name (providers.md).
COLUMN_ALIASES: dict[str, str] = {
    "mobile": "mobile", "number": "mobile", "msisdn": "mobile", "to": "mobile",
    "message": "message", "sms": "message", "text": "message",
    "from_id": "from_id", "sender": "from_id", "from": "from_id",
    "sendtime": "sendtime", "send_time": "sendtime", "schedule": "sendtime",
}
POSITIONAL = ("mobile", "message", "from_id", "sendtime")  # the layout without a header row
_ALIASES_OF = {col: [a for a, c in COLUMN_ALIASES.items() if c == col] for col in POSITIONAL}

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")  # a physical line with its ending (CRLF, LF or CR)
_NUMBERISH = frozenset("+-(). \u00a0")
_BOMS = (  # longest first: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)


@dataclass(frozen=True)
class CsvRow:
    """One data row: where it starts, its cells as written, and what they say — or `error`, what is wrong."""

    row: int
    cells: list[str]
    number: str | None  # E.164 digits without '+'
    text: str | None
    sender: str | None
    sendtime: str | None  # ISO 8601 UTC, checked for form only (see the module docstring)
    error: str | None = None


@dataclass(frozen=True)
class CsvLayout:
    """How a file is laid out: its delimiter, its header row (if any) and which column holds what."""

    delimiter: str
    header: list[str] | None
    mobile: int
    message: int
    from_id: int | None
    sendtime: int | None
    width: int  # columns a row may fill: the header's width, or 4 without a header

    @property
    def names(self) -> list[str]:
        """Column titles for results.csv: the header as written, or the positional names."""
        return list(self.header) if self.header is not None else list(POSITIONAL)


# ----------------------------------------------------------------------------------------------------
# Bytes → text


def decode_csv(data: bytes, charset: str | None) -> str:
    """The file's text: BOM, then UTF-8, then the declared charset, then Windows-1252 (never raises)."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(codec, errors="replace")
    label = (charset or "").strip().strip('"').lower()
    declared = _codec(label)
    tries: list[str] = []
    if declared and declared.startswith(("utf-16", "utf-32")):
        tries.append(declared)  # NUL-rich UTF-16 text is valid UTF-8, so a declared UTF-16 goes first
    elif not declared and b"\x00" in data[:4096]:
        tries.append(_utf16_guess(data[:4096]))  # UTF-16 without BOM or label: see where the NULs sit
    tries.append("utf-8")
    if declared:
        tries.append(declared)
    tries += ["cp1252", "latin-1"]  # latin-1 maps every byte: the last resort cannot fail
    for codec in tries:
        try:
            return data.decode(codec)
        except UnicodeError:
            continue
    return data.decode("latin-1")  # pragma: no cover - latin-1 above never fails


def _codec(label: str) -> str | None:
    if label in LATIN1_LABELS:
        return "cp1252"  # what mail clients mean by it (WHATWG); a superset of ASCII's and Latin-1's letters
    return charset_codec(label)


def _utf16_guess(head: bytes) -> str:
    even = head[0::2].count(0)
    odd = head[1::2].count(0)
    return "utf-16-be" if even > odd else "utf-16-le"


# ----------------------------------------------------------------------------------------------------
# Text → rows


def _norm_name(cell: str) -> str:
    return re.sub(r"[\s\-]+", "_", cell.strip().lower())


def _looks_like_number(cell: str) -> bool:
    value = cell.strip()
    digits = sum(1 for c in value if c.isdecimal())
    return digits >= 3 and all(c.isdecimal() or c in _NUMBERISH for c in value)


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, cells) for each non-blank record; ContentError when the quoting breaks."""
    lines = (m.group() for m in _LINE.finditer(text))  # one line at a time: no copy of the whole text
    reader = csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True, skipinitialspace=False,
                        strict=True)
    last = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ContentError(_quoting_problem(last + 1, str(exc))) from None
        start, last = last + 1, reader.line_num
        if any(c.strip() for c in cells):
            yield start, cells


def _quoting_problem(row: int, why: str) -> str:
    if "expected after" in why:
        return (f"row {row}: a closing double quote is followed by more text; write a double quote inside a "
                "quoted message as two double quotes (\"\")")
    if "field larger" in why:
        return (f"row {row}: a cell is longer than {FIELD_LIMIT:,} characters: is a closing double quote "
                "missing?")
    return f"row {row}: a double quote opened in this row is never closed"


def sniff_delimiter(text: str) -> str:
    """Comma, semicolon or tab: the one that makes the first cell of most sample rows a number or a header name.

    csv.Sniffer counts characters and is fooled by a comma inside Excel's semicolon rows; the first cell of a
    row here is a phone number (or the mobile column's name), which decides it. Ties go to consistency of the
    column count, then to the order of DELIMITERS.
    """
    sample = text[:SAMPLE_CHARS]
    truncated = len(text) > SAMPLE_CHARS
    best: tuple[int, int, int, int, int] | None = None
    choice = DELIMITERS[0]
    for rank, delimiter in enumerate(DELIMITERS):
        rows: list[list[str]] = []
        try:
            for _, cells in _records(sample, delimiter):
                rows.append(cells)
                if len(rows) > SAMPLE_ROWS:
                    break
        except ContentError:
            pass  # the sample may end inside a quoted message; the rows read so far still count
        if truncated or len(rows) > SAMPLE_ROWS:
            rows = rows[:-1] if len(rows) > 1 else rows  # the last row may be cut short
        first_ok = sum(1 for r in rows if _looks_like_number(r[0]) or _norm_name(r[0]) in COLUMN_ALIASES)
        split = sum(1 for r in rows if len(_trim(r)) >= 2)
        widths = [len(_trim(r)) for r in rows if len(_trim(r)) >= 2]
        steady = max((widths.count(w) for w in set(widths)), default=0)
        score = (first_ok, split, steady, -len(rows), -rank)  # fewer rows: its all-delimiter rows were blank
        if best is None or score > best:
            best, choice = score, delimiter
    return choice


def _trim(cells: list[str]) -> list[str]:
    """The cells without trailing empty ones (Excel pads rows to the widest with delimiters)."""
    end = len(cells)
    while end and not cells[end - 1].strip():
        end -= 1
    return cells[:end]


def _layout(first: list[str], delimiter: str, where: str) -> CsvLayout | None:
    """The layout a header row names; None when `first` is a data row (then columns are positional)."""
    known = [COLUMN_ALIASES.get(_norm_name(c)) for c in first]
    lead = first[0].strip()
    # providers.md: a header's first cell is not a number. A data row's first cell always holds a digit unless
    # it is empty, and then only a known column name elsewhere makes the row a header.
    has_header = not any(c.isdecimal() for c in lead) if lead else any(known)
    if not has_header:
        return None
    header = _trim(first)
    if not any(known):
        if len(header) > len(POSITIONAL):
            raise ContentError(
                f"{where}row 1: the header names no column mobile reads; name the columns mobile and message "
                "(or number, msisdn, to; sms, text), or leave the header out"
            )
        return CsvLayout(delimiter, header, 0, 1, 2, 3, len(POSITIONAL))
    columns: dict[str, int] = {}
    for index, col in enumerate(known):
        if col is None:
            continue
        if col in columns:
            raise ContentError(f"{where}row 1: the header names the {col} column twice")
        columns[col] = index
    for col in ("mobile", "message"):
        if col not in columns:
            raise ContentError(
                f"{where}row 1: the header has no {col} column (name it {', '.join(_ALIASES_OF[col])})"
            )
    return CsvLayout(delimiter, header, columns["mobile"], columns["message"], columns.get("from_id"),
                     columns.get("sendtime"), max(len(header), max(columns.values()) + 1))


class CsvFile:
    """One CSV text, read lazily: `layout` is known at once, `rows()` yields CsvRows one at a time.

    `where` prefixes messages that concern the whole file ("orders.csv: "); `max_rows` counts data rows of the
    whole mail, `rows_before` those already read from earlier files of the same mail.
    """

    def __init__(
        self,
        text: str,
        *,
        region: str | None,
        max_rows: int = DEFAULT_MAX_ROWS,
        rows_before: int = 0,
        where: str = "",
    ) -> None:
        if "\x00" in text:
            text = text.replace("\x00", "")
        self.text = text
        self.region = region
        self.max_rows = max_rows
        self.rows_before = rows_before
        self.where = where
        self._numbers: dict[str, str | NumberError] = {}
        delimiter = sniff_delimiter(text)
        self._records = _records(text, delimiter)
        first = next(self._records, None)
        if first is None:
            raise ContentError(f"{where}the CSV has no rows")
        layout = _layout(first[1], delimiter, where)
        self._pending: tuple[int, list[str]] | None = None if layout is not None else first
        self.layout = layout or CsvLayout(delimiter, None, 0, 1, 2, 3, len(POSITIONAL))

    def rows(self) -> Iterator[CsvRow]:
        """Every data row in file order; LimitError as soon as the mail's row limit is passed."""
        count = self.rows_before
        if self._pending is not None:
            pending, self._pending = self._pending, None
            count += 1
            self._check_count(count)
            yield self._row(*pending)
        for start, cells in self._records:
            count += 1
            self._check_count(count)
            yield self._row(start, cells)

    def _check_count(self, count: int) -> None:
        if count > self.max_rows:
            raise LimitError(f"the mail has more than {self.max_rows:,} CSV rows, the most one mail may carry")

    def _row(self, start: int, cells: list[str]) -> CsvRow:
        layout = self.layout
        used = _trim(cells)
        kept = used[:MAX_KEPT_CELLS]

        def cell(index: int | None) -> str:
            return cells[index].strip() if index is not None and index < len(cells) else ""

        if len(used) > layout.width:
            # The other cells are shifted too: reading them would only add confusing follow-on problems.
            expected = (f"the header has {layout.width}" if layout.header is not None
                        else "at most 4 are read: mobile, message, from_id, sendtime")
            shifted = (f"the row has {len(used)} columns but {expected}; put a message that contains the "
                       f"delimiter {_delimiter_name(layout.delimiter)} in double quotes")
            return CsvRow(start, kept, None, None, None, None, shifted)
        problems: list[str] = []
        number: str | None = None
        raw_number = cell(layout.mobile)
        if not raw_number:
            problems.append("the mobile number is empty")
        else:
            read = self._number(raw_number)
            if isinstance(read, NumberError):
                problems.append(str(read))
            else:
                number = read
        text = cells[layout.message] if layout.message < len(cells) else ""
        text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
        if not text:
            problems.append("the message is empty")
        sender = cell(layout.from_id) or None
        sendtime: str | None = None
        raw_time = cell(layout.sendtime)
        if raw_time:
            try:
                sendtime = to_iso(parse_sendtime(raw_time))
            except ContentError as exc:
                problems.append(str(exc))
        error = "; ".join(problems) if problems else None
        return CsvRow(start, kept, number, text or None, sender, sendtime, error)

    def _number(self, value: str) -> str | NumberError:
        known = self._numbers.get(value)
        if known is None:
            try:
                known = normalize(value, self.region)
            except NumberError as exc:
                known = exc
            if len(self._numbers) < NUMBER_CACHE:
                self._numbers[value] = known
        return known


def _delimiter_name(delimiter: str) -> str:
    return {",": "(comma)", ";": "(semicolon)", "\t": "(tab)"}.get(delimiter, repr(delimiter))


def read_csv(
    text: str, *, region: str | None, max_rows: int = DEFAULT_MAX_ROWS, where: str = ""
) -> tuple[CsvLayout, list[CsvRow]]:
    """The whole file at once: for tests and small inputs (big ones iterate `CsvFile(...).rows()`)."""
    reader = CsvFile(text, region=region, max_rows=max_rows, where=where)
    return reader.layout, list(reader.rows())
