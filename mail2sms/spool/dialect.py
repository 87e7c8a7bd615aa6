"""What differs between the SQL of the two spool backends, and nothing else: types, list parameters, row locks.

`spool.core` writes every statement once, with `?` placeholders, and asks a `Dialect` for the few pieces SQLite
and PostgreSQL spell differently. A dialect never runs SQL and never holds a connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dialect:
    """The spelling of one database's SQL, as `spool.core` and `spool.schema` need it."""

    name: str
    real: str  # a float column (seconds since the epoch)
    boolean: str
    false: str  # the literal for a boolean column's default
    row_lock: str  # appended to a SELECT whose rows the transaction will change ("" where a write lock covers all)
    skip_locked: str  # the same, for claims: rows another node is taking are passed over
    elements: str  # a FROM item naming each element of one list parameter `value` (alias e)
    one_host: bool  # every owner runs on this host, so whether an owner lives is known (DESIGN.md "Crash recovery")

    def in_list(self, column: str) -> str:
        """`column` is one of the list parameter's values (pass `listed(values)` for the `?`)."""
        if self.name == "postgresql":
            return f"{column} = ANY(?)"
        return f"{column} IN (SELECT value FROM json_each(?))"

    def listed(self, values: Iterable[str]) -> Any:
        """The parameter for `in_list()` / `elements`: a JSON array for SQLite, a text array for PostgreSQL."""
        items = list(values)
        return items if self.name == "postgresql" else json.dumps(items)

    def key_lock(self) -> str | None:
        """A statement taking a per-key lock until the transaction ends (one `?`), or None where the writer already
        holds the whole database (SQLite's write lock serialises every process)."""
        return "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))" if self.name == "postgresql" else None

    def placeholders(self, sql: str) -> str:
        """The statement in this driver's parameter style (psycopg takes `%s`)."""
        return sql.replace("?", "%s") if self.name == "postgresql" else sql


SQLITE = Dialect(
    name="sqlite", real="REAL", boolean="INTEGER", false="0", row_lock="", skip_locked="",
    elements="json_each(?) AS e", one_host=True,
)
POSTGRESQL = Dialect(
    name="postgresql", real="DOUBLE PRECISION", boolean="BOOLEAN", false="FALSE", row_lock=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED", elements="unnest(?::text[]) AS e(value)", one_host=False,
)
