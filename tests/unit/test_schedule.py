"""Unit tests of scheduled sending: reading `sendtime:` values, and checking and scheduling jobs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mail2sms.errors import ContentError
from mail2sms.model import Job, JobState, SmsOptions
from mail2sms.parse.schedule import HOLD_DAYS, parse_sendtime, schedule_job, to_iso
from mail2sms.providers.base import Limits

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-06-02T10:00:00+03:00", "2026-06-02T07:00:00+00:00"),
        ("2026-06-02T10:00:00Z", "2026-06-02T10:00:00+00:00"),
        ("2026-06-02 10:00", "2026-06-02T10:00:00+00:00"),
        ("2026-06-02T10:00", "2026-06-02T10:00:00+00:00"),
        ("2026-06-02 10:00:30 UTC", "2026-06-02T10:00:30+00:00"),
        ("  2026-06-02   10:00  ", "2026-06-02T10:00:00+00:00"),
        ("02-06-26 10:00", "2026-06-02T10:00:00+00:00"),  # Kapow's DD-MM-YY HH:MM
        ("02-06-26+10:00", "2026-06-02T10:00:00+00:00"),  # as written in Kapow's URLs
        ("2-06-2026 10:00", "2026-06-02T10:00:00+00:00"),  # Kapow's D-MM-YYYY
    ],
)
def test_common_forms_are_read_as_utc(value: str, expected: str) -> None:
    """ISO 8601 with or without a zone, and Kapow's forms, become one ISO UTC time; no zone means UTC."""
    assert to_iso(parse_sendtime(value)) == expected


@pytest.mark.parametrize("value", ["tomorrow", "02/06/26 10:00", "2026-06-02", "2026-13-02 10:00", "31-02-26 10:00",
                                   "2026-06-02T10:00+03:00 UTC"])
def test_unreadable_times_name_the_key_and_value(value: str) -> None:
    """A value that is not a date and time is a ContentError naming the key, the value and the forms."""
    with pytest.raises(ContentError) as info:
        parse_sendtime(value, key="line 4: sendtime")
    message = str(info.value)
    assert message.startswith(f"line 4: sendtime: {value!r}")
    assert "2026-01-31 10:00" in message


def job(sendtime: str | None) -> Job:
    return Job(number="96550000000", text="hi", provider="p", options=SmsOptions(sendtime=sendtime),
               next_attempt_at=NOW, expires_at=NOW + 86400)


def test_provider_that_schedules_gets_the_job_now() -> None:
    """With a provider horizon the job stays queued now and carries the time in ISO UTC."""
    j = job("2026-06-10 08:00")
    schedule_job(j, Limits(schedule_days=365), NOW, "kapow")
    assert (j.state, j.next_attempt_at, j.options.sendtime) == (JobState.QUEUED, NOW, "2026-06-10T08:00:00+00:00")


def test_provider_without_scheduling_holds_the_job() -> None:
    """Without a provider horizon mail2sms holds the job `scheduled` until the time; its lifetime moves along."""
    j = job("2026-06-10T08:00:00Z")
    schedule_job(j, Limits(), NOW, "kwtsms")
    at = datetime(2026, 6, 10, 8, 0, tzinfo=UTC).timestamp()
    assert (j.state, j.next_attempt_at, j.expires_at) == (JobState.SCHEDULED, at, at + 86400)


def test_no_sendtime_changes_nothing() -> None:
    """A job without sendtime is left as it is."""
    j = job(None)
    schedule_job(j, None, NOW, "kwtsms")
    assert (j.state, j.next_attempt_at) == (JobState.QUEUED, NOW)


def test_now_or_just_past_sends_at_once() -> None:
    """A time within the clock-skew grace is "now": sendtime is cleared, the job goes at once."""
    for value in ("2026-06-01 11:57", "2026-06-01 12:00:30"):
        j = job(value)
        schedule_job(j, Limits(schedule_days=365), NOW, "kapow")
        assert (j.state, j.options.sendtime) == (JobState.QUEUED, None)


def test_past_is_an_error() -> None:
    """A time well in the past is refused, naming the key and the time."""
    with pytest.raises(ContentError, match=r"^sendtime: 2026-05-31 12:00 UTC is in the past"):
        schedule_job(job("2026-05-31 12:00"), Limits(schedule_days=365), NOW, "kapow")


def test_beyond_the_provider_horizon_is_an_error() -> None:
    """More than the provider's horizon ahead is refused, naming the provider and its limit."""
    with pytest.raises(ContentError, match=r"more than 365 days ahead; kapow schedules at most 365 days ahead"):
        schedule_job(job("2027-06-03 12:00"), Limits(schedule_days=365), NOW, "kapow")
    schedule_job(job("2027-06-03 12:00"), Limits(schedule_days=730), NOW, "bulksms")


def test_mail2sms_holds_at_most_its_own_horizon() -> None:
    """For providers without scheduling, mail2sms's own horizon applies."""
    with pytest.raises(ContentError, match=rf"mail2sms schedules at most {HOLD_DAYS} days ahead"):
        schedule_job(job("2028-01-01 00:00"), Limits(), NOW, "kwtsms")
