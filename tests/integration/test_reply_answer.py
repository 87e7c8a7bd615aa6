"""Answering an SMS reply by email, through the real server (issue 17, items 3 and 4): each real client's reply
to a mail2sms reply mail, sent with smtplib to the number's address, becomes one SMS holding only the new line;
an automatic reply (a vacation responder answering the reply mail) is refused at DATA, logged once with its
reply's name, and costs no other mail or recipient anything."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path
from typing import Any

from mail2sms.smtp import replies
from tests.harness import ProcessServer, message, thread_server, wait_until, write_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "replies"
NUMBER = "+96550000000"
ADDRESS = f"{NUMBER}@sms.example.org"

ROUTES = """
[providers.out]
type = "outbox"
path = "{out}"

[[routes]]
match = "*@sms.example.org"
format = "address"
provider = "out"
region = "KW"
"""


def config(tmp_path: Path) -> tuple[Path, int, Path]:
    out = tmp_path / "outbox.jsonl"
    path, port = write_config(tmp_path, ROUTES.replace("{out}", str(out)))
    return path, port, out


def sent(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_each_clients_reply_sends_only_the_new_line(tmp_path: Path) -> None:
    """Thunderbird, Outlook (desktop, web), Gmail and Apple Mail replies, plain and HTML, each become one SMS to the
    number whose text is exactly "ACK, on my way": no quoted history, no signature, no phone trailer."""
    path, _, out = config(tmp_path)
    names = sorted(p.name for p in FIXTURES.glob("*.eml"))
    assert len(names) >= 10
    with thread_server(path) as server, smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
        client.ehlo("mail.example.com")
        for count, name in enumerate(names, 1):
            raw = (FIXTURES / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            client.mail("jan.novak@example.com")
            assert client.rcpt(ADDRESS)[0] == 250
            code, reply = client.data(raw)
            assert replies.QUEUED.matches(code, reply), (name, code, reply)
            records = wait_until(lambda n=count: len(sent(out)) >= n and sent(out))
            assert len(records) == count, name
            assert (records[-1]["number"].lstrip("+"), records[-1]["text"]) == (NUMBER[1:], "ACK, on my way"), name


def test_an_alarm_forwarded_without_a_word_is_sent_as_the_alarm(tmp_path: Path) -> None:
    """Gmail's forward of an alarm mail with nothing typed above it becomes the alarm's own text, not a refusal
    for an empty body (the forward separator cuts history only when something was written above it)."""
    path, _, out = config(tmp_path)
    body = (
        "---------- Forwarded message ---------\nFrom: Panel <panel@example.com>\n"
        "Date: Tue, 1 Dec 2026 at 20:40\nSubject: ALARM\nTo: <ops@example.com>\n\n\nALARM web1 down (HTTP 503)\n"
    )
    with thread_server(path) as server, smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
        client.ehlo("mail.example.com")
        msg = message(ADDRESS, body, sender="jan.novak@example.com", subject="Fwd: ALARM")
        assert client.sendmail("jan.novak@example.com", [ADDRESS], msg.as_bytes()) == {}
        records = wait_until(lambda: sent(out))
        assert [r["text"] for r in records] == ["ALARM web1 down (HTTP 503)"]


AUTO_REPLIES = [
    {"Auto-Submitted": "auto-replied"},
    {"Auto-Submitted": 'Auto-Replied; owner-email="jan.novak@example.com" (vacation)'},
    {"X-Autoreply": "yes"},
    {"X-Autorespond": "vacation"},
    {"Precedence": "auto_reply"},
]
STILL_SENT = [{"Auto-Submitted": "auto-generated"}, {"Auto-Submitted": "no"}, {}]


def log_events(log: Path, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("event") == event]


def test_automatic_replies_are_refused_and_lose_nothing_else(tmp_path: Path) -> None:
    """Auto-Submitted: auto-replied (any case, parameters, comments), X-Autoreply, X-Autorespond and Precedence:
    auto_reply get 550 5.7.1 at DATA, each logged once as auto_reply; auto-generated, no and unmarked mail in the
    same session and the next session are sent, so only the automatic replies are lost."""
    path, port, out = config(tmp_path)
    log = tmp_path / "server.log"
    server = ProcessServer(path, port, log).start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.ehlo("mail.example.com")
            wanted: list[str] = []
            for i, headers in enumerate([*AUTO_REPLIES, *STILL_SENT]):
                text = f"mail {i}: {'vacation, back on Monday' if headers in AUTO_REPLIES else 'Server down'}"
                msg = message(ADDRESS, text, sender="jan.novak@example.com", subject="Re: Server down", headers=headers)
                client.mail("jan.novak@example.com")
                assert client.rcpt(ADDRESS)[0] == 250
                code, reply = client.data(msg.as_bytes())
                if headers in AUTO_REPLIES:
                    assert replies.AUTO_REPLY.matches(code, reply), (headers, code, reply)
                    assert b"Auto-Submitted" in reply or b"X-Auto" in reply or b"Precedence" in reply
                else:
                    assert replies.QUEUED.matches(code, reply), (headers, code, reply)
                    wanted.append(text)
        # Another session after the refusals: its two recipients both get the SMS.
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.ehlo("mail.example.com")
            msg = message([ADDRESS, "+96550000001@sms.example.org"], "next session", sender="ops@example.com")
            assert client.sendmail("ops@example.com", [ADDRESS, "+96550000001@sms.example.org"], msg.as_bytes()) == {}
        wanted += ["next session", "next session"]
        records = wait_until(lambda: len(sent(out)) >= len(wanted) and sent(out))
        assert sorted(r["text"] for r in records) == sorted(wanted)
        assert not any("vacation" in r["text"] for r in records)
        refused = wait_until(
            lambda: len(log_events(log, "smtp refused")) >= len(AUTO_REPLIES) and log_events(log, "smtp refused")
        )
        assert [x["reply"] for x in refused] == ["auto_reply"] * len(AUTO_REPLIES)
        assert all(x["command"] == "DATA" and x["code"] == 550 for x in refused)
    finally:
        assert server.terminate() == 0


def test_a_clients_reply_marked_auto_replied_is_refused(tmp_path: Path) -> None:
    """The same Gmail reply, once a responder marks it Auto-Submitted: auto-replied, is refused and sends nothing."""
    path, _, out = config(tmp_path)
    raw = (FIXTURES / "gmail.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    raw = b"Auto-Submitted: auto-replied\r\n" + raw
    with thread_server(path) as server, smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
        client.ehlo("mail.example.com")
        client.mail("jan.novak@example.com")
        assert client.rcpt(ADDRESS)[0] == 250
        code, reply = client.data(raw)
        assert replies.AUTO_REPLY.matches(code, reply)
        assert reply.decode().endswith("Auto-Submitted: auto-replied")
        client.mail("jan.novak@example.com")  # the session goes on: the same reply without the marker is sent
        assert client.rcpt(ADDRESS)[0] == 250
        assert client.data(raw.split(b"\r\n", 1)[1])[0] == 250
        records = wait_until(lambda: sent(out))
        assert [r["text"] for r in records] == ["ACK, on my way"]
