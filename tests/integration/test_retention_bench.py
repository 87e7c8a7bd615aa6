"""The retention benchmark still runs: `bench/retention_bench.py --quick` builds a spool of finished jobs with SQL and
writes its table comparing its accept rate with an empty spool's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT


@pytest.mark.slow
def test_retention_benchmark_quick_run(tmp_path: Path) -> None:
    """A quick run exits 0 and writes three rows: the empty baseline, the full spool's ratio, and the live count."""
    out = tmp_path / "retention.md"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "retention_bench.py"), "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line for line in out.read_text(encoding="utf-8").splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 3
    assert "1.00×" in rows[0]
    assert "20,000 finished jobs" in rows[1]
    assert float(re.findall(r"\| ([\d.]+)× \|", rows[1])[0]) > 0
    assert "(675 live jobs)" in rows[2]  # the accepts of this run (2 rounds of 300, 75 to warm up), no finished one
