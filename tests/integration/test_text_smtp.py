"""SMS text fidelity end to end: smtplib → mail2sms → fake KwtSMS / Kapow over HTTP, checking the exact bytes each
fake receives, the text cut from real-world mail (HTML, multipart/alternative, QP, base64, several charsets),
parts limits (554 or truncation), smart replacement and dry runs (an outcome mail, zero provider requests)."""

from __future__ import annotations

import base64
import email.utils
import itertools
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest

from mail2sms.smtp import replies
from tests.fakes.kapow import FakeKapow, KapowSent
from tests.fakes.kwtsms import FakeKwtSms, KwtSent
from tests.fakes.server import RecordedRequest
from tests.harness import ThreadServer, report_json, report_text, reports, wait_until, write_config

CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{kwt}"
username = "kwtuser"
password = "kwt-secret-1"
sender = "KWT-MESSAGE"
rate = 100

[providers.kwt.options]  # these tests read the legacy form's bytes on the wire
api = "text"

[providers.kwtdry]
type = "kwtsms"
url = "{kwtdry}"
username = "kwtuser"
password = "kwt-secret-1"
sender = "KWT-MESSAGE"

[providers.kapow]
type = "kapow"
url = "{kapow}"
username = "kapowuser"
password = "kapow-secret-1"
rate = 100

[[routes]]
match = "sms@sms.test"
format = "keyvalue"
provider = "kwt"
region = "KW"

[[routes]]
match = "sms@dry.test"
format = "keyvalue"
provider = "kwtdry"
region = "KW"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
end_markers = ["$$", "##"]

[[routes]]
match = "*@plain.test"
format = "address"
provider = "kwt"
region = "KW"
smart_replace = false

[[routes]]
match = "*@one.test"
format = "address"
provider = "kwt"
region = "KW"
max_parts = 1

[[routes]]
match = "*@cut.test"
format = "address"
provider = "kwt"
region = "KW"
max_parts = 1
truncate = true

[[routes]]
match = "*@dry.test"
format = "address"
provider = "kwtdry"
region = "KW"
dry_run = true

[[routes]]
match = "*@subject.test"
format = "address"
provider = "kwt"
region = "KW"
text_from = "subject+body"

[[routes]]
match = "*@kapow.test"
format = "address"
provider = "kapow"
region = "KW"

[[routes]]
match = "*@kapowplain.test"
format = "address"
provider = "kapow"
region = "KW"
smart_replace = false
"""

_numbers = itertools.count(1)


def fresh_number() -> str:
    """A Kuwaiti mobile number no other test of this module uses (the fakes are shared)."""
    return f"965{50100000 + next(_numbers)}"


@pytest.fixture(scope="module")
def kwt() -> Iterator[FakeKwtSms]:
    with FakeKwtSms(accounts={"kwtuser": ("kwt-secret-1", 10_000.0)}, same_number_interval=0) as fake:
        yield fake


@pytest.fixture(scope="module")
def kwtdry() -> Iterator[FakeKwtSms]:
    with FakeKwtSms(accounts={"kwtuser": ("kwt-secret-1", 10_000.0)}, same_number_interval=0) as fake:
        yield fake


@pytest.fixture(scope="module")
def kapow() -> Iterator[FakeKapow]:
    with FakeKapow(accounts={"kapowuser": ("kapow-secret-1", 10_000)}) as fake:
        yield fake


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("text")


@pytest.fixture(scope="module")
def server(workdir: Path, kwt: FakeKwtSms, kwtdry: FakeKwtSms, kapow: FakeKapow) -> Iterator[ThreadServer]:
    path, _ = write_config(workdir, CONFIG.format(kwt=kwt.url, kwtdry=kwtdry.url, kapow=kapow.url))
    srv = ThreadServer(path).start()
    try:
        yield srv
    finally:
        srv.stop()


# --- helpers ---------------------------------------------------------------------------------------------------


def text_mail(to: str, body: str, subject: str = "sms") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"sender-{to.split('@')[0]}@example.org"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = email.utils.make_msgid(domain="example.org")
    msg.set_content(body)
    return msg


def raw_mail(to: str, headers: str, body: bytes) -> bytes:
    """A hand-written MIME mail, so the test controls charset and transfer encoding byte for byte."""
    head = (f"From: sender-{to.split('@')[0]}@example.org\r\nTo: {to}\r\nSubject: sms\r\n"
            f"Message-ID: {email.utils.make_msgid(domain='example.org')}\r\nMIME-Version: 1.0\r\n{headers}\r\n")
    return head.encode("ascii") + b"\r\n" + body


def send(port: int, to: str, mail: EmailMessage | bytes) -> tuple[int, bytes]:
    """Deliver with smtplib; return the DATA reply."""
    data = mail.as_bytes(policy=SMTP) if isinstance(mail, EmailMessage) else mail  # CRLF: smtplib sends bytes as-is
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        code, text = client.mail(f"sender-{to.split('@')[0]}@example.org")
        assert code == 250, text
        code, text = client.rcpt(to)
        assert code == 250, text
        return client.data(data)


def queued(port: int, to: str, mail: EmailMessage | bytes) -> None:
    code, text = send(port, to, mail)
    assert replies.QUEUED.matches(code, text), text


def kwt_sms(kwt: FakeKwtSms, number: str) -> tuple[KwtSent, RecordedRequest]:
    """What the KwtSMS fake sent to `number`, and the request that carried it."""
    sent = wait_until(lambda: [s for s in kwt.sent if s.number == number])[0]
    request = next(r for r in kwt.requests if r.path.endswith("/send/") and number in (r.param("mobile") or ""))
    return sent, request


def kapow_sms(kapow: FakeKapow, number: str) -> tuple[KapowSent, RecordedRequest]:
    sent = wait_until(lambda: [s for s in kapow.sent if s.number == number])[0]
    request = next(r for r in kapow.requests if number in (r.param("mobile") or ""))
    return sent, request


def wire_value(request: RecordedRequest, name: str) -> bytes:
    """The bytes of one form field exactly as they crossed the wire (percent-escapes and '+' undone)."""
    for pair in request.body.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == name.encode():
            return unquote_to_bytes(value.replace(b"+", b" "))
    raise AssertionError(f"no {name} field")


def raw_field(request: RecordedRequest, name: str) -> bytes:
    """One form field as written in the request body, still percent-encoded."""
    for pair in request.body.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == name.encode():
            return value
    raise AssertionError(f"no {name} field")


def report_for(workdir: Path, number: str) -> EmailMessage:
    """The outcome mail whose results.json names `number`."""
    def find() -> list[EmailMessage]:
        return [r for r in reports(workdir / "reports")
                if any(j["number"] == "+" + number for j in report_json(r)["jobs"])]
    return wait_until(find)[0]


# --- exact bytes at the providers ----------------------------------------------------------------------------

# (text in the mail, what the phone must get, KwtSMS lang, bytes of the message field on the wire)
WIRE_TABLE = [
    ("مرحبا بكم", "مرحبا بكم", "3", bytes.fromhex("d985d8b1d8add8a8d8a7 20 d8a8d983d985".replace(" ", ""))),
    ("Hi 𠀀", "Hi 𠀀", "3", b"Hi " + bytes.fromhex("f0a08080")),  # outside the BMP, not an emoji
    ("Price: 5€", "Price: 5€", "1", b"Price: 5" + bytes.fromhex("e282ac")),
    ("{}[]~^|\\", "{}[]~^|\\", "1", b"{}[]~^|\\"),
    ("“Hi” it’s", "\"Hi\" it's", "1", b"\"Hi\" it's"),
    ("“مرحبا”", "“مرحبا”", "3", bytes.fromhex("e2809c d985d8b1d8add8a8d8a7 e2809d".replace(" ", ""))),
]
WIRE_IDS = ["arabic", "astral", "euro", "extension", "curly-quotes", "arabic-in-curly-quotes"]


@pytest.mark.parametrize(("text", "phone", "lang", "wire"), WIRE_TABLE, ids=WIRE_IDS)
def test_kwtsms_receives_exact_bytes(server: ThreadServer, kwt: FakeKwtSms, text: str, phone: str, lang: str,
                                     wire: bytes) -> None:
    """KwtSMS gets lang 1 for GSM-7 text and 3 otherwise, and the message as exactly these UTF-8 bytes."""
    number = fresh_number()
    queued(server.port, f"{number}@sms.test", text_mail(f"{number}@sms.test", text))
    sent, request = kwt_sms(kwt, number)
    assert (sent.text, str(sent.lang)) == (phone, lang)
    assert raw_field(request, "lang") == lang.encode()
    assert wire_value(request, "message") == wire


def test_kwtsms_percent_encoding_is_literal(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """The form body spells the extension characters and the euro sign the way PHP decodes them."""
    number = fresh_number()
    queued(server.port, f"{number}@sms.test", text_mail(f"{number}@sms.test", "{}[]~^|\\ 5€"))
    _, request = kwt_sms(kwt, number)
    assert raw_field(request, "message") == b"%7B%7D%5B%5D~%5E%7C%5C+5%E2%82%AC"


@pytest.mark.parametrize(("text", "phone", "lang", "wire"), WIRE_TABLE, ids=WIRE_IDS)
def test_kapow_receives_exact_utf8_bytes(server: ThreadServer, kapow: FakeKapow, text: str, phone: str, lang: str,
                                         wire: bytes) -> None:
    """Kapow gets the text as a UTF-8 form field (its document names no other charset), after smart replacement."""
    number = fresh_number()
    queued(server.port, f"{number}@kapow.test", text_mail(f"{number}@kapow.test", text))
    sent, request = kapow_sms(kapow, number)
    assert sent.text == phone
    assert wire_value(request, "sms") == wire
    assert "charset" not in request.headers.get("content-type", "") or "utf-8" in request.headers["content-type"]


def test_smart_replacement_off_sends_the_typography(server: ThreadServer, kwt: FakeKwtSms,
                                                     kapow: FakeKapow) -> None:
    """With smart_replace = false, curly quotes reach both providers as written (KwtSMS lang 3)."""
    number = fresh_number()
    queued(server.port, f"{number}@plain.test", text_mail(f"{number}@plain.test", "“Hi” it’s"))
    sent, request = kwt_sms(kwt, number)
    assert (sent.text, sent.lang) == ("“Hi” it’s", 3)
    assert raw_field(request, "message") == b"%E2%80%9CHi%E2%80%9D+it%E2%80%99s"
    number = fresh_number()
    queued(server.port, f"{number}@kapowplain.test", text_mail(f"{number}@kapowplain.test", "“Hi” it’s"))
    sent_k, request = kapow_sms(kapow, number)
    assert sent_k.text == "“Hi” it’s"
    assert wire_value(request, "sms") == "“Hi” it’s".encode()


def test_smart_replacement_is_reported(server: ThreadServer, kwt: FakeKwtSms, workdir: Path) -> None:
    """The outcome mail says which typography was replaced, shows parts and encoding, and the text sent."""
    number = fresh_number()
    queued(server.port, f"{number}@sms.test", text_mail(f"{number}@sms.test", "Don’t forget – 5\u00a0pm…"))
    sent, _ = kwt_sms(kwt, number)
    assert sent.text == "Don't forget - 5 pm..."
    words = report_text(report_for(workdir, number))
    assert "  1 part, GSM-7\n" in words
    note = "typographic characters replaced to fit GSM-7: ’ → ', – → -, no-break space → space, … → ..."
    assert f"  Note: {note}\n" in words
    assert f"Text (1 part, GSM-7), to +{number}:\n  | Don't forget - 5 pm...\n  Note: {note}\n" in words


def test_keyvalue_lang2_sends_windows_1256_bytes(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """lang:2 in a keyvalue mail sends the message as Windows-1256 bytes, which the fake decodes back."""
    number = fresh_number()
    body = f"mobile:{number}\nlang:2\ntext:مرحبا+بكم\n"
    queued(server.port, "sms@sms.test", text_mail("sms@sms.test", body))
    sent, request = kwt_sms(kwt, number)
    assert (sent.text, sent.lang) == ("مرحبا بكم", 2)
    assert raw_field(request, "message") == b"%E3%D1%CD%C8%C7+%C8%DF%E3"
    assert wire_value(request, "message") == bytes.fromhex("e3d1cdc8c7 20 c8dfe3".replace(" ", ""))


def test_keyvalue_lang_that_cannot_carry_the_text_is_refused(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """lang:2 with Cyrillic is refused at DATA (554 5.6.0) naming the character; nothing reaches KwtSMS."""
    number = fresh_number()
    body = f"mobile:{number}\nlang:2\ntext:مرحبا+ж\n"
    code, text = send(server.port, "sms@sms.test", text_mail("sms@sms.test", body))
    assert replies.BAD_CONTENT.matches(code, text)
    assert b"lang:2" in text
    assert b"U+0436" in text
    assert not [r for r in kwt.requests if number in (r.param("mobile") or "")]


# --- mail bodies in real-world shapes ------------------------------------------------------------------------

MAILS = [
    pytest.param(
        "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n",
        b"Caf=E9 ouvert =E0 8h =96 Ni=F1o\r\n", "Café ouvert à 8h - Niño", 1, id="latin1-qp-with-cp1252-dash"),
    pytest.param(
        "Content-Type: text/plain; charset=windows-1256\r\nContent-Transfer-Encoding: base64\r\n",
        base64.b64encode("مرحبا بكم\n".encode("cp1256")) + b"\r\n", "مرحبا بكم", 3, id="windows-1256-base64"),
    pytest.param(
        "Content-Type: text/plain; charset=iso-2022-jp\r\nContent-Transfer-Encoding: 7bit\r\n",
        "会議は3時です\n".encode("iso-2022-jp"), "会議は3時です", 3, id="iso-2022-jp"),
    pytest.param(
        "Content-Type: text/plain; charset=shift_jis\r\nContent-Transfer-Encoding: base64\r\n",
        base64.b64encode("在庫あり：３個\n".encode("shift_jis")) + b"\r\n", "在庫あり：３個", 3, id="shift-jis-base64"),
    pytest.param(
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
        base64.encodebytes("<html><head><style>p{margin:0}</style></head><body><p>Server&nbsp;<b>down</b></p>"
                           "<p>Call “ops”   now</p></body></html>".encode()),
        'Server down\n\nCall "ops" now', 1, id="html-only-utf8-base64"),
    pytest.param(
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
        b'<div dir=3D"ltr">Yes, go ahead<div><br></div></div><div class=3D"gmail_quote"><div>On Mon, 1 Jan 2024=\r\n'
        b' at 10:00, Bob &lt;bob@example.org&gt; wrote:<br></div><blockquote class=3D"gmail_quote">Shall I restart'
        b'?</blockquote></div>\r\n',
        "Yes, go ahead", 1, id="html-reply-quote-cut"),
    pytest.param(
        'Content-Type: multipart/alternative; boundary="b1"\r\n',
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Plain wins =E2=80=93 always=\r\n ready\r\n\r\n-- \r\nJohn Smith\r\nACME Ltd\r\n"
        b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML loses</p>\r\n--b1--\r\n",
        "Plain wins - always ready", 1, id="multipart-alternative-qp-signature"),
    pytest.param(
        'Content-Type: multipart/alternative; boundary="b2"\r\n',
        b"--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\r\n"
        b"--b2\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"<p>Temp=E9rature: <i>41</i></p><ul><li>Salle A</li><li>Salle B</li></ul>\r\n--b2--\r\n",
        "Température: 41\n\n- Salle A\n- Salle B", 1, id="empty-plain-falls-back-to-latin1-html"),
    pytest.param(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
        b"Door open\tzone 3\r\n$$\r\nSent by ACME Alarm 3000\r\n", "Door open zone 3", 1,
        id="end-marker-and-tab"),
]


@pytest.mark.parametrize(("headers", "body", "expected", "lang"), MAILS)
def test_mail_shapes_give_the_expected_sms(server: ThreadServer, kwt: FakeKwtSms, headers: str, body: bytes,
                                           expected: str, lang: int) -> None:
    """Charset, transfer encoding, HTML, alternatives, quotes, signatures and end markers give exactly this SMS."""
    number = fresh_number()
    queued(server.port, f"{number}@sms.test", raw_mail(f"{number}@sms.test", headers, body))
    sent, _ = kwt_sms(kwt, number)
    assert (sent.text, sent.lang) == (expected, lang)


def test_subject_is_prepended_when_the_route_says_so(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """text_from = "subject+body" sends the subject, a line break, then the cleaned body."""
    number = fresh_number()
    mail = text_mail(f"{number}@subject.test", "Zone 3 open\n\n-- \nPanel 4", subject="ALARM  – site\u00a0B")
    queued(server.port, f"{number}@subject.test", mail)
    sent, _ = kwt_sms(kwt, number)
    assert sent.text == "ALARM - site B\nZone 3 open"


# --- parts limits --------------------------------------------------------------------------------------------


def test_over_max_parts_is_refused_with_554(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """A two-part text on a one-part route is refused at DATA naming parts and encoding; nothing is sent."""
    number = fresh_number()
    code, text = send(server.port, f"{number}@one.test", text_mail(f"{number}@one.test", "x" * 200))
    assert replies.BAD_CONTENT.matches(code, text)
    assert b"needs 2 SMS parts in GSM-7 (200 characters)" in text
    assert b"allows at most 1" in text
    number = fresh_number()
    code, text = send(server.port, f"{number}@one.test", text_mail(f"{number}@one.test", "م" * 71))
    assert replies.BAD_CONTENT.matches(code, text)
    assert b"needs 2 SMS parts in UCS-2" in text
    assert not [r for r in kwt.requests if number in (r.param("mobile") or "")]


def test_provider_part_limit_is_refused_with_554(server: ThreadServer) -> None:
    """Without a route limit, KwtSMS's six parts apply: seven parts are refused before sending."""
    number = fresh_number()
    code, text = send(server.port, f"{number}@sms.test", text_mail(f"{number}@sms.test", ("y" * 99 + "\n") * 10))
    assert replies.BAD_CONTENT.matches(code, text)
    assert b"needs 7 SMS parts in GSM-7" in text
    assert b"kwtsms takes at most 6" in text


@pytest.mark.parametrize(
    ("text", "sent", "lang", "encoding"),
    [
        ("z" * 200, "z" * 157 + "...", 1, "GSM-7"),
        ("م" * 100, "م" * 69 + "…", 3, "UCS-2"),
        ("𠀀" * 40, "𠀀" * 34 + "…", 3, "UCS-2"),  # surrogate pairs (KwtSMS refuses emoji: see kwtsms_truth)
        ("€" * 100, "€" * 78 + "...", 1, "GSM-7"),
    ],
    ids=["gsm7", "arabic", "astral", "euro-pairs"],
)
def test_truncation_when_the_route_says_so(server: ThreadServer, kwt: FakeKwtSms, workdir: Path, text: str,
                                           sent: str, lang: int, encoding: str) -> None:
    """truncate = true: the fake gets exactly one part ending in the encoding's ellipsis; the report says so."""
    number = fresh_number()
    queued(server.port, f"{number}@cut.test", text_mail(f"{number}@cut.test", text))
    got, _ = kwt_sms(kwt, number)
    assert (got.text, got.lang) == (sent, lang)
    words = report_text(report_for(workdir, number))
    assert f"  1 part, {encoding}\n" in words
    assert f"Note: truncated to 1 {encoding} part (the route *@cut.test allows at most 1)" in words
    assert f"to +{number}:\n  | {sent}\n  Note: truncated to 1 {encoding} part" in words


# --- dry runs ----------------------------------------------------------------------------------------------


def test_route_dry_run_reports_exactly_what_would_be_sent(server: ThreadServer, kwtdry: FakeKwtSms,
                                                          workdir: Path) -> None:
    """A dry-run route mails back number, provider, parts, encoding, notes and the final text; no request is made."""
    number = fresh_number()
    national = number.removeprefix("965")
    queued(server.port, f"{national}@dry.test", text_mail(f"{national}@dry.test", "Server “db1” down…\n-- \nOps"))
    report = report_for(workdir, number)
    assert report["Subject"] == f"SMS dry run: would be sent to +{number}: sms"
    words = report_text(report)
    assert (f"Text (1 part, GSM-7), to +{number}:\n  | Server \"db1\" down...\n"
            "  Note: typographic characters replaced to fit GSM-7: “ → \", ” → \", … → ...\n") in words
    assert f"\n+{number}: would be sent (dry run)\n  via kwtdry\n  1 part, GSM-7\n" in words
    assert "nothing was sent" in words
    job = report_json(report)["jobs"][0]
    assert (job["status"], job["text"], job["parts"], job["encoding"]) == ("dry_run", 'Server "db1" down...', 1,
                                                                          "gsm7")
    assert kwtdry.requests == []


def test_keyvalue_test_line_is_a_dry_run(server: ThreadServer, kwtdry: FakeKwtSms, workdir: Path) -> None:
    """`test:1` checks and reports the normalised numbers, UCS-2 parts and text, and calls no provider."""
    first, second = fresh_number(), fresh_number()
    text = "تنبيه: " + "خ" * 80
    body = f"mobile:{first.removeprefix('965')},+{second}\ntest:1\ntext:{text.replace(' ', '+')}\n"
    queued(server.port, "sms@dry.test", text_mail("sms@dry.test", body))
    report = report_for(workdir, first)
    words = report_text(report)
    assert f"Text (2 parts, UCS-2), to +{first}, +{second}:\n  | {text}\n" in words
    assert words.count(text) == 1  # one text for both numbers, shown once
    for number in (first, second):
        assert f"\n+{number}: would be sent (dry run)\n  via kwtdry\n  2 parts, UCS-2\n" in words
    assert report["Subject"] == "SMS dry run: 2 of 2 would be sent: sms"
    assert kwtdry.requests == []


def test_dry_run_still_refuses_what_cannot_be_sent(server: ThreadServer, kwtdry: FakeKwtSms) -> None:
    """A dry run checks everything: a text over KwtSMS's six parts is refused at DATA like a real send."""
    number = fresh_number()
    code, text = send(server.port, f"{number}@dry.test", text_mail(f"{number}@dry.test", ("q" * 99 + "\n") * 10))
    assert replies.BAD_CONTENT.matches(code, text)
    assert b"7 SMS parts" in text
    assert kwtdry.requests == []
