"""Raw mail → MailContent: body text, attachments, the headers mail2sms needs, and bounds on hostile MIME."""

from __future__ import annotations

import base64
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import SMTP

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mail2sms.errors import ContentError, LimitError
from mail2sms.parse import mime
from mail2sms.parse.mime import LOOP_HEADERS, decode_text, read_message


def _mail(**headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = headers.pop("from_", "Ali <ali@example.org>")
    message["To"] = "96550000000@sms.example.org"
    message["Subject"] = headers.pop("subject", "test")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return message


def _raw(headers: str, body: bytes) -> bytes:
    return headers.strip().replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


# --- body text and charsets -------------------------------------------------------------------------------


def test_plain_utf8_body() -> None:
    """A simple UTF-8 text/plain mail gives its body as text, with CRLF turned into \\n."""
    message = _mail()
    message.set_content("Meeting at 10 ☕\nRoom 4\n")
    content = read_message(message.as_bytes(policy=SMTP))
    assert content.text == "Meeting at 10 ☕\nRoom 4\n"
    assert content.attachments == ()


def test_quoted_printable_latin1() -> None:
    """Quoted-printable in ISO-8859-1 is decoded to the right characters."""
    raw = _raw(
        """
From: a@example.org
Subject: qp
MIME-Version: 1.0
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable
""",
        b"Caf=E9 cr=E8me, =A35 =\r\nsoft break\r\n",
    )
    assert read_message(raw).text == "Café crème, £5 soft break\n"


def test_latin1_label_with_windows_quotes() -> None:
    """Bytes 0x80-0x9F under an ISO-8859-1 label are read as Windows-1252 (smart quotes, euro)."""
    raw = _raw("Content-Type: text/plain; charset=ISO-8859-1", b"\x93quoted\x94 \x80 5")
    assert read_message(raw).text == "“quoted” € 5"


def test_base64_windows_1256_arabic() -> None:
    """Base64 text in Windows-1256 (KwtSMS lang 2) is decoded to Arabic."""
    body = base64.b64encode("مرحبا بكم".encode("cp1256"))
    raw = _raw(
        """
Content-Type: text/plain; charset="windows-1256"
Content-Transfer-Encoding: base64
""",
        body,
    )
    assert read_message(raw).text == "مرحبا بكم"


def test_base64_utf8_built_with_email_message() -> None:
    """A UTF-8 body that EmailMessage chose to base64-encode comes back intact."""
    message = _mail()
    message.set_content("مرحبا " * 30, cte="base64")
    assert read_message(message.as_bytes()).text == "مرحبا " * 30 + "\n"


@pytest.mark.parametrize(
    ("charset", "data", "text"),
    [
        ("x-unknown-charset", "héllo".encode(), "héllo"),
        ("utf-8", "héllo".encode("latin-1"), "héllo"),
        ("us-ascii", "héllo".encode(), "héllo"),
        (None, "héllo".encode(), "héllo"),
        (None, b"\x81\x8d\x8f", "\ufffd\ufffd\ufffd"),  # neither UTF-8 nor Windows-1252: replacement
        ("rot13", b"uryyb", "uryyb"),  # a codec that is not a charset is never used
        ("unicode_escape", b"\\x41", "\\x41"),
        ("", b"ok", "ok"),
    ],
)
def test_wrong_or_unknown_charsets_fall_back(charset: str | None, data: bytes, text: str) -> None:
    """A wrong, unknown or non-charset label falls back to UTF-8, then Windows-1252, then replacement."""
    assert decode_text(data, charset) == text


def test_unknown_charset_in_a_mail_does_not_raise() -> None:
    """A mail whose part declares a charset Python does not know still yields text."""
    raw = _raw("Content-Type: text/plain; charset=klingon-8", "Grüße".encode())
    assert read_message(raw).text == "Grüße"


def test_html_only_mail_is_turned_into_text() -> None:
    """A mail with only text/html gives the text a reader saw, without markup."""
    message = _mail()
    message.set_content("<html><body><p>Door&nbsp;<b>open</b></p><p>Zone 3</p></body></html>", subtype="html")
    assert read_message(message.as_bytes()).text == "Door open\n\nZone 3"


def test_alternative_prefers_plain_text() -> None:
    """In multipart/alternative the text/plain part is the body, whatever the order."""
    message = _mail()
    message.set_content("plain version")
    message.add_alternative("<p>html version</p>", subtype="html")
    assert read_message(message.as_bytes()).text == "plain version\n"

    html_first = _raw(
        'Content-Type: multipart/alternative; boundary="b"',
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nplain\r\n--b--\r\n",
    )
    assert read_message(html_first).text == "plain"


def test_empty_plain_part_falls_back_to_html() -> None:
    """An empty text/plain alternative (some tools send one) does not hide the HTML text."""
    message = _mail()
    message.set_content("\n")
    message.add_alternative("<p>the real text</p>", subtype="html")
    assert read_message(message.as_bytes()).text == "the real text"


def test_nested_mixed_with_attachment() -> None:
    """mixed(alternative(plain, html), pdf) gives the plain body and the PDF as an attachment."""
    message = _mail()
    message.set_content("see attached")
    message.add_alternative("<p>see <b>attached</b></p>", subtype="html")
    message.add_attachment(b"%PDF-1.4 data", maintype="application", subtype="pdf", filename="report.pdf")
    content = read_message(message.as_bytes())
    assert content.text == "see attached\n"
    assert len(content.attachments) == 1
    pdf = content.attachments[0]
    assert (pdf.filename, pdf.content_type, pdf.data, pdf.charset) == (
        "report.pdf",
        "application/pdf",
        b"%PDF-1.4 data",
        None,
    )


def test_csv_attachment_keeps_bytes_and_charset() -> None:
    """A CSV attachment comes back decoded from base64 with its declared charset."""
    message = _mail()
    message.set_content("rows attached")
    message.add_attachment("mobile,message\n96550000000,hé\n", subtype="csv", filename="sms.csv", charset="utf-8")
    (csv,) = read_message(message.as_bytes()).attachments
    assert csv.filename == "sms.csv"
    assert csv.content_type == "text/csv"
    assert csv.charset == "utf-8"
    assert csv.data.decode("utf-8") == "mobile,message\n96550000000,hé\n"


def test_inline_text_csv_without_filename_is_an_attachment() -> None:
    """Text parts other than plain and HTML are attachments even when inline and unnamed."""
    raw = _raw(
        'Content-Type: multipart/mixed; boundary="b"',
        b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b\r\nContent-Type: text/csv\r\n\r\na,b\r\n--b--\r\n",
    )
    content = read_message(raw)
    assert content.text == "body"
    assert [(a.content_type, a.filename) for a in content.attachments] == [("text/csv", None)]


def test_text_plain_attachment_is_not_the_body() -> None:
    """A text/plain part with Content-Disposition: attachment or a filename is an attachment, not the body."""
    message = _mail()
    message.set_content("the body")
    message.add_attachment("file content", filename="notes.txt")
    content = read_message(message.as_bytes())
    assert content.text == "the body\n"
    assert [a.filename for a in content.attachments] == ["notes.txt"]
    assert content.attachments[0].data == b"file content\n"


def test_forwarded_message_is_one_attachment() -> None:
    """A message/rfc822 part is one attachment; its inner text is not taken as the body."""
    inner = _mail(subject="inner")
    inner.set_content("inner text")
    outer = _mail(subject="fwd")
    outer.set_content("outer text")
    outer.add_attachment(inner)
    content = read_message(outer.as_bytes())
    assert content.text == "outer text\n"
    assert [a.content_type for a in content.attachments] == ["message/rfc822"]
    assert b"inner text" in content.attachments[0].data


def test_format_flowed_is_unwrapped() -> None:
    """format=flowed soft breaks (RFC 3676) join into one line; hard breaks stay."""
    raw = _raw(
        "Content-Type: text/plain; charset=utf-8; format=flowed",
        b"text:This is a long line that the client \r\nwrapped at 72.\r\n\r\n second para\r\n-- \r\nsig\r\n",
    )
    assert (
        read_message(raw).text == "text:This is a long line that the client wrapped at 72.\n\nsecond para\n-- \nsig\n"
    )


def test_no_body_at_all() -> None:
    """A mail with headers only gives empty text and no attachments."""
    content = read_message(b"From: a@example.org\r\nSubject: only\r\n\r\n")
    assert (content.text, content.attachments, content.subject) == ("", (), "only")


# --- headers ----------------------------------------------------------------------------------------------


def test_headers_for_loops_and_replies() -> None:
    """Subject (RFC 2047 decoded), Message-ID, From, loop headers and the Received count are read."""
    message = _mail(subject="Grüße aus Kuwait", Message_ID="<abc@example.org>")
    message["Auto-Submitted"] = "auto-generated"
    message["Precedence"] = "bulk"
    message["List-Id"] = "<alerts.example.org>"
    message["References"] = "<a@x> <b@x>"
    message["In-Reply-To"] = "<b@x>"
    for hop in range(3):
        message["Received"] = f"from relay{hop}.example.org"
    message.set_content("x")
    content = read_message(message.as_bytes())
    assert content.subject == "Grüße aus Kuwait"
    assert content.message_id == "<abc@example.org>"
    assert content.from_ == "Ali <ali@example.org>"
    assert content.received_count == 3
    assert dict(content.headers) == {
        "auto-submitted": ["auto-generated"],
        "precedence": ["bulk"],
        "list-id": ["<alerts.example.org>"],
        "references": ["<a@x> <b@x>"],
        "in-reply-to": ["<b@x>"],
        "x-autoreply": [],
        "x-autorespond": [],
    }


def test_absent_headers() -> None:
    """Missing headers give empty values: every loop header key is present with an empty list."""
    content = read_message(b"\r\nbody")
    assert content.message_id is None
    assert content.subject == ""
    assert content.from_ == ""
    assert content.received_count == 0
    assert set(content.headers) == set(LOOP_HEADERS)
    assert all(values == [] for values in content.headers.values())


def test_header_comment_bomb_does_not_escape() -> None:
    """A From header nested in over a thousand comments (within the header bounds) is read raw, no RecursionError."""
    raw = b"From: " + b"(" * 1200 + b"\r\nSubject: ok\r\n\r\nbody"
    content = read_message(raw)
    assert content.text == "body"
    assert content.subject == "ok"
    assert content.from_.startswith("(((")


# --- bounds -----------------------------------------------------------------------------------------------


def _multipart_bomb(depth: int, boundary: str = 'boundary="b{i}"') -> bytes:
    out = [b"From: a@example.org\r\nSubject: bomb\r\n"]
    for i in range(depth):
        param = boundary.format(i=i).encode()
        out.append(b"Content-Type: multipart/mixed; " + param + b"\r\n\r\n--b%d\r\n" % i)
    out.append(b"Content-Type: text/plain\r\n\r\nhello\r\n")
    out += [b"--b%d--\r\n" % i for i in reversed(range(depth))]
    return b"".join(out)


def test_nesting_up_to_the_limit_is_read() -> None:
    """20 nested multiparts are allowed and the innermost text is the body."""
    assert read_message(_multipart_bomb(20)).text == "hello"


def test_nesting_past_the_limit_is_refused() -> None:
    """21 nested multiparts exceed max_depth=20."""
    with pytest.raises(LimitError, match="MIME nesting deeper than 20 levels"):
        read_message(_multipart_bomb(21))


@pytest.fixture
def stdlib_parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every message mime.py hands to the stdlib parser (the real one: this only records), so a test can show that
    a bomb is refused by the cheap prescan before the stdlib builds an object per part or level. That is what
    "fails fast" means here, proven without a wall-clock bound that a busy machine would break."""
    seen: list[bytes] = []

    class Recording(BytesParser):
        def parsebytes(self, text: bytes, headersonly: bool = False) -> Message:
            seen.append(text)
            return super().parsebytes(text, headersonly)

    monkeypatch.setattr(mime, "BytesParser", Recording)
    return seen


def test_the_recording_parser_sees_what_the_full_path_parses(stdlib_parses: list[bytes]) -> None:
    """The recording fixture works: 20 nested multiparts (within the limit) do go through the stdlib parser."""
    raw = _multipart_bomb(20)
    assert read_message(raw).text == "hello"
    assert stdlib_parses == [raw]


def test_thousand_deep_nesting_bomb_fails_fast(stdlib_parses: list[bytes]) -> None:
    """A 1000-deep multipart bomb raises LimitError before the stdlib parser runs, never RecursionError."""
    with pytest.raises(LimitError, match="MIME nesting deeper than 20 levels"):
        read_message(_multipart_bomb(1000))
    assert stdlib_parses == []


def test_hundred_thousand_deep_bomb_fails_fast(stdlib_parses: list[bytes]) -> None:
    """Even 100 000 levels are refused by the prescan: the stdlib parser never sees them."""
    with pytest.raises(LimitError):
        read_message(_multipart_bomb(100_000))
    assert stdlib_parses == []


def test_message_rfc822_bomb() -> None:
    """Nested message/rfc822 parts count as nesting too."""
    raw = b"From: a@example.org\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * 1000 + b"\r\nhi\r\n"
    with pytest.raises(LimitError, match="MIME nesting deeper than 20 levels"):
        read_message(raw)


def test_digest_children_default_to_message_rfc822() -> None:
    """Parts of a multipart/digest without a Content-Type are nested messages and count as nesting."""
    raw = _raw(
        'Content-Type: multipart/digest; boundary="d"',
        b"--d\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--d--\r\n",
    )
    content = read_message(raw)
    assert [a.content_type for a in content.attachments] == ["message/rfc822"]
    with pytest.raises(LimitError):
        read_message(raw, max_depth=1)


@pytest.mark.slow
@pytest.mark.parametrize("depth", [30, 1000])
def test_nesting_the_prescan_cannot_see_is_still_refused(depth: int) -> None:
    """RFC 2231 continued boundaries evade the line scan; the exact walk or the recursion guard refuses."""
    with pytest.raises(LimitError):
        read_message(_multipart_bomb(depth, boundary='boundary*0="b"; boundary*1="{i}"'))


def _many_parts(count: int) -> bytes:
    part = b"--zz\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return _raw('Content-Type: multipart/mixed; boundary="zz"', part * count + b"--zz--\r\n")


def test_parts_up_to_the_limit_are_read() -> None:
    """The message itself and 999 parts make 1000 parts: allowed."""
    assert read_message(_many_parts(999)).text == "x"


def test_too_many_parts_are_refused() -> None:
    """1000 parts plus the message itself exceed max_parts=1000."""
    with pytest.raises(LimitError, match="the message has more than 1000 MIME parts"):
        read_message(_many_parts(1000))


def test_many_parts_fail_fast(stdlib_parses: list[bytes]) -> None:
    """A flood of 200 000 tiny parts is refused before the stdlib builds an object for each."""
    with pytest.raises(LimitError):
        read_message(_many_parts(200_000))
    assert stdlib_parses == []


def test_limits_are_parameters() -> None:
    """max_parts and max_depth are the caller's to choose."""
    with pytest.raises(LimitError, match="more than 5 MIME parts"):
        read_message(_many_parts(5), max_parts=5)
    with pytest.raises(LimitError, match="deeper than 2 levels"):
        read_message(_multipart_bomb(3), max_depth=2)


# --- garbage ----------------------------------------------------------------------------------------------

_MIME_LINES = st.sampled_from(
    [
        b"",
        b"--b",
        b"--b--",
        b"--c",
        b"Content-Type: multipart/mixed; boundary=b",
        b'Content-Type: multipart/alternative; boundary="c"',
        b"Content-Type: message/rfc822",
        b"Content-Type: message/delivery-status",
        b"Content-Type: multipart/digest; boundary=b",
        b"Content-Type: text/html; charset=klingon",
        b"Content-Type: text/plain; charset=utf-8; format=flowed",
        b"Content-Transfer-Encoding: base64",
        b"Content-Transfer-Encoding: quoted-printable",
        b"Content-Transfer-Encoding: x-uuencode",
        b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.txt",
        b"Subject: =?utf-8?b?invalid?= =?x?q?y?=",
        b"From: ((((((",
        b"Message-ID: <<>>",
        b" folded",
        b"<p>html &amp; <![x]> text</p>",
        b"=E9=\xff\x00 soft ",
        b"aGVsbG8=",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_MIME_LINES, max_size=60))
def test_mime_shaped_garbage_never_raises_anything_else(lines: list[bytes]) -> None:
    """Any arrangement of MIME-looking lines gives MailContent or a LimitError/ContentError, nothing else."""
    try:
        content = read_message(b"\r\n".join(lines), max_parts=50, max_depth=5)
    except (LimitError, ContentError):
        return
    assert isinstance(content.text, str)


_STRUCTURE_LINES = st.sampled_from(
    [
        b"",
        b"--b",
        b"--b--",
        b"--b  ",
        b"--c",
        b"--c--",
        b"--b----",
        b"text",
        b"Content-Type: multipart/mixed; boundary=b",
        b'Content-Type: multipart/mixed; boundary="c"',
        b'Content-Type: multipart/mixed; boundary="b--"',
        b"content-type: Multipart/Digest; boundary=c",
        b"Content-Type: message/rfc822",
        b"Content-Type: message/delivery-status",
        b"Content-Type: text/plain",
        b"Content-Type: multipart/mixed",
        b"\tboundary=c",
        b" ; boundary=b",
        b"Subject: hi",
    ]
)


def _stdlib_shape(raw: bytes) -> tuple[int, int]:
    """Parts and depth of the tree the stdlib parser builds: the truth the prescan approximates."""
    parts, depth = 0, 0
    stack: list[tuple[Message, int]] = [(BytesParser(policy=policy.default).parsebytes(raw), 0)]
    while stack:
        part, level = stack.pop()
        parts, depth = parts + 1, max(depth, level)
        payload = part.get_payload()
        if isinstance(payload, list):
            stack += [(child, level + 1) for child in payload if isinstance(child, Message)]
    return parts, depth


@pytest.mark.slow
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_STRUCTURE_LINES, max_size=60), st.sampled_from([b"\r\n", b"\n"]))
def test_limits_never_refuse_a_message_within_them(lines: list[bytes], newline: bytes) -> None:
    """The fast line scan is never stricter than the stdlib's real tree: limits equal to its shape pass."""
    raw = newline.join(lines)
    parts, depth = _stdlib_shape(raw)
    read_message(raw, max_parts=parts, max_depth=depth)


@given(st.binary(max_size=2000))
def test_random_bytes_never_raise_anything_else(raw: bytes) -> None:
    """Random bytes give MailContent or a LimitError/ContentError, nothing else."""
    try:
        read_message(raw)
    except (LimitError, ContentError):
        return
