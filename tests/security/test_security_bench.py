"""The security benchmark still runs: `bench/security_bench.py --quick` writes a row per phase, bystander all 250."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT


@pytest.mark.slow
def test_security_bench_quick_run_writes_its_table(tmp_path: Path) -> None:
    """A quick run exits 0; each of the five phases has a row, and every bystander mail in it got 250."""
    out = tmp_path / "security.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "security_bench.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line.split(" | ") for line in out.read_text(encoding="utf-8").splitlines() if line.startswith("| ")][1:]
    assert [row[0] for row in rows] == [
        "| idle baseline",
        "| 10 sessions x 1 MiB of empty lines",
        "| 100 idle TLS connections",
        "| header bombs (4 kinds x 3)",
        "| AUTH flood (8 sessions)",
    ]
    for row in rows:
        assert row[5].startswith("250: "), row  # bystander replies: only 250s
        assert "," not in row[5], row
