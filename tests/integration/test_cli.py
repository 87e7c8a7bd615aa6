"""The command line as an operator uses it: check-config, show-config, --version, --help, queue."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mail2sms import __version__
from tests.harness import ROOT, free_port, write_config


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mail2sms", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, stdin=subprocess.DEVNULL, timeout=60, check=False)


def test_version_and_help() -> None:
    """--version prints the version; --help lists the commands."""
    assert run("--version").stdout.strip() == f"mail2sms {__version__}"
    out = run("--help").stdout
    for command in ("serve", "check-config", "show-config", "queue", "balance", "hash-password"):
        assert command in out


def test_check_config_names_the_key_path(tmp_path: Path) -> None:
    """A route naming a missing provider fails check-config with exit 1 and `routes[N].provider: …`."""
    path, _ = write_config(tmp_path, """
[providers.kwt]
type = "kwtsms"
username = "u"
password = "p"
sender = "KWT-SMS"

[[routes]]
match = "a@sms.test"
format = "address"
provider = "kwt"

[[routes]]
match = "b@sms.test"
format = "keyvalue"
provider = "kwt"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt2"
region = "XX"
""")
    result = run("check-config", "--config", str(path))
    assert result.returncode == 1
    assert "routes[2].region: 'XX' is not a region code" in result.stderr
    fixed = path.read_text().replace('region = "XX"', 'region = "KW"')
    path.write_text(fixed)
    result = run("check-config", "--config", str(path))
    assert result.returncode == 1
    assert "routes[2].provider: no provider named 'kwt2'" in result.stderr


def test_check_config_reports_unknown_keys_and_missing_env(tmp_path: Path) -> None:
    """Unknown keys and unset *_env variables are named with their path."""
    path, _ = write_config(tmp_path, """
[providers.kwt]
type = "kwtsms"
password_env = "MAIL2SMS_TEST_UNSET_VARIABLE"
colour = "blue"
""")
    result = run("check-config", "--config", str(path))
    assert result.returncode == 1
    assert "providers.kwt.password_env: environment variable MAIL2SMS_TEST_UNSET_VARIABLE is not set" in result.stderr


def test_example_config_is_valid(tmp_path: Path) -> None:
    """config/mail2sms.example.toml passes check-config once its secrets exist."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "kapow.password").write_text("secret\n")
    result = run("check-config", "--config", str(ROOT / "config" / "mail2sms.example.toml"),
                 env={"KWTSMS_PASSWORD": "x", "BULKSMS_PASSWORD": "x", "CREDENTIALS_DIRECTORY": str(creds)})
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_embedded_default_is_valid() -> None:
    """With no --config the embedded default is checked and has the three sms.localhost routes."""
    result = run("show-config")
    assert result.returncode == 0
    for match in ("*@sms.localhost", "sms@sms.localhost", "csv@sms.localhost"):
        assert f'match = "{match}"' in result.stdout
    assert 'type = "outbox"' in result.stdout


def test_hash_password_reads_stdin() -> None:
    """hash-password reads a password from standard input and prints a scrypt hash that verifies."""
    from mail2sms.smtp.auth import verify_password

    result = subprocess.run([sys.executable, "-m", "mail2sms", "hash-password"], input="s3cret-pass\n",
                            capture_output=True, text=True, cwd=ROOT, check=True)
    encoded = result.stdout.strip()
    assert encoded.startswith("scrypt$")
    assert verify_password("s3cret-pass", encoded)
    assert not verify_password("other", encoded)


def test_queue_list_on_an_empty_spool(tmp_path: Path) -> None:
    """queue list on a fresh spool says it is empty; queue show of an unknown id exits 1."""
    path, _ = write_config(tmp_path, "", port=free_port())
    result = run("queue", "list", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "the queue is empty" in result.stdout
    assert run("queue", "show", "NOSUCHID", "--config", str(path)).returncode == 1
