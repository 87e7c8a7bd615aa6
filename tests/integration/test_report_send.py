"""Delivering outcome mail: into a Maildir, and to a real SMTP smarthost on loopback (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from mail2sms.config import ReportsConfig
from mail2sms.report.send import DeliveryOutcome, Outgoing, ReportSender
from tests.harness import free_port

RECIPIENT = "alice@example.org"


def report() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "mail2sms@sms.example.org"
    message["To"] = RECIPIENT
    message["Subject"] = "SMS sent: 1 of 1 ✓"
    message["Auto-Submitted"] = "auto-replied"
    message.set_content("+96550000000: sent — 1 part, GSM-7\n", charset="utf-8", cte="quoted-printable")
    message.add_attachment(b'{"jobs": []}', maintype="application", subtype="json", filename="results.json")
    return message


@dataclass
class Recorder:
    """An aiosmtpd handler that records envelopes and can be told to refuse at RCPT or DATA."""

    rcpt_reply: str | None = None
    data_reply: str | None = None
    mail_from: list[str] = field(default_factory=list)
    rcpt_tos: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.mail_from.append(address)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        self.rcpt_tos.append(address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        self.messages.append(envelope.original_content or envelope.content)
        return "250 2.0.0 queued"


@pytest.fixture
def smarthost() -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


def via_smarthost(port: int, timeout: float = 10.0) -> ReportSender:
    config = ReportsConfig(smarthost=f"127.0.0.1:{port}")
    return ReportSender(config, hostname="sms.example.org", timeout=timeout)


def via_maildir(path: Path) -> ReportSender:
    return ReportSender(ReportsConfig(maildir=str(path)))


async def test_maildir_delivery_lands_in_new(tmp_path: Path) -> None:
    """Without a smarthost the report lands in new/ of a fresh Maildir, tmp/ is left empty, cur/ exists."""
    maildir = tmp_path / "reports"
    assert await via_maildir(maildir).deliver(report(), RECIPIENT) is DeliveryOutcome.DELIVERED
    files = list((maildir / "new").iterdir())
    assert len(files) == 1
    assert list((maildir / "tmp").iterdir()) == []
    assert (maildir / "cur").is_dir()
    seconds, pid_counter, host = files[0].name.split(".", 2)
    assert seconds.isdigit()
    assert pid_counter.startswith(f"{os.getpid()}_")
    assert host


async def test_maildir_copy_parses_back_with_return_path(tmp_path: Path) -> None:
    """The Maildir copy parses as the same mail, with Return-Path <> and Delivered-To the recipient."""
    maildir = tmp_path / "reports"
    await via_maildir(maildir).deliver(report(), RECIPIENT)
    (file,) = (maildir / "new").iterdir()
    parsed = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Return-Path"] == "<>"
    assert parsed["Delivered-To"] == RECIPIENT
    assert parsed["Subject"] == "SMS sent: 1 of 1 ✓"
    assert parsed["Auto-Submitted"] == "auto-replied"
    body = parsed.get_body(("plain",))
    assert body is not None
    assert body.get_content() == "+96550000000: sent — 1 part, GSM-7\n"
    assert [p.get_filename() for p in parsed.iter_attachments()] == ["results.json"]


async def test_maildir_files_are_private_and_names_unique(tmp_path: Path) -> None:
    """Many concurrent deliveries get distinct files readable only by the owner."""
    maildir = tmp_path / "reports"
    sender = via_maildir(maildir)
    outcomes = await asyncio.gather(*(sender.deliver(report(), RECIPIENT) for _ in range(50)))
    assert set(outcomes) == {DeliveryOutcome.DELIVERED}
    files = list((maildir / "new").iterdir())
    assert len(files) == 50
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


async def test_keyed_maildir_delivery_is_found_through_the_index_even_after_the_reader_moved_it(
    tmp_path: Path,
) -> None:
    """A keyed report is written once: again after a mail client moved it to cur/, it is found by the index (no
    scan) and not written twice; after `forget` (the spool recorded it) the index entry is gone."""
    maildir = tmp_path / "reports"
    sender = via_maildir(maildir)
    assert await sender.deliver(report(), RECIPIENT, key="SUB1") is DeliveryOutcome.DELIVERED
    (file,) = (maildir / "new").iterdir()
    file.rename(maildir / "cur" / f"{file.name}:2,S")  # what a mail client does once it has shown the mail
    assert await sender.deliver(report(), RECIPIENT, key="SUB1") is DeliveryOutcome.DELIVERED
    assert list((maildir / "new").iterdir()) == []
    assert len(list((maildir / "cur").iterdir())) == 1
    assert (maildir / "mail2sms-index" / "SUB1").stat().st_nlink == 2  # one inode: the index and the mail
    await sender.forget(["SUB1"])
    assert list((maildir / "mail2sms-index").iterdir()) == []


async def test_a_report_indexed_but_not_in_new_is_finished_once(tmp_path: Path) -> None:
    """A crash between entering a report in the index and linking it into new/ is finished by the next try, with
    the indexed copy, and only once."""
    maildir = tmp_path / "reports"
    sender = via_maildir(maildir)
    assert await sender.deliver(report(), RECIPIENT, key="SUB2") is DeliveryOutcome.DELIVERED
    (file,) = (maildir / "new").iterdir()
    file.unlink()  # as if the crash came before the link into new/: only the index holds the mail
    for _ in range(2):
        assert await sender.deliver(report(), RECIPIENT, key="SUB2") is DeliveryOutcome.DELIVERED
    (again,) = (maildir / "new").iterdir()
    parsed = email.message_from_bytes(again.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "SMS sent: 1 of 1 ✓"


async def test_a_group_is_written_with_one_outcome_per_report(tmp_path: Path) -> None:
    """deliver_many writes a group (keyed and not) and answers per report; a bad address drops only itself."""
    maildir = tmp_path / "reports"
    items = [Outgoing(report(), RECIPIENT, key=f"G{i}") for i in range(5)]
    items.insert(2, Outgoing(report(), "bad address@example.org", key="G-bad"))
    outcomes = await via_maildir(maildir).deliver_many(items)
    assert outcomes == [DeliveryOutcome.DELIVERED] * 2 + [DeliveryOutcome.DROP] + [DeliveryOutcome.DELIVERED] * 3
    assert len(list((maildir / "new").iterdir())) == 5


async def test_a_group_goes_over_one_smarthost_connection(smarthost: tuple[Recorder, int]) -> None:
    """Several reports to the smarthost share one SMTP session: one connection, one transaction per report, and a
    refused recipient does not stop the others."""
    recorder, port = smarthost
    sessions: list[object] = []
    original = recorder.handle_MAIL

    async def counting_mail(server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if session not in sessions:
            sessions.append(session)
        return await original(server, session, envelope, address, options)
    recorder.handle_MAIL = counting_mail  # type: ignore[method-assign]
    items = [Outgoing(report(), f"user{i}@example.org", key=f"S{i}") for i in range(4)]
    outcomes = await via_smarthost(port).deliver_many(items)
    assert outcomes == [DeliveryOutcome.DELIVERED] * 4
    assert len(recorder.messages) == 4
    assert len(sessions) == 1


async def test_unwritable_maildir_means_retry(tmp_path: Path) -> None:
    """When the Maildir cannot be created, the report is kept for a later try rather than lost."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert await via_maildir(blocker / "reports").deliver(report(), RECIPIENT) is DeliveryOutcome.RETRY


@pytest.mark.parametrize("recipient", ["", "alice@example.org\r\nBcc: x@y.org", "alice smith@example.org"])
async def test_unusable_recipient_is_dropped(tmp_path: Path, recipient: str) -> None:
    """An address that could inject a header or command is never written or sent, only dropped."""
    maildir = tmp_path / "reports"
    assert await via_maildir(maildir).deliver(report(), recipient) is DeliveryOutcome.DROP
    assert not maildir.exists()


async def test_smarthost_delivery_uses_the_null_sender(smarthost: tuple[Recorder, int]) -> None:
    """The smarthost gets MAIL FROM:<> and RCPT TO the recipient, and the mail arrives intact."""
    recorder, port = smarthost
    assert await via_smarthost(port).deliver(report(), RECIPIENT) is DeliveryOutcome.DELIVERED
    (mail_from,) = recorder.mail_from
    assert mail_from in ("", "<>")  # aiosmtpd hands the null reverse-path over as "<>"
    assert recorder.rcpt_tos == [RECIPIENT]
    (raw,) = recorder.messages
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "SMS sent: 1 of 1 ✓"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["Return-Path"] is None


async def test_smarthost_temporary_refusal_means_retry(smarthost: tuple[Recorder, int]) -> None:
    """A 451 at DATA is temporary: the outcome is RETRY."""
    recorder, port = smarthost
    recorder.data_reply = "451 4.3.0 try again later"
    assert await via_smarthost(port).deliver(report(), RECIPIENT) is DeliveryOutcome.RETRY


async def test_smarthost_temporary_recipient_refusal_means_retry(smarthost: tuple[Recorder, int]) -> None:
    """A 450 at RCPT (greylisting, mailbox busy) is temporary: the outcome is RETRY."""
    recorder, port = smarthost
    recorder.rcpt_reply = "450 4.2.0 mailbox busy"
    assert await via_smarthost(port).deliver(report(), RECIPIENT) is DeliveryOutcome.RETRY


async def test_smarthost_permanent_refusal_means_drop(smarthost: tuple[Recorder, int]) -> None:
    """A 550 at RCPT is permanent: the outcome is DROP."""
    recorder, port = smarthost
    recorder.rcpt_reply = "550 5.1.1 no such user"
    assert await via_smarthost(port).deliver(report(), RECIPIENT) is DeliveryOutcome.DROP
    assert recorder.messages == []


async def test_smarthost_permanent_data_refusal_means_drop(smarthost: tuple[Recorder, int]) -> None:
    """A 554 at DATA is permanent: the outcome is DROP."""
    recorder, port = smarthost
    recorder.data_reply = "554 5.7.1 rejected as spam"
    assert await via_smarthost(port).deliver(report(), RECIPIENT) is DeliveryOutcome.DROP


async def test_connection_refused_means_retry() -> None:
    """Nobody listening on the smarthost port is temporary trouble: the outcome is RETRY."""
    assert await via_smarthost(free_port()).deliver(report(), RECIPIENT) is DeliveryOutcome.RETRY


async def test_silent_smarthost_times_out_to_retry() -> None:
    """A smarthost that accepts the connection but never greets times out into RETRY."""
    writers: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        outcome = await via_smarthost(port, timeout=0.5).deliver(report(), RECIPIENT)
    finally:
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
    assert outcome is DeliveryOutcome.RETRY


@pytest.fixture
def auth_smarthost() -> Iterator[tuple[Recorder, int, list[tuple[str, str]]]]:
    """A smarthost that requires AUTH (PLAIN/LOGIN over plain TCP: loopback only) and records the logins."""
    from aiosmtpd.smtp import AuthResult, LoginPassword

    recorder, logins = Recorder(), []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=data.password == b"relay-secret-42")

    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_require_tls=False)
    controller.start()
    try:
        yield recorder, port, logins
    finally:
        controller.stop()


async def test_smarthost_with_auth(auth_smarthost: tuple[Recorder, int, list[tuple[str, str]]]) -> None:
    """With smarthost_username/password the report is sent after AUTH; a refused login keeps the report (retry)."""
    recorder, port, logins = auth_smarthost
    good = ReportsConfig(smarthost=f"127.0.0.1:{port}", smarthost_tls="none", smarthost_username="reports",
                         smarthost_password="relay-secret-42")  # type: ignore[arg-type]
    assert await ReportSender(good).deliver(report(), RECIPIENT) is DeliveryOutcome.DELIVERED
    assert logins == [("reports", "relay-secret-42")]
    assert recorder.rcpt_tos == [RECIPIENT]
    bad = good.model_copy(update={"smarthost_password": SecretStr("wrong")})
    assert await ReportSender(bad, timeout=2.0).deliver(report(), RECIPIENT) is DeliveryOutcome.RETRY
    assert len(recorder.messages) == 1


async def test_required_starttls_without_it_is_retried(smarthost: tuple[Recorder, int]) -> None:
    """smarthost_tls = "starttls" never sends a report in clear text: a smarthost without STARTTLS means retry."""
    recorder, port = smarthost
    config = ReportsConfig(smarthost=f"127.0.0.1:{port}", smarthost_tls="starttls")
    assert await ReportSender(config).deliver(report(), RECIPIENT) is DeliveryOutcome.RETRY
    assert not recorder.messages
