"""A spool transition's shape: statements yielded one at a time (`Q`), each sent back its `Result`, and the two
drivers that run one inside a backend's transaction (`drive` on SQLite's thread, `adrive` on a PostgreSQL
connection). Its own module so that `spool.core` and `spool.replies` both build on it without importing each other.

Nothing here runs SQL by itself or holds a connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from mail2sms.spool.rows import Row

T = TypeVar("T")


@dataclass(frozen=True)
class Q:
    """One statement; with `many`, `params` is a sequence of parameter tuples (executemany)."""

    sql: str
    params: Sequence[Any] = ()
    many: bool = False


@dataclass(frozen=True)
class Result:
    rows: Sequence[Row]
    rowcount: int


Tx: TypeAlias = Generator[Q, Result, T]


def drive(tx: Tx[T], execute: Callable[[Q], Result]) -> T:
    """Run a transition to its end with a synchronous `execute` (inside the caller's transaction)."""
    try:
        query = next(tx)
        while True:
            query = tx.send(execute(query))
    except StopIteration as stop:
        done: T = stop.value
        return done


async def adrive(tx: Tx[T], execute: Callable[[Q], Awaitable[Result]]) -> T:
    """`drive` with an asynchronous `execute`."""
    try:
        query = next(tx)
        while True:
            query = tx.send(await execute(query))
    except StopIteration as stop:
        done: T = stop.value
        return done
