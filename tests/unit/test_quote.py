"""A provider's own words quoted safely: one line, printable, bounded, secrets blanked before shortening."""

from __future__ import annotations

from mail2sms.providers.quote import MAX_CHARS, quote, said


def test_quote_is_one_printable_line() -> None:
    """Line breaks and tabs become single spaces; control characters are dropped."""
    assert quote("Message\r\n  not\tsent\x00\x07") == "Message not sent"


def test_a_secret_is_blanked_even_where_the_text_is_cut() -> None:
    """A secret is replaced before the text is shortened, so no part of it survives the cut."""
    secret = "s3cret-key-XYZ"
    text = "x" * (MAX_CHARS - 2) + secret
    quoted = quote(text, [secret])
    assert len(quoted) == MAX_CHARS
    assert "s3c" not in quoted
    assert quote(f"bad key {secret}", [secret, ""]) == "bad key ***"


def test_said_quotes_each_distinct_text_once() -> None:
    """Empty and repeated texts are left out; nothing at all gives an empty string."""
    assert said("Cellcast", "Queued", "", None, "Queued", "Invalid number") == (
        '. Cellcast\'s own words: "Queued"; "Invalid number"'
    )
    assert said("Kapow", "", None) == ""
