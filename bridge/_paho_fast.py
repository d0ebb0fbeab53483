"""Cheaper paho-mqtt on the bridge's hot path: PUBLISH and PUBACK decoding, message info.

paho-mqtt 2.x builds a fresh :class:`~paho.mqtt.properties.Properties` for every PUBLISH
and PUBACK it decodes, and a ``Properties`` builds two dictionaries of every property
name when created: about 15 us per reading, a seventh of the bridge's whole CPU per reading
(docs/performance.md). Most packets carry no properties at all, so :func:`install` wraps
paho's ``decode_publish`` and ``decode_puback`` with a fast path for exactly that case,
which hands out one shared, empty ``Properties`` (and the one "Success" reason code) instead;
any other packet goes to paho's own decoder unchanged.

paho also gives every message, in and out, its own ``MQTTMessageInfo`` with its own
``threading.Condition`` (about 4 us each), only for ``wait_for_publish``, which the bridge
never calls; :func:`install` makes them share one Condition (``notify_all``: each waiter
still waits for its own message, as paho's loop checks its own flag).

The shared objects are read, never written, by the bridge (``getattr(props, "ResponseTopic",
None)``); code that wants to set properties on a received message must copy them first.
"""

from __future__ import annotations

import threading
from typing import Any

from paho.mqtt import _packet
from paho.mqtt import client as _client
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["install", "installed"]

_V5 = MQTTProtocolVersion.MQTTv5
_NO_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho: no hints
_NO_PUBACK_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]  # paho: no hints
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)

_paho_decode_publish: Any = None
_paho_decode_puback: Any = None


def _decode_publish(header: int, packet: bytes | bytearray, protocol: int) -> Any:
    """paho's ``decode_publish``, without building properties when there are none."""
    if protocol == _V5:
        size = len(packet)
        if size >= 3:
            topic_end = 2 + ((packet[0] << 8) | packet[1])
            qos = (header & 0x06) >> 1
            pos = topic_end
            mid = 0
            if qos:
                pos += 2
                if pos <= size:
                    mid = (packet[topic_end] << 8) | packet[topic_end + 1]
            # a non-empty topic, and a property length of 0 (one byte)
            if topic_end > 2 and pos < size and packet[pos] == 0 and qos != 3:
                return _packet.PublishPacket(
                    dup=(header & 0x08) != 0,
                    qos=qos,
                    retain=(header & 0x01) != 0,
                    topic=bytes(packet[2:topic_end]),
                    mid=mid,
                    properties=_NO_PUBLISH_PROPERTIES,
                    payload=bytes(packet[pos + 1 :]),
                )
    return _paho_decode_publish(header, packet, protocol)


def _decode_puback(header: int, packet: bytes | bytearray, protocol: int) -> Any:
    """paho's ``decode_puback``: a two-byte PUBACK (success, no properties) is common."""
    if protocol == _V5 and len(packet) == 2:
        return _packet.PubackPacket(
            mid=(packet[0] << 8) | packet[1],
            reason=_PUBACK_SUCCESS,
            properties=_NO_PUBACK_PROPERTIES,
        )
    return _paho_decode_puback(header, packet, protocol)


_SHARED_CONDITION = threading.Condition()


class _MessageInfo(_client.MQTTMessageInfo):
    """paho's ``MQTTMessageInfo``, with one Condition for all instead of one each."""

    __slots__ = ()

    def __init__(self, mid: int) -> None:
        self.mid = mid
        self._published = False
        self._condition = _SHARED_CONDITION
        self.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        self._iterpos = 0

    def _set_as_published(self) -> None:
        with self._condition:
            self._published = True
            self._condition.notify_all()


def install() -> None:
    """Put the fast paths in front of paho's decoders (once per process)."""
    global _paho_decode_publish, _paho_decode_puback  # installed once
    if _paho_decode_publish is not None:
        return
    _paho_decode_publish = _packet.decode_publish
    _paho_decode_puback = _packet.decode_puback
    _packet.decode_publish = _decode_publish
    _packet.decode_puback = _decode_puback
    _client.MQTTMessageInfo = _MessageInfo  # type: ignore[misc]  # a compatible subclass


def installed() -> bool:
    return _paho_decode_publish is not None
