"""Two-way replies end to end (issue 17) through a real mail2sms: smtplib → server → the Cellcast and BulkSMS (JSON)
fakes over HTTP on 127.0.0.1, whose phones then answer; the answer is fetched (or pushed), stored in the SQLite
spool and mailed into the reports maildir in the sender's thread, from an address that routes back to the phone;
answering that mail with a real client's quoted reply sends only the new line. Unmatched replies, excluded senders,
the per-number throttle, and a SIGKILL storm while 200 replies are fetched and mailed. Nothing waits on time: the
tests wait for mails, spool rows and fake-side calls to appear."""

from __future__ import annotations

import email
import email.policy
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from structlog.testing import capture_logs

from tests.fakes.bulksms import FakeBulkSmsJson
from tests.fakes.cellcast import FakeCellcast
from tests.harness import ROOT, ProcessServer, free_port, message, reports, send, thread_server, wait_until

KEY = "e2e-cellcast-key-4711"
PASSWORD = "e2e-bulksms-pw-0815"
TOKEN = "e2e-push-token-2718"
OPS = "ops@example.org"
FIXTURES = ROOT / "tests" / "fixtures" / "replies"
NEW_LINE = "ACK, on my way"  # what the Thunderbird fixture's author typed above the quote


@dataclass
class Fakes:
    cellcast: FakeCellcast
    bulk: FakeBulkSmsJson


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    """The Cellcast fake (one key) and the BulkSMS JSON fake (one account), serving on 127.0.0.1."""
    with FakeCellcast(keys={KEY: 1000}) as cellcast, FakeBulkSmsJson(accounts={"user": (PASSWORD, 1000)}) as bulk:
        yield Fakes(cellcast, bulk)


def config(
    tmp: Path,
    fakes: Fakes,
    *,
    smtp: int,
    unmatched_to: str = OPS,
    per_hour: int = 10,
    http: int = 0,
    cellcast_polled: bool = True,
    spool: str = "",
    maildir: Path | None = None,
) -> Path:
    """Cellcast on `*@cc.test` (AU), BulkSMS JSON with repliable SMS on `*@bulk.test` (GB); outcome mail always, to
    the maildir (`tmp/reports` unless given); replies polled every 0.2 s; the spool in `tmp` unless `spool` names
    one."""
    spool = spool or f"sqlite://{tmp}/spool.db"
    maildir = maildir or tmp / "reports"
    push = f'[receipts]\ntoken = "{TOKEN}"\n' if http else ""
    web = f"127.0.0.1:{http}" if http else ""
    text = f"""
[server]
listen = ["127.0.0.1:{smtp}"]
hostname = "sms.test"

[spool]
url = "{spool}"

[reports]
maildir = "{maildir}"
from = "mail2sms@sms.test"
when = "always"

[http]
listen = "{web}"

[dispatch]
retry_base = 0.2
retry_cap = 1.0
poll_interval = 0.2

{push}
[replies]
poll_interval = 0.2
unmatched_to = "{unmatched_to}"
per_number_per_hour = {per_hour}

[providers.cellcast]
type = "cellcast"
url = "{fakes.cellcast.url}"
key = "{KEY}"
sender = "Shop"
replies = {"true" if cellcast_polled else "false"}

[providers.bulk]
type = "bulksms"
url = "{fakes.bulk.url}"
username = "user"
password = "{PASSWORD}"
options = {{ repliable = true }}

[[routes]]
match = "*@cc.test"
format = "address"
provider = "cellcast"
region = "AU"

[[routes]]
match = "*@bulk.test"
format = "address"
provider = "bulk"
region = "GB"
"""
    path = tmp / "mail2sms.toml"
    path.write_text(text, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Way:
    """One provider as these tests use it: its route's domain, a number, and how to read its fake."""

    domain: str
    number: str
    sent: Callable[[Fakes], list[tuple[str, str, str]]]  # (message id, number digits, text) of each SMS sent
    add_reply: Callable[[Fakes, str | None, str, str | None], str]  # (to message id, text, number) → reply id


WAYS = {
    "cellcast": Way(
        "cc.test",
        "61400000001",
        lambda f: [(m.message_id, m.to.lstrip("+"), m.text) for m in _locked(f.cellcast, "sent")],
        lambda f, to, text, number: f.cellcast.add_reply(to, text, number),
    ),
    "bulksms": Way(
        "bulk.test",
        "447700900001",
        lambda f: [(m.id, m.number.lstrip("+"), m.text) for m in _locked(f.bulk, "sent")],
        lambda f, to, text, number: f.bulk.add_reply(to, text, number),
    ),
}


def _locked(fake: Any, attribute: str) -> list[Any]:
    with fake._lock:
        return list(getattr(fake, attribute))


def reply_mails(maildir: Path) -> list[EmailMessage]:
    return [m for m in reports(maildir) if ".reply@" in str(m["Message-ID"])]


def outcome_mails(maildir: Path) -> list[EmailMessage]:
    return [m for m in reports(maildir) if ".report@" in str(m["Message-ID"])]


def reply_states(tmp: Path) -> dict[str, int]:
    """Stored replies per state, read from the spool file."""
    with sqlite3.connect(tmp / "spool.db") as db:
        try:
            return dict(db.execute("SELECT state, count(*) FROM replies GROUP BY state"))
        except sqlite3.OperationalError:  # not migrated yet
            return {}


def sms_sent(fakes: Fakes, way: Way, count: int) -> list[tuple[str, str, str]]:
    """The first `count` SMS the provider's fake accepted, once it has accepted that many."""
    found: list[tuple[str, str, str]] = wait_until(lambda: (s := way.sent(fakes)) and len(s) >= count and s[:count])
    return found


def answer(reply_mail: EmailMessage, sender: str = "alice@example.org") -> EmailMessage:
    """Thunderbird's plain-text reply to `reply_mail` (the real client's fixture, addressed to this thread)."""
    raw = (FIXTURES / "thunderbird-plain.eml").read_bytes()
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    for name, value in (
        ("To", str(reply_mail["From"])),
        ("From", sender),
        ("In-Reply-To", str(reply_mail["Message-ID"])),
        ("References", f"{reply_mail['References']} {reply_mail['Message-ID']}"),
        ("Subject", f"Re: {reply_mail['Subject']}"),
    ):
        del mail[name]
        mail[name] = value
    assert NEW_LINE in mail.get_content()
    return mail


@pytest.mark.parametrize("kind", sorted(WAYS))
def test_reply_comes_back_threaded_and_answering_it_sends_only_the_new_line(
    tmp_path: Path, fakes: Fakes, kind: str
) -> None:
    """A phone answers an SMS mail2sms sent: the sender gets it as `Re: <subject>` under the original and the
    outcome mail, From `+<number>@` the route's domain; the provider is told it was read; a Thunderbird reply to
    that mail, quote and signature included, becomes one SMS to the same number with only the new line."""
    way = WAYS[kind]
    with thread_server(config(tmp_path, fakes, smtp=free_port())) as server:
        original = message(f"+{way.number}@{way.domain}", "Server room door open", subject="Door")
        assert send(server.port, original)[0] == 250
        maildir = tmp_path / "reports"
        [outcome] = wait_until(lambda: outcome_mails(maildir))
        [(sms_id, number, _)] = sms_sent(fakes, way, 1)
        way.add_reply(fakes, sms_id, "Is anyone on it? web1 still down", None)
        [reply] = wait_until(lambda: reply_mails(maildir))

        assert reply["To"] == "alice@example.org"
        assert reply["From"].addresses[0].addr_spec == f"+{number}@{way.domain}"
        assert reply["Subject"] == "Re: Door"
        assert reply["In-Reply-To"] == original["Message-ID"]
        assert str(reply["References"]).split() == [str(original["Message-ID"]), str(outcome["Message-ID"])]
        assert reply["Auto-Submitted"] == "auto-replied"
        body = reply.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert text.startswith("Is anyone on it? web1 still down\n")
        assert f"+{number}" in text
        assert "Server room door open" in text
        if kind == "cellcast":
            wait_until(lambda: all(r.read for r in _locked(fakes.cellcast, "replies")))

        assert send(server.port, answer(reply))[0] == 250
        [_, (_, again, sms_text)] = sms_sent(fakes, way, 2)
        assert (again, sms_text) == (number, NEW_LINE)
        wait_until(lambda: reply_states(tmp_path) == {"mailed": 1})
    assert len(reply_mails(maildir)) == 1


@pytest.mark.parametrize("unmatched_to", [OPS, ""])
def test_reply_from_a_number_never_texted_goes_to_unmatched_to_or_is_dropped(
    tmp_path: Path, fakes: Fakes, unmatched_to: str
) -> None:
    """A reply tied to no SMS mail2sms sent is mailed only to replies.unmatched_to, saying so; when that is unset
    it is kept as dropped, logged with the reason, and mailed to nobody."""
    # The log is captured as structlog's events (as the other reply tests do), not from the process's stdout,
    # which an earlier test in the same run may have pointed elsewhere.
    with thread_server(config(tmp_path, fakes, smtp=free_port(), unmatched_to=unmatched_to)), capture_logs() as logs:
        ref = fakes.cellcast.add_reply(None, "Who is this?", "61400000009")
        maildir = tmp_path / "reports"
        if unmatched_to:
            [reply] = wait_until(lambda: reply_mails(maildir))
            assert reply["To"] == OPS
            assert reply["Subject"] == "SMS from +61400000009 (not a reply to any SMS mail2sms sent)"
            assert reply["From"].addresses[0].addr_spec == "+61400000009@cc.test"
            assert reply["In-Reply-To"] is None
        else:
            wait_until(lambda: reply_states(tmp_path) == {"dropped": 1})
            wait_until(lambda: fakes.cellcast.is_read(ref))
    if not unmatched_to:
        assert reply_mails(maildir) == []
        kept = [e for e in logs if e["event"] == "reply kept, not mailed"]
        assert len(kept) == 1, logs
        assert "replies.unmatched_to is not set" in kept[0]["why"]
        assert "Who is this?" not in repr(logs)


def test_a_sender_the_backscatter_rules_exclude_never_gets_the_reply(tmp_path: Path, fakes: Fakes) -> None:
    """A mail list's SMS (Precedence: list, no outcome mail): the phone's answer goes to replies.unmatched_to,
    unthreaded and saying why, and nothing at all is mailed to the list."""
    way = WAYS["cellcast"]
    with thread_server(config(tmp_path, fakes, smtp=free_port())) as server:
        listed = message(
            f"+{way.number}@{way.domain}",
            "Weekly newsletter",
            subject="News",
            sender="news@lists.example.org",
            headers={"Precedence": "list"},
        )
        assert send(server.port, listed, sender="news@lists.example.org")[0] == 250
        [(sms_id, _, _)] = sms_sent(fakes, way, 1)
        way.add_reply(fakes, sms_id, "STOP", None)
        maildir = tmp_path / "reports"
        [reply] = wait_until(lambda: reply_mails(maildir))
        assert reply["To"] == OPS
        assert "whose sender may not be mailed" in str(reply["Subject"])
        assert reply["In-Reply-To"] is None
    assert all("news@lists.example.org" not in str(m["To"]) for m in reports(maildir))


def test_replies_over_the_per_number_rate_are_kept_never_mailed(tmp_path: Path, fakes: Fakes) -> None:
    """With replies.per_number_per_hour = 2, three answers from one phone: two are mailed, the third is kept as
    throttled and never mailed."""
    way = WAYS["cellcast"]
    with thread_server(config(tmp_path, fakes, smtp=free_port(), per_hour=2)) as server:
        assert send(server.port, message(f"+{way.number}@{way.domain}", "Door open", subject="Door"))[0] == 250
        [(sms_id, _, _)] = sms_sent(fakes, way, 1)
        for n in range(3):
            way.add_reply(fakes, sms_id, f"answer {n}", None)
        wait_until(lambda: reply_states(tmp_path) == {"mailed": 2, "throttled": 1})
        maildir = tmp_path / "reports"
    texts = [body.get_content() for m in reply_mails(maildir) if (body := m.get_body(("plain",))) is not None]
    assert sorted(t.splitlines()[0] for t in texts) == ["answer 0", "answer 1"]


def test_a_pushed_reply_is_mailed_once(tmp_path: Path, fakes: Fakes) -> None:
    """Cellcast's inbound webhook posted to /receipts/cellcast/<token> (polling turned off) is mailed threaded to
    the sender; the same push again is answered 200 and mails nothing more; a wrong token gets 404."""
    way = WAYS["cellcast"]
    http = free_port()
    path = config(tmp_path, fakes, smtp=free_port(), http=http, cellcast_polled=False)
    with thread_server(path) as server:
        original = message(f"+{way.number}@{way.domain}", "Door open", subject="Door")
        assert send(server.port, original)[0] == 250
        [(sms_id, _, _)] = sms_sent(fakes, way, 1)
        ref = way.add_reply(fakes, sms_id, "Seen it", None)
        body = fakes.cellcast.inbound_body(ref)
        url = f"http://127.0.0.1:{http}/receipts/cellcast"
        headers = {"Content-Type": "application/json"}
        assert httpx.post(f"{url}/wrong-token", content=body, headers=headers, timeout=30).status_code == 404
        for _ in range(2):
            assert httpx.post(f"{url}/{TOKEN}", content=body, headers=headers, timeout=30).status_code == 200
        maildir = tmp_path / "reports"
        [reply] = wait_until(lambda: reply_mails(maildir))
        assert reply["In-Reply-To"] == original["Message-ID"]
        wait_until(lambda: reply_states(tmp_path) == {"mailed": 1})
        assert not fakes.cellcast.is_read(ref)  # never polled: nothing marked it read
    assert len(reply_mails(maildir)) == 1


def test_kill_storm_while_replies_are_fetched_and_mailed_loses_none_and_doubles_none(
    tmp_path: Path, fakes: Fakes
) -> None:
    """200 answers wait at Cellcast (8 pages) for one SMS; the server is SIGKILLed again and again while it fetches,
    stores, marks read and mails them; after a clean restart each answer is in the maildir exactly once."""
    way = WAYS["cellcast"]
    smtp = free_port()
    path = config(tmp_path, fakes, smtp=smtp, per_hour=1000)
    log = tmp_path / "server.log"
    maildir = tmp_path / "reports"
    server = ProcessServer(path, smtp, log).start()
    try:
        assert send(smtp, message(f"+{way.number}@{way.domain}", "Door open", subject="Door"))[0] == 250
        [(sms_id, _, _)] = sms_sent(fakes, way, 1)
        texts = {f"answer {n:03d}" for n in range(200)}
        for text in sorted(texts):
            way.add_reply(fakes, sms_id, text, None)
        seen = 0
        for _ in range(6):
            # Kill as soon as something more happened since the last start (a reply stored or mailed).
            def progressed(before: int = seen) -> int | None:
                now = len(reply_mails(maildir)) + sum(reply_states(tmp_path).values())
                return now if now > before or now >= 400 else None

            seen = wait_until(progressed, timeout=120)
            server.kill()
            server = ProcessServer(path, smtp, log).start()
        found = wait_until(lambda: (m := reply_mails(maildir)) and len(m) >= 200 and m, timeout=300)
        wait_until(lambda: reply_states(tmp_path) == {"mailed": 200}, timeout=300)
    finally:
        assert server.terminate() == 0
    found = reply_mails(maildir)
    ids = [str(m["Message-ID"]) for m in found]
    assert len(ids) == 200
    assert len(set(ids)) == 200
    bodies = [body.get_content().splitlines()[0] for m in found if (body := m.get_body(("plain",))) is not None]
    assert sorted(bodies) == sorted(texts)
    assert all(r.read for r in _locked(fakes.cellcast, "replies"))


def pg_reply_states(url: str) -> dict[str, int]:
    """Stored replies per state, read from the PostgreSQL spool."""
    with psycopg.connect(url) as conn:
        try:
            return {str(k): int(v) for k, v in conn.execute("SELECT state, count(*) FROM replies GROUP BY state")}
        except psycopg.errors.UndefinedTable:  # not migrated yet
            return {}


def test_two_nodes_on_postgresql_mail_each_reply_once_through_a_kill(tmp_path: Path, fakes: Fakes, pg_url: str) -> None:
    """Two nodes on one PostgreSQL spool poll the same Cellcast account holding 100 answers, taking turns; one node
    is SIGKILLed mid-way and restarted: every answer reaches the shared maildir exactly once."""
    way = WAYS["cellcast"]
    maildir = tmp_path / "reports"
    nodes = {}
    for name in ("a", "b"):
        home = tmp_path / name
        home.mkdir()
        port = free_port()
        path = config(home, fakes, smtp=port, per_hour=1000, spool=pg_url, maildir=maildir)
        nodes[name] = (path, port, home / "server.log", {"MAIL2SMS_NODE": f"node-{name}"})
    running = {name: ProcessServer(*args).start() for name, args in nodes.items()}
    try:
        assert send(nodes["a"][1], message(f"+{way.number}@{way.domain}", "Door open", subject="Door"))[0] == 250
        [(sms_id, _, _)] = sms_sent(fakes, way, 1)
        texts = {f"answer {n:03d}" for n in range(100)}
        for text in sorted(texts):
            way.add_reply(fakes, sms_id, text, None)
        wait_until(lambda: sum(pg_reply_states(pg_url).values()) > 0, timeout=120)
        running["a"].kill()
        running["a"] = ProcessServer(*nodes["a"]).start()
        wait_until(lambda: pg_reply_states(pg_url) == {"mailed": 100}, timeout=300)
    finally:
        for server in running.values():
            assert server.terminate() == 0
    found = reply_mails(maildir)
    assert len({str(m["Message-ID"]) for m in found}) == len(found) == 100
    bodies = [body.get_content().splitlines()[0] for m in found if (body := m.get_body(("plain",))) is not None]
    assert sorted(bodies) == sorted(texts)
