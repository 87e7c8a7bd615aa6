"""The one rule for an envelope address mail2sms accepts, configures or mails: a plain `local@domain`.

Envelope addresses come from the client and end up on SMTP command lines (outcome mail is addressed to the
envelope sender), in headers, in logs and in the spool, so only a plain `local@domain` passes: no CR, LF, NUL,
space or other control character (aiosmtpd 1.4.6 passes a bare CR in `MAIL FROM` through to the handler), no
quoted local part, ASCII only unless the caller allows SMTPUTF8 letters (`utf8=True`). The local part's syntax is
checked by `email-validator`; the domain by RFC 5321's letter-digit-hyphen rule here, because `email-validator`
refuses special-use names such as `sms.localhost` that a LAN or the embedded default uses on purpose.

Used by the SMTP session (MAIL FROM, RCPT TO), the config (report and user addresses) and the reporter (before an
outcome mail is addressed), so it sits below every layer of the flow. Pure: it must never accept an address that
could inject a command or a header.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from email_validator import EmailSyntaxError
from email_validator.syntax import validate_email_local_part

MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3: a path is at most 256 octets including the angle brackets
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def address_problem(address: str, *, utf8: bool = False) -> str | None:
    """Why `address` is not a plain `local@domain` envelope address, or None when it is one.

    `utf8`: letters beyond ASCII may appear (an internationalised address, RFC 6531); control and format
    characters such as a zero-width space never may."""
    if not address:
        return "the address is empty"
    for ch in address:
        if ch in "\r\n\0":
            return "the address contains a line break or NUL"
        if ord(ch) <= 32 or ord(ch) == 127:
            return "the address contains a space or a control character"
        if ord(ch) > 126:
            if not utf8:
                return "the address contains a character that is not ASCII"
            if ch.isspace() or unicodedata.category(ch).startswith("C"):
                return "the address contains a space or a control character"
    if len(address) > MAX_ADDRESS:
        return f"the address is longer than {MAX_ADDRESS} characters"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "the address has no local@domain form"
    try:
        validate_email_local_part(local, allow_smtputf8=utf8, allow_empty_local=False, quoted_local_part=False)
    except EmailSyntaxError as exc:
        return f"the part before the @ is not valid: {exc}"
    if utf8 and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return "the domain is not a valid internationalised host name"
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
