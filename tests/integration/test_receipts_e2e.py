"""Delivery receipts end to end (issue 15) through a real mail2sms: smtplib → server → a provider's fake over HTTP
on 127.0.0.1 (Kapow, and each other provider with a status call), then the outcome mail and, once every accepted
SMS is settled by a receipt (polled from the provider's status call, or pushed by the Kapow fake calling the `dlr`
URL it received), exactly one follow-up mail threaded under the outcome mail. Nothing waits on time: tests wait
for mails, callbacks and spool rows to appear."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from mail2sms import metrics
from tests.fakes.bulksms import FakeBulkSms, FakeBulkSmsJson
from tests.fakes.cellcast import FakeCellcast
from tests.fakes.kapow import FakeKapow
from tests.fakes.kobomobile import FakeKoboMobile
from tests.fakes.kwtsms import FakeKwtSms
from tests.fakes.server import FakeProvider, RecordedRequest
from tests.harness import (
    ProcessServer,
    free_port,
    message,
    report_json,
    report_text,
    reports,
    send,
    thread_server,
    wait_until,
)
from tests.integration.test_cli import run

PASSWORD = "e2e-kapow-pw-4711"
TOKEN = "e2e-receipt-token-0815"
DELIVERED, FAILS, ALSO = "447700900001", "447700900002", "447700900003"


class HandsetKapow(FakeKapow):
    """Kapow whose handsets answer at once: every SMS to a number in `failing` fails (X), the others arrive (D),
    as `chk_status.php` then reports per returnid (no callback: these tests poll)."""

    def __init__(self, failing: set[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.failing = failing

    def _send(self, request: RecordedRequest) -> str:
        answer = super()._send(request)
        with self._lock:
            for sms in self.sent:
                username, letter = self.status[sms.returnid]
                if letter == "S":
                    self.status[sms.returnid] = (username, "X" if sms.number in self.failing else "D")
        return answer


def config(tmp: Path, kapow_url: str, *, window: str, smtp: int, http: int | None = None,
           provider: str | None = None, region: str = "GB") -> Path:
    """A full config: one provider (Kapow unless `provider` gives its section) on the route `*@kapow.test`, reports
    to a maildir (always, so the follow-up has a parent), receipts."""
    provider = provider or f"""type = "kapow"
url = "{kapow_url}"
username = "user"
password = "{PASSWORD}"
"""
    web = f"127.0.0.1:{http}" if http else ""
    push = f'public_url = "http://127.0.0.1:{http}"\ntoken = "{TOKEN}"\n' if http else ""
    text = f"""
[server]
listen = ["127.0.0.1:{smtp}"]
hostname = "sms.test"

[spool]
url = "sqlite://{tmp}/spool.db"

[reports]
maildir = "{tmp}/reports"
from = "mail2sms@sms.test"
when = "always"
receipts = "always"

[http]
listen = "{web}"

[dispatch]
retry_base = 0.2
retry_cap = 1.0
poll_interval = 0.2

[receipts]
window = "{window}"
{push}
[providers.kapow]
{provider}timeout = "5s"
rate = 50

[[routes]]
match = "*@kapow.test"
format = "address"
provider = "kapow"
region = "{region}"
"""
    path = tmp / "mail2sms.toml"
    path.write_text(text, encoding="utf-8")
    return path


def mail_to(*numbers: str) -> EmailMessage:
    return message([f"{n}@kapow.test" for n in numbers], "Server room door open", subject="Door")


def by_kind(maildir: Path) -> tuple[list[EmailMessage], list[EmailMessage]]:
    """(outcome mails, follow-up mails) in the maildir, told apart by their fixed Message-IDs."""
    found = reports(maildir)
    return ([m for m in found if ".report@" in str(m["Message-ID"])],
            [m for m in found if ".followup@" in str(m["Message-ID"])])


def statuses(mail: EmailMessage) -> dict[str, str]:
    return {job["number"]: job["status"] for job in report_json(mail)["jobs"]}


def assert_threaded(followup: EmailMessage, outcome: EmailMessage, original: EmailMessage) -> None:
    assert followup["In-Reply-To"] == outcome["Message-ID"]
    assert str(followup["References"]).split() == [str(original["Message-ID"]), str(outcome["Message-ID"])]


@pytest.fixture
def kapow() -> Iterator[HandsetKapow]:
    """The Kapow fake: SMS to FAILS fail at the handset, the rest are delivered."""
    with HandsetKapow({FAILS}, accounts={"user": (PASSWORD, 1000)}) as fake:
        yield fake


def sms_counter(state: str) -> float:
    value = metrics.REGISTRY.get_sample_value("mail2sms_sms_total", {"provider": "kapow", "state": state})
    return value or 0.0


def test_polled_receipts_give_one_follow_up_threaded_to_the_outcome_mail(tmp_path: Path, kapow: HandsetKapow) -> None:
    """A mail to three numbers, one failing at the handset: the outcome mail says all three were accepted, then one
    follow-up under it says two delivered and one not, with Kapow's reason; /metrics counts them."""
    delivered_before, undelivered_before = sms_counter("delivered"), sms_counter("undelivered")
    path = config(tmp_path, kapow.url, window="2s", smtp=free_port())
    original = mail_to(DELIVERED, FAILS, ALSO)
    with thread_server(path) as server:
        code, _ = send(server.port, original)
        assert code == 250
        maildir = tmp_path / "reports"
        [outcome] = wait_until(lambda: by_kind(maildir)[0])
        assert set(statuses(outcome).values()) == {"sent"}
        [followup] = wait_until(lambda: by_kind(maildir)[1])
        assert_threaded(followup, outcome, original)
        assert str(followup["Subject"]).startswith("SMS delivered: 2 of 3, 1 not delivered")
        assert statuses(followup) == {f"+{DELIVERED}": "delivered", f"+{FAILS}": "undelivered",
                                      f"+{ALSO}": "delivered"}
        assert "Kapow reports the SMS failed" in report_text(followup)
        assert sms_counter("delivered") - delivered_before == 2
        assert sms_counter("undelivered") - undelivered_before == 1
        sid = report_json(outcome)["submission"]
        wait_until(lambda: _followup_state(tmp_path, sid) == "sent")
    assert len(by_kind(maildir)[1]) == 1


def _followup_state(tmp: Path, submission_id: str) -> str | None:
    with sqlite3.connect(tmp / "spool.db") as db:
        row = db.execute("SELECT followup_state FROM submissions WHERE id = ?", (submission_id,)).fetchone()
    return None if row is None else str(row[0])


def _receipts(tmp: Path) -> dict[str, str | None]:
    with sqlite3.connect(tmp / "spool.db") as db:
        return dict(db.execute("SELECT number, receipt_state FROM jobs"))


def _returnids(fake: FakeKapow) -> dict[str, str]:
    with fake._lock:
        return {sms.number: sms.returnid for sms in fake.sent}


def test_kapow_push_settles_refuses_forged_tokens_and_ignores_unknown_ids(tmp_path: Path) -> None:
    """Kapow calls the dlr URL it got with each send: a forged token gets 404 and settles nothing, an unknown
    returnid gets 200 and changes nothing, the real callbacks settle both SMS, and one follow-up follows."""
    http = free_port()
    with FakeKapow(accounts={"user": (PASSWORD, 1000)}) as fake, \
            thread_server(config(tmp_path, fake.url, window="1h", smtp=free_port(), http=http)) as server:
        original = mail_to(DELIVERED, FAILS)
        assert send(server.port, original)[0] == 250
        maildir = tmp_path / "reports"
        [outcome] = wait_until(lambda: by_kind(maildir)[0])
        ids = wait_until(lambda: _returnids(fake) if len(_returnids(fake)) == 2 else None)
        assert all(f"/receipts/kapow/{TOKEN}" in fake.dlr_of[i] for i in ids.values())
        base = f"http://127.0.0.1:{http}/receipts/kapow"
        forged = httpx.get(f"{base}/not-the-token?returnid={ids[FAILS]}&mobile={FAILS}&status=D", timeout=30)
        assert forged.status_code == 404
        unknown = httpx.get(f"{base}/{TOKEN}?returnid=999999&mobile={FAILS}&status=D", timeout=30)
        assert unknown.status_code == 200
        assert set(_receipts(tmp_path).values()) == {"pending"}
        fake.deliver(ids[DELIVERED], "D")
        fake.deliver(ids[FAILS], "X")
        assert [status for _url, status in fake.wait_callbacks(2)] == [200, 200]
        [followup] = wait_until(lambda: by_kind(maildir)[1])
        assert_threaded(followup, outcome, original)
        assert statuses(followup) == {f"+{DELIVERED}": "delivered", f"+{FAILS}": "undelivered"}
        assert _receipts(tmp_path) == {DELIVERED: "delivered", FAILS: "undelivered"}
    assert TOKEN not in "".join(m.as_string() for m in reports(maildir))


def test_sigkill_between_receipts_loses_neither_receipt_nor_follow_up(tmp_path: Path) -> None:
    """A receipt recorded before a SIGKILL survives it (`queue show` prints it, and the other one still awaited):
    after the restart the second receipt completes the submission and exactly one follow-up arrives with both."""
    http, smtp = free_port(), free_port()
    with FakeKapow(accounts={"user": (PASSWORD, 1000)}) as fake:
        path = config(tmp_path, fake.url, window="1h", smtp=smtp, http=http)
        server = ProcessServer(path, smtp, tmp_path / "server.log").start()
        try:
            original = mail_to(DELIVERED, FAILS)
            assert send(smtp, original)[0] == 250
            maildir = tmp_path / "reports"
            [outcome] = wait_until(lambda: by_kind(maildir)[0])
            ids = wait_until(lambda: _returnids(fake) if len(_returnids(fake)) == 2 else None)
            wait_until(lambda: _http_up(http))
            fake.deliver(ids[DELIVERED], "D")
            assert [status for _url, status in fake.wait_callbacks(1)] == [200]  # answered after it was stored
            server.kill()
            assert _receipts(tmp_path) == {DELIVERED: "delivered", FAILS: "pending"}
            assert by_kind(maildir)[1] == []
            sid = report_json(outcome)["submission"]
            shown = run("queue", "show", sid, "--config", str(path))
            assert shown.returncode == 0, shown.stderr
            assert "receipt   delivered (push, " in shown.stdout
            assert "receipt   awaited, next ask " in shown.stdout
            as_json = {j["number"]: j["receipt"] for j in
                       json.loads(run("queue", "show", sid, "--json", "--config", str(path)).stdout)["jobs"]}
            assert (as_json[DELIVERED]["state"], as_json[FAILS]["state"]) == ("delivered", "pending")
            server = ProcessServer(path, smtp, tmp_path / "server.log").start()
            wait_until(lambda: _http_up(http))
            fake.deliver(ids[FAILS], "X")
            assert [status for _url, status in fake.wait_callbacks(2)][1] == 200
            [followup] = wait_until(lambda: by_kind(maildir)[1])
            assert_threaded(followup, outcome, original)
            assert statuses(followup) == {f"+{DELIVERED}": "delivered", f"+{FAILS}": "undelivered"}
            wait_until(lambda: _followup_state(tmp_path, sid) == "sent")
        finally:
            server.terminate()
    assert len(by_kind(maildir)[1]) == 1
    assert len(by_kind(maildir)[0]) == 1


def test_sigkill_after_the_last_receipt_before_the_follow_up_loses_nothing(tmp_path: Path) -> None:
    """Every receipt is recorded and the follow-up is due but cannot be written (the maildir's tmp/ is broken), the
    server is SIGKILLed; after the repair and a restart exactly one follow-up arrives, with both receipts."""
    http, smtp = free_port(), free_port()
    with FakeKapow(accounts={"user": (PASSWORD, 1000)}) as fake:
        path = config(tmp_path, fake.url, window="1h", smtp=smtp, http=http)
        log = tmp_path / "server.log"
        server = ProcessServer(path, smtp, log).start()
        maildir = tmp_path / "reports"
        try:
            original = mail_to(DELIVERED, FAILS)
            assert send(smtp, original)[0] == 250
            [outcome] = wait_until(lambda: by_kind(maildir)[0])
            sid = report_json(outcome)["submission"]
            ids = wait_until(lambda: _returnids(fake) if len(_returnids(fake)) == 2 else None)
            wait_until(lambda: _http_up(http))
            # A file where the maildir's tmp/ directory should be: every delivery fails with an OSError (retried).
            (maildir / "tmp").rmdir()
            (maildir / "tmp").write_bytes(b"")
            fake.deliver(ids[DELIVERED], "D")
            fake.deliver(ids[FAILS], "X")
            assert [status for _url, status in fake.wait_callbacks(2)] == [200, 200]
            assert _receipts(tmp_path) == {DELIVERED: "delivered", FAILS: "undelivered"}
            wait_until(lambda: "reports not written to maildir, will retry" in log.read_text(encoding="utf-8"))
            assert _followup_state(tmp_path, sid) == "pending"
            server.kill()
            assert by_kind(maildir)[1] == []
            (maildir / "tmp").unlink()
            (maildir / "tmp").mkdir()
            server = ProcessServer(path, smtp, log).start()
            [followup] = wait_until(lambda: by_kind(maildir)[1])
            assert_threaded(followup, outcome, original)
            assert statuses(followup) == {f"+{DELIVERED}": "delivered", f"+{FAILS}": "undelivered"}
            wait_until(lambda: _followup_state(tmp_path, sid) == "sent")
        finally:
            server.terminate()
    assert len(by_kind(maildir)[1]) == 1
    assert len(by_kind(maildir)[0]) == 1


def _http_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code in (200, 503)
    except httpx.HTTPError:
        return False




@dataclass(frozen=True)
class Case:
    """One provider's fake, how mail2sms is configured for it, and how its handsets answer."""

    fake: Callable[[], FakeProvider]
    section: str  # the provider's config lines (its url is added)
    region: str
    numbers: tuple[str, str]  # (delivered, fails at the handset)
    report: Callable[[Any, str, str, bool], None]  # (fake, provider id, number, delivered?)


CASES = {
    "kwtsms": Case(lambda: FakeKwtSms(accounts={"user": (PASSWORD, 100)}, senders=["Shop"]),
                   f'type = "kwtsms"\nusername = "user"\npassword = "{PASSWORD}"\nsender = "Shop"\n', "KW",
                   ("96550000001", "96550000002"),
                   lambda f, pid, n, ok: f.set_report(pid, "DELIVERED" if ok else "Not delivered", n)),
    "bulksms": Case(lambda: FakeBulkSmsJson(accounts={"user": (PASSWORD, 100)}),
                    f'type = "bulksms"\nusername = "user"\npassword = "{PASSWORD}"\n', "GB",
                    ("447700900001", "447700900002"),
                    lambda f, pid, n, ok: f.set_status(pid, *(("DELIVERED",) if ok else ("FAILED", "EXPIRED")))),
    "bulksms-eapi": Case(lambda: FakeBulkSms(accounts={"user": (PASSWORD, 100)}),
                         f'type = "bulksms"\nusername = "user"\npassword = "{PASSWORD}"\n'
                         'options = { api = "eapi" }\n',
                         "GB", ("447700900001", "447700900002"),
                         lambda f, pid, n, ok: f.set_report(pid, n, 11 if ok else 51)),
    "kobomobile": Case(lambda: FakeKoboMobile(accounts={"user": (PASSWORD, 100)}),
                       f'type = "kobomobile"\nusername = "user"\npassword = "{PASSWORD}"\nsender = "Shop"\n', "NG",
                       ("2348030000001", "2348030000002"),
                       lambda f, pid, n, ok: f.set_report(pid, "DELIVERED" if ok else "FAILED")),
    "cellcast": Case(lambda: FakeCellcast(keys={PASSWORD: 100}),
                     f'type = "cellcast"\nkey = "{PASSWORD}"\nsender = "Shop"\n', "AU",
                     ("61400000001", "61400000002"),
                     lambda f, pid, n, ok: f.set_status(pid, "Delivered" if ok else "Failed")),
}


def _accepted(tmp: Path) -> dict[str, str]:
    """number → provider id of the SMS the spool holds as accepted."""
    with sqlite3.connect(tmp / "spool.db") as db:
        return dict(db.execute("SELECT number, provider_id FROM jobs WHERE state = 'sent'"))


@pytest.mark.parametrize("kind", sorted(CASES))
def test_every_polled_provider_gives_a_follow_up(tmp_path: Path, kind: str) -> None:
    """Each provider with a status call, through a real server: one SMS delivered, one failed at the handset, as its
    fake reports per id; one follow-up under the outcome mail says so (one ask, at the end of a short window)."""
    case = CASES[kind]
    with case.fake() as fake:
        section = f'url = "{fake.url}"\n' + case.section
        path = config(tmp_path, "", window="6s", smtp=free_port(), provider=section, region=case.region)
        with thread_server(path) as server:
            good, bad = case.numbers
            original = mail_to(good, bad)
            assert send(server.port, original)[0] == 250
            ids = wait_until(lambda: (found := _accepted(tmp_path)) and len(found) == 2 and found)
            case.report(fake, ids[good], good, True)
            case.report(fake, ids[bad], bad, False)
            maildir = tmp_path / "reports"
            [outcome] = wait_until(lambda: by_kind(maildir)[0])
            [followup] = wait_until(lambda: by_kind(maildir)[1])
            assert_threaded(followup, outcome, original)
            assert statuses(followup) == {f"+{good}": "delivered", f"+{bad}": "undelivered"}
            assert fake.errors == []
