"""The claim sizing before issue 14 item 3, kept only as a benchmark baseline; and `serve` with it.

    python bench/legacy_claims.py serve --config FILE

Before, a claim was the requests the provider's rate sends in half a lease (at least two rounds of its workers)
times the jobs one request carried in the last claim, at most `claim_limit` (5,000): with any generous rate, 5,000
jobs per claim. `LegacyClaimSizer` is that formula, verbatim, behind today's `ClaimSizer` interface; run as a
script it puts it in place of `ClaimSizer` and starts mail2sms's own command line, so a benchmark can measure the
same code with the old sizing and the new one in the same run (with `server.workers = N`, the workers too).

It is never imported by mail2sms itself, and changes nothing but how many jobs a claim asks for.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mail2sms import workers  # noqa: E402
from mail2sms.dispatch import dispatcher  # noqa: E402
from mail2sms.dispatch.claims import ClaimSizer  # noqa: E402
from mail2sms.model import Batch  # noqa: E402


class LegacyClaimSizer(ClaimSizer):
    """The old `Dispatcher._budget`: rate × half a lease (≥ 2 rounds of workers) × the last claim's fill."""

    _fill: dict[str, float]

    def budget(self, provider: str) -> int:
        fill = getattr(self, "_fill", {}).get(provider, 1.0)
        limits = self.providers[provider].limits
        rate = limits.rate / self.rate_share if limits.rate else math.inf
        requests = max(min(rate * self.lease / 2, float(self.claim_limit)), 2.0 * self.concurrency[provider])
        per_request = min(fill, float(max(1, limits.max_recipients)))
        return max(1, min(self.claim_limit, int(requests * per_request)))

    def cap(self, provider: str) -> int:
        return self.claim_limit

    def observe(self, batches: Iterable[Batch]) -> None:
        sizes: dict[str, list[int]] = {}
        for batch in batches:
            sizes.setdefault(batch.provider, []).append(len(batch.jobs))
        if not hasattr(self, "_fill"):
            self._fill = {}
        for name, counts in sizes.items():
            if name in self.providers:
                self._fill[name] = sum(counts) / len(counts)


def _legacy_workers(command: Callable[..., list[str]]) -> Callable[..., list[str]]:
    """`server.workers = N` starts each worker as `python -m mail2sms`: start it through this script instead."""

    def worker_command(*args: Any, **kwargs: Any) -> list[str]:
        argv = command(*args, **kwargs)
        assert argv[1:3] == ["-m", "mail2sms"], argv
        return [argv[0], str(Path(__file__).resolve()), *argv[3:]]

    return worker_command


def main() -> None:
    dispatcher.ClaimSizer = LegacyClaimSizer  # type: ignore[attr-defined]  # the name the dispatcher builds from
    workers.worker_command = _legacy_workers(workers.worker_command)
    from mail2sms.cli import main as cli_main

    raise SystemExit(cli_main())


if __name__ == "__main__":
    main()
