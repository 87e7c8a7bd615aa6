"""`mail2sms check-config` warns about unsafe settings in real config files; `--strict` makes them exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from tests.harness import ROOT

SAFE = """
[server]
listen = ["127.0.0.1:2525"]
{server}

[spool]
url = "sqlite://{tmp}/spool.db"

[reports]
maildir = "{tmp}/reports"
{reports}

[http]
listen = "{http}"

[providers.out]
type = "outbox"
path = "{tmp}/outbox.jsonl"

[providers.kwt]
type = "kwtsms"
url = "{kwt_url}"
username = "user"
sender = "KWT-SMS"
{kwt_secret}

[[routes]]
match = "*@sms.test"
format = "address"
provider = "out"
region = "KW"
allow = {allow}
{users}
"""


SECRET_FROM_FILE = 'password_file = "kwt.secret"'


def write(tmp: Path, *, server: str = "", reports: str = "", http: str = "127.0.0.1:8026",
          kwt_url: str = "https://www.kwtsms.com/API/", kwt_secret: str = SECRET_FROM_FILE,
          allow: str = '["trusted"]', users: str = "") -> Path:
    """A config file with one setting changed from a safe baseline; secret files are written mode 0600."""
    secret = tmp / "kwt.secret"
    if not secret.exists():
        secret.write_text("kwt-secret-value\n", encoding="utf-8")
        secret.chmod(0o600)
    path = tmp / "mail2sms.toml"
    path.write_text(SAFE.format(tmp=tmp, server=server, reports=reports, http=http, kwt_url=kwt_url,
                                kwt_secret=kwt_secret, allow=allow, users=users), encoding="utf-8")
    path.chmod(0o600)
    return path


def check(path: Path, *strict: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    return subprocess.run([sys.executable, "-m", "mail2sms", "check-config", "--config", str(path), *strict],
                          capture_output=True, text=True, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, timeout=60,
                          check=False)


def test_a_safe_config_has_no_warnings(tmp_path: Path) -> None:
    """The baseline (loopback listeners, private secret file, https provider) passes even with --strict."""
    result = check(write(tmp_path), "--strict")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


def _tls(tmp: Path, key_mode: int = 0o600) -> str:
    issued = trustme.CA().issue_cert("sms.test")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    key.chmod(key_mode)
    return f'tls_cert = "{cert}"\ntls_key = "{key}"'


USER = '\n[[users]]\nname = "alarm"\npassword_hash = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="\n'


@pytest.mark.parametrize(("case", "settings", "key"), [
    ("allow any on a public listener", {"server": 'tls_listen = []\n', "allow": '["any"]'}, None),
    ("trusted networks cover everything", {"server": 'trusted_networks = ["0.0.0.0/0", "::/0"]'},
     "server.trusted_networks"),
    ("http listener on a public address", {"http": "0.0.0.0:8026"}, "http.listen"),
    ("smarthost password in clear", {"reports": 'smarthost = "mail.example.org:25"\nsmarthost_tls = "none"\n'
                                                'smarthost_username = "u"\nsmarthost_password = "relay-pass-1"'},
     "reports.smarthost_tls"),
    ("http provider URL", {"kwt_url": "http://www.kwtsms.com/API/"}, "providers.kwt.url"),
    ("users without TLS", {"users": USER}, "users:"),
])
def test_each_unsafe_setting_is_named(tmp_path: Path, case: str, settings: dict[str, str], key: str | None) -> None:
    """Each unsafe setting is a warning naming its key: exit 0, and exit 1 with --strict."""
    if case == "allow any on a public listener":
        path = write(tmp_path, **settings)
        path.write_text(path.read_text().replace('listen = ["127.0.0.1:2525"]', 'listen = ["0.0.0.0:2525"]', 1))
        key = "routes[0].allow"
    else:
        path = write(tmp_path, **settings)
    result = check(path)
    assert result.returncode == 0, result.stderr
    assert f"warning: {key}" in result.stderr
    strict = check(path, "--strict")
    assert strict.returncode == 1
    assert "relay-pass-1" not in result.stderr + result.stdout  # a warning names keys, never values


def test_files_readable_by_others_are_named(tmp_path: Path) -> None:
    """A secret file, a TLS key and a config holding secrets that every user can read are each a warning."""
    path = write(tmp_path, server=_tls(tmp_path, key_mode=0o644), kwt_secret='password = "inline-secret-1"',
                 users=USER)
    path.chmod(0o644)
    (tmp_path / "kwt.secret").chmod(0o644)
    result = check(path)
    assert "warning: server.tls_key:" in result.stderr
    assert f"warning: {path}: the config file holds secrets" in result.stderr
    assert "inline-secret-1" not in result.stderr
    with_file = write(tmp_path, kwt_secret=SECRET_FROM_FILE)
    assert "warning: providers.kwt.password_file:" in check(with_file).stderr
    assert check(with_file, "--strict").returncode == 1
