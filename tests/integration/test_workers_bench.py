"""The workers benchmark still runs: `bench/workers_bench.py --mails 60` writes its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT


@pytest.mark.slow
def test_workers_benchmark_small_run_writes_its_table(tmp_path: Path) -> None:
    """A 60-mail run exits 0 (every SMS accepted once in both runs) and reports a rate for 1 and 2 workers."""
    out = tmp_path / "workers.md"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "workers_bench.py"),
            "--mails",
            "60",
            "--latency",
            "0.05",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line.split(" | ") for line in out.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    assert [r[0] for r in rows[1:]] == ["| 1 worker (baseline)", "| 2 workers (`server.workers = 2`)"]
    assert rows[1][2] == "1.00×"
    assert all(float(r[1].split()[0].replace(",", "")) > 0 for r in rows[1:])
    assert float(rows[2][2].rstrip("×")) > 0
