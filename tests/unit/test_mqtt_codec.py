"""The lean MQTT codec (bridge/_mqtt_codec.py) held to paho's own decoding.

The property: any byte stream, cut at any points into reads, gives exactly the packets a
plain reading of the whole stream with paho's decoders gives, up to the first fault; at a
fault the connection is dropped once with one log line; the splitter never holds more than
one incomplete packet; and ``feed`` always returns (pytest's timeout guards the "never hangs").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge import _mqtt_codec, _paho_fast
from bridge._mqtt_codec import (
    MqttStreamProtocol,
    PacketSplitter,
    StreamFault,
    encode_pubacks,
)

# paho's own decoders, whether or not bridge/_paho_fast.py was installed in this process
PAHO_PUBLISH: Any = _paho_fast._paho_decode_publish or _packet.decode_publish
PAHO_PUBACK: Any = _paho_fast._paho_decode_puback or _packet.decode_puback
MAX = 300  # the Maximum Packet Size of these tests: small, so that "oversized" is common


def props_key(props: Properties | None) -> Any:
    return None if props is None or props.isEmpty() else sorted(props.json().items())


class Recorder:
    """A sink that keeps what it was handed, normalised for comparison with paho."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def publish(
        self,
        topic: bytes,
        payload: bytes,
        qos: int,
        dup: bool,
        retain: bool,
        mid: int,
        properties: Properties | None,
    ) -> None:
        assert type(topic) is bytes
        assert type(payload) is bytes
        self.events.append(
            ("publish", topic, payload, qos, dup, retain, mid, props_key(properties))
        )

    def puback(self, mid: int, reason: int, properties: Properties | None) -> None:
        self.events.append(("puback", mid, reason, props_key(properties)))

    def other(self, header: int, body: bytes) -> None:
        self.events.append(("other", header, body))


def reference(stream: bytes, max_packet: int = MAX) -> tuple[list[tuple[Any, ...]], bool]:
    """The packets of the whole stream read at once with paho's decoders, and whether the
    stream has a fault in its received part (after which nothing is read)."""
    events: list[tuple[Any, ...]] = []
    at = 0
    while len(stream) - at >= 2:
        header, pos, length, shift = stream[at], at + 1, 0, 0
        while True:
            if pos >= len(stream):
                return events, False
            byte = stream[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift == 28:  # paho refuses a fifth byte; no four-byte prefix can end well
                return events, True
        if length > max_packet:
            return events, True
        if len(stream) - pos < length:
            return events, False
        body = stream[pos : pos + length]
        try:
            if header & 0xF0 == 0x30:
                p = PAHO_PUBLISH(header, body, 5)
                if p.qos == 3:  # paho's client refuses it after decoding
                    return events, True
                events.append(
                    (
                        "publish",
                        bytes(p.topic),
                        bytes(p.payload),
                        p.qos,
                        p.dup,
                        p.retain,
                        p.mid,
                        props_key(p.properties),
                    )
                )
            elif header & 0xF0 == 0x40:
                a = PAHO_PUBACK(header, body, 5)
                events.append(("puback", a.mid, a.reason.value, props_key(a.properties)))
            else:
                events.append(("other", header, body))
        except MQTTException:
            return events, True
        at = pos + length
    return events, False


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(header: int, body: bytes) -> bytes:
    return bytes([header]) + varint(len(body)) + body


# MQTT strings hold no NUL and no U+FEFF (paho packs them, then refuses them when decoding:
# MQTT-1.5.4-2 and -3; a good stream must be one paho decodes)
mqtt_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufeff"))


@st.composite
def properties(draw: st.DrawFn, kind: int) -> bytes:
    props = Properties(kind)
    if kind == PacketTypes.PUBLISH:
        if draw(st.booleans()):
            props.ResponseTopic = draw(mqtt_text.filter(bool).map(lambda t: t[:12]))
        if draw(st.booleans()):
            props.CorrelationData = draw(st.binary(max_size=8))
    elif draw(st.booleans()):
        props.ReasonString = draw(mqtt_text.map(lambda t: t[:12]))
    if draw(st.booleans()):
        props.UserProperty = (draw(mqtt_text)[:5], draw(mqtt_text)[:5])
    return bytes(props.pack())


@st.composite
def publishes(draw: st.DrawFn) -> bytes:
    qos = draw(st.integers(0, 2))
    header = 0x30 | (draw(st.booleans()) << 3) | (qos << 1) | draw(st.booleans())
    topic = draw(st.binary(max_size=24))
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += draw(st.integers(1, 65535)).to_bytes(2, "big")
    body += draw(st.one_of(st.just(b"\x00"), properties(PacketTypes.PUBLISH)))
    body += draw(st.binary(max_size=80))
    return packet(header, body)


@st.composite
def pubacks(draw: st.DrawFn) -> bytes:
    body = draw(st.integers(1, 65535)).to_bytes(2, "big")
    if draw(st.booleans()):
        body += bytes([draw(st.sampled_from([0, 16, 128, 131, 135, 144, 145, 151, 153]))])
        if draw(st.booleans()):
            body += draw(properties(PacketTypes.PUBACK))
    return packet(0x40, body)


others = st.sampled_from(
    [b"\xd0\x00", packet(0x20, b"\x00\x00\x00"), packet(0x90, b"\x00\x01\x00\x01")]
)
oversized = st.integers(MAX + 1, _mqtt_codec.MAX_PACKET_LIMIT).map(lambda n: b"\x30" + varint(n))
bad_varint = st.binary(min_size=1, max_size=3).map(lambda tail: b"\x30\xff\xff\xff\xff" + tail)
# a PUBLISH whose topic length runs past its body, or QoS 3: paho refuses both
bad_publish = st.sampled_from(
    [packet(0x32, b"\x00\x09ab"), packet(0x36, b"\x00\x01a\x00\x01\x00x")]
)
garbage = st.binary(min_size=1, max_size=40)

good_parts = st.one_of(publishes(), pubacks(), others)
any_parts = st.one_of(
    publishes(), publishes(), pubacks(), others, oversized, bad_varint, bad_publish, garbage
)


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(stream), *(p % (len(stream) + 1) for p in points)})
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


def run_splitter(chunks: list[bytes]) -> tuple[Recorder, StreamFault | None, PacketSplitter]:
    sink = Recorder()
    splitter = PacketSplitter(sink, MAX)
    for chunk in chunks:
        try:
            splitter.feed(chunk)
        except StreamFault as fault:
            return sink, fault, splitter
        assert splitter.buffered <= MAX + 5  # never more than one incomplete packet
    return sink, None, splitter


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(good_parts, max_size=12), st.lists(st.integers(0, 10_000), max_size=12))
def test_good_streams_cut_anywhere_decode_as_paho_does(
    parts: list[bytes], points: list[int]
) -> None:
    stream = b"".join(parts)
    sink, fault, splitter = run_splitter(cut(stream, points))
    expected, faulty = reference(stream)
    assert fault is None
    assert not faulty
    assert sink.events == expected
    assert len(sink.events) == len(parts)
    assert splitter.buffered == 0


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(any_parts, max_size=10),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.booleans(),
)
def test_any_stream_decodes_as_paho_or_drops_the_connection(
    parts: list[bytes], points: list[int], truncate: bool
) -> None:
    stream = b"".join(parts)
    if truncate and stream:  # the connection ends in the middle of something
        stream = stream[: points[0] % len(stream)] if points else stream[:-1]
    sink, fault, splitter = run_splitter(cut(stream, points))
    expected, faulty = reference(stream)
    assert sink.events == expected
    assert (fault is not None) == faulty
    if fault is None:  # what is held is exactly the incomplete tail, and bounded
        consumed = len(stream) - splitter.buffered
        assert reference(stream[:consumed]) == (expected, False)
        assert splitter.buffered <= MAX + 5


class Refused(Exception):
    """What the refusing sink raises: the adapter's inbound bound (``_Full``)."""


class RefusingRecorder(Recorder):
    """Refuses the publishes whose turn is in ``refusals`` (counted over every attempt), as
    the adapter does at its inbound bound: the packet stays in the splitter."""

    def __init__(self, refusals: set[int]) -> None:
        super().__init__()
        self.refusals = refusals
        self.attempts = 0

    def publish(self, *args: Any) -> None:
        self.attempts += 1
        if self.attempts in self.refusals:
            raise Refused
        super().publish(*args)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(good_parts, max_size=12),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.sets(st.integers(1, 30), max_size=8),
)
def test_a_publish_the_sink_refuses_waits_in_the_splitter_in_order(
    parts: list[bytes], points: list[int], refusals: set[int]
) -> None:
    # a read cut up where it is (nothing held before it) keeps what follows a refused
    # publish, as a read appended to the buffer does (docs/performance.md)
    stream = b"".join(parts)
    sink = RefusingRecorder(refusals)
    splitter = PacketSplitter(sink, MAX)
    for chunk in cut(stream, points):
        with contextlib.suppress(Refused):
            splitter.feed(chunk)
    for _ in range(len(refusals) + 1):  # the adapter reads on once acks make room
        if splitter.buffered:
            with contextlib.suppress(Refused):
                splitter.feed(b"")
    assert sink.events == reference(stream)[0]
    assert splitter.buffered == 0


def test_paho_publish_objects_are_the_reference_too() -> None:
    """A PUBLISH with properties takes paho's path; without, the fast one: both as paho."""
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "openspc/reply/kim/1"
    props.CorrelationData = b"\x01\x02"
    with_props = packet(0x32, b"\x00\x03a/b\x12\x34" + props.pack() + b'{"value": 1}')
    plain = packet(0x3B, b"\x00\x03a/b\x00\x07\x00" + b"10.5")
    sink, fault, _ = run_splitter([with_props + plain])
    assert fault is None
    assert sink.events == [
        (
            "publish",
            b"a/b",
            b'{"value": 1}',
            1,
            False,
            False,
            0x1234,
            sorted({"ResponseTopic": "openspc/reply/kim/1", "CorrelationData": "0102"}.items()),
        ),
        ("publish", b"a/b", b"10.5", 1, True, True, 7, None),
    ]
    assert sink.events == reference(with_props + plain)[0]


def test_pubacks_encode_as_paho_decodes_them() -> None:
    stream = encode_pubacks([1, 258, 65535])
    assert stream == b"\x40\x02\x00\x01\x40\x02\x01\x02\x40\x02\xff\xff"
    assert reference(stream) == ([("puback", m, 0, None) for m in (1, 258, 65535)], False)
    with pytest.raises(ValueError, match="packet id 0"):
        encode_pubacks([0])


def test_an_oversized_packet_is_refused_at_its_header_without_waiting_for_it() -> None:
    splitter = PacketSplitter(Recorder(), 1000)
    with pytest.raises(StreamFault, match="over the maximum of 1000"):
        splitter.feed(b"\x30" + varint(200_000_000))  # 200 MB announced, not one byte more
    assert splitter.buffered <= 5


async def test_a_real_socket_cut_anywhere_then_a_fault_drops_it_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through asyncio's own transport: packets written a few bytes at a time arrive whole,
    and a malformed remaining length aborts the connection, said once."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    sink = Recorder()
    transport, protocol = await loop.create_connection(
        lambda: MqttStreamProtocol(sink, MAX), sock=ours
    )
    try:
        stream = packet(0x32, b"\x00\x01t\x00\x05\x00hello") + encode_pubacks([9]) + b"\xd0\x00"
        theirs.setblocking(False)
        for k in range(0, len(stream), 3):
            theirs.send(stream[k : k + 3])
            await asyncio.sleep(0.001)
        async with asyncio.timeout(5):
            while len(sink.events) < 3:  # noqa: ASYNC110  # the sink is plain code, no event
                await asyncio.sleep(0.005)
        assert sink.events == reference(stream)[0]
        protocol.send_pubacks([5, 6])
        async with asyncio.timeout(5):
            while True:
                try:
                    got = theirs.recv(100)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.005)
        assert got == encode_pubacks([5, 6])
        with caplog.at_level(logging.ERROR, logger="openspc.mqtt"):
            theirs.send(b"\x30\x80\x80\x80\x80\x01" + b"x" * 50)
            async with asyncio.timeout(5):
                await protocol.lost.wait()
        assert [r.getMessage() for r in caplog.records] == [
            "MQTT connection dropped: malformed remaining length (more than four bytes)"
            f" (at byte {len(stream)} of the connection)"
        ]
        assert len(sink.events) == 3
    finally:
        transport.close()
        theirs.close()
