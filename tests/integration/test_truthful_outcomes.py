"""The provider fault matrix for Cellcast, KoboMobile and Kapow, read from the outcome mail a sender gets.

smtplib → mail2sms → a stateful fake provider over HTTP on loopback, answering in the shapes providers.md's
"What the field adds" describes (Cellcast's `SUCCESS` with nothing queued, KoboMobile's prose, Kapow's `OK` with
too few ids, bodies with non-200 statuses) and with transport faults. Each test reads the outcome mail and asserts
that it says exactly "sent", "refused" or "may have been sent" for each number, with the provider's code: an
outcome is never better than the evidence. One mail2sms serves the three providers (module scope); each test
leaves the fakes as it found them. Nothing here waits on time: tests wait for the report to appear.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mail2sms.providers.cellcast import EXPLAIN as CELLCAST
from mail2sms.providers.kapow import EXPLAIN as KAPOW
from mail2sms.providers.kobomobile import EXPLAIN as KOBOMOBILE
from tests.fakes.cellcast import NOT_QUEUED_REASON, FakeCellcast
from tests.fakes.kapow import FakeKapow
from tests.fakes.kobomobile import FakeKoboMobile
from tests.fakes.server import FakeProvider
from tests.harness import ThreadServer, report_json, report_text, wait_until
from tests.integration.test_providers_smtp import ROUTES, matrix_server, submit_to

CELLCAST_KEY = "truth-cellcast-key-31"
KOBO_PASSWORD = "truth-kobo-pw-32"
KAPOW_PASSWORD = "truth-kapow-pw-33"
SECRETS = (CELLCAST_KEY, KOBO_PASSWORD, KAPOW_PASSWORD)

CONFIG = """
[providers.cell]
type = "cellcast"
url = "{cellcast}"
key = "{cellcast_key}"
sender = "Clinic"
timeout = "1s"
rate = 50

[providers.kobo]
type = "kobomobile"
url = "{kobomobile}"
username = "kobouser"
password = "{kobo_password}"
sender = "Shop"
timeout = "1s"
rate = 50

[providers.kapow]
type = "kapow"
url = "{kapow}"
username = "kapowuser"
password = "{kapow_password}"
timeout = "1s"
rate = 50
"""
PROVIDERS = {"cellcast": ("cell", "AU"), "kobomobile": ("kobo", "NG"), "kapow": ("kapow", "GB")}
NUMBERS = {"cellcast": "614001{:05d}", "kobomobile": "2348031{:06d}", "kapow": "447700902{:03d}"}
UK_NUMBER = "447700900{:03d}"  # outside Australia: Cellcast does not queue it

# How the text part words each outcome, and the status results.json gives it.
SENT, REFUSED, MAYBE = "sent", "refused", "may have been sent (unknown)"
STATUS = {SENT: "sent", REFUSED: "rejected", MAYBE: "unknown"}


@dataclass
class World:
    server: ThreadServer
    cellcast: FakeCellcast
    kobo: FakeKoboMobile
    kapow: FakeKapow
    reports: Path
    next_id: Iterator[int]
    seen: dict[str, tuple[str, dict[str, Any], str]] = field(default_factory=dict)

    def number(self, kind: str) -> str:
        return NUMBERS[kind].format(next(self.next_id))

    def fakes(self) -> list[FakeProvider]:
        return [self.cellcast, self.kobo, self.kapow]


def _counter() -> Iterator[int]:
    i = 0
    while True:
        i += 1
        yield i


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """mail2sms with routes to the Cellcast, KoboMobile and Kapow fakes, short retries, no report limit."""
    tmp = tmp_path_factory.mktemp("truth")
    cellcast = FakeCellcast(keys={CELLCAST_KEY: 10_000.0})
    kobo = FakeKoboMobile(accounts={"kobouser": (KOBO_PASSWORD, 10_000.0)})
    kapow = FakeKapow(accounts={"kapowuser": (KAPOW_PASSWORD, 10_000)})
    for fake in (cellcast, kobo, kapow):
        fake.start()
    body = CONFIG.format(
        cellcast=cellcast.url,
        kobomobile=kobo.url,
        kapow=kapow.url,
        cellcast_key=CELLCAST_KEY,
        kobo_password=KOBO_PASSWORD,
        kapow_password=KAPOW_PASSWORD,
    )
    body += "".join(ROUTES.format(kind=k, name=n, region=r) for k, (n, r) in PROVIDERS.items())
    server = matrix_server(tmp, body)
    try:
        yield World(server, cellcast, kobo, kapow, tmp / "reports", _counter())
    finally:
        server.stop()
        for fake in (cellcast, kobo, kapow):
            fake.stop()
            assert fake.errors == []


@pytest.fixture(autouse=True)
def clean_fakes(world: World) -> Iterator[None]:
    """Every fake listens, has no fault pending and answers in its default shapes when a test ends."""
    yield
    for fake in world.fakes():
        fake.start()
        assert not fake._faults, "a test left an injected fault unused"
    world.cellcast.australia_only, world.cellcast.reasons, world.cellcast.ids = True, "none", "messages"
    world.kobo.error_status = 200
    world.kapow.returnids = "all"


# -- helpers ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """One submission's outcome mail: its subject, results.json and text part."""

    subject: str
    data: dict[str, Any]
    text: str

    def block(self, number: str) -> str:
        """The text part's paragraph about `number` (the one starting a line: the summary and texts name it too)."""
        start = self.text.index(f"\n+{number}") + 1
        end = self.text.find("\n\n", start)
        return self.text[start : end if end >= 0 else None]

    def job(self, number: str) -> dict[str, Any]:
        [job] = [j for j in self.data["jobs"] if j["number"] == f"+{number}"]
        assert isinstance(job, dict)
        return job

    def says(self, number: str, words: str, code: str | None = None, *quoted: str) -> dict[str, Any]:
        """Assert the mail says `words` for `number` (text and results.json), names `code` and quotes `quoted`."""
        block, job = self.block(number), self.job(number)
        assert block.split("\n")[0].endswith(f": {words}"), block
        assert job["status"] == STATUS[words], job
        if code is None:
            assert job["code"] is None, job
            assert "Error" not in block, block
        else:
            assert job["code"] == code, job
            [error] = [line for line in block.split("\n") if line.startswith("  Error")]
            assert code in error, error
        for text in quoted:
            assert text in block, block
        return job


def submit(world: World, to: str | list[str], body: str) -> str:
    """Send a mail; return the submission id from the 250 reply."""
    return submit_to(world.server.port, to, body)


def outcome(world: World, sid: str) -> Outcome:
    """The outcome mail of submission `sid`, once it has been written."""

    def find() -> Outcome | None:
        new = world.reports / "new"
        for path in sorted(new.iterdir()) if new.is_dir() else []:
            if path.name not in world.seen:
                mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                assert isinstance(mail, EmailMessage)
                data = report_json(mail)
                world.seen[path.name] = (str(mail["Subject"]), data, report_text(mail))
        for subject, data, text in world.seen.values():
            if data["submission"] == sid:
                return Outcome(subject, data, text)
        return None

    found: Outcome = wait_until(find, timeout=120)
    raw = found.text + json.dumps(found.data) + found.subject
    for secret in SECRETS:
        assert secret not in raw
    return found


def attempts(world: World, sid: str) -> int:
    """Attempts made so far for the (single) job of submission `sid`, as the spool has them."""
    app = world.server.app
    assert app is not None
    found = asyncio.run_coroutine_threadsafe(app.spool.get(sid), world.server.loop).result(10)
    assert found is not None
    return found[1][0].attempts


def submit_with_fault(world: World, fake: FakeProvider, to: str, fault: str) -> str:
    """Submit a mail to `to` while `fake` suffers `fault` on the first request; return the submission id."""
    if fault == "refused":
        fake.refuse()
        sid = submit(world, to, f"fault {fault}")
        wait_until(lambda: attempts(world, sid) >= 1, interval=0.01)  # a first attempt met a closed port
        fake.start()
        return sid
    if fault == "reset":
        fake.reset_next()
    elif fault == "timeout":
        fake.delay_next(1.5)  # the providers' timeout is 1 s
    elif fault == "429":
        over = {"meta": {"code": 429, "status": "OVER_LIMIT"}, "msg": "Too Many Requests", "data": []}
        fake.fail_next(429, json.dumps(over), {"Retry-After": "1", "Content-Type": "application/json"})
    else:
        fake.fail_next(int(fault), "", {})
    return submit(world, to, f"fault {fault}")


def sent_to(fake: FakeCellcast | FakeKoboMobile | FakeKapow) -> list[str]:
    if isinstance(fake, FakeCellcast):
        return [s.to.removeprefix("+") for s in fake.sent]
    return [s.number for s in fake.sent]


# == Cellcast =========================================================================================
def test_cellcast_success_is_sent_with_ids(world: World) -> None:
    """Two Australian numbers Cellcast lists in `messages` are each sent, with their own message id."""
    first, second = world.number("cellcast"), world.number("cellcast")
    mail = outcome(world, submit(world, [f"+{first}@cellcast.test", f"+{second}@cellcast.test"], "Clinic open"))
    ids = {s.to.removeprefix("+"): s.message_id for s in world.cellcast.sent}
    for number in (first, second):
        assert mail.says(number, SENT)["provider_id"] == ids[number]
    assert mail.subject == "SMS sent: 2 of 2: sms"


def test_cellcast_number_outside_australia_is_refused_not_sent(world: World) -> None:
    """`SUCCESS` listing only the Australian number: that one is sent, the UK one refused with Cellcast's words."""
    au, uk = world.number("cellcast"), UK_NUMBER.format(next(world.next_id))
    mail = outcome(world, submit(world, "sms@cellcast.test", f"mobile:{au},+{uk}\ntext:Reminder\n"))
    job = mail.says(au, SENT)
    assert job["detail"] == "Cellcast queued 1 of the 2 numbers sent"
    assert "  Detail: Cellcast queued 1 of the 2 numbers sent" in mail.block(au)
    mail.says(uk, REFUSED, "NOT_QUEUED", CELLCAST["NOT_QUEUED"], 'Cellcast\'s own words: "Queued"')
    assert mail.subject == "SMS partly sent: 1 of 2: sms"
    assert uk not in sent_to(world.cellcast)


def test_cellcast_success_with_nothing_queued_sends_nothing(world: World) -> None:
    """`SUCCESS` with `messages: []` and `success_number: 0` is a refusal for every number, never "sent"."""
    first, second = (UK_NUMBER.format(next(world.next_id)) for _ in range(2))
    mail = outcome(world, submit(world, "sms@cellcast.test", f"mobile:+{first},+{second}\ntext:Hello\n"))
    for number in (first, second):
        mail.says(number, REFUSED, "NOT_QUEUED", 'Cellcast\'s own words: "Queued"')
    assert mail.subject.startswith("SMS failed: 0 of 2 sent")
    assert mail.data["summary"]["sent"] == 0


def test_cellcast_per_number_reason_is_quoted(world: World) -> None:
    """When Cellcast's answer gives a reason for a number it did not queue, the mail quotes it for that number."""
    world.cellcast.reasons = "invalid_numbers"
    uk = UK_NUMBER.format(next(world.next_id))
    mail = outcome(world, submit(world, f"+{uk}@cellcast.test", "Hello"))
    mail.says(uk, REFUSED, "NOT_QUEUED", f'for this number: "{NOT_QUEUED_REASON}"')


def test_cellcast_counts_without_messages(world: World) -> None:
    """Counts only: all queued is sent; some queued (no telling which) makes every number "may have been sent"."""
    world.cellcast.ids = "counts"
    au = world.number("cellcast")
    mail = outcome(world, submit(world, f"+{au}@cellcast.test", "All queued"))
    assert mail.says(au, SENT)["provider_id"] is None
    au, uk = world.number("cellcast"), UK_NUMBER.format(next(world.next_id))
    mail = outcome(world, submit(world, "sms@cellcast.test", f"mobile:{au},+{uk}\ntext:Which one?\n"))
    for number in (au, uk):
        mail.says(number, MAYBE, "PARTLY_QUEUED", CELLCAST["PARTLY_QUEUED"])
    assert mail.subject.startswith("SMS may have been sent: 0 of 2 sent, 2 unknown")


def test_cellcast_bad_key_is_refused_with_code_and_words(world: World) -> None:
    """A key Cellcast refuses (HTTP 401 AUTH_FAILED) is refused with the code, the explanation and its words."""
    body = f"mobile:{world.number('cellcast')}\npassword:not-the-key-99\ntext:hi\n"
    mail = outcome(world, submit(world, "sms@cellcast.test", body))
    [job] = mail.data["jobs"]
    mail.says(job["number"][1:], REFUSED, "AUTH_FAILED", CELLCAST["AUTH_FAILED"], '"Invalid APPKEY"')
    assert "not-the-key-99" not in mail.text


@pytest.mark.parametrize("shape", ["meta", "error"])
def test_cellcast_4xx_body_is_read_before_the_status(world: World, shape: str) -> None:
    """A 403 whose body says FIELD_INVALID is refused as FIELD_INVALID, quoting Cellcast's description."""
    word = {"meta": {"code": 400, "status": "FIELD_INVALID"}, "msg": "from: invalid sender ID"}
    body = word if shape == "meta" else {"error": {"code": "FIELD_INVALID", "description": "from: invalid sender ID"}}
    world.cellcast.fail_next(403, json.dumps(body), {"Content-Type": "application/json"})
    number = world.number("cellcast")
    mail = outcome(world, submit(world, f"+{number}@cellcast.test", "hi"))
    mail.says(number, REFUSED, "FIELD_INVALID", CELLCAST["FIELD_INVALID"], '"from: invalid sender ID"')


def test_cellcast_unreadable_success_may_have_been_sent(world: World) -> None:
    """A 200 without SUCCESS and without a word that says no may hide a sent SMS: "may have been sent"."""
    world.cellcast.fail_next(200, "<html>Thank you</html>", {"Content-Type": "text/html"})
    number = world.number("cellcast")
    mail = outcome(world, submit(world, f"+{number}@cellcast.test", "hi"))
    mail.says(number, MAYBE, "UNEXPECTED", CELLCAST["UNEXPECTED"], '"<html>Thank you</html>"')


@pytest.mark.parametrize(
    ("fault", "words", "codes"),
    [
        ("refused", SENT, (None,)),
        ("reset", MAYBE, ("RemoteProtocolError", "ReadError")),
        ("timeout", MAYBE, ("ReadTimeout",)),
        ("500", MAYBE, ("HTTP500",)),
        ("503", SENT, (None,)),
        ("429", SENT, (None,)),
    ],
)
def test_cellcast_transport_faults(world: World, fault: str, words: str, codes: tuple[str | None, ...]) -> None:
    """Cellcast has no idempotency key: a request that surely did not arrive (refused, 503, 429 OVER_LIMIT) is
    retried and sent once; after one that may have arrived the mail says "may have been sent", with the cause."""
    fake = world.cellcast
    number = world.number("cellcast")
    sid = submit_with_fault(world, fake, f"+{number}@cellcast.test", fault)
    mail = outcome(world, sid)
    code = mail.job(number)["code"]
    assert code in codes
    mail.says(number, words, code)
    if fault == "timeout":  # the late request still reaches Cellcast: sent once, and never again
        wait_until(lambda: number in sent_to(fake))
    assert sent_to(fake).count(number) == (0 if fault in ("reset", "500") else 1)


# == KoboMobile =======================================================================================
def test_kobomobile_success_is_sent_with_ids(world: World) -> None:
    """`number,id` pairs make each number sent with its own message id."""
    first, second = world.number("kobomobile"), world.number("kobomobile")
    mail = outcome(world, submit(world, "sms@kobomobile.test", f"mobile:{first},{second}\ntext:Shipped\n"))
    ids = {s.number: s.message_id for s in world.kobo.sent}
    for number in (first, second):
        assert mail.says(number, SENT)["provider_id"] == ids[number]


def test_kobomobile_prose_error_is_refused(world: World) -> None:
    """`{"status":"error","message":"Message not sent"}` is refused (code `error`) quoting KoboMobile's words."""
    world.kobo.force_reply({"status": "error", "message": "Message not sent"})
    number = world.number("kobomobile")
    mail = outcome(world, submit(world, f"+{number}@kobomobile.test", "hi"))
    mail.says(number, REFUSED, "error", KOBOMOBILE["REFUSED"], '"Message not sent"', "[error]")
    assert number not in sent_to(world.kobo)


def test_kobomobile_unrecognised_reply_may_have_been_sent(world: World) -> None:
    """A reply without `sent`, ids or a word that says no is "may have been sent", never "sent" (the fake sent)."""
    number = world.number("kobomobile")
    world.kobo.force_reply({"message": "Your message was sent"}, sent=True)
    mail = outcome(world, submit(world, f"+{number}@kobomobile.test", "hi"))
    mail.says(number, MAYBE, "UNEXPECTED", KOBOMOBILE["UNEXPECTED"], '"Your message was sent"')
    assert sent_to(world.kobo).count(number) == 1


def test_kobomobile_a_number_without_its_id_may_have_been_sent(world: World) -> None:
    """Pairs for one of two numbers: that one is sent, the other "may have been sent" (NO_ID)."""
    first, second = world.number("kobomobile"), world.number("kobomobile")
    world.kobo.force_reply(f"{first},0f0e0d0c-1111-2222-3333-444455556666", sent=True)
    mail = outcome(world, submit(world, "sms@kobomobile.test", f"mobile:{first},{second}\ntext:Both?\n"))
    assert mail.says(first, SENT)["provider_id"] == "0f0e0d0c-1111-2222-3333-444455556666"
    mail.says(second, MAYBE, "NO_ID", KOBOMOBILE["NO_ID"])


@pytest.mark.parametrize(
    ("status", "word", "words"), [(400, "error_credit", REFUSED), (403, "error_user", REFUSED), (503, "error_gw", SENT)]
)
def test_kobomobile_status_words_with_a_non_200_status(world: World, status: int, word: str, words: str) -> None:
    """Status words arriving with a non-200 status are read from the body: refusals keep their word, error_gw is
    retried with the same message_uuid and then sent."""
    world.kobo.error_status = status
    world.kobo.force_word(word)
    number = world.number("kobomobile")
    mail = outcome(world, submit(world, f"+{number}@kobomobile.test", "hi"))
    if words == SENT:
        assert mail.says(number, SENT)["attempts"] == 2
        assert sent_to(world.kobo).count(number) == 1
    else:
        mail.says(number, REFUSED, word, KOBOMOBILE[word])
        assert number not in sent_to(world.kobo)


@pytest.mark.parametrize(
    ("fault", "words", "code"),
    [
        ("refused", SENT, None),
        ("reset", SENT, None),
        ("500", SENT, None),
        ("401", REFUSED, "HTTP401"),
        ("timeout", SENT, None),
    ],
)
def test_kobomobile_transport_faults(world: World, fault: str, words: str, code: str | None) -> None:
    """KoboMobile honours message_uuid: refused, reset, 500 or timeout is retried and sent once; 401 is refused."""
    fake = world.kobo
    number = world.number("kobomobile")
    mail = outcome(world, submit_with_fault(world, fake, f"+{number}@kobomobile.test", fault))
    mail.says(number, words, code)
    assert sent_to(fake).count(number) == (1 if words == SENT else 0)


# == Kapow ============================================================================================
def test_kapow_success_is_sent_with_ids_and_credits(world: World) -> None:
    """`OK <credits> <id> <id>` makes each number sent with its id, and the credits left reach the mail."""
    first, second = world.number("kapow"), world.number("kapow")
    mail = outcome(world, submit(world, "sms@kapow.test", f"mobile:{first},{second}\ntext:Gate open\n"))
    ids = {s.number: s.returnid for s in world.kapow.sent}
    credits = world.kapow.credits_of("kapowuser")
    for number in (first, second):
        job = mail.says(number, SENT)
        assert (job["provider_id"], job["detail"]) == (ids[number], f"Kapow credits left: {credits}")
        assert f"  Detail: Kapow credits left: {credits}" in mail.block(number)


def test_kapow_fewer_ids_than_numbers_may_have_been_sent(world: World) -> None:
    """`OK` with one id for two numbers cannot say which was taken: both "may have been sent" (IDS)."""
    world.kapow.returnids = "first"
    first, second = world.number("kapow"), world.number("kapow")
    mail = outcome(world, submit(world, "sms@kapow.test", f"mobile:{first},{second}\ntext:Two\n"))
    for number in (first, second):
        mail.says(number, MAYBE, "IDS", KAPOW["IDS"], "(1 message ids for 2 numbers)")


@pytest.mark.parametrize(
    ("body", "code", "quoted"),
    [("", "EMPTY", KAPOW["EMPTY"]), ("Message queued", "UNEXPECTED", '"Message queued"'), ("OK", "UNEXPECTED", '"OK"')],
)
def test_kapow_unreadable_answers_may_have_been_sent(world: World, body: str, code: str, quoted: str) -> None:
    """An empty body, prose or a bare `OK` after Kapow took the SMS is "may have been sent", never "sent"."""
    world.kapow.garble_next(body)
    number = world.number("kapow")
    mail = outcome(world, submit(world, f"+{number}@kapow.test", "hi"))
    mail.says(number, MAYBE, code, quoted)
    assert sent_to(world.kapow).count(number) == 1


def test_kapow_userpass_is_refused(world: World) -> None:
    """A login Kapow refuses is refused with USERPASS and its explanation, without the password."""
    body = f"mobile:{world.number('kapow')}\nusername:kapowuser\npassword:wrong-kapow-77\ntext:hi\n"
    mail = outcome(world, submit(world, "sms@kapow.test", body))
    [job] = mail.data["jobs"]
    mail.says(job["number"][1:], REFUSED, "USERPASS", KAPOW["USERPASS"])
    assert "wrong-kapow-77" not in mail.text


@pytest.mark.parametrize(
    ("status", "body", "words", "code"),
    [(500, "NOCREDIT", REFUSED, "NOCREDIT"), (404, "OK 98 11472734895956042", MAYBE, "HTTP404")],
)
def test_kapow_non_200_body_is_read_first(world: World, status: int, body: str, words: str, code: str) -> None:
    """Kapow's words decide even with a non-200 status; an `OK` with an error status is "may have been sent"."""
    world.kapow.fail_next(status, body, {})
    number = world.number("kapow")
    mail = outcome(world, submit(world, f"+{number}@kapow.test", "hi"))
    mail.says(number, words, code)


@pytest.mark.parametrize(
    ("fault", "words", "codes"),
    [
        ("refused", SENT, (None,)),
        ("reset", MAYBE, ("RemoteProtocolError", "ReadError")),
        ("timeout", MAYBE, ("ReadTimeout",)),
        ("500", MAYBE, ("HTTP500",)),
        ("503", SENT, (None,)),
    ],
)
def test_kapow_transport_faults(world: World, fault: str, words: str, codes: tuple[str | None, ...]) -> None:
    """Kapow has no idempotency key: only a request that surely did not arrive (refused, 503) is retried and sent
    once; after one that may have arrived the mail says "may have been sent", with the cause."""
    fake = world.kapow
    number = world.number("kapow")
    mail = outcome(world, submit_with_fault(world, fake, f"+{number}@kapow.test", fault))
    code = mail.job(number)["code"]
    assert code in codes
    mail.says(number, words, code)
    if fault == "timeout":  # the late request still reaches Kapow: sent once, and never again
        wait_until(lambda: number in sent_to(fake))
    assert sent_to(fake).count(number) == (0 if fault in ("reset", "500") else 1)
