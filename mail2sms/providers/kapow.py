"""The Kapow adapter (UK): `sendsms.php` and `chk_credit.php` of the seed `kapow-http-api.txt`.

One batch is one POST form to `{base_url}sendsms.php` with `username, password, mobile` (comma list of
international digits), `sms` and `returnid=TRUE`. Kapow answers plain text with HTTP 200: `OK <credits> <id>…`
(ids in the order of the numbers), or exactly `USERPASS`, `NOCREDIT` or `ERROR`. A number is Sent only from an
`OK` that carries one id per number (the credits left go into `Sent.detail`); fewer or more ids than numbers, an
empty body, prose, or any other answer cannot be read as success or failure, so every number becomes Unknown
("may have been sent", quoting Kapow's words): Kapow honours no idempotency key. A non-200 status is unexpected;
its body is read first (one of Kapow's words decides), else the status decides.
Flash SMS carry Kapow's `FLASH` prefix; a scheduled job goes with `sendtime` (at most 365 days ahead).

Config `options`: timezone (the zone Kapow reads `sendtime` in, default Europe/London), flash_prefix, route
(premium shortcode), dlr (delivery-report address).

This module must never log, and never put a password or a request parameter into a Result or an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.errors import ProviderError
from mail2sms.model import Account, Balance, Batch, Rejected, Result, Sent, Unknown
from mail2sms.providers import wire
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
}

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
    )
)
