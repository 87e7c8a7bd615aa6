"""Unit tests of the outbox provider (JSON lines on disk) and of the provider registry."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.model import Account, Batch, Job, Retry, Sent, SmsOptions
from mail2sms.providers.bulksms_json import BulkSmsJsonProvider
from mail2sms.providers.cellcast import CellcastProvider
from mail2sms.providers.kapow import KapowProvider
from mail2sms.providers.kobomobile import KoboMobileProvider
from mail2sms.providers.kwtsms import KwtSmsProvider
from mail2sms.providers.outbox import OutboxProvider
from mail2sms.providers.registry import build_provider


def make_batch(
    numbers: tuple[str, ...] = ("96550000001",), keys: tuple[str, ...] = (), **kw: object
) -> Batch:
    jobs = tuple(
        Job(number=n, text="hello", provider="box", idempotency_key=keys[i] if keys else "")
        for i, n in enumerate(numbers)
    )
    fields: dict[str, object] = {
        "provider": "box",
        "account": None,
        "sender": None,
        "text": "hello",
        "options": SmsOptions(),
        "jobs": jobs,
    }
    fields.update(kw)
    return Batch(**fields)  # type: ignore[arg-type]


def outbox(path: Path, **config: object) -> OutboxProvider:
    return OutboxProvider(
        "box",
        ProviderConfig.model_validate({"type": "outbox", "path": str(path), **config}),
        httpx.AsyncClient(),
    )


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_each_sms_is_one_json_line(tmp_path: Path) -> None:
    """Every job becomes one line with time, provider, number, text, sender, id and options."""
    path = tmp_path / "deep" / "dir" / "outbox.jsonl"
    box = outbox(path, sender="CONFIGURED")
    results = await box.send(
        make_batch(("96550000001", "96550000002"), keys=("k1", "k2"), options=SmsOptions(flash=True))
    )
    assert results == [Sent(provider_id="k1"), Sent(provider_id="k2")]
    records = lines(path)
    assert [r["number"] for r in records] == ["96550000001", "96550000002"]
    first = records[0]
    assert set(first) == {"time", "provider", "number", "text", "sender", "id", "options"}
    assert (first["provider"], first["text"], first["sender"], first["id"]) == (
        "box",
        "hello",
        "CONFIGURED",
        "k1",
    )
    assert first["options"] == {"flash": True}
    assert str(first["time"]).endswith("Z")


async def test_ids_are_generated_without_idempotency_key(tmp_path: Path) -> None:
    """Jobs without an idempotency key get a fresh unique id, returned as the provider id."""
    box = outbox(tmp_path / "o.jsonl")
    results = await box.send(make_batch(("96550000001", "96550000002")))
    ids = [r.provider_id for r in results if isinstance(r, Sent)]
    assert len(set(ids)) == 2
    assert [r["id"] for r in lines(tmp_path / "o.jsonl")] == ids


async def test_batches_append_and_keep_unicode(tmp_path: Path) -> None:
    """Later batches append to the file, and non-ASCII text is written as is."""
    path = tmp_path / "o.jsonl"
    box = outbox(path)
    await box.send(make_batch())
    await box.send(make_batch(text="مرحبا", sender="Shop"))
    records = lines(path)
    assert len(records) == 2
    assert (records[1]["text"], records[1]["sender"]) == ("مرحبا", "Shop")
    assert "مرحبا" in path.read_text(encoding="utf-8")


async def test_credentials_never_reach_the_file(tmp_path: Path) -> None:
    """Neither the configured password nor mail-body credentials are written."""
    path = tmp_path / "o.jsonl"
    box = outbox(path, password="config-secret")
    await box.send(make_batch(account=Account(username="u", password="body-secret", key="body-key")))
    text = path.read_text(encoding="utf-8")
    for secret in ("config-secret", "body-secret", "body-key"):
        assert secret not in text


async def test_unwritable_file_is_retry(tmp_path: Path) -> None:
    """When the file cannot be written every job is Retry with plain words, and nothing raises."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    box = outbox(blocker / "o.jsonl")  # a path below a regular file cannot be created
    results = await box.send(make_batch(("96550000001", "96550000002")))
    assert all(isinstance(r, Retry) and r.code == "OUTBOX" for r in results)
    assert len(results) == 2


async def test_balance_and_limits(tmp_path: Path) -> None:
    """The outbox has no credit limit, takes 1000 numbers per batch at 1000 batches/s."""
    box = outbox(tmp_path / "o.jsonl")
    balance = await box.balance()
    assert (balance.credit, balance.detail) == (None, "the outbox has no credit limit")
    assert (box.limits.max_recipients, box.limits.rate) == (1000, 1000.0)


# -- registry ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "cls"),
    [("kwtsms", KwtSmsProvider), ("kapow", KapowProvider), ("outbox", OutboxProvider),
     ("bulksms", BulkSmsJsonProvider), ("kobomobile", KoboMobileProvider), ("cellcast", CellcastProvider)],
)
async def test_registry_builds_the_adapter_for_each_type(kind: str, cls: type) -> None:
    """build_provider maps config.type to its adapter class and keeps the configured name."""
    async with httpx.AsyncClient() as client:
        config = ProviderConfig(type=kind, path="/tmp/x.jsonl", key="k", sender="Shop")  # type: ignore[arg-type]
        provider = build_provider("mine", config, client)  # type: ignore[arg-type]
    assert isinstance(provider, cls)
    assert provider.name == "mine"
