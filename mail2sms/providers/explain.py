"""Provider codes in plain words: what went wrong and what to do about it.

Adapters put these texts into the `why` of their Results, and the reporter mails them to the sender, so each
text must make sense to a person who has never read a provider's API document. There is one table per provider
type (the provider's own codes and words, as `providers.md` lists them) and one generic table (HTTP statuses
and transport failures, named as the adapters and `base.py` name them: `HTTP429`, `ReadTimeout`, ...).
Every provider type has its table in `TABLES`.

This module is pure data and lookups: it must never do I/O, and its texts must never carry a secret.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from mail2sms.model import Result, Sent

KWTSMS: Mapping[str, str] = {
    "ERR001": "KwtSMS says the API is disabled for this account: enable the API in the KwtSMS account "
    "settings or ask KwtSMS support to enable it",
    "ERR002": "KwtSMS says a required parameter is missing (username, password, sender, mobile, lang or "
    "message): check the provider settings and the mail's fields",
    "ERR003": "the username or password was not accepted by KwtSMS: check the account's API username and "
    "password",
    "ERR004": "the KwtSMS account has no API access: ask KwtSMS to enable API access for it",
    "ERR005": "the KwtSMS account is blocked: contact KwtSMS support",
    "ERR006": "KwtSMS found no valid number in the request: write numbers in international form, digits only "
    "(e.g. 96550000000)",
    "ERR007": "KwtSMS accepts at most 200 numbers per request: send to fewer numbers at once",
    "ERR008": "the sender ID is not registered on the KwtSMS account, or is banned (sender IDs are "
    "case-sensitive): use one of the account's sender IDs exactly as registered",
    "ERR009": "the message text is empty: write the text of the SMS",
    "ERR010": "the KwtSMS account balance is zero: buy credit, then resend",
    "ERR011": "the KwtSMS account balance is too low for this message: buy credit, then resend",
    "ERR012": "the message is longer than KwtSMS's limit of 6 SMS pages: shorten the text",
    "ERR013": "the KwtSMS send queue is full and the message was not taken: mail2sms tries again later",
    "ERR024": "KwtSMS refused the request because the sending IP address is not on the account's allowed "
    "list: add this server's IP address in the KwtSMS account settings",
    "ERR025": "KwtSMS says a number is invalid: write numbers in international form, digits only "
    "(e.g. 96550000000)",
    "ERR026": "the destination country is not activated on the KwtSMS account: ask KwtSMS to activate it",
    "ERR027": "KwtSMS does not accept HTML in the message: send plain text",
    "ERR028": "less than 15 seconds passed since the last SMS to the same number, so KwtSMS did not take "
    "it: mail2sms tries again shortly",
    "ERR019": "KwtSMS found no delivery report for this message",
    "ERR020": "KwtSMS says this message id does not exist",
    "ERR021": "KwtSMS has no delivery report for this message yet: it is asked again later",
    "ERR022": "KwtSMS's delivery reports for this message are not ready yet (they can take 24 hours)",
    "ERR023": "KwtSMS had an unknown error while reading the delivery report",
    "ERR029": "KwtSMS says the message id is not correct",
    "ERR030": "KwtSMS says the message is stuck in its queue with an error: delete it from the queue on "
    "kwtsms.com to recover the credit, then resend",
    "ERR031": "KwtSMS did not accept the language code: use lang 1 (English), 2 (Arabic, Windows-1256), "
    "3 (Arabic, UTF-8) or 4 (Unicode)",
    "ERR032": "KwtSMS flagged the message as spam and refused it: change the text or contact KwtSMS",
    "ERR033": "KwtSMS has no coverage for this number: the number's network cannot be reached through "
    "KwtSMS",
    "ERROR": "KwtSMS refused the request without an error code: check the account, the sender ID and the "
    "numbers, and look at the account's message log on kwtsms.com",
    "TEST": "KwtSMS checked this SMS in test mode (the provider's options.test is on) and sent nothing to the "
    "phone: turn options.test off to send for real",
    "NONE_TAKEN": "KwtSMS answered OK but took none of the numbers, so nothing was sent: check the numbers and "
    "the destination countries activated on the KwtSMS account",
    "PARTIAL": "KwtSMS took fewer numbers than were sent and did not say which, so mail2sms cannot tell whether "
    "this number's SMS was sent: check the KwtSMS message log before resending",
    "UNEXPECTED": "KwtSMS's reply was not one mail2sms understands, so it cannot tell whether the SMS was sent: "
    "check the KwtSMS account's message log before resending",
    "CP1256": "the text has characters that Windows-1256 (KwtSMS lang 2) cannot carry: use lang 3 "
    "(Arabic, UTF-8) or 4 (Unicode)",
    "NUMBER": "the number cannot be sent through KwtSMS: it must be in international form, digits only "
    "(e.g. 96550000000)",
}

KAPOW: Mapping[str, str] = {
    "USERPASS": "the username or password was not accepted by Kapow: check the account's username and "
    "password",
    "NOCREDIT": "the Kapow account has no credit left: top up, then resend",
    "ERROR": "Kapow answered only that an error occurred; the likely causes are an invalid number, a "
    "scheduled time that is malformed, in the past or more than 365 days ahead, or a sender ID (from_id) "
    "that is not enabled on the account: check these, then resend",
    "UNEXPECTED": "Kapow's reply was not one of the answers it documents (OK, USERPASS, NOCREDIT, ERROR), so "
    "mail2sms cannot tell whether the SMS was sent: check the Kapow account's message log before resending",
    "EMPTY": "Kapow answered with an empty reply, so mail2sms cannot tell whether the SMS was sent: check the "
    "Kapow account's message log before resending",
    "IDS": "Kapow answered OK but not with one message id per number, so mail2sms cannot tell which numbers it "
    "took: check the Kapow account's message log before resending",
    "SENDTIME": "the scheduled time is not usable for Kapow (it allows at most 365 days ahead): choose "
    "another time",
    "NUMBER": "the number cannot be sent through Kapow: write it in international form, digits only "
    "(e.g. 447700900123)",
    # chk_status.php answers (delivery states), for delivery reports.
    "D": "Kapow reports the SMS delivered to the phone",
    "B": "Kapow reports the SMS buffered by the network: the phone may be off or out of coverage",
    "S": "Kapow reports the SMS sent to the network, not yet delivered",
    "X": "Kapow reports the SMS failed: the number may be wrong or unreachable",
    "N": "Kapow reports the SMS awaiting delivery",
    "R": "Kapow reports the network retrying delivery",
}

# The transport failures after which a provider that honours an idempotency key is asked again with the same key.
_SAME_KEY_RETRY = ("ReadTimeout", "WriteTimeout", "ReadError", "WriteError", "RemoteProtocolError")


def _same_key_words(provider: str, key: str) -> dict[str, str]:
    return {
        name: f"{provider} did not answer properly (the connection failed after the request left: {name}); "
        f"mail2sms asks again with the same {key}, so {provider} sends the SMS at most once"
        for name in _SAME_KEY_RETRY
    }


BULKSMS: Mapping[str, str] = {
    "0": "BulkSMS accepted the SMS for sending (in progress)",
    "1": "BulkSMS accepted the SMS and scheduled it",
    "22": "BulkSMS had an internal fatal error and did not send the SMS: resend later; if it happens again, "
    "contact BulkSMS support",
    "23": "the username or password was not accepted by BulkSMS: check the account's username and password",
    "24": "BulkSMS refused the request as invalid (data validation failed): check the number, the sender ID "
    "and the provider options (routing_group, concatenation)",
    "25": "the account has no credit left: top up, then resend",
    "26": "BulkSMS's upstream credits were not available, so nothing was sent: mail2sms tries again later",
    "27": "the BulkSMS account's daily quota is used up: resend tomorrow, or ask BulkSMS to raise the quota",
    "28": "BulkSMS's upstream quota was exceeded, so nothing was sent: mail2sms tries again later",
    "40": "BulkSMS was temporarily unavailable: mail2sms tries again with the same duplicate-stop id, so the SMS "
    "is sent at most once",
    "201": "BulkSMS refused the request as too big (maximum batch size exceeded): lower max_recipients (or, for "
    "rows with different texts, options.send_batch_size) for this provider in the configuration",
    "HTTP": "BulkSMS answered with an HTTP error status, which its documentation calls temporary: mail2sms tries "
    "again with the same duplicate-stop id, so the SMS is sent at most once",
    "UNEXPECTED": "BulkSMS's reply was not one mail2sms understands: mail2sms tries again with the same "
    "duplicate-stop id, so the SMS is sent at most once; if this persists, check the provider's url",
    "UNICODE_LENGTH": "the text needs Unicode (16-bit) and is longer than the 70 characters one BulkSMS Unicode "
    "SMS holds (BulkSMS does not join Unicode parts): shorten it or leave out the special characters",
    "CHARSET": "a field of the request has characters that BulkSMS's ISO-8859-1 form cannot carry: use plain "
    "letters in the sender ID and the account name",
    "NUMBER": "the number cannot be sent through BulkSMS: write it in international form, digits only "
    "(e.g. 447700900123)",
    # EAPI statuses that mean the configuration is wrong (providers.md "What the field adds"): one clear refusal.
    **{f"HTTP{status}": f"BulkSMS redirected the request (HTTP {status}), so nothing was sent: the url is not the "
       "right one for this account (BulkSMS accounts live on regional hosts, and http is moved to https): fix the "
       "provider's url" for status in (301, 302, 303, 307, 308)},
    "HTTP401": "BulkSMS refused the request (HTTP 401), so nothing was sent: the account does not belong to this "
    "host (BulkSMS accounts live on regional hosts) or may not use the EAPI: check the provider's url and account, "
    "or use the JSON API (options.api = \"json\")",
    "HTTP404": "BulkSMS does not know this address (HTTP 404), so nothing was sent: the url is wrong or names an "
    "EAPI version BulkSMS removed: check the provider's url, or use the JSON API (options.api = \"json\")",
    "KEY_EXPIRED": "BulkSMS's answer to an attempt more than 2 hours ago was unclear, and BulkSMS remembers the "
    "duplicate-stop id only a few hours, so asking again could send the SMS twice: mail2sms stopped. The SMS may "
    "have been sent: check the BulkSMS message log before resending",
    # JSON API v1 (providers/bulksms_json.py)
    "JSON_KEY_EXPIRED": "BulkSMS's answer to an attempt more than 6 hours ago was unclear, and BulkSMS remembers "
    "the deduplication-id only about 12 hours, so asking again could send the SMS twice: mail2sms stopped. The SMS "
    "may have been sent: check the BulkSMS message log before resending",
    "JSON_REDIRECT": "BulkSMS redirected the request, so nothing was sent: the url is not the JSON API's "
    "(https://api.bulksms.com/v1/; http is moved to https): fix the provider's url",
    "UNAUTHORIZED": "BulkSMS did not accept the credentials (HTTP 401), so nothing was sent: check the username and "
    "password, or the API token id and secret, in the provider settings",
    "NOT_FOUND": "BulkSMS does not know this address (HTTP 404), so nothing was sent: check the provider's url (the "
    "JSON API is https://api.bulksms.com/v1/; an EAPI url needs options.api = \"eapi\")",
    "INSUFFICIENT_CREDITS": "the BulkSMS account has not enough credit for this request: top up, then resend",
    "FORBIDDEN": "BulkSMS refused the request (HTTP 403): the account may lack credit, or the right to use this "
    "sender or feature: see BulkSMS's words, fix it, then resend",
    "BAD_REQUEST": "BulkSMS refused the request as invalid (HTTP 400): check the number, the sender ID and the "
    "provider options against BulkSMS's words",
    "JSON_5XX": "BulkSMS had a server error: mail2sms tries again with the same deduplication-id, so the SMS is "
    "sent at most once",
    "JSON_UNEXPECTED": "BulkSMS's reply was not one mail2sms understands: mail2sms tries again with the same "
    "deduplication-id, so the SMS is sent at most once; if this persists, check the provider's url",
    "MISSING": "BulkSMS took the request, but its answer has no message for this number, so mail2sms cannot tell "
    "whether the SMS was sent: check the BulkSMS message log before resending",
    "STATUS_UNKNOWN": "BulkSMS answered with no clear status for this message, so mail2sms cannot tell whether the "
    "SMS was sent: check the BulkSMS message log before resending",
    "FAILED": "BulkSMS refused the SMS for this number (FAILED): check the number, then resend",
    "FAILED.EXPIRED": "BulkSMS reports the SMS failed: it expired before it could be delivered",
    "FAILED.HANDSET_ERROR": "BulkSMS reports the SMS failed because of a problem with the phone (e.g. its message "
    "storage is full)",
    "FAILED.BLOCKED": "BulkSMS refused the SMS: the account is blocked from sending to this number (e.g. the "
    "recipient replied STOP)",
    "FAILED.NOT_SENT": "BulkSMS did not try to send the SMS (e.g. it has no route to this number): check the number",
    **_same_key_words("BulkSMS", "duplicate-stop id"),
}

KOBOMOBILE: Mapping[str, str] = {
    "sent": "KoboMobile accepted the SMS for sending",
    "error_param": "KoboMobile says a parameter is missing or incomplete (user, pass, from, to or msg): check the "
    "sender ID, the numbers and the provider settings",
    "error_credit": "the KoboMobile account has not enough credit: top up, then resend",
    "error_billing": "KoboMobile could not debit the account, usually a temporary problem: mail2sms tries again "
    "later with the same message id",
    "error_gw": "KoboMobile's gateway was down, busy or not responding: mail2sms tries again later with the same "
    "message id",
    "error_user": "KoboMobile says the user is invalid or suspended: check the username and password, or contact "
    "KoboMobile",
    "error_limit": "KoboMobile accepts at most 500 numbers per request: lower max_recipients for this provider",
    "UNEXPECTED": "KoboMobile's reply was neither `sent`, nor its message ids, nor one of its error words, so "
    "mail2sms cannot tell whether the SMS was sent: check the KoboMobile account's message log before resending",
    "REFUSED": "KoboMobile answered that the SMS was not sent, without one of its documented error words: read "
    "its own words, correct what they name, then resend",
    "CONFLICT": "KoboMobile's reply says both that the SMS was sent and that it failed, so mail2sms cannot tell "
    "whether it was sent: check the KoboMobile account's message log before resending",
    "NO_ID": "KoboMobile answered with message ids but none for this number, so mail2sms cannot tell whether this "
    "number's SMS was sent: check the KoboMobile account's message log before resending",
    "FLASH_UNICODE": "KoboMobile sends flash SMS only in the plain GSM alphabet, and this text needs Unicode: "
    "leave out the special characters, or send it as a normal SMS",
    "NUMBER": "the number cannot be sent through KoboMobile: write it in international form, digits only "
    "(e.g. 2348030000000)",
    **_same_key_words("KoboMobile", "message id"),
}

CELLCAST: Mapping[str, str] = {
    "SUCCESS": "Cellcast queued the SMS for sending",
    "AUTH_FAILED": "Cellcast did not accept the API key (APPKEY): check the key in the provider settings",
    "FIELD_INVALID": "Cellcast refused a field of the request as invalid (a number, the sender ID, the text or the "
    "scheduled time): check them, then resend",
    "OVER_LIMIT": "more than the allowed requests per second reached Cellcast (15 per second), so it did not take "
    "the message: mail2sms tries again after the wait Cellcast asks for",
    "NOT_QUEUED": "Cellcast answered the request but did not queue a message for this number, so it was not "
    "sent (Cellcast sends to Australian mobile numbers, +61 4…): check the number",
    "PARTLY_QUEUED": "Cellcast said it queued only some of the request's numbers without saying which, so "
    "mail2sms cannot tell whether this number's SMS was sent: check the Cellcast account's message log before "
    "resending",
    "UNEXPECTED": "Cellcast's reply was not one mail2sms understands, so it cannot tell whether the SMS was sent: "
    "check the Cellcast account's message log before resending",
    "NUMBER": "the number cannot be sent through Cellcast: write it in international form (e.g. +61400000000)",
}

OUTBOX: Mapping[str, str] = {
    "OUTBOX": "mail2sms could not write the outbox file: check that its folder exists, is writable and has "
    "free space; mail2sms tries again later",
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

TABLES: dict[str, Mapping[str, str]] = {
    "kwtsms": KWTSMS,
    "kapow": KAPOW,
    "bulksms": BULKSMS,
    "kobomobile": KOBOMOBILE,
    "cellcast": CELLCAST,
    "outbox": OUTBOX,
}

PROVIDER_NAMES: dict[str, str] = {
    "kwtsms": "KwtSMS",
    "kapow": "Kapow",
    "bulksms": "BulkSMS",
    "kobomobile": "KoboMobile",
    "cellcast": "Cellcast",
    "outbox": "the outbox",
}

_HTTP = re.compile(r"^HTTP(\d{3})$")


def explain(provider_type: str, code: str | None) -> str:
    """Plain words for `code` as `provider_type` uses it: the provider's table first, then the generic one."""
    provider = PROVIDER_NAMES.get(provider_type, provider_type or "the provider")
    if not code:
        return f"{provider} gave no reason: check the provider account's message log"
    own = TABLES.get(provider_type, {})
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
