"""The lean outbound path: the bridge's PUBLISH packets built once, one ``send`` a loop turn.

paho's ``publish`` makes for every QoS 1 publish an ``MQTTMessage`` with its own
``MQTTMessageInfo``, encodes the packet into a ``bytearray``, puts a dict on its out queue and
asks the loop to watch the socket; when the socket is writable it sends each packet with a
``send`` of its own, then asks the loop to stop watching: 17 % of the loop thread at 10,000
characteristics (docs/performance.md, "Issue 12's targets now"). :class:`LeanPublisher` does
that encode, queue and write part itself, and leaves paho's bookkeeping to paho:

- each packet's head is built by :func:`~bridge._mqtt_codec.publish_head` (the bytes paho's
  ``_send_publish`` writes, MQTT 3.1.1 or 5; tests/unit/test_mqtt_out.py holds it to paho's
  own encoder) and kept, with the payload, in a list;
- at the end of the loop turn (or at :data:`FLUSH_BYTES`) the list is joined and written with
  one ``send`` when paho's out queue is empty; otherwise, and whatever the socket does not
  take at once, it goes onto paho's out queue behind what is there, which asks the loop to
  watch for writable (the adapter's ``_add_writer``/``_writable``): the order of the bytes is
  the order of the calls, whoever writes them;
- each QoS 1 publish is entered in paho's ``_out_messages`` (a plain ``MQTTMessage`` sharing
  one message info: the bridge never waits on one) under a packet id that no publish in
  flight holds, in the state paho gives a sent one (waiting for its PUBACK). So paho's PUBACK
  handling (``_do_on_publish`` and the adapter's ``on_publish``: sizes, the send window,
  refusals) and its reconnect (every unacknowledged QoS 1 publish sent again in order, DUP
  set, whether or not the broker kept the session) treat them exactly as its own;
- it works only while the connection is up (:meth:`LeanPublisher.attach` at an accepted
  CONNACK, :meth:`LeanPublisher.detach` when it is lost, both on the loop); the adapter hands
  publishes to paho otherwise. Bytes not yet written when the connection is lost are dropped,
  as paho drops its out queue then: their publishes are in ``_out_messages`` and go again
  after the next CONNACK.

The adapter (bridge/_mqtt.py, ``MqttOptions.lean_publish``, ``[bridge] lean_publish``) also
writes the PUBACKs of a committed batch through it, so they leave in order with the results.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.properties import Properties

from bridge._mqtt_codec import publish_head

__all__ = ["FLUSH_BYTES", "LeanPublisher"]

FLUSH_BYTES = 1 << 20
"""Bytes gathered before a write without waiting for the end of the loop turn."""
_CHUNK = 0
"""The command byte paho's out queue records for a chunk of the lean path: neither PUBLISH
nor DISCONNECT, the two that paho's writer acts on when they are written."""
_NO_PROPERTIES = b"\x00"  # MQTT 5: a property length of 0
_V5 = MQTTProtocolVersion.MQTTv5
_WAIT_FOR_PUBACK = paho.mqtt_ms_wait_for_puback
_new_message = paho.MQTTMessage.__new__


class _NoWaiterInfo(paho.MQTTMessageInfo):
    """The one message info of every lean publish: nothing waits on it (the bridge never
    calls ``wait_for_publish``), so being told "published" changes nothing."""

    __slots__ = ()

    def _set_as_published(self) -> None:
        pass


_INFO = _NoWaiterInfo(0)


def _free_mid(client: paho.Client, messages: dict[int, paho.MQTTMessage]) -> int:
    """paho's next packet id (its counter, shared with its SUBSCRIBEs; 65,535 wraps to 1)
    that no publish in flight holds (paho would refuse the publish: "queue full"); the
    adapter's send window keeps one free. paho's ``_mid_generate`` without its lock: every
    packet id of the client is taken on the loop's thread."""
    mid = client._last_mid  # noqa: SLF001  paho's counter
    for _ in range(65_535):
        mid = mid + 1 if mid < 65_535 else 1
        if mid not in messages:
            client._last_mid = mid  # noqa: SLF001
            return mid
    raise ValueError("no free packet id: 65,535 publishes in flight")


class LeanPublisher:
    """Builds and writes the PUBLISH packets of one paho client's connection (module
    docstring). Used on the loop's thread only."""

    def __init__(self, client: paho.Client, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop
        self._parts: list[bytes] = []
        self._size = 0
        self._due = False
        self._sock: Any = None
        self._v5 = True
        self.sends = 0  # send calls made
        self.queued = 0  # chunks handed to paho's out queue (socket full, or behind paho's)

    @property
    def live(self) -> bool:
        """Attached to an accepted connection."""
        return self._sock is not None

    @property
    def buffered(self) -> int:
        """Bytes gathered, not yet written."""
        return self._size

    def attach(self) -> None:
        """The connection was accepted (CONNACK): write on its socket from now on."""
        client = self._client
        self._sock = client._sock  # noqa: SLF001  the socket paho writes to (TCP or TLS)
        self._v5 = client._protocol == _V5  # noqa: SLF001  the connection's MQTT version
        self._parts = []
        self._size = 0

    def detach(self) -> None:
        """The connection is lost: drop what was not written (paho sends those publishes
        again after the next CONNACK, as it does with its own out queue)."""
        self._sock = None
        self._parts = []
        self._size = 0

    def publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties | None
    ) -> int:
        """Queue one QoS 0 or 1 PUBLISH for writing; its packet id (0 for QoS 0). Raises
        ValueError where paho's ``publish`` does (a wildcard, a topic or packet too large),
        before anything is entered or queued."""
        topic_bytes = topic.encode()
        if b"+" in topic_bytes or b"#" in topic_bytes:
            raise ValueError("Publish topic cannot contain wildcards.")
        if self._v5:
            packed = (
                _NO_PROPERTIES if properties is None else properties.pack()  # type: ignore[no-untyped-call]  # paho: no hints
            )
        else:
            if not topic_bytes:
                raise ValueError("Invalid topic.")
            packed = None
        client = self._client
        if not qos:
            head = publish_head(topic_bytes, len(payload), 0, retain, False, 0, packed)
            client._mid_generate()  # noqa: SLF001  as paho's publish: the same ids as with paho
            self._write(head, payload)
            return 0
        with client._out_message_mutex:  # noqa: SLF001  paho's reconnect reads them in its thread
            messages = client._out_messages  # noqa: SLF001  paho's in-flight publishes
            mid = _free_mid(client, messages)
            head = publish_head(topic_bytes, len(payload), qos, retain, False, mid, packed)
            message = _new_message(paho.MQTTMessage)
            message.timestamp = 0.0
            message.state = _WAIT_FOR_PUBACK
            message.dup = False
            message.mid = mid
            message._topic = topic_bytes  # noqa: SLF001  as paho's own constructor sets it
            message.payload = payload
            message.qos = qos
            message.retain = retain
            message.info = _INFO
            message.properties = properties
            messages[mid] = message
            client._inflight_messages += 1  # noqa: SLF001  as paho's publish counts a sent one
        self._write(head, payload)
        return mid

    def _write(self, head: bytes, payload: bytes) -> None:
        """A packet's head and payload (empty: none), written after the bytes before them:
        at the end of this loop turn, or now when :data:`FLUSH_BYTES` are gathered."""
        parts = self._parts
        parts.append(head)
        size = self._size + len(head)
        if payload:
            parts.append(payload)
            size += len(payload)
        self._size = size
        if size >= FLUSH_BYTES:
            self.flush()
        elif not self._due:
            self._due = True
            self._loop.call_soon(self._flush_due)

    def write(self, data: bytes) -> None:
        """Bytes to write after those before them (:meth:`_write`)."""
        self._write(data, b"")

    def _flush_due(self) -> None:
        self._due = False
        self.flush()

    def flush(self) -> None:
        """Write what was gathered: one ``send`` when paho's out queue is empty, the rest
        (or all, behind paho's own packets) on paho's queue, which waits for writable."""
        parts = self._parts
        if not parts:
            return
        self._parts = []
        self._size = 0
        client = self._client
        sock = self._sock
        if sock is None or client._sock is not sock:  # noqa: SLF001  lost: see detach()
            return
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if client._out_packet:  # noqa: SLF001  paho's packets first: behind them
            self._queue(client, data)
            return
        sent = self._send(sock, data)
        if sent:
            client._last_msg_out = time.monotonic()  # noqa: SLF001  paho's keepalive clock
        if sent < len(data):
            self._queue(client, data[sent:])

    def _send(self, sock: Any, data: bytes) -> int:
        """As many bytes as the socket takes now (TLS takes a record a call)."""
        sent = 0
        view = memoryview(data)
        try:
            while sent < len(data):
                self.sends += 1
                sent += sock.send(view[sent:])
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            pass  # full: the rest waits on paho's queue for writable
        except OSError:
            pass  # paho's writer meets the error again on the rest and handles the loss
        finally:
            view.release()
        return sent

    def _queue(self, client: paho.Client, data: bytes) -> None:
        self.queued += 1
        client._packet_queue(_CHUNK, data, 0, 0)  # noqa: SLF001  in order with paho's own writes
