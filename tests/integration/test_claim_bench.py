"""The claim-sizing comparison still runs: `bench/csv_bench.py --compare` serves with the old sizing and the new."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT


@pytest.mark.slow
def test_csv_bench_compare_runs_the_old_sizing_and_the_new(tmp_path: Path) -> None:
    """A 2,000-row comparison exits 0 (the old-sizing server said so in its log, every SMS arrived in both runs)
    and reports a rate ratio of new to old."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "csv_bench.py"), "--rows", "2000", "--compare", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=900,  # against a hang on a busy machine, not a timing check
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {line.split(" | ")[0]: line for line in result.stdout.splitlines() if line.startswith("| ")}
    ratio = rows["| sending rate, new vs old (old time / new time)"]
    assert float(ratio.split(" | ")[1].split("×")[0]) > 0
    assert "2,000 (20), 1" in rows["| rows (distinct texts), runs of each sizing"]
