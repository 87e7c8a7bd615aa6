"""The receipt polling benchmark still runs: `bench/receipts_bench.py --quick` writes its table, polls stay within
the provider's rate, and sends keep priority over polls."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT


@pytest.mark.slow
def test_receipts_benchmark_quick_run(tmp_path: Path) -> None:
    """A quick run exits 0 and writes its three rows; polling alone stays under the rate, and polls get no turn while
    sends ask for every one."""
    out = tmp_path / "receipts.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "receipts_bench.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line for line in out.read_text(encoding="utf-8").splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 3
    alone = float(re.findall(r"([\d.]+)×", rows[1])[0])
    assert alone <= 1.05  # the token bucket's single burst aside, never over the rate
    assert "0.0 polls/s" in rows[2]
