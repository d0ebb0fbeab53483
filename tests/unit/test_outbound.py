"""The MQTT adapter's outbound queue: events in order and never dropped, retained state
coalesced per topic, and the pipeline's wait at ``outbound_max`` (docs/bridge.md,
"Bounded outbound"). paho is replaced by a recorder of what it was handed; PUBACKs are
played by calling the adapter's callback, as paho does."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from bridge._mqtt import Inbox, MqttClient, MqttOptions

_PUBACK_OK = ReasonCode(PacketTypes.PUBACK, "Success")  # what paho passes for a PUBACK


@dataclass
class _Info:
    rc: MQTTErrorCode
    mid: int


@dataclass
class FakePaho:
    """What paho was handed, in order; message ids as paho gives them."""

    sent: list[tuple[str, bytes]] = field(default_factory=list)
    mids: list[int] = field(default_factory=list)

    def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool, properties: Any
    ) -> _Info:
        self.sent.append((topic, payload))
        self.mids.append(len(self.sent))
        return _Info(MQTTErrorCode.MQTT_ERR_SUCCESS, len(self.sent))


def adapter(window: int, outbound_max: int = 10_000) -> tuple[MqttClient, FakePaho]:
    client = MqttClient(
        MqttOptions("127.0.0.1", 1, "t", window=window, outbound_max=outbound_max), Inbox(10)
    )
    fake = FakePaho()
    client._client = fake  # type: ignore[assignment]  # the recorder stands in for paho
    return client, fake


def puback(client: MqttClient, fake: FakePaho) -> None:
    """The broker confirms the oldest unconfirmed publish."""
    mid = fake.mids.pop(0)
    client._on_publish(None, None, mid, _PUBACK_OK, None)  # type: ignore[arg-type]  # as paho calls


def test_events_past_the_window_wait_in_order_and_none_is_lost() -> None:
    client, fake = adapter(window=2)
    for k in range(6):
        client.publish(f"p/char/{k % 2}/sample", b"%d" % k)
    assert [p for _, p in fake.sent] == [b"0", b"1"]
    assert (client.outstanding, client.held) == (6, 4)
    while fake.mids:
        puback(client, fake)
    assert [p for _, p in fake.sent] == [b"0", b"1", b"2", b"3", b"4", b"5"]
    assert (client.outstanding, client.held, client.outstanding_bytes) == (0, 0, 0)
    assert client.outstanding_max == 6


def test_held_retained_state_is_replaced_by_the_newer_one_behind_the_events() -> None:
    client, fake = adapter(window=1)
    client.publish("p/bridge/status", b"first")  # handed to paho at once
    client.publish("p/char/1/history", b"h1", retain=True, coalesce=True)
    client.publish("p/char/1/sample", b"s1", retain=True)  # an event, though retained
    client.publish("p/char/2/history", b"other", retain=True, coalesce=True)
    client.publish("p/char/1/history", b"h2", retain=True, coalesce=True)
    client.publish("p/char/1/sample", b"s2", retain=True)
    client.publish("p/char/1/history", b"h3", retain=True, coalesce=True)
    assert (client.held, client.coalesced) == (4, 2)
    assert client.outstanding_bytes == len(b"first" + b"s1" + b"other" + b"s2" + b"h3")
    while fake.mids:
        puback(client, fake)
    assert [p for _, p in fake.sent] == [b"first", b"s1", b"other", b"s2", b"h3"]
    assert (client.outstanding, client.held, client.outstanding_bytes) == (0, 0, 0)


def test_state_handed_to_paho_is_not_replaced_and_a_new_one_queues_again() -> None:
    client, fake = adapter(window=1)
    client.publish("p/char/1/alarms", b"a1", coalesce=True)  # in flight
    client.publish("p/char/1/alarms", b"a2", coalesce=True)  # held
    puback(client, fake)  # a2 goes to paho
    client.publish("p/char/1/alarms", b"a3", coalesce=True)  # held again, a2 stays
    while fake.mids:
        puback(client, fake)
    assert [p for _, p in fake.sent] == [b"a1", b"a2", b"a3"]


def test_a_stalled_broker_keeps_the_held_queue_at_one_per_state_topic() -> None:
    client, _ = adapter(window=10)
    for k in range(10):
        client.publish(f"p/char/{k}/sample", b"x")
    for round_ in range(5_000):  # histories of 20 characteristics, again and again
        client.publish(f"p/char/{round_ % 20}/history", b"h" * 100, coalesce=True)
    assert client.held == 20
    assert len(client._held) <= 2 * 20 + 1024 + 1  # tombstones are swept
    assert client.outstanding_bytes == 10 + 20 * 100


async def test_the_pipeline_waits_past_outbound_max_and_reads_on_for_the_pubacks() -> None:
    client, fake = adapter(window=5, outbound_max=8)
    client.connected.set()
    for k in range(8):
        client.publish("p/char/1/sample", b"%d" % k)
    await asyncio.wait_for(client.wait_window(), 1)  # at the bound: no wait
    client.publish("p/char/1/sample", b"8")
    client._paused = True  # reading stopped at buffer_max: the PUBACKs are behind readings
    resumed: list[bool] = []
    client._resume = lambda: resumed.append(client._want_acks)  # type: ignore[method-assign]
    waiting = asyncio.create_task(client.wait_window())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert resumed == [True]  # it reads on, past buffer_max, to get the PUBACKs
    puback(client, fake)
    await asyncio.wait_for(waiting, 1)
    assert client.outstanding == 8
    assert not client._want_acks  # the next read stops again at buffer_max
    assert client.window_waits == 1


async def test_a_lower_limit_waits_down_to_it_and_a_higher_one_is_outbound_max() -> None:
    """Start-up's retained messages wait in a window of their own (bridge/app.py
    ``START_WINDOW``); a limit above ``outbound_max`` does not widen the bound."""
    client, fake = adapter(window=20, outbound_max=8)
    client.connected.set()
    for k in range(6):
        client.publish(f"p/char/{k}/meta", b"m", retain=True)
    await asyncio.wait_for(client.wait_window(), 1)  # under outbound_max: no wait
    waiting = asyncio.create_task(client.wait_window(4))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    puback(client, fake)
    await asyncio.sleep(0.01)
    assert not waiting.done()  # 5 outstanding
    puback(client, fake)
    await asyncio.wait_for(waiting, 1)
    assert client.outstanding == 4
    for k in range(6):
        client.publish(f"p/char/{k}/limits", b"l", retain=True)
    waiting = asyncio.create_task(client.wait_window(100))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # 10 outstanding: over outbound_max (8)
    puback(client, fake)
    puback(client, fake)
    await asyncio.wait_for(waiting, 1)
    assert client.outstanding == 8


def test_a_qos0_publish_reported_by_paho_does_not_count_as_a_confirmation() -> None:
    client, fake = adapter(window=10)
    client.publish("p/char/1/sample", b"s")
    client.publish("p/bridge/metrics", b"m", qos=0)
    client._on_publish(None, None, fake.mids[1], _PUBACK_OK, None)  # type: ignore[arg-type]  # paho
    assert client.outstanding == 1  # was 0: metrics made the sample look confirmed
    puback(client, fake)
    assert client.outstanding == 0
