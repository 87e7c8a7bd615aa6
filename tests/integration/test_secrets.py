"""Canary secrets (config password, body password) never reach logs, SMTP replies or outcome mail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ROOT, ProcessServer, message, reports, send, wait_until, write_config

CONFIG_CANARY = "CanaryConfig-7f3a9e"
BODY_CANARY = "CanaryBody-91c2d4"

CONFIG = f"""
[providers.kwt]
type = "kwtsms"
url = "{{url}}"
username = "user"
password = "{CONFIG_CANARY}"
sender = "KWT-MESSAGE"
rate = 50
timeout = "2s"

[[routes]]
match = "sms@sms.test"
format = "keyvalue"
provider = "kwt"
region = "KW"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
region = "KW"
"""


def test_canaries_never_leak(tmp_path: Path) -> None:
    """Success, refused login, bad content, a provider 500 and a reset: no canary in logs, replies or reports."""
    with FakeKwtSms(accounts={"user": (CONFIG_CANARY, 100.0), "body": ("right-password", 100.0)},
                    same_number_interval=0) as kwt:
        path, port = write_config(tmp_path, CONFIG.format(url=kwt.url))
        log = tmp_path / "server.log"
        server = ProcessServer(path, port, log).start()
        replies_seen: list[bytes] = []
        try:
            # 1. success with the configured account
            replies_seen.append(send(port, message("96550000301@sms.test", "hello"))[1])
            # 2. body credentials the provider refuses (ERR003)
            body = f"username:body\npassword:{BODY_CANARY}\nmobile:96550000302\ntext:hi\n"
            replies_seen.append(send(port, message("sms@sms.test", body))[1])
            kwt.wait_for(2, timeout=60)
            # 3. a content error in a body that carries a password
            bad = f"username:body\npassword:{BODY_CANARY}\nmobil:96550000303\ntext:hi\n"
            replies_seen.append(send(port, message("sms@sms.test", bad))[1])
            bad_line = f"password:{BODY_CANARY}\nthis line has no colon {BODY_CANARY}\n"
            replies_seen.append(send(port, message("sms@sms.test", bad_line))[1])
            # 4. the provider fails with 500, then resets the connection after reading the request
            kwt.fail_next(500, f"internal error for password {CONFIG_CANARY}")
            replies_seen.append(send(port, message("96550000304@sms.test", "five hundred"))[1])
            kwt.wait_for(3, timeout=60)
            kwt.reset_next()
            replies_seen.append(send(port, message("96550000305@sms.test", "reset"))[1])
            wait_until(lambda: len(reports(tmp_path / "reports")) >= 4, timeout=120)
        finally:
            assert server.terminate() == 0
        # The provider really saw the canaries (the test would prove nothing otherwise).
        assert any(r.param("password") == BODY_CANARY for r in kwt.requests)
        assert any(r.param("password") == CONFIG_CANARY for r in kwt.requests)
    logged = log.read_text(encoding="utf-8")
    assert "ERR003" in logged  # the log is not empty: the failure paths were logged
    mail = b"".join(p.read_bytes() for p in (tmp_path / "reports" / "new").iterdir())
    for canary in (CONFIG_CANARY, BODY_CANARY):
        assert canary not in logged
        assert all(canary.encode() not in r for r in replies_seen)
        assert canary.encode() not in mail


def test_show_config_masks_secrets(tmp_path: Path) -> None:
    """`mail2sms show-config` prints *** for every secret, and the rest of the config."""
    path, _ = write_config(tmp_path, CONFIG.format(url="http://127.0.0.1:9/API/"))
    out = subprocess.run([sys.executable, "-m", "mail2sms", "show-config", "--config", str(path)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert CONFIG_CANARY not in out.stdout + out.stderr
    assert 'password = "***"' in out.stdout
    assert 'username = "user"' in out.stdout
