"""SMTP AUTH: only over TLS (538 before) unless a loopback listener is marked; scrypt users; a user's own account."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mail2sms.smtp import replies
from mail2sms.smtp.auth import hash_password
from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ThreadServer, free_port, message, thread_server, wait_until
from tests.secure import RawSmtp, Tls, b64, config, make_tls

BODY = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "kwtuser"
password = "kwt-config-secret"
sender = "KWT-MESSAGE"
rate = 50

[[routes]]
match = "sms@sms.test"
format = "keyvalue"
provider = "kwt"
region = "KW"
allow = ["user:alarm"]

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
allow = ["authenticated"]

[[users]]
name = "alarm"
password_hash = "{alarm}"
provider_username = "alarmkwt"
provider_password = "alarm-own-kwt-secret"

[[users]]
name = "bob"
password_hash = "{bob}"
"""


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {"alarm": hash_password("alarm-password-1"), "bob": hash_password("bob-password-1")}


@pytest.fixture
def kwt() -> Iterator[FakeKwtSms]:
    accounts = {"kwtuser": ("kwt-config-secret", 100.0), "alarmkwt": ("alarm-own-kwt-secret", 100.0)}
    with FakeKwtSms(accounts=accounts, same_number_interval=0) as fake:
        yield fake


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return make_tls(tmp_path)


@pytest.fixture
def local_port() -> int:
    return free_port()


@pytest.fixture
def server(tmp_path: Path, kwt: FakeKwtSms, tls: Tls, hashes: dict[str, str], local_port: int
           ) -> Iterator[ThreadServer]:
    """Two plain listeners: the harness's (AUTH only after STARTTLS) and a loopback one marked auth_without_tls."""
    path, port, _ = config(tmp_path, BODY.format(url=kwt.url, **hashes),
                           server=f'tls_cert = "{tls.cert}"\ntls_key = "{tls.key}"\ntrusted_networks = []\n'
                                  f'auth_without_tls = ["127.0.0.1:{local_port}"]')
    text = path.read_text().replace(f'listen = ["127.0.0.1:{port}"]',
                                    f'listen = ["127.0.0.1:{port}", "127.0.0.1:{local_port}"]', 1)
    path.write_text(text)
    with thread_server(path) as srv:
        yield srv


def test_auth_before_tls_is_538(server: ThreadServer) -> None:
    """Before STARTTLS, AUTH is not offered and AUTH PLAIN or LOGIN gets the table's 538 5.7.11."""
    raw = RawSmtp(server.port)
    try:
        code, ehlo = raw.command("EHLO client.example.org")
        assert code == 250
        assert "STARTTLS" in ehlo
        assert "AUTH" not in ehlo
        code, text = raw.command("AUTH PLAIN " + b64("\0alarm\0alarm-password-1"))
        assert replies.ENCRYPTION_REQUIRED.matches(code, text)
        code, text = raw.command("AUTH LOGIN")
        assert replies.ENCRYPTION_REQUIRED.matches(code, text)
        assert raw.command("NOOP")[0] == 250  # no challenge is pending: the session is still in step
    finally:
        raw.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_after_starttls(server: ThreadServer, tls: Tls, mechanism: str) -> None:
    """After STARTTLS, PLAIN and LOGIN accept the right password and refuse a wrong one with 535."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.starttls(context=tls.client_context())
        client.ehlo("client.example.org")
        client.user, client.password = "alarm", "wrong-password"
        method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.auth(mechanism, method)
        assert refused.value.smtp_code == 535
        client.password = "alarm-password-1"
        assert client.auth(mechanism, method)[0] == 235


def test_unknown_user_is_refused_like_a_wrong_password(server: ThreadServer, tls: Tls) -> None:
    """A name that is not in [[users]] gets the same 535 as a wrong password."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.starttls(context=tls.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login("mallory", "alarm-password-1")
        assert refused.value.smtp_code == 535


def test_local_only_listener_takes_auth_without_tls(server: ThreadServer, local_port: int) -> None:
    """The loopback listener named in auth_without_tls offers and accepts AUTH in plaintext."""
    with smtplib.SMTP("127.0.0.1", local_port, timeout=30) as client:
        client.ehlo("client.example.org")
        assert client.has_extn("auth")
        assert client.login("alarm", "alarm-password-1")[0] == 235


def test_unauthenticated_client_must_authenticate(server: ThreadServer) -> None:
    """With no trusted network, an unauthenticated RCPT on an `authenticated` route gets 530 5.7.0."""
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        code, text = client.rcpt("96550000201@sms.test")
    assert replies.AUTH_REQUIRED.matches(code, text)


def test_user_route_refuses_other_users(server: ThreadServer, local_port: int) -> None:
    """A route allowed to user:alarm refuses the authenticated user bob with 550 5.7.1."""
    with smtplib.SMTP("127.0.0.1", local_port, timeout=30) as client:
        client.login("bob", "bob-password-1")
        client.mail("bob@example.org")
        code, text = client.rcpt("sms@sms.test")
    assert replies.NOT_ALLOWED.matches(code, text)


def test_user_provider_account_is_used(server: ThreadServer, local_port: int, kwt: FakeKwtSms) -> None:
    """An authenticated user's own provider account sends their SMS: no password in the mail body."""
    with smtplib.SMTP("127.0.0.1", local_port, timeout=30) as client:
        client.login("alarm", "alarm-password-1")
        client.send_message(message("sms@sms.test", "mobile:96550000202\ntext:door+open\n"))
        client.send_message(message("96550000203@sms.test", "window open"))
    wait_until(lambda: len(kwt.sent) == 2)
    assert {(s.username, s.number, s.text) for s in kwt.sent} == {
        ("alarmkwt", "96550000202", "door open"), ("alarmkwt", "96550000203", "window open")}


def test_bob_without_account_uses_route_account(server: ThreadServer, local_port: int, kwt: FakeKwtSms) -> None:
    """A user without a provider account of their own sends on the provider's configured account."""
    with smtplib.SMTP("127.0.0.1", local_port, timeout=30) as client:
        client.login("bob", "bob-password-1")
        client.send_message(message("96550000204@sms.test", "from bob"))
    wait_until(lambda: kwt.sent)
    assert kwt.sent[0].username == "kwtuser"


def test_no_users_means_no_auth(tmp_path: Path, tls: Tls) -> None:
    """Without [[users]], AUTH is not offered even over TLS, and an AUTH command gets 502 5.5.1."""
    body = ('[providers.out]\ntype = "outbox"\npath = "out.jsonl"\n\n'
            '[[routes]]\nmatch = "*@sms.test"\nformat = "address"\nprovider = "out"\nregion = "KW"\n')
    path, _, _ = config(tmp_path, body, server=f'tls_cert = "{tls.cert}"\ntls_key = "{tls.key}"')
    with thread_server(path) as srv, smtplib.SMTP("127.0.0.1", srv.port, timeout=30) as client:
        client.starttls(context=tls.client_context())
        client.ehlo("client.example.org")
        assert not client.has_extn("auth")
        code, text = client.docmd("AUTH", "PLAIN " + b64("\0a\0b"))
        assert replies.AUTH_UNAVAILABLE.matches(code, text)


AUTH_CANARY = "CanaryAuth-5e1f0c"
WRONG_CANARY = "CanaryWrong-3b9d72"
USER_PROVIDER_CANARY = "CanaryUserKwt-a4c6e8"
CONFIG_CANARY = "CanaryConfigKwt-0d2b7f"
BODY_CANARY = "CanaryBody-77e0a1"

CANARY_BODY = f"""
[providers.kwt]
type = "kwtsms"
url = "{{url}}"
username = "kwtuser"
password = "{CONFIG_CANARY}"
sender = "KWT-MESSAGE"
rate = 50
timeout = "2s"

[[routes]]
match = "sms@sms.test"
format = "keyvalue"
provider = "kwt"
region = "KW"
allow = ["trusted", "authenticated"]
allowed_countries = ["KW"]

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
allow = ["trusted", "authenticated"]

[[users]]
name = "alarm"
password_hash = "{{hash}}"
provider_username = "alarmkwt"
provider_password = "{USER_PROVIDER_CANARY}"
"""


def test_canaries_never_leak_through_auth_policy_and_http(tmp_path: Path) -> None:
    """AUTH passwords (right, wrong, before TLS, in the user field), user and config provider passwords and body
    credentials, driven through success and every refusal: none appears in logs, replies, reports or /metrics."""
    from tests.harness import ProcessServer, reports
    from tests.secure import http_get

    tls = make_tls(tmp_path)
    accounts = {"kwtuser": (CONFIG_CANARY, 100.0), "alarmkwt": (USER_PROVIDER_CANARY, 100.0)}
    with FakeKwtSms(accounts=accounts, same_number_interval=0) as kwt:
        path, port, http = config(tmp_path, CANARY_BODY.format(url=kwt.url, hash=hash_password(AUTH_CANARY)),
                                  server=f'tls_cert = "{tls.cert}"\ntls_key = "{tls.key}"', http=True)
        assert http is not None
        log = tmp_path / "server.log"
        server = ProcessServer(path, port, log).start()
        seen: list[str] = []
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:  # AUTH in the clear: 538
                client.ehlo("client.example.org")
                seen.append(str(client.docmd("AUTH", "PLAIN " + b64(f"\0alarm\0{AUTH_CANARY}"))))
                client.starttls(context=tls.client_context())
                client.ehlo("client.example.org")
                for user, password in (("alarm", WRONG_CANARY), (AUTH_CANARY, "x")):
                    try:
                        client.login(user, password)
                    except smtplib.SMTPAuthenticationError as exc:
                        seen.append(str(exc))
                seen.append(str(client.docmd("AUTH", "PLAIN " + b64(f"alarm\0{AUTH_CANARY}"))))  # malformed: 501
                seen.append(str(client.login("alarm", AUTH_CANARY)))
                # success on the user's own account; a provider failure on the config account (via trust)
                seen.append(str(client.send_message(message("96550000501@sms.test", "on my account"))))
            kwt.wait_for(1, timeout=60)
            kwt.fail_next(500, f"internal error for {CONFIG_CANARY}")
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                seen.append(str(client.send_message(message("96550000502@sms.test", "five hundred"))))
                body = f"username:bodyuser\npassword:{BODY_CANARY}\nmobile:96550000503\ntext:hi\n"
                seen.append(str(client.send_message(message("sms@sms.test", body))))  # ERR003
                client.mail("alice@example.org")
                client.rcpt("sms@sms.test")
                seen.append(str(client.data(message("sms@sms.test", body.replace("96550000503", "+12125550123"))
                                            .as_bytes())))  # number policy: 550
                client.mail("alice@example.org")
                client.rcpt("sms@sms.test")
                seen.append(str(client.data(message("sms@sms.test", body + "secret:x\n").as_bytes())))  # 554
            wait_until(lambda: len(reports(tmp_path / "reports")) >= 3, timeout=120)
            seen += [http_get(http, "/metrics")[1].decode(), http_get(http, "/healthz")[1].decode()]
        finally:
            assert server.terminate() == 0
        assert any(r.param("password") == USER_PROVIDER_CANARY for r in kwt.requests)
        assert any(r.param("password") == BODY_CANARY for r in kwt.requests)
    logged = log.read_text(encoding="utf-8")
    assert "auth failed" in logged  # the failure paths were logged
    assert '"reply": "number_not_allowed"' in logged
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    session_lines = [x for x in lines if x["event"] in ("auth failed", "smtp refused", "queued")]
    assert session_lines
    assert all(x.get("session") for x in session_lines)  # every line of an SMTP session names it
    assert all(x.get("submission") for x in session_lines if x["event"] == "queued")
    mail = b"".join(p.read_bytes() for p in (tmp_path / "reports" / "new").iterdir()).decode("utf-8", "replace")
    for canary in (AUTH_CANARY, WRONG_CANARY, USER_PROVIDER_CANARY, CONFIG_CANARY, BODY_CANARY):
        for text in (logged, mail, *seen):
            assert canary not in text
            assert b64(canary)[:12] not in text
