"""What a provider can carry, as plain data every layer may read: `Limits`, the checks made against them, and the
text-fit hook type.

The smtp layer hands a provider's `Limits` to parse/ (from the built adapters), so parse checks texts, senders and
schedules against the provider without importing providers/. This module is pure data and pure functions: it must
never import a layer of the flow (smtp, parse, spool, dispatch, providers, report) nor do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mail2sms.model import Job


@dataclass(frozen=True)
class TextFix:
    """The text a provider's rules allow, and what was done to it (for the outcome mail)."""

    text: str
    notes: tuple[str, ...] = ()


class TextHook(Protocol):
    """An adapter's own check of a text: the text to send, or ContentError saying why it cannot go."""

    def __call__(self, text: str, *, lang: int | None, strip: bool) -> TextFix: ...


@dataclass(frozen=True)
class Limits:
    """What one request to a provider may carry, and how often requests may go.

    Checked before anything is sent (`check_job`), so a mail that cannot go is refused at DATA with the reason
    instead of failing later at the provider.
    """

    max_recipients: int = 1
    max_parts: int | None = None  # SMS parts one message may use
    max_chars: int | None = None  # characters one message may use
    rate: float = 5.0  # requests per second
    idempotent: bool = False  # the provider honours a per-job idempotency key
    sender_alnum_max: int = 11  # alphanumeric sender ids: at most this many characters (GSM rule)
    sender_digits_max: int = 16  # numeric sender ids: at most this many digits
    schedule_days: int | None = None  # the provider schedules up to this far ahead; None: mail2sms holds the job
    flash: bool = False  # the provider can send flash SMS
    flash_unicode: bool = True  # ... also when the text needs UCS-2 (KoboMobile: no)
    max_parts_ucs2: int | None = None  # a stricter parts limit for UCS-2 text (BulkSMS: 16-bit is one part)
    max_messages: int | None = None  # messages with different texts one request may carry; None: one text each
    # The provider's own text rules, checked at DATA by parse/fit.py (KwtSMS: no emoji, lang vs charset); None: none.
    fit_text: TextHook | None = None


def sender_problem(sender: str, limits: Limits) -> str | None:
    """Why a sender id cannot be used, in words; None when it can."""
    if sender.lstrip("+").isdigit():
        digits = sender.lstrip("+")
        if len(digits) > limits.sender_digits_max:
            return f"the sender {sender!r} has {len(digits)} digits; at most {limits.sender_digits_max} are allowed"
        return None
    if len(sender) > limits.sender_alnum_max:
        return (
            f"the sender {sender!r} has {len(sender)} characters; an alphanumeric sender may have at most "
            f"{limits.sender_alnum_max}"
        )
    if not all(ch.isascii() and (ch.isalnum() or ch in " -._&") for ch in sender):
        return f"the sender {sender!r} may only use letters A-Z, digits, spaces and - . _ &"
    return None


def parts_limit(limits: Limits, encoding: str) -> int | None:
    """The provider's parts limit for a text in `encoding`."""
    if encoding == "ucs2" and limits.max_parts_ucs2 is not None:
        return min(limits.max_parts_ucs2, limits.max_parts or limits.max_parts_ucs2)
    return limits.max_parts


def check_job(job: Job, limits: Limits, provider: str) -> str | None:
    """Why this job cannot go to this provider as it is (length, parts, sender, flash), or None."""
    if limits.max_chars is not None and len(job.text) > limits.max_chars:
        return f"the text has {len(job.text)} characters; {provider} takes at most {limits.max_chars}"
    max_parts = parts_limit(limits, job.encoding)
    if max_parts is not None and job.parts > max_parts:
        return f"the text needs {job.parts} SMS parts ({job.encoding.upper()}); {provider} takes at most {max_parts}"
    if job.sender:
        problem = sender_problem(job.sender, limits)
        if problem is not None:
            return problem
    if job.options.flash and not limits.flash:
        return f"{provider} cannot send flash SMS"
    if job.options.flash and job.encoding == "ucs2" and not limits.flash_unicode:
        return f"{provider} cannot send a flash SMS whose text needs UCS-2 (Unicode): send it as a normal SMS"
    return None
