"""A sixth provider needs no project file: the adapter and its fake live in this test, register themselves, and an
SMS goes smtplib → mail2sms → the throwaway adapter → its fake over HTTP → the outcome report.

"Parrot" is an invented JSON API: `POST {url}send` with `{"key", "to": [digits…], "text"}` answers
`{"results": [{"to", "status": "accepted", "id"} | {"to", "status": "refused", "code"}]}`; a wrong key is HTTP 401.
Its text rule (checked at DATA through `Limits.fit_text`): it cannot carry '#'.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mail2sms import config as configmod
from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError, ContentError
from mail2sms.limits import Limits, TextFix
from mail2sms.model import Account, Balance, Batch, Rejected, Result, Sent, Unknown
from mail2sms.providers import wire
from mail2sms.providers.base import account_for
from mail2sms.providers.explain import explain
from mail2sms.providers.registry import ProviderSpec, register, unregister
from mail2sms.smtp import replies
from tests.fakes.server import FakeProvider, RecordedRequest, Reply
from tests.harness import message, report_json, report_text, reports, send, thread_server, wait_until, write_config

TYPE = "parrot"
KEY = "parrot-secret-key-7"
PARROT_WORDS = {
    "BADNUM": "Parrot says the number does not exist: check it",
    "UNEXPECTED": "Parrot's reply was not one mail2sms understands, so it cannot tell whether the SMS was sent",
}


def parrot_text(text: str, *, lang: int | None, strip: bool) -> TextFix:
    """Parrot's own text rule: no '#'."""
    if "#" in text:
        raise ContentError("Parrot cannot send '#': write the text without it")
    return TextFix(text)


class ParrotProvider:
    """The throwaway adapter: one JSON request per batch, one Result per number from the reply's own list."""

    def __init__(self, name: str, config: ProviderConfig, client: httpx.AsyncClient) -> None:
        self.name, self.config, self.client = name, config, client
        self.limits = Limits(max_recipients=10, max_parts=3, rate=config.rate or 50.0, fit_text=parrot_text)

    async def send(self, batch: Batch) -> list[Result]:
        return await wire.send_valid(batch, TYPE, lambda _jobs, numbers: self._send(batch, numbers))

    async def _send(self, batch: Batch, numbers: list[str]) -> list[Result]:
        key = account_for(self.config, batch.account).key
        body = {"key": key, "to": numbers, "text": batch.text}
        response = await wire.post(TYPE, False, self.client.post(f"{self.config.base_url}send", json=body))
        if not isinstance(response, httpx.Response):
            return [response] * len(numbers)
        problem = wire.status_problem(TYPE, response, False)
        if problem is not None:
            return [problem] * len(numbers)
        answers = {a.get("to"): a for a in response.json().get("results", []) if isinstance(a, dict)}
        results: list[Result] = []
        for number in numbers:
            answer = answers.get(number, {})
            if answer.get("status") == "accepted" and answer.get("id"):
                results.append(Sent(provider_id=str(answer["id"])))
            elif answer.get("status") == "refused":
                results.append(Rejected(code=str(answer.get("code")), why=explain(TYPE, str(answer.get("code")))))
            else:
                results.append(Unknown(code="UNEXPECTED", why=explain(TYPE, "UNEXPECTED")))
        return results

    async def balance(self, account: Account | None = None) -> Balance:
        return Balance(provider=self.name, credit=None, detail="Parrot has no balance request")


SPEC = ProviderSpec(
    type=TYPE,
    label="Parrot",
    build=ParrotProvider,
    urls={"": "https://api.parrot.invalid/v1/"},
    required={"key": "Parrot needs an API key (key, key_env or key_file)"},
    explain=PARROT_WORDS,
)


class FakeParrot(FakeProvider):
    """Parrot at `http://127.0.0.1:PORT/v1/`: accepts every number except those ending in 9 (BADNUM)."""

    base_path = "/v1/"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, str]] = []  # (number, text, id)

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != "/v1/send":
            return Reply(404, "not found")
        data = json.loads(request.body)
        if data.get("key") != KEY:
            return Reply(401, json.dumps({"error": "bad key"}), content_type="application/json")
        results = []
        for number in data["to"]:
            if number.endswith("9"):
                results.append({"to": number, "status": "refused", "code": "BADNUM"})
            else:
                msg_id = "P" + secrets.token_hex(4)
                with self._lock:
                    self.sent.append((number, data["text"], msg_id))
                results.append({"to": number, "status": "accepted", "id": msg_id})
        return Reply(200, json.dumps({"results": results}), content_type="application/json")


CONFIG = """
[providers.p]
type = "parrot"
url = "{url}"
key = "{key}"
rate = 50

[[routes]]
match = "*@parrot.test"
format = "address"
provider = "p"
region = "KW"
"""


@pytest.fixture
def parrot_registered() -> Iterator[None]:
    register(SPEC)
    try:
        yield
    finally:
        unregister(TYPE)


def test_throwaway_provider_sends_and_reports(parrot_registered: None, tmp_path: Path) -> None:
    """A provider registered from a test sends one SMS, refuses another with its own words, and is reported."""
    with FakeParrot() as fake:
        path, _ = write_config(tmp_path, CONFIG.format(url=fake.url, key=KEY))
        with thread_server(path) as server:
            to = ["96550000001@parrot.test", "96550000009@parrot.test"]
            code, text = send(server.port, message(to, "Water tank low\n"))
            assert replies.QUEUED.matches(code, text)
            report = wait_until(lambda: reports(tmp_path / "reports"))[0]
    assert [(number, text) for number, text, _ in fake.sent] == [("96550000001", "Water tank low")]
    jobs = {job["number"]: job for job in report_json(report)["jobs"]}
    assert jobs["+96550000001"]["status"] == "sent"
    assert jobs["+96550000001"]["provider_id"] == fake.sent[0][2]
    assert (jobs["+96550000009"]["status"], jobs["+96550000009"]["code"]) == ("rejected", "BADNUM")
    assert PARROT_WORDS["BADNUM"] in report_text(report)
    assert KEY not in report.as_string()


def test_throwaway_provider_text_rule_refuses_at_data(parrot_registered: None, tmp_path: Path) -> None:
    """The adapter's own text rule reaches DATA through its limits: a '#' is refused with 554 and nothing is sent."""
    with FakeParrot() as fake:
        path, _ = write_config(tmp_path, CONFIG.format(url=fake.url, key=KEY))
        with thread_server(path) as server:
            code, text = send(server.port, message("96550000001@parrot.test", "Alarm #3\n"))
    assert replies.BAD_CONTENT.matches(code, text)
    assert b"Parrot cannot send '#'" in text
    assert fake.requests == []


def test_throwaway_provider_config_facts_come_from_its_spec(parrot_registered: None) -> None:
    """The default URL and the required key are the spec's: the config knows them without a line of its own."""
    with pytest.raises(ConfigError, match=r"providers\.p\.key: Parrot needs an API key"):
        configmod.parse(CONFIG.format(url="", key=""))
    config = configmod.parse(CONFIG.format(url="", key=KEY))
    assert config.providers["p"].base_url == "https://api.parrot.invalid/v1/"


def test_unregistered_type_is_a_config_error() -> None:
    """Without its registration the type is unknown, and the config error says so naming the key."""
    with pytest.raises(ConfigError, match=r"providers\.p\.type: 'parrot' is not a provider type \(known: .*kwtsms"):
        configmod.parse(CONFIG.format(url="", key=KEY))
