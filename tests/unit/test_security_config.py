"""Config keys of the security issue: local-only AUTH listeners, user allow entries, reports.from and TLS files."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from mail2sms import config as configmod
from mail2sms.errors import ConfigError

BASE = """
[providers.out]
type = "outbox"
path = "out.jsonl"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "out"
allow = {allow}
"""


def parse(server: str = "", allow: str = '["trusted"]', extra: str = "") -> configmod.Config:
    return configmod.parse(f"[server]\n{server}\n" + BASE.format(allow=allow) + extra)


def problems(**kw: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(**kw)
    return err.value.problems


def test_auth_without_tls_on_a_loopback_listener() -> None:
    """A loopback `listen` entry may be marked for AUTH without TLS."""
    config = parse('listen = ["127.0.0.1:8025", "[::1]:8025"]\nauth_without_tls = ["127.0.0.1:8025", "[::1]:8025"]')
    assert config.server.auth_without_tls == ["127.0.0.1:8025", "[::1]:8025"]


def test_auth_without_tls_refuses_network_and_unknown_listeners() -> None:
    """A public address, or an address that is not a listener, is a config error naming the entry."""
    found = problems(server='listen = ["0.0.0.0:25", "127.0.0.1:8025"]\n'
                            'auth_without_tls = ["0.0.0.0:25", "127.0.0.1:9999"]')
    assert any("auth_without_tls[0]" in p and "loopback" in p for p in found)
    assert any("auth_without_tls[1]" in p and "not one of server.listen" in p for p in found)


def test_user_allow_entry_must_name_a_user() -> None:
    """`user:NAME` must name a [[users]] entry (case-insensitively)."""
    assert any("names no user" in p for p in problems(allow='["user:ghost"]'))
    users = '\n[[users]]\nname = "Alarm"\npassword_hash = "scrypt$x"\n'
    assert parse(allow='["user:alarm"]', extra=users).routes[0].allow == ["user:alarm"]


def test_reports_from_must_be_a_plain_address() -> None:
    """An outcome mail's From: with a line break or quoting is refused at load time."""
    with pytest.raises(ConfigError, match=r"reports\.from"):
        configmod.parse('[reports]\nfrom = "a\\r\\nBcc: x@y.example"\n')
    assert configmod.parse('[reports]\nfrom = "mail2sms@sms.localhost"\n').reports.from_ == "mail2sms@sms.localhost"


def test_tls_files_are_checked_and_relative_paths_use_credentials(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative tls_cert/tls_key are read from $CREDENTIALS_DIRECTORY; files that do not load are a config error."""
    issued = trustme.CA().issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    issued.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = parse('tls_cert = "tls.crt"\ntls_key = "tls.key"')
    assert config.server.tls_key == str(tmp_path / "tls.key")
    (tmp_path / "broken.key").write_text("not a key\n")
    assert any("do not load" in p for p in problems(server='tls_cert = "tls.crt"\ntls_key = "broken.key"'))
    assert any("cannot read" in p for p in problems(server='tls_cert = "missing.crt"\ntls_key = "tls.key"'))


def test_trusted_networks_that_together_cover_everything_are_a_warning() -> None:
    """Two halves that together cover every IPv4 address warn as much as 0.0.0.0/0 does; a LAN does not."""
    from mail2sms.checks import warnings

    halves = parse(server='trusted_networks = ["0.0.0.0/1", "128.0.0.0/1"]')
    assert any(w.startswith("server.trusted_networks: covers every IPv4 address") for w in warnings(halves))
    lan = parse(server='trusted_networks = ["10.0.0.0/8", "::1/128"]')
    assert not [w for w in warnings(lan) if w.startswith("server.trusted_networks")]


def test_users_get_an_email_for_their_reports() -> None:
    """`users[].email` must be a plain address: it is where that user's outcome reports go."""
    user = '\n[[users]]\nname = "alarm"\npassword_hash = "x"\nemail = "{}"\n'
    assert parse(extra=user.format("owner@example.org")).users[0].email == "owner@example.org"
    with pytest.raises(ConfigError) as caught:
        parse(extra=user.format("not an address"))
    assert any(p.startswith("users[0].email") for p in caught.value.problems)
