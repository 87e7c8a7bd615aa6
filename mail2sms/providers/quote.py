"""A provider's own words, made safe to quote in a Result's `why` and so in the outcome mail.

A provider's answer often says more than its code (`"msg": "Invalid number"`, `"Message not sent"`); the sender
should read those words next to mail2sms's explanation. `quote()` makes them one printable line of bounded length
with the request's secrets blanked; `said()` wraps them as `. Cellcast's own words: "…"`, to follow an explanation.

Pure: no I/O. It must never return a secret it was given, even in part (secrets are blanked before the text is
shortened).
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_CHARS = 160


def quote(text: object, secrets: Iterable[str] = ()) -> str:
    """`text` on one line, control characters removed, `secrets` blanked, at most MAX_CHARS characters."""
    value = " ".join(str(text).split())
    value = "".join(ch for ch in value if ch.isprintable())
    for secret in secrets:
        if secret:
            value = value.replace(secret, "***")
    if len(value) > MAX_CHARS:
        value = value[: MAX_CHARS - 1].rstrip() + "…"
    return value


def said(provider: str, *texts: object, secrets: Iterable[str] = ()) -> str:
    """`. <provider>'s own words: "a"; "b"` for the non-empty texts, or "" when there are none."""
    hidden = [s for s in secrets if s]
    quoted = [q for q in (quote(t, hidden) for t in texts if t is not None) if q]
    unique = list(dict.fromkeys(quoted))
    if not unique:
        return ""
    return f". {provider}'s own words: " + "; ".join(f'"{q}"' for q in unique)
