"""Address-format input: the number in an RCPT local part, and Kapow's mail-form credentials in a body.

`parse_local_part()` runs at RCPT time so that a bad number gets its own `550 5.1.1` naming the number, before
any DATA is sent. Local parts are read strictly (no `sms-` prefixes, no tags): an MTA relaying a whole domain
must get a clear refusal for anything that is not a number, not a guess.

`parse_kapow_credentials()` reads Kapow's email-to-SMS form, where the subject is the text and the body holds
the account's username and password. The password never appears in an error message. No I/O.
"""

from __future__ import annotations

import re

from mail2sms.errors import ContentError
from mail2sms.parse.numbers import normalize

_LABELLED = re.compile(r"(username|password)\s*:\s*(.*)", re.IGNORECASE)
_SIGNATURE = re.compile(r"--[ \t]?")
_NEWLINES = re.compile(r"\r\n|\r|\n")


def parse_local_part(local: str, region: str | None) -> str:
    """The E.164 digits (no '+') that an RCPT local part such as '+96550000000' or '0096550000000' names.

    The NumberError from `normalize()` already quotes the local part and says why it is not a number, which
    is exactly what the 550 reply needs; no second wrapping.
    """
    return normalize(local, region)


def parse_kapow_credentials(body: str) -> tuple[str, str] | None:
    """(username, password) from a Kapow mail-form body, or None when the body carries no credentials.

    Either `username: x` and `password: y` lines anywhere, or the username and the password on the first two
    non-blank lines. A body with only one line is an error rather than None: the writer meant to log in, and
    sending on the route's own account instead would be a surprise.
    """
    lines: list[str] = []
    for raw in _NEWLINES.split(body.removeprefix("\ufeff")):
        if _SIGNATURE.fullmatch(raw):
            break
        if raw.strip():
            lines.append(raw.strip())
    labelled: dict[str, str] = {}
    for line in lines:
        match = _LABELLED.fullmatch(line)
        if match:
            labelled.setdefault(match.group(1).lower(), match.group(2).strip())
    if labelled:
        if not labelled.get("username") or not labelled.get("password"):
            missing = "password" if labelled.get("username") else "username"
            raise ContentError(f"the body gives Kapow credentials but no {missing}: line with a value")
        return labelled["username"], labelled["password"]
    if not lines:
        return None
    if len(lines) == 1:
        raise ContentError(
            "the body has one line; Kapow's mail form needs the username on the first line "
            "and the password on the second"
        )
    return lines[0], lines[1]
