"""The outcome mail as its reader gets it: smtplib → mail2sms → fake KwtSMS / Cellcast over HTTP → maildir.

Each test sends a real mail, waits for the outcome mail to appear in the maildir, and reads the raw file as a
mail client would: the Subject line on the wire, the MIME structure, the text part and the HTML part.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from mail2sms.smtp import replies
from tests.fakes.cellcast import FakeCellcast
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ThreadServer, message, reports, send, thread_server, wait_until, write_config

CELLCAST_KEY = "outcome-cellcast-key-41"
CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{kwt}"
username = "kwtuser"
password = "kwt-outcome-secret"
sender = "KWT-MESSAGE"
rate = 50

[providers.cell]
type = "cellcast"
url = "{cellcast}"
key = "{cellcast_key}"
sender = "Clinic"
rate = 50

[[routes]]
match = "sms@sms.test"
format = "keyvalue"
provider = "kwt"
region = "KW"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"

[[routes]]
match = "sms@cellcast.test"
format = "keyvalue"
provider = "cell"
region = "AU"
"""


@pytest.fixture
def kwt() -> Iterator[FakeKwtSms]:
    with FakeKwtSms(accounts={"kwtuser": ("kwt-outcome-secret", 1000.0)}, same_number_interval=0) as fake:
        yield fake


@pytest.fixture
def cellcast() -> Iterator[FakeCellcast]:
    fake = FakeCellcast(keys={CELLCAST_KEY: 1000.0})
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def server(tmp_path: Path, kwt: FakeKwtSms, cellcast: FakeCellcast) -> Iterator[ThreadServer]:
    body = CONFIG.format(kwt=kwt.url, cellcast=cellcast.url, cellcast_key=CELLCAST_KEY)
    path, _ = write_config(tmp_path, body)
    with thread_server(path) as srv:
        yield srv


def outcome_mail(maildir: Path) -> tuple[bytes, EmailMessage]:
    """The one outcome mail in the maildir: its raw bytes and the message parsed from them."""
    wait_until(lambda: reports(maildir), timeout=120)
    [path] = sorted((maildir / "new").iterdir())
    raw = path.read_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return raw, parsed


def part(mail: EmailMessage, kind: str) -> str:
    found = mail.get_body((kind,))
    assert found is not None
    content = found.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def test_one_sms_outcome_mail_names_the_number_in_both_parts(
    server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path
) -> None:
    """One SMS: the subject names the number and the mail's subject, and text and HTML say "sent" with the id."""
    mail = message("96550000001@sms.test", "Server room door open\n", subject="Server room door open")
    code, reply = send(server.port, mail)
    assert replies.QUEUED.matches(code, reply)
    raw, report = outcome_mail(tmp_path / "reports")

    # Not folded after the colon: the whole subject is on the Subject line itself.
    assert b"\nSubject: SMS sent to +96550000001: Server room door open\n" in raw.replace(b"\r\n", b"\n")
    assert report["Subject"] == "SMS sent to +96550000001: Server room door open"
    assert report.get_content_type() == "multipart/mixed"
    [alternative, results] = report.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert results.get_filename() == "results.json"

    [sent] = kwt.sent
    plain = part(report, "plain")
    assert plain.startswith("The SMS to +96550000001 was sent: kwt accepted it.\n")
    assert plain.count("Server room door open") == 2  # the text once, and "Your mail: <subject>"
    assert f"\n+96550000001: sent\n  via kwt, message id {sent.msg_id}\n" in plain

    page = part(report, "html")
    assert "The SMS to +96550000001 was sent: kwt accepted it." in page
    assert sent.msg_id in page
    assert "&nbsp;sent</span>" in page
    assert "kwt-outcome-secret" not in raw.decode("ascii")


def test_markup_in_the_sms_comes_back_escaped_with_the_refusal(
    server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path
) -> None:
    """KwtSMS refuses a text with HTML tags: the subject gives the reason, the HTML part shows the tags as text."""
    text = "Door open <script>alert(1)</script>"
    code, reply = send(server.port, message("96550000002@sms.test", text + "\n", subject="<b>Alarm</b>"))
    assert replies.QUEUED.matches(code, reply)
    _, report = outcome_mail(tmp_path / "reports")

    assert report["Subject"] == "SMS failed to +96550000002: KwtSMS does not accept HTML in the message"
    assert not kwt.sent
    plain = part(report, "plain")
    assert plain.count(text) == 1
    assert "[ERR027]" in plain
    page = part(report, "html")
    assert "<script" not in page
    assert "<b>Alarm" not in page
    assert "Door open &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;Alarm&lt;/b&gt;" in page
    assert "&nbsp;refused</span>" in page
    assert "[ERR027]" in page


def test_three_numbers_with_a_refusal_show_each_state_in_both_parts(
    server: ThreadServer, cellcast: FakeCellcast, tmp_path: Path
) -> None:
    """Cellcast queues two Australian numbers and not the UK one: partly sent, each number's state in both parts."""
    first, second, uk = "61400100001", "61400100002", "447700900001"
    body = f"mobile:{first},{second},+{uk}\ntext:Clinic open at 9\n"
    code, reply = send(server.port, message("sms@cellcast.test", body, subject="Clinic reminder"))
    assert replies.QUEUED.matches(code, reply)
    _, report = outcome_mail(tmp_path / "reports")

    assert report["Subject"] == "SMS partly sent: 2 of 3: Clinic reminder"
    plain = part(report, "plain")
    assert plain.startswith("3 SMS: 2 sent, 1 refused.\n")
    assert plain.count("Clinic open at 9") == 1
    assert f"to +{first}, +{second}, +{uk}:\n  | Clinic open at 9\n" in plain
    for number in (first, second):
        assert f"\n+{number}: sent\n  via cell, message id " in plain
    assert f"\n+{uk}: refused\n  via cell\n" in plain
    assert "[NOT_QUEUED]" in plain

    page = part(report, "html")
    assert "2 of 3 SMS sent" in page
    assert page.count("<tr>") == 4  # the header and one row per number
    assert page.count("&nbsp;sent</span>") == 2
    assert page.count("&nbsp;refused</span>") == 1
    assert "[NOT_QUEUED]" in page


def test_over_fifty_numbers_are_summarised_and_left_to_results_csv(
    server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path
) -> None:
    """60 numbers in one key:value mail: the body gives counts, not 60 rows; results.csv carries every number."""
    numbers = [f"965500010{i:02d}" for i in range(60)]
    body = f"mobile:{','.join(numbers)}\ntext:Office closed today\n"
    code, reply = send(server.port, message("sms@sms.test", body, subject="Closure"))
    assert replies.QUEUED.matches(code, reply)
    _, report = outcome_mail(tmp_path / "reports")

    assert report["Subject"] == "SMS sent: 60 of 60: Closure"
    plain = part(report, "plain")
    assert plain.startswith("60 SMS: 60 sent.\n")
    assert "via kwt" not in plain
    assert "Every number and its outcome is in results.csv" in plain
    page = part(report, "html")
    assert "60 of 60 SMS sent" in page
    assert "<tr>" not in page  # nothing failed: no reasons table, and no row per number
    [attachment] = [p for p in report.iter_attachments() if p.get_filename() == "results.csv"]
    payload = attachment.get_payload(decode=True)
    assert isinstance(payload, bytes)
    rows = list(csv.reader(io.StringIO(payload.decode("utf-8-sig"))))
    assert sorted(row[0] for row in rows[1:]) == [f"+{n}" for n in numbers]
    assert {row[1] for row in rows[1:]} == {"sent"}
