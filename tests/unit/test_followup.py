"""The follow-up mail (issue 15): when one is sent, its subject, threading, text and HTML parts, results files,
and that it never calls an SMS delivered without a delivered receipt nor shows a secret."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
from email.message import EmailMessage
from typing import Any

import pytest

from mail2sms.dispatch.receipt_store import ReceiptState, Settled
from mail2sms.model import Account, Job, JobState, Submission
from mail2sms.report import states
from mail2sms.report.compose import compose
from mail2sms.report.followup import compose_followup, reason_in_short, receipted, wanted

AT = 1_700_000_600.0
SECRET = "Pw-s3cret-4711"


def job(n: int, state: JobState = JobState.SENT, **kw: Any) -> Job:
    values: dict[str, Any] = {"text": "Server room door open", "provider": "kapow", "id": f"job-{n}"}
    if state is JobState.SENT:
        values["provider_id"] = f"id-{n}"
    values.update(kw)
    return Job(number=f"9655000000{n}", state=state, **values)


def delivered() -> Settled:
    return Settled(ReceiptState.DELIVERED, "D", "Kapow reports the SMS delivered to the phone", AT, "poll")


def failed(why: str = "Kapow reports the SMS failed: number unreachable") -> Settled:
    return Settled(ReceiptState.UNDELIVERED, "X", why, AT, "push")


def silent() -> Settled:
    return Settled(ReceiptState.NO_RECEIPT, None, "no delivery receipt came from kapow within 48 hours", AT, "window")


def submission(jobs: list[Job], **kw: Any) -> Submission:
    values: dict[str, Any] = {
        "envelope_from": "alice@example.org",
        "recipients": ["96550000001@sms.example.org"],
        "route": "*@sms.example.org",
        "report_to": "alice@example.org",
        "id": "01HSUB",
        "received_at": 1_700_000_000.0,
        "message_id": "<orig-1@client.example.org>",
        "subject": "Server room door open",
    }
    values.update(kw)
    return Submission(jobs=jobs, **values)


def make(jobs: list[Job], receipts: dict[str, Settled], **kw: Any) -> EmailMessage:
    sub = submission(jobs, **kw)
    return compose_followup(
        sub,
        jobs,
        receipts,
        from_addr="mail2sms@sms.example.org",
        hostname="sms.example.org",
        outcome_message_id="<outcome-1@sms.example.org>",
        original_message_id=sub.message_id,
    )


def reparsed(message: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(message.as_bytes(policy=email.policy.SMTP), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def part(message: EmailMessage, subtype: str) -> str:
    found = message.get_body((subtype,))
    assert found is not None
    content = found.get_content()
    assert isinstance(content, str)
    return content


def attachment(message: EmailMessage, name: str) -> bytes:
    for item in message.iter_attachments():
        if item.get_filename() == name:
            data = item.get_payload(decode=True)
            assert isinstance(data, bytes)
            return data
    raise AssertionError(f"no attachment {name}")


def test_three_delivered_subject_counts_and_names_the_original() -> None:
    """Three SMS all delivered: `SMS delivered: 3 of 3: <original subject>`."""
    jobs = [job(1), job(2), job(3)]
    mail = reparsed(make(jobs, {j.id: delivered() for j in jobs}))
    assert mail["Subject"] == "SMS delivered: 3 of 3: Server room door open"


def test_one_undelivered_subject_names_number_and_reason() -> None:
    """One SMS not delivered: the subject names the number and the provider's reason in short."""
    mail = reparsed(make([job(1)], {"job-1": failed()}))
    assert mail["Subject"] == "SMS not delivered to +96550000001: number unreachable"


def test_mixed_subject_counts_each_final_state() -> None:
    """Delivered, not delivered and unconfirmed are each counted in the subject."""
    jobs = [job(1), job(2), job(3)]
    mail = reparsed(make(jobs, {"job-1": delivered(), "job-2": failed(), "job-3": silent()}))
    assert mail["Subject"] == "SMS delivered: 1 of 3, 1 not delivered, 1 not confirmed: Server room door open"


def test_all_failed_with_one_reason_says_it() -> None:
    """Every SMS failed for one reason: the subject says none was delivered, and why."""
    jobs = [job(1), job(2)]
    mail = reparsed(make(jobs, {"job-1": failed(), "job-2": failed()}))
    assert mail["Subject"] == "SMS not delivered: 0 of 2 delivered (number unreachable): Server room door open"


def test_threaded_under_the_outcome_mail_and_the_original() -> None:
    """In-Reply-To is the outcome mail; References runs from the original to the outcome mail."""
    mail = reparsed(make([job(1)], {"job-1": delivered()}))
    assert mail["In-Reply-To"] == "<outcome-1@sms.example.org>"
    assert mail["References"].split() == ["<orig-1@client.example.org>", "<outcome-1@sms.example.org>"]
    assert mail["Auto-Submitted"] == "auto-replied"


def test_threads_with_a_real_outcome_mail() -> None:
    """The follow-up's parent is the outcome mail compose() built for the same submission."""
    jobs = [job(1)]
    sub = submission(jobs)
    outcome = compose(
        sub, jobs, from_addr="m@sms.example.org", hostname="sms.example.org", original_message_id=sub.message_id
    )
    follow = compose_followup(
        sub,
        jobs,
        {"job-1": delivered()},
        from_addr="m@sms.example.org",
        hostname="sms.example.org",
        outcome_message_id=outcome["Message-ID"],
        original_message_id=sub.message_id,
        references=None,
    )
    assert follow["In-Reply-To"] == outcome["Message-ID"]
    assert follow["References"].split() == [*outcome["References"].split(), outcome["Message-ID"]]


def test_text_and_html_parts_show_state_reason_and_advice() -> None:
    """The text and HTML parts name each number's delivery state, the provider's reason and what to do."""
    jobs = [job(1), job(2)]
    mail = reparsed(make(jobs, {"job-1": delivered(), "job-2": failed()}))
    text = part(mail, "plain")
    assert "2 SMS: 1 delivered, 1 not delivered." in text
    assert "+96550000001: delivered to the phone, 2023-11-14 22:23 UTC" in text
    assert "Reason: Kapow reports the SMS failed: number unreachable [X]" in text
    assert "What to do: Check the number" in text
    page = part(mail, "html")
    assert "\u2713&nbsp;delivered" in page
    assert "\u2717&nbsp;not delivered" in page
    assert "Kapow reports the SMS failed: number unreachable" in page


def test_a_settled_sms_shows_its_receipt_not_the_acceptance_detail() -> None:
    """The provider's words on acceptance (the outcome mail's news) are not shown above a receipt in either part."""
    said = "Cellcast queued 2 of the 3 numbers sent"
    jobs = [job(1, detail=said), job(2, detail=said), job(3, detail=said)]
    mail = reparsed(make(jobs, {"job-1": delivered(), "job-2": failed(), "job-3": silent()}))
    for subtype in ("plain", "html"):
        body = part(mail, subtype)
        assert said not in body
        assert "Kapow reports the SMS delivered to the phone" in body
        assert "Kapow reports the SMS failed: number unreachable" in body
        assert "no delivery receipt came from kapow within 48 hours" in body
    records = json.loads(attachment(mail, "results.json"))["jobs"]
    assert [r["status"] for r in records] == ["delivered", "undelivered", "no_receipt"]


def test_an_sms_still_awaiting_its_receipt_keeps_the_acceptance_detail() -> None:
    """An accepted SMS without a settled receipt still shows what the provider said when it accepted it."""
    jobs = [job(1), job(2, detail="Cellcast queued 2 of the 3 numbers sent")]
    mail = reparsed(make(jobs, {"job-1": failed()}))
    assert "Detail: Cellcast queued 2 of the 3 numbers sent" in part(mail, "plain")


def test_html_escapes_provider_words() -> None:
    """A provider's reason carrying markup is escaped in the HTML part."""
    mail = reparsed(make([job(1)], {"job-1": failed("Kapow reports: <script>x</script>")}))
    page = part(mail, "html")
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def test_accepted_without_receipt_is_never_called_delivered() -> None:
    """An accepted SMS with no settled receipt shows as accepted, never delivered, in the mail and results.json."""
    jobs = [job(1), job(2)]
    mail = reparsed(make(jobs, {"job-1": delivered()}))
    records = json.loads(attachment(mail, "results.json"))["jobs"]
    assert [r["status"] for r in records] == ["delivered", "accepted"]
    assert "1 accepted" in part(mail, "plain")


def test_jobs_never_accepted_keep_their_own_state() -> None:
    """A refused or unknown SMS keeps its state in the follow-up: a receipt is only about accepted SMS."""
    jobs = [job(1), job(2, JobState.REJECTED, code="ERR", error="bad number"), job(3, JobState.UNKNOWN)]
    statuses = [states.status(submission(jobs), j) for j in receipted(jobs, {"job-1": delivered()})]
    assert statuses == ["delivered", "rejected", "unknown"]


@pytest.mark.parametrize(
    ("policy", "receipts", "expected"),
    [
        ("never", {"job-1": failed()}, False),
        ("always", {"job-1": delivered()}, True),
        ("failures", {"job-1": delivered()}, False),
        ("failures", {"job-1": failed()}, True),
        ("failures", {"job-1": silent()}, True),
        ("failures", {}, False),
    ],
)
def test_reports_receipts_policy(policy: Any, receipts: dict[str, Settled], expected: bool) -> None:
    """`reports.receipts`: never, always, or failures (not delivered or no receipt) decides the follow-up."""
    assert wanted(policy, receipted([job(1)], receipts)) is expected


def test_no_follow_up_when_nothing_was_accepted() -> None:
    """A submission whose SMS were all refused gets no follow-up, even with `always`."""
    jobs = [job(1, JobState.REJECTED, code="E", error="bad")]
    assert not wanted("always", receipted(jobs, {}))


def test_csv_submission_gets_one_updated_results_csv() -> None:
    """A CSV submission gets one follow-up whose results.csv carries each row's delivery state."""
    jobs = [job(1, row=2), job(2, row=3)]
    files = [
        {
            "name": "alarm.csv",
            "delimiter": ",",
            "width": 2,
            "names": ["mobile", "message"],
            "rows": [[2, "96550000001", "hi"], [3, "96550000002", "hi"]],
        }
    ]
    mail = reparsed(make(jobs, {"job-1": delivered(), "job-2": failed()}, extra={"csv": {"files": files}}))
    names = [a.get_filename() for a in mail.iter_attachments()]
    assert names == ["results.json", "results.csv"]
    rows = list(csv.reader(io.StringIO(attachment(mail, "results.csv").decode("utf-8-sig"))))
    assert [r[3] for r in rows[1:]] == ["delivered", "undelivered"]
    assert "Kapow reports the SMS failed" in rows[2][-1]


def test_big_submission_summarises_and_attaches_results_csv() -> None:
    """Over 50 SMS the body gives counts and reasons, and results.csv carries every number."""
    jobs = [job(i) for i in range(60)]
    receipts = {j.id: (failed() if i % 10 == 0 else delivered()) for i, j in enumerate(jobs)}
    mail = reparsed(make(jobs, receipts))
    text = part(mail, "plain")
    assert "60 SMS: 54 delivered, 6 not delivered." in text
    assert "not delivered: Kapow reports the SMS failed: number unreachable [X]" in text
    assert len(list(csv.reader(io.StringIO(attachment(mail, "results.csv").decode("utf-8-sig"))))) == 61


def test_secrets_of_a_body_account_never_appear() -> None:
    """A provider echoing the body account's password into its reason has it blanked everywhere."""
    jobs = [job(1, account=Account("u", SECRET))]
    mail = make(jobs, {"job-1": failed(f"Kapow reports the SMS failed: {SECRET}")})
    assert SECRET not in mail.as_string()


def test_reason_in_short_takes_the_providers_words() -> None:
    """The subject's reason is what follows "<provider> reports …:", unquoted, its first clause."""
    assert reason_in_short('KwtSMS reports the SMS was not delivered: "FAILED"') == "FAILED"
    assert reason_in_short("the network rejected the SMS") == "the network rejected the SMS"


def test_no_report_address_is_a_bug() -> None:
    """Composing without a report address raises: the backscatter rules said no earlier."""
    with pytest.raises(ValueError, match="no report address"):
        make([job(1)], {}, report_to=None)
