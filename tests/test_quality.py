"""The code stays ruff- and mypy-strict-clean: CI runs these as part of the test suite."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.harness import ROOT


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "ruff", "check", "mail2sms", "tests", "bench"],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff", "mypy"],
)
def test_static_checks_pass(command: list[str]) -> None:
    """ruff (lint) and mypy (strict types) report no problem in the project."""
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} missing")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
