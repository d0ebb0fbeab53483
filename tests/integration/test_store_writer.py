"""The batch writer (bridge/store/_writer.py) against real SQLite and PostgreSQL: the rows it
writes are the rows SQLAlchemy's path writes, a batch is all or nothing, a poison row is not
an outage, and an outage is one (docs/reliability.md)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.pipeline import _database_unavailable
from bridge.store import BatchWrite, Store, UnitOfWork
from bridge.store._writer import PostgresWriter, SqliteWriter
from bridge.testing import PostgresCluster, find_pg_bin
from tests.conftest import _missing
from tests.integration.conftest import fresh_pg_database

T = datetime(2026, 12, 7, 6, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with contextlib.AsyncExitStack() as stack:
        url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
        if request.param == "postgres":
            cluster = request.getfixturevalue("postgres")
            url = await stack.enter_async_context(fresh_pg_database(cluster))
        opened = await Store.open(url)
        stack.push_async_callback(opened.close)
        await opened.register_characteristics({1: "one", 2: "two"}, T)
        yield opened


async def batch_of(store: Store, cid: int, *, n: int = 3, operator: str = "kim") -> BatchWrite:
    """Rows as the pipeline builds them: n readings and samples, a violation, limits, state."""
    first = await store.allocate("sample", n)
    vid = await store.allocate("violation", 1)
    batch = BatchWrite()
    for k in range(n):
        ts = T + timedelta(seconds=k)
        batch.readings.append(
            {
                "characteristic_id": cid,
                "value": 10.0 + k / 100,
                "ts": ts,
                "received_at": ts + timedelta(milliseconds=3),
                "batch": None if k else "lot 7",
                "operator": operator,
                "source": "plc-7",
            }
        )
        batch.samples.append(
            {
                "id": first + k,
                "characteristic_id": cid,
                "seq": k + 1,
                "ts": ts,
                "value": 10.0 + k / 100,
                "values": repr(10.0 + k / 100),
                "range": None,
                "zone": "A" if k else None,
                "in_control": k != 2,
                "failed_rules": "1" if k == 2 else "",
                "range_failed_rules": "",
                "excluded": False,
                "chart": "ewma" if k == 1 else None,
                "statistic": 10.5 if k == 1 else None,
                "ucl": 11.0 if k == 1 else None,
                "lcl": 9.0 if k == 1 else None,
                "cusum_upper": None,
                "cusum_lower": None,
                "size": None,
            }
        )
    batch.violations.append(
        {
            "id": vid,
            "sample_id": first + n - 1,
            "characteristic_id": cid,
            "rule_id": 1,
            "rule_name": "Beyond 3 sigma",
            "severity": "critical",
            "chart": "x",
            "ts": T,
            "acknowledged": False,
            "ack_user": None,
            "ack_reason": None,
            "ack_at": None,
        }
    )
    batch.limits.append(
        {"characteristic_id": cid, "ts": T, "payload": {"center_line": 10.0, "ucl": 11.0}}
    )
    batch.states[cid] = {"seq": n, "values": [10.0, 10.01], "note": "é"}
    return batch


async def write(store: Store, batch: BatchWrite, *, pool: bool = False) -> None:
    uow = UnitOfWork(store.engine) if pool else store.unit_of_work()
    async with uow:
        await uow.write_batch(batch, T)
        await uow.commit()


def without_ids(rows: Any, *drop: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in row._mapping.items() if k not in ("id", "characteristic_id", *drop)}
        for row in rows
    ]


async def test_the_writer_writes_what_sqlalchemys_path_writes(store: Store) -> None:
    kind = SqliteWriter if store.engine.dialect.name == "sqlite" else PostgresWriter
    assert isinstance(store.writer, kind)
    await write(store, await batch_of(store, 1))  # the writer, one hop
    await write(store, await batch_of(store, 2), pool=True)  # SQLAlchemy's pool, as before
    for table in ("readings", "control_limits"):
        one, two = await store.rows(table, 1), await store.rows(table, 2)
        assert len(one) == (3 if table == "readings" else 1)
        assert without_ids(one) == without_ids(two)
    samples_one, samples_two = await store.rows("samples", 1), await store.rows("samples", 2)
    assert without_ids(samples_one) == without_ids(samples_two)
    violations_one = await store.rows("violations", 1)
    assert without_ids(violations_one, "sample_id") == without_ids(
        await store.rows("violations", 2), "sample_id"
    )
    assert violations_one[0].sample_id == samples_one[-1].id
    # what the bridge reads back at start-up is the same for both
    one_back, two_back = await store.recent_samples(1, 10), await store.recent_samples(2, 10)
    assert [{**s, "sample_id": 0, "characteristic_id": 0} for s in one_back] == [
        {**s, "sample_id": 0, "characteristic_id": 0} for s in two_back
    ]
    assert one_back[1]["timestamp"] == "2026-12-07T06:00:01.123Z"  # as iso_z spells it
    states = await store.engine_states()
    assert states[1] == states[2] == {"seq": 3, "values": [10.0, 10.01], "note": "é"}
    assert await store.latest_limits(1) == {"center_line": 10.0, "ucl": 11.0}


async def test_a_unit_of_work_left_without_commit_writes_nothing(store: Store) -> None:
    batch = await batch_of(store, 1)
    async with store.unit_of_work() as uow:
        await uow.write_batch(batch, T)
    assert await store.count("readings") == 0
    assert await store.count("samples") == 0


async def test_a_batch_and_another_statement_share_one_transaction(store: Store) -> None:
    """A unit of work that writes a batch and then something else (a dead letter) opens a
    connection of the pool and takes the staged batch with it: both commit, or neither."""
    from bridge.store import DeadLetter

    async with store.unit_of_work() as uow:
        await uow.write_batch(await batch_of(store, 1), T)
        await uow.add_dead_letters([DeadLetter("t", b"x", "why")], T)
    assert await store.count("readings") == 0
    assert await store.dead_letters() == []
    async with store.unit_of_work() as uow:
        await uow.write_batch(await batch_of(store, 1), T)
        await uow.add_dead_letters([DeadLetter("t", b"x", "why")], T)
        await uow.commit()
    assert await store.count("readings") == 3
    assert len(await store.dead_letters()) == 1


async def test_a_poison_row_fails_its_batch_whole_and_is_not_an_outage(store: Store) -> None:
    bad = await batch_of(store, 1, operator="a\ud800b")  # a lone surrogate: no database takes it
    with pytest.raises(Exception) as failure:  # whatever the driver raises
        await write(store, bad)
    assert not _database_unavailable(failure.value)
    assert "surrogate" in str(failure.value)
    assert await store.count("readings") == 0
    assert await store.count("samples") == 0
    await write(store, await batch_of(store, 1))  # the writer goes on
    assert await store.count("samples", 1) == 3


def test_memory_and_url_options_keep_sqlalchemys_path() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from bridge.store._store import _writer_for

    for url in (
        "sqlite+aiosqlite://",
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite:///x?uri=true&mode=ro",
    ):
        assert _writer_for(create_async_engine(url)) is None


async def test_sqlite_locked_by_another_writer_is_an_outage_then_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bridge.store._writer.SQLITE_BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "locked.db"
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    try:
        await store.register_characteristics({1: "one"}, T)
        batch = await batch_of(store, 1)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Exception) as failure:
            await write(store, batch)
        assert _database_unavailable(failure.value)
        assert "locked" in str(failure.value)
        other.execute("ROLLBACK")
        other.close()
        await write(store, batch)  # retried as the pipeline retries it: all of it, once
        assert await store.count("samples", 1) == 3
        assert await store.count("readings", 1) == 3
    finally:
        await store.close()


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    if find_pg_bin() is None:
        _missing("PostgreSQL (initdb, pg_ctl)")  # a failure under CI=true
    with PostgresCluster() as cluster:
        yield cluster


@pytest.mark.postgres
async def test_postgres_stopped_is_an_outage_then_the_writer_connects_again(
    own_postgres: PostgresCluster,
) -> None:
    store = await Store.open(own_postgres.async_url)
    try:
        await store.register_characteristics({1: "one"}, T)
        await write(store, await batch_of(store, 1))
        batch = await batch_of(store, 1)
        own_postgres.stop()
        with pytest.raises(Exception) as failure:
            await write(store, batch)
        assert _database_unavailable(failure.value)
        own_postgres.start()
        await write(store, batch)
        assert await store.count("samples", 1) == 6
    finally:
        await store.close()
