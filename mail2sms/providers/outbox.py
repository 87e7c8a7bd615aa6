"""The outbox provider: every SMS becomes one JSON line in a file, for demos, dry runs and tests.

Each batch is appended, flushed and fsynced before `send` returns, so a `Sent` from the outbox means the line
is on disk. File I/O runs in a worker thread, off the event loop. A line holds the time, provider name,
number, text, sender, an id and the options; it must never hold a password, a key or any other credential.
The outbox offers no delivery receipts: nothing it writes ever reaches a phone, so nothing may be called delivered.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.model import Account, Balance, Batch, Result, Retry, Sent
from mail2sms.providers.base import Limits
from mail2sms.providers.explain import explain
from mail2sms.providers.http import request_leaving
from mail2sms.providers.registry import ProviderSpec, register

TYPE = "outbox"

# Its codes in plain words (explain.py falls back to its generic table): mailed to the sender, so written for a
# person who has never read the API document, and never carrying a secret.
EXPLAIN: Mapping[str, str] = {
    "OUTBOX": "mail2sms could not write the outbox file: check that its folder exists, is writable and has "
    "free space; mail2sms tries again later",
}


class OutboxProvider:
    """Writes SMS to a JSON-lines file instead of sending them."""

    def __init__(self, name: str, config: ProviderConfig, client: httpx.AsyncClient | None = None) -> None:
        self.name = name
        self.config = config
        self.path = Path(config.path)
        # The outbox records flash SMS with their options; scheduled ones are held by mail2sms until their time.
        self.limits = Limits(max_recipients=config.max_recipients or 1000, rate=config.rate or 1000.0, flash=True)

    async def send(self, batch: Batch) -> list[Result]:
        """One line per job: Sent with the line's id, or Retry for every job if the file can't be written."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        sender = batch.sender or self.config.sender
        records: list[dict[str, Any]] = []
        for job in batch.jobs:
            records.append({
                "time": now,
                "provider": self.name,
                "number": job.number,
                "text": batch.text,
                "sender": sender,
                "id": job.idempotency_key or uuid.uuid4().hex,
                "options": batch.options.to_dict(),
            })
        await request_leaving()
        try:
            await asyncio.to_thread(self._append, records)
        except OSError:
            return [Retry(code="OUTBOX", why=explain(TYPE, "OUTBOX")) for _ in batch.jobs]
        return [Sent(provider_id=r["id"]) for r in records]

    def _append(self, records: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())

    async def balance(self, account: Account | None = None) -> Balance:
        """The outbox has no credit to run out of."""
        return Balance(provider=self.name, credit=None, detail="the outbox has no credit limit")


# What the config and the reports need to know about this provider type (providers/registry.py).
SPEC = register(
    ProviderSpec(
        type=TYPE,
        label="the outbox",
        build=OutboxProvider,
        required={"path": "the outbox provider needs a file path"},
        explain=EXPLAIN,
    )
)
