"""A cluster node whose event loop is busy (docs/scale-out.md, "Leases with a fencing token";
docs/performance.md, "Workers: scaling with cores").

A node under full load runs one partition's batch after another's on its one event loop,
and every database round trip of a coroutine waits a whole turn of it. Here a task on the
node's loop keeps each turn 0.3 s long (half of it holding the GIL), as a saturated node's
batches do. The node's leases must hold all the same (they are renewed from a thread of
their own): no lease lapses (every token stays 1), every reading the broker acknowledged is
stored once and in order; and a clean stop under that load hands every partition over (each
lease released by its owner, none left to run out), so a second node resumes at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.cluster import ClusterNode
from bridge.config import Settings
from bridge.testing import PostgresCluster
from tests.integration.conftest import char
from tests.integration.reliability import (
    Gauge,
    pg_database,
    pg_samples,
    report,
    stack,
    tally,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.reliability, pytest.mark.slow]

CHARS = 4
LEASE = 3.0
TURN_S = 0.3  # each turn of the busy node's loop: 10 turns are a lease
RATE = 20.0  # readings a second per characteristic
READINGS = 200  # per characteristic: 10 s of stream


@pytest.fixture
def database(postgres: PostgresCluster) -> Iterator[tuple[str, str]]:
    with pg_database(postgres.port) as urls:
        yield urls


def _settings(broker: MosquittoProcess, prefix: str, db_url: str, node: str) -> Settings:
    return Settings(
        broker={"host": "127.0.0.1", "port": broker.port, "client_id": f"l-{prefix[5:15]}"},
        database={"url": db_url},
        bridge={"topic_prefix": prefix, "metrics_interval": 5.0, "batch_max": 50},
        cluster={"enabled": True, "node": node, "partitions": CHARS, "lease_seconds": LEASE},
        characteristic=[char(cid) for cid in range(1, CHARS + 1)],
    )


class _NodeThread:
    """A :class:`ClusterNode` on an event loop of its own thread; :meth:`make_busy` adds a
    task that keeps every turn of that loop ``TURN_S`` long."""

    def __init__(self, settings: Settings) -> None:
        self.node = ClusterNode(settings)
        self.started = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._hog: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, name=settings.cluster.node, daemon=True)

    def start(self) -> _NodeThread:
        self._thread.start()
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # the test reads it
            self.error = exc
            self.started.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = stop = asyncio.Event()
        try:
            await self.node.run(stop, self.started.set)
        finally:
            if self._hog is not None:
                self._hog.cancel()

    def serving(self) -> bool:
        """Every partition held and its bridge started (subscribed)."""
        held = list(self.node.held.values())
        return len(held) == CHARS and all(p.started.is_set() for p in held)

    def make_busy(self) -> None:
        def begin() -> None:
            assert self._stop is not None
            self._hog = asyncio.create_task(_hog(self._stop))

        assert self._loop is not None
        self._loop.call_soon_threadsafe(begin)

    def stop(self, timeout: float = 60.0) -> float:
        """Set the node's stop and wait for it; how long it took."""
        began = time.monotonic()
        if not self._thread.is_alive():
            return 0.0
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the node did not stop"
        assert self.error is None, repr(self.error)
        return time.monotonic() - began


async def _hog(stop: asyncio.Event) -> None:
    """Every turn of the loop: half of ``TURN_S`` holding the GIL, half blocked."""
    while not stop.is_set():
        until = time.monotonic() + TURN_S / 2
        while time.monotonic() < until:
            pass
        time.sleep(TURN_S / 2)  # noqa: ASYNC251  # blocking is the point
        await asyncio.sleep(0)


def _leases(dsn: str) -> list[tuple[int, Any, int]]:
    import asyncpg

    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(
                await conn.fetch(
                    "SELECT partition_id, owner, token FROM cluster_leases ORDER BY partition_id"
                )
            )
        finally:
            await conn.close()

    return [(int(r[0]), r[1], int(r[2])) for r in asyncio.run(fetch())]


def test_a_busy_node_keeps_its_leases_and_hands_over_cleanly(
    fresh_mosquitto: MosquittoProcess, topic_prefix: str, database: tuple[str, str]
) -> None:
    db_url, dsn = database
    prefix = topic_prefix
    with stack() as s:
        busy = _NodeThread(_settings(fresh_mosquitto, prefix, db_url, "busy"))
        s.callback(busy.stop)
        busy.start()
        assert busy.started.wait(60), "the node did not start"
        assert busy.error is None, repr(busy.error)
        wait_until(busy.serving, 60, "every partition started")
        busy.make_busy()
        gauges = [
            s.enter_context(
                Gauge(fresh_mosquitto.port, f"{prefix}/char/{cid}/reading", READINGS, RATE)
            ).start()
            for cid in range(1, CHARS + 1)
        ]
        for gauge in gauges:
            gauge.wait_done(60)
        total = sum(len(g.acked) for g in gauges)
        wait_until(lambda: len(pg_samples(dsn)) >= total, 60, "every reading stored")
        # no lease ran out while the node was busy: nobody (itself included) took one again
        assert [t for _, _, t in _leases(dsn)] == [1] * CHARS

        # more readings, and a clean stop while they come in
        more = [
            s.enter_context(
                Gauge(
                    fresh_mosquitto.port,
                    f"{prefix}/char/{cid}/reading",
                    READINGS,
                    RATE,
                    start_ms=gauges[0].start_ms + 10 * READINGS,
                )
            ).start()
            for cid in range(1, CHARS + 1)
        ]
        wait_until(lambda: len(pg_samples(dsn)) >= total + CHARS * 20, 30, "the second stream")
        took = busy.stop()
        report(f"cluster, busy node: clean stop under load took {took:.1f} s")
        # each partition released by its owner, under the token it took: none ran out
        assert _leases(dsn) == [(k, None, 1) for k in range(CHARS)]

        calm = _NodeThread(_settings(fresh_mosquitto, prefix, db_url, "calm"))
        s.callback(calm.stop)
        calm.start()
        assert calm.started.wait(60), "the second node did not start"
        for gauge in more:
            gauge.wait_done(60)
        acked = [{**g.acked, **m.acked} for g, m in zip(gauges, more, strict=True)]
        total = sum(len(a) for a in acked)
        wait_until(lambda: len(pg_samples(dsn)) >= total, 60, "every reading stored")
        time.sleep(0.5)  # anything stored twice would show now
        samples = pg_samples(dsn)
        assert len({x.id for x in samples}) == len(samples)
        for cid, sent in enumerate(acked, start=1):
            mine = [x for x in samples if x.characteristic_id == cid]
            t = tally(sent, mine)
            report(t.line(f"cluster, busy node, characteristic {cid}"))
            assert (t.lost, t.duplicated, t.unexpected) == ([], [], []), t.line("busy node")
            assert [x.ts_ms for x in mine] == sorted(x.ts_ms for x in mine), "out of order"
        assert [t for _, _, t in _leases(dsn)] == [2] * CHARS  # the calm node's, once each
