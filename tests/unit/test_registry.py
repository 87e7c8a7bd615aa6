"""The provider registry and the one-home rules: each built-in adapter carries its own facts, transport failures are
judged by type, and a charset label means the same to the MIME and the CSV reader."""

from __future__ import annotations

import httpx
import pytest

from mail2sms.config import ProviderConfig
from mail2sms.model import Retry, Unknown
from mail2sms.parse.charsets import charset_codec
from mail2sms.parse.csvfile import decode_csv
from mail2sms.parse.mime import decode_text
from mail2sms.providers import wire
from mail2sms.providers.base import transport_result
from mail2sms.providers.explain import explain
from mail2sms.providers.registry import known_types, spec_for

BUILT_IN = ("bulksms", "cellcast", "kapow", "kobomobile", "kwtsms", "outbox")


def test_every_builtin_adapter_registers_itself() -> None:
    """The six built-in types are found by importing the providers package, with no list kept anywhere."""
    assert set(BUILT_IN) <= set(known_types())


@pytest.mark.parametrize("kind", BUILT_IN)
def test_builtin_spec_carries_label_url_and_words(kind: str) -> None:
    """Each spec names its provider for reports, knows its default URL (none for the outbox) and its own codes."""
    spec = spec_for(kind)
    assert spec is not None
    assert (spec.type, bool(spec.label)) == (kind, True)
    assert bool(spec.default_url({})) == (kind != "outbox")
    assert spec.explain
    code = next(iter(spec.explain))
    assert explain(kind, code) == spec.explain[code]


def test_required_fields_are_the_adapters() -> None:
    """The outbox needs a path and Cellcast a key; the others can take credentials from the mail."""
    required = {kind: set(spec.required) for kind in BUILT_IN if (spec := spec_for(kind)) is not None}
    assert required == {
        "bulksms": set(),
        "cellcast": {"key"},
        "kapow": set(),
        "kobomobile": set(),
        "kwtsms": set(),
        "outbox": {"path"},
    }


def test_bulksms_default_url_follows_options_api() -> None:
    """BulkSMS's default URL is the JSON API's, or the EAPI's when options.api says so."""
    assert ProviderConfig.model_validate({"type": "bulksms"}).base_url == "https://api.bulksms.com/v1/"
    eapi = ProviderConfig.model_validate({"type": "bulksms", "options": {"api": "eapi"}})
    assert eapi.base_url == "https://bulksms.vsms.net/eapi/"


class RenamedConnectError(httpx.ConnectError):
    """A connect failure whose class name is not one of httpx's."""


def test_transport_failures_are_judged_by_type_not_name() -> None:
    """A subclass of ConnectError with another name is still 'surely not sent'; a read error may have been sent."""
    request = httpx.Request("POST", "http://127.0.0.1/")
    assert isinstance(transport_result(RenamedConnectError("x", request=request), idempotent=False), Retry)
    assert isinstance(transport_result(httpx.ReadError("x", request=request), idempotent=False), Unknown)
    words = wire.balance_failure("Kapow", RenamedConnectError("x", request=request))
    assert words.startswith("mail2sms could not connect to Kapow")


@pytest.mark.parametrize("label", ["idna", "unicode_escape", "rot13", "no-such-charset", "utf-8\0"])
def test_labels_that_are_not_charsets_pick_no_codec(label: str) -> None:
    """A codec that is not a charset, an unknown label or a NUL in a label is never used to decode."""
    assert charset_codec(label) is None


@pytest.mark.parametrize("label", ["iso-8859-1", "latin1", "l1"])
def test_a_latin1_label_means_windows_1252_to_both_readers(label: str) -> None:
    """Smart quotes sent under a Latin-1 label read the same in a text part and in a CSV file."""
    data = "“ok” – café".encode("cp1252")
    assert decode_text(data, label) == "“ok” – café"
    assert decode_csv(data, label) == "“ok” – café"
