"""Fit one job's text to its route and provider: smart replacement, the provider's own text rules, then the
parts limit, then the shape.

Runs for every job before the mail is accepted, so that what the spool stores is exactly what will be sent
and the sender learns at DATA (554 5.6.0) when a text cannot go: a text over the route's `max_parts` or the
provider's own limit is refused naming its parts and encoding, or cut to fit when the route says `truncate`.
A provider with text rules of its own (KwtSMS refuses emoji and invisible characters, and a `lang` that cannot
carry the text) hands its check in with its limits (`Limits.fit_text`, given by the caller from the built
adapter), so this module never imports providers/ nor knows which provider it is. Whatever was done to the
text is written into `job.notes` for the outcome mail. A CSV row that cannot be sent is handed back to the
caller, which refuses that row alone.

Pure: no I/O. It must never change a text except by smart replacement (when the route allows it), by
truncation (when the route asks for it) and by removing what the provider cannot deliver (when the route says
`strip_unsupported`), and never let a text over a limit through silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mail2sms.config import RouteConfig
from mail2sms.errors import ContentError
from mail2sms.limits import Limits, parts_limit
from mail2sms.model import Job
from mail2sms.parse.smart import smart_replace
from mail2sms.parse.text import Encoding, analyze, is_gsm7, truncate

ENCODING_NAMES = {"gsm7": "GSM-7", "ucs2": "UCS-2"}
TRUNCATED_NOTE = "truncated to {parts} {encoding} part{s} ({limit}): the end of the text was not sent"


@dataclass(frozen=True)
class Fitted:
    """A text as it will be sent: the text, its shape, and what was done to it (for the report)."""

    text: str
    parts: int
    encoding: Encoding
    notes: tuple[str, ...]


def fit_jobs(
    jobs: Sequence[Job], route: RouteConfig, limits: Limits | None, provider_type: str
) -> list[tuple[Job, str]]:
    """Fit every job of one route, in place; each distinct text is worked out once (a CSV repeats a few).

    A job without a CSV row that cannot be sent raises ContentError (the whole mail is refused at DATA); CSV
    rows that cannot be sent are returned with the problem, for the caller to refuse row by row. Jobs already
    final (a CSV row refused for its own problem) are left alone.
    """
    done: dict[tuple[str, int | None], Fitted | str] = {}
    refused: list[tuple[Job, str]] = []
    for job in jobs:
        if job.state.final:
            continue
        key = (job.text, job.options.lang)
        if key not in done:
            try:
                done[key] = fit_text(job.text, route, limits, provider_type, job.options.lang)
            except ContentError as exc:
                done[key] = str(exc)
        fitted = done[key]
        if isinstance(fitted, str):
            if job.row is None:
                raise ContentError(fitted)
            refused.append((job, fitted))
            continue
        job.text, job.parts, job.encoding, job.notes = fitted.text, fitted.parts, fitted.encoding, [*fitted.notes]
    return refused


def fit_text(
    text: str, route: RouteConfig, limits: Limits | None, provider_type: str, lang: int | None = None
) -> Fitted:
    """The text to send for `route` and its provider; ContentError when it cannot be sent as it is."""
    notes: list[str] = []
    if route.smart_replace:
        text = _smart(text, notes)
    hook = limits.fit_text if limits is not None else None
    if hook is not None:
        # After smart replacement: a character it turned into GSM-7 is no longer the provider's problem, and a
        # text it left alone is the mail's own, so a refusal's line and position are the sender's.
        fixed = hook(text, lang=lang, strip=route.strip_unsupported)
        notes += fixed.notes
        # Without its emoji a text may now fit GSM-7: smart replacement gets a second chance.
        text = _smart(fixed.text, notes) if fixed.text != text and route.smart_replace else fixed.text
    shape = analyze(text)
    max_parts, owner = _parts_limit(route, limits, provider_type, shape.encoding)
    max_chars = limits.max_chars if limits is not None else None
    too_many_parts = max_parts is not None and shape.parts > max_parts
    too_long = max_chars is not None and len(text) > max_chars
    if too_many_parts and not route.truncate:
        raise ContentError(
            f"the text needs {shape.parts} SMS parts in {ENCODING_NAMES[shape.encoding]} "
            f"({_size(text, shape.encoding, shape.units)}); {owner} at most {max_parts}: shorten the text"
        )
    if (too_many_parts or too_long) and route.truncate:
        text = truncate(text, max_parts, max_chars)
        shape = analyze(text)
        limit = (
            f"{owner} at most {max_parts}"
            if too_many_parts
            else f"{provider_type} takes at most {max_chars} characters"
        )
        notes.append(
            TRUNCATED_NOTE.format(
                parts=shape.parts,
                encoding=ENCODING_NAMES[shape.encoding],
                s="s" if shape.parts != 1 else "",
                limit=limit,
            )
        )
    return Fitted(text, shape.parts, shape.encoding, tuple(notes))


def _smart(text: str, notes: list[str]) -> str:
    smart = smart_replace(text)
    if smart.note:
        notes.append(smart.note)
    return smart.text


def _parts_limit(
    route: RouteConfig, limits: Limits | None, provider_type: str, encoding: str
) -> tuple[int | None, str]:
    """The lower of the route's and the provider's parts limits (for this encoding), and whose it is, in words."""
    provider = parts_limit(limits, encoding) if limits is not None else None
    if route.max_parts is not None and (provider is None or route.max_parts <= provider):
        return route.max_parts, f"the route {route.match} allows"
    if provider is not None:
        return provider, f"{provider_type} takes"
    return None, ""


def _size(text: str, encoding: str, units: int) -> str:
    """The text's length as it counts, and for UCS-2 the first character that forced it."""
    if encoding == "gsm7":
        return f"{units} septets" if units != len(text) else f"{len(text)} characters"
    first = next((c for c in text if not is_gsm7(c)), "")
    because = f"; {first!r} (U+{ord(first):04X}) is not in GSM-7" if first else ""
    return f"{units} UTF-16 units{because}"
