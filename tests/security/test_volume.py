"""Volume: a mail cannot become thousands of SMS or hundreds of parts unless its route says so; refusals name it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mail2sms.parse.submission import DEFAULT_MAX_NUMBERS, DEFAULT_MAX_PARTS
from mail2sms.smtp import replies
from tests.fakes.kapow import FakeKapow
from tests.harness import ThreadServer, message, send, thread_server, wait_until, write_config

CONFIG = """
[providers.out]
type = "outbox"
path = "{tmp}/outbox.jsonl"

[providers.kapow]
type = "kapow"
url = "{kapow}"
username = "user"
password = "pass"

[[routes]]
match = "sms@sms.test"
format = "keyvalue"
provider = "out"
region = "KW"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "out"
region = "KW"

[[routes]]
match = "*@kapow.test"
format = "address"
provider = "kapow"
region = "KW"

[[routes]]
match = "*@long.test"
format = "address"
provider = "out"
region = "KW"
max_parts = 20
"""


@pytest.fixture
def kapow() -> Iterator[FakeKapow]:
    with FakeKapow() as fake:
        yield fake


@pytest.fixture
def server(tmp_path: Path, kapow: FakeKapow) -> Iterator[ThreadServer]:
    path, _ = write_config(tmp_path, CONFIG.format(tmp=tmp_path, kapow=kapow.url))
    with thread_server(path) as srv:
        yield srv


def _outbox(tmp: Path) -> list[dict[str, object]]:
    path = tmp / "outbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_ten_thousand_numbers_are_refused_naming_the_limit(server: ThreadServer, tmp_path: Path) -> None:
    """A keyvalue mail listing 10,000 numbers gets 552 5.3.4 naming the per-mail limit, and no SMS is queued."""
    numbers = ",".join(f"9655{i:07d}" for i in range(10_000))
    code, text = send(server.port, message("sms@sms.test", f"mobile:{numbers}\ntext:flood\n"))
    assert replies.TOO_MANY.matches(code, text)
    assert f"at most {DEFAULT_MAX_NUMBERS}" in text.decode()
    assert _outbox(tmp_path) == []


def test_repeated_numbers_become_one_sms_each(server: ThreadServer, tmp_path: Path) -> None:
    """The same numbers repeated many times are sent once each, in the order first written."""
    numbers = ",".join(["96550000001", "96550000002"] * 400)
    code, _ = send(server.port, message("sms@sms.test", f"mobile:{numbers}\ntext:dedupe\n"))
    assert code == 250
    sent = wait_until(lambda: _outbox(tmp_path) if len(_outbox(tmp_path)) >= 2 else None)
    assert [entry["number"] for entry in sent] == ["96550000001", "96550000002"]


@pytest.mark.parametrize("rcpt", ["96550000003@sms.test", "96550000003@kapow.test"])
def test_a_huge_text_is_refused_for_providers_without_a_parts_limit(server: ThreadServer, kapow: FakeKapow,
                                                                     tmp_path: Path, rcpt: str) -> None:
    """A 200 KB text to outbox or Kapow (no limit of their own) gets 554 5.6.0 naming the default parts limit."""
    code, text = send(server.port, message(rcpt, "x" * 200_000))
    assert replies.BAD_CONTENT.matches(code, text)
    assert f"at most {DEFAULT_MAX_PARTS}" in text.decode()
    assert kapow.sent == []
    assert _outbox(tmp_path) == []


def test_a_route_can_allow_more_parts(server: ThreadServer, tmp_path: Path) -> None:
    """A route's own `max_parts` replaces the default: a 15-part text goes through it."""
    code, _ = send(server.port, message("96550000004@long.test", "y" * (153 * 15)))
    assert code == 250
    sent = wait_until(lambda: _outbox(tmp_path))
    assert sent[0]["number"] == "96550000004"
