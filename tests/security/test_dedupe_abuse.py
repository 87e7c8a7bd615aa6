"""Dedupe abused: a dry run or another sender's copy of a Message-ID never suppresses a real alarm."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mail2sms.smtp import replies
from tests.harness import ThreadServer, message, send, thread_server, wait_until, write_config

CONFIG = """
[providers.out]
type = "outbox"
path = "{tmp}/outbox.jsonl"

[[routes]]
match = "sms@sms.test"
format = "keyvalue"
provider = "out"
region = "KW"
"""
ALARM = "mobile:96550000001\ntext:fire in hall 3\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadServer]:
    path, _ = write_config(tmp_path, CONFIG.format(tmp=tmp_path))
    with thread_server(path) as srv:
        yield srv


def _sent(tmp: Path) -> list[dict[str, object]]:
    path = tmp / "outbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_dry_run_never_suppresses_the_real_alarm(server: ThreadServer, tmp_path: Path) -> None:
    """A `test:1` mail with the same Message-ID, number and text is checked; the real alarm after it is sent."""
    mid = "<alarm-42@panel.example.org>"
    dry = message("sms@sms.test", ALARM + "test:1\n", sender="mallory@example.org")
    dry.replace_header("Message-ID", mid)
    code, text = send(server.port, dry, sender="mallory@example.org")
    assert code == 250
    assert text.startswith(b"2.0.0 queued")
    real = message("sms@sms.test", ALARM, sender="mallory@example.org")
    real.replace_header("Message-ID", mid)
    code, text = send(server.port, real, sender="mallory@example.org")
    assert replies.QUEUED.matches(code, text)
    wait_until(lambda: _sent(tmp_path))
    assert [e["text"] for e in _sent(tmp_path)] == ["fire in hall 3"]


def test_another_senders_copy_of_a_message_id_is_not_a_duplicate(server: ThreadServer, tmp_path: Path) -> None:
    """The same Message-ID, number and text from two senders are two mails; the same sender's resend is one."""
    mid = "<alarm-43@panel.example.org>"
    for sender in ("mallory@example.org", "panel@factory.example.org"):
        msg = message("sms@sms.test", ALARM, sender=sender)
        msg.replace_header("Message-ID", mid)
        code, text = send(server.port, msg, sender=sender)
        assert replies.QUEUED.matches(code, text)
    again = message("sms@sms.test", ALARM, sender="panel@factory.example.org")
    again.replace_header("Message-ID", mid)
    code, text = send(server.port, again, sender="panel@factory.example.org")
    assert replies.DUPLICATE.matches(code, text)
    wait_until(lambda: len(_sent(tmp_path)) == 2)
