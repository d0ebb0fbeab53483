"""Sparkplug B through the whole bridge, against a real Mosquitto: a simulated edge node in,
SPC results out (as JSON, and as the bridge's own Sparkplug B edge node)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.sparkplug import BD_SEQ, DataType, MessageType, Metric, to_epoch_ms
from bridge.sparkplug.testing import SimulatedEdgeNode, SparkplugRecorder
from tests.integration.conftest import TIMEOUT, BridgeFactory, Probe, char

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.sparkplug,
    # Sparkplug does not depend on the database: SQLite only, to keep the suite lean.
    pytest.mark.parametrize("bridge_factory", ["sqlite"], indirect=True),
]

EDGE, DEVICE = "Line3", "Gauge7"
OD = Metric.of(DataType.Double, 10.0, name="OD", alias=11)
OK = Metric.of(DataType.Boolean, True, name="Ok", alias=12)
TEMP = Metric.of(DataType.Float, 20.0, name="Temp", alias=1)
T0 = datetime(2026, 11, 28, 6, 0, 0, 250_000, tzinfo=UTC)


def od(value: float, at: datetime) -> Metric:
    """OD as spec-style DDATA sends it: by alias, without name or datatype."""
    return Metric.of(
        DataType.Double, value, alias=11, timestamp=to_epoch_ms(at), with_datatype=False
    )


@pytest.fixture
def group() -> str:
    return f"P{uuid.uuid4().hex[:10]}"


def chars(group: str) -> list[dict[str, object]]:
    return [
        char(1, sparkplug={"group": group, "edge": EDGE, "device": DEVICE, "metric": "OD"}),
        char(2, subgroup_size=2, sparkplug={"group": group, "edge": EDGE, "metric": "Temp"}),
        char(3, sparkplug={"group": group, "edge": EDGE, "device": DEVICE, "metric": "Ok"}),
    ]


def node(mosquitto: MosquittoProcess, group: str, **kw: object) -> SimulatedEdgeNode:
    return SimulatedEdgeNode("127.0.0.1", mosquitto.port, group, EDGE, **kw)  # type: ignore[arg-type]


async def births(sim: SimulatedEdgeNode) -> None:
    await sim.birth([TEMP], {DEVICE: [OD, OK]})


async def test_data_by_alias_without_datatype_becomes_samples_with_the_metrics_time(
    bridge_factory: BridgeFactory,
    probe: Probe,
    topic_prefix: str,
    mosquitto: MosquittoProcess,
    group: str,
) -> None:
    app = await bridge_factory.start(chars(group))
    async with node(mosquitto, group) as sim:
        await births(sim)
        await sim.ddata(DEVICE, [od(10.02, T0)])
        await sim.ndata([Metric.of(DataType.Float, 20.5, alias=1, with_datatype=False)])
        await sim.ndata(
            [
                Metric.of(
                    DataType.Float,
                    21.5,
                    alias=1,
                    with_datatype=False,
                    timestamp=to_epoch_ms(T0 + timedelta(seconds=1)),
                )
            ]
        )
        [one] = await probe.wait_for(f"{topic_prefix}/char/1/sample")
        [two] = await probe.wait_for(f"{topic_prefix}/char/2/sample")
    assert one["payload"]["values"] == [10.02]
    assert one["payload"]["timestamp"] == "2026-11-28T06:00:00.250Z"
    assert two["payload"]["values"] == [20.5, 21.5]
    assert two["payload"]["value"] == 21.0
    assert two["payload"]["timestamp"] == "2026-11-28T06:00:01.250Z"
    readings = await app.store.count("readings", 1)
    assert readings == 1  # stored like any reading


async def test_a_boolean_metric_for_a_characteristic_is_rejected_with_its_reason(
    bridge_factory: BridgeFactory,
    probe: Probe,
    topic_prefix: str,
    mosquitto: MosquittoProcess,
    group: str,
) -> None:
    await bridge_factory.start(chars(group))
    async with node(mosquitto, group) as sim:
        await births(sim)
        flag = Metric.of(DataType.Boolean, False, alias=12, with_datatype=False)
        await sim.ddata(DEVICE, [flag])
        [error] = await probe.wait_for(f"{topic_prefix}/bridge/errors")
    assert error["topic"] == f"spBv1.0/{group}/DDATA/{EDGE}/{DEVICE}"
    assert error["reason"] == "metric 'Ok' is Boolean, not a number"
    assert probe.matching(f"{topic_prefix}/char/3/sample") == []


async def test_deaths_mark_the_source_offline_in_meta_until_the_next_birth(
    bridge_factory: BridgeFactory,
    probe: Probe,
    topic_prefix: str,
    mosquitto: MosquittoProcess,
    group: str,
) -> None:
    await bridge_factory.start(chars(group))
    meta = f"{topic_prefix}/char/1/meta"

    def online(value: bool) -> object:
        return lambda m: m["payload"]["online"] is value

    async with node(mosquitto, group) as sim:
        await births(sim)
        await sim.ddeath(DEVICE)
        await probe.wait_for(meta, online(False))
        assert probe.matching(f"{topic_prefix}/char/2/meta")[-1].json()["payload"]["online"]
        await sim.dbirth(DEVICE, [OD, OK])
        await probe.wait_for(meta, online(True), count=2)
        sim.abort()  # the broker publishes the Will: NDEATH with the birth's bdSeq
        await probe.wait_for(f"{topic_prefix}/char/2/meta", online(False))
        await probe.wait_for(meta, online(False), count=2)


async def test_a_sequence_gap_is_reported_and_a_rebirth_requested(
    bridge_factory: BridgeFactory,
    probe: Probe,
    topic_prefix: str,
    mosquitto: MosquittoProcess,
    group: str,
) -> None:
    await bridge_factory.start(chars(group))
    async with node(mosquitto, group) as sim:
        await births(sim)
        sim.skip(2)
        await sim.ddata(DEVICE, [od(10.1, T0)])
        [error] = await probe.wait_for(f"{topic_prefix}/bridge/errors")
        async with asyncio.timeout(TIMEOUT):
            request = await sim.rebirth_requests.get()
        [sample] = await probe.wait_for(f"{topic_prefix}/char/1/sample")
    assert error["reason"] == "sequence gap: expected seq 2, got 4 (messages lost)"
    (metric,) = request.metrics
    assert (metric.name, metric.datatype, metric.value) == (
        "Node Control/Rebirth",
        DataType.Boolean,
        True,
    )
    assert sample["payload"]["values"] == [10.1]  # the data after the gap still counts


async def test_after_a_bridge_restart_it_asks_for_births_and_the_first_data_is_read(
    bridge_factory: BridgeFactory,
    probe: Probe,
    topic_prefix: str,
    mosquitto: MosquittoProcess,
    group: str,
) -> None:
    first = await bridge_factory.start(chars(group))
    async with node(mosquitto, group) as sim:
        await births(sim)
        await sim.ddata(DEVICE, [od(10.0, T0)])
        await probe.wait_for(f"{topic_prefix}/char/1/sample")
        await bridge_factory.stop(first)
        app = await bridge_factory.start(chars(group))  # knows no alias, no birth...
        async with asyncio.timeout(TIMEOUT):
            request = await sim.rebirth_requests.get()  # ... so it asks at once, unprompted
        await sim.ddata(DEVICE, [od(10.5, T0 + timedelta(seconds=1))])  # the first after
        [after] = await probe.wait_for(
            f"{topic_prefix}/char/1/sample", lambda s: s["payload"]["values"] != [10.0]
        )
    assert [m.name for m in request.metrics] == ["Node Control/Rebirth"]
    assert after["payload"]["values"] == [10.5]  # no longer lost
    assert probe.matching(f"{topic_prefix}/bridge/errors") == []
    assert await app.store.count("readings", 1) == 2


async def test_the_bridge_publishes_its_results_as_a_sparkplug_edge_node(
    bridge_factory: BridgeFactory,
    probe: Probe,
    topic_prefix: str,
    mosquitto: MosquittoProcess,
    group: str,
) -> None:
    fixed = {"center_line": 10.0, "ucl": 13.0, "lcl": 7.0, "rules": [1]}
    async with SparkplugRecorder("127.0.0.1", mosquitto.port, group, "SPC") as rec:
        app = await bridge_factory.start(
            [char(4, **fixed)],
            sparkplug_edge={"enabled": True, "group": group, "edge": "SPC"},
        )
        async with asyncio.timeout(TIMEOUT):
            birth = await rec.next(MessageType.NBIRTH)
            await probe.publish(f"{topic_prefix}/char/4/reading", "20")
            data = await rec.next(MessageType.NDATA)
            while "SPC/4/value" not in data.values:
                data = await rec.next(MessageType.NDATA)
            assert app.sparkplug_edge is not None
            app.sparkplug_edge.abort()
            death = await rec.next(MessageType.NDEATH)
            reborn = await rec.next(MessageType.NBIRTH)
    assert birth.values[BD_SEQ] == death.values[BD_SEQ] == 0
    assert reborn.values[BD_SEQ] == 1
    assert {"SPC/4/value", "SPC/4/ucl", "SPC/4/in_control"} <= set(birth.values)
    assert data.values["SPC/4/value"] == 20.0
    assert data.values["SPC/4/in_control"] is False
    assert data.values["SPC/4/zone"] == "beyond_ucl"
    assert data.values["SPC/4/failed_rules"] == "1"
    assert reborn.values["SPC/4/value"] == 20.0  # the new birth carries the current values


async def test_after_a_restart_the_edge_nodes_first_birth_carries_the_last_results(
    bridge_factory: BridgeFactory,
    probe: Probe,
    topic_prefix: str,
    mosquitto: MosquittoProcess,
    group: str,
) -> None:
    fixed = {"center_line": 10.0, "ucl": 13.0, "lcl": 7.0, "rules": [1]}
    edge = {"enabled": True, "group": group, "edge": "SPC"}
    first = await bridge_factory.start([char(4, **fixed)], sparkplug_edge=edge)
    await probe.publish(f"{topic_prefix}/char/4/reading", "11.5")
    [sample] = await probe.wait_for(f"{topic_prefix}/char/4/sample")
    await bridge_factory.stop(first)
    async with SparkplugRecorder("127.0.0.1", mosquitto.port, group, "SPC") as rec:
        await bridge_factory.start([char(4, **fixed)], sparkplug_edge=edge)
        async with asyncio.timeout(TIMEOUT):
            birth = await rec.next(MessageType.NBIRTH)
    assert birth.values["SPC/4/value"] == 11.5
    assert birth.values["SPC/4/sample_id"] == sample["payload"]["sample_id"]
    assert birth.values["SPC/4/zone"] == "zone_b_upper"
    assert (birth.values["SPC/4/ucl"], birth.values["SPC/4/lcl"]) == (13.0, 7.0)
