"""The log masker forgets a mail's body credentials when its submission is final, not before, and not while
another live submission carries the same value."""

from __future__ import annotations

from mail2sms.observability import SecretRegistry


def test_release_forgets_only_what_no_live_submission_carries() -> None:
    """Two submissions share one password: releasing the first keeps it masked, releasing the second forgets it."""
    registry = SecretRegistry()
    registry.add_transient(["shared-secret", "only-in-a"])
    registry.belong_to("a", ["shared-secret", "only-in-a"])
    registry.add_transient(["shared-secret"])
    registry.belong_to("b", ["shared-secret"])
    registry.release(["a"])
    assert registry.scrub("shared-secret only-in-a") == "*** only-in-a"
    registry.release(["b"])
    assert registry.scrub("shared-secret") == "shared-secret"
    assert len(registry) == 0


def test_lasting_secrets_and_untied_values_are_not_released() -> None:
    """A configured secret stays masked whatever is released; a tie to a value never registered is ignored."""
    registry = SecretRegistry()
    registry.add(["config-secret"])
    registry.belong_to("a", ["config-secret", "never-registered"])
    registry.release(["a", "unknown-submission"])
    assert registry.scrub("config-secret never-registered") == "*** never-registered"


def test_ties_are_bounded() -> None:
    """More live submissions than the registry keeps: the oldest ties are dropped, so memory stays bounded."""
    registry = SecretRegistry(max_transient=4)
    for i in range(10):
        registry.add_transient([f"secret-{i:04d}"])
        registry.belong_to(f"s{i}", [f"secret-{i:04d}"])
    assert len(registry._owned) <= 4
    assert len(registry) <= 4
