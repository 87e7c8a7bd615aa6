"""Answering a reply mail by email (issue 17, item 3): real clients' replies lose their quoted history and
signature, plain and HTML, and alarm texts that merely look like quotes lose nothing; plus the automatic-reply
markers that keep a vacation responder's answer from becoming an SMS (item 4)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mail2sms.parse.autoreply import auto_reply_marker
from mail2sms.parse.html import html_to_text
from mail2sms.parse.mime import read_message
from mail2sms.parse.text import clean_body

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "replies"
NAMES = sorted(p.name for p in FIXTURES.glob("*.eml"))
NEW_TEXT = "ACK, on my way"


def raw_of(name: str) -> bytes:
    """The fixture as it travels: CRLF line ends."""
    return (FIXTURES / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_every_client_has_a_fixture() -> None:
    """Thunderbird, Outlook desktop and web, Gmail and Apple Mail replies are all here, plain and HTML."""
    assert {n.split("-")[0].split(".")[0] for n in NAMES} >= {"thunderbird", "outlook", "gmail", "apple", "iphone"}
    assert len(NAMES) >= 10


@pytest.mark.parametrize("name", NAMES)
def test_the_body_mail2sms_reads_is_cut_to_the_new_text(name: str) -> None:
    """The body mail2sms picks from each client's reply (text/plain first) is cut to the one new line."""
    mail = read_message(raw_of(name))
    reply = bool(mail.headers.get("in-reply-to"))
    assert clean_body(mail.text, sender=mail.from_, reply=reply) == NEW_TEXT


HTML_NAMES = [n for n in NAMES if b"text/html" in raw_of(n)]


@pytest.mark.parametrize("name", HTML_NAMES)
def test_the_html_alternative_alone_is_cut_to_the_new_text(name: str) -> None:
    """Each client's HTML part on its own (the path of an HTML-only mail) also becomes just the new line."""
    parsed = email.message_from_bytes(raw_of(name), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(preferencelist=("html",))
    assert part is not None
    text = html_to_text(str(part.get_content()))
    assert "Is anyone on it" not in text  # the marked history is dropped by the HTML reader itself…
    assert clean_body(text, sender=str(parsed["From"]), reply=True) == NEW_TEXT  # …the signature by clean_body


def test_html_markers_drop_only_what_they_mark() -> None:
    """A signature div and a cite blockquote go; text after a bottom-posted quote and a plain blockquote stay."""
    html = (
        '<div class="moz-cite-prefix">On 01/12/2026 20:51, X wrote:</div>'
        '<blockquote type="cite"><div>old<blockquote type="cite">older</blockquote>still old</div></blockquote>'
        '<p>answer</p><blockquote>indented</blockquote><div id="Signature"><div>Jan</div></div>'
    )
    assert html_to_text(html) == "answer\n\n> indented"


def test_outlook_history_markers_end_the_text() -> None:
    """Outlook's appendonsend / divRplyFwdMsg and its bordered reply header end what is read."""
    assert (
        html_to_text(
            '<div>ok</div><div id="appendonsend"></div><hr><div id="divRplyFwdMsg">From: x</div><div>old</div>'
        )
        == "ok"
    )
    assert (
        html_to_text(
            "<p>ok</p><div style='border:none;border-top:solid #E1E1E1 1.0pt'><p><b>From:</b> x</p></div><p>old</p>"
        )
        == "ok"
    )


@pytest.mark.parametrize(
    "text",
    [
        "Disk alarm on db1\n> 90% disk used",
        "Disk alarm on db1\n> 90% disk used\n> 80% inodes",
        "On db1 the backup job wrote:\n> 90% disk",
        "Backup on db1 wrote 90 GB at 20:51 to /srv\nFrom: backup agent 7",
        "Alarm from panel 3\nFrom: door sensor 12\nTo: zone 4\nStatus: open",
        "Invoice run finished\nFrom: billing@example.com\nSubject line was empty",
        "Door open\n\nJan Novak",
        "Server down, sent from my laptop",
    ],
)
def test_alarm_texts_that_look_like_replies_are_not_cut(text: str) -> None:
    """A '>' line that is no quote, "From:" or "wrote" inside a text, a name at the end: nothing is cut."""
    assert clean_body(text, sender="Jan Novak <jan.novak@example.com>") == text


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("ACK\n\nRegards,\nJan", "ACK"),
        ("ACK\nThanks,\nJan Novak\nOps", "ACK"),
        ("ACK\n\n— Jan", "ACK"),
        ("Coming\n\nNovak, Jan\nOps on call", "Coming"),
    ],
)
def test_a_replys_signature_without_dashes_goes(body: str, text: str) -> None:
    """In a reply, a trailing sign-off or the sender's own name starts a signature that is cut."""
    assert clean_body(body, sender='"Jan Novak" <jan.novak@example.com>', reply=True) == text


def test_a_long_tail_after_a_name_is_a_message_not_a_signature() -> None:
    """More than a signature's few lines after the name line stay: that is what the person wrote."""
    body = "Plan:\n\nJan\n" + "\n".join(f"step {i}" for i in range(8))
    assert clean_body(body, sender="Jan Novak <jan@example.com>", reply=True) == body


def test_the_name_from_the_address_when_there_is_no_display_name() -> None:
    """Without a display name, the address's local part names the sender."""
    assert clean_body("ACK\n\nJan", sender="jan.novak@example.com", reply=True) == "ACK"


def test_a_phone_trailer_goes_even_outside_a_reply() -> None:
    """ "Sent from my iPhone" at the end is never part of the SMS; alone it is kept (it is all there is)."""
    assert clean_body("Gate 3 open\n\nSent from my iPhone") == "Gate 3 open"
    assert clean_body("Sent from my iPhone") == "Sent from my iPhone"


@pytest.mark.parametrize(
    ("headers", "marker"),
    [
        ({"auto-submitted": ["auto-replied"]}, "Auto-Submitted: auto-replied"),
        (
            {"Auto-Submitted": ['Auto-Replied; owner-email="jan@example.com" (vacation)']},
            "Auto-Submitted: auto-replied",
        ),
        ({"auto-submitted": ["auto-generated", "auto-replied"]}, "Auto-Submitted: auto-replied"),
        ({"x-autoreply": ["yes"]}, "X-Autoreply: yes"),
        ({"x-autorespond": ["vacation (out of office)"]}, "X-Autorespond: vacation"),
        ({"x-autorespond": ["Ω\r\nBcc: x"]}, "X-Autorespond: ..."),
        ({"precedence": ["auto_reply"]}, "Precedence: auto_reply"),
        ({"auto-submitted": ["auto-generated"]}, None),
        ({"auto-submitted": ["no"]}, None),
        ({"auto-submitted": ["auto-notified"]}, None),
        ({"precedence": ["bulk"]}, None),
        ({"x-autoreply": ["no"]}, None),
        ({}, None),
    ],
)
def test_auto_reply_markers(headers: dict[str, list[str]], marker: str | None) -> None:
    """RFC 3834 auto-replied (any case, parameters, comments) and the vacation markers are found; auto-generated,
    no and other headers are not; an odd value is never echoed."""
    assert auto_reply_marker(headers) == marker


def test_mime_collects_the_vacation_headers() -> None:
    """The MIME reader hands X-Autoreply and X-Autorespond to the rule, on the fast path as on the full one."""
    raw = b"From: a@b.c\r\nX-Autoreply: yes\r\nX-Autorespond: yes\r\nSubject: s\r\n\r\nhi\r\n"
    mail = read_message(raw)
    assert mail.headers["x-autoreply"] == ["yes"]
    assert mail.headers["x-autorespond"] == ["yes"]


GMAIL_FORWARD = (
    "---------- Forwarded message ---------\nFrom: Panel <panel@example.com>\nDate: Tue, 1 Dec 2026 at 20:40\n"
    "Subject: ALARM\nTo: <ops@example.com>\n\n\nALARM web1 down (HTTP 503)\n-- \nPanel 3000\n"
)
OUTLOOK_FORWARD = (
    "\n\nFrom: Panel <panel@example.com>\nSent: Tuesday, December 1, 2026 8:40 PM\nTo: Ops <ops@example.com>\n"
    "Subject: ALARM\n\nALARM web1 down (HTTP 503)\n"
)
APPLE_FORWARD = (
    "Begin forwarded message:\n\nFrom: Panel <panel@example.com>\nSubject: ALARM\n"
    "Date: 1 December 2026 at 20:40:00 GMT\nTo: ops@example.com\n\nALARM web1 down (HTTP 503)\n"
)


@pytest.mark.parametrize("body", [GMAIL_FORWARD, OUTLOOK_FORWARD, APPLE_FORWARD])
def test_a_forward_with_nothing_written_above_sends_the_forwarded_text(body: str) -> None:
    """An alarm mail forwarded to a number without a word added is not cut to nothing: its own body is sent."""
    assert clean_body(body) == "ALARM web1 down (HTTP 503)"


def test_a_forward_is_unpacked_once_and_a_written_note_wins() -> None:
    """With a note above the forward, the note is the text; a forward inside a forward is not unpacked again."""
    assert clean_body("Please check\n\n" + GMAIL_FORWARD) == "Please check"
    nested = "-----Original Message-----\nFrom: x\nSent: y\nSubject: z\n\nold\n\n-----Original Message-----\nolder"
    assert clean_body(nested) == "old"
    assert clean_body("-----Original Message-----\n\n" + GMAIL_FORWARD) == ""
