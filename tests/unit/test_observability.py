"""Logging hygiene: secret-named keys and registered secret values never reach a log line, nor frame locals."""

from __future__ import annotations

import io
import json

from mail2sms.observability import MASK, SECRETS, SecretRegistry, get_logger, setup


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


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_values_shorter_than_six_characters_are_not_registered() -> None:
    """Short values such as `info` or `12345` are masked by key name only, never inside other text."""
    registry = SecretRegistry()
    registry.add(["info", "12345"])
    registry.add_transient(["error", "2026"])
    assert len(registry) == 0
    assert registry.scrub("info error 12345 2026") == "info error 12345 2026"


def test_transient_secrets_expire_and_are_bounded() -> None:
    """Body credentials are forgotten after their time to live, and only the newest `max_transient` are kept."""
    clock = _Clock()
    registry = SecretRegistry(max_transient=100, clock=clock)
    registry.add(["config-secret-1"])
    registry.add_transient([f"body-secret-{i:05d}" for i in range(50_000)], ttl=60.0)
    assert len(registry) == 101
    assert registry.scrub("body-secret-49999") == MASK
    assert registry.scrub("body-secret-00000") == "body-secret-00000"
    clock.now += 61.0
    assert len(registry) == 1
    assert registry.scrub("x body-secret-49999 config-secret-1") == f"x body-secret-49999 {MASK}"


def test_discard_forgets_transient_but_not_configured_secrets() -> None:
    """`discard()` drops a finished submission's credentials; a configured secret with the same value stays."""
    registry = SecretRegistry()
    registry.add(["shared-value-1"])
    registry.add_transient(["shared-value-1", "body-only-22"])
    registry.discard(["shared-value-1", "body-only-22"])
    assert registry.scrub("shared-value-1 body-only-22") == f"{MASK} body-only-22"


def test_longest_secret_is_masked_whole() -> None:
    """A secret that contains another is masked as one piece."""
    registry = SecretRegistry()
    registry.add(["abcdef", "abcdefghij"])
    assert registry.scrub("x abcdefghij y") == f"x {MASK} y"


def test_structural_fields_are_never_scrubbed() -> None:
    """Even a registered value equal to the level, event or a timestamp leaves those fields whole."""
    stream = io.StringIO()
    setup("debug", stream=stream, json=True)
    SECRETS.add_transient(["warning", "blinded", "sess-01"])
    try:
        get_logger("test").warning("blinded", session="sess-01", note="blinded words")
    finally:
        SECRETS.discard(["warning", "blinded", "sess-01"])
    (line,) = _log_lines(stream)
    assert line["event"] == "blinded"
    assert line["level"] == "warning"
    assert line["session"] == "sess-01"
    assert line["note"] == f"{MASK} words"
