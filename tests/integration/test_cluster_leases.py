"""Leases and fencing on a real PostgreSQL (bridge/cluster/_leases.py, docs/scale-out.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bridge.cluster import Fence, LeaseLost, Leases, PartitionStore, cluster_engine
from bridge.store import BatchWrite, Store
from bridge.testing import PostgresCluster
from tests.integration.conftest import fresh_pg_database

pytestmark = pytest.mark.postgres

LEASE = 2.0


@pytest.fixture
async def url(postgres: PostgresCluster) -> AsyncIterator[str]:
    async with fresh_pg_database(postgres) as db_url:
        store = await Store.open(db_url)  # the schema, 0008 and 0009 included
        await store.register_characteristics({1: "a"}, datetime.now(UTC))
        await store.close()
        yield db_url


def _state(n: int) -> BatchWrite:
    return BatchWrite(states={1: {"n": n}})


async def _write(store: PartitionStore, n: int) -> None:
    async with store.unit_of_work() as uow:
        await uow.write_batch(_state(n), datetime.now(UTC))
        await uow.commit()


async def test_a_takeover_fences_the_old_owner_and_tokens_only_grow(url: str) -> None:
    engine = cluster_engine(url, LEASE)
    try:
        a = Leases(engine, "a", 2, LEASE)
        b = Leases(engine, "b", 2, LEASE)
        await a.prepare()
        got_a = await a.acquire(2, ())
        assert sorted(got_a) == [0, 1]
        assert await b.acquire(2, ()) == {}  # held and not expired
        old = PartitionStore(engine, url, Fence(1, "a", got_a[1], frozenset({1})))
        await _write(old, 1)  # the owner writes
        await asyncio.sleep(LEASE + 0.2)  # a pauses past its lease
        got_b = await b.acquire(1, ())
        assert got_b == {0: got_a[0] + 1}
        got_b |= await b.acquire(1, set(got_b))
        assert got_b[1] == got_a[1] + 1
        with pytest.raises(LeaseLost):  # a wakes: it commits nothing
            await _write(old, 2)
        assert await a.renew(got_a) == set()
        new = PartitionStore(engine, url, Fence(1, "b", got_b[1], frozenset({1})))
        await _write(new, 3)
        async with engine.connect() as conn:
            state = await conn.scalar(text("SELECT engine_state FROM characteristics WHERE id=1"))
        assert state == {"n": 3}
        live, owners = await b.view()
        assert owners == {}  # taken, but no pipeline has started: not shown yet
        assert live == []  # nobody said a heartbeat
        assert await a.mark_serving(got_a) == set()  # not a's any more
        assert await b.mark_serving({0: got_b[0], 1: got_a[1]}) == {0}  # 1: an old token
        assert (await b.view())[1] == {0: "b"}
        assert await b.mark_serving(got_b) == {0, 1}
        assert (await b.view())[1] == {0: "b", 1: "b"}
        await b.release(0, got_b[0])
        assert (await b.view())[1] == {1: "b"}
        got_b |= await b.acquire(1, {1})  # taken again: not served until marked again
        assert (await b.view())[1] == {1: "b"}
    finally:
        await engine.dispose()


async def test_a_paused_transaction_does_not_block_the_next_owner(url: str) -> None:
    """The old owner holds its lease row FOR SHARE in an open transaction and stops: the
    server ends it (idle_in_transaction_session_timeout = lease), and the takeover goes
    through; the old transaction commits nothing."""
    engine = cluster_engine(url, LEASE)
    try:
        a = Leases(engine, "a", 1, LEASE)
        b = Leases(engine, "b", 1, LEASE)
        await a.prepare()
        token = (await a.acquire(1, ()))[0]
        old = PartitionStore(engine, url, Fence(0, "a", token, frozenset({1})))
        uow = old.unit_of_work()
        await uow.__aenter__()
        await uow.write_batch(_state(7), datetime.now(UTC))
        began = asyncio.get_running_loop().time()
        got: dict[int, int] = {}
        while not got:  # lock_timeout bounds each try; the lease and the idle time run out
            with contextlib.suppress(DBAPIError):  # a lock timeout while the old one lives
                got = await b.acquire(1, ())
            await asyncio.sleep(0.2)
        assert asyncio.get_running_loop().time() - began < LEASE + 3
        with pytest.raises(DBAPIError):  # the server ended the session
            await uow.commit()
        await uow.__aexit__(None, None, None)
        async with engine.connect() as conn:
            state = await conn.scalar(text("SELECT engine_state FROM characteristics WHERE id=1"))
        assert state != {"n": 7}
    finally:
        await engine.dispose()


async def test_a_takeover_skips_a_partition_with_a_batch_under_way(url: str) -> None:
    """A batch that checked its lease before it ran out holds the row until its commit: the
    takeover leaves that partition for a later round at once (no wait for the lock, which
    on a busy node's loop cost a lock timeout a partition) and takes the others; once the
    batch has committed, the next try takes it, with a larger token."""
    engine = cluster_engine(url, LEASE)
    try:
        a = Leases(engine, "a", 2, LEASE)
        b = Leases(engine, "b", 2, LEASE)
        await a.prepare()
        got_a = await a.acquire(2, ())
        old = PartitionStore(engine, url, Fence(1, "a", got_a[1], frozenset({1})))
        await asyncio.sleep(LEASE - 0.5)
        uow = old.unit_of_work()
        await uow.__aenter__()  # checked while the lease holds: FOR KEY SHARE until commit
        await uow.write_batch(_state(5), datetime.now(UTC))
        await asyncio.sleep(0.7)  # the lease has run out; the batch is still under way
        loop = asyncio.get_running_loop()
        began = loop.time()
        got_b = await b.acquire(2, ())
        assert loop.time() - began < 1.0  # skipped, not waited for
        assert got_b == {0: got_a[0] + 1}
        await uow.commit()  # the batch under way commits: it checked in time
        await uow.__aexit__(None, None, None)
        got_b |= await b.acquire(1, set(got_b))
        assert got_b == {0: got_a[0] + 1, 1: got_a[1] + 1}
        with pytest.raises(LeaseLost):
            await _write(old, 6)
        async with engine.connect() as conn:
            state = await conn.scalar(text("SELECT engine_state FROM characteristics WHERE id=1"))
        assert state == {"n": 5}
    finally:
        await engine.dispose()


async def test_the_keeper_renews_while_the_loop_is_busy_and_lets_go_when_it_hangs(
    url: str,
) -> None:
    """The lease keeper renews from its own thread: a node loop whose turns take longer than
    the lease (blocked 1.2 s at a time, lease 2 s) keeps its lease; a loop that does not turn
    for longer than the keeper's bound lets the lease run out, so the partition fails over."""
    import concurrent.futures
    import time

    from bridge.cluster._keeper import LeaseKeeper

    engine = cluster_engine(url, LEASE)
    keeper = LeaseKeeper(
        lambda: cluster_engine(url, LEASE, pool_size=1), "a", LEASE, 0.3, loop_stall_s=2.5
    )
    outside = concurrent.futures.ThreadPoolExecutor(1)

    def expired() -> bool:  # asked from a thread of its own while this loop is blocked
        async def ask() -> bool:
            check = cluster_engine(url, LEASE, pool_size=1)
            try:
                async with check.connect() as conn:
                    return bool(
                        await conn.scalar(
                            text(
                                "SELECT expires_at <= clock_timestamp() FROM cluster_leases"
                                " WHERE partition_id = 0"
                            )
                        )
                    )
            finally:
                await check.dispose()

        return outside.submit(asyncio.run, ask()).result()

    try:
        a = Leases(engine, "a", 1, LEASE)
        await a.prepare()
        token = (await a.acquire(1, ()))[0]
        await keeper.start()
        keeper.hold(0, token)
        for _ in range(4):  # 4.8 s of a loop that turns every 1.2 s: more than two leases
            time.sleep(1.2)  # noqa: ASYNC251  # a busy loop is the point
            await asyncio.sleep(0)
        assert not expired()
        assert keeper.take_lost() == set()
        time.sleep(2.5 + LEASE + 1.0)  # noqa: ASYNC251  # hung past the bound and a lease
        assert expired()
    finally:
        await keeper.stop()
        outside.shutdown()
        await engine.dispose()
