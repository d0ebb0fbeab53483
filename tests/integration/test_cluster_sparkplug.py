"""A Sparkplug B edge node's characteristics in a cluster (docs/scale-out.md): they share one
partition (its aliases and sequence numbers are the edge node's); when the node holding it
dies, the node that takes it over asks the edge node for its births and goes on, storing
every reading once and in order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.cluster import ClusterNode, partition_of
from bridge.config import Settings
from bridge.sparkplug import DataType, Metric, to_epoch_ms
from bridge.sparkplug.testing import SimulatedEdgeNode
from bridge.store import Store
from bridge.testing import PostgresCluster
from tests.integration.conftest import Probe, char, fresh_pg_database

pytestmark = [pytest.mark.postgres, pytest.mark.sparkplug]

TIMEOUT = 20.0
EDGE, DEVICE = "Line3", "Gauge7"
OD = Metric.of(DataType.Double, 10.0, name="OD", alias=11)
TEMP = Metric.of(DataType.Float, 20.0, name="Temp", alias=1)
T0 = datetime(2026, 11, 28, 6, 0, 0, tzinfo=UTC)


@pytest.fixture
async def db_url(postgres: PostgresCluster) -> AsyncIterator[str]:
    async with fresh_pg_database(postgres) as url:
        yield url


def _settings(broker: MosquittoProcess, prefix: str, url: str, group: str, node: str) -> Settings:
    return Settings(
        broker={"host": "127.0.0.1", "port": broker.port, "client_id": f"s-{prefix[5:15]}"},
        database={"url": url},
        bridge={"topic_prefix": prefix, "metrics_interval": 0.5},
        cluster={"enabled": True, "node": node, "partitions": 4, "lease_seconds": 3},
        characteristic=[
            char(6, sparkplug={"group": group, "edge": EDGE, "device": DEVICE, "metric": "OD"}),
            char(3, sparkplug={"group": group, "edge": EDGE, "metric": "Temp"}),
            char(2),
        ],
    )


@contextlib.asynccontextmanager
async def _running(node: ClusterNode) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    try:
        yield task
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)


def _crash(node: ClusterNode, task: asyncio.Task[None]) -> None:
    """As SIGKILL: connections dropped without a word, leases left to run out."""
    for part in node.held.values():
        part.abort()
    node.links.own.abort()
    node.links.shared.abort()
    task.cancel()


def _owner(probe: Probe, prefix: str, partition: int) -> str | None:
    found = probe.matching(f"{prefix}/bridge/cluster")
    if not found:
        return None
    nodes = found[-1].json()["nodes"]
    owners = [n["node"] for n in nodes if partition in n["partitions"]]
    return owners[0] if len(nodes) == 2 and owners else None


async def test_an_edge_nodes_partition_moves_whole_and_loses_and_doubles_nothing(
    mosquitto: MosquittoProcess, probe: Probe, topic_prefix: str, db_url: str
) -> None:
    prefix, group = topic_prefix, f"P{uuid.uuid4().hex[:10]}"
    nodes = {n: ClusterNode(_settings(mosquitto, prefix, db_url, group, n)) for n in "ab"}
    shared = partition_of(nodes["a"].settings)
    assert shared[6] == shared[3] == 3  # the edge node's: that of its lowest id (3)
    sent: list[float] = []
    async with (
        _running(nodes["a"]) as task_a,
        _running(nodes["b"]) as task_b,
        SimulatedEdgeNode("127.0.0.1", mosquitto.port, group, EDGE) as sim,
    ):

        def settled() -> str | None:
            """The owner of the edge node's partition once the two share evenly and its
            pipeline has subscribed and asked for births (a held it before b joined:
            Sparkplug data is QoS 0, so nothing is sent before then)."""
            owner = _owner(probe, prefix, 3)
            if owner is None or sorted(len(n.held) for n in nodes.values()) != [2, 2]:
                return None
            part = nodes[owner].held.get(3)
            return owner if part is not None and part.started.is_set() else None

        # checked on every message (the partitions' metrics come twice a second)
        await probe.wait_until(lambda: settled() is not None, TIMEOUT)
        first = settled()
        assert first is not None
        await asyncio.wait_for(sim.rebirth_requests.get(), TIMEOUT)
        await sim.birth([TEMP], {DEVICE: [OD]})

        async def send(count: int) -> None:
            for _ in range(count):
                value = round(10.0 + len(sent) * 0.001, 3)
                at = T0 + timedelta(seconds=len(sent))
                metric = Metric.of(
                    DataType.Double, value, alias=11, timestamp=to_epoch_ms(at), with_datatype=False
                )
                await sim.ddata(DEVICE, [metric])
                sent.append(value)

        await send(20)
        await probe.wait_for(f"{prefix}/char/6/sample", count=20, within=TIMEOUT)
        while not sim.rebirth_requests.empty():  # those of the first owners
            sim.rebirth_requests.get_nowait()
        tasks = {"a": task_a, "b": task_b}
        _crash(nodes[first], tasks[first])
        survivor = "b" if first == "a" else "a"
        # the survivor takes the edge node's partition and asks it for its births
        await asyncio.wait_for(sim.rebirth_requests.get(), 3 + 10)
        await send(20)
        await probe.wait_for(
            f"{prefix}/char/6/sample", lambda m: m["payload"]["value"] == sent[-1], within=TIMEOUT
        )
        assert nodes[survivor].held.keys() >= {3}
    store = await Store.open(db_url)
    try:
        rows = await store.rows("samples", 6)
    finally:
        await store.close()
    assert [float(r.value) for r in rows] == sent  # each once, in the order sent
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
