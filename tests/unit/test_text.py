"""Mail bodies cut down to the SMS text, and the SMS shape (GSM-7 or UCS-2, parts, units) of a text."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mail2sms.parse.html import html_to_text
from mail2sms.parse.text import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SmsShape,
    analyze,
    clean_body,
    is_gsm7,
)

# --- clean_body -------------------------------------------------------------------------------------------


def test_signature_is_cut() -> None:
    """Everything from a "-- " line on is the signature, not the message."""
    assert clean_body("Server down\n-- \nJohn Smith\nACME") == "Server down"


def test_bare_double_dash_is_a_signature_too() -> None:
    """Clients that strip trailing spaces turn "-- " into "--"; it still starts the signature."""
    assert clean_body("Server down\n--\nJohn") == "Server down"


def test_dashes_inside_text_are_kept() -> None:
    """A line that merely contains or starts with dashes is text, not a separator."""
    assert clean_body("a -- b\n---\n-- x") == "a -- b\n---\n-- x"


def test_crlf_and_cr_become_newlines() -> None:
    """CRLF and bare CR line ends are normalised to \\n."""
    assert clean_body("one\r\ntwo\rthree") == "one\ntwo\nthree"


def test_end_marker_cuts_from_its_line() -> None:
    """The first line starting with an end marker and everything after it are dropped."""
    body = "Alarm: door open\n$$\nThis mail was sent by ACME Alarm 3000"
    assert clean_body(body, end_markers=["$$", "##"]) == "Alarm: door open"
    assert clean_body("x\n  ## footer\nmore", end_markers=["##"]) == "x"


def test_end_marker_mid_line_is_text() -> None:
    """A marker that does not start a line is part of the message."""
    assert clean_body("cost $$ 5", end_markers=["$$"]) == "cost $$ 5"


def test_empty_end_marker_is_ignored() -> None:
    """An empty marker string would cut everything; it is ignored."""
    assert clean_body("keep me", end_markers=[""]) == "keep me"


def test_top_posted_reply_history_is_cut() -> None:
    """An "On … wrote:" line with the quoted original under it goes away; the reply above stays."""
    body = "Yes, send it.\n\nOn Mon, 1 Jan 2024 at 10:00, Ali <ali@example.org> wrote:\n> Shall I?\n> Thanks\n"
    assert clean_body(body) == "Yes, send it."


def test_wrapped_attribution_is_recognised() -> None:
    """An attribution wrapped over two lines by the client is still cut with its quote."""
    body = "OK\n\nOn Mon, 1 Jan 2024 at 10:00, A very long name\n<someone@example.org> wrote:\n\n> old"
    assert clean_body(body) == "OK"


def test_bottom_posted_reply_keeps_the_new_text() -> None:
    """With the quote first and the answer below, the answer is kept."""
    assert clean_body("On Mon, Ali wrote:\n> question\n\nanswer") == "answer"


def test_trailing_quote_without_attribution_is_cut() -> None:
    """A quoted block that ends the mail is history even without an attribution line."""
    assert clean_body("answer\n\n> old 1\n>\n> old 2\n") == "answer"


def test_quote_in_the_middle_without_attribution_stays() -> None:
    """A '>' line followed by new text is not removed when nothing says it is a reply quote."""
    assert clean_body("> 90% disk\nserver A") == "> 90% disk\nserver A"


def test_outlook_original_message_is_cut() -> None:
    """Outlook's "-----Original Message-----" separator starts reply history."""
    assert clean_body("Fine\n\n-----Original Message-----\nFrom: x\n\nold") == "Fine"


def test_outlook_web_rule_followed_by_from_is_cut() -> None:
    """A long underscore rule followed by "From:" is Outlook on the web's reply header."""
    body = "Fine\n________________________________\nFrom: Ali\nSent: Monday\nold"
    assert clean_body(body) == "Fine"
    assert clean_body("a\n__________\nb") == "a\n__________\nb"


def test_whitespace_is_tidied() -> None:
    """Trailing spaces go, runs of blank lines shrink to one, the text is stripped."""
    assert clean_body("\n\n  first  \t\n\n\n\nsecond   \n\n") == "first\n\nsecond"


def test_html_reply_quote_is_cut_after_conversion() -> None:
    """A Gmail HTML reply, turned into text, loses its attribution and blockquote."""
    html = (
        '<div dir="ltr">Reply here</div><div class="gmail_quote"><div class="gmail_attr">'
        "On Mon, Jan 1, 2024 John &lt;j@x.org&gt; wrote:<br></div>"
        '<blockquote class="gmail_quote">old text<br>more</blockquote></div>'
    )
    assert clean_body(html_to_text(html)) == "Reply here"


# --- analyze ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("", SmsShape("gsm7", 1, 0)),
        ("Hello", SmsShape("gsm7", 1, 5)),
        ("a" * 160, SmsShape("gsm7", 1, 160)),
        ("a" * 161, SmsShape("gsm7", 2, 161)),
        ("a" * 306, SmsShape("gsm7", 2, 306)),
        ("a" * 307, SmsShape("gsm7", 3, 307)),
        ("€" * 80, SmsShape("gsm7", 1, 160)),
        ("€" * 81, SmsShape("gsm7", 2, 162)),
        ("{}[]~|^\\", SmsShape("gsm7", 1, 16)),
        ("é à ñ Ä Ø Δ Ω", SmsShape("gsm7", 1, 13)),
        ("ç", SmsShape("ucs2", 1, 1)),  # only capital Ç is in GSM 03.38
        ("مرحبا", SmsShape("ucs2", 1, 5)),
        ("ب" * 70, SmsShape("ucs2", 1, 70)),
        ("ب" * 71, SmsShape("ucs2", 2, 71)),
        ("ب" * 134, SmsShape("ucs2", 2, 134)),
        ("ب" * 135, SmsShape("ucs2", 3, 135)),
        ("😀" * 35, SmsShape("ucs2", 1, 70)),
        ("😀" * 36, SmsShape("ucs2", 2, 72)),
        ("a\u00a0b", SmsShape("ucs2", 1, 3)),  # a no-break space is not GSM-7
    ],
)
def test_analyze_known_shapes(text: str, shape: SmsShape) -> None:
    """Encoding, septets/units and parts match the GSM 03.38 and UCS-2 rules for hand-checked texts."""
    assert analyze(text) == shape


def test_escape_pair_is_never_split() -> None:
    """152 septets then '€' do not fit a 153-septet part: the pair moves on, which can cost an extra part."""
    text = "a" * 152 + "€" + "a" * 152  # 306 septets would fill exactly 2 parts only by splitting the '€'
    assert analyze(text) == SmsShape("gsm7", 3, 306)
    assert analyze("a" * 152 + "€" + "a" * 100) == SmsShape("gsm7", 2, 254)


def test_surrogate_pair_is_never_split() -> None:
    """66 units then an emoji do not fit a 67-unit part: the pair moves on, which can cost an extra part."""
    text = "ب" * 66 + "😀" + "ب" * 66  # 134 units would fill exactly 2 parts only by splitting the emoji
    assert analyze(text) == SmsShape("ucs2", 3, 134)


def test_is_gsm7() -> None:
    """is_gsm7 is true exactly for texts made of the basic and extension tables."""
    assert is_gsm7("Hello @ £ $ ¥ € {}")
    assert is_gsm7("")
    assert not is_gsm7("Hello 😀")
    assert not is_gsm7("`")  # backtick has no GSM-7 code


gsm_text = st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION), max_size=1200)


@given(st.one_of(gsm_text, st.text(max_size=1200)))
def test_parts_never_fewer_than_units_allow(text: str) -> None:
    """Parts are at least ceil(units / part size), and a single part exactly when units fit one SMS."""
    shape = analyze(text)
    single, part = (160, 153) if shape.encoding == "gsm7" else (70, 67)
    assert (shape.parts == 1) == (shape.units <= single)
    if shape.units > single:
        assert shape.parts >= math.ceil(shape.units / part)
        # Packing loses at most one unit per part (a pair that did not fit).
        assert shape.parts <= math.ceil(shape.units / (part - 1))


@given(st.one_of(gsm_text, st.text(max_size=500)))
def test_encoding_follows_the_alphabet(text: str) -> None:
    """GSM-7 is chosen iff every character is in the GSM tables; units count septets or UTF-16 units."""
    shape = analyze(text)
    assert (shape.encoding == "gsm7") == is_gsm7(text)
    if shape.encoding == "ucs2":
        assert shape.units == len(text.encode("utf-16-le")) // 2
    else:
        assert shape.units == len(text) + sum(c in GSM7_EXTENSION for c in text)


# --- html_to_text -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "text"),
    [
        (
            "<html><head><title>T</title><style>p{color:red}</style></head>"
            "<body><p>Hello&nbsp;<b>world</b> &amp; friends</p>"
            '<p>See <a href="http://x">the site</a></p></body>',
            "Hello world & friends\n\nSee the site",
        ),
        ("<div>a</div><div><br></div><div>b</div>", "a\n\nb"),
        ("<div>a</div><div>b</div>", "a\nb"),
        ("<ul><li>one</li><li>two <i>2</i></li></ul>after", "- one\n- two 2\n\nafter"),
        ("line1<br>line2<br/><br>line4", "line1\nline2\n\nline4"),
        ("<table><tr><td>A</td><td>B</td></tr><tr><td>C</td><td>D</td></tr></table>", "A B\nC D"),
        ("<pre>keep   this\n  as is</pre>", "keep   this\n  as is"),
        ("<script>alert(1)</script>ok &#x1F600; &lt;3", "ok 😀 <3"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("<head><title>unclosed<body>Body text", "Body text"),
        ("<![foo]>x<![if !vml]>y<![endif]>z<!--[if mso]>hidden<![endif]-->w", "xyzw"),
        ("  lots   of\n\n   space  ", "lots of space"),
        ("<blockquote>quoted<br>two</blockquote>", "> quoted\n> two"),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    """HTML mail bodies become the text a reader saw: blocks as lines, entities decoded, markup gone."""
    assert html_to_text(html) == text


@given(st.text(alphabet=st.sampled_from(list("<>!-[]/=\"' &;#abpdivrscript\n")), max_size=300))
def test_html_to_text_never_raises(html: str) -> None:
    """Malformed HTML of any shape is turned into some text without an exception."""
    assert isinstance(html_to_text(html), str)
