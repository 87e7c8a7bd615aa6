"""Unit tests of KwtSMS's text rules at DATA: emoji and invisible characters refused or stripped (parse/fit.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mail2sms.config import ProviderConfig, RouteConfig
from mail2sms.errors import ContentError
from mail2sms.model import Job
from mail2sms.parse.fit import fit_jobs, fit_text
from mail2sms.providers.base import Limits
from mail2sms.providers.kapow import KapowProvider
from mail2sms.providers.kwtsms import KwtSmsProvider
from mail2sms.providers.textfit import find, undeliverable

KWT = Limits(max_recipients=200, max_parts=6, fit_text=KwtSmsProvider.fit_text)


def route(**kw: Any) -> RouteConfig:
    return RouteConfig(match="*@sms.test", format="address", provider="kwt", **kw)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("Hello 🙂", "an emoji, SLIGHTLY SMILING FACE (U+1F642), at line 1, character 7"),
        ("Sun ☀ today", "an emoji, BLACK SUN WITH RAYS (U+2600), at line 1, character 5"),
        ("Ship to 🇰🇼", "an emoji, REGIONAL INDICATOR SYMBOL LETTER K (U+1F1F0), at line 1, character 9 (and 1 more"),
        ("مرحبا\u200bبكم", "an invisible character, ZERO WIDTH SPACE (U+200B), at line 1, character 6"),
        ("مرحبا\nاهلا\ufeff", "an invisible character, ZERO WIDTH NO-BREAK SPACE (U+FEFF), at line 2, character 5"),
        ("مرحبا\u00adبكم", "an invisible character, SOFT HYPHEN (U+00AD), at line 1, character 6"),
        ("abc \u202eعربي", "an invisible character, RIGHT-TO-LEFT OVERRIDE (U+202E), at line 1, character 5"),
        ("Step 1\ufe0f\u20e3", "an invisible character, VARIATION SELECTOR-16 (U+FE0F), at line 1, character 7"),
        ("a\n\nb 👨\u200d👩", "an emoji, MAN (U+1F468), at line 3, character 3 (and 2 more such characters)"),
    ],
)
def test_undeliverable_character_is_refused_naming_it_and_where(text: str, named: str) -> None:
    """Emoji, pictographs and invisible characters are refused for KwtSMS with the name, U+XXXX, line and place."""
    with pytest.raises(ContentError) as caught:
        fit_text(text, route(), KWT, "kwtsms")
    words = str(caught.value)
    assert f"the text has {named}" in words
    assert "KwtSMS charges for emoji and invisible characters but never delivers the SMS" in words
    assert "strip_unsupported = true" in words


@pytest.mark.parametrize("text", ["مرحبا", "می\u200cخواهم", "Café © 2026 ™ € [x]", "日本語", "½ → ↑"])
def test_ordinary_text_passes(text: str) -> None:
    """Arabic, Persian with ZERO WIDTH NON-JOINER, Latin symbols and CJK are text: nothing refused or changed."""
    assert fit_text(text, route(smart_replace=False), KWT, "kwtsms").text == text


def test_invisible_in_latin_text_is_left_to_smart_replacement() -> None:
    """A zero-width space in Latin text is removed by smart replacement (which says so), so nothing is refused."""
    fitted = fit_text("Hello\u200bworld", route(), KWT, "kwtsms")
    assert (fitted.text, fitted.encoding) == ("Helloworld", "gsm7")
    assert fitted.notes[0].startswith("typographic characters replaced to fit GSM-7")


def test_strip_removes_and_notes_what_was_removed() -> None:
    """With strip_unsupported the characters are removed and the note names each with its count."""
    fitted = fit_text("مرحبا 🙂🙂 بكم\u200b", route(strip_unsupported=True), KWT, "kwtsms")
    assert fitted.text == "مرحبا  بكم"
    assert fitted.notes == (
        "removed 3 characters that KwtSMS cannot deliver: SLIGHTLY SMILING FACE (U+1F642) x2, "
        "ZERO WIDTH SPACE (U+200B)",
    )


def test_strip_gives_smart_replacement_a_second_chance() -> None:
    """Once the emoji is gone, curly quotes alone no longer force UCS-2: both notes, one GSM-7 part."""
    fitted = fit_text("it’s done 👍", route(strip_unsupported=True), KWT, "kwtsms")
    assert (fitted.text, fitted.encoding, fitted.parts) == ("it's done ", "gsm7", 1)
    assert fitted.notes[0] == "removed 1 character that KwtSMS cannot deliver: THUMBS UP SIGN (U+1F44D)"
    assert fitted.notes[1].startswith("typographic characters replaced to fit GSM-7")


def test_strip_of_an_emoji_only_text_is_refused() -> None:
    """A text that is nothing but emoji has nothing left to send: ContentError saying so."""
    with pytest.raises(ContentError, match=r"^nothing is left of the text once 2 characters that KwtSMS"):
        fit_text("🎉 🔥", route(strip_unsupported=True), KWT, "kwtsms")


def test_other_providers_have_no_such_rule() -> None:
    """The hook is KwtSMS's: Kapow and the outbox take emoji as UCS-2 text."""
    kwtsms = ProviderConfig.model_validate({"type": "kwtsms", "sender": "KWT-SMS"})
    assert KwtSmsProvider("k", kwtsms, httpx.AsyncClient()).limits.fit_text is KwtSmsProvider.fit_text
    kapow = ProviderConfig.model_validate({"type": "kapow"})
    assert KapowProvider("p", kapow, httpx.AsyncClient()).limits.fit_text is None
    assert fit_text("Hi 🙂", route(), None, "kapow").text == "Hi 🙂"


def test_csv_row_with_emoji_is_refused_alone() -> None:
    """In a CSV, only the row with the emoji is handed back as refused; the other row is fitted."""
    good = Job(number="96550000001", text="ok", provider="kwt", row=2)
    bad = Job(number="96550000002", text="bad 😀", provider="kwt", row=3)
    refused = fit_jobs([good, bad], route(), KWT, "kwtsms")
    assert [(job.row, why.split(",")[0]) for job, why in refused] == [(3, "the text has an emoji")]
    assert good.text == "ok"


def test_surrogate_pair_emoji_is_found_as_one_character() -> None:
    """An emoji outside the BMP (a UTF-16 surrogate pair on the wire) counts as one character at one position."""
    [found] = find("ab😀c")
    assert (found.char, found.kind, found.line, found.column) == ("😀", "emoji", 1, 3)
    assert undeliverable("\ud83d") == "broken character"
    assert undeliverable("\ue000") == "private-use character"
