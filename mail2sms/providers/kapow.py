"""The Kapow adapter (UK): `sendsms.php` and `chk_credit.php` of the seed `kapow-http-api.txt`.

One batch is one POST form to `{base_url}sendsms.php` with `username, password, mobile` (comma list of
international digits), `sms` and `returnid=TRUE`. Kapow answers plain text with HTTP 200: `OK <credits> <id>…`
(ids in the order of the numbers), or exactly `USERPASS`, `NOCREDIT` or `ERROR`. A number is Sent only from an
`OK` that carries one id per number (the credits left go into `Sent.detail`); fewer or more ids than numbers, an
empty body, prose, or any other answer cannot be read as success or failure, so every number becomes Unknown
("may have been sent", quoting Kapow's words): Kapow honours no idempotency key. A non-200 status is unexpected;
its body is read first (one of Kapow's words decides), else the status decides.
Flash SMS carry Kapow's `FLASH` prefix; a scheduled job goes with `sendtime` (at most 365 days ahead).

Delivery receipts (providers/receipts.py): `chk_status.php` (`username`, `returnid`; no password) answers one letter
per id — `D` delivered, `X` failed, `B`/`S`/`N`/`R` not yet — or `ERROR` (unknown id or username: PENDING, never
failed). With `options.receipt_url` every send carries `dlr=<that url without its scheme>` and Kapow calls it with
`returnid, mobile, status (D|X, or a number of parts), timesent` (`Y-M-D H:M:S`, read in `options.timezone`).

Config `options`: timezone (the zone Kapow reads `sendtime` in, default Europe/London), flash_prefix, route
(premium shortcode), dlr (delivery-report address, passed as is), receipt_url (mail2sms's own receipt URL,
`http(s)://host/receipts/<name>/<token>`; not with dlr).

This module must never log, and never put a password or a request parameter into a Result or an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError, ProviderError
from mail2sms.model import (
    Account,
    Balance,
    Batch,
    DeliveryState,
    Receipt,
    ReceiptQuery,
    Rejected,
    Result,
    Sent,
    Unknown,
)
from mail2sms.providers import receipts, wire
from mail2sms.providers.base import Limits, account_for
from mail2sms.providers.explain import explain
from mail2sms.providers.quote import said
from mail2sms.providers.registry import ProviderSpec, register

TYPE = "kapow"

# Its codes in plain words (explain.py falls back to its generic table): mailed to the sender, so written for a
# person who has never read the API document, and never carrying a secret.
EXPLAIN: Mapping[str, str] = {
    "USERPASS": "the username or password was not accepted by Kapow: check the account's username and "
    "password",
    "NOCREDIT": "the Kapow account has no credit left: top up, then resend",
    "ERROR": "Kapow answered only that an error occurred; the likely causes are an invalid number, a "
    "scheduled time that is malformed, in the past or more than 365 days ahead, or a sender ID (from_id) "
    "that is not enabled on the account: check these, then resend",
    "UNEXPECTED": "Kapow's reply was not one of the answers it documents (OK, USERPASS, NOCREDIT, ERROR), so "
    "mail2sms cannot tell whether the SMS was sent: check the Kapow account's message log before resending",
    "EMPTY": "Kapow answered with an empty reply, so mail2sms cannot tell whether the SMS was sent: check the "
    "Kapow account's message log before resending",
    "IDS": "Kapow answered OK but not with one message id per number, so mail2sms cannot tell which numbers it "
    "took: check the Kapow account's message log before resending",
    "SENDTIME": "the scheduled time is not usable for Kapow (it allows at most 365 days ahead): choose "
    "another time",
    "NUMBER": "the number cannot be sent through Kapow: write it in international form, digits only "
    "(e.g. 447700900123)",
    # chk_status.php answers (delivery states), for delivery reports.
    "D": "Kapow reports the SMS delivered to the phone",
    "B": "Kapow reports the SMS buffered by the network: the phone may be off or out of coverage",
    "S": "Kapow reports the SMS sent to the network, not yet delivered",
    "X": "Kapow reports the SMS failed: the number may be wrong or unreachable",
    "N": "Kapow reports the SMS awaiting delivery",
    "R": "Kapow reports the network retrying delivery",
}
DEFAULT_MAX_RECIPIENTS = 50  # a GET URL of ~2000 characters holds 50-100 numbers; POST has no limit
DEFAULT_RATE = 5.0
DEFAULT_TIMEZONE = "Europe/London"  # Kapow is a UK service; its sendtime is read as UK time (unconfirmed)
FLASH_PREFIX = "FLASH"  # Kapow's own PHP library marks a flash SMS by this literal word before the text
FAILURE_WORDS = ("USERPASS", "NOCREDIT", "ERROR")
SENDTIME_HORIZON = timedelta(days=365)
SENDTIME_NOW = timedelta(seconds=60)  # closer than this: send at once instead of scheduling

OPTIONS: dict[str, wire.Check] = {
    "timezone": wire.timezone_name,  # the zone Kapow reads sendtime in
    "flash_prefix": wire.text(20),
    "route": wire.text(15, r"\d+", "digits (a premium shortcode, e.g. 66100)"),
    "dlr": wire.text(500),  # an email address or a URL without http://
    "receipt_url": wire.text(500, r"https?://[^\s?#]+", "an http(s) URL without query or fragment"),
}
RECEIPTS = receipts.ReceiptSupport(poll=True, push=True, max_ids=1)  # chk_status.php takes one returnid
PENDING_LETTERS = {"B": "buffered", "S": "sent", "N": "awaiting delivery", "R": "retrying"}

_TOKENS = re.compile(r"[\s,;]+")
_CREDIT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*$")
_RETURNID = re.compile(r"[A-Za-z0-9-]{1,64}")
EMPTY, IDS = "EMPTY", "IDS"


wire_number = wire.international_digits  # the number as the provider wants it: international digits only


def format_sendtime(iso: str, zone: tzinfo, now: datetime | None = None) -> str | None:
    """`options.sendtime` (ISO 8601, UTC when no offset is given) as Kapow's `DD-MM-YY HH:MM` in `zone`.

    The seed writes the format `DD-MM-YY+HH:MM` inside a URL, where `+` is an encoded space; the form
    encoder turns the space back into `+`. None = the time is (nearly) now or past: send at once.
    ValueError = the time is unreadable or more than 365 days ahead.
    """
    when = datetime.fromisoformat(iso.strip())
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    if when - now <= SENDTIME_NOW:
        return None
    if when - now > SENDTIME_HORIZON:
        raise ValueError("sendtime more than 365 days ahead")
    return when.astimezone(zone).strftime("%d-%m-%y %H:%M")


def reply_result(body: str, count: int, secrets: Iterable[str] = ()) -> list[Result]:
    """One Result per number from a `sendsms.php` reply body (sent with `returnid=TRUE`).

    Sent only from `OK <credits> <id>…` with exactly one id per number: the ids come "in the order of messages
    submitted", so with fewer (or more) ids nobody can tell which numbers Kapow took, and every number is Unknown.
    """
    text = body.strip()
    tokens = [t for t in _TOKENS.split(text) if t]
    words = said("Kapow", text, secrets=secrets)
    if not tokens:
        return [Unknown(code=EMPTY, why=explain(TYPE, EMPTY))] * count
    if tokens[0] == "OK" and len(tokens) > 1 and _CREDIT.match(tokens[1]):
        ids = tokens[2:]
        if len(ids) == count and all(_RETURNID.fullmatch(i) for i in ids):
            detail = f"Kapow credits left: {tokens[1]}"
            return [Sent(provider_id=i, detail=detail) for i in ids]
        why = explain(TYPE, IDS) + f" ({len(ids)} message ids for {count} numbers){words}"
        return [Unknown(code=IDS, why=why)] * count
    if text in FAILURE_WORDS:
        return [Rejected(code=text, why=explain(TYPE, text))] * count
    return [Unknown(code="UNEXPECTED", why=explain(TYPE, "UNEXPECTED") + words)] * count


def status_reply(body: str, status: int, count: int, secrets: Iterable[str] = ()) -> list[Result] | None:
    """Results from a non-200 reply's body when it is one of Kapow's answers (Kapow documents HTTP 200 only, but
    its words say more than a status), else None and the HTTP status decides. `OK` with an error status
    contradicts itself: Unknown."""
    text = body.strip()
    if text in FAILURE_WORDS:
        return reply_result(text, count, secrets)
    if text.startswith("OK"):
        why = explain(TYPE, "UNEXPECTED") + f" (HTTP {status})" + said("Kapow", text, secrets=secrets)
        return [Unknown(code=f"HTTP{status}", why=why)] * count
    return None


def status_receipt(item: ReceiptQuery, body: str) -> Receipt:
    """The Receipt a `chk_status.php` answer means for `item`: only `D` is delivered, only `X` failed."""
    word = body.strip()
    if word == "D":
        return Receipt(item.provider_id, item.number, DeliveryState.DELIVERED, "D", explain(TYPE, "D"))
    if word == "X":
        return Receipt(item.provider_id, item.number, DeliveryState.UNDELIVERED, "X", explain(TYPE, "X"))
    if word in PENDING_LETTERS:
        return receipts.pending(item, word, explain(TYPE, word))
    if word == "ERROR":
        return receipts.pending(item, "ERROR", "Kapow answered ERROR to the status check (it does not know this "
                                "message id for the account's username); mail2sms asks again later")
    return receipts.pending(item, "UNEXPECTED", "Kapow's answer to the status check was not one of its letters"
                            + said("Kapow", word))


def receipt_push(method: str, query: str, body: bytes, content_type: str, zone: tzinfo | None = None) -> list[Receipt]:
    """The receipt in one call of the `dlr` URL (query or form: `returnid, mobile, status, timesent`); [] when the
    call carries no returnid or is too big. `D` delivered, `X` failed; a number of parts (long SMS) is not final."""
    params = receipts.push_params(query, body, content_type)
    if not params:
        return []
    returnid = params.get("returnid", "").strip()
    if not _RETURNID.fullmatch(returnid):
        return []
    status = params.get("status", "").strip().upper()
    number = receipts.digits(params.get("mobile"))
    at = receipts.epoch(params.get("timesent"), zone or _zone(DEFAULT_TIMEZONE))
    if status in ("D", "X"):
        state = DeliveryState.DELIVERED if status == "D" else DeliveryState.UNDELIVERED
        return [Receipt(returnid, number, state, status, explain(TYPE, status), at)]
    why = "Kapow's delivery report is not final yet" + said("Kapow", status)
    return [Receipt(returnid, number, DeliveryState.PENDING, status[:20] or "EMPTY", why, at)]


def dlr_address(url: str) -> str:
    """Kapow's `dlr` value for a receipt URL: the address without its scheme, as the seed asks, ending in `?` as
    the seed's examples do, so Kapow's variables form the query whether it appends `&returnid=…` or `returnid=…`."""
    return (url.split("://", 1)[1] if "://" in url else url) + "?"


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


class KapowProvider:
    """Kapow over its HTTP scripts (POST form)."""

    def __init__(self, name: str, config: ProviderConfig, client: httpx.AsyncClient) -> None:
        self.name = name
        self.config = config
        self.client = client
        self.options = wire.read_options(name, config.options, OPTIONS)
        if "dlr" in self.options and "receipt_url" in self.options:
            raise ConfigError([f"providers.{name}.options: dlr and receipt_url both name where Kapow sends delivery "
                               "reports: keep one"])
        self.receipts = RECEIPTS
        self.limits = Limits(
            max_recipients=config.max_recipients or DEFAULT_MAX_RECIPIENTS,
            rate=config.rate or DEFAULT_RATE,
            idempotent=False,
            schedule_days=SENDTIME_HORIZON.days,
            flash=True,
        )
        self._timeout = httpx.Timeout(config.timeout, connect=min(10.0, config.timeout))
        self._zone = self.options.get("timezone") or _zone(DEFAULT_TIMEZONE)
        self._flash_prefix = str(self.options.get("flash_prefix", FLASH_PREFIX))

    async def send(self, batch: Batch) -> list[Result]:
        """POST one `sendsms.php` request for the batch's valid numbers; one Result per job, in order."""
        return await wire.send_valid(batch, TYPE, lambda _jobs, numbers: self._send(batch, numbers))

    def _params(self, batch: Batch, numbers: list[str]) -> dict[str, str]:
        """The form; raises ValueError when the scheduled time cannot be used."""
        account = account_for(self.config, batch.account)
        text = f"{self._flash_prefix}{batch.text}" if batch.options.flash else batch.text
        params = {
            "username": account.username,
            "password": account.password,
            "mobile": ",".join(numbers),
            "sms": text,
            "returnid": "TRUE",
        }
        sender = batch.sender or self.config.sender
        if sender:
            params["from_id"] = sender
        if batch.options.sendtime:
            sendtime = format_sendtime(batch.options.sendtime, self._zone)
            if sendtime:
                params["sendtime"] = sendtime
        for extra in ("route", "dlr"):  # documented optional parameters, set per provider in the config
            if self.options.get(extra):
                params[extra] = str(self.options[extra])
        if self.options.get("receipt_url"):
            params["dlr"] = dlr_address(str(self.options["receipt_url"]))
        return params

    async def _send(self, batch: Batch, numbers: list[str]) -> list[Result]:
        try:
            params = self._params(batch, numbers)
        except ValueError:
            return [Rejected(code="SENDTIME", why=explain(TYPE, "SENDTIME"))] * len(numbers)
        response = await wire.post(
            TYPE, False, self.client.post(f"{self.config.base_url}sendsms.php", data=params, timeout=self._timeout)
        )
        if not isinstance(response, httpx.Response):
            return [response] * len(numbers)
        secrets = account_for(self.config, batch.account).secrets()
        body = response.content.decode("utf-8", "replace")
        if not response.is_success:
            from_body = status_reply(body, response.status_code, len(numbers), secrets)
            if from_body is not None:
                return from_body
        status = wire.status_problem(TYPE, response, idempotent=False)
        if status is not None:
            return [status] * len(numbers)
        return reply_result(body, len(numbers), secrets)

    async def poll_receipts(self, items: list[ReceiptQuery]) -> list[Receipt]:
        """One `chk_status.php` request per id; one Receipt per item, in order. Never raises for Kapow trouble."""
        return [await self._status(item) for item in items]

    async def _status(self, item: ReceiptQuery) -> Receipt:
        username = account_for(self.config, item.account).username
        response = await receipts.fetch(
            "Kapow",
            self.client.post(
                f"{self.config.base_url}chk_status.php",
                data={"username": username, "returnid": item.provider_id},
                timeout=self._timeout,
            ),
        )
        if not isinstance(response, httpx.Response):
            return receipts.pending(item, *response)
        if not response.is_success:
            return receipts.pending(item, *receipts.status_words("Kapow", response))
        return status_receipt(item, response.content.decode("utf-8", "replace"))

    def parse_receipt_push(self, method: str, query: str, body: bytes, content_type: str) -> list[Receipt]:
        """The receipt in one call of the `dlr` URL (see `receipt_push`), its time read in the account's zone."""
        return receipt_push(method, query, body, content_type, self._zone)

    async def balance(self, account: Account | None = None) -> Balance:
        """Credits from `chk_credit.php`; raises ProviderError (plain words) when they cannot be read."""
        creds = account_for(self.config, account)
        response = await wire.balance_request(
            TYPE,
            self.client.post(
                f"{self.config.base_url}chk_credit.php",
                data={"username": creds.username, "password": creds.password},
                timeout=self._timeout,
            ),
        )
        if not response.is_success:
            raise ProviderError(explain(TYPE, f"HTTP{response.status_code}"))
        text = response.content.decode("utf-8", "replace").strip()
        m = _CREDIT.match(text)
        if not m:
            word = text.upper()
            raise ProviderError(explain(TYPE, word if word in FAILURE_WORDS else "UNEXPECTED"))
        credit = float(m.group(1))
        return Balance(provider=self.name, credit=credit, detail=f"{m.group(1)} Kapow credits")


# What the config and the reports need to know about this provider type (providers/registry.py).
SPEC = register(
    ProviderSpec(
        type=TYPE,
        label="Kapow",
        build=KapowProvider,
        urls={"": "https://www.kapow.co.uk/scripts/"},
        explain=EXPLAIN,
        receipts=RECEIPTS,
    )
)
