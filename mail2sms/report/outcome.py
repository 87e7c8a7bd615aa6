"""What the outcome mail says, worked out once for the subject, the text part and the HTML part alike.

One pass over a submission's jobs gives the counts per status, the distinct texts (each shown once, with the
numbers it went to), and, for a big submission, the refusals grouped by reason; `rows()` gives the per-number
view of the first jobs. Every string leaving this module has the job's account secrets blanked, and nothing here
formats for a medium: the text and HTML renderers do that.

It must never do I/O, never expose `job.account`, and must stay linear in the number of jobs with bounded
memory beyond the jobs themselves: a CSV submission may hold 100,000 of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mail2sms.model import Account, Job, Submission
from mail2sms.report import states
from mail2sms.report.states import Look

ROWS_LIMIT = 50  # up to this many SMS the mail shows one row per number; above, counts and reasons
TEXTS_SHOWN = 5  # distinct texts shown in full; the rest are only counted (their rows are in the results files)
NUMBERS_PER_TEXT = 3  # numbers named beside a text ("to +965…, +965… and 8 more")
EXAMPLES_PER_REASON = 5  # CSV rows (or numbers) named beside a reason in a big submission
REASONS_KEPT = 1_000  # distinct reasons tracked; a flood of unique error texts lands in one "other reasons" line
SUBJECT_TEXT_CHARS = 100  # the original subject and a reason, each, within a subject

_ENCODING_NAMES = {"gsm7": "GSM-7", "gsm-7": "GSM-7", "ucs2": "UCS-2", "ucs-2": "UCS-2"}


def redactor(account: Account | None) -> Callable[[str | None], str | None]:
    """Blank out an account's secrets, in case a provider echoed them into an error, a code or a detail."""
    return _blank(account.secrets() if account is not None else [])


def _blank(secrets: list[str]) -> Callable[[str | None], str | None]:
    def redact(value: str | None) -> str | None:
        if value is None:
            return None
        for secret in secrets:
            value = value.replace(secret, "***")
        return value

    return redact


def e164(number: str) -> str:
    return number if not number or number.startswith("+") else "+" + number  # "": a CSV row without a number


def parts_words(parts: int, encoding: str) -> str:
    name = _ENCODING_NAMES.get(encoding.lower(), encoding.upper())
    return f"{parts} part{'s' if parts != 1 else ''}, {name}"


def with_code(error: str, code: str | None) -> str:
    """The error followed by the provider's code in brackets, unless the error already names the code.

    A person reads the explanation; the code is what the provider's support and documentation know it by. A code
    that is an ordinary word (KoboMobile's `error`) counts as named only at the start or in brackets.
    """
    if not code or error.startswith(code) or f"[{code}]" in error:
        return error
    code_like = code != code.lower() or any(ch.isdigit() for ch in code)
    if code_like and re.search(rf"(?<!\w){re.escape(code)}(?!\w)", error):
        return error
    return f"{error} [{code}]" if error else code


def one_line(value: str, limit: int = SUBJECT_TEXT_CHARS) -> str:
    """A text for a subject: on one line, within `limit` characters, "..." where it was cut."""
    value = " ".join(value.split())  # a header value must not carry a line break
    if len(value) > limit:
        value = value[: limit - 3].rstrip() + "..."
    return value


def short_reason(value: str) -> str:
    """An error in short for a subject: its first clause, on one line, bounded.

    Error texts read "what went wrong: what to do"; the subject carries only what went wrong.
    """
    value = " ".join(value.split())
    cuts = [i for i in (value.find(stop) for stop in (": ", ". ", "; ")) if i > 0]
    if cuts:
        value = value[: min(cuts)]
    return one_line(value.rstrip("."))


def iso(timestamp: float) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp else None


def when(timestamp: float) -> str | None:
    """A time as a person reads it: `2023-11-14 22:13 UTC`."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC") if timestamp else None


@dataclass
class Text:
    """One distinct SMS text and the numbers it went (or would go) to."""

    index: int  # 1-based, in order of first appearance
    text: str
    parts: str  # "1 part, GSM-7", from the first number that carried it
    count: int = 0
    numbers: list[str] = field(default_factory=list)  # the first NUMBERS_PER_TEXT, +E.164
    notes: list[str] = field(default_factory=list)  # what mail2sms changed, each note once


@dataclass
class Reason:
    """Numbers of a big submission that share one status and one reason."""

    status: str
    reason: str  # error with code; "" when the job carries none
    todo: str
    count: int = 0
    examples: list[str] = field(default_factory=list)  # "CSV row 7" or "+965…"


@dataclass(frozen=True)
class Row:
    """One number as the mail shows it."""

    number: str  # +E.164, or "" for a CSV row without a number
    csv_row: int | None
    status: str
    look: Look
    provider: str
    provider_id: str | None
    detail: str | None
    parts: str
    text_index: int | None  # which distinct text it carried; None when that text is not tracked
    error: str | None  # explanation with the provider's code, or the code alone
    todo: str | None


class Outcome:
    """Everything the outcome mail of one submission says, from one pass over its jobs."""

    def __init__(
        self,
        submission: Submission,
        jobs: Sequence[Job],
        advice: Callable[[Job], str] | None = None,
    ) -> None:
        self.submission = submission
        self.jobs = jobs
        self.advice = advice
        self.total = len(jobs)
        self.by_status: dict[str, int] = {}
        self.statuses: list[str] = []  # each job's status, in job order (results files reuse them)
        self.texts: dict[str, Text] = {}
        self.reasons: dict[tuple[str, str], Reason] = {}
        self.other_reasons = 0  # failures beyond REASONS_KEPT distinct reasons
        self.big = self.total > ROWS_LIMIT
        accounts: set[Account] = set()
        for job in jobs:
            status = states.status(submission, job)
            self.statuses.append(status)
            self.by_status[status] = self.by_status.get(status, 0) + 1
            if job.account is not None:
                accounts.add(job.account)
            redact = redactor(job.account)
            self._count_text(job, redact)
            if self.big and status != states.DRY_RUN and states.look(status).tone is not states.GOOD:
                self._count_reason(job, status, redact)
        self._redact_all = _blank([s for account in accounts for s in account.secrets()])

    # -- the pass -------------------------------------------------------------------------------------------
    def _count_text(self, job: Job, redact: Callable[[str | None], str | None]) -> None:
        text = redact(job.text) or ""
        entry = self.texts.get(text)
        if entry is None:
            entry = Text(len(self.texts) + 1, text, parts_words(job.parts, job.encoding))
            self.texts[text] = entry
        entry.count += 1
        if len(entry.numbers) < NUMBERS_PER_TEXT:
            entry.numbers.append(e164(job.number))
        for note in job.notes:
            note = redact(note) or ""
            if note not in entry.notes:
                entry.notes.append(note)

    def _count_reason(self, job: Job, status: str, redact: Callable[[str | None], str | None]) -> None:
        reason = self.error_of(job, status, redact) or ""
        key = (status, reason)
        entry = self.reasons.get(key)
        if entry is None:
            if len(self.reasons) >= REASONS_KEPT:
                self.other_reasons += 1
                return
            entry = Reason(status, reason, self.todo_of(job, status, reason, redact) or "")
            self.reasons[key] = entry
        entry.count += 1
        if len(entry.examples) < EXAMPLES_PER_REASON:
            entry.examples.append(f"CSV row {job.row}" if job.row is not None else e164(job.number) or "no number")

    # -- per job --------------------------------------------------------------------------------------------
    def error_of(self, job: Job, status: str, redact: Callable[[str | None], str | None]) -> str | None:
        """The explanation with the provider's code; the code alone for a failure without words."""
        if status == states.DRY_RUN:
            return None
        error, code = redact(job.error), redact(job.code)
        if error:
            return with_code(error, code)
        look = states.look(status)
        if code and (look.failed or look.tone is states.MAYBE):
            return code
        return None

    def todo_of(
        self, job: Job, status: str, error: str | None, redact: Callable[[str | None], str | None]
    ) -> str | None:
        """What the sender should do: the caller's provider-specific advice, else the status's own sentence.

        A refusal with an error needs no generic sentence: its error says what to do.
        """
        if status == states.DRY_RUN:
            return None
        todo = self.advice(job) if self.advice is not None else None
        look = states.look(status)
        if not todo and not (error and status == "rejected"):
            todo = look.advice
        return redact(todo) or None

    def rows(self, limit: int = ROWS_LIMIT) -> list[Row]:
        """The first `limit` numbers, each as the mail shows it."""
        out: list[Row] = []
        for job in self.jobs[:limit]:
            redact = redactor(job.account)
            status = states.status(self.submission, job)
            error = self.error_of(job, status, redact)
            text = self.texts.get(redact(job.text) or "")
            out.append(
                Row(
                    number=e164(job.number),
                    csv_row=job.row,
                    status=status,
                    look=states.look(status),
                    provider=job.provider,
                    provider_id=redact(job.provider_id),
                    detail=redact(job.detail),
                    parts=parts_words(job.parts, job.encoding),
                    text_index=text.index if text is not None else None,
                    error=error,
                    todo=self.todo_of(job, status, error, redact),
                )
            )
        return out

    # -- totals ---------------------------------------------------------------------------------------------
    def count(self, *statuses: str) -> int:
        return sum(self.by_status.get(s, 0) for s in statuses)

    @property
    def sent(self) -> int:
        return sum(n for s, n in self.by_status.items() if states.look(s).tone is states.GOOD)

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.by_status.items() if states.look(s).failed)

    @property
    def unknown(self) -> int:
        return sum(n for s, n in self.by_status.items() if states.look(s).tone is states.MAYBE)

    @property
    def pending(self) -> int:
        return sum(n for s, n in self.by_status.items() if states.look(s).tone is states.WAIT)

    @property
    def would_send(self) -> int:
        return self.by_status.get(states.DRY_RUN, 0)

    def counts_in_words(self) -> list[tuple[str, int]]:
        """(label, count) per status present, in the table's order, for "3 SMS: 2 sent, 1 refused"."""
        order = list(states.LOOKS)
        present = sorted(self.by_status, key=lambda s: order.index(s) if s in order else len(order))
        return [(states.look(s).label, self.by_status[s]) for s in present]

    def distinct_texts(self) -> list[Text]:
        return list(self.texts.values())

    def reasons_by_count(self) -> list[Reason]:
        return sorted(self.reasons.values(), key=lambda r: -r.count)

    def failure_in_short(self, job: Job) -> str:
        """Why a job failed, for a subject: the first clause of its error (or its code, or its state's label)."""
        label = states.look(states.status(self.submission, job)).label
        return short_reason(redactor(job.account)(job.error or job.code) or label)

    def common_failure(self) -> str | None:
        """The one reason every failed SMS shares (for the subject), or None when they differ or none failed."""
        reasons: set[str] = set()
        for job in self.jobs:
            if states.look(states.status(self.submission, job)).failed:
                reasons.add(self.failure_in_short(job))
                if len(reasons) > 1:
                    return None
        return reasons.pop() if reasons else None

    def original_subject(self) -> str:
        """The subject of the mail that asked for the SMS, on one line, bounded, with any known secret blanked."""
        return one_line(self._redact_all(self.submission.subject) or "")
