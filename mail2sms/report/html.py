"""The outcome mail's text/html alternative: the same content as the text part, as a clean table.

Made for mail clients, not browsers: inline `style` attributes only (many clients drop `<style>`), no images,
fonts, scripts or links to anything outside the mail, one column of content at most 680 px wide that reflows
on a phone. No background or text colour is forced on the page, so a client's dark mode keeps its own; the
state badges are mid-tone colours with white text, readable on either, and always carry a symbol and words so
that colour is never the only signal.

It must never put a string into the markup without `html.escape`: the SMS text and the original subject come
from mail bodies, errors and ids from providers, and any of them may carry markup.
"""

from __future__ import annotations

import html

from mail2sms.report import states
from mail2sms.report.outcome import TEXTS_SHOWN, Outcome, Row, Text, when
from mail2sms.report.states import Look
from mail2sms.report.text import FOOTER, summary_line

_FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
_MONO = "ui-monospace,SFMono-Regular,Menlo,Consolas,'DejaVu Sans Mono',monospace"
_LINE = "rgba(128,128,128,.35)"  # borders: grey with alpha reads on a light and on a dark background
_SHADE = "rgba(128,128,128,.10)"
_MUTED = "opacity:.72"
_CELL = f"padding:8px 10px;border-bottom:1px solid {_LINE};vertical-align:top;text-align:left"
_HEAD = (
    f"padding:6px 10px;border-bottom:2px solid {_LINE};text-align:left;font-size:12px;{_MUTED};font-weight:600;"
    "white-space:nowrap"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def badge(look: Look, count: int | None = None) -> str:
    """The state as a coloured pill with a symbol and words (and a count, in the summary)."""
    tone = look.tone
    style = (
        f"display:inline-block;padding:2px 9px;border-radius:10px;background:{tone.background};color:#ffffff;"
        "font-size:13px;font-weight:600;white-space:nowrap;line-height:1.5"
    )
    counted = f"{count:,} " if count is not None else ""
    return f'<span style="{style}">{_e(tone.symbol)}&nbsp;{counted}{_e(look.label)}</span>'


def _text_block(entry: Text, several: bool) -> str:
    more = entry.count - len(entry.numbers)
    to = ", ".join(_e(n or "no number") for n in entry.numbers) + (f" and {more:,} more" if more > 0 else "")
    name = f"SMS text {entry.index}" if several else "SMS text"
    notes = "".join(
        f'<div style="font-size:13px;margin-top:4px">&#9998; Changed by mail2sms: {_e(note)}</div>'
        for note in entry.notes
    )
    return (
        f'<div style="margin:0 0 14px">'
        f'<div style="font-size:13px;{_MUTED};margin:0 0 4px">{name} &middot; {_e(entry.parts)} &middot; to {to}</div>'
        # dir="auto": an Arabic or Hebrew SMS reads right to left; the proportional font keeps its letters joined.
        f'<div dir="auto" style="border-left:4px solid {_LINE};background:{_SHADE};padding:10px 12px;'
        "border-radius:4px;white-space:pre-wrap;word-wrap:break-word;overflow-wrap:anywhere;font-size:15px;"
        f'line-height:1.5">{_e(entry.text)}</div>{notes}</div>'
    )


def _texts(outcome: Outcome) -> str:
    texts = outcome.distinct_texts()
    out = "".join(_text_block(entry, len(texts) > 1) for entry in texts[:TEXTS_SHOWN])
    hidden = len(texts) - TEXTS_SHOWN
    if hidden > 0:
        out += f'<p style="font-size:13px;{_MUTED}">&hellip; and {hidden:,} other texts: see the results file.</p>'
    return out


def _row(row: Row, several_texts: bool) -> str:
    """One number in two cells, so that the table fits a phone: who and what state, then why and the facts.

    The left cell holds the number and the state badge; the right one the reason (or what the provider added)
    and what to do, then parts and encoding, provider and message id, in a smaller line.
    """
    where = f'<div style="font-size:12px;{_MUTED}">CSV row {row.csv_row}</div>' if row.csv_row is not None else ""
    said: list[str] = []
    if row.look.tone is states.GOOD and not row.error:
        said.append(f'<div style="margin-bottom:3px">Accepted by {_e(row.provider)}</div>')
    if row.status == states.DRY_RUN:
        said.append('<div style="margin-bottom:3px">Checked; nothing was sent (dry run)</div>')
    if row.error:
        said.append(f'<div style="margin-bottom:3px">{_e(row.error)}</div>')
    if row.todo:
        said.append(f'<div style="font-size:13px;margin-bottom:3px"><b>What to do:</b> {_e(row.todo)}</div>')
    if row.detail:
        said.append(f'<div style="font-size:13px;margin-bottom:3px">{_e(row.detail)}</div>')
    facts = [_e(row.parts)]
    if several_texts and row.text_index is not None:
        facts.append(f"SMS text {row.text_index}")
    # A long id may break anywhere rather than widen the table past a phone's width.
    provider_id = (
        f', message id <span style="font-family:{_MONO};overflow-wrap:anywhere">{_e(row.provider_id)}</span>'
        if row.provider_id
        else ""
    )
    facts.append(f"via {_e(row.provider)}{provider_id}")
    return (
        "<tr>"
        f'<td style="{_CELL};width:36%"><div style="font-family:{_MONO};font-size:14px;white-space:nowrap;'
        f'margin-bottom:4px">{_e(row.number or "no number")}</div>{badge(row.look)}{where}</td>'
        f'<td style="{_CELL};font-size:14px">{"".join(said)}'
        f'<div style="font-size:12px;{_MUTED}">{" &middot; ".join(facts)}</div></td>'
        "</tr>"
    )


def _table(header: list[str], rows: list[str]) -> str:
    head = "".join(f'<th scope="col" style="{_HEAD}">{_e(h)}</th>' for h in header)
    return (
        '<table style="width:100%;border-collapse:collapse;margin:4px 0 18px">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _per_number(outcome: Outcome) -> str:
    several = len(outcome.texts) > 1
    rows = [_row(row, several) for row in outcome.rows()]
    return _table(["Number and state", "Reason, parts, provider id"], rows)


def _big(outcome: Outcome, results_file: str) -> str:
    out = ""  # the counts are the pills under the title
    grouped = outcome.reasons_by_count()
    if grouped:
        rows = []
        for entry in grouped[:20]:
            more = entry.count - len(entry.examples)
            examples = ", ".join(_e(x) for x in entry.examples) + (f" and {more:,} more" if more > 0 else "")
            todo = f'<div style="font-size:13px;margin-top:3px"><b>What to do:</b> {_e(entry.todo)}</div>'
            rows.append(
                f'<tr><td style="{_CELL};width:36%">{badge(states.look(entry.status), entry.count)}</td>'
                f'<td style="{_CELL};font-size:14px"><div>{_e(entry.reason or "no reason given")}</div>'
                f'<div style="font-size:12px;{_MUTED}">{examples}</div>{todo if entry.todo else ""}</td></tr>'
            )
        rest = sum(e.count for e in grouped[20:]) + outcome.other_reasons
        if rest:
            rows.append(f'<tr><td style="{_CELL}">{rest:,} SMS</td><td style="{_CELL}">other reasons</td></tr>')
        out += '<h2 style="font-size:15px;margin:8px 0 4px">Not sent (or not surely sent), by reason</h2>'
        out += _table(["SMS", "Reason and examples"], rows)
    out += (
        f'<p style="font-size:14px">Every number and its outcome is in the attached <b>{_e(results_file)}</b> '
        "(and <b>results.json</b> for programs).</p>"
    )
    return out


def _about(outcome: Outcome) -> str:
    sub = outcome.submission
    facts = []
    original = outcome.original_subject()
    if original:
        facts.append(f"Your mail: &ldquo;{_e(original)}&rdquo;")
    received = when(sub.received_at)
    if received:
        facts.append(f"received {_e(received)}")
    facts.append(f"submission {_e(sub.id)}")
    if sub.route:
        facts.append(f"route {_e(sub.route)}")
    return " &middot; ".join(facts)


def _title(outcome: Outcome) -> str:
    """One SMS: the summary sentence. Several: the verdict in numbers, the pills below giving the breakdown."""
    if outcome.total < 2:
        return summary_line(outcome)
    if outcome.submission.dry_run:
        return f"Dry run: {outcome.would_send:,} of {outcome.total:,} SMS would be sent; nothing was sent"
    return f"{outcome.sent:,} of {outcome.total:,} SMS sent"


def _counts(outcome: Outcome) -> str:
    """The counts as pills, for a submission of several SMS."""
    if outcome.total < 2:
        return ""
    order = list(states.LOOKS)
    present = sorted(outcome.by_status, key=lambda s: order.index(s) if s in order else len(order))
    pills = " ".join(badge(states.look(s), outcome.by_status[s]) for s in present)
    return f'<div style="margin:0 0 16px;line-height:2">{pills}</div>'


def render(outcome: Outcome, subject: str, results_file: str) -> str:
    """The whole HTML document."""
    body = _big(outcome, results_file) if outcome.big else _per_number(outcome)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="color-scheme" content="light dark"><meta name="supported-color-schemes" content="light dark">'
        f"<title>{_e(subject)}</title></head>"
        f'<body style="margin:0;padding:16px 12px;font-family:{_FONT};font-size:15px;line-height:1.45">'
        '<div style="max-width:680px;margin:0 auto">'
        f'<div style="font-size:12px;{_MUTED};letter-spacing:.04em;text-transform:uppercase">mail2sms outcome</div>'
        f'<h1 style="font-size:20px;line-height:1.35;font-weight:600;margin:6px 0 12px">{_e(_title(outcome))}</h1>'
        f"{_counts(outcome)}"
        f"{_texts(outcome)}{body}"
        f'<p style="font-size:12px;{_MUTED};border-top:1px solid {_LINE};padding-top:10px;margin-top:8px">'
        f"{_about(outcome)}<br>{_e(FOOTER)}</p>"
        "</div></body></html>\n"
    )
