"""Fixtures shared by several test modules: a throwaway PostgreSQL cluster for the PostgreSQL spool's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pgcluster import Cluster, why_unavailable


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
