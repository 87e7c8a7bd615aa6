"""The benchmark still runs: `bench/run.py --quick` (tiny counts) prints and writes its markdown table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT


@pytest.mark.slow
def test_benchmark_quick_run_writes_its_table(tmp_path: Path) -> None:
    """A quick benchmark run exits 0 and writes a table with a row for each of its measures."""
    out = tmp_path / "results.md"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False)  # against a hang
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line for line in out.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    assert [r.split(".", 1)[0] for r in rows[1:]] == ["| 1", "| 1b", "| 2", "| 3", "| 4", "| 5", "| 6"]
    assert "| 5. HTTP requests for one 1,000-recipient broadcast | 5 requests," in out.read_text(encoding="utf-8")
