"""A small typed asyncio adapter around paho-mqtt 2.x (MQTT 5, QoS 1, manual acks).

Why not aiomqtt: aiomqtt 2.x acknowledges QoS 1 messages as soon as they arrive, and the
bridge must not acknowledge a reading before it is durably stored. So:

- paho's socket is driven by the asyncio loop itself (``add_reader``/``add_writer``,
  ``loop_misc`` every second), as aiomqtt does, rather than by paho's own thread: with a
  thread, every publish and every ack woke that thread through a socket pair and the two
  threads fought over the GIL, which cost two thirds of the throughput. Only the blocking
  ``connect`` runs in an executor. The adapter reconnects with back-off (1 s doubling to
  30 s) and resubscribes on every connect;
- with ``MqttOptions.lean_inbound`` the adapter reads the socket itself, in large reads,
  and splits PUBLISH and PUBACK packets with bridge/_mqtt_codec.py (no paho object per
  packet); every other packet (CONNACK, SUBACK, PINGRESP, DISCONNECT) is handed to paho as if
  paho had read it, and the PUBACKs of a committed batch go out as one write on paho's out
  queue (docs/performance.md, "The lean MQTT codec");
- every message is appended to an :class:`Inbox` (a bounded deque); subscriptions ask for
  no retained messages (a retained reading or command would be taken again on every
  connect: readings and commands are events, not state);
- each delivery (:class:`~bridge.pipeline.Inbound`) carries its own ``.ack()``, which the
  pipeline calls after the batch that held it committed; it comes to :meth:`MqttClient.ack`,
  which sends the PUBACK only when the :class:`~bridge.pipeline.AckTracker` says so: a
  message received on an earlier connection is never acked on a later one (its ``mid``
  means nothing there; the broker redelivers it from the persistent session). The adapter
  tells the tracker of every connection accepted (``connected``) or lost (``lost``): the
  tracker, not the adapter, owns the generations and the packet ids;
- back-pressure on QoS 1 is MQTT 5's Receive Maximum, kept by the adapter itself too:
  Mosquitto 2.0.11 honours it only until the first PUBACK, so at that many unacknowledged
  messages the adapter stops reading its socket (the broker queues) and reads again below
  three quarters (docs/reliability.md);
- ``publish`` builds the PUBLISH packets itself while the connection is up
  (``MqttOptions.lean_publish``; bridge/_mqtt_out.py): the packets of one loop turn, and the
  PUBACKs of a committed batch before them, go out in one ``send``, and what the socket does
  not take waits in order on paho's out queue for writable; paho keeps its bookkeeping of
  every QoS 1 publish (PUBACKs, reconnect and resend). Without it, and while disconnected,
  paho's ``publish`` (non-blocking: packets are written when the socket is writable).
  At most ``window`` QoS 1 publishes are in flight unacknowledged, the rest are held in
  order. A publish of retained *state* (``coalesce=True``: history, alarms, limits,
  meta, status) replaces a held one of the same topic instead of queueing behind it;
  events (samples, violations, acks, replies, errors) are never dropped or reordered.
  :meth:`MqttClient.wait_window` makes the pipeline wait while more than ``outbound_max``
  publishes are outstanding (in flight + held), so memory stays bounded when the broker
  takes publishes slower than readings come (docs/bridge.md, "Bounded outbound");
- the bridge's own status (``MqttOptions.status_topic``): the Will and the "online" of each
  connection carry its time; the adapter listens to the topic and answers a stale "offline"
  (a late Will) with "online", and notices another client's "online" there (a second
  bridge with our client id); docs/bridge.md "Status" and "A second bridge";
- refusals: a CONNACK refusal before the first connection raises from
  :meth:`MqttClient.wait_answer`; a publish the broker refuses (MQTT 5 PUBACK >= 0x80, its
  ACL) is counted, reported once per topic and published again with back-off
  (docs/bridge.md "Refusals by the broker").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge._mqtt_codec import PacketSplitter, StreamFault, encode_pubacks
from bridge._mqtt_out import LeanPublisher
from bridge.errors import BrokerRefused, BrokerUnavailable, ClientIdInUse
from bridge.pipeline import AckTracker, Inbound, Inbox

__all__ = ["Inbound", "Inbox", "MqttClient", "MqttOptions"]

log = logging.getLogger("openspc.mqtt")


def _drain_before_close(sock: Any, wait_s: float = 1.0) -> None:
    """Half-close after our DISCONNECT and read until the broker closes its side.

    Closing a socket that still holds unread bytes (messages the broker sent while the
    bridge was stopping) makes the kernel send a RST instead of a FIN, and the broker can
    lose the DISCONNECT in front of it: it then publishes the Last Will (status offline with
    the start time) after a clean stop. Bounded by ``wait_s``; errors end it quietly.
    """
    deadline = time.monotonic() + wait_s
    with contextlib.suppress(OSError, ValueError):
        sock.shutdown(socket.SHUT_WR)
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            if not readable or not sock.recv(65536):
                return


def _packet_size(topic: str, payload: bytes) -> int:
    """A PUBLISH's size, generously: header, topic, packet id, properties, payload."""
    return 5 + 2 + len(topic.encode()) + 2 + 64 + len(payload)


def paho_handle(client: paho.Client, header: int, body: bytes) -> MQTTErrorCode:
    """A whole packet read by someone else (the lean codec) handed to paho's own handler,
    as if paho had read it; paho's read state is left empty again."""
    client._in_packet = {  # noqa: SLF001  paho's packet being read, complete
        "command": header,
        "have_remaining": 1,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(body),
        "packet": bytearray(body),
        "to_process": 0,
        "pos": 0,
    }
    try:
        rc: MQTTErrorCode = client._packet_handle()  # noqa: SLF001
    finally:
        client._in_packet = {  # noqa: SLF001
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
    return rc


def _outgoing(client: paho.Client, mid: int) -> paho.MQTTMessage | None:
    """The publish paho still holds for packet id ``mid`` (its topic, payload, options)."""
    # SLF001: paho keeps its in-flight publishes only in _out_messages; looking one up by
    # mid is O(1), where keeping our own copy of every publish would double the memory
    return client._out_messages.get(mid)  # noqa: SLF001  see above


SESSION_EXPIRY_S = 7 * 24 * 3600
TAKEOVER_WINDOW_S = 10.0
"""A connection lost this soon after it was made, when another client had said "online" on
the bridge's status topic just before, was taken back by that client: a second bridge with
the same client id that was there first (docs/bridge.md "A second bridge")."""
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
RETRY_QUEUE_MAX = 1000
"""Publishes the broker refused, kept to be tried again; beyond this the oldest are dropped."""
READS_PER_WAKE = 2000
"""Packets read per readable event at most, so a flood cannot starve the loop."""
LEAN_READ_BYTES = 256 * 1024
"""Bytes per ``recv`` on the lean inbound path (``MqttOptions.lean_inbound``)."""
LEAN_READS_PER_WAKE = 8
"""Reads per readable event at most on the lean path (2 MiB), so a flood cannot starve the
loop."""
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)
_PUBACK_CODES: dict[int, ReasonCode] = {0: _PUBACK_SUCCESS}
"""PUBACK reason codes by value, made once (Mosquitto sends 0x10 "No matching subscribers"
for every publish nobody subscribes to); at most the nine that MQTT 5 allows."""
_NO_PUBACK_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]  # paho: no hints


@dataclass
class MqttOptions:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: bool = False
    keepalive: int = 60
    receive_maximum: int = 10_000
    window: int = 10_000  # QoS 1 publishes handed to paho unacknowledged, at most
    outbound_max: int = 10_000  # outstanding (in flight + held) before the pipeline waits
    # The bridge's own retained status (docs/bridge.md "Status"): the Last Will says
    # offline and the first publish of every connection online, both with the time of
    # connecting; the adapter listens to the topic and says online again when a stale
    # "offline" arrives while it is connected (a late Will).
    status_topic: str | None = None
    # (online, timestamp of the connection) -> payload
    status_payload: Callable[[bool, datetime], bytes] | None = None
    subscriptions: Sequence[str] = field(default_factory=tuple)
    # the lean inbound path (bridge/_mqtt_codec.py; docs/performance.md): PUBLISH and
    # PUBACK read by the adapter itself, PUBACKs of a batch in one write; off: paho reads
    lean_inbound: bool = False
    # the lean outbound path (bridge/_mqtt_out.py; docs/performance.md): PUBLISH packets
    # built by the adapter and a loop turn's packets written in one send; off: paho's publish
    lean_publish: bool = True
    # with lean_inbound: the Maximum Packet Size announced in CONNECT and the splitter's bound
    max_packet: int = 16 * 1024 * 1024
    # a publishing connection of a SplitLink ("results", "history"; bridge/_split_link.py): named
    # in its log lines; "" for the bridge's main (readings) connection
    role: str = ""


class _LeanSink:
    """The :class:`~bridge._mqtt_codec.PacketSplitter`'s sink: the adapter's lean path."""

    __slots__ = ("other", "puback", "publish")

    def __init__(self, client: MqttClient) -> None:
        self.publish = client._lean_publish  # noqa: SLF001  the adapter's own helpers
        self.puback = client._lean_puback  # noqa: SLF001
        self.other = client._lean_other  # noqa: SLF001


class _Full(Exception):
    """A PUBLISH past the inbound bound: left in the splitter's buffer until acks come."""


class _PahoFailed(Exception):
    """paho's handling of a packet handed to it returned an error code."""

    def __init__(self, rc: MQTTErrorCode) -> None:
        super().__init__(paho.error_string(rc))
        self.rc = rc


class MqttClient:
    """The bridge's one MQTT connection. ``start()``, then ``ack``/``publish``, ``stop()``."""

    def __init__(self, options: MqttOptions, inbox: Inbox, acks: AckTracker | None = None) -> None:
        self.options = options
        self.inbox = inbox
        # connection generations and packet ids taken but not acked: the pipeline's, shared
        self.acks = acks if acks is not None else AckTracker()
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()  # the opposite of connected, to await
        self.disconnected.set()
        self.subscribed = asyncio.Event()  # set on the first SUBACK after each connect
        self.on_connect: Callable[[], None] | None = None  # called on the loop
        self.last_error: str = ""
        self.aborted = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._filters: list[str] = list(options.subscriptions)
        self._retained_filters: set[str] = set()  # add_subscription(retained=True)
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._misc: asyncio.Task[None] | None = None
        self._lost: asyncio.Event = asyncio.Event()
        self._sock: Any = None
        self._init_connects()
        self._init_status()
        self._init_outbound(options)
        self._init_inbound(options)
        self._client = self._paho_client(options)

    def _init_connects(self) -> None:
        """CONNACKs: accepted ones, and the reason of the last refusal (wrong password...)."""
        self.connections = 0
        self.refusal: str | None = None
        self.connects_refused = 0
        self._answered = asyncio.Event()  # any CONNACK, or a failed attempt
        # a second client with our id (docs/bridge.md "A second bridge")
        self.taken_over: ClientIdInUse | None = None
        self.fatal = asyncio.Event()
        self._connected_at = 0.0

    def _init_status(self) -> None:
        """The status topic: this connection's time (in its Will and its "online"), the
        times of this process's earlier connections, whether our own "online" has come back
        to us (so anything after it is news), another client's "online" found retained."""
        self._stamp: datetime | None = None
        self._own_stamps: deque[datetime] = deque(maxlen=64)
        self._echoed = False
        self._status_final = False
        self.status_checked = asyncio.Event()
        self.foreign_online: str | None = None
        self.status_reasserted = 0

    def _init_outbound(self, options: MqttOptions) -> None:
        """Publishes: the send window, the held queue, refusals by the broker."""
        # handed to paho unacknowledged at most: the broker's Receive Maximum (from CONNACK),
        # and never more than ``window``: paho's message ids are 16 bits, so at 65,535 in
        # flight the next publish fails with "Message queue full"; the rest waits in _held
        self._send_limit = min(65_535, options.window)
        self._max_packet: int | None = None  # the broker's Maximum Packet Size (from CONNACK)
        self.refused = 0  # publishes too large for the broker, not sent
        # publishes the broker refused (MQTT 5 PUBACK reason >= 0x80, e.g. 0x87 Not
        # authorized by its ACL): counted, reported, tried again with back-off
        self.denied = 0
        self.denied_dropped = 0  # refused publishes dropped from a full retry queue
        self.first_denial: tuple[str, str] | None = None  # (topic, reason), for start-up
        # (topic, reason), once per topic and episode
        self.on_denied: Callable[[str, str], None] | None = None
        self._denied_topics: set[str] = set()
        self._retry_retained: dict[str, tuple[bytes, int, Properties | None]] = {}
        self._retry_events: deque[tuple[str, bytes, int, Properties | None]] = deque()
        self._retry_delay = RETRY_FIRST_S
        self._retry_wake = asyncio.Event()
        self._retrier: asyncio.Task[None] | None = None
        # publishes past the send limit, in order: [topic, payload, qos, retain, properties,
        # coalesce]; a superseded state publish stays as a tombstone (payload None) so that
        # dropping it is O(1); tombstones are swept when they are half the queue
        self._held: deque[list[Any]] = deque()
        self._held_state: dict[str, list[Any]] = {}  # topic -> its held state publish
        self._held_dead = 0
        self._held_bytes = 0
        # packet ids of QoS>0 publishes handed to paho and not yet acknowledged by the broker
        # (paho calls on_publish for QoS 0 too: counting those made the figure negative)
        self._sizes: dict[int, int] = {}  # mid -> payload bytes of a QoS 1 publish in flight
        self._inflight_bytes = 0
        self.coalesced = 0  # state publishes replaced by a newer one before they were sent
        self.outstanding_max = 0  # the most publishes ever outstanding at once
        self.window_waits = 0  # times the pipeline waited for the broker to take publishes
        # the lean outbound path (MqttOptions.lean_publish), made in start(): on the loop
        self._out: LeanPublisher | None = None

    def _init_inbound(self, options: MqttOptions) -> None:
        """Back-pressure we keep ourselves: Mosquitto 2.0.11 honours our Receive Maximum only
        until the first PUBACK, then sends its whole queue. Past the bound we stop reading
        the socket (TCP pushes back, the broker queues) until acks bring us below 3/4."""
        self.over_receive = 0  # readings the broker sent past our Receive Maximum
        self._want_acks = False  # reading past the inbound bound: the PUBACKs are behind
        self._in_limit = max(1, min(65_535, options.receive_maximum))
        self._unacked_in = 0  # QoS 1 messages of this connection taken, not yet acked
        self._paused = False
        self.pauses = 0
        # the lean path (MqttOptions.lean_inbound): a splitter per connection, and the
        # PUBACKs of the batch being acknowledged, sent as one write (generation checked)
        self._lean = options.lean_inbound
        self._splitter: PacketSplitter | None = None
        self._ack_mids: list[int] = []
        self._ack_generation = 0
        self._ack_flush_due = False
        self._reader: Callable[[], None] = (
            self._readable_lean if options.lean_inbound else self._readable
        )

    def _paho_client(self, options: MqttOptions) -> paho.Client:
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
            reconnect_on_failure=False,
        )
        # paho's own in-flight limit rescans every queued message on each PUBACK (O(n));
        # so paho's is off and the adapter keeps the broker's Receive Maximum itself
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        if options.username:
            client.username_pw_set(options.username, options.password)
        if options.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        return client

    @property
    def generation(self) -> int:
        """The current connection's generation (the AckTracker's)."""
        return self.acks.generation

    @property
    def sessions(self) -> int:
        """Connects that found no session at the broker (the AckTracker's count)."""
        return self.acks.sessions

    # --- plumbing: paho's socket on the asyncio loop --------------------------------------

    def _in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` on the loop: now when called there, else soon (from the executor)."""
        if self._loop is None or self._loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._sock = sock
        self._in_loop(self._watch, sock)

    def _watch(self, sock: Any) -> None:
        assert self._loop is not None
        self._paused = False
        self._unacked_in = 0  # a new connection: read at least its CONNACK
        self._ack_mids = []
        if self._lean:
            self._splitter = PacketSplitter(_LeanSink(self), self.options.max_packet)
        self._loop.add_reader(sock, self._reader)

    def _pause(self) -> None:
        """Stop reading: we hold as many unacknowledged messages as we may."""
        if self._paused or self._sock is None or self._loop is None:
            return
        self._paused = True
        self.pauses += 1
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock)
        log.info("holding %d unacknowledged messages: not reading more", self._unacked_in)

    def _resume(self) -> None:
        if not self._paused or self._sock is None or self._loop is None:
            return
        self._paused = False
        with contextlib.suppress(ValueError, OSError):
            self._loop.add_reader(self._sock, self._reader)
        if self._splitter is not None and self._splitter.buffered:
            self._loop.call_soon(self._reader)  # packets held back at the bound, not in the socket

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._stopping and not self.aborted:  # paho closes it right after our DISCONNECT
            _drain_before_close(sock)
        self._in_loop(self._unwatch, sock)

    def _unwatch(self, sock: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        if sock is self._sock:
            self._sock = None
        self._lost.set()

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._add_writer, sock)

    def _add_writer(self, sock: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(ValueError, OSError):
            self._loop.add_writer(sock, self._writable)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._remove_writer, sock)

    def _remove_writer(self, sock: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(sock)

    def _readable(self) -> None:
        client = self._client
        try:
            for _ in range(READS_PER_WAKE):
                if self._unacked_in >= self._in_limit and not self._want_acks:
                    self._pause()
                    return
                # paho's public loop_read() reads one packet per call when nothing is in
                # flight; its _packet_read() reads one and says when the socket is empty.
                rc = client._packet_read()  # noqa: SLF001  one packet, and "socket empty" (above)
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                    pending = getattr(client.socket(), "pending", None)  # TLS buffers
                    if pending is not None and pending() > 0:
                        continue
                    return
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    client._loop_rc_handle(rc)  # noqa: SLF001  paho's own handling of a failed read
                    return
        except (OSError, ValueError) as exc:
            self._drop(f"read failed: {exc}")

    def _readable_lean(self) -> None:
        """The lean path: read the socket in large chunks and split the packets ourselves
        (PUBLISH and PUBACK here, anything else to paho); docs/performance.md."""
        client = self._client
        sock = client.socket()
        splitter = self._splitter
        if sock is None or splitter is None:
            return
        try:
            self._read_lean(client, sock, splitter)
        except _Full:
            self._pause()  # the rest waits in the splitter and the socket (docs/reliability.md)
        except StreamFault as exc:
            log.error("MQTT connection dropped: %s", exc)  # one clear line; nothing acked
            # paho closes its socket itself (closing it behind paho's back, its later close
            # of the old socket would unregister a new one with the same descriptor)
            client._loop_rc_handle(MQTTErrorCode.MQTT_ERR_PROTOCOL)  # noqa: SLF001
        except _PahoFailed as exc:
            client._loop_rc_handle(exc.rc)  # noqa: SLF001  paho's own handling of a failed read
        except (OSError, ValueError) as exc:
            self._drop(f"read failed: {exc}")

    def _read_lean(self, client: paho.Client, sock: Any, splitter: PacketSplitter) -> None:
        if splitter.buffered:  # packets left there at the inbound bound, first
            splitter.feed(b"")
            if self._splitter is not splitter:
                return
        for _ in range(LEAN_READS_PER_WAKE):
            if self._unacked_in >= self._in_limit and not self._want_acks:
                self._pause()
                return
            data = self._lean_recv(sock)
            if data is None:
                return
            if not data:
                client._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)  # noqa: SLF001  paho's handling
                return
            client._last_bytes_received = time.monotonic()  # noqa: SLF001  paho's keepalive
            splitter.feed(data)
            if self._splitter is not splitter:
                return  # the connection was replaced while handling a packet
            if len(data) < LEAN_READ_BYTES:
                pending = getattr(sock, "pending", None)  # TLS buffers
                if pending is None or pending() <= 0:
                    return

    def _lean_recv(self, sock: Any) -> bytes | None:
        """One read; None when there is nothing to read now (b"" when the broker closed)."""
        try:
            data: bytes = sock.recv(LEAN_READ_BYTES)
        except (BlockingIOError, ssl.SSLWantReadError):
            return None
        except ssl.SSLWantWriteError:
            self._client._call_socket_register_write()  # noqa: SLF001  as paho's own read does
            return None
        except OSError as exc:  # reset by the broker...: lost, as paho's own read says
            log.debug("read failed: %s", exc)
            return b""
        return data

    def _lean_publish(
        self,
        topic: bytes,
        payload: bytes,
        qos: int,
        dup: bool,
        retain: bool,
        mid: int,
        properties: Properties | None,
    ) -> None:
        """A PUBLISH from the lean path: what ``_receive`` does with paho's message."""
        if qos == 2:  # never granted (we subscribe at QoS 1): a broker out of the protocol
            raise StreamFault("PUBLISH with QoS 2 on a QoS 1 subscription", 0)
        try:
            text = topic.decode("utf-8")
        except UnicodeDecodeError:
            log.error("could not take a message on %r: its topic is not UTF-8", topic)
            return  # as paho: not taken, not acknowledged
        status = self.options.status_topic
        if status is not None and text == status:
            message = paho.MQTTMessage(mid, topic)
            message.payload = payload
            message.qos = qos
            message.retain = retain
            message.dup = dup
            if qos > 0:
                self._queue_ack(mid)
            try:
                self._status_message(message)
            except Exception:  # never let one message break the connection
                log.exception("could not take a message on %r", text)
            return
        if qos > 0:
            if self._unacked_in >= self._in_limit and not self._want_acks:
                raise _Full  # not taken: the packet stays in the splitter's buffer
            self._unacked_in += 1
            if self._unacked_in > self._in_limit:
                self.over_receive += 1
        response_topic = correlation = None
        if properties is not None:
            response_topic = getattr(properties, "ResponseTopic", None)
            correlation = getattr(properties, "CorrelationData", None)
        # in Inbound's field order: positional is half the time of keywords (docs/performance.md)
        self.inbox.put(
            Inbound(
                text,
                payload,
                qos,
                mid,
                self.generation,
                datetime.now(UTC),
                time.monotonic(),
                response_topic,
                correlation,
                dup,
                self.ack,
            ),
            droppable=qos == 0,
        )

    def _lean_puback(self, mid: int, reason: int, properties: Properties | None) -> None:
        """A PUBACK of one of our publishes: settled as paho's ``_handle_pubackcomp`` and
        ``_do_on_publish`` do (the adapter's ``on_publish`` first, which may still look the
        publish up, then paho's entry goes), without paho's callback locks."""
        client = self._client
        code = _PUBACK_CODES.get(reason)
        if code is None:
            code = _PUBACK_CODES[reason] = ReasonCode(PacketTypes.PUBACK, identifier=reason)
        with client._out_message_mutex:  # noqa: SLF001  as paho's _handle_pubackcomp
            messages = client._out_messages  # noqa: SLF001
            message = messages.get(mid)
            if message is None:  # not ours (any more): paho ignores it too
                return
            self._on_publish(
                client, None, mid, code, _NO_PUBACK_PROPERTIES if properties is None else properties
            )
            del messages[mid]
            message.info._set_as_published()  # noqa: SLF001  a waiter's, as paho's
            if message.qos > 0:
                client._inflight_messages -= 1  # noqa: SLF001  as paho counts

    def _lean_other(self, header: int, body: bytes) -> None:
        """CONNACK, SUBACK, PINGRESP, DISCONNECT...: paho handles them, as if it had read
        them itself."""
        rc = paho_handle(self._client, header, body)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise _PahoFailed(rc)

    def _queue_ack(self, mid: int) -> None:
        """A PUBACK to send with the others of this turn of the loop (lean path)."""
        if not self._ack_mids:
            self._ack_generation = self.acks.generation
            if not self._ack_flush_due and self._loop is not None:
                self._ack_flush_due = True
                self._loop.call_soon(self._flush_acks)
        self._ack_mids.append(mid)

    def _flush_acks(self, *, now: bool = True) -> None:
        """The PUBACKs queued, as one write: with the lean outbound path in order with the
        publishes (``now=False``: together with those that follow in this turn), else on
        paho's out queue (in order with its own writes); never those of an earlier
        connection (docs/reliability.md)."""
        self._ack_flush_due = False
        mids, self._ack_mids = self._ack_mids, []
        if not mids or self._ack_generation != self.acks.generation or self._sock is None:
            return
        out = self._out
        if out is not None and out.live:
            out.write(encode_pubacks(mids))
            if now:
                out.flush()
            return
        self._client._packet_queue(PacketTypes.PUBACK << 4, encode_pubacks(mids), 0, 0)  # noqa: SLF001  one write for many

    def _writable(self) -> None:
        try:
            rc = self._client.loop_write()
        except (OSError, ValueError) as exc:
            self._drop(f"write failed: {exc}")
            return
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            self._drop(f"write failed: {paho.error_string(rc)}")

    def _drop(self, why: str) -> None:
        log.warning("connection lost: %s", why)
        sock = self._sock
        if sock is not None:
            self._unwatch(sock)
            with contextlib.suppress(OSError):
                sock.close()
        self._mark_disconnected()

    def _mark_disconnected(self) -> None:
        if self.connected.is_set():
            # what came on the lost connection can no longer be acknowledged: a new
            # generation at once, so the pipeline skips the rest of it (the broker delivers
            # it again) instead of storing it now and again when it comes back
            self.acks.lost()
        self._ack_mids = []  # acks of a lost connection are never sent
        if self._out is not None:  # nor its unwritten bytes: paho resends those publishes
            self._out.detach()
        self.connected.clear()
        self.disconnected.set()
        self.subscribed.clear()
        self._lost.set()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._sock is not None:
                self._client.loop_misc()

    async def _connection(self) -> None:
        """Connect, wait until the connection is lost, back off, connect again."""
        assert self._loop is not None
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: no hints
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = max(1, min(65_535, self.options.receive_maximum))
        if self._lean:  # a compliant broker sends nothing larger than the splitter takes
            props.MaximumPacketSize = self.options.max_packet
        delay = 1.0
        while not self._stopping:
            self._lost.clear()
            generation = self.generation  # moves on each accepted CONNACK
            self._set_will()
            try:
                await self._loop.run_in_executor(None, self._connect_blocking, props)
            except (OSError, paho.WebsocketConnectionError) as exc:
                self.last_error = str(exc)
                self._answered.set()
                log.warning(
                    "broker %s:%s unreachable (%s); retrying in %.0f s",
                    self.options.host,
                    self.options.port,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            await self._lost.wait()
            # not self.connected: _on_disconnect has cleared it by now
            was_connected = self.generation != generation
            self._mark_disconnected()
            self._answered.set()
            if self._stopping:
                return
            lived = time.monotonic() - self._connected_at
            if was_connected and self.foreign_online is not None and lived < TAKEOVER_WINDOW_S:
                # we had found another client's "online" and it took the session back at once
                self.taken_over = ClientIdInUse(
                    self.options.client_id, self.options.username, self.foreign_online
                )
                log.error("%s", self.taken_over)
                self.fatal.set()
                return
            if was_connected:
                delay = 1.0
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _set_will(self) -> None:
        """The Will of the next connection: status offline with the time of connecting."""
        topic, make = self.options.status_topic, self.options.status_payload
        if topic is None or make is None:
            return
        now = datetime.now(UTC)
        self._stamp = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as sent
        self._own_stamps.append(self._stamp)
        self._client.will_set(topic, make(False, self._stamp), qos=1, retain=True)

    def _publish_status(self, online: bool) -> None:
        topic, make = self.options.status_topic, self.options.status_payload
        if topic is None or make is None or self._stamp is None:
            return
        self.publish(topic, make(online, self._stamp), qos=1, retain=True)

    def say_offline(self, payload: bytes) -> None:
        """A clean stop: say offline (``payload``) and no longer answer a stale "offline".

        The status subscription is dropped first: our own "offline" must not wait in the
        persistent session and greet the next start as news."""
        self._status_final = True
        topic = self.options.status_topic
        if topic is None:
            return
        if self._client.is_connected():
            self._client.unsubscribe(topic)
        self.publish(topic, payload, qos=1, retain=True)

    def _status_message(self, message: paho.MQTTMessage) -> None:
        """A message on our own status topic (see MqttOptions.status_topic)."""
        try:
            data = json.loads(message.payload)
            online = data["online"]
            said = str(data["timestamp"])
            stamp: datetime | None = datetime.fromisoformat(said.replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            return  # not a status we can read: not ours to answer
        if message.retain:  # what the broker held when we subscribed
            if online is True and stamp not in self._own_stamps:
                self.foreign_online = said
            return
        if stamp == self._stamp:
            if online is True and not self._echoed:
                self._echoed = True  # everything from here on was said after our "online"
                self.status_checked.set()
                if self.foreign_online is not None and self.connections > 1:
                    log.warning(
                        "another client said online on %s (at %s) while this bridge was away:"
                        " something else connects with client id %r and takes its session;"
                        " this bridge took it back (docs/bridge.md)",
                        message.topic,
                        self.foreign_online,
                        self.options.client_id,
                    )
            return
        if online is False and self._echoed and not self._status_final and self.connected.is_set():
            # a Will (or an "offline") of an earlier connection, arriving after our "online"
            # (Mosquitto 2.0.11 after a restart): the truth is that we are online
            self.status_reasserted += 1
            log.warning(
                "%s said offline (at %s) while this bridge is connected: an earlier"
                " connection's Last Will; saying online again",
                message.topic,
                said,
            )
            self._publish_status(True)

    def _connect_blocking(self, props: Properties) -> None:
        self._client.connect(
            self.options.host,
            self.options.port,
            keepalive=self.options.keepalive,
            clean_start=False,
            properties=props,
        )
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            # results are small and go out as soon as a batch commits: no Nagle delay
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # --- paho callbacks (on the loop) ---------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """A CONNACK: refused, or the connect sequence in order (the session, the broker's
        limits, the subscriptions, the status, then connected)."""
        if reason_code.is_failure:
            self._refused(reason_code)
            return
        self._session_started(flags.session_present)
        self._broker_limits(properties)
        if self._out is not None:  # publishes from here on: built and written by the adapter
            self._out.attach()
        if self.options.role:
            log.info(
                "%s connection %r up on %s:%s",
                self.options.role,
                self.options.client_id,
                self.options.host,
                self.options.port,
            )
        else:
            log.info(
                "connected to %s:%s (session present: %s)",
                self.options.host,
                self.options.port,
                flags.session_present,
            )
        self._subscribe_all(client)
        if self.on_connect is not None:
            self.on_connect()
        self.connected.set()
        self.disconnected.clear()
        self._answered.set()

    def _refused(self, reason_code: ReasonCode) -> None:
        self.last_error = self.refusal = str(reason_code)
        self.connects_refused += 1
        log.warning(
            "broker %s:%s refused the connection of user %r: %s",
            self.options.host,
            self.options.port,
            self.options.username,
            reason_code,
        )
        self._answered.set()

    def _session_started(self, session_present: bool) -> None:
        """A new generation (the AckTracker's); what the last connection left in the inbox
        unacknowledged is dropped: the broker redelivers it."""
        generation = self.acks.connected(session_present)
        self.connections += 1
        self._connected_at = time.monotonic()
        self._echoed = False
        self.status_checked.clear()
        self.foreign_online = None
        self._unacked_in = 0  # the broker redelivers what the last connection did not ack
        dropped = self.inbox.drop_stale(generation)
        if dropped:
            log.info("%d unacknowledged messages of the last connection will come again", dropped)

    def _broker_limits(self, properties: Properties | None) -> None:
        """The broker's Receive Maximum and Maximum Packet Size, from its CONNACK."""
        limit = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
        self._send_limit = min(int(limit) if limit else 65_535, self.options.window)
        largest = getattr(properties, "MaximumPacketSize", None) if properties else None
        self._max_packet = int(largest) if largest else None

    def _subscribe_all(self, client: paho.Client) -> None:
        """Resubscribe on every connect; then the status topic and our "online"."""
        if self._filters:
            client.subscribe([(f, self._subscribe_options(f)) for f in self._filters])
        status = self.options.status_topic
        if status is not None and not self._status_final:
            # first the subscription (its retained message tells what was said before us),
            # then our "online": the broker handles them in this order
            send = SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE
            client.subscribe(status, options=SubscribeOptions(qos=1, retainHandling=send))
            self._publish_status(True)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._in_loop(self._mark_disconnected)
        if reason_code.value != 0 and not self._stopping:
            log.warning("disconnected from the broker: %s; reconnecting", reason_code)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            self._receive(message)
        except Exception:  # never let one message break the connection
            log.exception("could not take a message on %r", message._topic)  # noqa: SLF001  raw bytes: no decode

    def _receive(self, message: paho.MQTTMessage) -> None:
        if self.options.status_topic is not None and message.topic == self.options.status_topic:
            if message.qos > 0:
                self._client.ack(message.mid, message.qos)
            self._status_message(message)
            return
        if message.qos > 0:
            self._unacked_in += 1
            if self._unacked_in > self._in_limit:
                self.over_receive += 1
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        self.inbox.put(
            Inbound(
                topic=message.topic,
                payload=bytes(message.payload),
                qos=message.qos,
                mid=message.mid,
                generation=self.generation,
                received_at=datetime.now(UTC),
                received=time.monotonic(),
                response_topic=response_topic,
                correlation_data=correlation,
                dup=bool(message.dup),
                acker=self.ack,
            ),
            droppable=message.qos == 0,
        )

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker refused subscriptions: %s", ", ".join(failed))
        self.subscribed.set()

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        size = self._sizes.pop(mid, None)
        if size is None:  # a QoS 0 publish: paho reports those as soon as they are written
            return
        self._inflight_bytes -= size
        if reason_code.is_failure:  # e.g. 0x87 Not authorized: the broker's ACL
            out = _outgoing(client, mid)
            if out is not None:
                payload = bytes(out.payload)
                self._deny(out.topic, payload, out.qos, out.retain, out.properties, reason_code)
        elif self._denied_topics:
            out = _outgoing(client, mid)
            if out is not None and out.topic in self._denied_topics:
                self._denied_topics.discard(out.topic)
                log.info("the broker accepts publishes to %s again", out.topic)
        held = self._held
        while held and len(self._sizes) < self._send_limit:
            entry = held.popleft()
            topic, payload, qos, retain, properties, coalesce = entry
            if payload is None:  # superseded by a newer state publish
                self._held_dead -= 1
                continue
            if coalesce and self._held_state.get(topic) is entry:
                del self._held_state[topic]
            self._held_bytes -= len(payload)
            self._send(topic, payload, qos, retain, properties)

    def _deny(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        properties: Properties | None,
        reason: ReasonCode,
    ) -> None:
        """The broker refused a publish: count it, say so once per topic and episode, keep it
        to be tried again (the latest per retained topic; a bounded queue of the rest)."""
        self.denied += 1
        why = f"{reason} (user {self.options.username!r})"
        if self.first_denial is None:
            self.first_denial = (topic, why)
        if topic not in self._denied_topics:
            self._denied_topics.add(topic)
            log.error("the broker refused a publish to %s: %s; trying again later", topic, why)
            if self.on_denied is not None:
                self.on_denied(topic, why)
        if retain:
            self._retry_retained[topic] = (payload, qos, properties)
        else:
            if len(self._retry_events) >= RETRY_QUEUE_MAX:
                self._retry_events.popleft()
                self.denied_dropped += 1
            self._retry_events.append((topic, payload, qos, properties))
        self._retry_wake.set()

    async def _retry_denied(self) -> None:
        """Publish refused messages again: 1 s after the first refusal, doubling to 60 s
        while the broker keeps refusing (an ACL is mended by reloading the broker)."""
        while True:
            await self._retry_wake.wait()
            self._retry_wake.clear()
            await asyncio.sleep(self._retry_delay)
            if not self.connected.is_set():
                self._retry_wake.set()
                continue
            denied_before = self.denied
            retained, self._retry_retained = self._retry_retained, {}
            events, self._retry_events = self._retry_events, deque()
            for topic, (payload, qos, props) in retained.items():
                self.publish(topic, payload, qos=qos, retain=True, properties=props)
            for topic, payload, qos, props in events:
                self.publish(topic, payload, qos=qos, properties=props)
            await self.flush(10.0)
            if self.denied > denied_before:
                self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_S)
            else:
                self._retry_delay = RETRY_FIRST_S

    @property
    def paused(self) -> bool:
        """Not reading the socket: as many unacknowledged readings held as we may."""
        return self._paused

    async def wait_readable(self, event: asyncio.Event, wait_s: float) -> bool:
        """Wait up to ``wait_s`` for ``event``, but not while reading is paused: what would
        set it is then behind the held readings in the socket. True when it is set."""
        deadline = time.monotonic() + wait_s
        while not event.is_set() and not self._paused and self.connected.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(left, 0.05))
        return event.is_set()

    async def wait_confirmed(self, wait_s: float) -> bool:
        """Like :meth:`flush`, but giving up at once while reading is paused."""
        deadline = time.monotonic() + wait_s
        while self.outstanding > 0 and time.monotonic() < deadline:
            if not self.connected.is_set() or self._paused:
                return False
            await asyncio.sleep(0.005)
        return self.outstanding <= 0

    @property
    def retry_pending(self) -> int:
        """Refused publishes waiting to be tried again."""
        return len(self._retry_retained) + len(self._retry_events)

    async def wait_answer(self) -> None:
        """Wait for the broker's first answer: connected, or refused (raises
        :class:`BrokerRefused`). An unreachable broker is waited for (the adapter retries)."""
        while not self.connected.is_set():
            if self.refusal is not None and self.connections == 0:
                raise BrokerRefused(
                    self.options.host, self.options.port, self.options.username, self.refusal
                )
            self._answered.clear()
            if self.connected.is_set():
                break
            await self._answered.wait()

    # --- the bridge's side --------------------------------------------------------------

    def add_subscription(self, topic_filter: str, *, retained: bool = False) -> None:
        """Subscribe now (if connected) and on every later connect. Retained messages are
        not sent (a stale reading is no reading) unless ``retained`` (a line's running
        topic: its last state is what counts; bridge/_alarms.py)."""
        if topic_filter in self._filters:
            return
        self._filters.append(topic_filter)
        if retained:
            self._retained_filters.add(topic_filter)
        if self._client.is_connected():
            self._client.subscribe(topic_filter, options=self._subscribe_options(topic_filter))

    def _subscribe_options(self, topic_filter: str) -> SubscribeOptions:
        send = (
            SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE
            if topic_filter in self._retained_filters
            else SubscribeOptions.RETAIN_DO_NOT_SEND
        )
        return SubscribeOptions(qos=1, retainHandling=send)

    async def start(self, wait_s: float | None = None) -> None:
        """Connect in the background; with ``wait_s``, wait that long for the first CONNACK."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.inbox.bind(self._loop)
        if self.options.lean_publish:
            self._out = LeanPublisher(self._client, self._loop)
        self._runner = asyncio.create_task(self._connection(), name="mqtt-connection")
        self._misc = asyncio.create_task(self._keepalive(), name="mqtt-keepalive")
        self._retrier = asyncio.create_task(self._retry_denied(), name="mqtt-retry-refused")
        if wait_s is not None:
            try:
                await asyncio.wait_for(self.connected.wait(), wait_s)
            except TimeoutError:
                raise BrokerUnavailable(
                    self.options.host, self.options.port, self.last_error or "no answer"
                ) from None

    def ack(self, message: Inbound) -> None:
        """Send the PUBACK of a delivery, when the AckTracker says it still may be (QoS 1, of
        this connection); a delivery's own ``.ack()`` comes here."""
        if self.aborted or not self.acks.release(message):
            return
        if self._lean:
            self._queue_ack(message.mid)
        else:
            if self._out is not None:  # paho's PUBACK goes behind the publishes made before
                self._out.flush()
            self._client.ack(message.mid, message.qos)
        self._unacked_in -= 1
        if self._paused and self._unacked_in <= self._in_limit * 3 // 4:
            self._resume()

    @property
    def outstanding(self) -> int:
        """QoS 1 publishes not yet confirmed by the broker, held ones included."""
        return len(self._sizes) + len(self._held) - self._held_dead

    @property
    def held(self) -> int:
        """Publishes waiting for room in the send window (not yet handed to paho)."""
        return len(self._held) - self._held_dead

    @property
    def outstanding_bytes(self) -> int:
        """Payload bytes of the outstanding QoS 1 publishes (in flight and held)."""
        return self._inflight_bytes + self._held_bytes

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
        coalesce: bool = False,
    ) -> None:
        """Send (or hold, past the send window) one message. ``coalesce`` marks retained
        state: a newer publish of the topic replaces a held older one (docs/bridge.md)."""
        if self.aborted:
            return
        if self._retry_retained and retain:
            self._retry_retained.pop(topic, None)  # superseded by this one
        if self._max_packet is not None and _packet_size(topic, payload) > self._max_packet:
            # the broker would drop the connection for it (and again after every reconnect)
            self.refused += 1
            log.error(
                "not publishing %d bytes to %s: the broker takes packets of %d bytes at most",
                len(payload),
                topic,
                self._max_packet,
            )
            return
        if qos > 0 and (self._held or len(self._sizes) >= self._send_limit):
            self._hold([topic, payload, qos, retain, properties, coalesce])
        else:
            self._send(topic, payload, qos, retain, properties)
        if qos > 0:
            outstanding = len(self._sizes) + len(self._held) - self._held_dead
            if outstanding > self.outstanding_max:
                self.outstanding_max = outstanding

    def _hold(self, entry: list[Any]) -> None:
        topic, payload, coalesce = entry[0], entry[1], entry[5]
        if coalesce:
            older = self._held_state.get(topic)
            if older is not None:  # not handed to paho yet: the newer state replaces it
                self._held_bytes -= len(older[1])
                older[1] = None
                self._held_dead += 1
                self.coalesced += 1
            self._held_state[topic] = entry
        self._held.append(entry)
        self._held_bytes += len(payload)
        if self._held_dead > 1024 and 2 * self._held_dead > len(self._held):
            self._held = deque(e for e in self._held if e[1] is not None)
            self._held_dead = 0

    def _send(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties | None
    ) -> None:
        if self._ack_mids:  # the PUBACKs of a committed batch go out before its results
            self._flush_acks(now=False)
        out = self._out
        if out is not None and out.live and qos < 2:
            try:
                mid = out.publish(topic, payload, qos, retain, properties)
            except ValueError as exc:  # as paho's publish refuses it (see below)
                log.warning("not publishing to %r: %s", topic[:80], exc)
                return
            if qos:
                self._sizes[mid] = len(payload)
                self._inflight_bytes += len(payload)
            return
        try:
            info = self._client.publish(
                topic, payload, qos=qos, retain=retain, properties=properties
            )
        except ValueError as exc:  # a topic paho refuses (a wildcard, empty): never raise here,
            # a publish may be sent later from a callback (docs/bridge.md, "Commands")
            log.warning("not publishing to %r: %s", topic[:80], exc)
            return
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            if qos > 0:
                self._sizes[info.mid] = len(payload)
                self._inflight_bytes += len(payload)
        else:
            log.warning("publish to %s failed: %s", topic, paho.error_string(info.rc))

    def reply(self, message: Inbound, payload: bytes) -> None:
        """Answer an MQTT 5 request on its response topic, with its correlation data."""
        if not message.response_topic:
            return
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho: no hints
        if message.correlation_data is not None:
            props.CorrelationData = message.correlation_data
        self.publish(message.response_topic, payload, qos=1, properties=props)

    async def wait_window(self, limit: int | None = None) -> None:
        """Wait while more than ``outbound_max`` QoS 1 publishes are outstanding (in flight
        and held): the pipeline then takes no more readings, the inbox fills up to
        ``buffer_max`` and the broker keeps the rest in the bridge's session. ``limit``, when
        lower, waits down to it instead (start-up's retained messages: a smaller peak).

        While reading is paused at ``buffer_max`` the PUBACKs we wait for are behind the
        held readings in the socket (waiting without reading deadlocked the bridge, and not
        waiting let the outbound grow without bound: 11 GB at 10,000 characteristics). So
        the socket is read on while we wait: a broker that keeps our Receive Maximum sends
        only PUBACKs then; readings it sends past it (Mosquitto 2.0.11 does, after a PUBACK)
        are taken into the inbox and counted (``over_receive``)."""
        bound = (
            self.options.outbound_max if limit is None else min(limit, self.options.outbound_max)
        )
        if self.outstanding <= bound or not self.connected.is_set():
            return
        self.window_waits += 1
        self._want_acks = True
        self._resume()
        try:
            # ASYNC110 allowed: PUBACKs arrive on this loop in bursts; a short poll under
            # back-pressure is cheaper than an event per PUBACK.
            while self.outstanding > bound and self.connected.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.002)
        finally:
            self._want_acks = False

    async def flush(self, wait_s: float) -> bool:
        """Wait until every QoS 1 publish is acknowledged (or ``wait_s`` seconds)."""
        deadline = time.monotonic() + wait_s
        while self.outstanding > 0 and time.monotonic() < deadline:
            if not self.connected.is_set():
                return False
            await asyncio.sleep(0.005)
        return self.outstanding <= 0

    async def stop(self) -> None:
        """Disconnect cleanly (no Last Will) and stop the connection's tasks."""
        self._stopping = True
        if self._ack_mids:  # the last batch's PUBACKs go out before the DISCONNECT
            self._flush_acks()
        if self._out is not None:  # and the publishes not yet written
            self._out.flush()
        if self._sock is not None and not self.aborted:
            self._client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), 5.0)
        await self._cancel_tasks()
        self._mark_disconnected()

    async def _cancel_tasks(self) -> None:
        for task in (self._runner, self._misc, self._retrier):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def abort(self) -> None:
        """Drop the connection without DISCONNECT (the broker sends the Last Will); tests."""
        self.aborted = True
        self._stopping = True
        for task in (self._runner, self._misc, self._retrier):
            if task is not None:
                task.cancel()
        sock = self._sock
        if sock is not None:
            self._unwatch(sock)
            with contextlib.suppress(OSError):
                sock.close()
        self._mark_disconnected()
