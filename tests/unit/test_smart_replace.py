"""Smart replacement: typographic characters become GSM-7 look-alikes only when that makes the whole text GSM-7."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mail2sms.parse.smart import NOTE, REPLACEMENTS, SmartResult, smart_replace
from mail2sms.parse.text import analyze, is_gsm7


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("“Meet me” at 5", '"Meet me" at 5'),
        ("It’s ‘fine’", "It's 'fine'"),
        ("„Guten Tag“", '"Guten Tag"'),
        ("«Bonjour»", '"Bonjour"'),
        ("10–12 — ok − 3", "10-12 - ok - 3"),
        ("Wait…", "Wait..."),
        ("5\u00a0kg\u202fnet\u2009x\u2003y", "5 kg net x y"),
        ("soft\u00adhyphen\u200bzero\ufeffwidth", "softhyphenzerowidth"),
        ("• item", "- item"),
        ("ﬁle ﬂow", "file flow"),
        ("price ˜5 ˆ2", "price ~5 ^2"),
        ("a\tb", "a b"),
        ("`code`", "'code'"),
        ("Total: 5€ – {ok}", "Total: 5€ - {ok}"),  # extension characters stay; they are GSM-7
    ],
)
def test_typography_is_replaced_when_it_is_all_that_forces_ucs2(text: str, sent: str) -> None:
    """Each look-alike replaces its typographic original, and the result is GSM-7."""
    result = smart_replace(text)
    assert result.text == sent
    assert is_gsm7(result.text)
    assert result.replaced
    assert result.note is not None
    assert result.note.startswith(NOTE)


@pytest.mark.parametrize(
    "text",
    [
        "“مرحبا” – أهلا",  # Arabic needs UCS-2 anyway
        "Great job 👍 – thanks…",  # so does an emoji
        "会議は3時 “now”",
        "ça – va",  # ç has no GSM-7 code (only Ç has): letters are never transliterated
        "25 °C – hot",  # ° has no GSM-7 look-alike
    ],
)
def test_text_needing_ucs2_anyway_is_unchanged(text: str) -> None:
    """When replacement would not reach GSM-7, the writer's characters are kept, at no extra cost."""
    assert smart_replace(text) == SmartResult(text)
    assert smart_replace(text).note is None


@pytest.mark.parametrize("text", ["plain ASCII", "Café Ünal, 5€ {x}", "", "line\nbreak"])
def test_gsm7_text_is_unchanged(text: str) -> None:
    """A text that is GSM-7 already is returned as it is, with no note."""
    assert smart_replace(text) == SmartResult(text)


def test_replacement_saves_parts() -> None:
    """A 100-character text with one curly apostrophe drops from two UCS-2 parts to one GSM-7 part."""
    text = "Don’t forget the meeting " + "x" * 75
    assert analyze(text).parts == 2
    result = smart_replace(text)
    assert (analyze(result.text).encoding, analyze(result.text).parts) == ("gsm7", 1)


def test_note_names_what_was_replaced_readably() -> None:
    """Visible characters are shown, invisible ones named, removed ones said to be removed."""
    note = smart_replace("“a” it’s\u00a0x\u00ad").note
    assert note == (f"{NOTE}: “ → \", ” → \", ’ → ', no-break space → space, soft hyphen removed")


def test_note_is_bounded() -> None:
    """A text full of different typography names six replacements and counts the rest."""
    note = smart_replace("‘’“”–—…•\u00a0\u2009").note
    assert note is not None
    assert note.endswith(" and 4 more")


def test_every_replacement_is_gsm7() -> None:
    """Every look-alike in the table is itself GSM-7 text (or nothing)."""
    assert all(is_gsm7(new) for new in REPLACEMENTS.values())
    assert not any(is_gsm7(old) for old in REPLACEMENTS if old)


typographic = st.sampled_from(sorted(REPLACEMENTS))
plain = st.sampled_from(list("abcXYZ 09.,!?\n€{}"))
other = st.sampled_from(list("مç°🙂日"))


@settings(deadline=None)
@given(st.text(st.one_of(typographic, plain, other), max_size=200))
def test_result_is_the_original_or_gsm7(text: str) -> None:
    """Either nothing changed, or the result is GSM-7 and differs only where table characters were."""
    result = smart_replace(text)
    if result.text == text:
        assert not result.replaced
        return
    assert is_gsm7(result.text)
    assert result.text == "".join(REPLACEMENTS.get(c, c) for c in text)
    assert set(result.replaced) == {c for c in text if c in REPLACEMENTS}


@settings(deadline=None)
@given(st.text(st.one_of(typographic, plain), max_size=200))
def test_replacement_is_idempotent(text: str) -> None:
    """Replacing twice gives what replacing once gave, and the second time reports nothing."""
    once = smart_replace(text)
    twice = smart_replace(once.text)
    assert twice.text == once.text
    assert not twice.replaced
