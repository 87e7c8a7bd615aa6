"""Every provider through SMTP: smtplib → mail2sms → a stateful fake provider over HTTP → the outcome report.

One mail2sms serves all five providers (module scope, so the suite stays quick); each test sends its own mail,
waits for that submission's report and leaves every fake as it found it (started, no fault pending). The config
keeps retries short (`max_attempts = 3`, backoff 0.2-1 s) and each provider's `timeout` at 1 s for the
read-timeout cases. Nothing here asserts on durations: tests wait for states, reports and requests.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mail2sms.model import Job, JobState
from mail2sms.providers.bulksms import EXPLAIN as BULKSMS
from mail2sms.providers.cellcast import EXPLAIN as CELLCAST
from mail2sms.providers.kobomobile import EXPLAIN as KOBOMOBILE
from mail2sms.smtp import replies
from tests.fakes.bulksms import FakeBulkSms
from tests.fakes.cellcast import FakeCellcast
from tests.fakes.kapow import FakeKapow
from tests.fakes.kobomobile import FakeKoboMobile
from tests.fakes.kwtsms import FakeKwtSms
from tests.fakes.server import FakeProvider
from tests.harness import ThreadServer, message, report_json, report_text, send, wait_until, write_config

MAX_ATTEMPTS = 3
BULK_PASSWORD = "bulk-secret-pw-1"
KOBO_PASSWORD = "kobo-secret-pw-2"
CELLCAST_KEY = "cellcast-secret-key-3"
KAPOW_PASSWORD = "kapow-secret-pw-4"
KWT_PASSWORD = "kwt-secret-pw-5"
SECRETS = (BULK_PASSWORD, KOBO_PASSWORD, CELLCAST_KEY, KAPOW_PASSWORD, KWT_PASSWORD)

CONFIG = """
[providers.bulk]
type = "bulksms"
url = "{bulksms}"
username = "bulkuser"
password = "{bulk_password}"
sender = "Alarm"
timeout = "1s"
rate = 50
max_recipients = 100
options = {{ api = "eapi", routing_group = 2, want_report = true }}

[providers.kobo]
type = "kobomobile"
url = "{kobomobile}"
username = "kobouser"
password = "{kobo_password}"
sender = "Shop"
timeout = "1s"
rate = 50

[providers.cell]
type = "cellcast"
url = "{cellcast}"
key = "{cellcast_key}"
sender = "Clinic"
timeout = "1s"
rate = 10

[providers.kapow]
type = "kapow"
url = "{kapow}"
username = "kapowuser"
password = "{kapow_password}"
timeout = "1s"
rate = 50
max_recipients = 100

[providers.kwt]
type = "kwtsms"
url = "{kwtsms}"
username = "kwtuser"
password = "{kwt_password}"
sender = "KWT-MESSAGE"
timeout = "1s"
rate = 50
"""
ROUTES = """
[[routes]]
match = "sms@{kind}.test"
format = "keyvalue"
provider = "{name}"
region = "{region}"

[[routes]]
match = "*@{kind}.test"
format = "address"
provider = "{name}"
region = "{region}"
"""


@dataclass(frozen=True)
class Spec:
    """How one provider is set up and seen in these tests."""

    kind: str  # provider type, also the route's domain
    name: str  # configured provider name
    region: str
    number: Callable[[int], str]  # the i-th test number, E.164 digits
    idempotent: bool
    per_request: int  # recipients per request in this config


SPECS = {
    "bulksms": Spec("bulksms", "bulk", "GB", lambda i: f"447700900{i:03d}", True, 100),
    "kobomobile": Spec("kobomobile", "kobo", "NG", lambda i: f"2348030{i:06d}", True, 500),
    "cellcast": Spec("cellcast", "cell", "AU", lambda i: f"614000{i:05d}", False, 1000),
    "kapow": Spec("kapow", "kapow", "GB", lambda i: f"447700901{i:03d}", False, 100),
    "kwtsms": Spec("kwtsms", "kwt", "KW", lambda i: f"9655{i:07d}", False, 200),
}
KINDS = list(SPECS)


@dataclass
class World:
    server: ThreadServer
    fakes: dict[str, FakeProvider]
    reports: Path
    counter: Iterator[int]
    seen: dict[str, tuple[str, dict[str, Any], str]] = field(default_factory=dict)  # report file → parsed

    def number(self, kind: str) -> str:
        return SPECS[kind].number(next(self.counter))


def _counter() -> Iterator[int]:
    i = 100
    while True:
        i += 1
        yield i


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("providers")
    fakes: dict[str, FakeProvider] = {
        "bulksms": FakeBulkSms(accounts={"bulkuser": (BULK_PASSWORD, 10_000.0)}),
        "kobomobile": FakeKoboMobile(accounts={"kobouser": (KOBO_PASSWORD, 10_000.0)}),
        "cellcast": FakeCellcast(keys={CELLCAST_KEY: 10_000.0}, refused_numbers={"61400099999"}),
        "kapow": FakeKapow(accounts={"kapowuser": (KAPOW_PASSWORD, 10_000)}),
        "kwtsms": FakeKwtSms(accounts={"kwtuser": (KWT_PASSWORD, 10_000.0)}, same_number_interval=0),
    }
    for fake in fakes.values():
        fake.start()
    body = CONFIG.format(
        **{kind: fake.url for kind, fake in fakes.items()}, bulk_password=BULK_PASSWORD,
        kobo_password=KOBO_PASSWORD, cellcast_key=CELLCAST_KEY, kapow_password=KAPOW_PASSWORD,
        kwt_password=KWT_PASSWORD,
    ) + "".join(ROUTES.format(kind=s.kind, name=s.name, region=s.region) for s in SPECS.values())
    server = matrix_server(tmp, body)
    try:
        yield World(server, fakes, tmp / "reports", _counter())
    finally:
        server.stop()
        for fake in fakes.values():
            fake.stop()
            assert fake.errors == []


@pytest.fixture(autouse=True)
def clean_fakes(world: World) -> Iterator[None]:
    """Every fake listens and has no fault left over when a test ends."""
    yield
    for fake in world.fakes.values():
        fake.start()
        assert not fake._faults, "a test left an injected fault unused"


def matrix_server(tmp: Path, body: str) -> ThreadServer:
    """A running server for a fault matrix: short retries (MAX_ATTEMPTS), no circuit breaker pausing a provider that
    a test makes fail on purpose, and no report limit (one sender mails a lot here)."""
    path, _ = write_config(tmp, body)
    text = path.read_text(encoding="utf-8")
    text = text.replace("[dispatch]\n", f"[dispatch]\nmax_attempts = {MAX_ATTEMPTS}\nbreaker_failures = 1000\n", 1)
    text = text.replace("[reports]\n", "[reports]\nper_sender_per_hour = 0\n", 1)
    path.write_text(text, encoding="utf-8")
    return ThreadServer(path).start()


# -- helpers ---------------------------------------------------------------------------------------
def submit(world: World, to: str | list[str], body: str) -> str:
    """Send a mail; return the submission id from the 250 reply."""
    return submit_to(world.server.port, to, body)


def submit_to(port: int, to: str | list[str], body: str) -> str:
    """Send a mail to the server on `port`; return the submission id from its 250 reply."""
    code, text = send(port, message(to, body))
    assert replies.QUEUED.matches(code, text), text
    return text.decode().split()[-1]


def report_for(world: World, sid: str) -> tuple[dict[str, Any], str]:
    """The outcome report of submission `sid` (results.json and the text part), once it exists."""
    def find() -> tuple[dict[str, Any], str] | None:
        new = world.reports / "new"
        for path in sorted(new.iterdir()) if new.is_dir() else []:
            if path.name not in world.seen:
                mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                assert isinstance(mail, EmailMessage)
                data = report_json(mail)
                world.seen[path.name] = (data["submission"], data, report_text(mail))
        for found_sid, data, text in world.seen.values():
            if found_sid == sid:
                return data, text
        return None

    found: tuple[dict[str, Any], str] = wait_until(find, timeout=120)
    return found


def jobs_of(world: World, sid: str) -> list[Job]:
    app = world.server.app
    assert app is not None
    found = asyncio.run_coroutine_threadsafe(app.spool.get(sid), world.server.loop).result(10)
    assert found is not None
    return found[1]


def sent_numbers(fake: FakeProvider) -> list[str]:
    """Numbers the fake has really sent to, one entry per SMS."""
    if isinstance(fake, FakeCellcast):
        return [s.to.removeprefix("+") for s in fake.sent]
    assert isinstance(fake, FakeBulkSms | FakeKoboMobile | FakeKapow | FakeKwtSms)
    return [s.number for s in fake.sent]


def send_requests(kind: str, fake: FakeProvider) -> list[Any]:
    path = {"bulksms": "send_sms/2/2.0", "kobomobile": "/send/", "cellcast": "/send-sms", "kapow": "sendsms.php",
            "kwtsms": "/send/"}[kind]
    return [r for r in fake.requests if r.path.endswith(path)]


def one_job(data: dict[str, Any]) -> dict[str, Any]:
    [job] = data["jobs"]
    assert isinstance(job, dict)
    return job


def no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


# == success with the right wire parameters =========================================================
def test_bulksms_success_wire(world: World) -> None:
    """A mail to a UK national number reaches BulkSMS as international digits, ISO-8859-1, sender, options."""
    fake = world.fakes["bulksms"]
    assert isinstance(fake, FakeBulkSms)
    number = world.number("bulksms")
    sid = submit(world, f"0{number[2:]}@bulksms.test", "Café open, £5")
    data, text = report_for(world, sid)
    job = one_job(data)
    assert (job["status"], job["number"]) == ("sent", f"+{number}")
    [sent] = [s for s in fake.sent if s.number == number]
    assert (sent.text, sent.dca, sent.sender, sent.msg_class) == ("Café open, £5", "7bit", "Alarm", 2)
    assert job["provider_id"] == sent.batch_id
    request = send_requests("bulksms", fake)[-1]
    assert b"message=Caf%E9+open%2C+%A35" in request.body  # é and £ as single ISO-8859-1 bytes
    assert (request.param("routing_group"), request.param("want_report"), request.param("repliable")) == (
        "2", "1", "0")
    assert sent.stop_dup_id is not None
    assert 1 <= sent.stop_dup_id <= 2_147_483_647
    no_secrets(text, json.dumps(data))


def test_bulksms_unicode_and_flash(world: World) -> None:
    """Arabic text goes as dca=16bit UTF-16 hex and arrives intact; flash: yes is msg_class=0."""
    fake = world.fakes["bulksms"]
    assert isinstance(fake, FakeBulkSms)
    number = world.number("bulksms")
    sid = submit(world, "sms@bulksms.test", f"mobile:+{number}\nflash:yes\ntext:مرحبا+بكم\n")
    assert one_job(report_for(world, sid)[0])["status"] == "sent"
    [sent] = [s for s in fake.sent if s.number == number]
    assert (sent.dca, sent.text, sent.msg_class) == ("16bit", "مرحبا بكم", 0)


def test_bulksms_schedule(world: World) -> None:
    """sendtime: goes to BulkSMS as send_time_unixtime; BulkSMS answers 1 (scheduled) and the job is sent."""
    fake = world.fakes["bulksms"]
    assert isinstance(fake, FakeBulkSms)
    number = world.number("bulksms")
    when = (datetime.now(UTC) + timedelta(days=3)).replace(second=0, microsecond=0)
    sid = submit(world, "sms@bulksms.test",
                 f"mobile:{number}\nsendtime:{when:%Y-%m-%d %H:%M}\ntext:Reminder\n")
    assert one_job(report_for(world, sid)[0])["status"] == "sent"
    [sent] = [s for s in fake.sent if s.number == number]
    assert sent.send_time == when
    assert sent.params["send_time_unixtime"] == str(int(when.timestamp()))


def test_kobomobile_success_wire(world: World) -> None:
    """KoboMobile gets user/pass, from, to without +, type, enable_msg_id and a message_uuid; ids are reported."""
    fake = world.fakes["kobomobile"]
    assert isinstance(fake, FakeKoboMobile)
    number = world.number("kobomobile")
    sid = submit(world, f"0{number[3:]}@kobomobile.test", "Your order has shipped")
    job = one_job(report_for(world, sid)[0])
    [sent] = [s for s in fake.sent if s.number == number]
    assert (sent.text, sent.sender, sent.type) == ("Your order has shipped", "Shop", 0)
    assert job["provider_id"] == sent.message_id
    request = send_requests("kobomobile", fake)[-1]
    assert (request.param("user"), request.param("to"), request.param("enable_msg_id")) == (
        "kobouser", number, "1")
    key = request.param("message_uuid")
    assert key is not None
    assert len(key) <= 64


@pytest.mark.parametrize(("shape", "text", "flash", "kind"), [("object", "Привет", False, 2),
                                                              ("nested", "Wake up", True, 1)])
def test_kobomobile_reply_shapes_unicode_and_flash(world: World, shape: str, text: str, flash: bool,
                                                   kind: int) -> None:
    """Whatever JSON shape KoboMobile answers in, ids are matched; Unicode is type 2, flash type 1."""
    fake = world.fakes["kobomobile"]
    assert isinstance(fake, FakeKoboMobile)
    fake.shape = shape  # type: ignore[assignment]
    try:
        number = world.number("kobomobile")
        body = f"mobile:{number}\ntext:{text}\n" + ("flash:1\n" if flash else "")
        job = one_job(report_for(world, submit(world, "sms@kobomobile.test", body))[0])
    finally:
        fake.shape = "string"
    [sent] = [s for s in fake.sent if s.number == number]
    assert (sent.type, sent.text, job["provider_id"]) == (kind, text, sent.message_id)


def test_cellcast_success_wire(world: World) -> None:
    """Cellcast gets the APPKEY header and JSON with +61 numbers and the sender; each id is found by `to`."""
    fake = world.fakes["cellcast"]
    assert isinstance(fake, FakeCellcast)
    first, second = world.number("cellcast"), world.number("cellcast")
    sid = submit(world, [f"0{first[2:]}@cellcast.test", f"+{second}@cellcast.test"], "Appointment at 10")
    data, _ = report_for(world, sid)
    by_number = {j["number"]: j for j in data["jobs"]}
    sent = {s.to: s for s in fake.sent if s.to in (f"+{first}", f"+{second}")}
    assert {n: j["provider_id"] for n, j in by_number.items()} == {to: s.message_id for to, s in sent.items()}
    request = send_requests("cellcast", fake)[-1]
    assert request.headers["appkey"] == CELLCAST_KEY
    assert json.loads(request.body) == {"sms_text": "Appointment at 10", "numbers": [f"+{first}", f"+{second}"],
                                        "from": "Clinic"}


def test_cellcast_schedule_and_a_number_not_queued(world: World) -> None:
    """schedule_time goes in Sydney time; a number Cellcast does not queue is refused, the other sent."""
    fake = world.fakes["cellcast"]
    assert isinstance(fake, FakeCellcast)
    number = world.number("cellcast")
    when = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    body = f"mobile:{number},+61400099999\nsendtime:{when.isoformat()}\ntext:Tomorrow\n"
    data, text = report_for(world, submit(world, "sms@cellcast.test", body))
    states = {j["number"]: (j["status"], j["code"]) for j in data["jobs"]}
    assert states == {f"+{number}": ("sent", None), "+61400099999": ("rejected", "NOT_QUEUED")}
    assert CELLCAST["NOT_QUEUED"] in text
    [sent] = [s for s in fake.sent if s.to == f"+{number}"]
    assert sent.schedule_time == when


def test_kapow_flash_and_schedule_through_smtp(world: World) -> None:
    """Kapow gets the FLASH prefix and sendtime in UK time from the keyvalue keys flash: and sendtime:."""
    fake = world.fakes["kapow"]
    assert isinstance(fake, FakeKapow)
    number = world.number("kapow")
    when = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    body = f"mobile:+{number}\nflash:true\nsendtime:{when:%d-%m-%y %H:%M} UTC\ntext:Fire+drill\n"
    assert one_job(report_for(world, submit(world, "sms@kapow.test", body))[0])["status"] == "sent"
    [sent] = [s for s in fake.sent if s.number == number]
    assert (sent.flash, sent.text, sent.sendtime) == (True, "Fire drill", when)


def test_kwtsms_holds_a_scheduled_job_until_its_time(world: World) -> None:
    """KwtSMS cannot schedule: mail2sms keeps the job `scheduled`, sends nothing, and sends it when it is due."""
    fake = world.fakes["kwtsms"]
    assert isinstance(fake, FakeKwtSms)
    number = world.number("kwtsms")
    when = (datetime.now(UTC) + timedelta(hours=5)).replace(second=0, microsecond=0)
    sid = submit(world, "sms@kwtsms.test", f"mobile:{number}\nsendtime:{when.isoformat()}\ntext:Later\n")
    [job] = jobs_of(world, sid)
    assert (job.state, job.next_attempt_at) == (JobState.SCHEDULED, when.timestamp())
    assert number not in sent_numbers(fake)
    app = world.server.app
    assert app is not None  # the operator's "queue retry" makes it due now
    asyncio.run_coroutine_threadsafe(app.spool.retry_now(sid, time.time()), world.server.loop).result(10)
    assert one_job(report_for(world, sid)[0])["status"] == "sent"
    assert sent_numbers(fake).count(number) == 1


@pytest.mark.parametrize(
    ("kind", "body", "problem"),
    [
        ("kwtsms", "mobile:96550000001\nflash:yes\ntext:hi\n", b"kwtsms cannot send flash SMS"),
        ("cellcast", "mobile:61400000001\nsendtime:2020-01-01 10:00\ntext:hi\n", b"is in the past"),
        ("kapow", "mobile:447700900001\nsendtime:2099-01-01 10:00\ntext:hi\n", b"kapow schedules at most 365"),
        ("bulksms", "mobile:447700900001\nsendtime:next week\ntext:hi\n", b"line 2: sendtime: 'next week'"),
        ("kobomobile", "mobile:2348030000001\nsender:A-Very-Long-Sender\ntext:hi\n", b"at most 11"),
        ("kobomobile", "mobile:2348030000001\ntext:" + "x" * 906 + "\n", b"kobomobile takes at most 905"),
        ("bulksms", "mobile:447700900001\ntext:" + "x" * 161 + "\n", b"bulksms takes at most 1"),
        ("bulksms", "mobile:447700900001\ntext:" + "مرحبا" * 15 + "\n", b"bulksms takes at most 1"),
        ("kobomobile", "mobile:2348030000001\nflash:1\ntext:Привет\n", b"cannot send a flash SMS whose text"),
    ],
)
def test_limits_are_checked_before_the_250(world: World, kind: str, body: str, problem: bytes) -> None:
    """Flash, schedule, sender and length problems are refused at DATA (554 5.6.0) naming the problem."""
    before = len(world.fakes[kind].requests)
    code, text = send(world.server.port, message(f"sms@{kind}.test", body))
    assert replies.BAD_CONTENT.matches(code, text)
    assert problem in text
    assert len(world.fakes[kind].requests) == before


# == each error class ===============================================================================
def test_bulksms_no_credit_is_rejected_with_advice(world: World) -> None:
    """BulkSMS 25 ends the job rejected, and the report tells the sender to top up."""
    fake = world.fakes["bulksms"]
    assert isinstance(fake, FakeBulkSms)
    fake.force_code(25)
    data, text = report_for(world, submit(world, f"+{world.number('bulksms')}@bulksms.test", "hello"))
    assert (one_job(data)["status"], one_job(data)["code"]) == ("rejected", "25")
    assert "the account has no credit left: top up, then resend" in text


def test_bulksms_temporarily_unavailable_is_retried(world: World) -> None:
    """BulkSMS 40 is retried with the same stop_dup_id and then sent."""
    fake = world.fakes["bulksms"]
    assert isinstance(fake, FakeBulkSms)
    fake.force_code(40)
    number = world.number("bulksms")
    job = one_job(report_for(world, submit(world, f"+{number}@bulksms.test", "hello"))[0])
    assert (job["status"], job["attempts"]) == ("sent", 2)
    tries = [r for r in send_requests("bulksms", fake) if r.param("msisdn") == number]
    assert len({r.param("stop_dup_id") for r in tries}) == 1
    assert len(tries) == 2


def test_bulksms_bad_login_is_rejected(world: World) -> None:
    """Body credentials BulkSMS refuses (23) end rejected with plain words and no password anywhere."""
    body = f"username:bulkuser\npassword:wrong-pass-77\nmobile:{world.number('bulksms')}\ntext:hi\n"
    data, text = report_for(world, submit(world, "sms@bulksms.test", body))
    assert (one_job(data)["status"], one_job(data)["code"]) == ("rejected", "23")
    assert BULKSMS["23"] in text
    assert "wrong-pass-77" not in text + json.dumps(data)


@pytest.mark.parametrize(("word", "status"), [("error_credit", "rejected"), ("error_user", "rejected"),
                                              ("error_gw", "sent"), ("error_billing", "sent")])
def test_kobomobile_words(world: World, word: str, status: str) -> None:
    """KoboMobile's refusals end rejected with their words; error_gw and error_billing are retried, then sent."""
    fake = world.fakes["kobomobile"]
    assert isinstance(fake, FakeKoboMobile)
    fake.force_word(word)
    data, text = report_for(world, submit(world, f"+{world.number('kobomobile')}@kobomobile.test", "hello"))
    assert one_job(data)["status"] == status
    if status == "rejected":
        assert KOBOMOBILE[word] in text


@pytest.mark.parametrize("shape", ["meta", "error"])
def test_cellcast_bad_key_and_invalid_field(world: World, shape: str) -> None:
    """A wrong key (given in the mail body) is AUTH_FAILED and a bad sender FIELD_INVALID, in either body shape."""
    fake = world.fakes["cellcast"]
    assert isinstance(fake, FakeCellcast)
    fake.error_shape = shape  # type: ignore[assignment]
    try:
        bad_key = f"mobile:{world.number('cellcast')}\npassword:not-the-key\ntext:hi\n"
        data, text = report_for(world, submit(world, "sms@cellcast.test", bad_key))
        assert (one_job(data)["status"], one_job(data)["code"]) == ("rejected", "AUTH_FAILED")
        assert CELLCAST["AUTH_FAILED"] in text
        fake.inject(("status", 400, json.dumps({"meta": {"code": 400, "status": "FIELD_INVALID"}, "msg": "from"}),
                     {"Content-Type": "application/json"}))
        data, _ = report_for(world, submit(world, f"+{world.number('cellcast')}@cellcast.test", "hi"))
        assert (one_job(data)["status"], one_job(data)["code"]) == ("rejected", "FIELD_INVALID")
    finally:
        fake.error_shape = "meta"


def test_cellcast_over_limit_waits_and_sends(world: World) -> None:
    """429 OVER_LIMIT with Retry-After is retried after the wait, then sent."""
    fake = world.fakes["cellcast"]
    body = json.dumps({"meta": {"code": 429, "status": "OVER_LIMIT"}, "msg": "Too Many Requests", "data": []})
    fake.inject(("status", 429, body, {"Retry-After": "1", "Content-Type": "application/json"}))
    job = one_job(report_for(world, submit(world, f"+{world.number('cellcast')}@cellcast.test", "hi"))[0])
    assert (job["status"], job["attempts"]) == ("sent", 2)


@pytest.mark.parametrize(("code", "status", "attempts"), [("ERR010", "rejected", 1), ("ERR033", "rejected", 1)])
def test_kwtsms_codes(world: World, code: str, status: str, attempts: int) -> None:
    """ERR010 (zero balance) and ERR033 (no coverage) are rejected at once (ERR013's 30 s backoff and its retry:
    test_kwtsms_truth.py)."""
    fake = world.fakes["kwtsms"]
    assert isinstance(fake, FakeKwtSms)
    fake.force_error(code)
    job = one_job(report_for(world, submit(world, f"+{world.number('kwtsms')}@kwtsms.test", "hi"))[0])
    assert (job["status"], job["attempts"]) == (status, attempts)


# == retry with an unchanged idempotency key =========================================================
@pytest.mark.parametrize("kind", ["bulksms", "kobomobile"])
def test_retries_carry_the_same_idempotency_key(world: World, kind: str) -> None:
    """A reset after the request was read, then a 503: three attempts with one key, and exactly one SMS."""
    fake = world.fakes[kind]
    fake.inject(("reset_after_read",), ("status", 503, "busy", {}))
    number = world.number(kind)
    job = one_job(report_for(world, submit(world, f"+{number}@{kind}.test", "exactly once"))[0])
    assert (job["status"], job["attempts"]) == ("sent", MAX_ATTEMPTS)
    field = "stop_dup_id" if kind == "bulksms" else "message_uuid"
    target = "msisdn" if kind == "bulksms" else "to"
    tries = [r for r in send_requests(kind, fake) if r.param(target) == number]
    assert len(tries) == 3
    assert len({r.param(field) for r in tries}) == 1
    assert tries[0].param(field)
    assert sent_numbers(fake).count(number) == 1


@pytest.mark.parametrize("kind", ["bulksms", "kobomobile"])
def test_a_repeat_after_a_lost_answer_is_not_sent_twice(world: World, kind: str) -> None:
    """The provider took the request but answered too late; the retry gets the first reply: one SMS."""
    fake = world.fakes[kind]
    assert isinstance(fake, FakeBulkSms | FakeKoboMobile)
    duplicates = fake.duplicates
    fake.delay_next(1.5)
    number = world.number(kind)
    job = one_job(report_for(world, submit(world, f"+{number}@{kind}.test", "once only"))[0])
    assert job["status"] == "sent"
    assert job["attempts"] >= 2
    fake.wait_until(lambda: fake.duplicates > duplicates, timeout=60)  # the second of the two was not sent
    assert sent_numbers(fake).count(number) == 1


# == a 250-recipient broadcast split at the provider limit ===========================================
@pytest.mark.parametrize("kind", KINDS)
def test_broadcast_of_250_is_split_at_the_limit(world: World, kind: str) -> None:
    """250 numbers on keyvalue mobile: lines become ⌈250 / limit⌉ requests, each number sent exactly once."""
    spec, fake = SPECS[kind], world.fakes[kind]
    numbers = [spec.number(500 + i) for i in range(250)]
    before = len(send_requests(kind, fake))
    lines = "".join("mobile:" + ",".join(numbers[i : i + 10]) + "\n" for i in range(0, 250, 10))
    data, _ = report_for(world, submit(world, f"sms@{kind}.test", lines + "text:Storm warning\n"))
    assert data["summary"]["sent"] == 250
    assert len(send_requests(kind, fake)) - before == math.ceil(250 / spec.per_request)
    sent = [n for n in sent_numbers(fake) if n in set(numbers)]
    assert sorted(sent) == sorted(numbers)


# == the fault matrix =================================================================================
# What each provider's job ends as after one fault (then normal answers): "sent" means retried and sent.
MATRIX = {
    #              refused  400         401         429     500        503     timeout    reset
    "bulksms":    ("sent", "sent",     "rejected", "sent", "sent",    "sent", "sent",    "sent"),  # EAPI
    "kobomobile": ("sent", "rejected", "rejected", "sent", "sent",    "sent", "sent",    "sent"),
    "cellcast":   ("sent", "rejected", "rejected", "sent", "unknown", "sent", "unknown", "unknown"),
    "kapow":      ("sent", "rejected", "rejected", "sent", "unknown", "sent", "unknown", "unknown"),
    "kwtsms":     ("sent", "rejected", "rejected", "sent", "unknown", "sent", "unknown", "unknown"),
}
FAULTS = ("refused", "400", "401", "429", "500", "503", "timeout", "reset")


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", KINDS)
def test_fault_matrix(world: World, kind: str, fault: str) -> None:
    """One fault, then normal answers: the job ends as DESIGN.md's rules say, within max_attempts attempts."""
    fake = world.fakes[kind]
    expected = MATRIX[kind][FAULTS.index(fault)]
    number = world.number(kind)
    if fault == "refused":
        fake.refuse()
        sid = submit(world, f"+{number}@{kind}.test", f"fault {fault}")
        wait_until(lambda: jobs_of(world, sid)[0].attempts >= 1, interval=0.01)
        fake.start()
    else:
        if fault == "timeout":
            fake.delay_next(1.5)
        elif fault == "reset":
            fake.reset_next()
        else:
            headers = {"Retry-After": "1"} if fault == "429" else {}
            fake.fail_next(int(fault), "", headers)
        sid = submit(world, f"+{number}@{kind}.test", f"fault {fault}")
    data, text = report_for(world, sid)
    job = one_job(data)
    assert job["status"] == expected, job
    assert 1 <= job["attempts"] <= MAX_ATTEMPTS
    if expected == "unknown":
        assert "may have been sent" in text
    if fault == "timeout":  # the late request reaches the provider: it is sent once, never twice
        wait_until(lambda: number in sent_numbers(fake), timeout=60)
        assert sent_numbers(fake).count(number) == 1
    elif expected == "sent":
        assert sent_numbers(fake).count(number) == 1
    else:
        assert number not in sent_numbers(fake)


@pytest.mark.parametrize("kind", KINDS)
def test_a_provider_that_stays_down_expires_after_max_attempts(world: World, kind: str) -> None:
    """503 on every attempt: the job expires after exactly max_attempts attempts and nothing is sent."""
    fake = world.fakes[kind]
    fake.inject(*[("status", 503, "down", {})] * MAX_ATTEMPTS)
    number = world.number(kind)
    data, text = report_for(world, submit(world, f"+{number}@{kind}.test", "never"))
    job = one_job(data)
    assert (job["status"], job["attempts"], job["code"]) == ("expired", MAX_ATTEMPTS, "HTTP503")
    assert f"gave up after {MAX_ATTEMPTS} attempts" in text
    assert number not in sent_numbers(fake)
