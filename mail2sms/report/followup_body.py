"""The follow-up mail's text/plain and text/html parts: what became of each accepted SMS, at a glance.

The same layout as the outcome mail (report.text, report.html): a one-line summary, then one block (or table row)
per number with its state, time, provider and message id, the provider's reason and what to do; over `ROWS_LIMIT`
SMS the counts and the reasons grouped, the rows being left to the attached results file.

It must never render anything `Outcome` did not redact, never put a string into the HTML without escaping it,
and never print more than a bounded number of lines.
"""

from __future__ import annotations

import html as markup
import textwrap

from mail2sms.report import states
from mail2sms.report.html import badge
from mail2sms.report.outcome import Outcome, Row, when
from mail2sms.report.receipted import ReceiptedJob
from mail2sms.report.text import FOOTER, WIDTH

REASONS_SHOWN = 20
_MUTED = "opacity:.72"
_LINE = "rgba(128,128,128,.35)"
_CELL = f"padding:8px 10px;border-bottom:1px solid {_LINE};vertical-align:top;text-align:left"
_FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
_MONO = "ui-monospace,SFMono-Regular,Menlo,Consolas,'DejaVu Sans Mono',monospace"


def _e(value: object) -> str:
    return markup.escape(str(value), quote=True)


def summary(outcome: Outcome) -> str:
    """The first line: "3 SMS: 2 delivered, 1 not delivered." or the one SMS's sentence."""
    if outcome.total == 1:
        [row] = outcome.rows(1)
        return row.look.one.format(number=row.number or "a row without a number", provider=row.provider)
    return f"{outcome.total:,} SMS: " + ", ".join(f"{n:,} {label}" for label, n in outcome.counts_in_words()) + "."


def _reached(outcome: Outcome, limit: int) -> list[str | None]:
    """When each of the first `limit` jobs reached its receipt state, in words."""
    return [
        when(job.receipt_at) if isinstance(job, ReceiptedJob) and job.receipt_at else None
        for job in outcome.jobs[:limit]
    ]


def _text_row(row: Row, at: str | None) -> list[str]:
    where = f" (CSV row {row.csv_row})" if row.csv_row is not None else ""
    lines = [f"{row.number or 'no number'}{where}: {row.look.words}" + (f", {at}" if at else "")]
    lines.append(f"  via {row.provider}" + (f", message id {row.provider_id}" if row.provider_id else ""))
    if row.detail:
        lines.append(f"  Detail: {row.detail}")
    if row.error:
        lines.append(f"  Reason: {row.error}")
    if row.todo:
        lines += textwrap.wrap(f"  What to do: {row.todo}", WIDTH, subsequent_indent="    ", break_on_hyphens=False)
    return lines


def _text_reasons(outcome: Outcome, results_file: str) -> list[str]:
    lines = ["In numbers:", *(f"  {n:>9,}  {label}" for label, n in outcome.counts_in_words()), ""]
    grouped = outcome.reasons_by_count()
    if grouped:
        lines.append("Not delivered, not confirmed or not sent, by reason:")
        for entry in grouped[:REASONS_SHOWN]:
            more = entry.count - len(entry.examples)
            lines.append(f"  {entry.count:>9,}  {states.look(entry.status).label}: {entry.reason or 'no reason given'}")
            lines.append("             " + ", ".join(entry.examples) + (f" and {more:,} more" if more > 0 else ""))
        rest = sum(e.count for e in grouped[REASONS_SHOWN:]) + outcome.other_reasons
        if rest:
            lines.append(f"  {rest:>9,}  for other reasons")
        lines.append("")
    return [*lines, f"Every number and its delivery state is in {results_file} (and results.json for programs).", ""]


def _about(outcome: Outcome) -> list[str]:
    sub = outcome.submission
    facts = []
    original = outcome.original_subject()
    if original:
        facts.append(f"Your mail: {original}")
    received = when(sub.received_at)
    if received:
        facts.append(f"Received: {received}")
    facts.append(f"Submission: {sub.id}")
    return facts


def text(outcome: Outcome, results_file: str) -> str:
    """The whole text part."""
    lines = [f"Delivery receipts. {summary(outcome)}", ""]
    if outcome.big:
        lines += _text_reasons(outcome, results_file)
    else:
        for row, at in zip(outcome.rows(), _reached(outcome, len(outcome.jobs)), strict=False):
            lines += [*_text_row(row, at), ""]
    lines += _about(outcome)
    lines += ["", "The outcome mail this follows said which numbers the provider accepted.", FOOTER]
    return "\n".join(lines) + "\n"


def _html_row(row: Row, at: str | None) -> str:
    where = f'<div style="font-size:12px;{_MUTED}">CSV row {row.csv_row}</div>' if row.csv_row is not None else ""
    said = []
    for value, style, label in (
        (row.detail, "", ""),
        (row.error, "", ""),
        (row.todo, "font-size:13px;", "<b>What to do:</b> "),
    ):
        if value:
            said.append(f'<div style="{style}margin-bottom:3px">{label}{_e(value)}</div>')
    facts = [f"{_e(at)}"] if at else []
    provider_id = (
        f', message id <span style="font-family:{_MONO};overflow-wrap:anywhere">{_e(row.provider_id)}</span>'
        if row.provider_id
        else ""
    )
    facts.append(f"via {_e(row.provider)}{provider_id}")
    return (
        f'<tr><td style="{_CELL};width:36%"><div style="font-family:{_MONO};font-size:14px;white-space:nowrap;'
        f'margin-bottom:4px">{_e(row.number or "no number")}</div>{badge(row.look)}{where}</td>'
        f'<td style="{_CELL};font-size:14px">{"".join(said)}'
        f'<div style="font-size:12px;{_MUTED}">{" &middot; ".join(facts)}</div></td></tr>'
    )


def _html_reasons(outcome: Outcome, results_file: str) -> str:
    rows = []
    for entry in outcome.reasons_by_count()[:REASONS_SHOWN]:
        more = entry.count - len(entry.examples)
        examples = ", ".join(_e(x) for x in entry.examples) + (f" and {more:,} more" if more > 0 else "")
        rows.append(
            f'<tr><td style="{_CELL};width:36%">{badge(states.look(entry.status), entry.count)}</td>'
            f'<td style="{_CELL};font-size:14px"><div>{_e(entry.reason or "no reason given")}</div>'
            f'<div style="font-size:12px;{_MUTED}">{examples}</div></td></tr>'
        )
    table = f'<table style="width:100%;border-collapse:collapse">{"".join(rows)}</table>' if rows else ""
    return table + (
        f'<p style="font-size:14px">Every number and its delivery state is in the attached '
        f"<b>{_e(results_file)}</b> (and <b>results.json</b> for programs).</p>"
    )


def html(outcome: Outcome, subject: str, results_file: str) -> str:
    """The whole HTML document."""
    order = list(states.LOOKS)
    present = sorted(outcome.by_status, key=lambda s: order.index(s) if s in order else len(order))
    pills = " ".join(badge(states.look(s), outcome.by_status[s]) for s in present) if outcome.total > 1 else ""
    if outcome.big:
        body = _html_reasons(outcome, results_file)
    else:
        cells = [_html_row(r, at) for r, at in zip(outcome.rows(), _reached(outcome, len(outcome.jobs)), strict=False)]
        body = f'<table style="width:100%;border-collapse:collapse;margin:4px 0 18px">{"".join(cells)}</table>'
    about = " &middot; ".join(_e(fact) for fact in _about(outcome))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{_e(subject)}</title></head>"
        f'<body style="margin:0;padding:16px 12px;font-family:{_FONT};font-size:15px;line-height:1.45">'
        '<div style="max-width:680px;margin:0 auto">'
        f'<div style="font-size:12px;{_MUTED};letter-spacing:.04em;text-transform:uppercase">mail2sms delivery '
        "receipts</div>"
        f'<h1 style="font-size:20px;line-height:1.35;font-weight:600;margin:6px 0 12px">{_e(summary(outcome))}</h1>'
        f'<div style="margin:0 0 16px;line-height:2">{pills}</div>{body}'
        f'<p style="font-size:12px;{_MUTED};border-top:1px solid {_LINE};padding-top:10px;margin-top:8px">'
        f"{about}<br>{_e(FOOTER)}</p></div></body></html>\n"
    )
