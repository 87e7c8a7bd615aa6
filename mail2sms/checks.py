"""`mail2sms check-config` warnings: settings that are valid but unsafe, each named by its key path.

A config can load without error and still expose the gateway: every client admitted on a public listener, a
trusted network that covers the internet, a secret file anyone on the host can read, passwords or API keys sent
without TLS. These checks say so before the service runs; `--strict` turns any warning into exit status 1.

The checks only read: the config, the TOML it came from (to find the `*_file` secrets, which loading resolved
into values) and the permission bits of the files it names. This module must never print or return a secret
value, only key paths and file names.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mail2sms.config import Config, parse_hostport

_SECRET_FILE_KEYS = ("password_file", "key_file", "provider_password_file", "smarthost_password_file")


def warnings(config: Config) -> list[str]:
    """Every warning for `config`, as `key.path: what is wrong and why it matters`."""
    found: list[str] = []
    found += _open_routes(config)
    found += _trusted_everything(config)
    found += _readable_files(config)
    found += _http_listener(config)
    found += _cleartext_credentials(config)
    if config.users and not config.server.tls_cert:
        found.append("users: [[users]] exist but no TLS is configured (server.tls_cert/tls_key): AUTH works only on "
                     "auth_without_tls loopback listeners, and a client elsewhere would have to log in without TLS")
    return found


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _open_routes(config: Config) -> list[str]:
    listeners = [(item, parse_hostport(item)[0]) for item in (*config.server.listen, *config.server.tls_listen)]
    public = [item for item, host in listeners if not _loopback(host)]
    if not public:
        return []
    return [f"routes[{i}].allow: \"any\" admits every client that can reach {', '.join(public)}: anyone there can "
            "send SMS on your account (list networks, senders or authenticated users instead)"
            for i, route in enumerate(config.routes) if any(e.strip().lower() == "any" for e in route.allow)]


def _trusted_everything(config: Config) -> list[str]:
    nets = config.server.trusted_networks
    v4 = list(ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv4Network)))
    v6 = list(ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv6Network)))
    out = []
    for version, collapsed, everything in ((4, v4, 2**32), (6, v6, 2**128)):
        covered = sum(n.num_addresses for n in collapsed)
        if covered == everything:
            out.append(f"server.trusted_networks: covers every IPv{version} address: every client is trusted, "
                       "may use any `trusted` route and gets outcome mail at any sender address")
        elif version == 4 and covered >= 2**31:
            out.append("server.trusted_networks: covers half of all IPv4 addresses or more; trust your own networks")
    return out


def _raw(config: Config) -> dict[str, Any]:
    path = Path(config.source)
    if not config.source or not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _secret_files(raw: dict[str, Any], base: Path) -> Iterator[tuple[str, Path]]:
    """(key path, file) for every `*_file` secret in the raw TOML, relative paths resolved as config.py does."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    sections: list[tuple[str, Any]] = [(f"providers.{n}", p) for n, p in (raw.get("providers") or {}).items()]
    sections += [(f"users[{i}]", u) for i, u in enumerate(raw.get("users") or [])]
    sections.append(("reports", raw.get("reports") or {}))
    for where, section in sections:
        if not isinstance(section, dict):
            continue
        for key in _SECRET_FILE_KEYS:
            if isinstance(section.get(key), str):
                path = Path(section[key])
                yield f"{where}.{key}", path if path.is_absolute() else (Path(cred_dir) if cred_dir else base) / path


def _others_can_read(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IROTH | stat.S_IWOTH))
    except OSError:
        return False


def _readable_files(config: Config) -> list[str]:
    raw = _raw(config)
    source = Path(config.source)
    files = list(_secret_files(raw, source.parent)) if raw else []
    if config.server.tls_key:
        files.append(("server.tls_key", Path(config.server.tls_key)))
    out = [f"{key}: {path} can be read by every user of this host (chmod 600 it, or use systemd credentials)"
           for key, path in files if _others_can_read(path)]
    if raw and config.secrets() and _others_can_read(source):
        out.append(f"{source}: the config file holds secrets and every user of this host can read it (chmod 600)")
    return out


def _http_listener(config: Config) -> list[str]:
    if not config.http.listen:
        return []
    host = parse_hostport(config.http.listen, 8026)[0]
    if _loopback(host):
        return []
    return [f"http.listen: {config.http.listen} is not a loopback address: metrics, health and the webhooks are "
            "open to the network (keep it on 127.0.0.1 behind a reverse proxy)"]


def _cleartext_credentials(config: Config) -> list[str]:
    out = []
    reports = config.reports
    if reports.smarthost and reports.smarthost_password.get_secret_value() and reports.smarthost_tls == "none":
        out.append('reports.smarthost_tls: "none" with a smarthost_password: the password crosses the network in '
                   "clear text (use starttls or tls)")
    for name, provider in config.providers.items():
        url = urllib.parse.urlsplit(provider.url)
        if url.scheme == "http" and not _loopback(url.hostname or ""):
            out.append(f"providers.{name}.url: {provider.url} is http://: the account's credentials and every "
                       "SMS cross the network unencrypted (use https://)")
    return out
