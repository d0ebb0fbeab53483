"""The bridge as a Sparkplug 3.0 Primary Host Application, and Sparkplug state that outlives
a restart of the bridge (bdSeq of the edge nodes it reads, and of its own edge node)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from bridge._mosquitto import MosquittoProcess
from bridge.sparkplug import BD_SEQ, DataType, EdgeNodeMessages, MessageType, Metric
from bridge.sparkplug.testing import SimulatedEdgeNode, SparkplugRecorder
from bridge.store._tables import sparkplug_nodes
from tests.integration.conftest import TIMEOUT, BridgeFactory, Probe, char, open_probe

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.sparkplug,
    pytest.mark.parametrize("bridge_factory", ["sqlite"], indirect=True),
]

EDGE = "Line3"
TEMP = Metric.of(DataType.Float, 20.0, name="Temp", alias=1)


@pytest.fixture
def group() -> str:
    return f"P{uuid.uuid4().hex[:10]}"


@pytest.fixture
def host_id() -> str:
    return f"openspc-{uuid.uuid4().hex[:8]}"


def states(probe: Probe, topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in probe.matching(topic)]


async def test_state_birth_will_and_a_stale_offline_answered(
    bridge_factory: BridgeFactory, mosquitto: MosquittoProcess, host_id: str
) -> None:
    topic = f"spBv1.0/STATE/{host_id}"
    async with open_probe(mosquitto, topic) as probe:
        app = await bridge_factory.start([char(1)], sparkplug={"host_id": host_id})
        [birth] = await probe.wait_for(topic, lambda s: s["online"] is True)
        assert set(birth) == {"online", "timestamp"}
        assert isinstance(birth["timestamp"], int)
        [message] = probe.matching(topic)
        assert message.retain is False  # live; a late subscriber gets it retained:
        async with open_probe(mosquitto, topic) as late:
            [retained] = await late.wait_for(topic)
            assert retained == birth
            assert late.messages[0].retain

        # a stale "offline" (a late Will of an earlier connection): "online" again, same time
        stale = {"online": False, "timestamp": birth["timestamp"] - 60_000}
        await probe.publish(topic, json.dumps(stale), retain=True)
        await probe.wait_for(topic, lambda s: s == birth, count=2)

        # a crash of the host's connection: the Will, with the birth's timestamp
        assert app.sparkplug_host is not None
        app.sparkplug_host.abort()
        [will] = await probe.wait_for(topic, lambda s: s["online"] is False and s != stale)
        assert will == {"online": False, "timestamp": birth["timestamp"]}
        [reborn] = await probe.wait_for(
            topic, lambda s: s["online"] is True and s["timestamp"] > birth["timestamp"]
        )

        await bridge_factory.stop(app)  # a clean stop says offline itself
        await probe.wait_for(topic, lambda s: s == {**reborn, "online": False})
    said = states(probe, topic)
    assert said[-1] == {"online": False, "timestamp": reborn["timestamp"]}
    assert app.sparkplug_host.reasserted == 1


async def test_an_ndeath_after_a_bridge_restart_is_matched_by_the_stored_bdseq(
    bridge_factory: BridgeFactory,
    probe: Probe,
    topic_prefix: str,
    mosquitto: MosquittoProcess,
    group: str,
) -> None:
    chars = [char(1, sparkplug={"group": group, "edge": EDGE, "metric": "Temp"}), char(2)]
    meta = f"{topic_prefix}/char/1/meta"
    first = await bridge_factory.start(chars)
    sim = SimulatedEdgeNode(
        "127.0.0.1", mosquitto.port, group, EDGE, bd_seq=5, answer_rebirth=False
    )
    async with sim:
        await sim.birth([TEMP])
        await sim.ndata([Metric.of(DataType.Float, 20.5, alias=1, with_datatype=False)])
        await probe.wait_for(f"{topic_prefix}/char/1/sample")  # so the birth was read

        assert first.bd_seqs is not None
        await first.bd_seqs.flush()  # the birth's bdSeq, remembered when it was decoded
        async with first.store.engine.connect() as conn:
            rows = (await conn.execute(select(sparkplug_nodes))).all()
        assert [(r.role, r.group_id, r.edge_id, r.bd_seq) for r in rows] == [
            ("inbound", group, EDGE, 5)
        ]
        await bridge_factory.stop(first)

        app = await bridge_factory.start(chars)  # no birth since: the node does not answer
        async with asyncio.timeout(TIMEOUT):
            await sim.rebirth_requests.get()

        def offline() -> list[object]:
            return [m for m in probe.matching(meta) if m.json()["payload"]["online"] is False]

        stale = EdgeNodeMessages(group, EDGE, bd_seq=4).ndeath(datetime.now(UTC))
        await probe.publish(stale.topic, stale.data, qos=0)  # an earlier session's Will
        await probe.publish(f"{topic_prefix}/char/2/reading", "1.5")  # behind it in the inbox
        await probe.wait_for(f"{topic_prefix}/char/2/sample")
        assert offline() == []  # the stale Will changed nothing
        death = EdgeNodeMessages(group, EDGE, bd_seq=5).ndeath(datetime.now(UTC))
        await probe.publish(death.topic, death.data, qos=0)  # this session's death
        await probe.wait_for(meta, lambda m: m["payload"]["online"] is False)
    assert len(offline()) == 1
    assert app.sparkplug_inbound is not None


async def test_the_bridges_edge_node_goes_on_with_its_bdseq_after_a_restart(
    bridge_factory: BridgeFactory, mosquitto: MosquittoProcess, group: str
) -> None:
    edge = {"enabled": True, "group": group, "edge": "SPC"}
    seen: list[tuple[MessageType, int]] = []
    async with SparkplugRecorder("127.0.0.1", mosquitto.port, group, "SPC") as rec:
        for _ in range(3):
            app = await bridge_factory.start([char(4)], sparkplug_edge=edge)
            async with asyncio.timeout(TIMEOUT):
                birth = await rec.next(MessageType.NBIRTH)
                seen.append((MessageType.NBIRTH, birth.values[BD_SEQ]))
                await bridge_factory.stop(app)
                death = await rec.next(MessageType.NDEATH)
                seen.append((MessageType.NDEATH, death.values[BD_SEQ]))
    assert seen == [
        (MessageType.NBIRTH, 0),
        (MessageType.NDEATH, 0),
        (MessageType.NBIRTH, 1),
        (MessageType.NDEATH, 1),
        (MessageType.NBIRTH, 2),
        (MessageType.NDEATH, 2),
    ]


async def test_state_follows_the_bridges_main_connection(
    bridge_factory: BridgeFactory, mosquitto: MosquittoProcess, host_id: str
) -> None:
    """Edge nodes take "online" to mean that the host hears them: when the bridge's main
    connection (its subscriptions) is lost, STATE says offline until it is back."""
    topic = f"spBv1.0/STATE/{host_id}"
    async with open_probe(mosquitto, topic) as probe:
        app = await bridge_factory.start([char(1)], sparkplug={"host_id": host_id})
        [birth] = await probe.wait_for(topic, lambda s: s["online"] is True)
        app.mqtt.readings._drop("cut by the test")  # the readings connection; back in 1 s
        [offline] = await probe.wait_for(topic, lambda s: s["online"] is False)
        [again] = await probe.wait_for(
            topic, lambda s: s["online"] is True and s["timestamp"] > birth["timestamp"]
        )
        assert app.mqtt.connected.is_set()
    assert offline == {"online": False, "timestamp": birth["timestamp"]}
    assert [s["online"] for s in states(probe, topic)] == [True, False, True]
    assert again["timestamp"] > birth["timestamp"]
