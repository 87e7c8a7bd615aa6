"""Envelope and framing hygiene: which envelope addresses and which DATA byte patterns mail2sms refuses.

Envelope addresses come from the client and end up on SMTP command lines (outcome mail is addressed to the
envelope sender), in headers, in logs and in the spool, so only a plain `local@domain` is accepted: no CR, LF,
NUL, space or other control character (aiosmtpd 1.4.6 passes a bare CR in `MAIL FROM` through to the handler),
no quoted local part, ASCII only (SMTPUTF8 is not offered). The local part's syntax is checked by
`email-validator`; the domain by RFC 5321's letter-digit-hyphen rule here, because `email-validator` refuses
special-use names such as `sms.localhost` that a LAN or the embedded default uses on purpose.

DATA framing: aiosmtpd ends DATA only at `<CRLF>.<CRLF>`, so a smuggled `<LF>.<LF>` can never start a second
transaction here. But a mail that carries one was built to be read differently by another server on its way,
and its "second mail" would become SMS text; `smuggling_problem()` finds such mails so they are refused whole.

This module is pure. It must never accept an address that could inject a command or a header.
"""

from __future__ import annotations

import ipaddress
import re

from email_validator import EmailSyntaxError
from email_validator.syntax import validate_email_local_part

MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3: a path is at most 256 octets including the angle brackets
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")

# A bare CR is a CR not followed by LF; a bare LF is a LF not preceded by CR (RFC 5321 2.3.8).
_BARE = rb"(?:\r(?!\n)|(?<!\r)\n)"
# aiosmtpd removes the transparency dot of a line that starts with "." (RFC 5321 4.5.2), so a smuggled
# "<CRLF>.<LF>" reaches us as "<CRLF><LF>": a line break of any kind followed by a bare one is refused too.
_SMUGGLED = re.compile(_BARE + rb"\.(?:\r\n|\r|\n)|(?:\A|\r\n)" + _BARE)


def address_problem(address: str) -> str | None:
    """Why `address` is not a plain `local@domain` envelope address, or None when it is one."""
    if not address:
        return "the address is empty"
    for ch in address:
        if ch in "\r\n\0":
            return "the address contains a line break or NUL"
        if ord(ch) <= 32 or ord(ch) == 127:
            return "the address contains a space or a control character"
        if ord(ch) > 126:
            return "the address contains a character that is not ASCII"
    if len(address) > MAX_ADDRESS:
        return f"the address is longer than {MAX_ADDRESS} characters"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "the address has no local@domain form"
    try:
        validate_email_local_part(local, allow_smtputf8=False, allow_empty_local=False, quoted_local_part=False)
    except EmailSyntaxError as exc:
        return f"the part before the @ is not valid: {exc}"
    return _domain_problem(domain)


def _domain_problem(domain: str) -> str | None:
    if domain.startswith("[") and domain.endswith("]"):  # RFC 5321 4.1.3 address literal
        literal = domain[1:-1]
        try:
            if literal[:5].lower() == "ipv6:":
                ipaddress.IPv6Address(literal[5:])
            else:
                ipaddress.IPv4Address(literal)
        except ValueError:
            return "the address literal after the @ is not an IP address"
        return None
    name = domain.removesuffix(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return "the domain is not a valid host name (letters, digits and hyphens between dots)"
    return None


def smuggling_problem(content: bytes) -> str | None:
    """Why a DATA content (after aiosmtpd's dot-unstuffing) looks like SMTP smuggling, or None."""
    match = _SMUGGLED.search(content)
    if match is None:
        return None
    return f"bare CR or LF at byte {match.start()}, where a line with a single dot could end the mail early"
