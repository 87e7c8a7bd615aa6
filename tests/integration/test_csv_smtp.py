"""CSV Email2SMS end to end: smtplib → mail2sms (csv routes) → fake KwtSMS / Kapow over HTTP → results.csv back."""

from __future__ import annotations

import codecs
import csv
import io
import smtplib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mail2sms.smtp import replies
from tests.fakes.kapow import FakeKapow
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import (
    ThreadServer,
    message,
    report_json,
    report_text,
    reports,
    send,
    thread_server,
    wait_until,
    write_config,
)

CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{kwt}"
username = "kwtuser"
password = "kwt-secret"
sender = "KWT-MESSAGE"
rate = 1000

[providers.kapow]
type = "kapow"
url = "{kapow}"
username = "kapowuser"
password = "kapow-secret"
rate = 1000

[[routes]]
match = "csv@sms.test"
format = "csv"
provider = "kwt"
region = "KW"

[[routes]]
match = "strict@sms.test"
format = "csv"
provider = "kwt"
region = "KW"
csv_policy = "all-or-nothing"

[[routes]]
match = "small@sms.test"
format = "csv"
provider = "kwt"
region = "KW"
max_rows = 10

[[routes]]
match = "check@sms.test"
format = "csv"
provider = "kwt"
region = "KW"
dry_run = true

[[routes]]
match = "csv@kapow.test"
format = "csv"
provider = "kapow"
region = "GB"
"""


@pytest.fixture
def kwt() -> Iterator[FakeKwtSms]:
    with FakeKwtSms(accounts={"kwtuser": ("kwt-secret", 1e9)}, senders=("KWT-MESSAGE", "MyShop"),
                    same_number_interval=0) as fake:
        yield fake


@pytest.fixture
def kapow() -> Iterator[FakeKapow]:
    with FakeKapow(accounts={"kapowuser": ("kapow-secret", 10**6)}) as fake:
        yield fake


@pytest.fixture
def server(tmp_path: Path, kwt: FakeKwtSms, kapow: FakeKapow) -> Iterator[ThreadServer]:
    path, _ = write_config(tmp_path, CONFIG.format(kwt=kwt.url, kapow=kapow.url))
    with thread_server(path) as srv:
        yield srv


def csv_mail(to: str, data: bytes, *, filename: str = "list.csv", ctype: str = "application/vnd.ms-excel",
             body: str = "Please send these.") -> EmailMessage:
    msg = message(to, body)
    maintype, subtype = ctype.split("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg


def attachment(report: EmailMessage, name: str) -> bytes:
    for part in report.iter_attachments():
        if part.get_filename() == name:
            data = part.get_payload(decode=True)
            assert isinstance(data, bytes)
            return data
    raise AssertionError(f"no {name}")


def results_rows(report: EmailMessage, delimiter: str, name: str = "results.csv") -> list[list[str]]:
    data = attachment(report, name)
    assert data.startswith(codecs.BOM_UTF8)
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=delimiter))


def test_excel_semicolon_export_good_and_bad_rows_are_reported(server: ThreadServer, kwt: FakeKwtSms,
                                                               tmp_path: Path) -> None:
    """Excel's semicolon CSV with BOM and no header: good rows are sent, bad rows named by row in all three parts."""
    data = codecs.BOM_UTF8 + (
        b"96550000001;Hello, first\r\n"
        b"12ab;Hello, second\r\n"
        b"96550000002;\r\n"
        b";;\r\n"
        b"+965 5000 0003;Hello, fourth\r\n"
    )
    code, text = send(server.port, csv_mail("csv@sms.test", data))
    assert replies.QUEUED.matches(code, text)
    report = wait_until(lambda: reports(tmp_path / "reports"))[0]
    assert sorted((s.number, s.text) for s in kwt.sent) == [("96550000001", "Hello, first"),
                                                             ("96550000003", "Hello, fourth")]
    assert report["Subject"] == "SMS partly sent: 2 of 4: sms"
    words = report_text(report)
    assert "(CSV row 2): refused" in words
    assert "'12ab' is not a phone number" in words
    assert "+96550000002 (CSV row 3): refused" in words
    assert "the message is empty" in words
    jobs = {j["row"]: j for j in report_json(report)["jobs"]}
    assert (jobs[2]["status"], jobs[3]["status"], jobs[5]["status"]) == ("rejected", "rejected", "sent")
    assert jobs[3]["error"] == "the message is empty"
    rows = results_rows(report, ";")
    assert rows[0] == ["mobile", "message", "from_id", "sendtime", "row", "status", "number", "provider_id",
                       "parts", "error"]
    assert [(r[0], r[4], r[5], r[6]) for r in rows[1:]] == [
        ("96550000001", "1", "sent", "+96550000001"),
        ("12ab", "2", "rejected", ""),
        ("96550000002", "3", "rejected", "+96550000002"),
        ("+965 5000 0003", "5", "sent", "+96550000003"),
    ]
    assert rows[1][7] == jobs[1]["provider_id"]
    assert rows[3][9] == "the message is empty"


def test_utf16_with_header_aliases_in_another_order(server: ThreadServer, kapow: FakeKapow, tmp_path: Path) -> None:
    """Excel's UTF-16 "Unicode text" (tab, BOM) with headers in another order reaches Kapow with from_id and text."""
    data = "Text\tSender\tNumber\r\n\"Café at 5, bring a friend\"\tCafeLuna\t07777 123456\r\n".encode("utf-16")
    code, text = send(server.port, csv_mail("csv@kapow.test", data, filename="export.csv", ctype="text/csv"))
    assert replies.QUEUED.matches(code, text)
    report = wait_until(lambda: reports(tmp_path / "reports"))[0]
    assert [(s.number, s.text, s.from_id) for s in kapow.sent] == [
        ("447777123456", "Café at 5, bring a friend", "CafeLuna")
    ]
    rows = results_rows(report, "\t")
    assert rows[0][:3] == ["Text", "Sender", "Number"]
    assert rows[1][:6] == ["Café at 5, bring a friend", "CafeLuna", "07777 123456", "2", "sent", "+447777123456"]


def test_quoted_newlines_and_body_csv(server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path) -> None:
    """CSV in the text body (no attachment): a quoted two-line message arrives with its line break."""
    body = 'mobile,message\n96550000004,"Line one, still one\nLine two"\n96550000005,plain\n'
    code, text = send(server.port, message("csv@sms.test", body))
    assert replies.QUEUED.matches(code, text)
    wait_until(lambda: len(kwt.sent) == 2)
    assert sorted((s.number, s.text) for s in kwt.sent) == [
        ("96550000004", "Line one, still one\nLine two"), ("96550000005", "plain")
    ]
    report = wait_until(lambda: reports(tmp_path / "reports"))[0]
    assert {j["row"] for j in report_json(report)["jobs"]} == {2, 4}  # the second row starts on line 4


def test_all_or_nothing_refuses_with_554_naming_rows(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """On an all-or-nothing route one bad row refuses the mail with 554 5.6.0 naming rows; nothing is sent."""
    data = b"96550000001,ok\n96550000002,\n12ab,x\n"
    code, text = send(server.port, csv_mail("strict@sms.test", data))
    assert replies.BAD_CONTENT.matches(code, text)
    assert b"row 2: the message is empty; row 3: '12ab' is not a phone number" in text
    assert not kwt.requests


def test_more_rows_than_the_route_allows_is_552(server: ThreadServer, kwt: FakeKwtSms) -> None:
    """A CSV with more rows than the route's max_rows is refused with 552 5.3.4; nothing is sent."""
    data = "".join(f"965500000{i:02d},hi\n" for i in range(11)).encode()
    code, text = send(server.port, csv_mail("small@sms.test", data))
    assert replies.TOO_MANY.matches(code, text)
    assert b"more than 10 CSV rows" in text
    assert not kwt.requests


def test_thousand_rows_with_repeated_texts_are_batched(server: ThreadServer, kwt: FakeKwtSms,
                                                       tmp_path: Path) -> None:
    """1,000 rows with five texts reach KwtSMS in far fewer requests than rows, and every number exactly once."""
    numbers = [f"9655{i:07d}" for i in range(1000)]
    data = "".join(f"{n},Offer {i % 5}: 10% off this week\r\n" for i, n in enumerate(numbers)).encode()
    code, text = send(server.port, csv_mail("csv@sms.test", data))
    assert replies.QUEUED.matches(code, text)
    report = wait_until(lambda: reports(tmp_path / "reports"), timeout=60)[0]
    requests = [r for r in kwt.requests if r.path.endswith("/send/")]
    assert len(requests) <= 50  # 5 texts × ⌈200 / 200⌉ when one claim takes all; never one per row
    assert sorted(s.number for s in kwt.sent) == numbers
    assert report["Subject"] == "SMS sent: 1000 of 1000: sms"


def test_same_number_twice_is_sent_twice(server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path) -> None:
    """Two rows with the same number and text are two SMS (the CSV asked twice), in separate requests."""
    data = b"96550000007,Your code is ready\n96550000007,Your code is ready\n"
    code, text = send(server.port, csv_mail("csv@sms.test", data))
    assert replies.QUEUED.matches(code, text)
    wait_until(lambda: reports(tmp_path / "reports"))
    assert [s.number for s in kwt.sent] == ["96550000007", "96550000007"]
    assert len([r for r in kwt.requests if r.path.endswith("/send/")]) == 2


def test_several_attachments_each_get_results(server: ThreadServer, kwt: FakeKwtSms, tmp_path: Path) -> None:
    """Two CSV attachments: rows of both are sent, errors name the file, and each file gets its results CSV."""
    msg = csv_mail("csv@sms.test", b"96550000011,from jan\n", filename="jan.csv", ctype="text/csv")
    msg.add_attachment(b"mobile;message\r\n96550000012;from feb\r\nxx;bad\r\n", maintype="text", subtype="csv",
                       filename="feb.csv")
    code, text = send(server.port, msg)
    assert replies.QUEUED.matches(code, text)
    report = wait_until(lambda: reports(tmp_path / "reports"))[0]
    assert sorted(s.text for s in kwt.sent) == ["from feb", "from jan"]
    assert "feb.csv: 'xx' is not a phone number" in report_text(report)
    assert results_rows(report, ",", "results-jan.csv")[1][:6] == ["96550000011", "from jan", "", "", "1", "sent"]
    assert [r[3] for r in results_rows(report, ";", "results-feb.csv")[1:]] == ["sent", "rejected"]


class _WatchedExecutor(Executor):
    """The server's parse pool, reporting when a mail is handed to it (i.e. is parsed off the event loop)."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.handed_over = threading.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.handed_over.set()
        return self.inner.submit(fn, *args, **kwargs)


@pytest.mark.slow
def test_small_mail_is_accepted_while_a_100k_row_csv_is_parsed(server: ThreadServer) -> None:
    """While a 100,000-row CSV is parsed, a small mail on another connection gets its 250 first."""
    assert server.app is not None
    handler = server.app.handler
    assert handler.executor is not None
    watched = _WatchedExecutor(handler.executor)
    handler.executor = watched
    data = "".join(f"9655{i:07d},Reminder {i % 20}: your appointment is tomorrow\r\n" for i in range(100_000))
    big = csv_mail("check@sms.test", data.encode(), ctype="text/csv")  # dry run: parsed and stored, not sent
    order: list[str] = []
    big_reply: list[tuple[int, bytes]] = []

    def send_big() -> None:
        big_reply.append(send(server.port, big, timeout=600))  # parsing 100,000 rows on a busy machine: minutes
        order.append("big")

    sender = threading.Thread(target=send_big)
    sender.start()
    try:
        # Generous bound only against a hang: it is not a timing assertion, the 250s' order is.
        assert watched.handed_over.wait(120)
        code, text = send(server.port, message("csv@sms.test", "96550000099,hello\n"))
        order.append("small")
    finally:
        sender.join(300)
    assert replies.QUEUED.matches(code, text)
    assert replies.QUEUED.matches(*big_reply[0])
    assert order == ["small", "big"]


def test_smtp_session_survives_a_refused_csv(server: ThreadServer) -> None:
    """After a CSV is refused with 554 the same SMTP session can send a good one."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo("client.example.org")
        for data, expected in ((b"12ab,x\n", replies.BAD_CONTENT), (b"96550000021,ok\n", replies.QUEUED)):
            client.mail("alice@example.org")
            client.rcpt("csv@sms.test")
            code, text = client.data(csv_mail("csv@sms.test", data).as_bytes())
            assert expected.matches(code, text)
