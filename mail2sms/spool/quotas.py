"""Route quotas held in the spool: the charge one mail makes, and the check both backends run inside `commit()`.

A quota is counted where every worker process and every PostgreSQL node sees the same numbers, and checked and
charged in the same transaction that stores the mail: two sessions cannot both see "7 of 8 used" and both get
their `250`, and a restart forgets nothing. The count is a sum of charge rows (key, time, SMS) over a sliding
window; rows older than the longest window are deleted as charges arrive, so the table holds about a day.
A charge that is refused raises `QuotaExceeded` and the commit stores nothing; a duplicate or a dry run is never
charged (the caller passes no charges for a dry run).

Pure apart from the `used` callback each backend supplies. It must never let a charge through whose sum with the
window's earlier charges is over the limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mail2sms.errors import PolicyError

HOUR = 3600.0
DAY = 86400.0
HORIZON = DAY  # the longest window: older charges are deleted


@dataclass(frozen=True)
class QuotaLimit:
    """At most `limit` SMS in any `window` seconds; `name` says the window in words ("hour", "day")."""

    limit: int
    window: float
    name: str


@dataclass(frozen=True)
class QuotaCharge:
    """`count` SMS charged to `key` (route and user, sender or client network), under `limits`, longest first."""

    key: str
    count: int
    limits: tuple[QuotaLimit, ...]
    who: str = ""  # what the key counts, in words, for the refusal ("the sender a@b.example", "the client 10.0.0.5")


class QuotaExceeded(PolicyError):
    """A charge would take a quota over its limit: nothing was stored."""


def problem(charge: QuotaCharge, used: Callable[[str, float], int], now: float) -> QuotaExceeded | None:
    """Why `charge` cannot be made at `now` (the longest window first), or None. `used(key, since)` sums charges."""
    for limit in charge.limits:
        if charge.count > limit.limit:
            return QuotaExceeded(f"this mail needs {charge.count} SMS, more than the {limit.limit} per {limit.name} "
                                 "this route allows", quota=True)
        spent = used(charge.key, now - limit.window)
        if spent + charge.count > limit.limit:
            whose = f" by {charge.who}" if charge.who else ""
            return QuotaExceeded(f"{spent} of {limit.limit} SMS per {limit.name} on this route are used{whose}",
                                 quota=True, temporary=limit.window <= HOUR)
    return None


def check(charges: Sequence[QuotaCharge], used: Callable[[str, float], int], now: float) -> None:
    """Raise QuotaExceeded for the first charge that cannot be made; the caller then inserts every charge."""
    for charge in charges:
        refusal = problem(charge, used, now)
        if refusal is not None:
            raise refusal


def windows(charges: Sequence[QuotaCharge], now: float) -> list[tuple[str, float]]:
    """The (key, since) sums `check()` will ask for, for a backend that reads them all first."""
    return sorted({(c.key, now - limit.window) for c in charges for limit in c.limits})
