"""The BulkSMS personalised-CSV benchmark still runs: `bench/bulksms_bench.py --rows 40` writes its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT


@pytest.mark.slow
def test_bulksms_benchmark_small_run_writes_its_table(tmp_path: Path) -> None:
    """A 40-row run exits 0; the personalised ways take one request each and the baseline one per row."""
    out = tmp_path / "bulksms.md"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bulksms_bench.py"), "--rows", "40", "--out",
                             str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line.split(" | ") for line in out.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    assert [r[1] for r in rows[1:]] == ["1", "1", "40"]  # rows[0] is the header
    assert rows[-1][2] == "1.0000×"
