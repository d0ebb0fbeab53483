"""The lean outbound path (``MqttOptions.lean_publish``; bridge/_mqtt_out.py) against a real
Mosquitto: publishes the broker never took are sent again after a reconnect, in order, DUP
set, under the same packet ids, and every one arrives; one ``send`` carries many packets.
The same test runs with the switch off (paho's own publish), the reference."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge._mqtt import Inbox, MqttClient, MqttOptions
from bridge._mqtt_codec import PacketSplitter
from tests.integration.conftest import open_probe
from tests.integration.reliability import TcpProxy

pytestmark = pytest.mark.mosquitto

TIMEOUT = 15.0
COUNT = 200


class Publishes:
    """A :class:`~bridge._mqtt_codec.PacketSink` keeping the PUBLISH packets of a stream."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bytes, int, bool, bool, int]] = []

    def publish(
        self,
        topic: bytes,
        payload: bytes,
        qos: int,
        dup: bool,
        retain: bool,
        mid: int,
        properties: Any,
    ) -> None:
        self.seen.append((topic, payload, qos, dup, retain, mid))

    def puback(self, mid: int, reason: int, properties: Any) -> None:
        pass

    def other(self, header: int, body: bytes) -> None:
        pass


def publishes_in(stream: bytes) -> list[tuple[bytes, bytes, int, bool, bool, int]]:
    sink = Publishes()
    PacketSplitter(sink).feed(stream)
    return sink.seen


@contextlib.asynccontextmanager
async def publisher(port: int, lean: bool) -> AsyncIterator[MqttClient]:
    options = MqttOptions(
        "127.0.0.1", port, f"out-{uuid.uuid4().hex[:8]}", lean_inbound=True, lean_publish=lean
    )
    client = MqttClient(options, Inbox(16))
    await client.start(TIMEOUT)
    try:
        yield client
    finally:
        await client.stop()


async def until(condition: Any) -> None:
    """Wait for what a proxy thread or the client's counters show (no event to await)."""
    async with asyncio.timeout(TIMEOUT):
        while not condition():  # noqa: ASYNC110  state of another thread: polled
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "paho"])
async def test_publishes_not_taken_go_again_after_a_reconnect_in_order_marked_dup(
    mosquitto: MosquittoProcess, topic_prefix: str, lean: bool
) -> None:
    topic = f"{topic_prefix}/out/sample"
    proxy = TcpProxy(mosquitto.port, record=True)
    try:
        async with open_probe(mosquitto, topic) as probe, publisher(proxy.port, lean) as client:
            proxy.swallow_upstream.set()  # the broker takes nothing from here on
            for k in range(COUNT):
                client.publish(topic, b"%d" % k, qos=1, retain=k == COUNT - 1)
            await until(lambda: len(publishes_in(bytes(proxy.sent[0]))) >= COUNT)
            assert client.outstanding == COUNT
            assert proxy.swallowed > 0
            first = publishes_in(bytes(proxy.sent[0]))
            assert [p[1] for p in first] == [b"%d" % k for k in range(COUNT)]
            assert not any(p[3] for p in first)
            proxy.swallow_upstream.clear()
            proxy.cut()  # lost without a PUBACK: the client connects again through the proxy
            await until(lambda: client.connections == 2 and client.connected.is_set())
            assert await client.flush(TIMEOUT)
            await probe.wait_for(topic, count=COUNT)
            assert [m.payload for m in probe.matching(topic)] == [b"%d" % k for k in range(COUNT)]
            assert probe.matching(topic)[-1].retain is False  # a live delivery, not a stored one
            again = publishes_in(bytes(proxy.sent[1]))
            assert [(p[1], p[3], p[5]) for p in again] == [(p[1], True, p[5]) for p in first]
            assert [p[4] for p in again] == [k == COUNT - 1 for k in range(COUNT)]
    finally:
        proxy.close()
