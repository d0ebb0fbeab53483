"""bridge._paho_fast decodes exactly as paho does, only faster (docs/performance.md)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge import _paho_fast

V5 = MQTTProtocolVersion.MQTTv5
_paho_fast.install()
paho_publish = _paho_fast._paho_decode_publish
paho_puback = _paho_fast._paho_decode_puback


def publish_packet(topic: bytes, mid: int, qos: int, props: bytes, payload: bytes) -> bytes:
    head = len(topic).to_bytes(2, "big") + topic
    if qos:
        head += mid.to_bytes(2, "big")
    return head + props + payload


def same(a: object, b: object) -> bool:
    def plain(p: object) -> object:
        if isinstance(p, Properties):
            return p.json()  # type: ignore[no-untyped-call]  # paho: no hints
        return str(p)

    return [plain(x) for x in a] == [plain(x) for x in b]  # type: ignore[attr-defined]


@given(
    topic=st.binary(min_size=1, max_size=40),
    mid=st.integers(1, 65535),
    qos=st.integers(0, 2),
    flags=st.integers(0, 0x09),
    payload=st.binary(max_size=60),
    response=st.none() | st.text(min_size=1, max_size=10),
)
def test_publish_decodes_as_paho_does(
    topic: bytes, mid: int, qos: int, flags: int, payload: bytes, response: str | None
) -> None:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho: no hints
    if response is not None:
        props.ResponseTopic = response
    packet = publish_packet(topic, mid, qos, props.pack(), payload)  # type: ignore[no-untyped-call]
    header = 0x30 | (qos << 1) | (flags & 0x09)

    def decode(decoder: Any) -> object:
        try:
            return decoder(header, bytearray(packet), V5)
        except MalformedPacket as exc:  # a null in the response topic: paho refuses it
            return repr(exc)

    fast, slow = decode(_packet.decode_publish), decode(paho_publish)

    assert fast == slow if isinstance(slow, str) else same(fast, slow)


def test_a_publish_without_properties_shares_one_empty_properties() -> None:
    packet = publish_packet(b"openspc/char/1/reading", 7, 1, b"\x00", b"10.5")

    first = _packet.decode_publish(0x32, packet, V5)
    second = _packet.decode_publish(0x32, packet, V5)

    assert (first.topic, first.mid, first.payload) == (b"openspc/char/1/reading", 7, b"10.5")
    assert first.properties is second.properties
    assert getattr(first.properties, "ResponseTopic", None) is None


@given(mid=st.integers(1, 65535), tail=st.sampled_from([b"", b"\x00", b"\x10", b"\x00\x00"]))
def test_puback_decodes_as_paho_does(mid: int, tail: bytes) -> None:
    packet = mid.to_bytes(2, "big") + tail

    assert same(_packet.decode_puback(0x40, packet, V5), paho_puback(0x40, packet, V5))


def test_mqtt_3_goes_to_paho() -> None:
    packet = publish_packet(b"t", 3, 1, b"", b"x")

    decoded = _packet.decode_publish(0x32, packet, MQTTProtocolVersion.MQTTv311)

    assert (decoded.topic, decoded.mid, decoded.payload, decoded.properties) == (
        b"t",
        3,
        b"x",
        None,
    )


def test_message_infos_share_one_condition_and_still_wait_for_their_own() -> None:
    import threading

    import paho.mqtt.client as paho

    first, second = paho.MQTTMessageInfo(1), paho.MQTTMessageInfo(2)
    done: list[int] = []

    def wait(info: paho.MQTTMessageInfo) -> None:
        info.wait_for_publish(5)
        done.append(info.mid)

    waiters = [threading.Thread(target=wait, args=(i,)) for i in (first, second)]
    for w in waiters:
        w.start()
    second._set_as_published()
    waiters[1].join(5)

    assert isinstance(first, paho.MQTTMessageInfo)
    assert first._condition is second._condition
    assert done == [2]
    assert not first.is_published()
    first._set_as_published()
    waiters[0].join(5)
    assert done == [2, 1]
