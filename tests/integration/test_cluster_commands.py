"""Commands and status in a cluster (docs/scale-out.md): two nodes in this process, four
characteristics in four partitions. Each acknowledgement is carried out and answered once,
by the partition of its violation's characteristic; one of a violation that does not exist
is refused once; the node and cluster messages tell who holds what; the whole bridge's status
stays online while any node is. Bulk acknowledgements, malformed ones and the query command
are answered once too: one spanning partitions is refused, queries are partition 0's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.cluster import ClusterNode
from bridge.config import Settings
from bridge.testing import PostgresCluster
from tests.integration.conftest import Probe, char, fresh_pg_database

pytestmark = pytest.mark.postgres

FIXED = {"center_line": 10.0, "ucl": 11.0, "lcl": 9.0, "rules": [1]}
TIMEOUT = 20.0


@pytest.fixture
async def db_url(postgres: PostgresCluster) -> AsyncIterator[str]:
    async with fresh_pg_database(postgres) as url:
        yield url


def _settings(broker: MosquittoProcess, prefix: str, db_url: str, node: str) -> Settings:
    return Settings(
        broker={"host": "127.0.0.1", "port": broker.port, "client_id": f"c-{prefix[5:15]}"},
        database={"url": db_url},
        bridge={"topic_prefix": prefix, "metrics_interval": 5.0},
        cluster={"enabled": True, "node": node, "partitions": 4, "lease_seconds": 3},
        characteristic=[char(cid, **FIXED) for cid in (1, 2, 3, 4)],
    )


@contextlib.asynccontextmanager
async def _node(settings: Settings) -> AsyncIterator[tuple[asyncio.Event, asyncio.Task[None]]]:
    stop = asyncio.Event()
    task = asyncio.create_task(ClusterNode(settings).run(stop))
    try:
        yield stop, task
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)


def _view(probe: Probe, prefix: str) -> dict[str, list[int]]:
    found = probe.matching(f"{prefix}/bridge/cluster")
    return {n["node"]: n["partitions"] for n in found[-1].json()["nodes"]} if found else {}


async def _ack(probe: Probe, prefix: str, body: dict[str, Any], corr: bytes) -> str:
    reply_topic = f"{prefix}/reply/kim/{corr.decode()}"
    await probe.request(f"{prefix}/cmd/ack/kim", body, reply_topic, corr)
    return reply_topic


async def test_acks_are_carried_out_once_by_the_right_partition_and_status_tells_the_truth(
    mosquitto: MosquittoProcess, probe: Probe, topic_prefix: str, db_url: str
) -> None:
    prefix = topic_prefix
    async with (
        _node(_settings(mosquitto, prefix, db_url, "a")),
        _node(_settings(mosquitto, prefix, db_url, "b")) as (stop_b, task_b),
    ):
        await probe.wait_until(
            lambda: sorted(len(p) for p in _view(probe, prefix).values()) == [2, 2], TIMEOUT
        )
        for cid in (1, 2, 3, 4):
            await probe.publish(f"{prefix}/char/{cid}/reading", "20")
        ids = {}
        for cid in (1, 2, 3, 4):
            [v] = await probe.wait_for(f"{prefix}/char/{cid}/violation", within=TIMEOUT)
            ids[cid] = v["payload"]["violation_id"]
        assert len(set(ids.values())) == 4  # ids never collide across partitions
        replies = [
            await _ack(probe, prefix, {"violation_id": vid, "reason": "Tool Change"}, b"%d" % c)
            for c, vid in ids.items()
        ]
        missing = await _ack(probe, prefix, {"violation_id": 999999, "reason": "Other"}, b"9")
        for topic in replies:
            assert await probe.wait_for(topic, within=TIMEOUT) == [{"ok": True}]
        [refusal] = await probe.wait_for(missing, within=TIMEOUT)
        assert refusal == {
            "ok": False,
            "error": "violation 999999 does not exist; nothing acknowledged",
        }
        for cid in (1, 2, 3, 4):
            await probe.wait_for(
                f"{prefix}/char/{cid}/alarms",
                lambda m: m["payload"]["violations"] == [],
                within=TIMEOUT,
            )
        await asyncio.sleep(1.0)  # a second answer from another partition would be here
        for topic in [*replies, missing]:
            assert len(probe.matching(topic)) == 1, topic
        for cid in (1, 2, 3, 4):
            assert len(probe.matching(f"{prefix}/char/{cid}/ack")) == 1
        [node_b] = await probe.wait_for(f"{prefix}/bridge/nodes/b")
        assert node_b["online"] is True
        stop_b.set()
        await asyncio.wait_for(task_b, TIMEOUT)
        # b's partitions are shown as a's once a has resumed them (subscribed)
        await probe.wait_until(lambda: _view(probe, prefix) == {"a": [0, 1, 2, 3]}, TIMEOUT)
        last_b = probe.matching(f"{prefix}/bridge/nodes/b")[-1].json()
        assert last_b["online"] is False
        await probe.wait_until(
            lambda: probe.matching(f"{prefix}/bridge/status")[-1].json()["online"], TIMEOUT
        )
        # with b gone, a carries on b's partitions from where b left them: the moving
        # range of the next reading is taken from b's last one (20)
        await probe.publish(f"{prefix}/char/2/reading", "10")
        await probe.publish(f"{prefix}/char/2/reading", "21")

        def live() -> list[Any]:  # by id: a takeover republishes the last sample
            found = [m.json()["payload"] for m in probe.matching(f"{prefix}/char/2/sample")]
            return sorted({x["sample_id"]: x for x in found}.values(), key=lambda x: x["sample_id"])

        await probe.wait_until(lambda: len(live()) >= 3, TIMEOUT)
        assert [(x["value"], x["range"]) for x in live()] == [
            (20.0, None),
            (10.0, 10.0),
            (21.0, 11.0),
        ]
        await probe.wait_for(f"{prefix}/char/2/violation", count=2, within=TIMEOUT)
    await probe.wait_until(
        lambda: probe.matching(f"{prefix}/bridge/status")[-1].json()["online"] is False, TIMEOUT
    )
    assert _view(probe, prefix) == {}


async def _answers(probe: Probe, topic: str) -> list[Any]:
    """Every answer on ``topic``, once a second one would have come (see above)."""
    await probe.wait_for(topic, within=TIMEOUT)
    await asyncio.sleep(1.0)
    return [m.json() for m in probe.matching(topic)]


async def test_bulk_acks_and_queries_are_answered_once_and_a_bulk_ack_spans_no_partitions(
    mosquitto: MosquittoProcess, probe: Probe, topic_prefix: str, db_url: str
) -> None:
    prefix = topic_prefix
    async with _node(_settings(mosquitto, prefix, db_url, "a")):
        await probe.wait_until(lambda: _view(probe, prefix) == {"a": [0, 1, 2, 3]}, TIMEOUT)
        for cid in (1, 2, 3, 4):  # published once its partition has subscribed
            await probe.wait_for(f"{prefix}/char/{cid}/meta", within=TIMEOUT)
        for cid in (1, 2, 3, 4):
            await probe.publish(f"{prefix}/char/{cid}/reading", "20")
        ids = {}
        for cid in (1, 2, 3, 4):
            [v] = await probe.wait_for(f"{prefix}/char/{cid}/violation", within=TIMEOUT)
            ids[cid] = v["payload"]["violation_id"]
        both = {"violation_ids": [ids[1], ids[2]], "cause": "Tool Change"}
        spanning = await _ack(probe, prefix, both, b"s")
        assert await _answers(probe, spanning) == [
            {
                "ok": False,
                "error": "the violations named belong to characteristics of different cluster"
                " partitions (1, 2): acknowledge each characteristic's in a command of its"
                " own; nothing acknowledged",
            }
        ]
        all_open = {"characteristic_id": 3, "all_open": True, "cause": "Tool Change"}
        assert await _answers(probe, await _ack(probe, prefix, all_open, b"o")) == [{"ok": True}]
        await probe.wait_for(
            f"{prefix}/char/3/alarms", lambda m: m["payload"]["violations"] == [], within=TIMEOUT
        )
        unknown = {"characteristic_id": 99, "all_open": True, "cause": "Tool Change"}
        assert await _answers(probe, await _ack(probe, prefix, unknown, b"u")) == [
            {"ok": False, "error": "unknown characteristic 99"}
        ]
        # refused before any partition looks at the violations: answered by partition 0 only
        for body in ({"cause": "Tool Change"}, {"violation_id": ids[1], "cause": "No Such"}):
            [bad] = await _answers(probe, await _ack(probe, prefix, body, b"b%d" % len(body)))
            assert bad["ok"] is False
            assert bad["error"]
        for cid in (2, 4):  # partition 2's and partition 0's own: both answered by partition 0
            reply = f"{prefix}/reply/kim/query{cid}"
            await probe.request(f"{prefix}/cmd/query/kim", {"characteristic_id": cid}, reply, b"q")
            [answer] = await _answers(probe, reply)
            assert answer["type"] == "query_result"
            assert answer["payload"]["characteristic_id"] == cid
            assert [s["value"] for s in answer["payload"]["samples"]] == [20.0]
        # the refused bulk acknowledgement left both alarms open: one at a time, they go
        one = await _ack(probe, prefix, {"violation_ids": [ids[1]], "cause": "Other"}, b"1")
        assert await _answers(probe, one) == [{"ok": True}]
        for cid in (1, 3):
            assert len(probe.matching(f"{prefix}/char/{cid}/ack")) == 1
        assert probe.matching(f"{prefix}/char/2/ack") == []


async def test_metrics_are_each_nodes_partitions_summed_on_its_own_topic(
    mosquitto: MosquittoProcess, probe: Probe, topic_prefix: str, db_url: str
) -> None:
    """Each partition's bridge used to publish its own counters on ``bridge/metrics``, so the
    retained message was whichever partition spoke last. Now each node publishes its
    partitions' sum on ``bridge/nodes/<node>/metrics``, ``bridge/metrics`` is the live
    nodes' summed, and a node that stops cleanly clears its own."""
    prefix = topic_prefix

    def fast(node: str) -> Settings:
        s = _settings(mosquitto, prefix, db_url, node)
        bridge = s.bridge.model_copy(update={"metrics_interval": 0.5})
        return s.model_copy(update={"bridge": bridge})

    def latest(node: str) -> dict[str, Any]:
        found = probe.matching(f"{prefix}/bridge/nodes/{node}/metrics")
        return found[-1].json() if found and found[-1].payload else {}

    def total(key: str) -> int:
        return sum(int(latest(n).get(key, 0)) for n in ("a", "b"))

    async with (
        _node(fast("a")),
        _node(fast("b")) as (stop_b, task_b),
    ):
        await probe.wait_until(
            lambda: sorted(len(p) for p in _view(probe, prefix).values()) == [2, 2], TIMEOUT
        )
        for cid in (1, 2, 3, 4):
            await probe.wait_for(f"{prefix}/char/{cid}/meta", within=TIMEOUT)
        for cid in (1, 2, 3, 4):  # characteristic k gets k readings: 10 in all
            for _ in range(cid):
                await probe.publish(f"{prefix}/char/{cid}/reading", "10")
        await probe.wait_until(
            lambda: total("readings_received") == 10 and total("samples") == 10, TIMEOUT
        )
        view = _view(probe, prefix)
        for node in ("a", "b"):
            mine = latest(node)
            assert mine["node"] == node
            assert mine["partitions"] == view[node]
            # its own characteristics' readings only (characteristic k is in partition k % 4)
            assert mine["readings_received"] == sum(c for c in (1, 2, 3, 4) if c % 4 in view[node])
            assert mine["connected"] is True
            assert mine["buffer_max"] > 0
        # bridge/metrics: the whole cluster's, both nodes' summed (published by "a")
        whole = await probe.wait_for(
            f"{prefix}/bridge/metrics",
            # a node's figures may be taken between a reading's arrival and its sample
            lambda m: (
                m.get("nodes") == ["a", "b"]
                and m.get("readings_received") == 10
                and m.get("samples") == 10
            ),
            within=TIMEOUT,
        )
        assert whole[-1]["cluster"] is True
        assert whole[-1]["partitions"] == [0, 1, 2, 3]
        assert whole[-1]["buffer_max"] == latest("a")["buffer_max"] + latest("b")["buffer_max"]
        assert whole[-1]["connected"] is True
        stop_b.set()
        await asyncio.wait_for(task_b, TIMEOUT)
        await probe.wait_until(
            lambda: probe.matching(f"{prefix}/bridge/nodes/b/metrics")[-1].payload == b"", TIMEOUT
        )
        # a took b's partitions over: its counters go on growing from its own
        await probe.wait_until(lambda: latest("a").get("partitions") == [0, 1, 2, 3], TIMEOUT)
        before = latest("a")["readings_received"]
        await probe.publish(f"{prefix}/char/1/reading", "10")
        await probe.wait_until(lambda: latest("a")["readings_received"] == before + 1, TIMEOUT)
