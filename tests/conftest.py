"""Fixtures shared by several test modules: a throwaway PostgreSQL cluster for the PostgreSQL spool's tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings

from mail2sms.providers.http import build_client
from mail2sms.spool import open_spool
from mail2sms.spool.base import Spool
from tests.fakes.receiver import ReceiptReceiver
from tests.pgcluster import Cluster, why_unavailable

# CI machines are shared and busy: property tests keep their example counts but never fail on wall-clock deadlines
# or "too slow" health checks there (a slow example is not a wrong one). `HYPOTHESIS_PROFILE=dev` restores the default.
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=True
)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


# Tests here start real servers, processes, PostgreSQL or floods: each takes from a fraction of a second to minutes,
# and together they are most of the suite's time. They count as `slow`, so `python3 -m pytest -m "not slow"` is the
# quick inner loop (the pure parts, the quality gate); `python3 -m pytest` still runs everything.
SERVER_DIRS = ("integration", "security")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration and tests/security `slow` (others carry the mark themselves)."""
    for item in items:
        relative = item.path.resolve().relative_to(TESTS) if item.path.resolve().is_relative_to(TESTS) else None
        if relative is not None and relative.parts[0] in SERVER_DIRS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One PostgreSQL server for the whole run; tests that need it are skipped (saying why) if none can be had."""
    why = why_unavailable()
    if why is not None:
        print(f"\nPostgreSQL tests skipped: {why}")
        pytest.skip(f"no PostgreSQL: {why}")
    cluster = Cluster()
    try:
        cluster.start()
    except Exception as exc:
        cluster.stop()
        print(f"\nPostgreSQL tests skipped: {exc}")
        pytest.skip(f"PostgreSQL would not start: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """The URL of a fresh, empty database on the session's cluster."""
    return pg_cluster.new_database()


@pytest.fixture(params=["sqlite", "postgres"])
def spool_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty spool of each backend: a test that takes it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/spool.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def spool(spool_url: str) -> AsyncIterator[Spool]:
    """An open spool of each backend; closed after the test (a file may override it, e.g. to track receipts)."""
    s = open_spool(spool_url)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """mail2sms's own HTTP client (as adapters get it), for adapters under test and for pushes; the timeout is only
    a bound against a hang."""
    async with build_client(timeout=10.0) as http:
        yield http


@pytest.fixture
def receiver() -> Iterator[ReceiptReceiver]:
    """A loopback HTTP server that records what a fake provider pushes (delivery receipts, replies)."""
    with ReceiptReceiver() as fake:
        yield fake
    assert fake.errors == []
