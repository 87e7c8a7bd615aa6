"""The reply mail (issue 17): its From routes back to the phone, its threading, subject, auto-reply headers and
body, what the unmatched address gets, and that it never shows an account's secret nor unescaped markup."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

from mail2sms.config import RouteConfig
from mail2sms.model import Account, Job, JobState, ReplyMatch, Submission
from mail2sms.report.reply_mail import (
    ANSWER_LINE,
    NO_MATCH_LINE,
    NO_ROUTE_LINE,
    address_routes,
    compose_reply,
    reply_from,
    subject,
)
from mail2sms.spool.base import DueReply

SECRET = "Pw-s3cret-4711"
OUTCOME = "<01HSUB.report@sms.test>"
ROUTES = [
    RouteConfig(match="sms@kv.example.org", format="keyvalue", provider="kwtsms"),
    RouteConfig(match="*@bulk.example.org", format="address", provider="bulksms"),
    RouteConfig(match="*@sms.example.org", format="address", provider="cellcast"),
    RouteConfig(match="*@other.example.org", format="address", provider="cellcast"),
]


def due(**kw: Any) -> DueReply:
    job = Job(
        number="96550000001",
        text="Server room door open",
        provider="cellcast",
        id="job-1",
        submission_id="01HSUB",
        state=JobState.SENT,
        provider_id="cc-1",
        account=Account("user", SECRET, SECRET),
        first_attempt_at=1_700_000_000.0,
    )
    sub = Submission(
        envelope_from="alice@example.org",
        recipients=["+96550000001@other.example.org"],
        jobs=[job],
        route="*@other.example.org",
        message_id="<orig-1@client.example.org>",
        subject="Door",
        report_to="alice@example.org",
        id="01HSUB",
        extra={"references": "<older@client.example.org>"},
    )
    values: dict[str, Any] = {
        "id": "01HREPLY",
        "provider": "cellcast",
        "number": "96550000001",
        "text": "ACK, on my way",
        "received_at": 1_700_000_300.0,
        "fetched_at": 1_700_000_360.0,
        "match": ReplyMatch.LINKED,
        "mail_to": "alice@example.org",
        "attempts": 0,
        "submission": sub,
        "job": job,
    }
    values.update(kw)
    return DueReply(**values)


def mail(reply: DueReply, routes: list[RouteConfig] = ROUTES) -> EmailMessage:
    composed = compose_reply(
        reply,
        from_addr="mail2sms@sms.test",
        hostname="sms.test",
        routes=address_routes(routes),
        outcome_message_id=OUTCOME,
    )
    parsed = email.message_from_bytes(composed.as_bytes(policy=email.policy.SMTP), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(message: EmailMessage) -> tuple[str, str]:
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert rich is not None
    return plain.get_content(), rich.get_content()


def test_from_is_the_number_at_the_route_that_sent_the_sms() -> None:
    """The From address is `+<number>@` the domain of the address route the original SMS went by."""
    message = mail(due())
    assert message["From"].addresses[0].addr_spec == "+96550000001@other.example.org"
    assert message["From"].addresses[0].display_name == "+96550000001"


def test_from_falls_back_to_the_providers_route_then_any_address_route() -> None:
    """A keyvalue original routes back by an address route of the same provider, else by any address route."""
    reply = due()
    assert reply.submission is not None
    keyvalue = replace(reply, submission=replace(reply.submission, route="sms@kv.example.org"))
    assert reply_from(keyvalue, address_routes(ROUTES)) == "+96550000001@sms.example.org"
    other = replace(keyvalue, provider="kapow")
    assert reply_from(other, address_routes(ROUTES)) == "+96550000001@bulk.example.org"


def test_without_an_address_route_from_is_reports_from_and_the_body_says_so() -> None:
    """With no address-format route the mail comes from reports.from and says an answer by mail is impossible."""
    message = mail(due(), routes=[ROUTES[0]])
    assert message["From"] == "mail2sms@sms.test"
    plain, rich = parts(message)
    assert NO_ROUTE_LINE in plain
    assert ANSWER_LINE not in plain
    assert "not possible" in rich


def test_threaded_under_the_original_and_the_outcome_mail() -> None:
    """In-Reply-To names the original mail; References runs from its own references through the outcome mail."""
    message = mail(due())
    assert message["Message-ID"] == "<01HREPLY.reply@sms.test>"
    assert message["In-Reply-To"] == "<orig-1@client.example.org>"
    assert str(message["References"]).split() == ["<older@client.example.org>", "<orig-1@client.example.org>", OUTCOME]


def test_original_without_message_id_threads_under_the_outcome_mail() -> None:
    """An original mail without a Message-ID: the reply answers the outcome mail."""
    reply = due()
    assert reply.submission is not None
    message = mail(replace(reply, submission=replace(reply.submission, message_id=None, extra={})))
    assert message["In-Reply-To"] == OUTCOME
    assert str(message["References"]).split() == [OUTCOME]


def test_subject_is_re_the_original_once() -> None:
    """The subject is `Re:` the original's, never `Re: Re:`, and names the number when the original had none."""
    reply = due()
    assert reply.submission is not None
    assert mail(reply)["Subject"] == "Re: Door"
    assert subject(replace(reply, submission=replace(reply.submission, subject="RE: re:  Door"))) == "Re: Door"
    assert subject(replace(reply, submission=replace(reply.submission, subject=""))) == "Re: SMS to +96550000001"


def test_auto_replied_and_dated_by_the_sms() -> None:
    """RFC 3834: Auto-Submitted auto-replied, Exchange's responders suppressed; Date is when the SMS came."""
    message = mail(due())
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["Date"].datetime.timestamp() == 1_700_000_300.0


def test_body_has_the_sms_first_then_number_time_provider_and_the_sms_it_answers() -> None:
    """The text part opens with the SMS, then number, received time (UTC, ISO) and provider, then the original."""
    plain, rich = parts(mail(due()))
    lines = plain.splitlines()
    assert lines[0] == "ACK, on my way"
    about = next(line for line in lines if line.startswith("SMS from"))
    assert "+96550000001" in about
    assert "2023-11-14 22:18:20 UTC" in about
    assert "2023-11-14T22:18:20Z" in about
    assert "cellcast" in about
    assert ANSWER_LINE in lines
    assert lines.index(ANSWER_LINE) < lines.index("Server room door open")
    assert "ACK, on my way" in rich
    assert "Server room door open" in rich


def test_unmatched_reply_is_its_own_mail_with_a_subject_that_says_so() -> None:
    """A reply tied to nothing goes to unmatched_to, unthreaded, and its subject says it answers no SMS."""
    message = mail(due(match=ReplyMatch.NONE, submission=None, job=None, mail_to="ops@example.org"))
    assert message["To"] == "ops@example.org"
    assert message["Subject"] == "SMS from +96550000001 (not a reply to any SMS mail2sms sent)"
    assert message["In-Reply-To"] is None
    assert message["References"] is None
    assert message["From"].addresses[0].addr_spec == "+96550000001@sms.example.org"
    plain, rich = parts(message)
    assert NO_MATCH_LINE in plain
    assert NO_MATCH_LINE in rich


def test_reply_for_a_sender_who_may_not_be_mailed_goes_unthreaded_to_unmatched_to() -> None:
    """Matched, but its sender may not be mailed: the operator gets it without the sender's thread."""
    reply = due(mail_to="ops@example.org")
    assert reply.submission is not None
    message = mail(replace(reply, submission=replace(reply.submission, report_to=None)))
    assert message["To"] == "ops@example.org"
    assert "whose sender may not be mailed" in message["Subject"]
    assert message["In-Reply-To"] is None


def test_never_a_secret_nor_unescaped_markup() -> None:
    """The job's account never shows, and markup in an SMS text is escaped in the HTML part."""
    message = mail(due(text="<script>alert(1)</script> & more"))
    raw = message.as_string()
    assert SECRET not in raw
    assert "user" not in parts(message)[0]
    _, rich = parts(message)
    assert "<script>" not in rich
    assert "&lt;script&gt;" in rich


def test_same_reply_composes_the_same_mail() -> None:
    """Composed twice (a retry after a crash), the mail is byte for byte the same."""
    assert mail(due()).as_bytes() == mail(due()).as_bytes()
