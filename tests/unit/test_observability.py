"""Logging hygiene: secret-named keys and registered secret values never reach a log line, nor frame locals."""

from __future__ import annotations

import io
import json

from mail2sms.observability import SECRETS, get_logger, setup


def _log_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_secret_keys_and_values_are_masked() -> None:
    """A `password=` field and a registered secret inside any string are both rendered as ***."""
    stream = io.StringIO()
    setup("debug", stream=stream, json=True)
    SECRETS.add(["Tr0ub4dor&3-canary"])
    log = get_logger("test")
    log.info("login", password="plain-canary-1", note="user typed Tr0ub4dor&3-canary by mistake",
             nested={"api_key": "k-canary", "list": ["x Tr0ub4dor&3-canary y"]})
    text = stream.getvalue()
    assert "plain-canary-1" not in text
    assert "Tr0ub4dor&3-canary" not in text
    assert "k-canary" not in text
    (line,) = _log_lines(stream)
    assert line["password"] == "***"
    assert line["note"] == "user typed *** by mistake"


def test_exceptions_are_logged_without_locals() -> None:
    """An exception's traceback is logged, but not the local variables of its frames."""
    stream = io.StringIO()
    setup("debug", stream=stream, json=True)
    log = get_logger("test")

    def fails(secret_local: str) -> None:
        raise ValueError("boom")

    try:
        fails("local-canary-77")
    except ValueError:
        log.exception("it failed")
    text = stream.getvalue()
    assert "boom" in text
    assert "local-canary-77" not in text
    assert "secret_local" not in text
