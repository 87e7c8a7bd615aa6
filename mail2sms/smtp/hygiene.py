"""Envelope and framing hygiene: which envelope addresses and which DATA byte patterns mail2sms refuses.

Envelope addresses: only a plain ASCII `local@domain` is accepted (SMTPUTF8 is not offered); the rule itself is
`mail2sms.addresses.address_problem`, shared with the config and the reporter.

DATA framing: aiosmtpd ends DATA only at `<CRLF>.<CRLF>`, so a smuggled `<LF>.<LF>` can never start a second
transaction here. But a mail that carries one was built to be read differently by another server on its way,
and its "second mail" would become SMS text; `smuggling_problem()` finds such mails so they are refused whole.

This module is pure. It must never accept an address that could inject a command or a header.
"""

from __future__ import annotations

import re

from mail2sms.addresses import address_problem as address_problem  # the one address rule, re-exported for smtp/

# A bare CR is a CR not followed by LF; a bare LF is a LF not preceded by CR (RFC 5321 2.3.8).
_BARE = rb"(?:\r(?!\n)|(?<!\r)\n)"
# aiosmtpd removes the transparency dot of a line that starts with "." (RFC 5321 4.5.2), so a smuggled
# "<CRLF>.<LF>" reaches us as "<CRLF><LF>": a line break of any kind followed by a bare one is refused too.
_SMUGGLED = re.compile(_BARE + rb"\.(?:\r\n|\r|\n)|(?:\A|\r\n)" + _BARE)


def smuggling_problem(content: bytes) -> str | None:
    """Why a DATA content (after aiosmtpd's dot-unstuffing) looks like SMTP smuggling, or None."""
    match = _SMUGGLED.search(content)
    if match is None:
        return None
    return f"bare CR or LF at byte {match.start()}, where a line with a single dot could end the mail early"
