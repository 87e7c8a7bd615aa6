"""The outcome mail: subject per outcome, threading headers, text part, results.json, secrets, big inputs.

The HTML alternative, header folding and the big-submission summary have their own file: test_compose_html.py.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import quopri
from email.message import EmailMessage
from typing import Any

import pytest

from mail2sms.model import Account, Job, JobState, Submission
from mail2sms.report.compose import compose

SECRET_PASSWORD = "Pw-s3cret-4711"
SECRET_KEY = "KEY-ab12cd34ef56"

S, R, U, E, C = JobState.SENT, JobState.REJECTED, JobState.UNKNOWN, JobState.EXPIRED, JobState.CANCELLED


def job(state: JobState = S, number: str = "96550000000", **kw: Any) -> Job:
    defaults: dict[str, Any] = {"text": "hello", "provider": "kwt"}
    if state is S:
        defaults["provider_id"] = "msg-1"
    if state is R:
        defaults.update(code="ERR003", error="the username or password was not accepted by KwtSMS")
    defaults.update(kw)
    return Job(number=number, state=state, **defaults)


def submission(jobs: list[Job], **kw: Any) -> Submission:
    defaults: dict[str, Any] = {
        "envelope_from": "alice@example.org",
        "recipients": ["sms@sms.example.org"],
        "route": "sms@sms.example.org",
        "report_to": "alice@example.org",
        "id": "01HXYZSUBMISSION",
        "received_at": 1_700_000_000.0,
        "message_id": "<orig-1@client.example.org>",
    }
    defaults.update(kw)
    return Submission(jobs=jobs, **defaults)


def make(jobs: list[Job], *, references: str | None = None, **kw: Any) -> EmailMessage:
    sub = submission(jobs, **kw)
    return compose(
        sub,
        jobs,
        from_addr="mail2sms@sms.example.org",
        hostname="sms.example.org",
        original_message_id=sub.message_id,
        references=references,
    )


def reparse(message: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(message: EmailMessage) -> str:
    body = reparse(message).get_body(("plain",))
    assert body is not None
    content = body.get_content()
    assert isinstance(content, str)
    return content


def results_of(message: EmailMessage) -> dict[str, Any]:
    parts = [p for p in reparse(message).iter_attachments() if p.get_filename() == "results.json"]
    assert len(parts) == 1
    assert parts[0].get_content_type() == "application/json"
    payload = parts[0].get_payload(decode=True)
    assert isinstance(payload, bytes)
    data = json.loads(payload)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("states", "subject"),
    [
        ([S, S, S], "SMS sent: 3 of 3"),
        ([S], "SMS sent to +96550000000"),
        ([R, R], "SMS failed: 0 of 2 sent (the username or password was not accepted by KwtSMS)"),
        ([R], "SMS failed to +96550000000: the username or password was not accepted by KwtSMS"),
        ([S, S, R], "SMS partly sent: 2 of 3"),
        ([S, E], "SMS partly sent: 1 of 2"),
        ([S, U, S], "SMS may have been sent: 2 of 3 sent, 1 unknown"),
        ([U, R], "SMS may have been sent: 0 of 2 sent, 1 unknown, 1 failed"),
        ([U], "SMS may have been sent to +96550000000"),
        ([E], "SMS failed to +96550000000: expired"),
        ([C], "SMS failed to +96550000000: cancelled"),
    ],
)
def test_subject_says_the_outcome(states: list[JobState], subject: str) -> None:
    """The subject names the outcome, and the number (one SMS) or the counts, for every mix of final states."""
    jobs = [job(s, number=f"9655000000{i}") for i, s in enumerate(states)]
    assert make(jobs)["Subject"] == subject


@pytest.mark.parametrize(
    ("states", "subject"),
    [
        ([S], "SMS sent to +96550000000: Server room door open"),
        ([S, S, S], "SMS sent: 3 of 3: Server room door open"),
        ([S, S, R], "SMS partly sent: 2 of 3: Server room door open"),
        ([S, U], "SMS may have been sent: 1 of 2 sent, 1 unknown: Server room door open"),
        # One refused SMS: the reason says more than the subject the sender wrote.
        ([R], "SMS failed to +96550000000: the username or password was not accepted by KwtSMS"),
    ],
)
def test_subject_carries_the_original_subject(states: list[JobState], subject: str) -> None:
    """The subject of the mail that asked for the SMS follows the outcome, on one line."""
    jobs = [job(s, number=f"9655000000{i}") for i, s in enumerate(states)]
    assert make(jobs, subject="Server room door open")["Subject"] == subject


def test_original_subject_is_one_bounded_line() -> None:
    """A long, multi-line original subject is put on one line and cut with "..." within a bounded length."""
    subject = str(make([job()], subject="Alarm\r\n  zone 4 " + "x" * 300)["Subject"])
    assert subject.startswith("SMS sent to +96550000000: Alarm zone 4 xxx")
    assert subject.endswith("...")
    assert len(subject) < 140


def test_expired_counts_as_failed() -> None:
    """Expired jobs count as not sent, and the subject carries the error they share."""
    late = "the provider could not be reached in time"
    jobs = [job(E, error=late), job(E, number="96550000001", error=late)]
    assert make(jobs)["Subject"] == "SMS failed: 0 of 2 sent (the provider could not be reached in time)"


def test_failures_for_different_reasons_name_none() -> None:
    """Failures for different reasons do not put one of them in the subject as if it were everyone's."""
    jobs = [job(E, error="the provider could not be reached in time"), job(R, number="96550000001")]
    assert make(jobs)["Subject"] == "SMS failed: 0 of 2 sent (several reasons)"


def test_subject_error_is_one_short_line() -> None:
    """A long multi-line first error becomes its first sentence, on one line, within a bounded length."""
    long_error = "the provider said\r\nsomething odd. Then a lot more " + "x" * 500
    subject = make([job(R, error=long_error)])["Subject"]
    assert subject == "SMS failed to +96550000000: the provider said something odd"
    explained = "the username or password was not accepted by KwtSMS: check the account's API password"
    assert make([job(R, error=explained)])["Subject"] == (
        "SMS failed to +96550000000: the username or password was not accepted by KwtSMS"
    )
    very_long = make([job(R, error="word " * 200)])["Subject"]
    assert len(very_long) < 150
    assert very_long.endswith("...")


def test_dry_run_subject_and_status() -> None:
    """A dry run says how many would be sent, and each job reads "would be sent (dry run)"."""
    checked = {"code": "DRYRUN", "error": "dry run: checked, not sent"}
    jobs = [job(C, number=f"9655000000{i}", **checked) for i in range(3)]
    message = make(jobs, dry_run=True)
    assert message["Subject"] == "SMS dry run: 3 of 3 would be sent"
    text = text_of(message)
    assert text.count("would be sent (dry run)") == 3
    assert "3 SMS checked, nothing was sent" in text
    assert "DRYRUN" not in text
    data = results_of(message)
    assert data["dry_run"] is True
    assert data["summary"]["sent"] == 0
    assert data["summary"]["cancelled"] == 0
    assert data["summary"]["would_send"] == 3
    assert {j["status"] for j in data["jobs"]} == {"dry_run"}


def test_dry_run_with_a_refused_job() -> None:
    """In a dry run, a job that failed its checks is not counted as "would be sent"."""
    jobs = [job(C, code="DRYRUN"), job(R, number="96550000001", error="the sender ID is not registered")]
    subject = make(jobs, dry_run=True)["Subject"]
    assert subject == "SMS dry run: 1 of 2 would be sent (the sender ID is not registered)"


def test_dry_run_of_one_sms_names_the_number() -> None:
    """A dry run of one SMS names its number and says it would be sent, or would fail and why; never "sent"."""
    ok = make([job(C, code="DRYRUN")], dry_run=True, subject="Test alarm")
    assert ok["Subject"] == "SMS dry run: would be sent to +96550000000: Test alarm"
    assert text_of(ok).startswith("Dry run: the SMS to +96550000000 would be sent; nothing was sent.\n")
    bad = make([job(R, error="the sender ID is not registered")], dry_run=True)
    assert bad["Subject"] == "SMS dry run: would fail to +96550000000: the sender ID is not registered"
    assert "nothing was sent" in text_of(bad).split("\n")[0].lower()


def test_unicode_subject_survives_encoding() -> None:
    """A non-ASCII error in the subject is encoded on the wire and decodes back unchanged."""
    message = make([job(R, error="رقم غير صحيح")])
    raw = message.as_bytes()
    assert raw.isascii()
    assert reparse(message)["Subject"] == "SMS failed to +96550000000: رقم غير صحيح"


def test_auto_reply_and_threading_headers() -> None:
    """The report is marked auto-replied and threads to the original by In-Reply-To and References."""
    message = reparse(make([job()], references="<a@x.org>\r\n <b@x.org>"))
    assert message["From"] == "mail2sms@sms.example.org"
    assert message["To"] == "alice@example.org"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["In-Reply-To"] == "<orig-1@client.example.org>"
    assert message["References"].split() == ["<a@x.org>", "<b@x.org>", "<orig-1@client.example.org>"]
    assert message["Message-ID"].endswith("@sms.example.org>")
    assert message["Date"] is not None
    assert message.get_content_type() == "multipart/mixed"


def test_no_threading_headers_without_an_original_message_id() -> None:
    """Without the original's Message-ID there is nothing to thread to, so neither header is set."""
    message = make([job()], message_id=None, references="<a@x.org>")
    assert message["In-Reply-To"] is None
    assert message["References"] is None
    assert message["Message-ID"] is not None


def test_message_id_without_brackets_is_bracketed() -> None:
    """An original Message-ID stored without angle brackets is threaded to in its proper form."""
    assert make([job()], message_id="bare@client.example.org")["In-Reply-To"] == "<bare@client.example.org>"


def test_each_report_has_a_fresh_message_id() -> None:
    """Two reports never share a Message-ID."""
    assert make([job()])["Message-ID"] != make([job()])["Message-ID"]


def test_no_report_address_is_a_bug() -> None:
    """Composing for a submission whose report was suppressed raises instead of mailing nobody."""
    with pytest.raises(ValueError, match="report address"):
        make([job()], report_to=None)


def test_text_part_describes_each_recipient() -> None:
    """The text names each number (+E.164), status, provider id, parts, encoding, error, advice and row."""
    jobs = [
        job(S, provider_id="kwt-778899", parts=1, encoding="gsm7", row=2),
        job(R, number="96550000001", parts=2, encoding="ucs2", row=3),
        job(U, number="96550000002", code="ReadTimeout", error="the provider may have sent the SMS"),
        job(E, number="96550000003", error="not sent in time"),
        job(C, number="96550000004"),
    ]
    text = text_of(make(jobs))
    assert "Submission: 01HXYZSUBMISSION" in text
    assert "+96550000000 (CSV row 2): sent" in text
    assert "message id kwt-778899" in text
    assert "1 part, GSM-7" in text
    assert "+96550000001 (CSV row 3): refused" in text
    assert "2 parts, UCS-2" in text
    assert "Error: the username or password was not accepted by KwtSMS [ERR003]" in text
    assert "What to do:" in text
    assert "+96550000002: may have been sent (unknown)" in text
    assert "+96550000003: expired" in text
    assert "+96550000004: cancelled" in text
    assert "5 SMS: 1 sent, 1 may have been sent, 1 refused, 1 expired, 1 cancelled." in text


def test_explain_advice_supplies_what_to_do() -> None:
    """The caller's advice for a failed job is what the text tells the sender to do."""
    jobs = [job(R)]
    sub = submission(jobs)
    message = compose(
        sub,
        jobs,
        from_addr="m@sms.example.org",
        hostname="sms.example.org",
        original_message_id=None,
        explain_advice=lambda j: f"Fix the password for {j.provider}.",
    )
    assert "What to do: Fix the password for kwt." in text_of(message)


def test_text_part_is_utf8_and_seven_bit_on_the_wire() -> None:
    """The text part is declared utf-8 and is quoted-printable, so no smarthost needs 8BITMIME."""
    body = reparse(make([job(R, error="خطأ")])).get_body(("plain",))
    assert body is not None
    assert body.get_content_charset() == "utf-8"
    assert body["Content-Transfer-Encoding"] == "quoted-printable"


def test_results_json_matches_the_jobs() -> None:
    """results.json carries the submission, a summary that adds up and one record per job with every field."""
    jobs = [
        job(S, provider_id="p1", parts=2, encoding="ucs2", attempts=1),
        job(R, number="96550000001", row=7, attempts=2),
        job(U, number="96550000002", code="ReadTimeout", error="may have been sent"),
        job(E, number="96550000003"),
        job(C, number="96550000004"),
    ]
    data = results_of(make(jobs))
    assert data["submission"] == "01HXYZSUBMISSION"
    assert data["received_at"] == "2023-11-14T22:13:20+00:00"
    assert data["route"] == "sms@sms.example.org"
    assert data["dry_run"] is False
    summary = data["summary"]
    assert {k: summary[k] for k in ("total", "sent", "rejected", "unknown", "expired", "cancelled")} == {
        "total": 5,
        "sent": 1,
        "rejected": 1,
        "unknown": 1,
        "expired": 1,
        "cancelled": 1,
    }
    assert data["jobs"][0] == {
        "number": "+96550000000",
        "row": None,
        "status": "sent",
        "provider": "kwt",
        "provider_id": "p1",
        "code": None,
        "error": None,
        "detail": None,
        "parts": 2,
        "encoding": "ucs2",
        "attempts": 1,
        "text": "hello",
        "notes": [],
    }
    assert data["jobs"][1]["row"] == 7
    assert data["jobs"][1]["code"] == "ERR003"
    assert data["jobs"][1]["error"] == "the username or password was not accepted by KwtSMS"
    assert [j["status"] for j in data["jobs"]] == ["sent", "rejected", "unknown", "expired", "cancelled"]


def _decoded_parts(message: EmailMessage) -> list[bytes]:
    """Every part's bytes after transfer decoding, so a secret hidden by base64 or QP would still be found."""
    out: list[bytes] = []
    for part in reparse(message).walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            out.append(payload)
    return out


def test_no_account_secret_appears_anywhere() -> None:
    """Neither a job's Account password nor its key appears in the raw mail or in any decoded part."""
    account = Account(username="kwtuser", password=SECRET_PASSWORD, key=SECRET_KEY)
    jobs = [
        job(S, account=account),
        # A provider that echoes the password back in its error must not leak it either.
        job(
            R,
            number="96550000001",
            account=account,
            error=f"login failed for password {SECRET_PASSWORD}",
            code=f"BAD-{SECRET_KEY}",
        ),
    ]
    message = make(jobs)
    raw = message.as_bytes()
    blobs = [raw, quopri.decodestring(raw), *_decoded_parts(message)]
    for secret in (SECRET_PASSWORD, SECRET_KEY):
        for blob in blobs:
            assert secret.encode() not in blob
            assert base64.b64encode(secret.encode()) not in blob
    assert "***" in text_of(message)


@pytest.mark.slow
def test_large_submission_text_is_bounded() -> None:
    """100,000 jobs: the text gives counts and reasons with a few example rows; results.json has every job."""
    jobs = [job(R if i % 1000 == 999 else S, number=f"9655{i:07d}", row=i + 2) for i in range(100_000)]
    message = make(jobs)
    text = text_of(message)
    assert len(text) < 5_000
    assert text.count("+9655") == 3  # the numbers named beside the one distinct text
    assert "100,000 SMS: 99,900 sent, 100 refused." in text
    assert "      100  refused: the username or password was not accepted by KwtSMS [ERR003]" in text
    assert "CSV row 1001, CSV row 2001, CSV row 3001, CSV row 4001, CSV row 5001 and 95 more" in text
    assert message["Subject"] == "SMS partly sent: 99900 of 100000"
    data = results_of(message)
    assert len(data["jobs"]) == 100_000
    assert data["summary"]["rejected"] == 100


def test_empty_job_list_still_composes() -> None:
    """A submission with no jobs (never expected) still yields a valid mail, not a reporter crash."""
    message = make([])
    assert message["Subject"] == "SMS: nothing to send"
    assert results_of(message)["jobs"] == []


def test_sent_detail_reaches_the_text_and_results_json() -> None:
    """What the provider added to its acceptance (Sent.detail) is shown for that number and kept in results.json."""
    jobs = [job(S, provider_id="11472734895956042", detail="Kapow credits left: 148"), job(S, number="96550000001")]
    message = make(jobs)
    text = text_of(message)
    assert "\n+96550000000: sent\n  via kwt, message id 11472734895956042\n  Detail: Kapow credits left: 148\n" in text
    assert text.count("Detail:") == 1
    assert [j["detail"] for j in results_of(message)["jobs"]] == ["Kapow credits left: 148", None]


@pytest.mark.parametrize(
    ("state", "code", "error", "line"),
    [
        (R, "FIELD_INVALID", "Cellcast refused a field", "Error: Cellcast refused a field [FIELD_INVALID]"),
        (U, "UNEXPECTED", "the reply was not understood", "Error: the reply was not understood [UNEXPECTED]"),
        # A code that is an ordinary word is named even when the explanation uses that word.
        (
            R,
            "error",
            "KoboMobile said no, without its error words",
            "Error: KoboMobile said no, without its error words [error]",
        ),
        (
            U,
            "ReadTimeout",
            "the provider did not answer (ReadTimeout)",
            "Error: the provider did not answer (ReadTimeout)",
        ),
        (R, "ERR024", "ERR024: this server's IP is not allowed", "Error: ERR024: this server's IP is not allowed"),
    ],
)
def test_refusals_and_unknowns_show_the_code_and_the_explanation(
    state: JobState, code: str, error: str, line: str
) -> None:
    """A refused or may-have-been-sent number shows the explanation and the provider's code, the code once."""
    message = make([job(state, code=code, error=error)])
    assert f"  {line}\n" in text_of(message)
    [record] = results_of(message)["jobs"]
    assert (record["code"], record["error"]) == (code, error)


def test_a_secret_in_a_detail_is_blanked() -> None:
    """A provider that echoes the account's password into its acceptance detail does not leak it."""
    account = Account(username="kwtuser", password=SECRET_PASSWORD)
    message = make([job(S, account=account, detail=f"accepted for {SECRET_PASSWORD}")])
    assert SECRET_PASSWORD not in text_of(message)
    assert results_of(message)["jobs"][0]["detail"] == "accepted for ***"
