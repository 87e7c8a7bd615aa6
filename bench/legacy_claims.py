"""The claim sizing before issue 14 item 3, kept only as a benchmark baseline, and a way to serve with it.

Before, a claim was the requests the provider's rate sends in half a lease (at least two rounds of its workers)
times the jobs one request carried in the last claim, at most `claim_limit` (5,000): with any generous rate, 5,000
jobs per claim. `LegacyClaimSizer` is that formula, verbatim, behind today's `ClaimSizer` interface.
`server_env(tmp)` gives a `ProcessServer` the environment in which `python -m mail2sms serve` (and each of its
`server.workers` children, which inherit it) starts with `LegacyClaimSizer` in place of `ClaimSizer`: a
`sitecustomize` module in a folder of `tmp` put on PYTHONPATH. So a benchmark measures the same code with the old
sizing and the new one in the same run; the server prints `MARK` so the benchmark can check which one ran.

It is never imported by mail2sms itself, and changes nothing but how many jobs a claim asks for.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mail2sms.dispatch import dispatcher  # noqa: E402
from mail2sms.dispatch.claims import ClaimSizer  # noqa: E402
from mail2sms.model import Batch, Job  # noqa: E402


class LegacyClaimSizer(ClaimSizer):
    """The old `Dispatcher._budget`: rate × half a lease (≥ 2 rounds of workers) × the last claim's fill."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fill: dict[str, float] = {}  # provider → jobs per request in its last claim

    def budget(self, provider: str, fill: float = 1.0) -> int:
        fill = self._fill.get(provider, 1.0)  # the old sizing knew only the last claim's fill
        limits = self.providers[provider].limits
        rate = limits.rate / self.rate_share if limits.rate else math.inf
        requests = max(min(rate * self.lease / 2, float(self.claim_limit)), 2.0 * self.concurrency[provider])
        per_request = min(fill, float(max(1, limits.max_recipients)))
        return max(1, min(self.claim_limit, int(requests * per_request)))

    def cap(self, provider: str) -> int:
        return self.claim_limit

    def more(self, provider: str, claimed: Sequence[Job], last: int, held: int) -> int:
        return 0  # one claim per provider and tick, as before

    def observe(self, batches: Iterable[Batch]) -> None:
        sizes: dict[str, list[int]] = {}
        for batch in batches:
            sizes.setdefault(batch.provider, []).append(len(batch.jobs))
        for name, counts in sizes.items():
            if name in self.providers:
                self._fill[name] = sum(counts) / len(counts)


MARK = "claim sizing: legacy (benchmark baseline)"


def install() -> None:
    """Put the old sizing in place of the new one in this process (before the dispatcher is built)."""
    dispatcher.ClaimSizer = LegacyClaimSizer  # type: ignore[attr-defined]  # the name the dispatcher builds from
    print(MARK, file=sys.stderr, flush=True)


def server_env(tmp: Path) -> dict[str, str]:
    """Environment for a mail2sms child process that serves with the old sizing (see the module docstring)."""
    site = tmp / "legacy-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "import legacy_claims\nlegacy_claims.install()\n",
        encoding="utf-8",
    )
    return {"PYTHONPATH": str(site)}
