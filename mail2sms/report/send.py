"""Deliver a composed outcome mail: to the smarthost over SMTP, or into a Maildir folder when there is none.

Over SMTP the envelope sender is always the null sender `MAIL FROM:<>` (RFC 3834 3.3, RFC 5321 4.5.5), so that
a failed report bounces nowhere and can never start a mail loop. The answer is one of three outcomes the
reporter acts on: DELIVERED, RETRY (4xx, timeout, no connection: try later) or DROP (5xx or an unusable
address: log it, trying again cannot help).

Without a smarthost the mail is written into a Maildir with the Maildir protocol (unique name in tmp/, fsync,
then into new/), so a mail client or an IMAP server can read reports without any MTA.

Reports are delivered in groups (`deliver_many`) to keep up with a steady inflow: one smarthost connection carries
a whole group, and a group's maildir files share one fsync of each directory. A keyed delivery (the submission
id) is idempotent: the maildir keeps an index (`mail2sms-index/<key>`, a hard link to the delivered file, so a
lookup is one `stat()`, never a scan, and survives the mail client moving the file to cur/); a smarthost copy
carries the fixed Message-ID the reporter gives it.

This module must never log a message's content (it names phone numbers and errors for one sender), never send
with a non-null envelope sender, never hand the smarthost a report addressed to one of this gateway's own SMS
routes (`is_sms_address`: the smarthost would route it back here and it would become an SMS), and never block
the event loop on file I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import enum
import itertools
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import structlog

from mail2sms.config import ReportsConfig, parse_hostport
from mail2sms.report.backscatter import address_problem

log = structlog.get_logger(__name__)

INDEX_DIR = "mail2sms-index"  # inside the maildir: not a Maildir++ folder (those start with a dot)
_counter = itertools.count(1)  # itertools.count is atomic under the GIL, so threads may share it


class DeliveryOutcome(enum.Enum):
    """What the reporter does next with a report."""

    DELIVERED = "delivered"  # the smarthost accepted it, or it is in the Maildir's new/
    RETRY = "retry"  # temporary trouble: keep the report and try again later
    DROP = "drop"  # permanent refusal: log and forget it


def _maildir_hostname() -> str:
    """This host's name as a Maildir file name may carry it: '/' and ':' escaped as the convention asks."""
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"


@dataclass(frozen=True)
class Outgoing:
    """One report to deliver: the composed mail, its recipient, and its idempotency key (None: not keyed)."""

    message: EmailMessage
    recipient: str
    key: str | None = None


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
        self._index = self._maildir / INDEX_DIR
        self._host = _maildir_hostname()
        self.is_sms_address: Callable[[str], bool] | None = None  # set by the app from the routes

    async def deliver(self, message: EmailMessage, recipient: str, key: str | None = None) -> DeliveryOutcome:
        """Deliver `message` to `recipient`; never raises for delivery trouble: the outcome says what next.

        With a `key` (the submission id) a maildir delivery is idempotent: a report written before a crash,
        whose delivery was not yet recorded in the spool, is found and not written twice.
        """
        return (await self.deliver_many([Outgoing(message, recipient, key)]))[0]

    async def deliver_many(self, items: list[Outgoing]) -> list[DeliveryOutcome]:
        """Deliver a group of reports, one outcome per item in order; never raises for delivery trouble."""
        outcomes: list[DeliveryOutcome | None] = [None] * len(items)
        todo: list[int] = []
        for i, item in enumerate(items):
            problem = address_problem(item.recipient)
            if problem is None and self._smarthost is not None and self.is_sms_address is not None \
                    and self.is_sms_address(item.recipient):
                problem = "it is an SMS route of this gateway"
            if problem is not None:
                log.warning("report dropped", reason=f"unusable recipient: {problem}")
                outcomes[i] = DeliveryOutcome.DROP
            else:
                todo.append(i)
        if todo and self._smarthost is not None:
            sent = await self._send_smtp([items[i] for i in todo], *self._smarthost)
        elif todo:
            sent = await self._to_maildir([items[i] for i in todo])
        else:
            sent = []
        for i, outcome in zip(todo, sent, strict=True):
            outcomes[i] = outcome
        return [o if o is not None else DeliveryOutcome.RETRY for o in outcomes]

    async def forget(self, keys: list[str]) -> None:
        """Drop the maildir index entries of reports the spool has recorded as delivered (none are tried again)."""
        if self._smarthost is None and keys:
            await asyncio.to_thread(self._forget, keys)

    def _forget(self, keys: list[str]) -> None:
        for key in keys:
            (self._index / key).unlink(missing_ok=True)

    async def _to_maildir(self, items: list[Outgoing]) -> list[DeliveryOutcome]:
        try:
            names = await asyncio.to_thread(self._write_group, items)
        except OSError as exc:
            log.error("reports not written to maildir, will retry", maildir=str(self._maildir),
                      error=exc.strerror or type(exc).__name__, reports=len(items))
            return [DeliveryOutcome.RETRY] * len(items)
        for item, name in zip(items, names, strict=True):
            log.info("report delivered", recipient=item.recipient, via="maildir", file=name)
        return [DeliveryOutcome.DELIVERED] * len(items)

    def _client(self, host: str, port: int) -> aiosmtplib.SMTP:
        cfg = self._config
        return aiosmtplib.SMTP(
            hostname=host, port=port, timeout=self._timeout, local_hostname=self._ehlo_name,
            use_tls=cfg.smarthost_tls == "tls",
            # None: STARTTLS when the smarthost offers it; True: required (fail, and retry later, without it).
            start_tls={"starttls-if-offered": None, "starttls": True}.get(cfg.smarthost_tls, False),
            validate_certs=cfg.smarthost_verify,
            username=cfg.smarthost_username or None,
            password=cfg.smarthost_password.get_secret_value() or None,
        )

    async def _send_smtp(self, items: list[Outgoing], host: str, port: int) -> list[DeliveryOutcome]:
        """One connection for the whole group (RFC 5321 3.3: several transactions per session)."""
        outcomes: list[DeliveryOutcome] = []
        client = self._client(host, port)
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Our own credentials were refused: an operator's config to fix, not the recipient's fault. Keep the
            # reports and retry rather than drop them on this 5xx.
            log.error("smarthost refused our login; reports wait until smarthost_username/password are fixed",
                      smarthost=f"{host}:{port}", code=exc.code)
            client.close()
            return [DeliveryOutcome.RETRY] * len(items)
        except (aiosmtplib.SMTPException, OSError) as exc:  # no connection, timeout, TLS required but absent
            log.warning("reports not delivered, will retry", smarthost=f"{host}:{port}", error=type(exc).__name__,
                        reports=len(items))
            client.close()
            return [DeliveryOutcome.RETRY] * len(items)
        try:
            for item in items:
                if not client.is_connected:
                    outcomes.append(DeliveryOutcome.RETRY)
                    continue
                outcome = await self._transaction(client, item, host, port)
                outcomes.append(outcome)
                if outcome is not DeliveryOutcome.DELIVERED and client.is_connected:
                    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                        await client.rset()  # a refused transaction must not leave state for the next one
        finally:
            await _close(client)
        return outcomes

    async def _transaction(
        self, client: aiosmtplib.SMTP, item: Outgoing, host: str, port: int
    ) -> DeliveryOutcome:
        recipient = item.recipient
        utf8 = not recipient.isascii()
        # Serialising a report with a large results.json is real work: do it off the event loop.
        data = await asyncio.to_thread(
            item.message.as_bytes, policy=email.policy.SMTPUTF8 if utf8 else email.policy.SMTP
        )
        try:
            await client.sendmail("", [recipient], data, mail_options=["SMTPUTF8"] if utf8 else [])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            if not exc.recipients:
                return self._by_code(0, "", recipient)
            return self._by_code(exc.recipients[0].code, exc.recipients[0].message, recipient)
        except aiosmtplib.SMTPResponseException as exc:
            return self._by_code(exc.code, exc.message, recipient)
        except aiosmtplib.SMTPNotSupported:
            log.warning("report dropped", recipient=recipient, reason="the smarthost lacks SMTPUTF8")
            return DeliveryOutcome.DROP
        except (aiosmtplib.SMTPException, OSError) as exc:  # timeout, disconnected
            log.warning("report not delivered, will retry", recipient=recipient, smarthost=f"{host}:{port}",
                        error=type(exc).__name__)
            client.close()
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

    def _write_group(self, items: list[Outgoing]) -> list[str]:
        """Write a group of mails with the Maildir protocol; their file names. Runs in a worker thread.

        Each file is fsynced; the directories once for the whole group (the grouped write that lets reports keep
        up). Nothing is reported delivered before those fsyncs: an OSError fails the whole group, and the keyed
        ones that did land are found through the index when the group is tried again."""
        for sub in ("tmp", "new", "cur", INDEX_DIR):
            (self._maildir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        names = [self._write_one(item) for item in items]
        _fsync_dir(self._maildir / "new")
        if any(item.key is not None for item in items):
            _fsync_dir(self._index)
        return names

    def _write_one(self, item: Outgoing) -> str:
        key = item.key
        if key is not None:
            found = self._indexed(key)
            if found is not None:
                return found
        # Return-Path <> records the null envelope sender, as a delivering MTA would (RFC 5321 4.4).
        data = b"".join([
            b"Return-Path: <>\n",
            b"Delivered-To: " + item.recipient.encode("utf-8") + b"\n",
            item.message.as_bytes(policy=email.policy.default),
        ])
        while True:
            name = (f"{int(time.time())}.M{key}.{self._host}" if key is not None
                    else f"{int(time.time())}.{os.getpid()}_{next(_counter)}.{self._host}")
            tmp = self._maildir / "tmp" / f"{name}.{os.getpid()}_{next(_counter)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if key is not None and not self._index_claim(tmp, key):
                    return name  # another process delivered this report a moment ago: never twice
                if _link_into(tmp, self._maildir / "new" / name):
                    return name
            finally:
                tmp.unlink(missing_ok=True)
            if key is not None:
                return name  # the keyed name is in new/ already: it is this report

    def _indexed(self, key: str) -> str | None:
        """The file name when the report with this key was delivered (or half-delivered: then finish it)."""
        entry = self._index / key
        try:
            st = entry.stat()
        except FileNotFoundError:
            return None
        if st.st_nlink < 2 and st.st_size > 0:
            # Indexed but not in new/ or cur/: a crash between the two links, or the reader deleted it already.
            # Finishing the delivery errs on the side of a copy too many, never of a lost report.
            name = f"{int(st.st_mtime)}.M{key}.{self._host}"
            _link_into(entry, self._maildir / "new" / name, keep=True)
            return name
        return key

    def _index_claim(self, tmp: Path, key: str) -> bool:
        """Enter the report in the index before it goes into new/; False when it is there already."""
        entry = self._index / key
        try:
            os.link(tmp, entry)
        except FileExistsError:
            return False
        except OSError:  # no hard links here: an empty marker (a crash in between may then lose the file)
            try:
                os.close(os.open(entry, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            except FileExistsError:
                return False
        return True


def _link_into(tmp: Path, dest: Path, *, keep: bool = False) -> bool:
    """Put tmp at dest without ever replacing an existing mail; False when dest is taken.

    A hard link fails when dest exists, where a rename would silently replace it. Filesystems without hard
    links fall back to a rename after checking dest, which is safe because names carry this process's pid and
    counter (or the report's key, which only the report's lease holder writes). `keep`: leave tmp in place.
    """
    try:
        os.link(tmp, dest)
    except FileExistsError:
        return False
    except OSError:
        if dest.exists() or keep:
            return False
        os.rename(tmp, dest)
        return True
    if not keep:
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
