"""Scheduled sending: read the time a mail asks for (`sendtime:`), check it, and schedule the job.

`parse_sendtime()` reads the forms people write — ISO 8601 with or without a zone (`2026-01-31T10:00:00+03:00`,
`2026-01-31 10:00`, `…Z`, `… UTC`) and Kapow's `DD-MM-YY HH:MM` (also `DD-MM-YY+HH:MM` and `D-MM-YYYY HH:MM`) —
and returns an aware UTC datetime. A time without a zone is read as UTC, and the error text says so.

`schedule_job()` checks a job's time against the clock the caller passes: in the past (beyond a few minutes of
clock skew) or beyond the provider's horizon (`Limits.schedule_days`) is a ContentError naming the key and the
value. A provider that schedules itself (Kapow `sendtime`, BulkSMS `send_time`, Cellcast `schedule_time`) gets the
job now with `options.sendtime` in ISO UTC; for any other provider mail2sms holds the job `scheduled` until its
time (the spool's claim picks it up then) and moves its expiry along.

Pure: no I/O and no clock of its own; error texts quote only the time value, never anything else of the mail.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

from mail2sms.errors import ContentError
from mail2sms.limits import Limits
from mail2sms.model import Job, JobState

KEY = "sendtime"
NOW_WINDOW = 60.0  # a time this close ahead (or a little past) is "now": send at once, do not schedule
PAST_GRACE = 300.0  # a time this far in the past is clock skew or a slow relay, not a mistake
HOLD_DAYS = 365  # how far ahead mail2sms itself holds jobs for providers that cannot schedule
FORMS = "2026-01-31 10:00, 2026-01-31T10:00:00+03:00 or 31-01-26 10:00; a time without a zone is UTC"

# Kapow's DD-MM-YY+HH:MM (seed `kapow-http-api.txt`), and D-MM-YYYY; "/" is not allowed there either.
_KAPOW = re.compile(r"^(\d{1,2})-(\d{1,2})-(\d{2}|\d{4})[ +T](\d{1,2}):(\d{2})(?::(\d{2}))?$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{1,2}:\d{2}")
_UTC_WORD = re.compile(r"\s*(?:UTC|GMT|Z)$", re.IGNORECASE)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:39] + "…")


def _utc_text(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def parse_sendtime(value: str, key: str = KEY) -> datetime:
    """The time `value` names, as an aware UTC datetime; ContentError naming `key` and `value` otherwise."""
    text = " ".join(value.split())
    utc_word = _UTC_WORD.search(text)
    if utc_word:
        text = text[: utc_word.start()].rstrip()
    when: datetime | None = None
    m = _KAPOW.match(text)
    if m:
        day, month, year, hour, minute = (int(g) for g in m.groups()[:5])
        second = int(m.group(6) or 0)
        try:
            when = datetime(year + 2000 if year < 100 else year, month, day, hour, minute, second)
        except ValueError:
            when = None
    elif _ISO.match(text):
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            when = None
    if when is None:
        raise ContentError(f"{key}: {_shown(value)} is not a date and time (write e.g. {FORMS})")
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    if utc_word:  # "…+03:00 UTC" says two different things
        raise ContentError(f"{key}: {_shown(value)} names two time zones (write e.g. {FORMS})")
    return when.astimezone(UTC)


def to_iso(when: datetime) -> str:
    """The ISO 8601 UTC form `SmsOptions.sendtime` carries."""
    return when.astimezone(UTC).replace(microsecond=0).isoformat()


def schedule_job(job: Job, limits: Limits | None, now: float, provider: str, key: str = KEY) -> None:
    """Check `job.options.sendtime` (ISO UTC) against `now` and schedule the job; ContentError if it cannot be.

    A time that is now or just past clears `sendtime` (the SMS goes at once). Otherwise, when the provider
    schedules itself the job stays queued with the time in its options; else mail2sms holds it `scheduled`.
    """
    if not job.options.sendtime:
        return
    when = parse_sendtime(job.options.sendtime, key)
    at = when.timestamp()
    if at < now - PAST_GRACE:
        raise ContentError(f"{key}: {_utc_text(when)} is in the past: give a future time ({FORMS})")
    if at <= now + NOW_WINDOW:
        job.options = dataclasses.replace(job.options, sendtime=None)
        return
    provider_schedules = limits is not None and limits.schedule_days is not None
    days = limits.schedule_days if limits is not None and limits.schedule_days is not None else HOLD_DAYS
    if when - datetime.fromtimestamp(now, UTC) > timedelta(days=days):
        who = provider if provider_schedules else "mail2sms"
        raise ContentError(f"{key}: {_utc_text(when)} is more than {days} days ahead; {who} schedules at most "
                           f"{days} days ahead")
    job.options = dataclasses.replace(job.options, sendtime=to_iso(when))
    if provider_schedules:
        return
    job.state = JobState.SCHEDULED
    if job.expires_at:
        job.expires_at += at - now  # the route's lifetime counts from the scheduled time
    job.next_attempt_at = at
