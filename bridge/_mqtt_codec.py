"""The bridge's own MQTT 5 hot path: PUBLISH in, PUBACK in and out, without paho per packet.

paho reads a packet in three or four ``recv`` calls (fixed header byte, each byte of the
remaining length, the body), builds a ``PublishPacket``, an ``MQTTMessage`` and (without
bridge/_paho_fast.py) a ``Properties`` for each one, and writes each PUBACK with a ``send``
of its own: 44 % of the bridge's main thread at full speed (docs/performance.md). This module
does the same work once per *read*:

- :class:`PacketSplitter` cuts a byte stream into packets, whatever the reads' boundaries
  (partial packets wait in one buffer; several packets per read are handled in one pass),
  and refuses what paho would refuse or could not bound: a remaining length of more than
  four bytes, or longer than the connection's Maximum Packet Size. Its buffer never holds
  more than one incomplete packet (at most ``max_packet + 5`` bytes).
- :func:`decode_publish` and :func:`decode_puback` give exactly what paho's decoders give
  (property-less packets on a fast path, anything else through paho's own decoder), as
  plain values handed to a sink: no object per packet but the topic and payload bytes.
- :func:`encode_pubacks` writes the PUBACKs of a whole batch as one buffer (one ``send``).
- :func:`publish_head` and :func:`encode_publish` build a PUBLISH (MQTT 3.1.1 or 5, QoS 0 or
  1) byte for byte as paho's ``_send_publish`` does, for the lean outbound path
  (bridge/_mqtt_out.py): the head is built once and the payload is never copied but into the
  one buffer that goes to ``send``.
- :class:`MqttStreamProtocol` is the ``asyncio.Protocol`` that ties them to a transport:
  a malformed stream drops the connection with one clear log line (the broker delivers the
  unacknowledged messages again on the next connection of the persistent session).

The MQTT adapter (bridge/_mqtt.py, ``MqttOptions.lean_inbound``, ``[bridge] lean_inbound``)
reads its connection with :class:`PacketSplitter` and :func:`encode_pubacks`;
docs/performance.md ("The lean MQTT codec") has the design and the figures; the property test
(tests/unit/test_mqtt_codec.py) holds it to paho's decoding.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any, Protocol

from paho.mqtt import _packet
from paho.mqtt.exception import MalformedPacket, MQTTException
from paho.mqtt.properties import Properties

__all__ = [
    "MAX_PACKET_LIMIT",
    "MqttStreamProtocol",
    "PacketSink",
    "PacketSplitter",
    "StreamFault",
    "decode_puback",
    "decode_publish",
    "encode_pubacks",
    "encode_publish",
    "publish_head",
]

log = logging.getLogger("openspc.mqtt")

MAX_PACKET_LIMIT = 268_435_455
"""The largest remaining length MQTT can express (four bytes of varint)."""

PUBLISH = 0x30
PUBACK = 0x40

_paho_decode_publish: Any = _packet.decode_publish
_paho_decode_puback: Any = _packet.decode_puback


class StreamFault(Exception):
    """The stream cannot be read on: the connection is to be dropped."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} (at byte {offset} of the connection)")
        self.reason = reason
        self.offset = offset


class PacketSink(Protocol):
    """Where the decoded packets go (the MQTT adapter)."""

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
        """A PUBLISH; ``properties`` None when it carries none."""

    def puback(self, mid: int, reason: int, properties: Properties | None) -> None:
        """A PUBACK of one of the bridge's own publishes."""

    def other(self, header: int, body: bytes) -> None:
        """Any other packet (CONNACK, SUBACK, PINGRESP, DISCONNECT...): paho's business."""


def decode_publish(header: int, body: bytes | bytearray | memoryview, sink: PacketSink) -> None:
    """One MQTT 5 PUBLISH body (after the fixed header) to ``sink``, as paho decodes it.

    Raises :class:`MalformedPacket` where paho's ``decode_publish`` does, and for QoS 3
    (which paho's client refuses after decoding)."""
    if _publish_at(header, body, 0, len(body), sink):
        return
    packet = _paho_decode_publish(header, bytes(body), 5)  # properties, or a fault: paho's
    sink.publish(
        bytes(packet.topic),
        bytes(packet.payload),
        packet.qos,
        packet.dup,
        packet.retain,
        packet.mid,
        packet.properties,
    )


def _publish_at(
    header: int, src: bytes | bytearray | memoryview, start: int, stop: int, sink: PacketSink
) -> bool:
    """The common PUBLISH, whose body is ``src[start:stop]``: a topic, a packet id (QoS 1)
    and a property length of 0 (one byte), to ``sink``; False for any other (nothing
    done: :func:`decode_publish` takes it to paho's decoder). Raises
    :class:`MalformedPacket` for QoS 3."""
    qos = (header & 0x06) >> 1
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    if stop - start < 3:
        return False
    topic_end = start + 2 + ((src[start] << 8) | src[start + 1])
    pos = topic_end + 2 if qos else topic_end
    if pos >= stop or src[pos] != 0:
        return False
    mid = (src[topic_end] << 8) | src[topic_end + 1] if qos else 0
    sink.publish(
        bytes(src[start + 2 : topic_end]),
        bytes(src[pos + 1 : stop]),
        qos,
        (header & 0x08) != 0,
        (header & 0x01) != 0,
        mid,
        None,
    )
    return True


_PUBACK_REASONS = frozenset((0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99))
"""The reason codes MQTT 5 allows in a PUBACK (any other: paho's decoder refuses it)."""


def decode_puback(header: int, body: bytes | bytearray | memoryview, sink: PacketSink) -> None:
    """One MQTT 5 PUBACK body to ``sink``, as paho decodes it (reason 0 when absent)."""
    size = len(body)
    if size == 2:
        sink.puback((body[0] << 8) | body[1], 0, None)
        return
    if (size == 3 or (size == 4 and body[3] == 0)) and body[2] in _PUBACK_REASONS:
        # a reason code and no properties (Mosquitto 2.0 sends every PUBACK so): no paho
        # objects (a ReasonCode and a Properties each cost more than the rest of the ack)
        sink.puback((body[0] << 8) | body[1], body[2], None)
        return
    packet = _paho_decode_puback(header, bytes(body), 5)
    sink.puback(packet.mid, packet.reason.value, packet.properties)


def encode_pubacks(mids: list[int]) -> bytes:
    """The PUBACKs (success, no properties: 4 bytes each) of ``mids``, as one buffer."""
    out = bytearray(4 * len(mids))
    at = 0
    for mid in mids:
        if not 0 < mid < 65536:
            raise ValueError(f"packet id {mid} is not 1..65535")
        out[at] = PUBACK
        out[at + 1] = 2
        out[at + 2] = mid >> 8
        out[at + 3] = mid & 0xFF
        at += 4
    return bytes(out)


_EMPTY = b""
_HEAD_1 = struct.Struct("!BBH")  # fixed header with a 1-byte remaining length, topic length
_HEAD_2 = struct.Struct("!BBBH")
_HEAD_3 = struct.Struct("!BBBBH")
_HEAD_4 = struct.Struct("!BBBBBH")
_PACKET_ID = struct.Struct("!H")


def publish_head(
    topic: bytes,
    payload_size: int,
    qos: int,
    retain: bool,
    dup: bool,
    mid: int,
    properties: bytes | None,
) -> bytes:
    """Everything of a PUBLISH before its payload, as paho's ``_send_publish`` writes it.

    ``properties`` is the packed property block of MQTT 5 (``b"\\x00"`` when there are none;
    ``Properties.pack()`` otherwise), None for MQTT 3.1.1 (no such block). ``mid`` is written
    for QoS 1 only. Raises ValueError for a packet MQTT cannot express (a remaining length over
    268,435,455 bytes, a topic over 65,535 bytes, a packet id outside 1..65535)."""
    size = len(topic)
    if size > 65535:
        raise ValueError(f"topic of {size} bytes: MQTT takes 65,535 at most")
    if properties is None:
        properties = _EMPTY
    remaining = 2 + size + payload_size + len(properties)
    first = PUBLISH | (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
    if qos:
        if not 0 < mid < 65536:
            raise ValueError(f"packet id {mid} is not 1..65535")
        remaining += 2
        packet_id = _PACKET_ID.pack(mid)
    else:
        packet_id = _EMPTY
    if remaining < 0x80:
        fixed = _HEAD_1.pack(first, remaining, size)
    elif remaining < 0x4000:
        fixed = _HEAD_2.pack(first, (remaining & 0x7F) | 0x80, remaining >> 7, size)
    elif remaining < 0x200000:
        fixed = _HEAD_3.pack(
            first,
            (remaining & 0x7F) | 0x80,
            ((remaining >> 7) & 0x7F) | 0x80,
            remaining >> 14,
            size,
        )
    elif remaining <= MAX_PACKET_LIMIT:
        fixed = _HEAD_4.pack(
            first,
            (remaining & 0x7F) | 0x80,
            ((remaining >> 7) & 0x7F) | 0x80,
            ((remaining >> 14) & 0x7F) | 0x80,
            remaining >> 21,
            size,
        )
    else:
        raise ValueError(f"PUBLISH of {remaining} bytes: MQTT takes {MAX_PACKET_LIMIT} at most")
    return b"".join((fixed, topic, packet_id, properties))


def encode_publish(
    topic: bytes,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    mid: int,
    properties: bytes | None,
) -> bytes:
    """A whole PUBLISH packet (:func:`publish_head` and the payload)."""
    return publish_head(topic, len(payload), qos, retain, dup, mid, properties) + payload


class PacketSplitter:
    """Cuts an MQTT byte stream into packets; bounded by ``max_packet``."""

    def __init__(self, sink: PacketSink, max_packet: int = MAX_PACKET_LIMIT) -> None:
        if not 2 <= max_packet <= MAX_PACKET_LIMIT:
            raise ValueError(f"max_packet {max_packet} is not 2..{MAX_PACKET_LIMIT}")
        self.sink = sink
        self.max_packet = max_packet
        self._buffer = bytearray()
        self._consumed = 0  # bytes of the stream before the buffer (for messages)

    @property
    def buffered(self) -> int:
        """Bytes held: one incomplete packet at most."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Hand every whole packet in ``data`` (and what was held before it) to the sink;
        returns how many. Raises :class:`StreamFault` for a stream that cannot go on.

        With nothing held, a read (``bytes``) is cut up where it is: only what is left of
        it when the loop ends (an incomplete packet, or the packets behind one the sink did
        not take) is copied into the buffer (docs/performance.md)."""
        buf = self._buffer
        src: bytes | bytearray
        if buf or type(data) is not bytes:
            buf += data
            src = buf
        else:
            src = data
        end = len(src)
        at = 0
        count = 0
        try:
            while end - at >= 2:
                header = src[at]
                length = src[at + 1]
                pos = at + 2
                if length & 0x80:  # a remaining length of two bytes or more
                    found = _remaining_length(src, at + 1, end)
                    if found is None:
                        break  # the remaining length is not all here yet
                    length, pos = found
                    if length < 0:
                        raise StreamFault(
                            "malformed remaining length (more than four bytes)",
                            self._consumed + at,
                        )
                if length > self.max_packet:
                    raise StreamFault(
                        f"packet of {length} bytes, over the maximum of {self.max_packet}",
                        self._consumed + at,
                    )
                stop = pos + length
                if stop > end:
                    break  # the body is not all here yet
                self._packet(header, src, pos, stop, at)
                at = stop
                count += 1
        finally:
            if src is buf:
                if at:
                    del buf[:at]
            elif at < end:
                buf += memoryview(src)[at:]
            self._consumed += at
        return count

    def _packet(self, header: int, src: bytes | bytearray, pos: int, stop: int, at: int) -> None:
        """The packet whose body is ``src[pos:stop]`` to the sink."""
        kind = header & 0xF0
        try:
            if kind == PUBLISH and _publish_at(header, src, pos, stop, self.sink):
                return
            body = memoryview(src)[pos:stop]
            try:
                if kind == PUBLISH:
                    decode_publish(header, body, self.sink)
                elif kind == PUBACK:
                    decode_puback(header, body, self.sink)
                else:
                    self.sink.other(header, bytes(body))
            finally:
                body.release()
        except MQTTException as exc:  # MalformedPacket, or a property paho refused
            raise StreamFault(
                f"malformed packet 0x{header:02x} of {stop - pos} bytes: {exc}",
                self._consumed + at,
            ) from exc


def _remaining_length(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """The remaining length at ``pos`` (1 to 4 bytes, 7 bits each, low first) and where the
    body begins; None while incomplete; a length of -1 when malformed (a fifth byte)."""
    length = 0
    shift = 0
    while pos < end:
        byte = buf[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return length, pos
        shift += 7
        if shift == 28:
            return -1, pos
    return None


class MqttStreamProtocol(asyncio.Protocol):
    """An ``asyncio.Protocol`` reading the bridge's connection with a :class:`PacketSplitter`.

    A fault in the stream is said once (``log.error``) and the connection aborted; nothing
    of it is acknowledged, so the broker delivers it again on the next connection.
    """

    def __init__(self, sink: PacketSink, max_packet: int = MAX_PACKET_LIMIT) -> None:
        self.splitter = PacketSplitter(sink, max_packet)
        self.transport: asyncio.Transport | None = None
        self.fault: StreamFault | None = None
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.fault is not None:
            return  # dropped already; what is still in flight is discarded
        try:
            self.splitter.feed(data)
        except StreamFault as exc:
            self.fault = exc
            log.error("MQTT connection dropped: %s", exc)  # one clear line, no traceback
            self.splitter = PacketSplitter(self.splitter.sink, self.splitter.max_packet)
            if self.transport is not None:
                self.transport.abort()

    def send_pubacks(self, mids: list[int]) -> None:
        """The PUBACKs of a committed batch, in one write."""
        if self.transport is not None and self.fault is None and mids:
            self.transport.write(encode_pubacks(mids))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.lost.set()
