"""Fixtures shared by several test modules: a throwaway PostgreSQL cluster for the PostgreSQL spool's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.pgcluster import Cluster, why_unavailable

# CI machines are shared and busy: property tests keep their example counts but never fail on wall-clock deadlines
# or "too slow" health checks there (a slow example is not a wrong one). `HYPOTHESIS_PROFILE=dev` restores the default.
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=True
)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


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
