"""Provider codes in plain words: what went wrong and what to do about it.

Adapters put these texts into the `why` of their Results, and the reporter mails them to the sender, so each
text must make sense to a person who has never read a provider's API document. Each adapter module carries the table of
its own codes and words (as `providers.md` lists them) in its registered `ProviderSpec.explain`; this module
holds the generic table (HTTP statuses and transport failures, named as the adapters and `base.py` name them:
`HTTP429`, `ReadTimeout`, ...) and the look-up that tries the provider's table first.

This module is pure data and lookups: it must never do I/O, and its texts must never carry a secret.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from mail2sms.model import Result, Sent
from mail2sms.providers.registry import spec_for

# The transport failures after which a provider that honours an idempotency key is asked again with the same key.
_SAME_KEY_RETRY = ("ReadTimeout", "WriteTimeout", "ReadError", "WriteError", "RemoteProtocolError")


def same_key_words(provider: str, key: str) -> dict[str, str]:
    return {
        name: f"{provider} did not answer properly (the connection failed after the request left: {name}); "
        f"mail2sms asks again with the same {key}, so {provider} sends the SMS at most once"
        for name in _SAME_KEY_RETRY
    }


GENERIC: Mapping[str, str] = {
    "HTTP400": "the provider refused the request as malformed (HTTP 400): check the provider settings",
    "HTTP401": "the provider refused the account's credentials (HTTP 401): check the username, password or "
    "API key",
    "HTTP403": "the provider refused access (HTTP 403): check the credentials and whether this server's IP "
    "address is allowed",
    "HTTP404": "the provider's address was not found (HTTP 404): check the provider's url in the "
    "configuration",
    "HTTP405": "the provider did not accept the request method (HTTP 405): check the provider's url",
    "HTTP429": "the provider asked mail2sms to slow down (HTTP 429): mail2sms tries again after the wait the "
    "provider asked for",
    "HTTP500": "the provider had an internal error while handling the request (HTTP 500); it may or may not "
    "have sent the SMS",
    "HTTP502": "the provider's gateway was unavailable (HTTP 502): mail2sms tries again later",
    "HTTP503": "the provider is temporarily unavailable (HTTP 503): mail2sms tries again later",
    "HTTP504": "the provider's gateway timed out (HTTP 504): mail2sms tries again later",
    "ConnectError": "mail2sms could not connect to the provider, so nothing was sent: it tries again later",
    "ConnectTimeout": "connecting to the provider timed out, so nothing was sent: mail2sms tries again later",
    "PoolTimeout": "no connection to the provider was free in time, so nothing was sent: mail2sms tries "
    "again later",
    "ReadTimeout": "the provider did not answer in time after it received the request; it may have sent the "
    "SMS: check the provider's message log before resending",
    "WriteTimeout": "sending the request to the provider timed out part-way; it may have received it: check "
    "the provider's message log before resending",
    "ReadError": "the connection broke while waiting for the provider's answer; it may have sent the SMS: "
    "check the provider's message log before resending",
    "WriteError": "the connection broke while sending the request; the provider may have received it: check "
    "the provider's message log before resending",
    "RemoteProtocolError": "the provider closed the connection without a proper answer; it may have sent the "
    "SMS: check the provider's message log before resending",
    "URL": "the provider's url in the configuration is not a usable http(s) address, so nothing was sent: "
    "fix the url",
    "UNEXPECTED": "the provider's reply was not one mail2sms understands, so it cannot tell whether the SMS "
    "was sent: check the provider's message log before resending",
}

_HTTP = re.compile(r"^HTTP(\d{3})$")


def explain(provider_type: str, code: str | None) -> str:
    """Plain words for `code` as `provider_type` uses it: the provider's table first, then the generic one."""
    spec = spec_for(provider_type)
    provider = spec.label if spec is not None else provider_type or "the provider"
    if not code:
        return f"{provider} gave no reason: check the provider account's message log"
    own = spec.explain if spec is not None else {}
    if code in own:
        return own[code]
    if code in GENERIC:
        return GENERIC[code]
    m = _HTTP.match(code)
    if m:
        status = int(m.group(1))
        if status >= 500:
            return (f"the provider failed while handling the request (HTTP {status}); it may or may not "
                    "have sent the SMS")
        if status >= 400:
            return f"the provider refused the request (HTTP {status}): check the provider settings"
        if 300 <= status < 400:
            return (f"the provider redirected the request (HTTP {status}): check the provider's url in the "
                    "configuration (https, trailing slash)")
        return f"the provider answered with an unexpected HTTP status {status}"
    if code.endswith(("Timeout", "Error")):
        return (f"the connection to the provider failed ({code}); it may have received the request: check "
                "the provider's message log before resending")
    return f"{provider} answered with code {code}, which mail2sms does not know: see its documentation"


def explained(provider_type: str, result: Result) -> Result:
    """`result` with its `why` replaced by the plain-words text for its code (Sent is returned unchanged)."""
    if isinstance(result, Sent):
        return result
    return dataclasses.replace(result, why=explain(provider_type, result.code))
