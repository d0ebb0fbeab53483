"""The bridge's SPC results as a Sparkplug B edge node, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiomqtt
import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.sparkplug import (
    BD_SEQ,
    REBIRTH,
    DataType,
    MessageType,
    SparkplugEdgeNode,
    rebirth_command,
)
from bridge.sparkplug.testing import SparkplugRecorder

pytestmark = [pytest.mark.mosquitto, pytest.mark.sparkplug]

AT = datetime(2026, 11, 28, 6, 0, 1, 500_000, tzinfo=UTC)


@pytest.fixture
def group() -> str:
    return f"G{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def recorder(mosquitto: MosquittoProcess, group: str) -> AsyncIterator[SparkplugRecorder]:
    async with SparkplugRecorder("127.0.0.1", mosquitto.port, group, "SPC") as rec:
        yield rec


@pytest.fixture
async def node(mosquitto: MosquittoProcess, group: str) -> AsyncIterator[SparkplugEdgeNode]:
    edge = SparkplugEdgeNode(
        host="127.0.0.1",
        port=mosquitto.port,
        group=group,
        edge="SPC",
        characteristic_ids=[7, 3],
        client_id=f"spc-{group}",
        reconnect_delay=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(edge.run(stop))
    try:
        yield edge
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_nbirth_defines_every_spc_metric_with_bdseq_and_rebirth_control(
    recorder: SparkplugRecorder, node: SparkplugEdgeNode
) -> None:
    async with asyncio.timeout(5):
        birth = await recorder.next(MessageType.NBIRTH)
    assert birth.payload.seq == 0
    assert birth.values[BD_SEQ] == 0
    assert birth.values[REBIRTH] is False
    by_name = {m.name: m for m in birth.payload.metrics}
    assert by_name["SPC/3/value"].datatype == DataType.Double
    assert by_name["SPC/3/in_control"].datatype == DataType.Boolean
    assert by_name["SPC/7/zone"].datatype == DataType.String
    assert by_name["SPC/7/value"].is_null  # nothing measured yet
    aliases = [m.alias for m in birth.payload.metrics if m.name != BD_SEQ]
    assert len(aliases) == len(set(aliases)) == 1 + 2 * 10


async def test_ndata_carries_a_sample_and_limits_by_alias(
    recorder: SparkplugRecorder, node: SparkplugEdgeNode
) -> None:
    async with asyncio.timeout(5):
        await recorder.next(MessageType.NBIRTH)
        node.publish_limits(3, {"center_line": 10.0, "ucl": 10.3, "lcl": 9.7, "sigma": 0.1}, AT)
        node.publish_sample(
            3,
            sample_id=42,
            value=10.35,
            range_=0.2,
            zone="beyond_ucl",
            in_control=False,
            failed_rules=[5, 1],
            at=AT,
        )
        limits = await recorder.next(MessageType.NDATA)
        sample = await recorder.next(MessageType.NDATA)
    assert limits.payload.seq == 1
    assert limits.values == {
        "SPC/3/center_line": 10.0,
        "SPC/3/ucl": 10.3,
        "SPC/3/lcl": 9.7,
        "SPC/3/sigma": 0.1,
    }
    assert sample.payload.seq == 2
    assert sample.values == {
        "SPC/3/value": 10.35,
        "SPC/3/range": 0.2,
        "SPC/3/sample_id": 42,
        "SPC/3/in_control": False,
        "SPC/3/zone": "beyond_ucl",
        "SPC/3/failed_rules": "1,5",
    }
    assert all(m.name is None and m.datatype is None for m in sample.payload.metrics)
    assert {m.timestamp for m in sample.payload.metrics} == {int(AT.timestamp()) * 1000 + 500}


async def test_ncmd_rebirth_gives_a_fresh_nbirth_with_current_values(
    mosquitto: MosquittoProcess, recorder: SparkplugRecorder, node: SparkplugEdgeNode, group: str
) -> None:
    async with asyncio.timeout(5):
        await recorder.next(MessageType.NBIRTH)
        node.publish_sample(
            7,
            sample_id=1,
            value=2.5,
            range_=None,
            zone=None,
            in_control=None,
            failed_rules=[],
            at=AT,
        )
        await recorder.next(MessageType.NDATA)
        command = rebirth_command(group, "SPC", AT)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as host:
            await host.publish(command.topic, command.data)
        again = await recorder.next(MessageType.NBIRTH)
    assert again.payload.seq == 0
    assert again.values[BD_SEQ] == 0  # same connection, same bdSeq
    assert again.values["SPC/7/value"] == 2.5
    assert again.values["SPC/7/zone"] is None


async def test_abrupt_disconnect_publishes_ndeath_and_the_next_birth_takes_the_next_bdseq(
    recorder: SparkplugRecorder, node: SparkplugEdgeNode
) -> None:
    async with asyncio.timeout(10):
        first = await recorder.next(MessageType.NBIRTH)
        node.abort()
        death = await recorder.next(MessageType.NDEATH)
        second = await recorder.next(MessageType.NBIRTH)
    assert death.values[BD_SEQ] == first.values[BD_SEQ] == 0
    assert death.payload.seq is None
    assert second.values[BD_SEQ] == 1


async def test_a_clean_stop_publishes_ndeath(
    mosquitto: MosquittoProcess, recorder: SparkplugRecorder, group: str
) -> None:
    edge = SparkplugEdgeNode(
        host="127.0.0.1",
        port=mosquitto.port,
        group=group,
        edge="SPC",
        characteristic_ids=[1],
        client_id=f"spc-stop-{group}",
    )
    stop = asyncio.Event()
    async with asyncio.timeout(5):
        task = asyncio.create_task(edge.run(stop))
        await recorder.next(MessageType.NBIRTH)
        stop.set()
        await task
        death = await recorder.next(MessageType.NDEATH)
    assert death.values[BD_SEQ] == 0
