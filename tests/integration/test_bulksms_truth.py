"""BulkSMS through SMTP, answer shape by answer shape: smtplib → mail2sms → the BulkSMS fakes (JSON API v1 and the
legacy EAPI) over HTTP → the outcome mail, read per number (sent / refused / may have been sent, with the code).

Also the personalised batch: a 900-row CSV with 450 different texts reaches BulkSMS in one request (JSON array, or
EAPI `send_batch`), while each row keeps its own outcome and its own row in results.csv.

One mail2sms serves both fakes (module scope); each test sends its own mail with its own numbers and waits for that
submission's report. Nothing here asserts on durations: tests wait for reports and requests.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mail2sms.providers import bulksms, bulksms_json
from mail2sms.providers.bulksms import EXPLAIN as BULKSMS
from mail2sms.smtp import replies
from tests.fakes.bulksms import BATCH, FakeBulkSms, FakeBulkSmsJson, problem
from tests.harness import (
    ROOT,
    ThreadServer,
    message,
    outcome_of,
    send,
    wait_until,
    write_config,
)

TOKEN_ID = "5A1B2C3D4E5F-02-B"
TOKEN_SECRET = "json-token-secret-9"
EAPI_PASSWORD = "eapi-secret-pw-8"
SECRETS = (TOKEN_SECRET, EAPI_PASSWORD)

CONFIG = """
[providers.json]
type = "bulksms"
url = "{json}"
username = "{token_id}"
password = "{token_secret}"
sender = "Shop"
timeout = "1s"
rate = 50

[providers.eapi]
type = "bulksms"
url = "{eapi}"
username = "eapiuser"
password = "{eapi_password}"
sender = "Shop"
timeout = "1s"
rate = 50
options = {{ api = "eapi" }}
"""
ROUTES = """
[[routes]]
match = "sms@{name}.test"
format = "keyvalue"
provider = "{name}"
region = "GB"

[[routes]]
match = "csv@{name}.test"
format = "csv"
provider = "{name}"
region = "GB"

[[routes]]
match = "*@{name}.test"
format = "address"
provider = "{name}"
region = "GB"
"""


@dataclass
class World:
    server: ThreadServer
    json: FakeBulkSmsJson
    eapi: FakeBulkSms
    reports: Path
    config: Path
    next_number: int = 100
    seen: dict[str, tuple[str, dict[str, Any], str, EmailMessage]] = field(default_factory=dict)

    def numbers(self, count: int) -> list[str]:
        start, self.next_number = self.next_number, self.next_number + count
        return [f"4477009{i:05d}" for i in range(start, start + count)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("bulksms")
    json_fake = FakeBulkSmsJson(accounts={TOKEN_ID: (TOKEN_SECRET, 1e6)}).start()
    eapi_fake = FakeBulkSms(accounts={"eapiuser": (EAPI_PASSWORD, 1e6)}, max_batch=5000).start()
    body = CONFIG.format(json=json_fake.url, eapi=eapi_fake.url, token_id=TOKEN_ID, token_secret=TOKEN_SECRET,
                         eapi_password=EAPI_PASSWORD)
    body += "".join(ROUTES.format(name=name) for name in ("json", "eapi"))
    path, _ = write_config(tmp, body)
    text = path.read_text(encoding="utf-8")
    text = text.replace("[dispatch]\n", "[dispatch]\nmax_attempts = 4\nbreaker_failures = 1000\n", 1)
    text = text.replace("[reports]\n", "[reports]\nper_sender_per_hour = 0\n", 1)
    path.write_text(text, encoding="utf-8")
    server = ThreadServer(path).start()
    try:
        yield World(server, json_fake, eapi_fake, tmp / "reports", path)
    finally:
        server.stop()
        for fake in (json_fake, eapi_fake):
            fake.stop()
            assert fake.errors == []


@pytest.fixture(autouse=True)
def clean_fakes(world: World) -> Iterator[None]:
    """Each test leaves both fakes answering normally, with no fault or forced answer pending."""
    yield
    world.json.misconfigured(None)
    world.eapi.misconfigured(None)
    world.json.status_of.clear()
    world.json.omit.clear()
    assert not world.json._faults
    assert not world.eapi._faults


# -- helpers ---------------------------------------------------------------------------------------
def submit(world: World, to: str | list[str], msg: EmailMessage | str) -> str:
    """Send a mail (a body, or a built message); return the submission id from the 250 reply."""
    built = msg if isinstance(msg, EmailMessage) else message(to, msg)
    code, text = send(world.server.port, built, rcpts=[to] if isinstance(to, str) else to)
    assert replies.QUEUED.matches(code, text), text
    return text.decode().split()[-1]


def report_for(world: World, sid: str) -> tuple[dict[str, Any], str, EmailMessage]:
    """The outcome mail of submission `sid`: results.json, the text part and the mail itself, once it exists."""
    found: tuple[dict[str, Any], str, EmailMessage] = wait_until(
        lambda: outcome_of(world.reports, world.seen, sid, SECRETS), timeout=60
    )
    return found


def by_number(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["number"].removeprefix("+"): job for job in data["jobs"]}


def json_posts(world: World) -> int:
    return sum(1 for r in world.json.requests if r.method == "POST" and r.path == "/v1/messages")


def csv_mail(to: str, rows: list[tuple[str, str]]) -> EmailMessage:
    msg = message(to, "Please send these.")
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)  # texts with commas are quoted, as Excel does
    data = out.getvalue().encode("utf-8")
    msg.add_attachment(data, maintype="text", subtype="csv", filename="list.csv")
    return msg


def results_csv(mail: EmailMessage) -> list[list[str]]:
    for part in mail.iter_attachments():
        if part.get_filename() == "results.csv":
            data = part.get_payload(decode=True)
            assert isinstance(data, bytes)
            return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    raise AssertionError("no results.csv")


# -- personalised batches ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["json", "eapi"])
def test_900_rows_with_450_texts_are_one_request(world: World, name: str) -> None:
    """A 900-row CSV with 450 distinct texts reaches BulkSMS in one request; every row is sent with its own text."""
    numbers = world.numbers(900)
    rows = [(n, f"Hello {i // 2}, your code is {1000 + i // 2}") for i, n in enumerate(numbers)]
    before_json, before_eapi = json_posts(world), len(world.eapi.requests)
    data, text, mail = report_for(world, submit(world, f"csv@{name}.test", csv_mail(f"csv@{name}.test", rows)))
    if name == "json":
        assert json_posts(world) - before_json == 1
        got = {m.number: m.text for m in world.json.sent if m.number in set(numbers)}
    else:
        new = world.eapi.requests[before_eapi:]
        assert [r.path.removeprefix("/eapi/") for r in new] == [BATCH]
        got = {s.number: s.text for s in world.eapi.sent if s.number in set(numbers)}
    assert got == dict(rows)
    jobs = by_number(data)
    assert all(jobs[n]["status"] == "sent" for n in numbers)
    assert [jobs[n]["row"] for n in numbers] == list(range(1, 901))
    table = results_csv(mail)
    assert len(table) == 901
    assert {r[0]: r[1] for r in table[1:]} == dict(rows)
    assert "900 SMS: 900 sent." in text


# -- JSON API: the answer per number -------------------------------------------------------------------
def test_json_each_number_gets_the_truth_of_its_message_object(world: World) -> None:
    """ACCEPTED is sent, FAILED.BLOCKED is refused with BulkSMS's subtype, a number missing from the 201 array
    may have been sent; all three from one request."""
    ok, blocked, missing = world.numbers(3)
    world.json.status_of[blocked] = ("FAILED", "BLOCKED")
    world.json.omit.add(missing)
    to = [f"+{n}@json.test" for n in (ok, blocked, missing)]
    data, text, _ = report_for(world, submit(world, to, "Your parcel is here"))
    jobs = by_number(data)
    assert (jobs[ok]["status"], jobs[ok]["code"]) == ("sent", "ACCEPTED")
    assert jobs[ok]["provider_id"] in {m.id for m in world.json.sent}
    assert (jobs[blocked]["status"], jobs[blocked]["code"]) == ("rejected", "FAILED.BLOCKED")
    assert jobs[blocked]["error"] == BULKSMS["FAILED.BLOCKED"]
    assert (jobs[missing]["status"], jobs[missing]["code"]) == ("unknown", "MISSING")
    assert "may have been sent" in text
    assert "refused" in text


def test_json_insufficient_credit_is_refused_with_bulksms_words(world: World) -> None:
    """403 insufficient-credits: every number refused, the mail quotes BulkSMS's title and detail."""
    world.json.force(problem(403, "Insufficient Credits", "The submission needs 2 credits", "insufficient-credits"))
    numbers = world.numbers(2)
    data, text, _ = report_for(world, submit(world, [f"{n}@json.test" for n in numbers], "Sale today"))
    assert {j["status"] for j in data["jobs"]} == {"rejected"}
    assert {j["code"] for j in data["jobs"]} == {"INSUFFICIENT_CREDITS"}
    assert "BulkSMS said: Insufficient Credits: The submission needs 2 credits" in text


def test_json_wrong_token_is_one_clear_refusal(world: World) -> None:
    """Body credentials BulkSMS does not accept (401) end refused after one request, with advice and no secret."""
    [number] = world.numbers(1)
    before = json_posts(world)
    body = f"username:{TOKEN_ID}\npassword:not-the-secret-77\nmobile:{number}\ntext:hi\n"
    data, text, _ = report_for(world, submit(world, "sms@json.test", body))
    job = data["jobs"][0]
    assert (job["status"], job["code"], job["attempts"]) == ("rejected", "UNAUTHORIZED", 1)
    assert json_posts(world) - before == 1
    assert "API token id and secret" in text
    assert "not-the-secret-77" not in text


@pytest.mark.parametrize(("status", "code", "words"), [(301, "HTTP301", BULKSMS["JSON_REDIRECT"]),
                                                       (404, "NOT_FOUND", BULKSMS["NOT_FOUND"])])
def test_json_wrong_url_is_a_configuration_error(world: World, status: int, code: str, words: str) -> None:
    """A redirect or 404 (wrong url) is refused on the first attempt naming the url, not retried."""
    world.json.misconfigured(status)
    [number] = world.numbers(1)
    data, text, _ = report_for(world, submit(world, f"{number}@json.test", "hello"))
    job = data["jobs"][0]
    assert (job["status"], job["code"], job["attempts"]) == ("rejected", code, 1)
    assert words.split(":")[0] in text


def test_json_timeout_is_retried_with_the_same_deduplication_id_and_sent_once(world: World) -> None:
    """A request answered too late is asked again with the same deduplication-id: BulkSMS sends the SMS once."""
    [number] = world.numbers(1)
    duplicates = world.json.duplicates
    world.json.delay_next(1.5)
    data, _, _ = report_for(world, submit(world, f"{number}@json.test", "slow one"))
    assert data["jobs"][0]["status"] == "sent"
    # Whichever of the late first request and the retry BulkSMS handles second is answered from its memory.
    wait_until(lambda: world.json.duplicates == duplicates + 1, timeout=60)
    assert [m.number for m in world.json.sent].count(number) == 1
    posts = [r for r in world.json.requests if r.method == "POST" and f'"+{number}"'.encode() in r.body]
    assert len({r.param("deduplication-id") for r in posts}) == 1


@pytest.mark.parametrize(("status", "headers"), [(429, {"Retry-After": "1"}), (503, {})])
def test_json_temporary_errors_are_retried_then_sent(world: World, status: int, headers: dict[str, str]) -> None:
    """429 and 503 (problem JSON) are retried; the SMS is then sent once."""
    [number] = world.numbers(1)
    reply = problem(status, "Too Many Requests" if status == 429 else "Service Unavailable")
    world.json.fail_next(status, str(reply.body), {**headers, "Content-Type": "application/json"})
    data, _, _ = report_for(world, submit(world, f"{number}@json.test", f"after {status}"))
    assert data["jobs"][0]["status"] == "sent"
    assert [m.number for m in world.json.sent].count(number) == 1


def test_json_schedule_goes_to_bulksms(world: World) -> None:
    """sendtime: becomes schedule-date (UTC); BulkSMS answers SCHEDULED and the job is sent."""
    [number] = world.numbers(1)
    when = (datetime.now(UTC) + timedelta(days=3)).replace(second=0, microsecond=0)
    data, _, _ = report_for(world, submit(world, "sms@json.test",
                                          f"mobile:{number}\nsendtime:{when:%Y-%m-%d %H:%M}\ntext:Reminder\n"))
    assert (data["jobs"][0]["status"], data["jobs"][0]["code"]) == ("sent", "SCHEDULED")
    [sent] = [m for m in world.json.sent if m.number == number]
    assert sent.schedule == when


# -- the idempotency-key window ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["json", "eapi"])
def test_an_ambiguous_attempt_past_the_key_window_may_have_been_sent(world: World, name: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the provider may have forgotten the key, a job whose last answer was a timeout is not asked again: the
    mail says "may have been sent" (the window is set to zero here so that the retry is already past it)."""
    module: Any = bulksms_json if name == "json" else bulksms
    monkeypatch.setattr(module, "KEY_WINDOW", 0.0)
    fake = world.json if name == "json" else world.eapi
    [number] = world.numbers(1)
    before = len(fake.requests)
    fake.delay_next(1.5)
    data, text, _ = report_for(world, submit(world, f"{number}@{name}.test", "late answer"))
    job = data["jobs"][0]
    assert (job["status"], job["code"]) == ("unknown", "KEY_EXPIRED")
    assert "may have been sent" in text
    assert len(fake.requests) - before == 1  # asked once, never again with a key BulkSMS may have forgotten
    wait_until(lambda: number in [m.number for m in fake.sent], timeout=60)  # the late request did send it


# -- EAPI: configuration errors -----------------------------------------------------------------------
@pytest.mark.parametrize("status", [301, 401, 404])
def test_eapi_wrong_host_or_version_is_one_clear_refusal(world: World, status: int) -> None:
    """EAPI 3xx/401/404 (wrong regional host, removed version) end refused after one attempt with the cause."""
    world.eapi.misconfigured(status)
    [number] = world.numbers(1)
    before = len(world.eapi.requests)
    data, text, _ = report_for(world, submit(world, f"{number}@eapi.test", "hello"))
    job = data["jobs"][0]
    assert (job["status"], job["code"], job["attempts"]) == ("rejected", f"HTTP{status}", 1)
    assert len(world.eapi.requests) - before == 1
    assert job["error"] == BULKSMS[f"HTTP{status}"]
    assert "provider's url" in text


# -- balance -------------------------------------------------------------------------------------------
def test_balance_reads_both_apis(world: World) -> None:
    """`mail2sms balance` reads the JSON API's profile (credits.balance) and the EAPI's get_credits."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "mail2sms", "balance", "--config", str(world.config)],
                          capture_output=True, text=True, env=env, cwd=world.config.parent, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    table = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:] if line.strip()}
    assert table["json"][1] == table["eapi"][1] == "bulksms"
    assert float(table["json"][2]) == pytest.approx(world.json.credits_of(TOKEN_ID))
    assert float(table["eapi"][2]) == pytest.approx(world.eapi.credits_of("eapiuser"), abs=0.01)
    assert any(r.path == "/v1/profile" and r.method == "GET" for r in world.json.requests)
    for secret in SECRETS:
        assert secret not in done.stdout + done.stderr
