"""The command line as an operator uses it: check-config, show-config, --version, --help, queue."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from mail2sms import __version__
from tests.harness import ROOT, free_port, message, send, wait_until, write_config


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


KWT = """
[providers.kwt]
type = "kwtsms"
username = "u"
password = "{password}"
sender = "KWT-SMS"
options = {{ api_key = "k-{password}", note = "a {password} day" }}

[[routes]]
match = "*@{password}.example"
format = "address"
provider = "kwt"
"""


def test_config_is_found_before_or_after_the_command_and_from_the_environment(tmp_path: Path) -> None:
    """--config works before and after the command, and $MAIL2SMS_CONFIG is used when --config is absent."""
    path, _ = write_config(tmp_path, "")
    after = run("show-config", "--config", str(path))
    before = run("--config", str(path), "show-config")
    from_env = run("show-config", env={"MAIL2SMS_CONFIG": str(path)})
    for result in (after, before, from_env):
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"# effective configuration from {path}")
    assert after.stdout == before.stdout == from_env.stdout
    overridden = run("-c", "/nonexistent.toml", "show-config", "-c", str(path))  # the one after the command wins
    assert overridden.returncode == 0, overridden.stderr


def test_etc_config_is_the_default_when_it_exists(tmp_path: Path) -> None:
    """With neither --config nor $MAIL2SMS_CONFIG, the file at the default path is used when it exists, and the
    embedded default when it does not (the path is pointed at a temporary file: /etc belongs to the machine)."""
    path, _ = write_config(tmp_path, "")
    code = ("import sys; from mail2sms import cli; cli.DEFAULT_CONFIG = sys.argv[1]; "
            "sys.exit(cli.main(['show-config']))")
    env = {k: v for k, v in os.environ.items() if k != "MAIL2SMS_CONFIG"}
    found = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=60, check=False)
    assert found.stdout.startswith(f"# effective configuration from {path}"), found.stderr
    missing = subprocess.run([sys.executable, "-c", code, str(tmp_path / "absent.toml")], capture_output=True,
                             text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert missing.stdout.startswith("# effective configuration from <embedded default>"), missing.stderr


def test_queue_refuses_to_invent_a_spool_without_a_config(tmp_path: Path) -> None:
    """queue list with no config anywhere exits 1 saying how to name one, and creates nothing in the directory."""
    env = {k: v for k, v in os.environ.items() if k != "MAIL2SMS_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-m", "mail2sms", "queue", "list"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert result.returncode == 1
    assert "no config file: give --config PATH or set MAIL2SMS_CONFIG" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_serve_listen_overrides_the_configured_address(tmp_path: Path) -> None:
    """serve --listen HOST:PORT listens there instead of server.listen, and takes mail there."""
    path, configured = write_config(tmp_path, """
[providers.out]
type = "outbox"
path = "{out}"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "out"
region = "KW"
""".replace("{out}", str(tmp_path / "outbox.jsonl")))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mail2sms", "serve", "--config", str(path), "--listen",
                                 f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=tmp_path)
    try:
        wait_until(lambda: _greets(port), timeout=30)
        assert send(port, message("96550000001@sms.test", "quick try"))[0] == 250
        wait_until(lambda: (tmp_path / "outbox.jsonl").exists(), timeout=30)
        assert not _greets(configured)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    bad = run("serve", "--config", str(path), "--listen", "127.0.0.1")
    assert bad.returncode == 1
    assert "--listen: '127.0.0.1' has no port" in bad.stderr


def _greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 2) as s:
            return s.recv(100).startswith(b"220")
    except OSError:
        return False


def test_check_config_names_each_mistake_with_the_value_read(tmp_path: Path) -> None:
    """A listen entry without a port, a boolean written as "yes", password next to password_file and a number
    written as a word are each one message naming the key and echoing the value, but never a secret's value."""
    (tmp_path / "kwt.password").write_text("from-the-file\n")
    path, _ = write_config(tmp_path, """
[providers.kwt]
type = "kwtsms"
username = "u"
password = "inline-secret"
password_file = "kwt.password"
sender = "KWT-SMS"
timeout = "soon"

[providers.other]
type = "kwtsms"
username = "u"
password = 12345678
sender = "KWT-SMS"

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kwt"
dry_run = "yes"
max_parts = "many"
""")
    text = path.read_text().replace('listen = ["127.0.0.1:', 'listen = ["127.0.0.1", "127.0.0.1:')
    path.write_text(text)
    result = run("check-config", "--config", str(path))
    assert result.returncode == 1
    problems = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert "server.listen: '127.0.0.1' has no port (write HOST:PORT, e.g. 127.0.0.1:25 or [::1]:25)" in problems
    assert "routes[0].dry_run: Input should be a valid boolean (got 'yes')" in problems
    assert any(p.startswith("routes[0].max_parts:") and p.endswith("(got 'many')") for p in problems)
    assert any(p.startswith("providers.kwt.timeout: not a duration: 'soon'") for p in problems)
    both = [p for p in problems if "password_file" in p]
    assert both == ["providers.kwt: password and password_file are both given; keep one (the secret comes from "
                    "exactly one place: password, password_env or password_file)"]
    assert any(p.startswith("providers.other.password:") for p in problems)
    for secret in ("inline-secret", "from-the-file", "12345678"):
        assert secret not in result.stderr + result.stdout


def test_show_config_masks_by_key_never_by_value(tmp_path: Path) -> None:
    """A short password that also occurs in ordinary values leaves those values whole; every secret-named key
    and the password in a PostgreSQL URL show ***."""
    path, _ = write_config(tmp_path, KWT.format(password="bad"))
    text = path.read_text().replace(f'url = "sqlite://{tmp_path}/spool.db"',
                                    'url = "postgresql://mail2sms:bad@db.example/mail2sms"')
    path.write_text(text)
    result = run("show-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert 'match = "*@bad.example"' in out
    assert 'note = "a bad day"' in out
    assert 'password = "***"' in out
    assert 'api_key = "***"' in out
    assert 'url = "postgresql://mail2sms:***@db.example/mail2sms"' in out
    assert '"bad"' not in out
    assert ":bad@" not in out
    assert "k-bad" not in out
