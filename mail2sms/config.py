"""Configuration: TOML validated with pydantic, secrets resolved from *_env / *_file / $CREDENTIALS_DIRECTORY.

`load()` returns a frozen `Config` or raises `ConfigError` whose lines each name the key path that is wrong
(`routes[2].provider: no provider named 'kwt2'`), because an operator fixing a config file needs the place, not a
traceback. Secrets live in `SecretStr` so that printing a config never shows them; `show()` renders `***`.

This module must never log or echo a secret value, nor read a secret file that is not named in the config.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import tomllib
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import phonenumbers
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    ValidationError,
    field_validator,
)

from mail2sms.addresses import address_problem
from mail2sms.errors import ConfigError
from mail2sms.observability import secret_key

if TYPE_CHECKING:
    from mail2sms.providers.registry import ProviderSpec

SECRET_FIELDS = ("password", "key")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024, "m": 1000**2, "mb": 1000**2,
               "mib": 1024**2, "mi": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(value: object) -> int:
    """'10MiB' → 10485760; bare numbers are bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r} (write e.g. 10MiB, 500KB or 1048576)")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])


def parse_duration(value: object) -> float:
    """'24h' → 86400.0; bare numbers are seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"not a duration: {value!r} (write e.g. 30s, 15m, 24h or 2d)")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or ""]


Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
# true or false only: pydantic would read "yes", "no", "off" or 0 as booleans, and `dry_run = "no"` meaning
# anything but what it says is how real SMS get sent by a test route.
Bool = Annotated[bool, Strict()]


def parse_hostport(value: str, default_port: int = 25) -> tuple[str, int]:
    """'127.0.0.1:8025', '[::1]:25', 'host' → (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""
    if not host:
        raise ValueError(f"no host in {value!r}")
    try:
        number = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad port in {value!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port out of range in {value!r}")
    return host, number


def has_port(value: str) -> bool:
    """True when a HOST:PORT text names its port ('[::1]:25' yes, '[::1]' and 'host' no)."""
    value = value.strip()
    rest = value[1:].partition("]")[2] if value.startswith("[") else value
    return rest.count(":") == 1


def parse_country(value: str) -> str:
    """'kw' → 'KW' (a region), '965' or '+965' → '+965' (a country calling code)."""
    text = value.strip()
    digits = text.removeprefix("+")
    if digits.isdigit():
        if int(digits) not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            raise ValueError(f"{value!r} is not a country calling code such as +965 or +44")
        return f"+{int(digits)}"
    if text.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{value!r} is neither a region code such as KW or GB nor a calling code such as +965")
    return text.upper()


def parse_prefix(value: str) -> str:
    """'+44 909' or '0044909' → '+44909'; a prefix must be written internationally."""
    compact = re.sub(r"[\s\-().]", "", value)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not (compact.startswith("+") and compact[1:].isdigit() and compact[1:2] != "0"):
        raise ValueError(f"{value!r} is not an international number prefix such as +44909 or +1900")
    return compact


def allow_entry_problem(entry: str) -> str | None:
    """Why a route `allow` entry means nothing (a typo would otherwise silently admit no one), or None."""
    e = entry.strip().lower()
    if e in ("trusted", "authenticated", "any"):
        return None
    if e.startswith("user:"):
        return None if e[5:] else f"{entry!r}: user: needs a name"
    if "@" in e:
        problem = address_problem("x" + e if e.startswith("@") else e)
        return None if problem is None else f"{entry!r} is not a sender address or @domain: {problem}"
    try:
        ipaddress.ip_network(e, strict=False)
        return None
    except ValueError:
        pass
    if "." in e and address_problem("x@" + e) is None:
        return None
    return (f"{entry!r} is not an allow entry: write trusted, authenticated, user:NAME, a@b.example, "
            "@b.example, a network such as 10.0.0.0/8, or any")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ServerConfig(_Model):
    listen: list[str] = ["127.0.0.1:8025"]
    tls_listen: list[str] = []
    hostname: str = "sms.localhost"
    tls_cert: str = ""
    tls_key: str = ""
    max_message_size: Size = 10 * 1024 * 1024
    max_recipients: int = Field(default=1000, ge=1)
    trusted_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ]
    workers: int = Field(default=1, ge=1, le=64)
    auth_without_tls: list[str] = []  # `listen` entries on a loopback address where AUTH needs no TLS
    max_received_headers: int = Field(default=100, ge=5)
    dedupe_window: Duration = 86400.0
    max_connections: int = Field(default=200, ge=1)
    max_connections_per_client: int = Field(default=20, ge=1)
    idle_timeout: Duration = 300.0  # RFC 5321 4.5.3.2.7: at least 5 minutes between commands
    shutdown_deadline: Duration = 20.0
    # issue 12 (floods and bombs): all mails being received share max_memory (10 bytes per mail byte); a TLS
    # handshake counts as a connection and must finish within tls_handshake_timeout; a session gets 421 after
    # max_idle_commands NOOP/RSET/HELP/VRFY/EXPN/HELO/EHLO without a mail, or at session_lifetime; a mail whose
    # parse outlasts parse_timeout gets 451.
    max_memory: Size = 1024 * 1024 * 1024
    tls_handshake_timeout: Duration = Field(default=10.0, gt=0)
    max_idle_commands: int = Field(default=30, ge=1)
    session_lifetime: Duration = Field(default=3600.0, gt=0)
    parse_timeout: Duration = Field(default=30.0, gt=0)
    # Failed SMTP AUTH logins per client network (IPv4 address, IPv6 /64) within the window; then 454 4.7.0.
    auth_max_failures: int = Field(default=10, ge=1)
    auth_failure_window: Duration = 900.0

    @field_validator("listen", "tls_listen", "auth_without_tls")
    @classmethod
    def _hostports(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_hostport(item)
            if not has_port(item):
                raise ValueError(f"{item!r} has no port (write HOST:PORT, e.g. 127.0.0.1:25 or [::1]:25)")
        return value


class SpoolConfig(_Model):
    url: str = "sqlite:///var/lib/mail2sms/spool.db"
    max_size: Size | None = None  # cap on the SQLite file; when reached, new mail gets 452 4.3.1 (spool full)
    lock_timeout: Duration = Field(default=60.0, gt=0)  # SQLite: give up starting when another process holds the lock
    # Settled submissions (final, report delivered or not wanted) are purged this long after they became final.
    retention: Duration = Field(default=30 * 86400.0, gt=0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite:///absolute/path, sqlite:relative/path or postgresql://...")
        return value


class ReportsConfig(_Model):
    smarthost: str = ""
    maildir: str = "/var/lib/mail2sms/reports"
    from_: str = Field(default="mail2sms@sms.localhost", alias="from")
    when: Literal["always", "failures", "never"] = "always"
    per_sender_per_hour: int = Field(default=60, ge=0)
    still_trying_after: Duration = 0.0  # > 0: tell the sender once when a submission is not final after this
    smarthost_tls: Literal["starttls-if-offered", "starttls", "tls", "none"] = "starttls-if-offered"
    smarthost_verify: Bool = True  # check the smarthost's certificate (off only for a self-signed relay you run)
    smarthost_username: str = ""
    smarthost_password: SecretStr = SecretStr("")
    # Delivery receipts (issue 15): a follow-up mail when every accepted SMS is final; "failures" only when one
    # was not delivered or got no receipt (report/followup.py).
    receipts: Literal["failures", "always", "never"] = "failures"

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str) -> str:
        problem = address_problem(value)
        if problem is not None:
            raise ValueError(f"{value!r} is not a plain local@domain address: {problem}")
        return value

    @field_validator("smarthost")
    @classmethod
    def _hostport(cls, value: str) -> str:
        if value:
            parse_hostport(value)
        return value


class HttpConfig(_Model):
    listen: str = "127.0.0.1:8026"


class ReceiptsConfig(_Model):
    """Delivery receipts (issue 15): where providers call back, with which secret, and how long to wait."""

    # The address providers reach `[http] listen` by (a proxy in front of it); with it, providers that take the
    # receipt address per request (Kapow's dlr) get `<public_url>/receipts/<name>/<token>`.
    public_url: str = ""
    token: SecretStr = SecretStr("")  # the push URL's secret; `providers.<name>.receipt_token` overrides it
    window: Duration = Field(default=48 * 3600.0, gt=0)  # no final receipt by then: "no receipt"

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^\s?#]+", value):
            raise ValueError("must be an http(s) URL without query or fragment, e.g. https://sms.example.org")
        return value.rstrip("/")


class RepliesConfig(_Model):
    """Two-way (issue 17): SMS replies mailed back to whoever sent the SMS they answer (dispatch/reply_poller.py,
    report/replier.py). Pushed replies are taken on `/receipts/<name>/<token>` whenever the provider has a token."""

    enabled: Bool = True  # poll every provider that has a replies API (`providers.<name>.replies` turns one off)
    poll_interval: Duration = Field(default=60.0, gt=0)  # seconds between two polls of one provider's replies
    # Replies tied to no SMS mail2sms sent (or whose sender may not be mailed): "" = logged and dropped.
    unmatched_to: str = ""
    per_number_per_hour: int = Field(default=10, ge=1)  # replies mailed per phone number per hour; more are kept
    # How old an SMS may be for a reply to be tied to it (by the provider's link, or by number when none is given).
    match_window: Duration = Field(default=7 * 86400.0, gt=0)

    @field_validator("unmatched_to")
    @classmethod
    def _unmatched_to(cls, value: str) -> str:
        problem = address_problem(value) if value else None
        if problem is not None:
            raise ValueError(f"{value!r} is not a plain local@domain address: {problem}")
        return value


class DispatchConfig(_Model):
    """How the dispatcher retries: full-jitter exponential backoff between `retry_base` and `retry_cap`."""

    retry_base: Duration = 5.0
    retry_cap: Duration = 600.0
    poll_interval: Duration = 1.0
    max_attempts: int = Field(default=50, ge=1)
    concurrency: int = Field(default=8, ge=1)  # requests in flight over all providers together
    breaker_failures: int = Field(default=5, ge=1)  # consecutive failed requests that pause a provider
    breaker_pause: Duration = 30.0  # first pause; doubles while the provider keeps failing, up to retry_cap
    lease: Duration = Field(default=300.0, ge=1.0)  # a claimed job is another node's to take after this


class ProviderConfig(_Model):
    type: str  # a registered adapter's type (providers/registry.py)
    url: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")
    key: SecretStr = SecretStr("")
    sender: str | None = None
    rate: float | None = Field(default=None, gt=0)
    # Requests in flight to this provider at once (within `dispatch.concurrency`, the cap over all providers):
    # a provider that hangs holds only its own slots, so the others carry on.
    concurrency: int = Field(default=4, ge=1)
    timeout: Duration = 30.0
    max_recipients: int | None = Field(default=None, ge=1)
    path: str = ""  # outbox only
    receipt_token: SecretStr = SecretStr("")  # this provider's push URL secret (else `receipts.token`)
    replies: Bool = True  # poll this provider's replies (when it has a replies API and `replies.enabled`)
    options: dict[str, Any] = {}  # adapter-specific extras (e.g. kapow route, bulksms routing_group)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        types = _provider_types()
        if value not in types:
            raise ValueError(f"{value!r} is not a provider type (known: {', '.join(types)})")
        return value

    @property
    def base_url(self) -> str:
        """`url`, or the adapter's default URL for these options (BulkSMS's depends on `options.api`)."""
        spec = _provider_spec(self.type)
        url = self.url or (spec.default_url(self.options) if spec is not None else "")
        return url if url.endswith("/") or not url else url + "/"


class RouteConfig(_Model):
    match: str
    format: Literal["address", "keyvalue", "csv"]
    provider: str
    region: str | None = None
    allow: list[str] = ["trusted", "authenticated"]
    text_from: Literal["body", "subject", "subject+body"] = "body"
    plus_as_space: Bool = True  # keyvalue: KwtSMS's rule that '+' means a space in sender and text
    sender: str | None = None
    lifetime: Duration = 86400.0
    dry_run: Bool = False
    credentials_in_body: Bool = False  # address format: Kapow mail form (username/password lines in the body)
    allowed_countries: list[str] = []  # region codes ("KW") or calling codes ("+965"); empty: every country
    blocked_prefixes: list[str] = []  # international prefixes ("+44909", "+1900") never sent to
    max_recipients: int | None = Field(default=None, ge=1)  # phone numbers per mail on this route
    quota_per_hour: int | None = Field(default=None, ge=1)  # SMS per user (or sender) per hour on this route
    quota_per_day: int | None = Field(default=None, ge=1)
    csv_policy: Literal["partial", "all-or-nothing"] = "partial"  # csv: send the good rows, or none if one is bad
    max_rows: int = Field(default=100_000, ge=1)  # csv: rows one mail may carry; more → 552 5.3.4
    # SMS text fidelity (parse/fit.py): GSM-7 look-alikes for typographic characters, a parts limit below the
    # provider's, cut instead of refuse when over it, and lines that end the text (`$$`, `##`).
    smart_replace: Bool = True
    max_parts: int | None = Field(default=None, ge=1)
    truncate: Bool = False
    end_markers: list[str] = []
    # Characters the route's provider charges for but never delivers (KwtSMS: emoji, invisible characters):
    # refused at DATA naming the first one, or removed (and the report says which) when this is true.
    strip_unsupported: Bool = False

    @field_validator("end_markers")
    @classmethod
    def _end_markers(cls, value: list[str]) -> list[str]:
        if any(not marker.strip() for marker in value):
            raise ValueError("an end marker must have visible characters (a blank one would end every text)")
        return [marker.strip() for marker in value]

    @field_validator("match")
    @classmethod
    def _match(cls, value: str) -> str:
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or ("*" in local and local != "*") or "*" in domain:
            raise ValueError(f"{value!r} is neither an address nor '*@domain'")
        return value.lower()

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: list[str]) -> list[str]:
        for entry in value:
            problem = allow_entry_problem(entry)
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("allowed_countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        return [parse_country(v) for v in value]

    @field_validator("blocked_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        return [parse_prefix(v) for v in value]

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region code such as KW, GB or AU")
        return value.upper()


class UserConfig(_Model):
    name: str
    password_hash: SecretStr
    provider_username: str = ""
    provider_password: SecretStr = SecretStr("")
    # The user's own address: outcome reports of this user's mail go here unless the MAIL FROM is vouched for.
    email: str = ""

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        problem = address_problem(value) if value else None
        if problem is not None:
            raise ValueError(f"{value!r} is not a plain local@domain address: {problem}")
        return value


class Config(_Model):
    server: ServerConfig = ServerConfig()
    spool: SpoolConfig = SpoolConfig()
    reports: ReportsConfig = ReportsConfig()
    http: HttpConfig = HttpConfig()
    receipts: ReceiptsConfig = ReceiptsConfig()
    replies: RepliesConfig = RepliesConfig()
    dispatch: DispatchConfig = DispatchConfig()
    providers: dict[str, ProviderConfig] = {}
    routes: list[RouteConfig] = []
    users: list[UserConfig] = []
    source: str = Field(default="", exclude=True)  # where this config came from, for messages

    def secrets(self) -> list[str]:
        """Every secret value in the config, for the log redactor."""
        values = [p.password.get_secret_value() for p in self.providers.values()]
        values += [p.key.get_secret_value() for p in self.providers.values()]
        values += [u.provider_password.get_secret_value() for u in self.users]
        values.append(urllib.parse.urlsplit(self.spool.url).password or "")  # postgresql://user:PASSWORD@host/db
        values.append(self.reports.smarthost_password.get_secret_value())
        values.append(self.receipts.token.get_secret_value())  # push URL tokens, never logged
        values += [self.receipt_token(name) for name in self.providers]
        return [v for v in values if v]

    def receipt_token(self, provider: str) -> str:
        """The secret in `provider`'s receipt push URL: its own `receipt_token`, else `receipts.token`; "" = none."""
        own = self.providers[provider].receipt_token.get_secret_value() if provider in self.providers else ""
        return own or self.receipts.token.get_secret_value()


def _resolve_tls_paths(raw: dict[str, Any], base: Path) -> None:
    """Relative `tls_cert` / `tls_key` follow the `*_file` rule: $CREDENTIALS_DIRECTORY if set, else beside the file."""
    server = raw.get("server")
    if not isinstance(server, dict):
        return
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    for name in ("tls_cert", "tls_key"):
        value = server.get(name)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            server[name] = str((Path(cred_dir) if cred_dir else base) / value)


def _tls_problem(cert: str, key: str) -> str | None:
    """Why the certificate and key cannot serve TLS (so check-config fails before the service does), or None."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            return f"server.tls_cert: the certificate and key do not load: {exc.reason or 'not PEM, or not a pair'}"
        return f"server.tls_cert: cannot read {exc.filename or cert}: {exc.strerror}"
    return None


def _resolve_secrets(raw: dict[str, Any], base: Path, problems: list[str]) -> None:
    """Turn `password_env` / `password_file` (and `key_*`) into the plain field, in place."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    sections: list[tuple[str, dict[str, Any], tuple[str, ...]]] = []
    providers = raw.get("providers")
    if isinstance(providers, dict):
        sections += [(f"providers.{n}", p, (*SECRET_FIELDS, "receipt_token")) for n, p in providers.items()
                     if isinstance(p, dict)]
    users = raw.get("users")
    if isinstance(users, list):
        sections += [(f"users[{i}]", u, ("provider_password",)) for i, u in enumerate(users) if isinstance(u, dict)]
    reports = raw.get("reports")
    if isinstance(reports, dict):
        sections.append(("reports", reports, ("smarthost_password",)))
    receipts = raw.get("receipts")
    if isinstance(receipts, dict):
        sections.append(("receipts", receipts, ("token",)))
    for where, section, fields in sections:
        for name in fields:
            given = [k for k in (name, f"{name}_env", f"{name}_file") if k in section]
            if len(given) > 1:
                problems.append(f"{where}: {' and '.join(given)} are both given; keep one (the secret comes from "
                                f"exactly one place: {name}, {name}_env or {name}_file)")
                for extra in given:
                    if extra != name:
                        section.pop(extra)  # said once, here, not again as an unknown key
                continue
            if f"{name}_env" in section:
                var = str(section.pop(f"{name}_env"))
                if var not in os.environ:
                    problems.append(f"{where}.{name}_env: environment variable {var} is not set")
                    continue
                section[name] = os.environ[var]
            elif f"{name}_file" in section:
                path = Path(str(section.pop(f"{name}_file")))
                if not path.is_absolute():
                    path = (Path(cred_dir) if cred_dir else base) / path
                try:
                    section[name] = path.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    problems.append(f"{where}.{name}_file: cannot read {path}: {exc.strerror}")


# Provider types that take the receipt address with every request (Kapow's `dlr`, as `options.receipt_url`);
# the others' webhooks are set in the provider's own dashboard to the URL the README names.
RECEIPT_URL_TYPES = frozenset({"kapow"})


def receipt_url(public_url: str, provider: str, token: str) -> str:
    """`<public_url>/receipts/<provider>/<token>`: where `provider` pushes receipts (web.py serves it)."""
    quoted = urllib.parse.quote(provider, safe="")
    return f"{public_url.rstrip('/')}/receipts/{quoted}/{urllib.parse.quote(token, safe='')}"


def _receipt_urls(raw: dict[str, Any]) -> None:
    """With `receipts.public_url` and a token, give each provider that takes the address per request its
    `options.receipt_url`, unless its options already name one (`receipt_url` or Kapow's own `dlr`)."""
    receipts, providers = raw.get("receipts"), raw.get("providers")
    if not isinstance(receipts, dict) or not isinstance(providers, dict):
        return
    public = receipts.get("public_url")
    if not isinstance(public, str) or not re.fullmatch(r"https?://[^\s?#]+", public):
        return  # a wrong value is reported by validation
    for name, section in providers.items():
        if not isinstance(section, dict) or section.get("type") not in RECEIPT_URL_TYPES:
            continue
        token = section.get("receipt_token") or receipts.get("token")
        options = section.get("options", {})
        if isinstance(token, str) and token and isinstance(options, dict) and not {"receipt_url", "dlr"} & set(options):
            section["options"] = {**options, "receipt_url": receipt_url(public, str(name), token)}


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _cross_check(config: Config) -> list[str]:
    problems: list[str] = []
    for i, route in enumerate(config.routes):
        if route.provider not in config.providers:
            problems.append(f"routes[{i}].provider: no provider named {route.provider!r}")
    seen: dict[str, int] = {}
    for i, route in enumerate(config.routes):
        if route.match in seen:
            problems.append(f"routes[{i}].match: {route.match!r} is already matched by routes[{seen[route.match]}]")
        seen.setdefault(route.match, i)
    for name, provider in config.providers.items():
        spec = _provider_spec(provider.type)
        for key, problem in spec.required.items() if spec is not None else ():
            value = getattr(provider, key)
            if not (value.get_secret_value() if isinstance(value, SecretStr) else value):
                problems.append(f"providers.{name}.{key}: {problem}")
    problems += _sender_conflicts(config)
    names = [u.name for u in config.users]
    for i, name in enumerate(names):
        if names.index(name) != i:
            problems.append(f"users[{i}].name: {name!r} is defined twice")
    if bool(config.server.tls_cert) != bool(config.server.tls_key):
        problems.append("server.tls_cert: tls_cert and tls_key go together")
    if config.server.tls_listen and not config.server.tls_cert:
        problems.append("server.tls_listen: implicit TLS needs tls_cert and tls_key")
    if config.server.tls_cert and config.server.tls_key:
        tls = _tls_problem(config.server.tls_cert, config.server.tls_key)
        if tls is not None:
            problems.append(tls)
    listen = {parse_hostport(item) for item in config.server.listen}
    for i, item in enumerate(config.server.auth_without_tls):
        host, port = parse_hostport(item)
        if (host, port) not in listen:
            problems.append(f"server.auth_without_tls[{i}]: {item!r} is not one of server.listen")
        elif not _is_loopback(host):
            problems.append(f"server.auth_without_tls[{i}]: {item!r} is not a loopback address; AUTH without "
                            "TLS would send passwords across a network in the clear")
    user_names = {u.name.lower() for u in config.users}
    for i, route in enumerate(config.routes):
        for entry in route.allow:
            e = entry.strip()
            if e.lower().startswith("user:") and e[5:].lower() not in user_names:
                problems.append(f"routes[{i}].allow: {e!r} names no user in [[users]]")
    return problems


def _sender_conflicts(config: Config) -> list[str]:
    """A sender ID where the provider's options rule one out (BulkSMS's `repliable`), on the provider or a route."""
    problems: list[str] = []
    for name, provider in config.providers.items():
        spec = _provider_spec(provider.type)
        conflict = spec.sender_conflict(provider.options) if spec and spec.sender_conflict else None
        if conflict and provider.sender:
            problems.append(f"providers.{name}.sender: {conflict}")
    for i, route in enumerate(config.routes):
        used = config.providers.get(route.provider)
        spec = _provider_spec(used.type) if used is not None else None
        conflict = spec.sender_conflict(used.options) if used and spec and spec.sender_conflict else None
        if conflict and route.sender:
            problems.append(f"routes[{i}].sender: {conflict}")
    return problems


def _provider_spec(provider_type: str) -> ProviderSpec | None:
    # Imported here: each adapter registers what the config needs to know about its type (default URLs, required
    # fields), and the adapters import this module, so the registry is read when a config is checked, not loaded.
    from mail2sms.providers.registry import spec_for

    return spec_for(provider_type)


def _provider_types() -> list[str]:
    from mail2sms.providers.registry import known_types

    return known_types()


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse(text: str, source: str = "<config>", base: Path | None = None) -> Config:
    """Validate TOML text; raise ConfigError naming every wrong key path."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
    problems: list[str] = []
    _resolve_secrets(raw, base or Path.cwd(), problems)
    _resolve_tls_paths(raw, base or Path.cwd())
    _receipt_urls(raw)
    raw["source"] = source
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = _loc(tuple(err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"  # its value is never echoed: a misspelt `pasword` holds a password
            else:
                msg += _echo(err["loc"], err.get("input"), msg)
            problems.append(f"{loc}: {msg}" if loc else msg)
        raise ConfigError(problems) from None
    problems += _cross_check(config)
    if problems:
        raise ConfigError(problems)
    return config


def _echo(loc: tuple[int | str, ...], given: object, msg: str) -> str:
    """' (got 'yes')': the wrong value, so the operator sees what was read; never for a secret's key, never a table."""
    if any(isinstance(part, str) and secret_key(part) for part in loc):
        return ""
    if not isinstance(given, str | int | float | bool) or repr(given) in msg:
        return ""
    shown = repr(given)
    return f" (got {shown[:80] + '...' if len(shown) > 80 else shown})"


def default_text(data_dir: str = "mail2sms-data") -> str:
    """The embedded default config, with paths under `data_dir`."""
    template = resources.files("mail2sms").joinpath("default.toml").read_text(encoding="utf-8")
    return template.replace("{data}", data_dir)


def load(path: str | None) -> Config:
    """Load `path`, or the embedded default when `path` is None."""
    if path is None:
        return parse(default_text(), source="<embedded default>")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    return parse(text, source=str(file), base=file.parent)


def show(config: Config) -> str:
    """Render the effective config as TOML-ish text with every secret replaced by ***.

    Secrets are found by key (SecretStr fields, secret-named keys in `options`, the password inside
    `spool.url`), never by searching for their values: a value search would mangle any text that happens to
    contain a short password, and the mangled text would show where the password is."""
    data = config.model_dump(mode="python", by_alias=True)
    lines: list[str] = [f"# effective configuration from {config.source}"]

    def value(v: Any, key: str = "") -> str:
        if isinstance(v, SecretStr):
            return '"***"' if v.get_secret_value() else '""'
        # Secret-named keys (also inside a provider's `options`); a flag such as `credentials_in_body` is no secret.
        if key and secret_key(key) and isinstance(v, str | int | float) and not isinstance(v, bool) and v:
            return '"***"'
        if isinstance(v, ipaddress.IPv4Network | ipaddress.IPv6Network):
            return f'"{v}"'
        if isinstance(v, str):
            text = _mask_url_password(v) if key == "url" else v
            if key == "receipt_url" and "/receipts/" in text:  # its last segment is the push token
                text = text.rsplit("/", 1)[0] + "/***"
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if v is None:
            return '""'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x, str(k))}" for k, x in v.items()) + "}"
        return str(v)

    def table(header: str, body: dict[str, Any]) -> None:
        lines.append(f"\n[{header}]" if not header.startswith("[") else f"\n{header}")
        for k, v in body.items():
            if v is None:
                continue
            lines.append(f"{k} = {value(v, k)}")

    for section in ("server", "spool", "reports", "http", "receipts", "replies", "dispatch"):
        table(section, data[section])
    for name, provider in data["providers"].items():
        table(f"providers.{name}", provider)
    for route in data["routes"]:
        table("[[routes]]", route)
    for user in data["users"]:
        table("[[users]]", user)
    return "\n".join(lines) + "\n"


def _mask_url_password(url: str) -> str:
    """postgresql://user:PASSWORD@host/db → postgresql://user:***@host/db (by its place in the URL)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username is not None else ":"
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}***@{host}"))
