"""Cellcast's SMS replies (issue 17), read: the `get-responses` list, the inbound webhook, and the answer to
`inbound-read-bulk`. Pure functions; `providers/cellcast.py` makes the requests.

What the sources say (Cellcast's support pages "Get Responses" and "Inbound Webhook", and a client library's v3
reference that agrees with them):
- Confirmed: `GET get-responses?page=N&type=sms` (header `APPKEY`) answers `{"meta": {"code": 200, "status":
  "SUCCESS"}, "msg": "You have N response(s)", "data": {"page": {"count", "number"}, "total": "N", "responses":
  [{"from": "+614…", "body", "received_at": "Y-m-d H:M:S", "custom_string", "original_body",
  "original_message_id", "message_id", "subaccount_id"?}]}}`; 25 per page, `page.count` is the number of pages.
  `original_message_id` is the `message_id` `send-sms` gave for the SMS it answers (our stored provider id);
  `message_id` is the reply's own id. No reply at all is an error answer: HTTP 400 with `meta.status`
  `NOT_FOUND` ("No Response are available!") — read here as an empty page, never as trouble.
- Confirmed: the inbound webhook POSTs one JSON object `{from, body, received_at, message_id, custom_string, type
  ("SMS"|"MMS"), original_message_id?, original_body?}` to the URL set in the Cellcast portal.
- Seen in one client's reference only: `POST inbound-read-bulk {"message_id": [ids]}` and `POST inbound-read
  {"message_id": id}` mark replies read ("Inbound messages have been marked as read.").
- Assumed: `get-responses` lists the replies not yet marked read (why else a "mark read" call), oldest first;
  `received_at` is in the account's zone (`options.timezone`, default Australia/Sydney); a national `04…` number
  is Australian. Cellcast's newer platform posts `{"_id", "type": "receive", "message", "sender", "receiver"}`
  to its receive webhook: read too, in case an account is moved.

An entry without its own id, a number or a text is skipped, never guessed. MMS replies are skipped (a picture is
not an SMS text). This module must never log, and never put the key into an InboundSms or an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import tzinfo
from typing import Any

from mail2sms.model import InboundSms
from mail2sms.providers import inbound, receipts

PAGE_SIZE = 25  # "25 responses will be returned per page"
RESPONSES_PATH = "get-responses"
READ_BULK_PATH = "inbound-read-bulk"
READ_ONE_PATH = "inbound-read"
READ_CHUNK = 100  # ids per inbound-read-bulk request (Cellcast names no limit; a page holds 25)
EMPTY_WORD = "NOT_FOUND"  # "No Response are available!"
_WORD = re.compile(r"^[A-Z][A-Z_]{2,40}$")
_NATIONAL_AU = re.compile(r"^0[2-9]\d{8}$")


def status_word(data: Any) -> str | None:
    """Cellcast's status word (`meta.status`, or the seed's `error.code`), upper-cased, or None."""
    for path in (("meta", "status"), ("error", "code"), ("status",)):
        value: Any = data
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, str) and _WORD.match(value.strip().upper()):
            return value.strip().upper()
    return None


def _said(data: Any, body: str) -> str:
    """Cellcast's own words from an answer (`msg`, `error.description`), or the start of a non-JSON body."""
    if isinstance(data, Mapping):
        error = data.get("error")
        for value in (data.get("msg"), data.get("message"), error.get("description") if isinstance(error, Mapping)
                      else None):
            if isinstance(value, str) and value.strip():
                return value
        return ""
    return body[:200]


def reply_number(value: Any) -> str | None:
    """The phone a Cellcast reply came from as E.164 digits: `+614…`, `614…`, or Australian national `04…`."""
    text = re.sub(r"[\s\-.()]", "", str(value or ""))
    if _NATIONAL_AU.match(text):
        text = "61" + text[1:]
    return inbound.sms_number(text)


def reply_entry(entry: Any, zone: tzinfo) -> InboundSms | None:
    """The InboundSms one `responses` entry or webhook object says; None when its id, number or text is missing."""
    if not isinstance(entry, Mapping):
        return None
    if str(entry.get("type") or "").strip().lower() == "mms":
        return None
    newer = str(entry.get("type") or "").strip().lower() == "receive"  # Cellcast's newer platform's webhook
    ref = receipts.text_id(entry.get("_id") if newer else entry.get("message_id"))
    number = reply_number(entry.get("sender") if newer else entry.get("from"))
    text = inbound.sms_text(entry.get("message") if newer else entry.get("body"))
    if ref is None or number is None or text is None:
        return None
    link = receipts.text_id(entry.get("original_message_id"))
    to = reply_number(entry.get("receiver")) if newer else None
    return InboundSms(provider_ref=ref, number=number, text=text, received_at=receipts.epoch(entry.get(
        "received_at"), zone), in_reply_to=link, to=to)


def responses_page(
    status: int, body: str, zone: tzinfo, secrets: Iterable[str] = ()
) -> tuple[list[InboundSms], int | None, int | None]:
    """(replies, page number, page count) from a `get-responses` answer; ReplyFetchError when it is trouble.

    `NOT_FOUND` with HTTP 200 or 400 is Cellcast's way of saying there is no reply: an empty page."""
    hidden = list(secrets)
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    word = status_word(data)
    said = _said(data, body)
    if word == EMPTY_WORD and status in (200, 400):
        return [], None, None
    if word == "OVER_LIMIT" or status == 429:
        raise inbound.failure("OVER_LIMIT", "more than 15 requests per second reached Cellcast, so it did not "
                              "list the replies; mail2sms asks again later", hidden)
    if word == "AUTH_FAILED":
        raise inbound.failure("AUTH_FAILED", "Cellcast did not accept the API key (APPKEY) when asked for SMS "
                              "replies: check the key in the provider settings", hidden)
    if not 200 <= status < 300:
        raise inbound.http_failure("Cellcast", status, said, hidden)
    if word is not None and word != "SUCCESS":
        raise inbound.failure(word, f'Cellcast refused the replies request ({word}: "{said[:200]}"); mail2sms asks '
                              "again later", hidden)
    block = data.get("data") if isinstance(data, Mapping) else None
    entries = block.get("responses") if isinstance(block, Mapping) else None
    empty_list = isinstance(block, list) and not block
    if empty_list or (isinstance(block, Mapping) and entries is None and _int(block.get("total")) == 0):
        return [], None, None  # an empty `data` (as error answers have) or a total of 0: nothing to read
    if word != "SUCCESS" or not isinstance(entries, list):
        raise inbound.failure("UNEXPECTED", "Cellcast's answer to the replies request was not the list of "
                              "responses mail2sms expects; it asks again later", hidden)
    page = block.get("page") if isinstance(block, Mapping) else None
    number = _int(page.get("number")) if isinstance(page, Mapping) else None
    count = _int(page.get("count")) if isinstance(page, Mapping) else None
    found = [r for r in (reply_entry(e, zone) for e in entries) if r is not None]
    return found, number, count


def _int(value: Any) -> int | None:
    """Cellcast writes numbers as numbers or as strings (`"total": "1"`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value or "").strip()
    return int(text) if text.isdigit() else None


def reply_push(body: bytes, zone: tzinfo) -> list[InboundSms]:
    """The replies in one inbound webhook call (one object, or an array of them); [] when unreadable or too big.

    A delivery-report callback on the same URL (`message_id`, `status`, no `from`/`body`) yields none."""
    found = [reply_entry(entry, zone) for entry in receipts.push_json(body) or []]
    return [r for r in found if r is not None]


def read_answer(status: int, body: str, secrets: Iterable[str] = ()) -> None:
    """Nothing when Cellcast marked the replies read; ReplyFetchError otherwise."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    word = status_word(data)
    if 200 <= status < 300 and word in (None, "SUCCESS"):
        return
    if not 200 <= status < 300:
        raise inbound.http_failure("Cellcast", status, _said(data, body), secrets)
    raise inbound.failure(word or "UNEXPECTED", "Cellcast did not confirm that the replies were marked read; they "
                          "are fetched again and kept once", secrets)
