"""The lean outbound path (bridge/_mqtt_out.py, ``publish_head`` in bridge/_mqtt_codec.py)
held to paho: the same bytes for the same publish (MQTT 3.1.1 and 5, QoS 0 and 1, retain,
DUP, properties, remaining lengths across the varint boundaries), the same entries in
paho's ``_out_messages`` (so paho's PUBACK handling and its resend after a reconnect treat
them as its own: checked by running paho's own CONNACK and PUBACK handling on both), and a
socket that takes only part of a write keeps the rest in order on paho's queue and asks the
loop to watch for writable. Real paho clients and real socket pairs; no broker."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge._mqtt import paho_handle
from bridge._mqtt_codec import MAX_PACKET_LIMIT, encode_publish, publish_head
from bridge._mqtt_out import FLUSH_BYTES, LeanPublisher

V5 = MQTTProtocolVersion.MQTTv5
V311 = MQTTProtocolVersion.MQTTv311


class Recording(paho.Client):
    """paho with its out queue recorded instead of written: its own ``_send_publish``."""

    def __init__(self, protocol: MQTTProtocolVersion) -> None:
        super().__init__(CallbackAPIVersion.VERSION2, client_id="rec", protocol=protocol)
        self.queued: list[bytes] = []
        self._sock = object()  # type: ignore[assignment]  # "connected": paho encodes only then

    def _packet_queue(
        self, command: int, packet: bytes | bytearray, mid: int, qos: int, info: Any = None
    ) -> MQTTErrorCode:
        self.queued.append(bytes(packet))
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def paho_bytes(
    protocol: MQTTProtocolVersion,
    topic: bytes,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    mid: int,
    properties: Properties | None,
) -> bytes:
    client = Recording(protocol)
    client._send_publish(mid, topic, payload, qos, retain, dup, None, properties)
    client._sock = None  # nothing to close
    (packet,) = client.queued
    return packet


def packed(protocol: MQTTProtocolVersion, properties: Properties | None) -> bytes | None:
    if protocol != V5:
        return None
    if properties is None:
        return b"\x00"
    return properties.pack()  # type: ignore[no-untyped-call,no-any-return]  # paho: no hints


def reply_properties() -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho: no hints
    props.CorrelationData = b"\x00\x01corr"
    props.ResponseTopic = "openspc/reply/kim/7"
    return props


def fixed_overhead(topic: bytes, qos: int, props: bytes | None) -> int:
    """Bytes of the remaining length besides the payload."""
    return 2 + len(topic) + (2 if qos else 0) + (len(props) if props is not None else 0)


@pytest.mark.parametrize("protocol", [V5, V311], ids=["mqtt5", "mqtt311"])
@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("boundary", [127, 16_383, 2_097_151])
@pytest.mark.parametrize("side", [-1, 0, 1])
def test_remaining_lengths_across_each_varint_boundary_encode_as_paho_does(
    protocol: MQTTProtocolVersion, qos: int, boundary: int, side: int
) -> None:
    topic = b"openspc/char/42/sample"
    props = packed(protocol, None)
    payload = b"x" * (boundary + side - fixed_overhead(topic, qos, props))
    ours = encode_publish(topic, payload, qos, True, False, 513, props)
    assert ours == paho_bytes(protocol, topic, payload, qos, True, False, 513, None)
    varint = (
        1 + (boundary + side > 127) + (boundary + side > 16_383) + (boundary + side > 2_097_151)
    )
    assert len(ours) == 1 + varint + boundary + side


@pytest.mark.parametrize("protocol", [V5, V311], ids=["mqtt5", "mqtt311"])
def test_empty_payload_long_topic_retain_dup_and_properties_encode_as_paho_does(
    protocol: MQTTProtocolVersion,
) -> None:
    cases: list[tuple[bytes, bytes, int, bool, bool, int, Properties | None]] = [
        (b"openspc/char/1/history", b"", 1, True, False, 1, None),  # clears a retained one
        (b"a", b"", 0, False, False, 0, None),
        (b"t/" + b"y" * 65_533, b"10.5", 1, False, True, 65_535, None),  # the longest topic
        ("openspc/char/ünï/sample".encode(), b'{"value": 1}', 1, True, True, 300, None),
        (b"openspc/reply/kim/7", b'{"ok": true}', 1, False, False, 7, reply_properties()),
    ]
    for topic, payload, qos, retain, dup, mid, props in cases:
        ours = encode_publish(topic, payload, qos, retain, dup, mid, packed(protocol, props))
        assert ours == paho_bytes(protocol, topic, payload, qos, retain, dup, mid, props)


def test_what_mqtt_cannot_express_is_refused() -> None:
    with pytest.raises(ValueError, match="65,535 at most"):
        publish_head(b"t" * 65_536, 0, 1, False, False, 1, b"\x00")
    with pytest.raises(ValueError, match="packet id 0"):
        publish_head(b"t", 0, 1, False, False, 0, b"\x00")
    with pytest.raises(ValueError, match="packet id 65536"):
        publish_head(b"t", 0, 1, False, False, 65_536, b"\x00")
    with pytest.raises(ValueError, match="268435455 at most"):
        publish_head(b"t", MAX_PACKET_LIMIT, 0, False, False, 0, b"\x00")
    # the largest expressible: a head with a 4-byte remaining length
    head = publish_head(b"t", MAX_PACKET_LIMIT - 4, 0, False, False, 0, b"\x00")
    assert head == b"\x30\xff\xff\xff\x7f\x00\x01t\x00"


@settings(max_examples=300, deadline=None)
@given(
    protocol=st.sampled_from([V5, V311]),
    topic=st.binary(min_size=1, max_size=300).filter(lambda t: b"+" not in t and b"#" not in t),
    payload=st.binary(max_size=400) | st.integers(16_000, 16_500).map(lambda n: b"p" * n),
    qos=st.integers(0, 1),
    retain=st.booleans(),
    dup=st.booleans(),
    mid=st.integers(1, 65_535),
    correlation=st.none() | st.binary(max_size=40),
)
def test_any_publish_encodes_as_paho_does(
    protocol: MQTTProtocolVersion,
    topic: bytes,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    mid: int,
    correlation: bytes | None,
) -> None:
    props = None
    if correlation is not None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho: no hints
        props.CorrelationData = correlation
    ours = encode_publish(topic, payload, qos, retain, dup, mid, packed(protocol, props))
    assert ours == paho_bytes(protocol, topic, payload, qos, retain, dup, mid, props)
    assert (
        publish_head(topic, len(payload), qos, retain, dup, mid, packed(protocol, props))
        == (ours[: len(ours) - len(payload)])
    )


# --- the publisher against paho's own publish, PUBACK and reconnect -------------------------


class Wire:
    """A paho client "connected" to one end of a socket pair; the test reads the other."""

    def __init__(self, protocol: MQTTProtocolVersion = V5) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="wire", protocol=protocol, manual_ack=True
        )
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.acked: list[tuple[int, int]] = []
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.acked.append((mid, rc.value))
        self.connect()

    def connect(self) -> None:
        """A new connection, as paho's reconnect() leaves it: then paho's CONNACK handling."""
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.theirs.setblocking(False)
        self.client._sock = self.ours

    def reconnect(self, session_present: bool) -> None:
        self.client._out_packet.clear()  # as reconnect() does: unwritten packets are dropped
        self.client._messages_reconnect_reset()  # reconnect(): unacknowledged ones, DUP
        self.connect()
        self.handle(0x20, bytes((1 if session_present else 0, 0, 0)))
        while self.client.want_write():  # what paho queued in its CONNACK handling
            self.client.loop_write()

    def handle(self, header: int, body: bytes) -> None:
        """A packet from the broker, handled by paho itself (as the lean inbound path hands
        it over)."""
        assert paho_handle(self.client, header, body) == MQTTErrorCode.MQTT_ERR_SUCCESS

    def read(self) -> bytes:
        data = b""
        while True:
            try:
                chunk = self.theirs.recv(1 << 20)
            except BlockingIOError:
                return data
            data += chunk

    def messages(self) -> list[tuple[Any, ...]]:
        return [
            (m.mid, m.topic, bytes(m.payload), m.qos, m.retain, m.dup, m.state, m.properties)
            for m in self.client._out_messages.values()
        ]


@pytest.fixture
def loop() -> Iterator[Any]:
    import asyncio

    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


PUBLISHES: list[tuple[str, bytes, int, bool, Properties | None]] = [
    ("openspc/char/1/sample", b'{"value": 1}', 1, True, None),
    ("openspc/bridge/metrics", b'{"m": 1}', 0, True, None),
    ("openspc/char/1/violation", b"", 1, False, None),
    ("openspc/reply/kim/7", b'{"ok": true}', 1, False, reply_properties()),
    ("openspc/char/2/history", b"h" * 20_000, 1, True, None),
    ("openspc/char/2/sample", b'{"value": 2}', 1, True, None),
]


def by_paho(protocol: MQTTProtocolVersion = V5) -> Wire:
    wire = Wire(protocol)
    wire.client._last_mid = 65_532  # the ids wrap around on the way
    for topic, payload, qos, retain, props in PUBLISHES:
        wire.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
    return wire


def by_lean(loop: Any, protocol: MQTTProtocolVersion = V5) -> tuple[Wire, LeanPublisher]:
    wire = Wire(protocol)
    wire.client._last_mid = 65_532
    lean = LeanPublisher(wire.client, loop)
    lean.attach()
    for topic, payload, qos, retain, props in PUBLISHES:
        lean.publish(topic, payload, qos, retain, props)
    return wire, lean


@pytest.mark.parametrize("protocol", [V5, V311], ids=["mqtt5", "mqtt311"])
def test_the_same_bytes_in_one_send_and_the_same_entries_as_paho(
    loop: Any, protocol: MQTTProtocolVersion
) -> None:
    paho_wire = by_paho(protocol)
    expected = paho_wire.read()
    wire, lean = by_lean(loop, protocol)
    assert wire.read() == b""  # nothing before the end of the loop turn
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert wire.read() == expected
    assert lean.sends == 1
    assert wire.messages() == paho_wire.messages()
    assert [m[0] for m in wire.messages()] == [65_533, 65_535, 1, 2, 3]  # 65,534: QoS 0


def test_pubacks_and_the_resend_after_a_reconnect_are_pahos_own(loop: Any) -> None:
    paho_wire = by_paho()
    paho_wire.read()
    wire, lean = by_lean(loop)
    lean.flush()
    wire.read()
    for w in (paho_wire, wire):  # the broker takes the sample and the reply; 0x87 for one
        w.handle(0x40, b"\xff\xfd")  # 65,533
        w.handle(0x40, b"\x00\x01\x87\x00")  # the reply: refused by the broker's ACL
    # paho also reports a QoS 0 publish as written (65,534, the metrics); the adapter's
    # on_publish ignores those (no size kept), and the lean path does not report them
    assert paho_wire.acked == [(65_534, 0), (65_533, 0), (1, 0x87)]
    assert wire.acked == [(65_533, 0), (1, 0x87)]
    lean.detach()  # the connection is lost
    for session_present in (True, False):  # paho sends them again either way
        paho_wire.reconnect(session_present)
        wire.reconnect(session_present)
        resent = wire.read()
        assert resent == paho_wire.read()
        assert wire.messages() == paho_wire.messages()
        assert [(m[0], m[5]) for m in wire.messages()] == [(65_535, True), (2, True), (3, True)]
        assert resent.count(b"h" * 20_000) == 1
        assert resent[0] == 0x30 | 0x08 | 0x02 | 0x00  # the violation first, DUP, QoS 1


def test_packet_ids_skip_those_still_in_flight(loop: Any) -> None:
    wire = Wire()
    lean = LeanPublisher(wire.client, loop)
    lean.attach()
    first = [lean.publish(f"t/{k}", b"x", 1, False, None) for k in range(5)]
    wire.client._last_mid = 0  # the counter came round: ids 1..5 are still in flight
    assert lean.publish("t/next", b"x", 1, False, None) == 6
    assert first == [1, 2, 3, 4, 5]


def test_refused_topics_enter_and_queue_nothing(loop: Any) -> None:
    wire = Wire()
    lean = LeanPublisher(wire.client, loop)
    lean.attach()
    for topic in ("openspc/char/+/sample", "openspc/#"):
        with pytest.raises(ValueError, match="wildcards"):
            lean.publish(topic, b"x", 1, False, None)
    with pytest.raises(ValueError, match="65,535 at most"):
        lean.publish("t" * 70_000, b"x", 1, False, None)
    assert (wire.client._out_messages, lean.buffered) == ({}, 0)


def test_a_full_socket_keeps_the_rest_in_order_on_pahos_queue_and_asks_for_writable(
    loop: Any,
) -> None:
    wire = Wire()
    wire.ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    registered: list[object] = []
    wire.client.on_socket_register_write = lambda _c, _u, sock: registered.append(sock)
    lean = LeanPublisher(wire.client, loop)
    lean.attach()
    payloads = [bytes([65 + k % 26]) * 50_000 for k in range(3 * FLUSH_BYTES // 50_000)]
    expected = b""
    for k, payload in enumerate(payloads):
        mid = lean.publish(f"t/{k}", payload, 1, False, None)
        expected += encode_publish(f"t/{k}".encode(), payload, 1, False, False, mid, b"\x00")
    lean.flush()
    assert lean.queued >= 2  # the socket took part of the first write, the rest waits
    assert registered == [wire.ours]  # the loop is asked to watch for writable
    received = wire.read()
    while wire.client.want_write():  # as the adapter's _writable does when it is writable
        assert wire.client.loop_write() == MQTTErrorCode.MQTT_ERR_SUCCESS
        received += wire.read()
    last = lean.publish("t/last", b"end", 1, False, None)  # paho's queue is empty: sent at once
    lean.flush()
    received += wire.read()
    assert received == expected + encode_publish(b"t/last", b"end", 1, False, False, last, b"\x00")


def test_bytes_not_written_when_the_connection_is_lost_are_dropped_but_sent_again(
    loop: Any,
) -> None:
    wire = Wire()
    lean = LeanPublisher(wire.client, loop)
    lean.attach()
    lean.publish("t/a", b"1", 1, False, None)
    lean.detach()
    lean.flush()
    assert wire.read() == b""
    assert not lean.live
    wire.reconnect(session_present=True)
    assert wire.read() == encode_publish(b"t/a", b"1", 1, False, True, 1, b"\x00")
