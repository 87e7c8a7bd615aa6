"""`mail2sms check-config` as an operator runs it: a KoboMobile provider without a sender is named at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness import ROOT, write_config

CONFIG = """
[providers.kobo]
type = "kobomobile"
url = "https://kobo.test/api/"
username = "kobouser"
password = "kobo-secret-pw-41"
{sender}

[[routes]]
match = "*@sms.test"
format = "address"
provider = "kobo"
region = "NG"
"""


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mail2sms", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def test_check_config_requires_a_kobomobile_sender(tmp_path: Path) -> None:
    """Without `sender`, check-config exits 1 naming providers.kobo.sender (no password shown); with one it passes."""
    path, _ = write_config(tmp_path, CONFIG.format(sender=""))
    result = check_config(path)
    assert result.returncode == 1
    assert "providers.kobo.sender: KoboMobile requires a sender ID" in result.stderr
    assert "kobo-secret-pw-41" not in result.stdout + result.stderr
    path.write_text(
        path.read_text().replace(
            'password = "kobo-secret-pw-41"\n', 'password = "kobo-secret-pw-41"\nsender = "Shop"\n'
        )
    )
    result = check_config(path)
    assert result.returncode == 0, result.stderr
