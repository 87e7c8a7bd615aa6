"""SMS replies, provider side (issue 17): the pure parsers of Cellcast's `get-responses` and inbound webhook,
BulkSMS's RECEIVED messages (JSON list and webhook) and EAPI `get_inbox`, on the answers those providers give —
ugly ones included — and the config rule that a sender ID cannot go with BulkSMS's `repliable`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from mail2sms.config import parse
from mail2sms.errors import ConfigError
from mail2sms.model import InboundSms
from mail2sms.providers import bulksms_replies, cellcast_replies
from mail2sms.providers.bulksms_json import receipt_push as bulksms_receipt_push
from mail2sms.providers.cellcast import receipt_push as cellcast_receipt_push
from mail2sms.providers.replies import ReplyFetchError

SYDNEY = ZoneInfo("Australia/Sydney")
SECRET = "s3cr3t-key-42"


def cellcast_answer(*responses: dict[str, object], count: int = 1, number: int = 1) -> str:
    return json.dumps({"meta": {"code": 200, "status": "SUCCESS"}, "msg": f"You have {len(responses)} response(s)",
                       "data": {"page": {"count": count, "number": number}, "total": str(len(responses)),
                                "responses": list(responses)}})


def cellcast_response(ref: str = "5000000001", frm: str = "+61412345678", body: str = "ACK",
                      original: str = "9ECD7AEC-C92B-B5F4-8EC8-278F028FEB8B") -> dict[str, object]:
    return {"from": frm, "body": body, "received_at": "2024-09-18 07:15:36", "custom_string": "",
            "original_body": "Server room door open", "original_message_id": original, "message_id": ref}


# == Cellcast =======================================================================================================
def test_cellcast_page_reads_link_number_text_and_time() -> None:
    """A documented page: the reply's own id, the SMS it answers, the number as digits, the text, Sydney time."""
    found, number, count = cellcast_replies.responses_page(200, cellcast_answer(cellcast_response(), count=3),
                                                           SYDNEY)
    when = datetime(2024, 9, 18, 7, 15, 36, tzinfo=SYDNEY).timestamp()
    assert found == [InboundSms("5000000001", "61412345678", "ACK", when, "9ECD7AEC-C92B-B5F4-8EC8-278F028FEB8B")]
    assert (number, count) == (1, 3)


def test_cellcast_no_response_is_an_empty_page_not_trouble() -> None:
    """Cellcast says "no replies" with HTTP 400 NOT_FOUND: read as an empty page."""
    body = json.dumps({"meta": {"code": 400, "status": "NOT_FOUND"}, "msg": "No Response are available!", "data": []})
    assert cellcast_replies.responses_page(400, body, SYDNEY) == ([], None, None)


def test_cellcast_skips_entries_without_id_number_or_text_and_mms() -> None:
    """Entries missing their id, a number or a text, and MMS replies, are skipped, never guessed."""
    entries = [cellcast_response(ref=""), cellcast_response(frm="Optus"), cellcast_response(body="  "),
               {**cellcast_response(ref="7"), "type": "MMS"}, cellcast_response(ref="8", original="")]
    found, _, _ = cellcast_replies.responses_page(200, cellcast_answer(*entries), SYDNEY)
    assert [(r.provider_ref, r.in_reply_to) for r in found] == [("8", None)]


def test_cellcast_national_number_is_read_as_australian() -> None:
    """A national 04… number becomes 614…; a number with 00 loses it."""
    assert cellcast_replies.reply_number("0412 345 678") == "61412345678"
    assert cellcast_replies.reply_number("0061412345678") == "61412345678"
    assert cellcast_replies.reply_number("SHOP") is None


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, {"meta": {"code": 401, "status": "AUTH_FAILED"}, "msg": "APPKEY you have provided is invalid"},
         "AUTH_FAILED"),
        (429, {"error": {"code": "OVER_LIMIT", "description": "Too many"}}, "OVER_LIMIT"),
        (500, "<html>Internal Server Error</html>", "HTTP500"),
        (200, {"meta": {"code": 200, "status": "SUCCESS"}, "data": {"items": []}}, "UNEXPECTED"),
        (200, "Queued", "UNEXPECTED"),
        (400, {"meta": {"code": 400, "status": "FIELD_INVALID"}, "msg": f"bad key {SECRET}"}, "HTTP400"),
    ],
)
def test_cellcast_trouble_is_a_fetch_error_without_the_key(status: int, body: object, code: str) -> None:
    """Errors (in JSON or prose, 4xx or 5xx, or a SUCCESS without responses) raise ReplyFetchError, key blanked."""
    text = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(ReplyFetchError) as caught:
        cellcast_replies.responses_page(status, text, SYDNEY, [SECRET])
    assert caught.value.code == code
    assert SECRET not in caught.value.why
    assert caught.value.why


def test_cellcast_push_reads_the_inbound_webhook_and_ignores_dlrs() -> None:
    """The inbound webhook object is a reply; a DLR callback on the same URL is not, and not the other way round."""
    inbound = json.dumps({**cellcast_response(ref="5000000009"), "type": "SMS"}).encode()
    dlr = json.dumps([{"message_id": "ABC", "status": "Delivered", "recipient": "61412345678"}]).encode()
    assert [r.provider_ref for r in cellcast_replies.reply_push(inbound, SYDNEY)] == ["5000000009"]
    assert cellcast_replies.reply_push(dlr, SYDNEY) == []
    assert cellcast_receipt_push("POST", "", inbound, "application/json") == []
    assert [r.provider_id for r in cellcast_receipt_push("POST", "", dlr, "application/json")] == ["ABC"]


def test_cellcast_push_reads_the_newer_platform_and_refuses_garbage() -> None:
    """Cellcast's newer receive webhook (`_id`, `sender`, `message`) is read; non-JSON and status pushes are not."""
    newer = {"_id": "66b5b93b1e2c012dfe964000", "status": "received", "type": "receive",
             "message": "This is reply message", "sender": "+61400000000", "receiver": "+61400000001"}
    found = cellcast_replies.reply_push(json.dumps(newer).encode(), SYDNEY)
    assert [(r.provider_ref, r.number, r.text, r.to) for r in found] == [
        ("66b5b93b1e2c012dfe964000", "61400000000", "This is reply message", "61400000001")]
    assert cellcast_replies.reply_push(b"from=+61400000000&body=hi", SYDNEY) == []
    assert cellcast_replies.reply_push(json.dumps({**newer, "type": "send"}).encode(), SYDNEY) == []


def test_cellcast_mark_read_answer() -> None:
    """SUCCESS marks read; an error status or word is a ReplyFetchError."""
    ok = json.dumps({"meta": {"code": 200, "status": "SUCCESS"}, "msg": "Inbound messages have been marked as read."})
    cellcast_replies.read_answer(200, ok)
    with pytest.raises(ReplyFetchError):
        cellcast_replies.read_answer(400, json.dumps({"meta": {"status": "FIELD_INVALID"}, "msg": "bad"}))
    with pytest.raises(ReplyFetchError):
        cellcast_replies.read_answer(200, json.dumps({"meta": {"status": "FAILED"}}))


# == BulkSMS JSON ===================================================================================================
def received(ref: str, frm: str = "+27831234567", body: str = "ACK", related: str | None = "1000000001",
             kind: str = "RECEIVED", encoding: str = "TEXT") -> dict[str, object]:
    return {"id": ref, "type": kind, "from": frm, "to": "+27000000000", "body": body, "encoding": encoding,
            "submission": {"id": "2-1", "date": "2024-09-18T07:15:36+02:00"},
            "status": {"id": "RECEIVED", "type": "RECEIVED"}, "relatedSentMessageId": related}


def test_bulksms_json_filter_and_cursor() -> None:
    """The filter asks RECEIVED messages after the cursor; the next cursor is the largest id in the answer."""
    assert bulksms_replies.json_filter(None) == "type=RECEIVED"
    assert bulksms_replies.json_filter("1000000005") == "type=RECEIVED&id>1000000005"
    body = json.dumps([received("1000000007"), received("1000000006", related=None)]).encode()
    found, cursor, more = bulksms_replies.json_page(200, body, "1000000005")
    assert cursor == "1000000007"
    assert not more
    when = datetime(2024, 9, 18, 5, 15, 36, tzinfo=UTC).timestamp()
    assert found[0] == InboundSms("1000000007", "27831234567", "ACK", when, "1000000001", "27000000000")
    assert found[1].in_reply_to is None


def test_bulksms_json_empty_list_keeps_the_cursor_and_skips_sent_binary_and_blank() -> None:
    """`[]` keeps the cursor; SENT, BINARY and textless entries are skipped (their ids still move the cursor)."""
    assert bulksms_replies.json_page(200, b"[]", "42") == ([], "42", False)
    body = json.dumps([received("50", kind="SENT"), received("51", encoding="BINARY"), received("52", body=""),
                       received("53", frm="")]).encode()
    assert bulksms_replies.json_page(200, body, "42") == ([], "53", False)


def test_bulksms_json_full_page_says_more() -> None:
    """A page as long as the limit says more may follow."""
    body = json.dumps([received(str(i)) for i in range(1, bulksms_replies.JSON_LIMIT + 1)]).encode()
    _, cursor, more = bulksms_replies.json_page(200, body, None)
    assert (cursor, more) == (str(bulksms_replies.JSON_LIMIT), True)


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, b'{"type":"https://developer.bulksms.com/json/v1/errors#authentication-failed","title":"Unauthorized",'
              b'"status":401}', "HTTP401"),
        (400, b'{"type":"x#bad-request","title":"Bad Request","status":400,"detail":"Invalid filter"}', "HTTP400"),
        (503, b"Service Unavailable", "HTTP503"),
        (200, b'{"id":"1"}', "UNEXPECTED"),
        (200, b"<html>", "UNEXPECTED"),
    ],
)
def test_bulksms_json_trouble_is_a_fetch_error(status: int, body: bytes, code: str) -> None:
    """Problem JSON, prose, 5xx and a non-list answer raise ReplyFetchError with plain words."""
    with pytest.raises(ReplyFetchError) as caught:
        bulksms_replies.json_page(status, body, "1")
    assert caught.value.code == code
    assert caught.value.why


def test_bulksms_webhook_replies_and_receipts_are_told_apart() -> None:
    """A webhook array with a SENT status update and a RECEIVED reply: one receipt, one reply."""
    sent = {"id": "1000000001", "type": "SENT", "to": "+27831234567", "status": {"type": "DELIVERED"}}
    body = json.dumps([sent, received("1000000009")]).encode()
    assert [r.provider_ref for r in bulksms_replies.json_push(body)] == ["1000000009"]
    assert [r.provider_id for r in bulksms_receipt_push("POST", "", body, "application/json")] == ["1000000001"]
    assert bulksms_replies.json_push(b"[]") == []


# == BulkSMS EAPI ===================================================================================================
def test_eapi_inbox_rows_link_escape_and_16bit() -> None:
    """Rows give id, number, text (\\n unescaped, `|` inside kept, 16-bit hex decoded), time, link (0 = none)."""
    body = ("0|records to follow|3\n\n"
            "19|4412312345|Hi there\\nsee you|2011-01-20 16:06:40|44771234567|71070172|7bit\n"
            "20|4412312346|" + "Привет".encode("utf-16-be").hex() + "|2011-01-20 16:07:35|44771234568|0|16bit\n"
            "21|4412312399|a|b|2011-01-20 16:08:00|44771234568|0|7bit\n")
    found, cursor, more = bulksms_replies.inbox_page(200, body, "18", UTC)
    assert [(r.provider_ref, r.number, r.text, r.in_reply_to, r.to) for r in found] == [
        ("19", "4412312345", "Hi there\nsee you", "71070172", "44771234567"),
        ("20", "4412312346", "Привет", None, "44771234568"),
        ("21", "4412312399", "a|b", None, "44771234568"),
    ]
    assert found[0].received_at == datetime(2011, 1, 20, 16, 6, 40, tzinfo=UTC).timestamp()
    assert (cursor, more) == ("21", False)


def test_eapi_inbox_old_format_empty_and_skipped_rows() -> None:
    """The 1.0 layout (no encoding) reads; no rows keeps the cursor; 8bit, bad hex and textless rows are skipped."""
    old = "0|records to follow|1\n19|4412312345|Hi there|2004-01-20 16:06:40|44771234567|0\n"
    assert [r.text for r in bulksms_replies.inbox_page(200, old, None, UTC)[0]] == ["Hi there"]
    assert bulksms_replies.inbox_page(200, "0|records to follow|0\n\n", "7", UTC) == ([], "7", False)
    odd = ("0|records to follow|3\n\n30|4412312345|00ff|2011-01-20 16:06:40|1|0|8bit\n"
           "31|4412312345|zz|2011-01-20 16:06:40|1|0|16bit\n32|4412312345||2011-01-20 16:06:40|1|0|7bit\n")
    assert bulksms_replies.inbox_page(200, odd, "7", UTC) == ([], "32", False)


@pytest.mark.parametrize(("status", "body", "code"), [
    (200, "23|invalid credentials|", "23"), (200, "40|TEMPORARILY_UNAVAILABLE", "40"),
    (404, "Not Found", "HTTP404"), (200, "<html>maintenance</html>", "UNEXPECTED"), (200, "", "UNEXPECTED"),
])
def test_eapi_inbox_trouble_is_a_fetch_error(status: int, body: str, code: str) -> None:
    """Error lines, HTTP errors and unreadable answers raise ReplyFetchError naming the code."""
    with pytest.raises(ReplyFetchError) as caught:
        bulksms_replies.inbox_page(status, body, "1", UTC)
    assert caught.value.code == code
    assert caught.value.why


# == repliable and a sender ID ======================================================================================
def bulksms_toml(provider_sender: str | None, route_sender: str | None, repliable: bool) -> str:
    provider = f'sender = "{provider_sender}"\n' if provider_sender else ""
    route = f'sender = "{route_sender}"\n' if route_sender else ""
    return (f'[providers.bulk]\ntype = "bulksms"\nusername = "u"\npassword = "p"\n{provider}'
            f"options = {{ repliable = {str(repliable).lower()} }}\n\n"
            f'[[routes]]\nmatch = "*@sms.example.org"\nformat = "address"\nprovider = "bulk"\n{route}')


@pytest.mark.parametrize(("provider_sender", "route_sender", "key"), [
    ("Alarm", None, "providers.bulk.sender"), (None, "Alarm", "routes[0].sender"),
])
def test_repliable_with_a_sender_is_a_config_error(provider_sender: str | None, route_sender: str | None,
                                                   key: str) -> None:
    """`options.repliable = true` with a sender ID on the provider or a route is refused naming the key."""
    with pytest.raises(ConfigError) as caught:
        parse(bulksms_toml(provider_sender, route_sender, True))
    assert [p.split(":")[0] for p in caught.value.problems] == [key]
    assert "options.repliable = true" in caught.value.problems[0]


def test_a_sender_without_repliable_is_fine() -> None:
    """Without repliable a sender ID is allowed (replies are still polled)."""
    config = parse(bulksms_toml("Alarm", "Alarm", False))
    assert config.providers["bulk"].sender == "Alarm"
