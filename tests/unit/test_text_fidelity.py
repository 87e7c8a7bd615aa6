"""SMS text fidelity: GSM-7 / UCS-2 detection, part counting and splitting, truncation, and fitting a job's text
to its route and provider (smart replacement, parts limits, KwtSMS lang), checked against an independent
3GPP TS 23.038 encoder written here from the standard's tables."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mail2sms import config as configmod
from mail2sms.config import RouteConfig
from mail2sms.errors import ConfigError, ContentError
from mail2sms.model import Job, JobState, SmsOptions, Submission
from mail2sms.parse.fit import fit_jobs, fit_text
from mail2sms.parse.text import (
    ELLIPSIS,
    GSM7_BASIC,
    GSM7_EXTENSION,
    SmsShape,
    analyze,
    clean_body,
    split_parts,
    truncate,
)
from mail2sms.providers.base import Limits
from mail2sms.providers.kwtsms import LANG_ARABIC_CP1256, KwtSmsProvider, form_body, lang_problem
from mail2sms.report.compose import compose
from mail2sms.spool.sqlite import SqliteSpool

# --- an independent GSM 03.38 encoder -----------------------------------------------------------------------

# 3GPP TS 23.038 6.2.1, the default alphabet in code order 0x00..0x7F ("\x1b" is the escape to the extension).
DEFAULT_ALPHABET = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# 6.2.1.1, the extension table: ESC followed by these codes.
EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40,
             "€": 0x65}
ESC = 0x1B


def septets(text: str) -> list[int]:
    """The text as GSM-7 septets, each extension character as the pair ESC, code."""
    out: list[int] = []
    for ch in text:
        if ch in EXTENSION:
            out += [ESC, EXTENSION[ch]]
        else:
            out.append(DEFAULT_ALPHABET.index(ch))
    return out


def utf16_units(text: str) -> list[int]:
    data = text.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def is_gsm(text: str) -> bool:
    return all((c in DEFAULT_ALPHABET and c != "\x1b") or c in EXTENSION for c in text)


# Characters from every class that matters: basic GSM, extension GSM, BMP non-GSM, astral (surrogate pairs),
# combining marks and joiners.
GSM_BASIC_CHARS = st.sampled_from(sorted(set(DEFAULT_ALPHABET) - {"\x1b"}))
GSM_EXT_CHARS = st.sampled_from(sorted(EXTENSION))
OTHER_BMP = st.sampled_from(list("مرحبا日本語ç°’“”–…\u00a0\u0301\u200d"))
ASTRAL = st.sampled_from(list("🙂👍🏽😀𝄞🇬🇧"))
gsm_texts = st.text(st.one_of(GSM_BASIC_CHARS, GSM_EXT_CHARS), max_size=700)
any_texts = st.text(st.one_of(GSM_BASIC_CHARS, GSM_EXT_CHARS, OTHER_BMP, ASTRAL), max_size=400)
texts = st.one_of(gsm_texts, any_texts)


def test_alphabet_matches_the_standard() -> None:
    """text.py's GSM-7 sets are exactly 3GPP TS 23.038's default alphabet (less ESC) and extension table."""
    assert len(DEFAULT_ALPHABET) == 128
    assert set(DEFAULT_ALPHABET) - {"\x1b"} == GSM7_BASIC
    assert set(EXTENSION) == GSM7_EXTENSION


@settings(max_examples=300, deadline=None)
@given(texts)
def test_shape_agrees_with_the_reference_encoder(text: str) -> None:
    """Encoding and units equal what the reference GSM-7 encoder or UTF-16 count gives."""
    shape = analyze(text)
    if is_gsm(text):
        assert (shape.encoding, shape.units) == ("gsm7", len(septets(text)))
    else:
        assert (shape.encoding, shape.units) == ("ucs2", len(utf16_units(text)))


@settings(max_examples=300, deadline=None)
@given(texts)
def test_parts_join_back_and_respect_their_limits(text: str) -> None:
    """Joined parts are the text, their number is analyze()'s, and none is over 160/153 or 70/67 units."""
    parts = split_parts(text)
    shape = analyze(text)
    assert "".join(parts) == text
    assert len(parts) == shape.parts
    single, multi = (160, 153) if shape.encoding == "gsm7" else (70, 67)
    limit = single if len(parts) == 1 else multi
    for part in parts:
        units = len(septets(part)) if shape.encoding == "gsm7" else len(utf16_units(part))
        assert units <= limit
    if len(parts) > 1:
        assert all(p for p in parts)  # no empty part in a concatenated SMS


@settings(max_examples=300, deadline=None)
@given(texts)
def test_no_part_splits_an_escape_or_surrogate_pair(text: str) -> None:
    """Part boundaries, seen on the wire, never fall after an ESC septet or before a low surrogate."""
    parts = split_parts(text)
    if analyze(text).encoding == "gsm7":
        for part in parts:
            encoded = septets(part)
            assert not encoded or encoded[-1] != ESC or (len(encoded) >= 2 and encoded[-2] == ESC)
            # every ESC inside the part is followed by its code in the same part
            i = 0
            while i < len(encoded):
                i += 2 if encoded[i] == ESC else 1
            assert i == len(encoded)
    else:
        for part in parts:
            units = utf16_units(part)
            assert not units or not 0xDC00 <= units[0] <= 0xDFFF
            assert not units or not 0xD800 <= units[-1] <= 0xDBFF


@settings(max_examples=200, deadline=None)
@given(st.text(GSM_BASIC_CHARS, max_size=1000))
def test_basic_gsm_part_count_is_the_textbook_formula(text: str) -> None:
    """Without escape pairs, n septets take 1 part up to 160, else ceil(n / 153)."""
    n = len(text)
    assert analyze(text).parts == (1 if n <= 160 else math.ceil(n / 153))


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("مرحبا بكم", SmsShape("ucs2", 1, 9)),
        ("م" * 70, SmsShape("ucs2", 1, 70)),
        ("م" * 71, SmsShape("ucs2", 2, 71)),
        ("🙂", SmsShape("ucs2", 1, 2)),
        ("🙂" * 35, SmsShape("ucs2", 1, 70)),
        ("🙂" * 36, SmsShape("ucs2", 2, 72)),  # 33 emoji (66 units) fill a 67-unit part: the 34th goes on
        ("a" * 66 + "🙂" + "b", SmsShape("ucs2", 1, 69)),
        ("€", SmsShape("gsm7", 1, 2)),
        ("€" * 80, SmsShape("gsm7", 1, 160)),
        ("a" * 152 + "€" * 5, SmsShape("gsm7", 2, 162)),  # the first pair does not fit part one's 153rd septet
        ("{}[]~^|\\", SmsShape("gsm7", 1, 16)),
        ("a" * 152 + "€", SmsShape("gsm7", 1, 154)),
        ("a" * 152 + "€" + "b" * 7, SmsShape("gsm7", 2, 161)),
        ("“quoted”", SmsShape("ucs2", 1, 8)),
        ("it’s", SmsShape("ucs2", 1, 4)),
    ],
)
def test_shape_table(text: str, shape: SmsShape) -> None:
    """Arabic, emoji, €, the extension characters and curly quotes have the documented shape."""
    assert analyze(text) == shape


def test_escape_pair_moves_whole_to_the_next_part() -> None:
    """152 septets then €: the pair does not fit the first 153-septet part whole, so it starts part two."""
    parts = split_parts("a" * 152 + "€" + "b" * 7)
    assert parts == ["a" * 152, "€" + "b" * 7]


def test_surrogate_pair_moves_whole_to_the_next_part() -> None:
    """66 units then an emoji: the pair does not fit the 67-unit part whole, so it starts part two."""
    parts = split_parts("a" * 66 + "🙂" + "b" * 10)
    assert parts == ["a" * 66, "🙂" + "b" * 10]


# --- truncate ---------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(texts, st.integers(min_value=1, max_value=4))
def test_truncate_fits_and_keeps_a_prefix(text: str, max_parts: int) -> None:
    """The result fits; a text that fit is unchanged; else it is a prefix of the text plus its encoding's ellipsis."""
    result = truncate(text, max_parts)
    assert analyze(result).parts <= max_parts
    if analyze(text).parts <= max_parts:
        assert result == text
        return
    shape = analyze(result)
    ellipsis = ELLIPSIS[shape.encoding] if shape.encoding == "ucs2" else "..."
    if shape.encoding == "ucs2":
        assert result.endswith(ELLIPSIS["ucs2"])
    else:
        assert result.endswith(ELLIPSIS["gsm7"])
    head = result[: -len(ellipsis)]
    assert text.startswith(head)
    assert head == head.rstrip()
    rest = text[len(head) :]
    assert not rest[:1] or rest[0] not in "\u0301\u200d"  # no combining mark or joiner torn from its base
    assert not head.endswith("\u200d")


@settings(max_examples=100, deadline=None)
@given(texts, st.integers(min_value=1, max_value=3))
def test_truncate_uses_the_room_it_has(text: str, max_parts: int) -> None:
    """One more character of the original would not fit (unless a cluster or spaces forced a shorter cut)."""
    result = truncate(text, max_parts)
    if result == text:
        return
    ellipsis = ELLIPSIS[analyze(result).encoding]
    head = result[: -len(ellipsis)]
    longer = text[: len(head) + 1]
    if longer.strip() == head.strip() or longer[-1] in "\u0301\u200d\U0001f3fd" or head.endswith("\u200d"):
        return
    candidate = longer.rstrip() + ELLIPSIS[analyze(longer.rstrip()).encoding]
    flag_half = sum(1 for c in longer if 0x1F1E6 <= ord(c) <= 0x1F1FF) % 2 == 1
    assert flag_half or analyze(candidate).parts > max_parts


@pytest.mark.parametrize(
    ("text", "max_parts", "expected"),
    [
        ("a" * 200, 1, "a" * 157 + "..."),
        ("a" * 400, 2, "a" * 303 + "..."),
        ("م" * 100, 1, "م" * 69 + "…"),
        ("🙂" * 40, 1, "🙂" * 34 + "…"),  # 68 units + 1: a 35th emoji would need 71
        ("€" * 100, 1, "€" * 78 + "..."),  # 156 + 3 septets
        ("word " * 40, 1, "word " * 31 + "wo..."),  # the parts are filled: no word-boundary backtracking
        ("word " * 31 + "    " + "x" * 40, 1, ("word " * 31).rstrip() + "..."),  # trailing spaces are not sent
        ("short", 1, "short"),
    ],
)
def test_truncate_table(text: str, max_parts: int, expected: str) -> None:
    """Truncation fills the allowed parts exactly, with "..." in GSM-7 and "…" in UCS-2."""
    assert truncate(text, max_parts) == expected


def test_truncate_never_splits_a_flag_or_a_zwj_sequence() -> None:
    """A flag (two regional indicators) or a family emoji is kept whole or dropped whole."""
    flag = "🇰🇼"
    assert truncate("x" * 65 + flag + "y" * 20, 1) == "x" * 65 + flag + "…"  # exactly 70 units
    assert truncate("x" * 66 + flag + "y" * 20, 1) == "x" * 66 + "..."  # half a flag would fit: not taken
    family = "👨\u200d👩\u200d👧"
    assert truncate("x" * 64 + family + "y" * 20, 1) == "x" * 64 + "..."
    assert truncate("x" * 60 + family + "y" * 20, 1) == "x" * 60 + family + "y" * 1 + "…"


def test_truncate_respects_a_character_limit() -> None:
    """A provider's character limit is honoured too (905 for KoboMobile-style limits)."""
    out = truncate("a" * 1000, None, 905)
    assert len(out) == 905
    assert out.endswith("...")


# --- fit_text / fit_jobs -----------------------------------------------------------------------------------


def route(**kw: Any) -> RouteConfig:
    return RouteConfig(match="*@sms.test", format="address", provider="kwt", **kw)


KWT = Limits(max_recipients=200, max_parts=6, fit_text=KwtSmsProvider.fit_text)
KAPOW = Limits(max_recipients=200, max_parts=6)  # the same numbers, no text rules of its own


def test_smart_replacement_on_by_default_with_a_note() -> None:
    """Curly quotes alone forcing UCS-2 are replaced, and the note names them."""
    fitted = fit_text("“Hi” it’s me", route(), KWT, "kwtsms")
    assert (fitted.text, fitted.encoding, fitted.parts) == ('"Hi" it\'s me', "gsm7", 1)
    assert fitted.notes[0].startswith("typographic characters replaced to fit GSM-7")
    assert "’ → '" in fitted.notes[0]


def test_smart_replacement_off_keeps_the_text() -> None:
    """With smart_replace = false the typography stays and the text goes as UCS-2."""
    fitted = fit_text("“Hi” it’s me", route(smart_replace=False), KWT, "kwtsms")
    assert (fitted.text, fitted.encoding, fitted.notes) == ("“Hi” it’s me", "ucs2", ())


def test_text_needing_ucs2_anyway_is_untouched() -> None:
    """Arabic with curly quotes is UCS-2 whatever is replaced, so nothing is replaced."""
    fitted = fit_text("“مرحبا” – 🙂", route(), KAPOW, "kapow")  # kapow: KwtSMS refuses the emoji
    assert (fitted.text, fitted.encoding, fitted.notes) == ("“مرحبا” – 🙂", "ucs2", ())


def test_over_route_max_parts_is_refused_naming_parts_and_encoding() -> None:
    """Two GSM-7 parts on a one-part route: ContentError naming the parts, the encoding and the route limit."""
    with pytest.raises(ContentError) as caught:
        fit_text("a" * 200, route(max_parts=1), KWT, "kwtsms")
    words = str(caught.value)
    assert "needs 2 SMS parts in GSM-7 (200 characters)" in words
    assert "the route *@sms.test allows at most 1" in words


def test_ucs2_refusal_names_the_character_that_forced_it() -> None:
    """A UCS-2 refusal says which character is not in GSM-7."""
    with pytest.raises(ContentError) as caught:
        fit_text("a" * 80 + "°", route(max_parts=1), KWT, "kwtsms")
    assert "needs 2 SMS parts in UCS-2 (81 UTF-16 units; '°' (U+00B0) is not in GSM-7)" in str(caught.value)


def test_provider_limit_applies_without_a_route_limit() -> None:
    """KwtSMS's six parts apply when the route sets none; the error names the provider."""
    with pytest.raises(ContentError) as caught:
        fit_text("م" * 500, route(), KWT, "kwtsms")
    assert "needs 8 SMS parts in UCS-2" in str(caught.value)
    assert "kwtsms takes at most 6" in str(caught.value)


def test_lower_of_route_and_provider_limits_wins() -> None:
    """A route limit above the provider's does not lift the provider's."""
    with pytest.raises(ContentError, match="kwtsms takes at most 6"):
        fit_text("a" * 1000, route(max_parts=9), KWT, "kwtsms")


def test_truncation_when_the_route_says_so() -> None:
    """truncate = true cuts to the limit and notes it."""
    fitted = fit_text("م" * 100, route(max_parts=1, truncate=True), KWT, "kwtsms")
    assert fitted.text == "م" * 69 + "…"
    assert (fitted.parts, fitted.encoding) == (1, "ucs2")
    assert fitted.notes == ("truncated to 1 UCS-2 part (the route *@sms.test allows at most 1): "
                            "the end of the text was not sent",)


def test_truncation_after_smart_replacement_uses_gsm7() -> None:
    """Smart replacement happens first, so the cut is made in GSM-7 with "..." and both notes appear."""
    fitted = fit_text("it’s " + "a" * 300, route(max_parts=1, truncate=True), KWT, "kwtsms")
    assert fitted.text == "it's " + "a" * 152 + "..."
    assert len(fitted.notes) == 2


def test_character_limit_truncation() -> None:
    """A provider's max_chars is cut to when the route truncates, and refused by check_job otherwise."""
    limits = Limits(max_recipients=500, max_chars=10)
    fitted = fit_text("abcdefghijklmnop", route(truncate=True), limits, "kobomobile")
    assert fitted.text == "abcdefg..."
    assert "kobomobile takes at most 10 characters" in fitted.notes[0]


def test_kwtsms_lang_that_cannot_carry_the_text_is_refused() -> None:
    """lang:1 with Arabic and lang:2 with Cyrillic are refused before sending, naming the character."""
    with pytest.raises(ContentError, match=r"lang:1 \(English\) cannot carry 'م' \(U\+0645\)"):
        fit_text("مرحبا", route(), KWT, "kwtsms", lang=1)
    with pytest.raises(ContentError, match=r"lang:2 sends Windows-1256 bytes, which have no 'ж'"):
        fit_text("مرحبا ж", route(), KWT, "kwtsms", lang=2)
    assert fit_text("مرحبا", route(), KWT, "kwtsms", lang=2).text == "مرحبا"
    assert fit_text("it’s", route(), KWT, "kwtsms", lang=1).text == "it's"  # replaced first, then fine
    assert fit_text("مرحبا", route(), None, "kapow", lang=1).text == "مرحبا"  # lang means nothing to Kapow


def test_fit_jobs_refuses_csv_rows_one_by_one() -> None:
    """A CSV row over the limit is handed back for refusal; a job without a row fails the whole mail."""
    rows = [Job(number="96550000001", text="ok", provider="kwt", row=2),
            Job(number="96550000002", text="a" * 200, provider="kwt", row=3)]
    refused = fit_jobs(rows, route(max_parts=1), KWT, "kwtsms")
    assert [(job.row, "2 SMS parts" in why) for job, why in refused] == [(3, True)]
    with pytest.raises(ContentError):
        fit_jobs([Job(number="96550000001", text="a" * 200, provider="kwt")], route(max_parts=1), KWT, "kwtsms")


def test_fit_jobs_sets_shape_and_notes() -> None:
    """Every job of a route gets the final text, parts, encoding and notes."""
    jobs = [Job(number=f"9655000000{i}", text="Price – 5€", provider="kwt") for i in range(3)]
    assert fit_jobs(jobs, route(), KWT, "kwtsms") == []
    assert {(j.text, j.parts, j.encoding, len(j.notes)) for j in jobs} == {("Price - 5€", 1, "gsm7", 1)}


# --- clean_body: end markers and whitespace ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "markers", "text"),
    [
        ("Door open\n$$\nACME Alarm 3000 footer", ["$$"], "Door open"),
        ("Door open\n## sent by panel 4\nmore", ["$$", "##"], "Door open"),
        ("Tab\tseparated   words\n\n\n\nnext", [], "Tab separated words\n\nnext"),
        ("  indented\n\t\tline  ", [], "indented\nline"),
        ("bell\x07 and nul\x00 and\x0c feed", [], "bell and nul and feed"),
        ("keep\u00a0no-break for smart replacement", [], "keep\u00a0no-break for smart replacement"),
    ],
)
def test_clean_body_markers_and_whitespace(body: str, markers: list[str], text: str) -> None:
    """End markers cut; tabs, runs of spaces, indentation and control characters are normalised."""
    assert clean_body(body, markers) == text


def test_route_text_keys_parse_and_blank_marker_is_refused() -> None:
    """The new route keys load from TOML, and a blank end marker is a config error naming the key."""
    base = '[providers.kwt]\ntype = "kwtsms"\n[[routes]]\nmatch = "*@sms.test"\nformat = "address"\nprovider = "kwt"\n'
    keys = 'end_markers = ["$$", "##"]\nmax_parts = 2\ntruncate = true\nsmart_replace = false\n'
    config = configmod.parse(base + keys)
    r = config.routes[0]
    assert (r.end_markers, r.max_parts, r.truncate, r.smart_replace) == (["$$", "##"], 2, True, False)
    with pytest.raises(ConfigError, match=r"routes\[0\]\.end_markers"):
        configmod.parse(base + 'end_markers = ["  "]\n')
    with pytest.raises(ConfigError, match=r"routes\[0\]\.max_parts"):
        configmod.parse(base + "max_parts = 0\n")


# --- KwtSMS wire bytes ----------------------------------------------------------------------------------------


def test_kwtsms_lang2_message_is_windows_1256_bytes() -> None:
    """lang 2 percent-encodes the message's Windows-1256 bytes; the other fields stay UTF-8."""
    body = form_body([("sender", "KWT"), ("lang", "2"), ("message", "مرحبا بكم")], LANG_ARABIC_CP1256)
    assert body == b"sender=KWT&lang=2&message=%E3%D1%CD%C8%C7+%C8%DF%E3"


def test_lang_problem_accepts_what_fits() -> None:
    """lang 3 and 4 carry anything; no lang means mail2sms chooses."""
    assert lang_problem(None, "🙂") is None
    assert lang_problem(3, "🙂") is None
    assert lang_problem(4, "日本") is None
    assert lang_problem(1, "{}[]~^|\\€") is None


# --- notes persist and reach the report ---------------------------------------------------------------------


def test_notes_survive_the_spool_and_an_old_spool_gets_the_column(tmp_path: Path) -> None:
    """Job.notes round-trip through SQLite, and a spool file made before the column existed is upgraded."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, submission_id TEXT NOT NULL, seq INTEGER NOT NULL, "
                 "number TEXT NOT NULL, text TEXT NOT NULL, provider TEXT NOT NULL, sender TEXT, account TEXT, "
                 "options TEXT NOT NULL DEFAULT '{}', row INTEGER, idempotency_key TEXT NOT NULL, state TEXT NOT NULL,"
                 " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0, expires_at REAL NOT "
                 "NULL DEFAULT 0, lease_owner TEXT, lease_until REAL, provider_id TEXT, code TEXT, error TEXT, parts "
                 "INTEGER NOT NULL DEFAULT 1, encoding TEXT NOT NULL DEFAULT 'gsm7', updated_at REAL NOT NULL "
                 "DEFAULT 0)")
    conn.commit()
    conn.close()

    async def scenario() -> list[Job]:
        spool = SqliteSpool(f"sqlite:///{path}")
        await spool.open()
        try:
            job = Job(number="96550000001", text="it's", provider="kwt", notes=["typographic characters replaced"],
                      state=JobState.CANCELLED, code="DRYRUN")
            sub = Submission(envelope_from="a@example.org", recipients=["x@sms.test"], jobs=[job], route="*@sms.test",
                             report_to="a@example.org", dry_run=True, received_at=1.0)
            result = await spool.commit(sub, ["k1"], 60.0)
            got = await spool.get(result.submission_id)
            assert got is not None
            return got[1]
        finally:
            await spool.close()

    jobs = asyncio.run(scenario())
    assert jobs[0].notes == ["typographic characters replaced"]


def _report(jobs: list[Job], dry_run: bool) -> tuple[str, dict[str, Any]]:
    sub = Submission(envelope_from="a@example.org", recipients=["x@sms.test"], jobs=jobs, route="*@sms.test",
                     report_to="a@example.org", dry_run=dry_run, id="S1", received_at=1.0)
    mail: EmailMessage = compose(sub, jobs, from_addr="m@sms.test", hostname="sms.test", original_message_id=None)
    parsed = message_from_bytes(mail.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    data = next(p for p in parsed.iter_attachments() if p.get_filename() == "results.json").get_content()
    return str(body.get_content()), json.loads(data if isinstance(data, str) else data.decode())


def test_report_shows_notes_and_the_text_sent() -> None:
    """A job whose text was changed shows each note and the text as sent; results.json has both."""
    job = Job(number="96550000001", text="line one\nline two...", provider="kwt", parts=1, encoding="gsm7",
              notes=["truncated to 1 GSM-7 part"], state=JobState.SENT, provider_id="m1")
    text, data = _report([job], dry_run=False)
    assert ("Text (1 part, GSM-7), to +96550000001:\n  | line one\n  | line two...\n"
            "  Note: truncated to 1 GSM-7 part\n") in text
    assert data["jobs"][0]["notes"] == ["truncated to 1 GSM-7 part"]
    assert data["jobs"][0]["text"] == "line one\nline two..."


def test_dry_run_report_shows_the_text_even_unchanged() -> None:
    """In a dry run every would-be SMS shows its number, provider, parts, encoding and exact text."""
    job = Job(number="96550000001", text="مرحبا", provider="kwt", parts=1, encoding="ucs2",
              state=JobState.CANCELLED, code="DRYRUN", options=SmsOptions(lang=3))
    text, _ = _report([job], dry_run=True)
    assert "Text (1 part, UCS-2), to +96550000001:\n  | مرحبا\n" in text
    assert "\n+96550000001: would be sent (dry run)\n  via kwt\n  1 part, UCS-2\n" in text


def test_sent_report_without_notes_does_not_repeat_the_text() -> None:
    """An SMS sent as written to two numbers shows its text once in the text part, not once per number."""
    jobs = [Job(number=f"9655000000{i}", text="hello", provider="kwt", state=JobState.SENT, provider_id="m1")
            for i in (1, 2)]
    text, data = _report(jobs, dry_run=False)
    assert text.count("hello") == 1
    assert "Note:" not in text
    assert [j["text"] for j in data["jobs"]] == ["hello", "hello"]
