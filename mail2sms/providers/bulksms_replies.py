"""BulkSMS's SMS replies (issue 17), read: the JSON API's RECEIVED messages (polled list and webhook) and the
EAPI's `reception/get_inbox`. Pure functions; `bulksms_json.py` and `bulksms.py` make the requests.

What the sources say (BulkSMS's JSON API OpenAPI description and its EAPI pages):
- Confirmed (JSON): `GET messages?filter=…&sortOrder=ASCENDING&limit=N` lists message objects; the filter's
  clauses are `name=value` joined by `&` (URL-encoded as one parameter), `type=RECEIVED` keeps the replies (MO)
  and `id>N` those newer than an id. `limit` is not a promise: fewer may come while more exist. A RECEIVED
  message has `id`, `type`, `from` (the phone), `to`, `body`, `encoding` (TEXT|UNICODE|BINARY) and
  `relatedSentMessageId`: BulkSMS links a reply to "the most recent message sent to" that phone, and only when
  that SMS was sent with `from: {"type": "REPLIABLE"}`. Our stored provider id for the JSON API is that `id`.
  Webhooks POST "an array of messages" of the same shape (a separate webhook per SENT or RECEIVED; it is tested
  with `[]`), and may repeat one: the spool's unique key keeps it once.
- Confirmed (EAPI): `reception/get_inbox/1/1.1` with `last_retrieved_id` (0 the first time) answers
  `0|records to follow|N`, a blank line, then `msg_id|sender|message|received_time|msisdn|referring_batch_id|
  encoding` lines; newlines in the text come as `\\n` and `\\r`; `encoding` is 7bit, 8bit or 16bit (hex, as
  send_sms's `dca=16bit`); `referring_batch_id` is the batch_id send_sms returned (our stored provider id for
  the EAPI), 0 when the message answers nothing; at most 1000 per request; errors are `22|…`, `23|…`, `24|…`,
  `40|…`. Times are in the account profile's zone (`options.timezone`; UTC when not set: assumed).
- Assumed: a RECEIVED message's `submission.date` is when it arrived; an 8bit/BINARY body is data, not text,
  and is skipped.

An entry without its id, a number or a text is skipped, never guessed. This module must never log, and never
put a password into an InboundSms or an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, tzinfo
from typing import Any

from mail2sms.model import InboundSms
from mail2sms.providers import inbound, receipts

JSON_LIMIT = 500  # messages asked per request (BulkSMS's default is 1000)
INBOX_PATH = "reception/get_inbox/1/1.1"
INBOX_LIMIT = 1000  # "The number of records that will be returned from a single request is limited … to 1000"
INBOX_WORDS = {
    "22": "an internal error at BulkSMS",
    "23": "BulkSMS did not accept the username or password",
    "24": "BulkSMS found the request invalid",
    "40": "BulkSMS is temporarily unavailable",
}


# -- JSON API ---------------------------------------------------------------------------------------------------
def json_filter(cursor: str | None) -> str:
    """The `filter` value: RECEIVED messages, newer than the cursor's id when there is one."""
    return "type=RECEIVED" + (f"&id>{cursor}" if cursor and cursor.isdigit() else "")


def json_message(message: Any) -> InboundSms | None:
    """The InboundSms one RECEIVED message object says; None for a SENT one or one without id, number or text."""
    if not isinstance(message, Mapping) or str(message.get("type") or "").upper() != "RECEIVED":
        return None
    if str(message.get("encoding") or "TEXT").upper() == "BINARY":
        return None
    ref = receipts.text_id(message.get("id"))
    number = inbound.sms_number(message.get("from"))
    text = inbound.sms_text(message.get("body"))
    if ref is None or number is None or text is None:
        return None
    submission = message.get("submission")
    when = receipts.epoch(submission.get("date"), UTC) if isinstance(submission, Mapping) else None
    to = message.get("to")
    return InboundSms(provider_ref=ref, number=number, text=text, received_at=when,
                      in_reply_to=receipts.text_id(message.get("relatedSentMessageId")),
                      to=inbound.sms_number(to) or (to.strip()[:32] if isinstance(to, str) and to.strip() else None))


def json_page(status: int, body: bytes, cursor: str | None, secrets: Iterable[str] = ()) -> tuple[
        list[InboundSms], str | None, bool]:
    """(replies, next cursor, more) from a `GET messages` answer; ReplyFetchError when it is trouble.

    The cursor is the largest numeric id in the answer (SENT ones included: they are older or newer alike)."""
    hidden = list(secrets)
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    if not 200 <= status < 300:
        said = ""
        if isinstance(data, Mapping):
            said = ": ".join(str(data[k]) for k in ("title", "detail") if isinstance(data.get(k), str) and data[k])
        raise inbound.http_failure("BulkSMS", status, said, hidden)
    if not isinstance(data, list):
        raise inbound.failure("UNEXPECTED", "BulkSMS's answer to the replies request was not a list of messages; "
                              "mail2sms asks again later", hidden)
    ids = [int(m["id"]) for m in data if isinstance(m, Mapping) and str(m.get("id") or "").isdigit()]
    last = max([*ids, int(cursor)] if cursor and cursor.isdigit() else ids, default=None)
    found = [r for r in (json_message(m) for m in data) if r is not None]
    return found, str(last) if last is not None else cursor, len(data) >= JSON_LIMIT


def json_push(body: bytes) -> list[InboundSms]:
    """The replies in one webhook call: the RECEIVED messages of its JSON array (SENT ones are receipts)."""
    found = [json_message(dict(entry)) for entry in receipts.push_json(body) or []]
    return [r for r in found if r is not None]


# -- EAPI -------------------------------------------------------------------------------------------------------
def _unescape(text: str) -> str:
    """`\\n` and `\\r` back into line breaks (BulkSMS escapes them; a literal backslash is left alone)."""
    out, i = [], 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in ("\\n", "\\r"):
            out.append("\n" if pair == "\\n" else "\r")
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def inbox_row(line: str, zone: tzinfo) -> InboundSms | None:
    """One `msg_id|sender|message|received_time|msisdn|referring_batch_id|encoding` line; None when unreadable.

    The text may itself hold `|`: the fields around it are taken from both ends."""
    fields = line.split("|")
    encoding = fields[-1].strip().lower() if fields and fields[-1].strip().lower() in ("7bit", "8bit", "16bit") \
        else None
    tail = 4 if encoding else 3  # 1.0 answers have no encoding field
    if len(fields) < 3 + tail:
        return None
    ref, sender = fields[0].strip(), fields[1]
    received, msisdn, batch = (f.strip() for f in fields[-tail:][:3])
    raw = "|".join(fields[2:-tail])
    if encoding == "8bit":
        return None
    if encoding == "16bit":
        try:
            raw = bytes.fromhex(raw).decode("utf-16-be")
        except ValueError:
            return None
    else:
        raw = _unescape(raw)
    number = inbound.sms_number(sender)
    text = inbound.sms_text(raw)
    if not ref.isdigit() or number is None or text is None:
        return None
    return InboundSms(provider_ref=ref, number=number, text=text, received_at=receipts.epoch(received, zone),
                      in_reply_to=batch if batch.isdigit() and int(batch) != 0 else None, to=msisdn or None)


def inbox_page(status: int, body: str, cursor: str | None, zone: tzinfo, secrets: Iterable[str] = ()) -> tuple[
        list[InboundSms], str | None, bool]:
    """(replies, next cursor, more) from a `get_inbox` answer; ReplyFetchError when it is trouble."""
    hidden = list(secrets)
    if status != 200:
        raise inbound.http_failure("BulkSMS", status, "", hidden)
    lines = body.splitlines()
    head = [f.strip() for f in lines[0].split("|")] if lines else []
    if not head or not head[0].isdigit():
        raise inbound.failure("UNEXPECTED", "BulkSMS's answer to get_inbox was not one mail2sms understands; it asks "
                              "again later", hidden)
    code = str(int(head[0]))
    if code != "0":
        words = INBOX_WORDS.get(code, f"BulkSMS status code {code}")
        raise inbound.failure(code, f"BulkSMS refused the get_inbox request ({code}: {words}); mail2sms asks again "
                              "later", hidden)
    rows = [line for line in lines[1:] if line.strip()]
    ids = [int(r.split("|", 1)[0]) for r in rows if r.split("|", 1)[0].strip().isdigit()]
    last = max([*ids, int(cursor)] if cursor and cursor.isdigit() else ids, default=None)
    found = [r for r in (inbox_row(line, zone) for line in rows) if r is not None]
    return found, str(last) if last is not None else cursor, len(rows) >= INBOX_LIMIT

