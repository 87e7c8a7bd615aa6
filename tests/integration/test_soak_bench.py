"""The report soak still runs: `bench/soak.py` for a few seconds prints and writes its summary and samples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT


@pytest.mark.slow
def test_soak_smoke_run_writes_its_summary(tmp_path: Path) -> None:
    """A 4-second soak exits 0, every accepted mail got its report, and the summary names lag, RSS and the burst."""
    out = tmp_path / "soak.md"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--duration", "4", "--rate", "10",
                             "--sample", "1", "--burst", "40", "--out", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    cells = [line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    rows = {c[0]: c[1] for c in cells if len(c) == 2}
    accepted, delivered = rows["mails accepted / reports delivered (refused)"].split(" (")[0].split(" / ")
    assert accepted == delivered == rows["report copies in the maildir"] == "80"
    for measure in ("report lag, worst over the soak", "RSS of both workers after the first minute → at the end",
                    "burst of 40: reports/s vs accept rate"):
        assert measure in rows
