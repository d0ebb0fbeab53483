"""The MQTT adapter's lean inbound path (``MqttOptions.lean_inbound``; bridge/_mqtt_codec.py)
against a real Mosquitto: what it takes, what it acknowledges (one write per batch), what
the broker sends again, and the Maximum Packet Size it announces (docs/performance.md)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from bridge._mosquitto import MosquittoProcess
from bridge._mqtt import Inbound, Inbox, MqttClient, MqttOptions
from tests.integration.conftest import open_probe

TIMEOUT = 10.0


@contextlib.asynccontextmanager
async def lean_client(
    broker: MosquittoProcess, client_id: str, topic: str, max_packet: int = 16 << 20
) -> AsyncIterator[MqttClient]:
    options = MqttOptions(
        "127.0.0.1",
        broker.port,
        client_id,
        subscriptions=(topic,),
        lean_inbound=True,
        max_packet=max_packet,
    )
    client = MqttClient(options, Inbox(10_000))
    await client.start(TIMEOUT)
    await asyncio.wait_for(client.subscribed.wait(), TIMEOUT)
    try:
        yield client
    finally:
        await client.stop()


async def take(client: MqttClient, count: int) -> list[Inbound]:
    taken: list[Inbound] = []
    async with asyncio.timeout(TIMEOUT):
        while len(taken) < count:
            taken += await client.inbox.take(count - len(taken), 0.05)
    return taken


async def test_acked_deliveries_are_done_and_unacked_ones_come_again_marked_dup(
    mosquitto: MosquittoProcess, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}/lean/reading"
    client_id = f"lean-{uuid.uuid4().hex[:8]}"
    async with lean_client(mosquitto, client_id, topic) as client:
        async with open_probe(mosquitto) as probe:
            for i in range(200):
                await probe.publish(topic, f'{{"value": {i}}}'.encode())
        first = await take(client, 200)
        assert [m.payload for m in first] == [f'{{"value": {i}}}'.encode() for i in range(200)]
        assert {m.topic for m in first} == {topic}
        assert all(m.qos == 1 and not m.dup for m in first)
        for message in first[:150]:  # a committed batch: its acks go out as one write
            message.ack()
        assert client.connected.is_set()  # (stop() sends them before its DISCONNECT)
    # the 50 not acknowledged come again on the next connection of the session, DUP
    async with lean_client(mosquitto, client_id, topic) as again:
        redelivered = await take(again, 50)
        assert [m.payload for m in redelivered] == [m.payload for m in first[150:]]
        assert all(m.dup for m in redelivered)
        for message in redelivered:
            message.ack()
    # and nothing more: everything was acknowledged
    async with lean_client(mosquitto, client_id, topic) as last:
        async with open_probe(mosquitto) as probe:
            await probe.publish(topic, b'{"value": "marker"}')
        (marker,) = await take(last, 1)
        assert marker.payload == b'{"value": "marker"}'
        assert not marker.dup
        marker.ack()


async def test_the_announced_maximum_packet_size_keeps_larger_packets_away(
    mosquitto: MosquittoProcess, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}/lean/reading"
    async with lean_client(mosquitto, f"lean-{uuid.uuid4().hex[:8]}", topic, 1024) as client:
        async with open_probe(mosquitto) as probe:
            await probe.publish(topic, b"x" * 2000)  # the broker does not send it to us
            await probe.publish(topic, b"small")
        (message,) = await take(client, 1)
        assert message.payload == b"small"
        message.ack()
        assert client.connected.is_set()
        assert client.connections == 1
