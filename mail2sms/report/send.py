"""Deliver a composed outcome mail: to the smarthost over SMTP, or into a Maildir folder when there is none.

Over SMTP the envelope sender is always the null sender `MAIL FROM:<>` (RFC 3834 3.3, RFC 5321 4.5.5), so that
a failed report bounces nowhere and can never start a mail loop. The answer is one of three outcomes the
reporter acts on: DELIVERED, RETRY (4xx, timeout, no connection: try later) or DROP (5xx or an unusable
address: log it, trying again cannot help).

Without a smarthost the mail is written into a Maildir with the Maildir protocol (unique name in tmp/, fsync,
then into new/), so a mail client or an IMAP server can read reports without any MTA.

This module must never log a message's content (it names phone numbers and errors for one sender), never send
with a non-null envelope sender, and never block the event loop on file I/O.
"""

from __future__ import annotations

import asyncio
import email.policy
import enum
import itertools
import os
import socket
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import structlog

from mail2sms.config import ReportsConfig, parse_hostport
from mail2sms.report.backscatter import address_problem

log = structlog.get_logger(__name__)

_counter = itertools.count(1)  # itertools.count is atomic under the GIL, so threads may share it


class DeliveryOutcome(enum.Enum):
    """What the reporter does next with a report."""

    DELIVERED = "delivered"  # the smarthost accepted it, or it is in the Maildir's new/
    RETRY = "retry"  # temporary trouble: keep the report and try again later
    DROP = "drop"  # permanent refusal: log and forget it


def _maildir_hostname() -> str:
    """This host's name as a Maildir file name may carry it: '/' and ':' escaped as the convention asks."""
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"


class ReportSender:
    """Delivers outcome mails as `config` says: smarthost when `config.smarthost` is set, else Maildir.

    `hostname` is the name given in EHLO (default: the domain of `config.from_`, so no slow reverse lookup of
    the local host name happens); `timeout` bounds each SMTP step.
    """

    def __init__(self, config: ReportsConfig, *, hostname: str | None = None, timeout: float = 30.0) -> None:
        self._config = config
        self._smarthost = parse_hostport(config.smarthost) if config.smarthost else None
        self._ehlo_name = hostname or config.from_.rpartition("@")[2] or "localhost"
        self._timeout = timeout
        self._maildir = Path(config.maildir)
        self._host = _maildir_hostname()

    async def deliver(self, message: EmailMessage, recipient: str, key: str | None = None) -> DeliveryOutcome:
        """Deliver `message` to `recipient`; never raises for delivery trouble: the outcome says what next.

        With a `key` (the submission id) a maildir delivery is idempotent: a report written before a crash,
        whose delivery was not yet recorded in the spool, is found and not written twice.
        """
        problem = address_problem(recipient)
        if problem is not None:
            log.warning("report dropped", reason=f"unusable recipient: {problem}")
            return DeliveryOutcome.DROP
        if self._smarthost is not None:
            return await self._send_smtp(message, recipient, *self._smarthost)
        try:
            name = await asyncio.to_thread(self._write_maildir, message, recipient, key)
        except OSError as exc:
            log.error("report not written to maildir, will retry", maildir=str(self._maildir),
                      error=exc.strerror or type(exc).__name__)
            return DeliveryOutcome.RETRY
        log.info("report delivered", recipient=recipient, via="maildir", file=name)
        return DeliveryOutcome.DELIVERED

    async def _send_smtp(
        self, message: EmailMessage, recipient: str, host: str, port: int
    ) -> DeliveryOutcome:
        utf8 = not recipient.isascii()
        # Serialising a report with a large results.json is real work: do it off the event loop.
        data = await asyncio.to_thread(
            message.as_bytes, policy=email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
        )
        cfg = self._config
        client = aiosmtplib.SMTP(
            hostname=host, port=port, timeout=self._timeout, local_hostname=self._ehlo_name,
            use_tls=cfg.smarthost_tls == "tls",
            # None: STARTTLS when the smarthost offers it; True: required (fail, and retry later, without it).
            start_tls={"starttls-if-offered": None, "starttls": True}.get(cfg.smarthost_tls, False),
            validate_certs=cfg.smarthost_verify,
            username=cfg.smarthost_username or None,
            password=cfg.smarthost_password.get_secret_value() or None,
        )
        try:
            await client.connect()
            try:
                await client.sendmail("", [recipient], data, mail_options=["SMTPUTF8"] if utf8 else [])
            finally:
                await _close(client)
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Our own credentials were refused: an operator's config to fix, not the recipient's fault. Keep the
            # report and retry rather than drop it on this 5xx.
            log.error("smarthost refused our login; reports wait until smarthost_username/password are fixed",
                      smarthost=f"{host}:{port}", code=exc.code)
            return DeliveryOutcome.RETRY
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if not exc.recipients:
                return self._by_code(0, "", recipient)
            return self._by_code(exc.recipients[0].code, exc.recipients[0].message, recipient)
        except aiosmtplib.SMTPResponseException as exc:
            return self._by_code(exc.code, exc.message, recipient)
        except aiosmtplib.SMTPNotSupported:
            log.warning("report dropped", recipient=recipient, reason="the smarthost lacks SMTPUTF8")
            return DeliveryOutcome.DROP
        except (aiosmtplib.SMTPException, OSError) as exc:  # no connection, timeout, disconnected
            log.warning("report not delivered, will retry", recipient=recipient, smarthost=f"{host}:{port}",
                        error=type(exc).__name__)
            return DeliveryOutcome.RETRY
        except ValueError:  # aiosmtplib refused to put the address on a command line
            log.warning("report dropped", recipient=recipient, reason="the address cannot be used in SMTP")
            return DeliveryOutcome.DROP
        log.info("report delivered", recipient=recipient, via="smarthost")
        return DeliveryOutcome.DELIVERED

    @staticmethod
    def _by_code(code: int, reply: str, recipient: str) -> DeliveryOutcome:
        """RFC 5321 4.2.1: 5yz is a permanent refusal; anything else (4yz, nonsense) is worth another try."""
        if 500 <= code <= 599:
            log.warning("report dropped", recipient=recipient, code=code, reply=reply)
            return DeliveryOutcome.DROP
        log.warning("report not delivered, will retry", recipient=recipient, code=code, reply=reply)
        return DeliveryOutcome.RETRY

    def _write_maildir(self, message: EmailMessage, recipient: str, key: str | None = None) -> str:
        """Write one mail with the Maildir protocol; return its file name. Runs in a worker thread."""
        if key is not None:
            name = f"{int(time.time())}.M{key}.{self._host}"
            for sub in ("new", "cur"):
                folder = self._maildir / sub
                if folder.is_dir() and any(folder.glob(f"*.M{key}.*")):
                    return name  # delivered before a crash: never twice
        # Return-Path <> records the null envelope sender, as a delivering MTA would (RFC 5321 4.4).
        data = b"".join([
            b"Return-Path: <>\n",
            b"Delivered-To: " + recipient.encode("utf-8") + b"\n",
            message.as_bytes(policy=email.policy.default),
        ])
        for sub in ("tmp", "new", "cur"):
            (self._maildir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        while True:
            name = (f"{int(time.time())}.M{key}.{self._host}" if key is not None
                    else f"{int(time.time())}.{os.getpid()}_{next(_counter)}.{self._host}")
            tmp = self._maildir / "tmp" / name
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if _link_into(tmp, self._maildir / "new" / name):
                    break
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            tmp.unlink(missing_ok=True)  # the name is taken in new/: try another one (or, keyed, it is there)
            if key is not None:
                break
        _fsync_dir(self._maildir / "new")
        return name


def _link_into(tmp: Path, dest: Path) -> bool:
    """Move tmp to dest without ever replacing an existing mail; False when dest is taken.

    A hard link fails when dest exists, where a rename would silently replace it. Filesystems without hard
    links fall back to a rename after checking dest, which is safe because names carry this process's pid and
    counter.
    """
    try:
        os.link(tmp, dest)
    except FileExistsError:
        return False
    except OSError:
        if dest.exists():
            return False
        os.rename(tmp, dest)
        return True
    tmp.unlink()
    return True


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable, not only the file's bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _close(client: aiosmtplib.SMTP) -> None:
    """QUIT politely; after the mail was accepted, a failed goodbye must not become a retry (a duplicate)."""
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
