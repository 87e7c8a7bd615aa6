"""The outcome mail for people: MIME structure, the HTML alternative, Subject folding, distinct texts, big summaries."""

from __future__ import annotations

import base64
import csv
import email
import email.policy
import io
import re
from email.message import EmailMessage
from typing import Any

import pytest

from mail2sms.model import Account, Job, JobState, Submission
from mail2sms.report import headers, states
from mail2sms.report.compose import compose
from mail2sms.report.outcome import ROWS_LIMIT

S, R, U, E, C = JobState.SENT, JobState.REJECTED, JobState.UNKNOWN, JobState.EXPIRED, JobState.CANCELLED
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def job(state: JobState = S, number: str = "96550000000", **kw: Any) -> Job:
    defaults: dict[str, Any] = {"text": "Server room door open", "provider": "kwt"}
    if state is S:
        defaults["provider_id"] = f"id-{number[-4:]}"
    if state is R:
        defaults.update(code="ERR006", error="KwtSMS found no valid number in the request")
    defaults.update(kw)
    return Job(number=number, state=state, **defaults)


def make(jobs: list[Job], **kw: Any) -> EmailMessage:
    defaults: dict[str, Any] = {
        "envelope_from": "alice@example.org",
        "recipients": ["sms@sms.example.org"],
        "route": "sms@sms.example.org",
        "report_to": "alice@example.org",
        "id": "01HXYZSUBMISSION",
        "received_at": 1_700_000_000.0,
        "subject": "Server room door open",
    }
    defaults.update(kw)
    sub = Submission(jobs=jobs, **defaults)
    message = compose(sub, jobs, from_addr="m@sms.example.org", hostname="sms.example.org", original_message_id=None)
    parsed = email.message_from_bytes(message.as_bytes(policy=email.policy.SMTP), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")  # the mail went over the wire with CRLF line ends


def numbers(count: int, state: JobState = S, **kw: Any) -> list[Job]:
    return [job(state, number=f"9655{i:07d}", **kw) for i in range(count)]


# -- structure --------------------------------------------------------------------------------------------------
def test_text_and_html_are_alternatives_before_the_attachments() -> None:
    """multipart/mixed holds multipart/alternative (text/plain, then text/html), then results.json."""
    message = make([job(), job(R, number="96550000001")])
    assert message.get_content_type() == "multipart/mixed"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["multipart/alternative", "application/json"]
    alternative = [p.get_content_type() for p in parts[0].iter_parts()]
    assert alternative == ["text/plain", "text/html"]
    html_part = message.get_body(("html",))
    assert html_part is not None
    assert html_part.get_content_charset() == "utf-8"
    assert html_part["Content-Transfer-Encoding"] == "quoted-printable"


def test_a_big_submission_gets_results_csv_with_every_number() -> None:
    """Over ROWS_LIMIT SMS of a non-CSV mail, a results.csv with one row per number is attached after the JSON."""
    jobs = numbers(ROWS_LIMIT + 10)
    jobs[3] = job(R, number=jobs[3].number)
    message = make(jobs)
    names = [p.get_filename() for p in message.iter_attachments()]
    assert names == ["results.json", "results.csv"]
    [csv_part] = [p for p in message.iter_attachments() if p.get_filename() == "results.csv"]
    payload = csv_part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    rows = list(csv.reader(io.StringIO(payload.decode("utf-8-sig"))))
    assert rows[0] == ["number", "status", "provider", "provider_id", "parts", "encoding", "error", "detail"]
    assert len(rows) == 1 + ROWS_LIMIT + 10
    assert rows[4][:2] == ["+96550000003", "rejected"]
    assert rows[4][6] == "KwtSMS found no valid number in the request [ERR006]"


def test_a_small_submission_gets_no_plain_results_csv() -> None:
    """Up to ROWS_LIMIT SMS, every row is in the mail itself: only results.json is attached."""
    message = make(numbers(ROWS_LIMIT))
    assert [p.get_filename() for p in message.iter_attachments()] == ["results.json"]


# -- Subject folding --------------------------------------------------------------------------------------------
def _raw_subject(message: EmailMessage) -> list[str]:
    raw = message.as_bytes(policy=email.policy.SMTP).decode("ascii")
    head = raw.split("\r\n\r\n", 1)[0].split("\r\n")
    start = next(i for i, line in enumerate(head) if line.startswith("Subject:"))
    end = start + 1
    while end < len(head) and head[end].startswith(" "):
        end += 1
    return head[start:end]


@pytest.mark.parametrize(
    "original",
    [
        "Server room door open on the second floor, beside the generator room, please check it",
        "Grüße aus Kuwait: der Serverraum ist offen, bitte sofort prüfen und Bescheid geben",
        "باب غرفة الخوادم مفتوح في الطابق الثاني بجانب غرفة المولد يرجى التحقق",
        "https://monitoring.example.org/alerts/1234567890/a-very-long-path-without-any-space-in-it-at-all",
    ],
)
def test_subject_folds_between_words_never_after_the_colon(original: str) -> None:
    """A long subject folds at spaces, within 78 characters a line, starting on the Subject line, and reads back."""
    message = make([job()], subject=original)
    lines = _raw_subject(message)
    assert lines[0].startswith("Subject: SMS sent to +96550000000:")
    assert all(len(line) <= 78 for line in lines), lines
    assert message["Subject"] == f"SMS sent to +96550000000: {original}"


def test_non_ascii_subject_is_rfc2047_and_ascii_words_stay_plain() -> None:
    """Only the non-ASCII words become encoded words (UTF-8); the ASCII words stay readable on the wire."""
    lines = _raw_subject(make([job()], subject="Grüße aus Kuwait"))
    assert lines == ["Subject: SMS sent to +96550000000: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Kuwait"]


def test_fold_never_splits_a_character_across_encoded_words() -> None:
    """Every encoded word of a long Arabic run decodes on its own to whole characters."""
    value = "SMS sent: " + "مرحبا بكم " * 20
    folded = headers.fold("Subject", value)
    for word in re.findall(r"=\?utf-8\?b\?([^?]*)\?=", folded):
        base64.b64decode(word).decode("utf-8")  # raises on a split character
    assert all(len(line) <= 78 for line in ("Subject: " + folded).split("\r\n"))


# -- the text part ----------------------------------------------------------------------------------------------
def test_each_distinct_text_is_shown_once() -> None:
    """Three numbers with one text and one with another: each text appears once, numbered, with its recipients."""
    jobs = [*numbers(3, text="Meeting at 10"), job(number="96550000009", text="Meeting at 11 (for you)")]
    text = body(make(jobs), "plain")
    assert text.count("Meeting at 10") == 1
    assert text.count("Meeting at 11 (for you)") == 1
    assert "Text 1 (1 part, GSM-7), to +96550000000, +96550000001, +96550000002:\n  | Meeting at 10\n" in text
    assert "Text 2 (1 part, GSM-7), to +96550000009:\n  | Meeting at 11 (for you)\n" in text
    assert "\n+96550000009: sent\n  via kwt, message id id-0009\n  1 part, GSM-7, text 2\n" in text
    html_body = body(make(jobs), "html")
    assert html_body.count("Meeting at 10") == 1
    assert html_body.count("Meeting at 11 (for you)") == 1


def test_the_text_part_starts_with_a_one_line_summary() -> None:
    """The first line says what happened; one SMS names its number and provider."""
    assert body(make([job()]), "plain").startswith("The SMS to +96550000000 was sent: kwt accepted it.\n\n")
    maybe = body(make([job(U, code="ReadTimeout")]), "plain")
    assert maybe.startswith("The SMS to +96550000000 may have been sent: nobody can tell whether kwt took it.\n")
    mixed = body(make([job(), job(R, number="96550000001")]), "plain")
    assert mixed.startswith("2 SMS: 1 sent, 1 refused.\n")


def test_what_mail2sms_changed_is_shown_once_with_its_text() -> None:
    """Notes about the text (smart replacement, truncation) go with the text they changed, once."""
    jobs = numbers(4, text="it's", notes=["typographic characters replaced"])
    text = body(make(jobs), "plain")
    assert text.count("Note: typographic characters replaced") == 1
    assert "  | it's\n  Note: typographic characters replaced\n" in text


# -- over ROWS_LIMIT ---------------------------------------------------------------------------------------------
def _big() -> list[Job]:
    jobs = numbers(ROWS_LIMIT + 30)
    for i in range(0, 12):
        jobs[i] = job(R, number=jobs[i].number, row=i + 2)
    for i in range(12, 15):
        jobs[i] = job(R, number=jobs[i].number, code="ERR028", error="wait 15 seconds before sending to this number")
    jobs[20] = job(U, number=jobs[20].number, code="ReadTimeout", error="KwtSMS did not answer in time")
    return jobs


def test_over_fifty_the_text_groups_reasons_with_counts() -> None:
    """A big submission's text part counts each reason and names a few examples instead of one block per number."""
    text = body(make(_big()), "plain")
    assert "80 SMS: 64 sent, 1 may have been sent, 15 refused." in text
    assert "       12  refused: KwtSMS found no valid number in the request [ERR006]" in text
    assert "CSV row 2, CSV row 3, CSV row 4, CSV row 5, CSV row 6 and 7 more" in text
    assert "        3  refused: wait 15 seconds before sending to this number [ERR028]" in text
    assert "        1  may have been sent: KwtSMS did not answer in time [ReadTimeout]" in text
    assert "Every number and its outcome is in results.csv" in text
    assert "via kwt" not in text  # no per-number blocks


def test_over_fifty_the_html_groups_reasons_and_has_no_row_per_number() -> None:
    """The HTML part of a big submission shows counts and grouped reasons, not 80 table rows."""
    page = body(make(_big()), "html")
    assert "64 of 80 SMS sent" in page
    for pill in ("&nbsp;15 refused", "&nbsp;64 sent", "&nbsp;1 may have been sent"):
        assert pill in page
    assert "KwtSMS found no valid number in the request [ERR006]" in page
    assert page.count("<tr>") == 1 + 3  # the header row and one row per reason
    assert "results.csv" in page


# -- the HTML part ----------------------------------------------------------------------------------------------
def test_html_escapes_everything_from_mail_and_providers() -> None:
    """Markup in the SMS text, the original subject, an error, a detail and an id comes out escaped."""
    jobs = [
        job(text=HOSTILE, detail=HOSTILE, provider_id='"><b>id</b>'),
        job(R, number="96550000001", text=HOSTILE, error=HOSTILE, code="<i>E</i>"),
    ]
    page = body(make(jobs, subject=HOSTILE), "html")
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "<b>id</b>" not in page
    assert "<i>E</i>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;b&gt;id&lt;/b&gt;" in page


def test_html_needs_nothing_outside_the_mail() -> None:
    """Inline styles only: no style sheet, script, image, font or link to fetch."""
    page = body(make([job(), job(R, number="96550000001"), job(U, number="96550000002")]), "html")
    lowered = page.lower()
    for forbidden in ("<style", "<script", "<link", "<img", "src=", "url(", "http://", "https://", "@import"):
        assert forbidden not in lowered, forbidden
    assert '<meta name="color-scheme" content="light dark">' in page
    assert 'name="viewport"' in page


@pytest.mark.parametrize(
    ("state", "kw", "status"),
    [(S, {}, "sent"), (R, {}, "rejected"), (U, {"code": "ReadTimeout"}, "unknown"), (E, {}, "expired")],
)
def test_html_state_has_colour_symbol_and_words(state: JobState, kw: dict[str, Any], status: str) -> None:
    """Each state is a badge with its colour and also its symbol and words, so colour is never the only signal."""
    look = states.LOOKS[status]
    page = body(make([job(state, **kw), job(number="96550000001")]), "html")
    assert f"background:{look.tone.background};color:#ffffff" in page
    assert f"{look.tone.symbol}&nbsp;{look.label}</span>" in page


def test_html_table_has_each_number_state_parts_id_and_reason() -> None:
    """A row per number with its state, parts and encoding, provider and message id, reason and what to do."""
    jobs = [job(parts=2, encoding="ucs2", provider_id="kwt-778899"), job(R, number="96550000001", row=7)]
    page = body(make(jobs), "html")
    assert page.count("<tr>") == 3
    assert "+96550000000" in page
    assert "+96550000001" in page
    assert "2 parts, UCS-2" in page
    assert "kwt-778899" in page
    assert "Accepted by kwt" in page
    assert "KwtSMS found no valid number in the request [ERR006]" in page
    assert "CSV row 7" in page


def test_html_says_a_dry_run_sent_nothing() -> None:
    """A dry run's HTML title says nothing was sent and no badge says "sent"."""
    jobs = [job(C, number=f"9655000000{i}", code="DRYRUN") for i in range(2)]
    page = body(make(jobs, dry_run=True), "html")
    assert "Dry run: 2 of 2 SMS would be sent; nothing was sent" in page
    assert "&nbsp;sent</span>" not in page


def test_account_secret_in_the_original_subject_is_blanked() -> None:
    """A subject that carries the account's password (a form that puts it there) never shows it back."""
    account = Account(username="u", password="Pw-s3cret-4711")
    message = make([job(account=account)], subject="login u Pw-s3cret-4711")
    assert "Pw-s3cret-4711" not in str(message["Subject"])
    assert "Pw-s3cret-4711" not in body(message, "plain")
    assert "Pw-s3cret-4711" not in body(message, "html")
    assert message["Subject"] == "SMS sent to +96550000000: login u ***"


def test_advice_is_wrapped_for_a_terminal() -> None:
    """A long "What to do" is wrapped within 78 columns, its continuation indented under it; errors stay whole."""
    long_error = "the provider refused this number for a reason it explains at length " * 2
    text = body(make([job(U, code="ReadTimeout"), job(R, number="96550000001", error=long_error.strip())]), "plain")
    advice = text.split("  What to do: ", 1)[1].split("\n\n", 1)[0]
    assert advice.startswith("Check with the recipient or the provider before sending again,\n    or the")
    assert all(len(line) <= 78 for line in ("  What to do: " + advice).split("\n"))
    assert f"  Error: {long_error.strip()} [ERR006]\n" in text


def test_html_text_block_follows_the_script_direction() -> None:
    """The SMS text block is `dir="auto"`, so an Arabic SMS reads right to left in the HTML part."""
    page = body(make([job(text="تنبيه: الباب مفتوح", encoding="ucs2")]), "html")
    assert '<div dir="auto" style="' in page
    assert "تنبيه: الباب مفتوح</div>" in page
