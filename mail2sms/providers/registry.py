"""Which adapter class serves which provider `type`: the one place a configured provider becomes an object.

`build_provider` must never do I/O or contact a provider; it only constructs the adapter. A type the config
accepts but no adapter implements is a ConfigError that names the key, never a crash later; so is an adapter
option that is unknown or out of range (adapters check `options` when they are built).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError
from mail2sms.providers.base import Provider
from mail2sms.providers.bulksms_json import build_bulksms
from mail2sms.providers.cellcast import CellcastProvider
from mail2sms.providers.kapow import KapowProvider
from mail2sms.providers.kobomobile import KoboMobileProvider
from mail2sms.providers.kwtsms import KwtSmsProvider
from mail2sms.providers.outbox import OutboxProvider

Factory = Callable[[str, ProviderConfig, httpx.AsyncClient], Provider]

ADAPTERS: dict[str, Factory] = {
    "kwtsms": KwtSmsProvider,
    "kapow": KapowProvider,
    "bulksms": build_bulksms,  # options.api: "json" (default) or "eapi"
    "kobomobile": KoboMobileProvider,
    "cellcast": CellcastProvider,
    "outbox": OutboxProvider,
}


def build_provider(name: str, config: ProviderConfig, client: httpx.AsyncClient) -> Provider:
    """The adapter for `config.type`, named `name`, sharing `client`."""
    factory = ADAPTERS.get(config.type)
    if factory is None:
        raise ConfigError([f"providers.{name}.type: {config.type!r} is not supported yet"])
    return factory(name, config, client)
