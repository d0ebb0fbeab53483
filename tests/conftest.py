"""Fixtures shared by every test: real services, started by the test session itself.

Under ``CI=true`` a missing Mosquitto or PostgreSQL fails the run; on a developer machine
the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bridge._mosquitto import MosquittoProcess, find_mosquitto
from bridge.testing import PostgresCluster, find_pg_bin, unique_topic

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _missing(what: str) -> None:
    message = f"{what} is not installed (scripts/setup installs it)"
    if IN_CI:
        pytest.fail(message + "; under CI=true this is a failure, not a skip")
    pytest.skip(message)


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoProcess]:
    """One open Mosquitto (anonymous, persistent) for the session; tests use unique topics."""
    if find_mosquitto() is None:
        _missing("mosquitto")
    with MosquittoProcess() as broker:
        yield broker


@pytest.fixture
def fresh_mosquitto() -> Iterator[MosquittoProcess]:
    """A Mosquitto of the test's own, for tests that stop or restart the broker."""
    if find_mosquitto() is None:
        _missing("mosquitto")
    with MosquittoProcess() as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throw-away PostgreSQL cluster on a free port (never 5432)."""
    if find_pg_bin() is None:
        _missing("PostgreSQL (initdb, pg_ctl)")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test uses."""
    return unique_topic("openspc")
