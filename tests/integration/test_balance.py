"""`mail2sms balance` as a user runs it (a subprocess) against the five fake providers over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mail2sms.providers.bulksms import EXPLAIN as BULKSMS
from mail2sms.providers.kobomobile import EXPLAIN as KOBOMOBILE
from tests.fakes.bulksms import FakeBulkSms
from tests.fakes.cellcast import FakeCellcast
from tests.fakes.kapow import FakeKapow
from tests.fakes.kobomobile import FakeKoboMobile
from tests.fakes.kwtsms import FakeKwtSms
from tests.fakes.server import FakeProvider
from tests.harness import ROOT, write_config

WRONG_BULK = "wrong-bulk-password-9"
WRONG_KOBO = "wrong-kobo-password-8"
SECRETS = ("bulk-pw-1", "kobo-pw-2", "cellcast-key-3", "kapow-pw-4", "kwt-pw-5", WRONG_BULK, WRONG_KOBO)

CONFIG = """
[providers.bulk]
type = "bulksms"
url = "{bulksms}"
username = "bulkuser"
password = "bulk-pw-1"
options = {{ api = "eapi" }}

[providers.bulk-bad]
type = "bulksms"
url = "{bulksms}"
username = "bulkuser"
password = "{wrong_bulk}"
options = {{ api = "eapi" }}

[providers.kobo]
type = "kobomobile"
url = "{kobomobile}"
username = "kobouser"
password = "kobo-pw-2"
sender = "Shop"

[providers.kobo-bad]
type = "kobomobile"
url = "{kobomobile}"
username = "kobouser"
password = "{wrong_kobo}"
sender = "Shop"

[providers.cell]
type = "cellcast"
url = "{cellcast}"
key = "cellcast-key-3"

[providers.kapow]
type = "kapow"
url = "{kapow}"
username = "kapowuser"
password = "kapow-pw-4"

[providers.kwt]
type = "kwtsms"
url = "{kwtsms}"
username = "kwtuser"
password = "kwt-pw-5"
sender = "KWT-MESSAGE"
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    fakes: dict[str, FakeProvider] = {
        "bulksms": FakeBulkSms(accounts={"bulkuser": ("bulk-pw-1", 2101.15)}),
        "kobomobile": FakeKoboMobile(accounts={"kobouser": ("kobo-pw-2", 1500.5)}, shape="object"),
        "cellcast": FakeCellcast(keys={"cellcast-key-3": 250.0}),
        "kapow": FakeKapow(accounts={"kapowuser": ("kapow-pw-4", 148)}),
        "kwtsms": FakeKwtSms(accounts={"kwtuser": ("kwt-pw-5", 181.0)}),
    }
    for fake in fakes.values():
        fake.start()
    try:
        body = CONFIG.format(**{k: f.url for k, f in fakes.items()}, wrong_bulk=WRONG_BULK, wrong_kobo=WRONG_KOBO)
        path, _ = write_config(tmp_path_factory.mktemp("balance"), body)
        yield path
    finally:
        for fake in fakes.values():
            fake.stop()
            assert fake.errors == []


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "mail2sms", "balance", "--config", str(config), *args],
        capture_output=True, text=True, env=env, cwd=config.parent, timeout=60, check=False,
    )


def rows(output: str) -> dict[str, str]:
    """Table rows by provider name (the first column)."""
    return {line.split()[0]: line for line in output.splitlines()[1:] if line.strip()}


def test_balance_shows_every_providers_credit_and_explains_errors(config: Path) -> None:
    """One table: each provider's credit, and a refused login in plain words without any password."""
    done = run(config)
    table = rows(done.stdout)
    assert done.returncode == 1  # some providers could not be read
    assert set(table) == {"bulk", "bulk-bad", "kobo", "kobo-bad", "cell", "kapow", "kwt"}
    assert table["bulk"].split()[1:3] == ["bulksms", "2101.15"]
    assert table["kobo"].split()[1:3] == ["kobomobile", "1500.5"]
    assert table["cell"].split()[1:3] == ["cellcast", "250"]
    assert table["kapow"].split()[1:3] == ["kapow", "148"]
    assert table["kwt"].split()[1:3] == ["kwtsms", "181"]
    assert BULKSMS["23"] in table["bulk-bad"]
    assert KOBOMOBILE["error_user"] in table["kobo-bad"]
    for secret in SECRETS:
        assert secret not in done.stdout + done.stderr


def test_balance_of_one_provider(config: Path) -> None:
    """`mail2sms balance NAME` shows only that provider and exits 0 when it could be read."""
    done = run(config, "cell")
    assert done.returncode == 0, done.stderr
    assert list(rows(done.stdout)) == ["cell"]
