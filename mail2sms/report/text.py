"""The outcome mail's text/plain part: read at a glance in any mail client, down to mutt in a terminal.

Layout: a one-line summary; each distinct text once, with the numbers it went to and what mail2sms changed in
it; then one block per number (status in words, provider and its message id, what the provider added, parts and
encoding, the error with the provider's code, what to do) or, over `ROWS_LIMIT` SMS, the counts and the reasons
grouped with their counts, the rows being left to the attached results files; then where the mail came from.

It must never render anything `Outcome` did not redact, and never print more than a bounded number of lines.
"""

from __future__ import annotations

import textwrap

from mail2sms.report import states
from mail2sms.report.outcome import TEXTS_SHOWN, Outcome, Row, Text, when

FOOTER = "This is an automatic reply from mail2sms; replies to it are not read."
WIDTH = 78  # advice is wrapped to this width; errors, notes and details stay on one line, to be searched for


def _todo(todo: str, indent: str) -> list[str]:
    """The advice line wrapped for a terminal, its continuation lines indented under it."""
    return textwrap.wrap(f"{indent}What to do: {todo}", WIDTH, subsequent_indent=indent + "  ", break_on_hyphens=False)


def summary_line(outcome: Outcome) -> str:
    """The first line: what happened, in one sentence."""
    sub = outcome.submission
    if outcome.total == 1:
        [row] = outcome.rows(1)
        line = row.look.one.format(number=row.number or "a row without a number", provider=row.provider)
        return f"Dry run: {line[0].lower()}{line[1:]} Nothing was sent." if sub.dry_run and row.look.failed else line
    if sub.dry_run:
        return f"This was a dry run: {outcome.total:,} SMS checked, nothing was sent."
    sent = f"{outcome.sent:,} sent"
    rest = [f"{n:,} {label}" for label, n in outcome.counts_in_words() if label != "sent"]
    return f"{outcome.total:,} SMS: " + ", ".join([sent, *rest]) + "."


def _recipients(entry: Text) -> str:
    named = ", ".join(n or "no number" for n in entry.numbers)
    more = entry.count - len(entry.numbers)
    return named + (f" and {more:,} more" if more > 0 else "")


def _texts(outcome: Outcome) -> list[str]:
    texts = outcome.distinct_texts()
    several = len(texts) > 1
    lines: list[str] = []
    for entry in texts[:TEXTS_SHOWN]:
        name = f"Text {entry.index}" if several else "Text"
        lines.append(f"{name} ({entry.parts}), to {_recipients(entry)}:")
        lines.extend("  | " + line if line else "  |" for line in entry.text.split("\n"))
        lines.extend(f"  Note: {note}" for note in entry.notes)  # what mail2sms changed in the text
        lines.append("")
    hidden = len(texts) - TEXTS_SHOWN
    if hidden > 0:
        lines += [f"… and {hidden:,} other texts: each row's text is in the results file.", ""]
    return lines


def _row(row: Row, several_texts: bool) -> list[str]:
    where = f" (CSV row {row.csv_row})" if row.csv_row is not None else ""
    lines = [f"{row.number or 'no number'}{where}: {row.look.words}"]
    lines.append(f"  via {row.provider}" + (f", message id {row.provider_id}" if row.provider_id else ""))
    if row.detail:
        lines.append(f"  Detail: {row.detail}")
    which = f", text {row.text_index}" if several_texts and row.text_index is not None else ""
    lines.append(f"  {row.parts}{which}")
    if row.error:
        lines.append(f"  Error: {row.error}")
    if row.todo:
        lines += _todo(row.todo, "  ")
    return lines


def _reasons(outcome: Outcome, results_file: str) -> list[str]:
    lines = ["In numbers:"]
    lines += [f"  {n:>9,}  {label}" for label, n in outcome.counts_in_words()]
    lines.append("")
    grouped = outcome.reasons_by_count()
    if grouped:
        lines.append("Not sent (or not surely sent), by reason:")
        for entry in grouped[:20]:
            look = states.look(entry.status)
            lines.append(f"  {entry.count:>9,}  {look.label}: {entry.reason or 'no reason given'}")
            more = entry.count - len(entry.examples)
            lines.append("             " + ", ".join(entry.examples) + (f" and {more:,} more" if more > 0 else ""))
            if entry.todo:
                lines += _todo(entry.todo, " " * 13)
        rest = sum(e.count for e in grouped[20:]) + outcome.other_reasons
        if rest:
            lines.append(f"  {rest:>9,}  for other reasons")
        lines.append("")
    lines += [f"Every number and its outcome is in {results_file} (and results.json for programs).", ""]
    return lines


def render(outcome: Outcome, results_file: str) -> str:
    """The whole text part. `results_file` names the attachment that carries the rows of a big submission."""
    sub = outcome.submission
    lines = [summary_line(outcome), ""]
    lines += _texts(outcome)
    if outcome.big:
        lines += _reasons(outcome, results_file)
    else:
        several = len(outcome.texts) > 1
        for row in outcome.rows():
            lines += [*_row(row, several), ""]
    original = outcome.original_subject()
    if original:
        lines.append(f"Your mail: {original}")
    received = when(sub.received_at)
    if received:
        lines.append(f"Received: {received}")
    lines.append(f"Submission: {sub.id}")
    if sub.route:
        lines.append(f"Route: {sub.route}")
    lines += ["", FOOTER]
    return "\n".join(lines) + "\n"
