"""Which Python codec a declared charset label means: the one table the MIME reader and the CSV reader share.

A mail's text part and a CSV attachment both arrive as bytes with a charset label written by whatever sent them.
Both readers fall back the same way, so a label means the same thing wherever it is written. Pure look-ups: it
must never pick a codec that is not a charset (a label such as `unicode_escape` or `idna` would turn text into
something else) and never raise for a bad label.
"""

from __future__ import annotations

import codecs

# Labels that in practice mean Windows-1252: the WHATWG Encoding Standard maps them so, and mail clients send
# Windows "smart quotes" under them. Windows-1252 reads every ISO-8859-1 byte but C1 controls the same.
LATIN1_LABELS = frozenset({"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "us-ascii", "ascii"})
# Codecs Python knows that are not charsets: a header or a CSV's declared charset must never pick them.
NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"})


def charset_codec(label: str) -> str | None:
    """The codec name for a declared charset `label` (lower-cased, unquoted), or None when it names none or
    names a codec that is not a charset ('unicode_escape', 'idna', 'rot13')."""
    if not label:
        return None
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):  # ValueError: a NUL in the label
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in NOT_CHARSETS:
        return None
    return info.name
