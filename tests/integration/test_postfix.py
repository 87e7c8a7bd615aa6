"""The README's "Behind Postfix" section, followed literally with Debian's Postfix (installed by `.ci/run`).

Postfix runs from its own configuration directory in a temporary directory (`postfix -c DIR`), on loopback high
ports, with no DNS. Its main.cf, transport and access files are the README's blocks as written, with only the
SMS domain, the ports and the file paths substituted. The outside world is one capture server: the sender's
domain is routed to it, so the bounce and the outcome mail that Postfix delivers to the sender land there.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import re
import shutil
import smtplib
import subprocess
import tempfile
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.fakes.kwtsms import FakeKwtSms
from tests.harness import ROOT, free_port, message, thread_server, wait_until, write_config

pytestmark = [
    pytest.mark.skipif(
        shutil.which("postfix") is None or shutil.which("postconf") is None,
        reason="Debian's postfix is not installed (.ci/run installs it)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="postfix start needs root (its daemons drop to the postfix user)"),
]

SMS_DOMAIN = "sms.test"
SENDER = "alice@sender.test"

MAIL2SMS = """
[providers.kwt]
type = "kwtsms"
url = "{url}"
username = "user"
password = "pass"
sender = "KWT-MESSAGE"

[[routes]]
match = "*@{domain}"
format = "address"
provider = "kwt"
region = "KW"
"""


class Capture:
    """The sender's mail server: keeps every message Postfix delivers to it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"

    def find(self, predicate: Any) -> EmailMessage | None:
        for _sender, _rcpts, msg in list(self.messages):
            if predicate(msg):
                return msg
        return None


def readme_blocks(verify: bool = False) -> dict[str, str]:
    """The README's "Behind Postfix" code blocks, split by the file each part belongs to ('main.cf', 'transport',
    'sms_access', 'mail2sms.toml', 'sms_verify'). With `verify`, main.cf also gets the lines of the block that
    turns on address verification, after the first block's (in main.cf a later setting wins)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Behind Postfix\n", 1)[1].split("\n### ", 1)[0]
    files: dict[str, str] = {}
    for block in re.findall(r"```[a-z]*\n(.*?)```", section, re.DOTALL):
        variant = "sms_verify" in block
        if variant and not verify:
            continue
        current = ""
        parts: dict[str, list[str]] = {}
        for line in block.splitlines():
            head = re.match(r"# /etc/(?:postfix|mail2sms)/(\S+)", line)
            if head:
                current = head.group(1).rstrip(":")
                parts.setdefault(current, [])
                continue
            if current:
                parts[current].append(line)
        for name, lines in parts.items():
            body = "\n".join(lines).strip() + "\n"
            files[name] = files.get(name, "") + ("\n" if name in files else "") + body
    return files


def postfix_files(cfg: Path, smtpd_port: int, mail2sms_port: int, sink_port: int, verify: bool = False) -> None:
    """Write main.cf, master.cf and the maps: the README's lines, plus what a private loopback instance needs."""
    blocks = readme_blocks(verify)

    def ours(text: str) -> str:
        return (
            text.replace("sms.example.org", SMS_DOMAIN)
            .replace("/etc/postfix/", f"{cfg}/")
            .replace("[127.0.0.1]:8025", f"[127.0.0.1]:{mail2sms_port}")
        )

    queue = cfg / "queue"  # root's, as Postfix wants it; `postfix check` makes the subdirectories
    data = cfg / "data"
    queue.mkdir()
    data.mkdir()
    shutil.chown(data, "postfix")
    private = f"""
# A private instance: its own queue and data directories, loopback only, no DNS, no chroot.
queue_directory = {queue}
data_directory = {data}
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
compatibility_level = 3.6
myhostname = postfix.test
mydomain = postfix.test
myorigin = postfix.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_host_lookup = native
disable_dns_lookups = yes
smtputf8_enable = no
maillog_file_prefixes = {cfg}
maillog_file = {cfg}/maillog
alias_maps =
local_recipient_maps =
# Retries and bounces at test speed.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 0
"""
    (cfg / "main.cf").write_text(ours(blocks["main.cf"]) + private, encoding="utf-8")
    # The test's "internet": the sender's domain is delivered to the capture server.
    transport = ours(blocks["transport"]) + f"sender.test    smtp:[127.0.0.1]:{sink_port}\n"
    (cfg / "transport").write_text(transport, encoding="utf-8")
    tables = ["transport", "sms_access"] + (["sms_verify"] if verify else [])
    for table in tables[1:]:
        (cfg / table).write_text(ours(blocks[table]), encoding="utf-8")
    master = []
    for line in Path("/etc/postfix/master.cf").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if line[:1] in ("", "#", " ", "\t") or len(fields) < 8:
            master.append(line)
            continue
        if fields[0] == "smtp" and fields[1] == "inet":
            fields[0] = f"127.0.0.1:{smtpd_port}"
        fields[4] = "n"  # no chroot: the queue lives in a temporary directory
        master.append("  ".join(fields[:8]) + (" " + " ".join(fields[8:]) if fields[8:] else ""))
    (cfg / "master.cf").write_text("\n".join(master) + "\n", encoding="utf-8")
    for table in tables:
        subprocess.run(["postmap", "-c", str(cfg), f"hash:{cfg}/{table}"], check=True, timeout=30)


def postfix(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["postfix", "-c", str(cfg), *args], capture_output=True, text=True, timeout=60, check=False)


def queue_empty(cfg: Path) -> bool:
    out = subprocess.run(["postqueue", "-c", str(cfg), "-j"], capture_output=True, text=True, timeout=30, check=False)
    return out.returncode == 0 and not out.stdout.strip()


@pytest.fixture
def postfix_dir() -> Iterator[Path]:
    """A configuration directory outside pytest's private tmp, so Postfix's unprivileged daemons can reach it."""
    cfg = Path(tempfile.mkdtemp(prefix="mail2sms-postfix-"))
    cfg.chmod(0o755)
    try:
        yield cfg
    finally:
        if (cfg / "queue" / "pid" / "master.pid").exists():
            postfix(cfg, "stop")
            wait_until(lambda: postfix(cfg, "status").returncode != 0, timeout=30)
        shutil.rmtree(cfg, ignore_errors=True)


def submit(port: int, msg: EmailMessage, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        refused = client.send_message(msg, from_addr=SENDER, to_addrs=rcpts)
        assert refused == {}


@contextlib.contextmanager
def gateway(tmp_path: Path, cfg: Path, verify: bool = False) -> Iterator[tuple[int, Capture, FakeKwtSms]]:
    """Postfix in front of mail2sms in front of a fake KwtSMS, as the README says; yields Postfix's SMTP port."""
    smtpd_port, sink_port = free_port(), free_port()
    capture = Capture()
    sink = Controller(capture, hostname="127.0.0.1", port=sink_port)
    sink.start()
    try:
        with FakeKwtSms(accounts={"user": ("pass", 100.0)}, same_number_interval=0) as kwt:
            path, mail2sms_port = write_config(tmp_path, MAIL2SMS.format(url=kwt.url, domain=SMS_DOMAIN))
            reports_block = readme_blocks()["mail2sms.toml"].replace("127.0.0.1:25", f"127.0.0.1:{smtpd_port}")
            text = path.read_text(encoding="utf-8")
            reports_table = re.search(r"\[reports\]\n(?:[^\[\n][^\n]*\n)*", text)
            assert reports_table is not None
            ours = reports_block + f'maildir = "{tmp_path}/reports"\n'
            path.write_text(text.replace(reports_table.group(0), ours), encoding="utf-8")
            postfix_files(cfg, smtpd_port, mail2sms_port, sink_port, verify)
            check = postfix(cfg, "check")
            assert check.returncode == 0, check.stderr
            started = postfix(cfg, "start")
            assert started.returncode == 0, started.stderr
            try:
                with thread_server(path):
                    wait_until(lambda: _accepts(smtpd_port), timeout=30)
                    yield smtpd_port, capture, kwt
                    wait_until(lambda: queue_empty(cfg), timeout=30)
            finally:
                stopped = postfix(cfg, "stop")
                assert stopped.returncode == 0, stopped.stderr
    finally:
        sink.stop()


def test_mail_through_postfix_as_the_readme_says(tmp_path: Path, postfix_dir: Path) -> None:
    """Through Postfix configured as the README says: a good number becomes an SMS, a bad one bounces with
    mail2sms's reason, and the outcome mail comes back to the sender through Postfix (reports.smarthost)."""
    with gateway(tmp_path, postfix_dir) as (port, capture, kwt):
        submit(port, message(f"96550000001@{SMS_DOMAIN}", "Door open", sender=SENDER), [f"96550000001@{SMS_DOMAIN}"])
        submit(
            port,
            message(f"notanumber@{SMS_DOMAIN}", "never", sender=SENDER, subject="bad number"),
            [f"notanumber@{SMS_DOMAIN}"],
        )
        wait_until(lambda: kwt.sent, timeout=45)
        bounce = wait_until(lambda: capture.find(_bounce_for("notanumber")), timeout=45)
        outcome = wait_until(lambda: capture.find(_outcome), timeout=45)
    assert [(s.number, s.text) for s in kwt.sent] == [("96550000001", "Door open")]
    assert "550 5.1.1 not a valid phone number" in bounce.as_string()
    assert "mail2sms@example.org" in str(outcome["From"])
    delivered = [m for m in capture.messages if _outcome(m[2])]
    assert [(m[0], m[1]) for m in delivered] == [("<>", [SENDER])]  # once, with the null sender
    assert "postfix.test" in " ".join(str(h) for h in outcome.get_all("Received", []))  # it came through Postfix
    assert not any(SMS_DOMAIN in r for _s, rcpts, _m in capture.messages for r in rcpts)


def test_postfix_refuses_a_bad_number_at_rcpt_with_address_verification(tmp_path: Path, postfix_dir: Path) -> None:
    """With the README's address-verification lines, Postfix refuses a bad number at RCPT with 550 and
    mail2sms's reason, while a good number is accepted and becomes one SMS (the probe sends nothing)."""
    with gateway(tmp_path, postfix_dir, verify=True) as (port, _capture, kwt):
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.ehlo("client.example.org")
            assert client.mail(SENDER)[0] == 250
            # The first answer may be "verification in progress" (450) if the probe is slow: ask until it is not.
            code, text = wait_until(lambda: _final_rcpt(client, f"notanumber@{SMS_DOMAIN}"), timeout=45)
            assert code == 550, text
            assert b"5.1.1" in text
            assert b"said: 550 5.1.1 not a valid phone number" in text
        submit(port, message(f"96550000002@{SMS_DOMAIN}", "verified", sender=SENDER), [f"96550000002@{SMS_DOMAIN}"])
        wait_until(lambda: kwt.sent, timeout=45)
    assert [(s.number, s.text) for s in kwt.sent] == [("96550000002", "verified")]


def _final_rcpt(client: smtplib.SMTP, rcpt: str) -> tuple[int, bytes] | None:
    code, text = client.rcpt(rcpt)
    return None if code == 450 else (code, text)


def _accepts(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            return client.noop()[0] == 250
    except OSError:
        return False


def _bounce_for(local: str) -> Any:
    def match(msg: EmailMessage) -> bool:
        return "Undelivered" in str(msg["Subject"] or "") and local in msg.as_string()

    return match


def _outcome(msg: EmailMessage) -> bool:
    return "Undelivered" not in str(msg["Subject"] or "") and "mail2sms@example.org" in str(msg["From"] or "")
