"""HTML mail bodies → the plain text a person saw, for mails that carry no text/plain part.

Mail clients write `<div>` per line, `<div><br></div>` for an empty one, `&nbsp;` for spaces and
`<blockquote>` for reply history; an SMS wants none of the markup. Block elements become line breaks, `<br>`
a line break, `<li>` "- ", links keep their text, quoted blocks get "> " so that `text.clean_body()` drops
them like plain-text quotes. Scripts, styles and the document head are dropped. No-break spaces become plain
spaces and zero-width marks vanish: both are invisible to the writer but would force the SMS into UCS-2.

A reply's history and signature are dropped where the client marks them: Thunderbird's `moz-cite-prefix`,
`moz-signature` and `<blockquote type="cite">` (also Apple Mail's), Gmail's `gmail_quote` and
`gmail_signature`, Outlook on the web's `Signature`; and everything from Outlook's `appendonsend`,
`divRplyFwdMsg` or reply-header rule (`border-top:solid #E1E1E1`) on. Unmarked history is left to
`text.clean_body()`.

Built on the stdlib `html.parser` (no dependency). Must never raise on malformed HTML, never fetch anything.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP = frozenset({"script", "style", "head", "title", "template"})
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "dl", "pre", "blockquote"})
_BLOCK = frozenset(
    {
        "div", "tr", "hr", "section", "article", "header", "footer", "address", "dt", "dd", "form",
        "fieldset", "figure", "figcaption", "nav", "main", "aside", "center", "caption", "body", "html",
    }
)  # fmt: skip
_CELL = frozenset({"td", "th"})
_SPACE = re.compile(r"[ \t\n\r\f\v\xa0]+")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\ufeff\u00ad"))  # zero-width space, BOM, soft hyphen
_MARKED_SECTION_END = re.compile(r"\]\s*\]?\s*>")
# Elements whose whole content is reply history or a signature (class or id tokens, as the clients write them).
_HIDDEN_CLASSES = frozenset({"moz-cite-prefix", "moz-signature", "gmail_quote", "gmail_quote_container",
                             "gmail_signature", "gmail_signature_prefix"})
_HIDDEN_IDS = frozenset({"signature", "applemailsignature"})
# Elements after which everything is the original: Outlook on the web / new Outlook, Outlook for Mac.
_HISTORY_IDS = frozenset({"appendonsend", "divrplyfwdmsg", "mail-editor-reference-message-container"})
# Outlook desktop's reply header: a div whose top border is the rule above "From: … Sent: …".
_OUTLOOK_RULE = re.compile(r"border-top:\s*solid\s+#(e1e1e1|b5c4df)", re.IGNORECASE)


def html_to_text(html: str) -> str:
    """Readable text of an HTML document or fragment; never raises."""
    parser = _TextParser()
    try:
        parser.feed(html)
        parser.close()
    except AssertionError:
        # html.parser still signals a few malformed constructs with AssertionError (Python 3.10+); keep what
        # was read so far rather than fail the mail.
        pass
    return parser.text()


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._skip: list[str] = []  # open elements whose content is dropped
        self._pre = 0
        self._quote = 0
        self._breaks = 0  # line breaks owed before the next text
        self._space = False  # a space owed before the next text
        self._bullet = False
        self._line_start = True
        self._hidden: str | None = None  # the tag of a marked quote or signature being dropped
        self._hidden_depth = 0
        self._history = False  # the original began: nothing more is read

    def text(self) -> str:
        lines = [line.rstrip() for line in "".join(self._out).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._history:
            return
        if self._hidden is not None:
            self._hidden_depth += tag == self._hidden
            return
        if tag == "body":
            self._skip.clear()  # an unclosed <head> or <title> must not swallow the body
        if not self._skip and self._reply_part(tag, attrs):
            return
        if tag in _SKIP:
            self._skip.append(tag)
            return
        if self._skip:
            return
        self._block_tag(tag, opening=True)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._history or self._hidden is not None:
            return
        if not self._skip and tag not in _SKIP:
            self._block_tag(tag, opening=True)

    def _reply_part(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        """Whether this start tag opens a marked quote or signature (then dropped to its end tag) or the original
        (then nothing more is read)."""
        values = {name: (value or "") for name, value in attrs}
        ident = values.get("id", "").strip().lower()
        if ident in _HISTORY_IDS or (tag == "div" and _OUTLOOK_RULE.search(values.get("style", ""))):
            self._history = True
            return True
        classes = set(values.get("class", "").lower().split())
        cite = tag == "blockquote" and values.get("type", "").strip().lower() == "cite"
        if cite or classes & _HIDDEN_CLASSES or ident in _HIDDEN_IDS:
            self._hidden, self._hidden_depth = tag, 1
            return True
        return False

    def handle_endtag(self, tag: str) -> None:
        if self._history:
            return
        if self._hidden is not None:
            if tag == self._hidden:
                self._hidden_depth -= 1
                if not self._hidden_depth:
                    self._hidden = None
                    self._owe_breaks(1)
            return
        if tag in self._skip:
            while self._skip and self._skip.pop() != tag:
                pass
            return
        if self._skip:
            return
        self._block_tag(tag, opening=False)

    def _block_tag(self, tag: str, *, opening: bool) -> None:
        if tag == "br" and opening:
            self._breaks += 1
            self._space = False
        elif tag == "li":
            self._owe_breaks(1)
            self._bullet = opening
        elif tag in _PARAGRAPH:
            self._owe_breaks(2)
            if tag == "pre":
                self._pre = max(0, self._pre + (1 if opening else -1))
            elif tag == "blockquote":
                self._quote = max(0, self._quote + (1 if opening else -1))
        elif tag in _BLOCK:
            self._owe_breaks(1)
        elif tag in _CELL and not opening:
            self._space = True

    def _owe_breaks(self, count: int) -> None:
        self._breaks = max(self._breaks, count)
        self._space = False

    def handle_data(self, data: str) -> None:
        if self._skip or self._hidden is not None or self._history:
            return
        data = data.translate(_INVISIBLE)
        if self._pre:
            for i, piece in enumerate(data.replace("\xa0", " ").split("\n")):
                if i:
                    self._breaks += 1
                if piece:
                    self._write(piece)
            return
        words = _SPACE.split(data)
        for i, word in enumerate(words):
            if i:
                self._space = True
            if word:
                self._write(word)

    def _write(self, word: str) -> None:
        if self._out and self._breaks:
            self._out.append("\n" * self._breaks)
            self._line_start = True
        self._breaks = 0
        if self._line_start:
            prefix = "> " * self._quote + ("- " if self._bullet else "")
            if prefix:
                self._out.append(prefix)
            self._bullet = False
        elif self._space:
            self._out.append(" ")
        self._out.append(word)
        self._space = False
        self._line_start = False

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        # `<![foo]>` that is neither CDATA nor an Outlook conditional raises AssertionError in the stdlib
        # (Python 3.10+); treat it as an ignorable declaration up to its closing bracket instead.
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            match = _MARKED_SECTION_END.search(self.rawdata, i + 3)
            return match.end() if match else -1
