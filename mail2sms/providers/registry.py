"""Which adapter serves which provider `type`, and what the config needs to know about each type before it is
built: the one place a configured provider becomes an object.

Each adapter module registers a `ProviderSpec` for its type (`SPEC = register(ProviderSpec(...))`) carrying its
name in reports, its default URL(s), the config fields it cannot work without, and its codes in plain words. The
built-in adapters are found by importing every module of this package once, on the first look-up; a provider
defined elsewhere (a plugin, a test) registers the same way and needs no change to any file here. So a new
provider is its adapter, its fake, its tests and a README row.

Nothing here does I/O or contacts a provider: `build_provider` only constructs the adapter. A type no adapter
registered is a ConfigError that names the key, never a crash later; so is an adapter option that is unknown or
out of range (adapters check `options` when they are built). A spec never holds a secret.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

from mail2sms.config import ProviderConfig
from mail2sms.errors import ConfigError
from mail2sms.providers.base import Provider
from mail2sms.providers.receipts import ReceiptSupport
from mail2sms.providers.replies import ReplySupport

Factory = Callable[[str, ProviderConfig, httpx.AsyncClient], Provider]


@dataclass(frozen=True)
class ProviderSpec:
    """What mail2sms knows about one provider type before any adapter is built."""

    type: str  # the config's `type = "..."`
    label: str  # how reports name the provider ("KwtSMS")
    build: Factory  # (name, config, client) -> adapter; checks `options` and raises ConfigError naming the key
    # Default base URL by `options.api` ("" when options.api is not set); empty: the provider needs no URL.
    urls: Mapping[str, str] = field(default_factory=dict)
    # Config fields the provider cannot work without, each with the problem to report when it is empty.
    required: Mapping[str, str] = field(default_factory=dict)
    # The provider's own codes in plain words (explain.py falls back to its generic table).
    explain: Mapping[str, str] = field(default_factory=dict)
    # How the provider tells delivery (providers/receipts.py); None: it cannot (the outbox).
    receipts: ReceiptSupport | None = None
    # How the provider hands over SMS replies (providers/replies.py); None: it has no replies API.
    replies: ReplySupport | None = None
    # Why a sender ID cannot go with these `options` (BulkSMS's repliable SMS), or None: config.py reports it at
    # `providers.<name>.sender` and `routes[i].sender`, so check-config says so before anything is sent.
    sender_conflict: Callable[[Mapping[str, object]], str | None] | None = None

    def default_url(self, options: Mapping[str, object]) -> str:
        """The base URL for these options: the one for `options.api`, else the type's default."""
        return self.urls.get(str(options.get("api", "")), "") or self.urls.get("", "")


_SPECS: dict[str, ProviderSpec] = {}
_LOADED = False
_LOCK = threading.Lock()  # parse may run in a worker thread while the loop builds providers
_LOADING = threading.RLock()  # re-entrant: an adapter module imported by the loader may read the registry


def register(spec: ProviderSpec) -> ProviderSpec:
    """Make `spec.type` a provider type; registering a type twice replaces it (a test may redefine one)."""
    with _LOCK:
        _SPECS[spec.type] = spec
    return spec


def unregister(provider_type: str) -> None:
    """Forget a type (a throwaway provider of a test cleans up after itself)."""
    with _LOCK:
        _SPECS.pop(provider_type, None)


def _load_builtins() -> None:
    """Import every module of this package once, so each built-in adapter registers its spec."""
    global _LOADED
    if _LOADED:
        return
    with _LOADING:  # a second thread waits until every built-in is registered instead of seeing a partial set
        if _LOADED:
            return
        package = importlib.import_module("mail2sms.providers")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"mail2sms.providers.{module.name}")
        _LOADED = True


def spec_for(provider_type: str) -> ProviderSpec | None:
    """The spec registered for `provider_type`, or None."""
    _load_builtins()
    return _SPECS.get(provider_type)


def known_types() -> list[str]:
    """Every registered provider type, sorted."""
    _load_builtins()
    return sorted(_SPECS)


def build_provider(name: str, config: ProviderConfig, client: httpx.AsyncClient) -> Provider:
    """The adapter for `config.type`, named `name`, sharing `client`."""
    spec = spec_for(config.type)
    if spec is None:
        raise ConfigError([f"providers.{name}.type: {config.type!r} is not supported yet"])
    return spec.build(name, config, client)
