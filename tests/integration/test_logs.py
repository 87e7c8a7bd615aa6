"""Logs that explain (issue 16, item 4), read from a real `mail2sms serve` process's JSON log lines.

Every SMTP refusal is one `smtp refused` line at info with the reply's name and the reason the client was given;
an SMS refused for the provider login, one that "may have been sent" and one that expired are warnings; each
outcome mail is logged `report delivered` once.
"""

from __future__ import annotations

import json
import smtplib
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from mail2sms.observability import SECRETS
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import (
    ROOT,
    ProcessServer,
    free_port,
    message,
    reports,
    send,
    thread_server,
    wait_until,
    write_config,
)

ROUTES = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "user"
password = "pass"
sender = "KWT-MESSAGE"

[providers.wrong]
type = "kwtsms"
url = "{url}"
username = "user"
password = "not-the-password"
sender = "KWT-MESSAGE"

[providers.dead]
type = "kwtsms"
url = "http://127.0.0.1:{dead}/API/"
username = "user"
password = "pass"
sender = "KWT-MESSAGE"
timeout = "2s"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"

[[routes]]
match = "*@wrong.test"
format = "address"
provider = "wrong"
region = "KW"

[[routes]]
match = "*@dead.test"
format = "address"
provider = "dead"
region = "KW"
lifetime = "1s"

[[routes]]
match = "*@closed.test"
format = "address"
provider = "kwt"
region = "KW"
allow = ["10.9.9.0/24"]
"""


def lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("{")]


def events(log: Path, event: str, **fields: Any) -> list[dict[str, Any]]:
    return [x for x in lines(log) if x.get("event") == event and all(x.get(k) == v for k, v in fields.items())]


def rcpt(port: int, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        return client.rcpt(address)


def test_every_refusal_and_trouble_is_logged_once_with_its_reason(tmp_path: Path) -> None:
    """Relay, bad number, route access and size refusals each give one info line naming the reply and reason;
    a refused provider login, a "may have been sent" and an expiry are warnings; one report, one delivery line."""
    with FakeKwtSms(accounts={"user": ("pass", 100.0)}, same_number_interval=0) as kwt:
        path, port = write_config(tmp_path, ROUTES.format(url=kwt.url, dead=free_port()))
        text = path.read_text(encoding="utf-8").replace(
            'hostname = "sms.test"', 'hostname = "sms.test"\nmax_message_size = "20KB"'
        )
        path.write_text(text, encoding="utf-8")
        log = tmp_path / "server.log"
        server = ProcessServer(path, port, log).start()
        try:
            assert rcpt(port, "96550000001@elsewhere.test")[0] == 550
            code, reply = rcpt(port, "12ab@sms.test")
            assert code == 550
            assert rcpt(port, "96550000001@closed.test")[0] in (530, 550)
            assert send(port, message("96550000002@sms.test", "x" * 30_000))[0] == 552
            refused = wait_until(lambda: len(events(log, "smtp refused")) >= 4 and events(log, "smtp refused"))

            # One SMS refused for the login, one that may have been sent, one that expires, one sent.
            assert send(port, message("96550000003@wrong.test", "login"))[0] == 250
            wait_until(lambda: events(log, "sms", code="ERR003"), timeout=30)
            kwt.reset_next()
            assert send(port, message("96550000004@sms.test", "maybe"))[0] == 250
            wait_until(lambda: events(log, "sms", state="unknown"), timeout=30)
            assert send(port, message("96550000005@dead.test", "late"))[0] == 250
            wait_until(lambda: events(log, "sms", state="expired") or events(log, "jobs expired"), timeout=60)
            assert send(port, message("96550000006@sms.test", "fine"))[0] == 250
            wait_until(lambda: len(events(log, "report delivered")) >= 4, timeout=60)
        finally:
            assert server.terminate() == 0

    by_reply = {x["reply"]: x for x in refused}
    assert len(refused) == 4  # each refusal once: no second line from the handler or the policy
    assert by_reply["relay_denied"]["command"] == "RCPT"
    assert by_reply["relay_denied"]["reason"] == "relaying denied"
    assert by_reply["relay_denied"]["rcpt"] == "96550000001@elsewhere.test"
    assert by_reply["bad_number"]["reason"].startswith("not a valid phone number")
    assert by_reply["bad_number"]["reason"] in reply.decode()
    assert {"not_allowed", "auth_required"} & by_reply.keys()
    assert by_reply["too_big"]["command"] == "DATA"
    assert by_reply["too_big"]["code"] == 552
    assert all(x["level"] == "info" and x.get("session") and x.get("peer") == "127.0.0.1" for x in refused)

    login = events(log, "sms", code="ERR003")
    assert [x["level"] for x in login] == ["warning"]
    assert "username or password" in login[0]["why"]
    unknown = events(log, "sms", state="unknown")
    assert [x["level"] for x in unknown] == ["warning"]
    expired = events(log, "sms", state="expired") + events(log, "jobs expired")
    assert expired
    assert all(x["level"] == "warning" for x in expired)
    sent = events(log, "sms", state="sent")
    assert all(x["level"] == "info" for x in sent)

    delivered = events(log, "report delivered")
    assert len(delivered) == 4  # four submissions, four reports, one line each
    assert "not-the-password" not in log.read_text(encoding="utf-8")


def test_a_busy_port_is_one_line_and_exit_status_1(tmp_path: Path) -> None:
    """`serve` on an SMTP port another process holds says which address and why in one line, exits 1, and
    prints no traceback."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        path, _ = write_config(tmp_path, "", port=busy)
        result = subprocess.run(
            [sys.executable, "-m", "mail2sms", "serve", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    problem = [line for line in result.stderr.splitlines() if line.startswith("mail2sms:")]
    assert problem == [f"mail2sms: cannot listen on 127.0.0.1:{busy} (server.listen): Address already in use"]


KEYVALUE = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "user"
password = "pass"
sender = "KWT-MESSAGE"

[[routes]]
match = "sms@sms.test"
format = "keyvalue"
provider = "kwt"
"""


def test_body_credentials_are_masked_until_their_submission_is_final(tmp_path: Path) -> None:
    """A provider password from a mail body is masked in log lines while its SMS is being sent and forgotten by
    the masker once the submission is final, so the registry holds only what live mail carries."""
    body_password = "body-secret-4711"
    with FakeKwtSms(
        accounts={"user": ("pass", 100.0), "bodyuser": (body_password, 100.0)}, same_number_interval=0
    ) as kwt:
        path, _ = write_config(tmp_path, KEYVALUE.format(url=kwt.url))
        kwt.delay_next(6.0)  # the SMS is in flight for a while (generously): its submission is not final yet
        with thread_server(path) as server:
            body = f"username:bodyuser\npassword:{body_password}\nmobile:96550000001\ntext:hi\n"
            assert send(server.port, message("sms@sms.test", body))[0] == 250
            kwt.wait_for(1, timeout=30)
            assert SECRETS.scrub(f"said {body_password}") == "said ***"
            wait_until(lambda: reports(tmp_path / "reports"), timeout=30)
            assert SECRETS.scrub(f"said {body_password}") == f"said {body_password}"
        assert [s.username for s in kwt.sent] == ["bodyuser"]
