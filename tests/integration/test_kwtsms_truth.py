"""KwtSMS through SMTP, answer shape by answer shape: smtplib → mail2sms → the KwtSMS fake (JSON API v4.1 and the
legacy text API) over HTTP → the outcome mail, read per number (sent / refused / may have been sent, with the code).

Also what KwtSMS takes but never delivers (emoji, invisible characters): refused at DATA naming the character, or
removed on a `strip_unsupported` route with a note in the outcome mail; and the configuration rules (`sender`
required at check-config, balance and sender IDs over JSON through `mail2sms balance`).

One mail2sms serves one fake (module scope); each test sends its own mail with its own numbers and waits for that
submission's report. Nothing here asserts on durations: tests wait for reports, requests and spool rows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from mail2sms.providers.kwtsms_reply import EXPLAIN as KWTSMS
from mail2sms.smtp import replies
from tests.fakes import kwtsms as fake_kwtsms
from tests.fakes.kwtsms import FakeKwtSms
from tests.fakes.server import RecordedRequest
from tests.harness import (
    ROOT,
    ThreadServer,
    message,
    outcome_of,
    send,
    wait_until,
    write_config,
)

PASSWORD = "kwt-truth-secret-7"
SENDER = "KWT-MESSAGE"
DROPPED = "96569"  # numbers the fake drops silently: KwtSMS's OK then counts fewer numbers than were sent

CONFIG = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "kwtuser"
password = "{password}"
sender = "{sender}"
rate = 100

[providers.kwttext]
type = "kwtsms"
url = "{url}"
username = "kwtuser"
password = "{password}"
sender = "{sender}"
rate = 100
options = {{ api = "text" }}

[providers.kwtcheck]
type = "kwtsms"
url = "{url}"
username = "kwtuser"
password = "{password}"
sender = "{sender}"
rate = 100
options = {{ test = true }}

[[routes]]
match = "sms@kwt.test"
format = "keyvalue"
provider = "kwt"
region = "KW"

[[routes]]
match = "*@kwt.test"
format = "address"
provider = "kwt"
region = "KW"

[[routes]]
match = "*@text.test"
format = "address"
provider = "kwttext"
region = "KW"

[[routes]]
match = "*@strip.test"
format = "address"
provider = "kwt"
region = "KW"
strip_unsupported = true

[[routes]]
match = "*@check.test"
format = "address"
provider = "kwtcheck"
region = "KW"
"""


@dataclass
class World:
    server: ThreadServer
    kwt: FakeKwtSms
    reports: Path
    config: Path
    next_number: int = 100
    seen: dict[str, tuple[str, dict[str, Any], str, EmailMessage]] = field(default_factory=dict)

    def numbers(self, count: int, prefix: str = "96550") -> list[str]:
        start, self.next_number = self.next_number, self.next_number + count
        return [f"{prefix}{i:06d}" for i in range(start, start + count)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("kwtsms")
    # same_number_interval 0: every test uses fresh numbers, and ERR013 retries reach the same number again.
    kwt = FakeKwtSms(accounts={"kwtuser": (PASSWORD, 1e6)}, same_number_interval=0.0, drop_prefixes=(DROPPED,))
    kwt.start()
    path, _ = write_config(tmp, CONFIG.format(url=kwt.url, password=PASSWORD, sender=SENDER))
    text = path.read_text(encoding="utf-8")
    text = text.replace("[dispatch]\n", "[dispatch]\nmax_attempts = 5\nbreaker_failures = 1000\n", 1)
    text = text.replace("[reports]\n", "[reports]\nper_sender_per_hour = 0\n", 1)
    path.write_text(text, encoding="utf-8")
    server = ThreadServer(path).start()
    try:
        yield World(server, kwt, tmp / "reports", path)
    finally:
        server.stop()
        kwt.stop()
        assert kwt.errors == []


@pytest.fixture(autouse=True)
def clean_fake(world: World) -> Iterator[None]:
    """Each test leaves the fake answering normally, with no fault or forced answer pending."""
    yield
    assert not world.kwt._forced
    assert not world.kwt._faults


# -- helpers ---------------------------------------------------------------------------------------
def submit(world: World, to: str | list[str], body: str) -> str:
    """Send a mail; return the submission id from the 250 reply."""
    rcpts = [to] if isinstance(to, str) else to
    code, text = send(world.server.port, message(rcpts, body), rcpts=rcpts)
    assert replies.QUEUED.matches(code, text), text
    return text.decode().split()[-1]


def report_for(world: World, sid: str) -> tuple[dict[str, Any], str]:
    """The outcome mail of submission `sid` (results.json and the text part), once it exists; never a secret."""
    data, text, _mail = wait_until(lambda: outcome_of(world.reports, world.seen, sid, (PASSWORD,)), timeout=60)
    return data, text


def by_number(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["number"].removeprefix("+"): job for job in data["jobs"]}


def requests_for(world: World, number: str) -> list[RecordedRequest]:
    return [r for r in world.kwt.requests if r.path.endswith("/send/") and number in (r.param("mobile") or "")]


def subject(world: World, sid: str) -> str:
    return next(str(m["Subject"]) for s, _, _, m in world.seen.values() if s == sid)


# -- JSON API: the answer per number ---------------------------------------------------------------
def test_json_ok_is_sent_with_what_kwtsms_charged(world: World) -> None:
    """A JSON OK counting every number: each is sent with the msg-id, and the mail shows the charge and balance."""
    numbers = world.numbers(2)
    data, text = report_for(world, submit(world, [f"{n}@kwt.test" for n in numbers], "Meeting at 10"))
    [request] = requests_for(world, numbers[0])
    assert request.headers["content-type"] == "application/json"
    msg_id = next(s.msg_id for s in world.kwt.sent if s.number == numbers[0])
    for job in by_number(data).values():
        assert (job["status"], job["provider_id"]) == ("sent", msg_id)
        assert job["detail"].startswith("KwtSMS took 2 of 2 numbers, charged 2 points; balance after ")
    assert "Detail: KwtSMS took 2 of 2 numbers, charged 2 points" in text


@pytest.mark.parametrize("domain", ["kwt.test", "text.test"], ids=["json", "text"])
def test_fewer_numbers_taken_is_may_have_been_sent_for_every_number(world: World, domain: str) -> None:
    """KwtSMS takes 2 of 3 numbers and does not say which: all three may have been sent, none is "sent", and the
    mail says how many were taken."""
    kept = world.numbers(2)
    [dropped] = world.numbers(1, prefix=DROPPED)
    data, text = report_for(world, submit(world, [f"{n}@{domain}" for n in (*kept, dropped)], "Gate code 4411"))
    jobs = by_number(data)
    assert {j["status"] for j in jobs.values()} == {"unknown"}
    assert {j["code"] for j in jobs.values()} == {"PARTIAL"}
    assert "KwtSMS took 2 of 3 numbers and did not say which" in jobs[dropped]["error"]
    assert "0 sent" in text
    assert "3 may have been sent" in text
    assert [s.number for s in world.kwt.sent if s.number in {*kept, dropped}] == kept  # the fake's truth


def test_err024_with_http_403_is_refused_with_kwtsms_code(world: World) -> None:
    """ERR024 arriving as JSON with HTTP 403 is refused once, naming ERR024 and the IP allow-list, not HTTP403."""
    [number] = world.numbers(1)
    world.kwt.force_error("ERR024")
    data, text = report_for(world, submit(world, f"{number}@kwt.test", "hello"))
    job = data["jobs"][0]
    assert (job["status"], job["code"], job["attempts"]) == ("rejected", "ERR024", 1)
    assert job["error"] == KWTSMS["ERR024"]
    assert "ERR024" in text
    assert "allowed list" in text


def test_unknown_code_keeps_code_and_kwtsms_words(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A code mail2sms does not know is refused with that code and KwtSMS's own description, sanitised."""
    monkeypatch.setitem(fake_kwtsms.DESCRIPTIONS, "ERR077", "Number is on the\noperator's block list")
    [number] = world.numbers(1)
    world.kwt.force_error("ERR077")
    data, text = report_for(world, submit(world, f"{number}@kwt.test", "hello"))
    job = data["jobs"][0]
    assert (job["status"], job["code"]) == ("rejected", "ERR077")
    assert 'KwtSMS refused the request with ERR077: "Number is on the operator\'s block list"' in job["error"]
    assert "ERR077" in text


def test_known_report_code_is_refused_in_plain_words(world: World) -> None:
    """ERR030 (stuck in the queue), one of the newer codes, is refused with its own explanation."""
    [number] = world.numbers(1)
    world.kwt.force_error("ERR030")
    data, _ = report_for(world, submit(world, f"{number}@kwt.test", "hello"))
    assert (data["jobs"][0]["status"], data["jobs"][0]["error"]) == ("rejected", KWTSMS["ERR030"])


def job_row(world: World, number: str) -> tuple[str, int, float, float, str | None]:
    """(state, attempts, next_attempt_at, updated_at, code) of the job for `number`, read from the spool file."""
    with sqlite3.connect(world.config.parent / "spool.db", timeout=30) as db:
        row = db.execute(
            "SELECT state, attempts, next_attempt_at, updated_at, code FROM jobs WHERE number = ?", (number,)
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3], row[4]


def test_queue_full_backs_off_30_then_60_seconds_then_sends(world: World) -> None:
    """ERR013 (queue full): the job is due at least 30 s after the first refusal was recorded and 60 s after the
    second (the clock is moved on in the spool between them), then goes and is sent."""
    [number] = world.numbers(1)
    world.kwt.force_error("ERR013")
    sid = submit(world, f"{number}@kwt.test", "Queue test")
    for attempt, wait in ((1, 30.0), (2, 60.0)):
        wait_until(lambda n=attempt: job_row(world, number)[1] == n, timeout=120)
        state, attempts, due, recorded, code = job_row(world, number)
        assert (state, attempts, code) == ("queued", attempt, "ERR013")
        assert due - recorded >= wait - 1  # both stored by the dispatcher; 1 s for the moment between them
        if attempt == 1:
            world.kwt.force_error("ERR013")
        with sqlite3.connect(world.config.parent / "spool.db", timeout=30) as db:
            db.execute("UPDATE jobs SET next_attempt_at = 0 WHERE number = ?", (number,))  # time passes
    data, _ = report_for(world, sid)
    assert (data["jobs"][0]["status"], data["jobs"][0]["attempts"]) == ("sent", 3)
    assert len(requests_for(world, number)) == 3


# -- test mode and dry runs ------------------------------------------------------------------------
def test_test_mode_is_validated_by_kwtsms_and_never_reported_sent(world: World) -> None:
    """options.test sends test=1: KwtSMS validates and sends nothing, so the mail says refused (TEST), not sent."""
    [number] = world.numbers(1)
    data, text = report_for(world, submit(world, f"{number}@check.test", "Checking the account"))
    job = data["jobs"][0]
    assert (job["status"], job["code"]) == ("rejected", "TEST")
    assert [t.number for t in world.kwt.tested] == [number]
    assert number not in {s.number for s in world.kwt.sent}
    assert requests_for(world, number)[0].param("test") == "1"
    assert "sent nothing to the phone" in text


def test_keyvalue_dry_run_reaches_no_provider(world: World) -> None:
    """`test:1` in a key:value mail is mail2sms's own dry run: checked and reported, no request reaches KwtSMS."""
    [number] = world.numbers(1)
    data, text = report_for(world, submit(world, "sms@kwt.test", f"mobile:{number}\ntest:1\ntext:Dry+run\n"))
    assert data["jobs"][0]["status"] == "dry_run"
    assert requests_for(world, number) == []
    assert "nothing was sent" in text


# -- emoji and invisible characters ---------------------------------------------------------------
def test_emoji_is_refused_at_data_naming_it_and_where(world: World) -> None:
    """An emoji on a KwtSMS route is refused with 554 5.6.0 naming it, its code point, line and place; no request."""
    [number] = world.numbers(1)
    code, text = send(world.server.port, message(f"{number}@kwt.test", "Hello\nSee you \U0001f600 soon"))
    assert replies.BAD_CONTENT.matches(code, text)
    assert b"GRINNING FACE (U+1F600), at line 2, character 9" in text
    assert b"strip_unsupported" in text
    assert requests_for(world, number) == []


def test_invisible_character_in_arabic_keyvalue_text_is_refused(world: World) -> None:
    """A zero-width space in Arabic text (where smart replacement does not apply) is refused naming it."""
    [number] = world.numbers(1)
    body = f"mobile:{number}\ntext:مرحبا\u200bبكم\n"
    code, text = send(world.server.port, message("sms@kwt.test", body))
    assert replies.BAD_CONTENT.matches(code, text)
    assert b"ZERO WIDTH SPACE (U+200B), at line 1, character 6" in text
    assert requests_for(world, number) == []


def test_strip_route_removes_them_and_the_mail_says_which(world: World) -> None:
    """strip_unsupported: the SMS goes without the emoji and variation selector, delivered (not stuck), and the
    mail notes what was removed."""
    [number] = world.numbers(1)
    data, text = report_for(world, submit(world, f"{number}@strip.test", "Sale \u2764\ufe0f today \U0001f525"))
    job = data["jobs"][0]
    assert job["status"] == "sent"
    assert [s.text for s in world.kwt.sent if s.number == number] == ["Sale  today "]
    assert not [s for s in world.kwt.stuck if s.number == number]
    note = (
        "removed 3 characters that KwtSMS cannot deliver: HEAVY BLACK HEART (U+2764), "
        "VARIATION SELECTOR-16 (U+FE0F), FIRE (U+1F525)"
    )
    assert job["notes"] == [note]
    assert f"Note: {note}" in text


# -- configuration and the CLI --------------------------------------------------------------------
def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "mail2sms", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=60,
        check=False,
    )


def test_check_config_requires_a_kwtsms_sender(tmp_path: Path) -> None:
    """check-config fails (exit 1) naming providers.<name>.sender when a kwtsms provider has none."""
    body = CONFIG.format(url="https://www.kwtsms.com/API/", password="p", sender="").replace('sender = ""\n', "", 1)
    path, _ = write_config(tmp_path, body)
    done = cli(path, "check-config")
    assert done.returncode == 1
    assert "providers.kwt.sender: KwtSMS needs a sender ID" in done.stdout + done.stderr


def test_balance_cli_reads_credit_and_sender_ids_over_json(world: World) -> None:
    """`mail2sms balance` shows KwtSMS's available credit and the account's sender IDs, read with the JSON API."""
    done = cli(world.config, "balance", "kwt")
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("kwt ")]
    assert f"of 1000000 purchased; sender IDs: {SENDER}" in line
    assert PASSWORD not in done.stdout + done.stderr
    balance_requests = [r for r in world.kwt.requests if r.path.endswith("/balance/")]
    assert balance_requests[-1].headers["content-type"] == "application/json"


def test_fake_without_json_content_type_answers_the_text_api(world: World) -> None:
    """The fake, like KwtSMS, speaks JSON only to a JSON content type: the same JSON body sent as a plain POST gets
    the legacy text API's answer (its fields are not read, so the login fails: ERR003), and with the header JSON."""
    fields = {"username": "kwtuser", "password": PASSWORD}
    plain = httpx.post(world.kwt.url + "balance/", content=json.dumps(fields), headers={"Content-Type": "text/plain"})
    typed = httpx.post(world.kwt.url + "balance/", json=fields)
    assert plain.text == "ERROR:ERR003"
    assert typed.json()["result"] == "OK"
    assert typed.headers["content-type"] == "application/json"


def test_fake_charges_for_emoji_and_never_delivers_it(world: World) -> None:
    """What mail2sms guards against, as the fake reproduces it: an emoji SMS sent straight to the API is taken and
    charged, and lands in `stuck`, never in `sent`."""
    [number] = world.numbers(1)
    before = world.kwt.balance_of("kwtuser")
    fields = {
        "username": "kwtuser",
        "password": PASSWORD,
        "sender": SENDER,
        "mobile": number,
        "lang": "3",
        "message": "Party \U0001f389",
    }
    answer = httpx.post(world.kwt.url + "send/", json=fields).json()
    assert (answer["result"], answer["numbers"], answer["points-charged"]) == ("OK", 1, 1)
    assert world.kwt.balance_of("kwtuser") == before - 1
    assert [s.number for s in world.kwt.stuck if s.number == number] == [number]
    assert number not in {s.number for s in world.kwt.sent}
