"""Raw mail bytes → `MailContent`: the headers mail2sms needs, the body as text, and the attachments.

The input comes from anyone who can reach the SMTP port, so the work is bounded before the stdlib parser sees
it: `email`'s parser recurses once per nesting level, dies of RecursionError near 1000 levels (after spending
time on each) and builds an object per part. `_prescan()` reads the raw lines once with a stack of the open
multipart boundaries and refuses too many parts or too deep nesting in linear time. The stdlib parser
(`policy.default`) then does the real reading; an iterative walk over its tree counts again, exactly. A
RecursionError that still escapes the stdlib (a header nested in thousands of comments) becomes a LimitError.
Headers are bounded too, before any parser reads them (parse.headers: block and field sizes, separators per
field, encoded words, RFC 2231 sections; issue 12's header bombs): the top-level block first, then every part's
block during the prescan. And the number of lines: the stdlib's feedparser keeps one string per line, so 10 MiB
of empty lines cost 420 MiB and seconds; MAX_LINES keeps that within a small multiple of the mail's size.

Body text: the first inline, non-empty text/plain part anywhere in the tree, else the first text/html part
turned into text. Parts inside a forwarded message (message/rfc822) belong to that message: one attachment.
Charsets are decoded leniently: a wrong or unknown declared charset falls back to UTF-8, then Windows-1252,
then UTF-8 with replacement characters, so a mislabelled mail still becomes an SMS.

Fast path: most mails are one text/plain part with a few plain ASCII headers, and for those the stdlib parser
and its header registry were most of mail2sms's own work per mail. `_simple()` splits such a mail itself, reads
only the headers used here, and returns exactly what the full path would (tests/unit/test_mime_fast.py compares
the two on generated mails); anything it is not sure about (multipart, other types, parameters beyond charset,
format and delsp, Content-Disposition, non-ASCII or odd header lines, bare CR) returns None and takes the full
path. Header values that are not plain text (encoded words, display names with specials) still go through
`policy.default`'s header classes, one value at a time; the body is decoded by a compat32 Message, i.e. by the
same stdlib code as `get_payload(decode=True)` on the full path.

This module must never raise anything but LimitError or ContentError, and never does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from types import MappingProxyType

from mail2sms.errors import ContentError, LimitError
from mail2sms.parse.charsets import LATIN1_LABELS, charset_codec
from mail2sms.parse.headers import HeaderBounds, check_top
from mail2sms.parse.html import html_to_text

LOOP_HEADERS = ("auto-submitted", "precedence", "list-id", "references", "in-reply-to", "x-autoreply", "x-autorespond")
MAX_LINES = 256 * 1024  # a 10 MiB attachment in base64 is 140,000 lines; a 100,000-row CSV is 100,000


@dataclass(frozen=True)
class Attachment:
    """A part that is not the body: a file, a non-text part or a forwarded mail. `data` is decoded bytes."""

    filename: str | None
    content_type: str
    data: bytes
    charset: str | None


@dataclass(frozen=True)
class MailContent:
    """What the pipeline needs from one mail. `headers` maps each of LOOP_HEADERS to its values (or [])."""

    subject: str
    message_id: str | None
    from_: str
    headers: Mapping[str, list[str]]
    received_count: int
    text: str
    attachments: tuple[Attachment, ...]


def read_message(raw: bytes, *, max_parts: int = 1000, max_depth: int = 20) -> MailContent:
    """Parse `raw` within the limits: LimitError when they are exceeded, ContentError when unreadable."""
    # Lines as feedparser splits them: CRLF, LF or a bare CR each end one.
    lines = raw.count(b"\n") + raw.count(b"\r") - raw.count(b"\r\n")
    if lines > MAX_LINES:
        raise LimitError(f"the message has more than {MAX_LINES} lines")
    check_top(raw)
    if max_parts >= 1 and max_depth >= 0:  # a simple mail is one part at depth 0
        fast = _simple(raw)
        if fast is not None:
            return fast
    return _read_full(raw, max_parts, max_depth)


def _read_full(raw: bytes, max_parts: int, max_depth: int) -> MailContent:
    """The general path: bounded prescan, the stdlib parser with `policy.default`, an iterative walk."""
    _prescan(raw, max_parts, max_depth)
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except RecursionError:  # nesting _prescan cannot see: RFC 2231 boundaries, headers in nested comments
        raise LimitError("the message is nested too deeply to read") from None
    except Exception:
        # The stdlib promises defects, not exceptions; should it break that promise, the mail is unreadable.
        raise ContentError("the message could not be read as MIME") from None
    return _content(message, max_parts, max_depth)


def _too_many(max_parts: int) -> str:
    return f"the message has more than {max_parts} MIME parts"


def _too_deep(max_depth: int) -> str:
    return f"MIME nesting deeper than {max_depth} levels"


# ----------------------------------------------------------------------------------------------------
# The bound, before the stdlib parser: a line scanner that mirrors how email.feedparser nests parts.

# email.feedparser's header-line test; any other line ends a header block (and begins the body).
_HEADER_LINE = re.compile(rb"(From |[\x21-\x39\x3b-\x7e]*:|[\t ])")
_BOUNDARY = re.compile(rb""";\s*boundary\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s"]+))""", re.IGNORECASE)


class _Scan:
    """State of `_prescan`: open multiparts (boundary, depth, is digest) and the part being read."""

    def __init__(self, max_parts: int, max_depth: int) -> None:
        self.bounds = HeaderBounds()  # every part's header block, as the stdlib will read it
        self.max_parts = max_parts
        self.max_depth = max_depth
        self.open: list[tuple[bytes, int, bool]] = []
        self.where: dict[bytes, list[int]] = {}  # boundary → indexes into `open`
        self.parts = 1
        self.depth = 0
        self.after_boundary: int | None = None  # level of the separator on the previous line
        self.start_part(default=b"text/plain")

    def start_part(self, default: bytes) -> None:
        self.in_headers = True
        self.content_type: list[bytes] | None = None
        self.reading_type = False
        self.default = default
        self.dsn = False

    def count(self) -> None:
        if self.parts > self.max_parts:
            raise LimitError(_too_many(self.max_parts))
        if self.depth > self.max_depth:
            raise LimitError(_too_deep(self.max_depth))

    def boundary(self, line: bytes) -> bool:
        """Handle `line` if it is a boundary of an open multipart; True when it was one."""
        tail = line[2:].rstrip(b" \t")
        found: list[tuple[int, bool]] = []
        if tail in self.where:
            found.append((self.where[tail][0], False))
        if tail.endswith(b"--") and tail[:-2] in self.where:
            found.append((self.where[tail[:-2]][0], True))
        if not found:
            self.after_boundary = None
            return False
        # feedparser checks every open boundary on every line and unwinds to the outermost multipart that
        # matches; right after a separator it swallows repeats of it (even a closing one) without a new part.
        level, closing = min(found)
        if level == self.after_boundary:
            return True
        _, depth, digest = self.open[level]
        del self.open[level if closing else level + 1 :]
        self.where = {}
        for i, (name, _, _) in enumerate(self.open):
            self.where.setdefault(name, []).append(i)
        if closing:
            self.after_boundary = None
            self.depth = depth
            self.start_part(default=b"text/plain")
            self.in_headers = False  # the epilogue is body text of the enclosing part
            return True
        self.after_boundary = level
        self.parts += 1
        self.depth = depth + 1
        self.count()
        self.start_part(default=b"message/rfc822" if digest else b"text/plain")
        return True

    def header_line(self, line: bytes) -> None:
        if self.reading_type and line[:1] in (b" ", b"\t") and self.content_type is not None:
            self.bounds.line(line)
            self.content_type.append(line)
            return
        self.reading_type = False
        if line and _HEADER_LINE.match(line):
            self.bounds.line(line)
            if self.content_type is None and line[:13].lower() == b"content-type:":
                self.content_type = [line[13:]]
                self.reading_type = True
            return
        self.end_headers()
        if line and self.in_headers:
            # A non-header line that ended a message/* part's headers is read again by the stdlib as the
            # first line of the nested message, where it ends that message's (empty) headers at once.
            self.end_headers()

    def end_headers(self) -> None:
        self.in_headers = False
        self.bounds.end_block()
        value = b" ".join(self.content_type) if self.content_type is not None else self.default
        full = value.split(b";", 1)[0].strip().lower()
        if full.count(b"/") != 1:  # what email.message does with a malformed type
            full = b"text/plain"
        maintype, subtype = (s.strip() for s in full.split(b"/"))
        if maintype == b"multipart":
            match = _BOUNDARY.search(value)
            if match:
                name = match.group(1) if match.group(1) is not None else match.group(2)
                name = re.sub(rb"\\(.)", rb"\1", name).rstrip()
                self.where.setdefault(name, []).append(len(self.open))
                self.open.append((name, self.depth, subtype == b"digest"))
        elif maintype == b"message" and subtype == b"delivery-status":
            self.dsn = True  # the stdlib makes one part per blank-line-separated block
        elif maintype == b"message":
            self.parts += 1
            self.depth += 1
            self.count()
            self.start_part(default=b"text/plain")

    def body_line(self, line: bytes) -> None:
        if self.dsn and not line.strip():
            self.parts += 1
            self.count()


def _prescan(raw: bytes, max_parts: int, max_depth: int) -> None:
    scan = _Scan(max_parts, max_depth)
    for line in raw.splitlines():
        if scan.where and line[:2] == b"--" and scan.boundary(line):
            continue
        scan.after_boundary = None
        if scan.in_headers:
            scan.header_line(line)
            if line[:2] == b"--" and not scan.in_headers and scan.where:
                scan.boundary(line)  # a non-header line that ended the headers is read again as body
        else:
            scan.body_line(line)


# ----------------------------------------------------------------------------------------------------
# The stdlib tree → MailContent, walked iteratively.


def _content(message: Message, max_parts: int, max_depth: int) -> MailContent:
    plain: str | None = None
    html: str | None = None
    attachments: list[Attachment] = []
    seen = 0
    stack: list[tuple[Message, int, bool]] = [(message, 0, False)]
    while stack:
        part, depth, inside_forward = stack.pop()
        seen += 1
        if seen > max_parts:
            raise LimitError(_too_many(max_parts))
        if depth > max_depth:
            raise LimitError(_too_deep(max_depth))
        content_type = _content_type(part)
        children = _children(part)
        if children is not None:
            forward = content_type.startswith("message/")
            if forward and not inside_forward:
                attachments.append(_forwarded(part, content_type, children))
            stack.extend((child, depth + 1, inside_forward or forward) for child in reversed(children))
            continue
        if inside_forward:
            continue
        filename = _filename(part)
        inline = _disposition(part) != "attachment" and not filename
        if inline and content_type == "text/plain":
            if plain is None:
                text = _unflow(_text_of(part), _param(part, "format"), _param(part, "delsp"))
                plain = text if text.strip() else None
        elif inline and content_type == "text/html":
            if html is None:
                text = html_to_text(_text_of(part))
                html = text if text.strip() else None
        else:
            attachments.append(Attachment(filename, content_type, _payload(part), _charset(part)))
    message_ids = _header_values(message, "message-id", first=True)
    return MailContent(
        subject=(_header_values(message, "subject", first=True) or [""])[0].strip(),
        message_id=(message_ids[0].strip() or None) if message_ids else None,
        from_=(_header_values(message, "from", first=True) or [""])[0].strip(),
        headers=MappingProxyType({name: _header_values(message, name) for name in LOOP_HEADERS}),
        received_count=_received_count(message),
        text=plain if plain is not None else (html or ""),
        attachments=tuple(attachments),
    )


# Accessors over the stdlib tree. email's lazy header parsing (policy.default) can still raise on hostile
# input (RecursionError on deeply nested comments, IndexError or ValueError from parser corner cases). A part
# whose detail cannot be read is a part without that detail, not a failed mail: each accessor has a fallback.


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "application/octet-stream"


def _children(part: Message) -> list[Message] | None:
    try:
        payload = part.get_payload() if part.is_multipart() else None
    except Exception:
        return None
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def _filename(part: Message) -> str | None:
    try:
        return part.get_filename()
    except Exception:
        return None


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:
        return None


def _param(part: Message, name: str) -> str:
    try:
        value = part.get_param(name)
    except Exception:
        return ""
    return value.lower() if isinstance(value, str) else ""


def _payload(part: Message) -> bytes:
    """The part's body with its Content-Transfer-Encoding undone."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return b""
    return data if isinstance(data, bytes) else b""


def _received_count(message: Message) -> int:
    try:
        return sum(1 for key in message.keys() if key.lower() == "received")  # noqa: SIM118 (a list, not a dict)
    except Exception:
        return 0


def _header_values(message: Message, name: str, first: bool = False) -> list[str]:
    """Decoded values of header `name` (only the first with `first`: twenty copies of a costly From are parsed
    once); falls back to decoding the raw value when structured parsing fails."""
    try:
        if first:
            value = message.get(name)
            return [] if value is None else [str(value)]
        return [str(value) for value in message.get_all(name, [])]
    except Exception:
        try:
            raw = [str(value) for key, value in message.raw_items() if key.lower() == name]
        except Exception:
            return []
        return [_decode_raw(value) for value in (raw[:1] if first else raw)]


def _decode_raw(value: str) -> str:
    unfolded = re.sub(r"\r?\n[ \t]", " ", value)
    try:
        return str(make_header(decode_header(unfolded)))
    except Exception:
        return unfolded


def _forwarded(part: Message, content_type: str, inner: list[Message]) -> Attachment:
    return Attachment(_filename(part), content_type, b"\n".join(_as_bytes(m) for m in inner), None)


def _as_bytes(message: Message) -> bytes:
    try:
        return message.as_bytes(policy=_AS_SENT)
    except Exception:
        return b""


_AS_SENT = policy.default.clone(refold_source="none")  # write headers back as they came, not refolded


def _text_of(part: Message) -> str:
    text = decode_text(_payload(part), _charset(part))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode_text(data: bytes, charset: str | None) -> str:
    """Bytes of a text part → str, never raising: declared charset, UTF-8, Windows-1252, UTF-8 replaced."""
    label = (charset or "").strip().strip('"').lower()
    tries: list[str] = []
    if label in LATIN1_LABELS:  # the shared table (parse/charsets.py)
        tries += ["cp1252", "latin-1"] if label not in ("us-ascii", "ascii") else ["ascii"]
    elif charset_codec(label):
        tries.append(label)
    tries += ["utf-8", "cp1252"]
    for codec in tries:
        try:
            return data.decode(codec)
        except (UnicodeError, LookupError):
            continue
    return data.decode("utf-8", errors="replace")


def _unflow(text: str, format_: str, delsp_param: str) -> str:
    """Join format=flowed soft line breaks (RFC 3676) so a wrapped paragraph becomes one SMS line again.

    `format_` and `delsp_param` are the Content-Type parameters, lower-cased ("" when absent)."""
    if format_ != "flowed":
        return text
    delsp = delsp_param == "yes"
    lines: list[tuple[int, str]] = []  # (quote depth, text)
    joining = False
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        body = line[depth:]
        if body.startswith(" "):  # space-stuffing (RFC 3676 4.4)
            body = body[1:]
        soft = body.endswith(" ") and body != "-- "  # the signature separator is never a soft break
        if soft and delsp:
            body = body[:-1]
        if joining and lines and lines[-1][0] == depth:
            lines[-1] = (depth, lines[-1][1] + body)
        else:
            lines.append((depth, body))
        joining = soft
    return "\n".join(">" * depth + (" " if depth and body else "") + body for depth, body in lines)


# ----------------------------------------------------------------------------------------------------
# The fast path for a simple mail (module docstring): same MailContent as the full path, or None.

_BLANK_LINE = re.compile(rb"\n\r?\n")
# A header line the fast path reads: a name of printable ASCII but ':' and a colon, or a folded continuation;
# the rest of the line printable ASCII or tab. Anything else (bare CR, NUL, 8-bit, 'From ') → full path.
_FAST_LINE = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:|[ \t])[\x20-\x7e\t]*")
_WANTED = frozenset({"subject", "message-id", "from", *LOOP_HEADERS})
_MIME_HEADERS = frozenset({"content-type", "content-transfer-encoding", "content-disposition"})
_TYPE = re.compile(
    r"text/plain((?:;[ \t]*[A-Za-z]+=(?:[A-Za-z0-9_.:+-]+|\"[A-Za-z0-9_.:+-]*\")[ \t]*)*)", re.IGNORECASE
)
_PARAM = re.compile(r";[ \t]*([A-Za-z]+)=\"?([A-Za-z0-9_.:+-]*)\"?[ \t]*")
_FAST_PARAMS = frozenset({"charset", "format", "delsp"})
_CTE = re.compile(r"[A-Za-z0-9-]+")
_FAST_CTES = frozenset({"7bit", "8bit", "binary", "quoted-printable", "base64"})
# Values whose policy.default reading is the value itself: unstructured text without encoded words; a
# Message-ID of dot-atoms; a From that is a bare address or a display name of single-spaced atoms.
_ATOMS = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_ADDR = _ATOMS + "@" + _ATOMS
_SAME_TEXT = re.compile(r"[\x20-\x7e\t]*")
_SAME_MESSAGE_ID = re.compile(f"<{_ADDR}>")
_SAME_FROM = re.compile(f"{_ADDR}|[A-Za-z0-9]+(?: [A-Za-z0-9]+)* <{_ADDR}>")


def _simple(raw: bytes) -> MailContent | None:
    blank = _BLANK_LINE.search(raw)
    if blank is None or raw[:1] in (b"\r", b"\n"):
        return None
    head = raw[: blank.start()].split(b"\n")
    body = raw[blank.end() :]
    fields: list[tuple[str, list[str]]] = []  # (lower-cased name, source lines without their line ends)
    for line in head:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not _FAST_LINE.fullmatch(line):
            return None
        text = line.decode("ascii")
        if text[0] in " \t":
            if not fields:
                return None
            fields[-1][1].append(text)
        else:
            name, _, value = text.partition(":")
            fields.append((name.lower(), [value.lstrip(" \t")]))
    wanted: dict[str, list[str]] = {}
    mime: dict[str, str] = {}
    received = 0
    for name, lines in fields:
        if name == "received":
            received += 1
        elif name in _MIME_HEADERS:
            if name in mime:
                return None
            mime[name] = "".join(lines)
        elif name in _WANTED:
            wanted.setdefault(name, []).append("\r\n".join(lines))  # as stored: folds kept, for _decode_raw
    if "content-disposition" in mime:
        return None
    params: dict[str, str] = {}
    if "content-type" in mime:
        match = _TYPE.fullmatch(mime["content-type"])
        if match is None:
            return None
        for param in _PARAM.finditer(match.group(1)):
            key = param.group(1).lower()
            if key not in _FAST_PARAMS or key in params:
                return None
            params[key] = param.group(2).lower()
    cte = mime.get("content-transfer-encoding", "")
    if cte and (not _CTE.fullmatch(cte) or cte.lower() not in _FAST_CTES):
        return None
    decoder = Message(policy=policy.compat32)
    if cte:
        decoder["Content-Transfer-Encoding"] = cte
    decoder.set_payload(body.decode("ascii", "surrogateescape"))
    text = decode_text(_payload(decoder), params.get("charset"))
    text = _unflow(text.replace("\r\n", "\n").replace("\r", "\n"), params.get("format", ""), params.get("delsp", ""))
    message_ids = _fast_values(wanted, "message-id", first=True)
    return MailContent(
        subject=(_fast_values(wanted, "subject", first=True) or [""])[0].strip(),
        message_id=(message_ids[0].strip() or None) if message_ids else None,
        from_=(_fast_values(wanted, "from", first=True) or [""])[0].strip(),
        headers=MappingProxyType({name: _fast_values(wanted, name) for name in LOOP_HEADERS}),
        received_count=received,
        text=text if text.strip() else "",
        attachments=(),
    )


def _fast_values(wanted: Mapping[str, list[str]], name: str, first: bool = False) -> list[str]:
    """`_header_values` for the fast path: plain values as they are, the others through policy.default."""
    stored = wanted.get(name, [])[:1] if first else wanted.get(name, [])
    same = _SAME_MESSAGE_ID if name == "message-id" else _SAME_FROM if name == "from" else _SAME_TEXT
    values: list[str] = []
    try:
        for raw in stored:
            value = raw.replace("\r\n", "")
            if "=?" not in value and same.fullmatch(value):
                values.append(value)
            else:
                values.append(str(policy.default.header_fetch_parse(name, value)))
    except Exception:
        return [_decode_raw(raw) for raw in stored]
    return values
