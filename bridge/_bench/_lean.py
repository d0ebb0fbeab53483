"""The plant phase's load generator and listener without paho: a socket and the lean codec.

At 10,000 characteristics and 8,000 readings/s the paho clients of bridge/_bench/_clients.py
took 61-67 us of CPU a reading (publisher) and 46-52 us a sample (subscriber): together
about 0.9 of this 2-core machine's cores, more than the bridge's loop thread got. The plant
phase measures the bridge, not its measuring instrument, so by default it drives the bridge
with these instead (``openspc bench --plant-clients paho`` for the old ones;
docs/performance.md, "The plant phase's clients"). The relay, bridge and latency phases keep
paho on both sides: their ratio is defined against the relay of this machine and client
library.

Same protocol, same process layout, same queue messages as the paho clients (``("ready",
None)``, then ``("done", result)``), same results; MQTT 5, QoS 1 both ways:

- :func:`publisher` writes each reading as one PUBLISH built by
  :func:`bridge._mqtt_codec.encode_publish`, the readings due within the pace's slack in one
  ``send``; a reader thread counts the PUBACKs through :class:`bridge._mqtt_codec.PacketSplitter`.
  A reading's send time is taken just before the ``send`` that carries it.
- :func:`subscriber` reads with the same splitter, keeps each topic's arrival times (one
  clock reading per ``recv``: every packet of a read arrived together) and acknowledges a
  read's QoS 1 messages in one ``send``.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from array import array
from collections.abc import Callable
from typing import Any

from paho.mqtt.properties import Properties

from bridge._bench._clients import WINDOW, Layout, Pace, PublishResult, SubscribeResult
from bridge._mqtt_codec import PacketSplitter, StreamFault, encode_pubacks, encode_publish

__all__ = ["publisher", "subscriber"]

_CONNACK = 0x20
_SUBACK = 0x90
_DISCONNECT = b"\xe0\x00"
_NO_PROPERTIES = b"\x00"
_FLUSH_PACKETS = 256  # readings a send at most (unpaced, or behind the pace)
_READ = 1 << 20


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def _text(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("!H", len(raw)) + raw


def _connect_packet(client_id: str) -> bytes:
    """MQTT 5 CONNECT: clean start, no keep-alive (a run may idle longer than any), no
    properties."""
    return _packet(0x10, _text("MQTT") + b"\x05\x02\x00\x00" + _NO_PROPERTIES + _text(client_id))


def _subscribe_packet(topic_filter: str, mid: int = 1) -> bytes:
    """MQTT 5 SUBSCRIBE of one filter at QoS 1."""
    return _packet(0x82, struct.pack("!H", mid) + _NO_PROPERTIES + _text(topic_filter) + b"\x01")


class _Counts:
    """What comes back to a client: PUBACKs counted, PUBLISHes timed by topic."""

    def __init__(self) -> None:
        self.acked = 0
        self.refused = 0  # PUBACKs with a failure reason (0x80 and up)
        self.connack: int | None = None  # its reason code
        self.suback: int | None = None  # the reason code of its one filter
        self.now = 0  # the arrival time of the current read
        self.count = 0
        self.first = 0
        self.last = 0
        self.mids: list[int] = []  # QoS 1 messages of the current read, to acknowledge
        self.arrivals: dict[bytes, array[int]] = {}

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
        if qos:
            self.mids.append(mid)
        if retain:
            return  # retained state, not a message of the run
        now = self.now
        if not self.count:
            self.first = now
        self.last = now
        self.count += 1
        times = self.arrivals.get(topic)
        if times is None:
            times = self.arrivals[topic] = array("q")
        times.append(now)

    def puback(self, mid: int, reason: int, properties: Properties | None) -> None:
        self.acked += 1
        if reason >= 0x80:
            self.refused += 1

    def other(self, header: int, body: bytes) -> None:
        kind = header & 0xF0
        if kind == _CONNACK and len(body) >= 2:
            self.connack = body[1]
        elif kind == _SUBACK and len(body) >= 4:
            # packet id, property length (0 from Mosquitto; one byte up to 127), reason codes
            at = 2 + 1 + body[2] if body[2] < 0x80 else len(body) - 1
            self.suback = body[at] if at < len(body) else 0x80


def _open(port: int, client_id: str, counts: _Counts, splitter: PacketSplitter) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_connect_packet(client_id))
    _until(sock, splitter, lambda: counts.connack is not None, "CONNACK")
    if counts.connack != 0:
        raise RuntimeError(f"CONNACK reason 0x{counts.connack:02x} from 127.0.0.1:{port}")
    return sock


def _until(
    sock: socket.socket, splitter: PacketSplitter, done: Callable[[], bool], what: str
) -> None:
    """Read until ``done()``; the broker closing the connection first is an error."""
    while not done():
        if not _read(sock, splitter):
            raise RuntimeError(f"the broker closed the connection before its {what}")


def _read(sock: socket.socket, splitter: PacketSplitter) -> bool:
    """One ``recv`` into the splitter; False when the broker closed the connection."""
    data = sock.recv(_READ)
    if not data:
        return False
    splitter.feed(data)
    return True


class _Sender:
    """A publisher's readings not yet sent, and each one's send time when asked."""

    def __init__(self, sock: socket.socket, record: bool) -> None:
        self.sock = sock
        self.record = record
        self.pending: list[bytes] = []
        self.sent: list[int] = []

    def flush(self) -> None:
        pending = self.pending
        if not pending:
            return
        if self.record:
            self.sent.extend([time.monotonic_ns()] * len(pending))
        self.sock.sendall(b"".join(pending))
        pending.clear()


def _read_acks(sock: socket.socket, splitter: PacketSplitter) -> threading.Event:
    """A thread feeding the PUBACKs to ``splitter``; the event is set when it stops."""
    closed = threading.Event()

    def read() -> None:
        try:
            while _read(sock, splitter):
                pass
        except (OSError, StreamFault):
            pass
        closed.set()

    threading.Thread(target=read, name="pubacks", daemon=True).start()
    return closed


def _close(sock: socket.socket) -> None:
    try:
        sock.sendall(_DISCONNECT)
    finally:
        sock.close()


def publisher(
    port: int,
    layout: Layout,
    rate: float | None,
    record: bool,
    go: Any,
    out: Any,
) -> None:
    """As :func:`bridge._bench._clients.publisher`, with pre-built packets on a socket."""
    total = layout.count()
    counts = _Counts()
    splitter = PacketSplitter(counts)
    sock = _open(port, f"bench-pub-{time.monotonic_ns()}", counts, splitter)
    sock.settimeout(None)
    closed = _read_acks(sock, splitter)
    out.put(("ready", None))
    go.wait()
    sender = _Sender(sock, record)
    pending = sender.pending
    started = time.monotonic_ns()
    pace = Pace(rate, started)
    for i, (topic, payload) in enumerate(layout.messages()):
        pause = pace.sleep_before(i)  # as the paho publisher; one send a burst
        if pause:
            sender.flush()
            time.sleep(pause)
        if len(pending) >= _FLUSH_PACKETS:  # behind the pace, or not paced
            sender.flush()
        while i - counts.acked >= WINDOW and not closed.is_set():
            sender.flush()
            time.sleep(0.0002)
        mid = i % 65535 + 1
        pending.append(
            encode_publish(topic.encode(), payload, 1, False, False, mid, _NO_PROPERTIES)
        )
    sender.flush()
    deadline = time.monotonic() + 60
    while counts.acked < total and time.monotonic() < deadline and not closed.is_set():
        time.sleep(0.0005)
    finished = time.monotonic_ns()
    _close(sock)
    cpu = time.process_time()
    errors = total - counts.acked + counts.refused
    out.put(("done", PublishResult(total, started, finished, sender.sent, errors, cpu)))


def _listen(
    sock: socket.socket,
    splitter: PacketSplitter,
    counts: _Counts,
    expected: int,
    idle_s: float,
    give_up_s: float,
) -> bool:
    """Read until ``expected`` messages came (False) or the run gave up on them (True)."""
    sock.settimeout(min(idle_s, 1.0))
    seen = -1
    idle_since = time.monotonic()
    while True:
        try:
            data = sock.recv(_READ)
        except TimeoutError:
            data = None
        if data == b"":
            return True  # the broker closed the connection
        if data:
            counts.now = time.monotonic_ns()
            splitter.feed(data)
            if counts.mids:
                sock.sendall(encode_pubacks(counts.mids))
                counts.mids.clear()
            if counts.count >= expected:
                return False
        now = time.monotonic()
        if give_up_s and counts.first and now - counts.first / 1e9 > give_up_s:
            return True  # samples back in time are counted, the late ones are not
        if counts.count != seen:
            seen, idle_since = counts.count, now
        elif now - idle_since >= idle_s:  # nothing new for idle_s: give up
            return True


def subscriber(
    port: int,
    topic_filter: str,
    expected: int,
    keep: bool | str,
    idle_s: float,
    give_up_s: float,
    out: Any,
) -> None:
    """As :func:`bridge._bench._clients.subscriber` with ``keep="arrivals"`` (the only way
    the plant phase listens): each topic's arrival times, retained messages skipped."""
    if keep != "arrivals":
        raise ValueError(f"the lean subscriber keeps arrival times only, not {keep!r}")
    counts = _Counts()
    splitter = PacketSplitter(counts)
    sock = _open(port, f"bench-sub-{time.monotonic_ns()}", counts, splitter)
    sock.sendall(_subscribe_packet(topic_filter))
    _until(sock, splitter, lambda: counts.suback is not None, "SUBACK")
    if counts.suback is not None and counts.suback > 1:
        raise RuntimeError(f"SUBACK reason 0x{counts.suback:02x} for {topic_filter!r}")
    out.put(("ready", None))
    timed_out = _listen(sock, splitter, counts, expected, idle_s, give_up_s)
    cpu = time.process_time()
    _close(sock)
    arrivals = {topic.decode(): times for topic, times in counts.arrivals.items()}
    result = SubscribeResult(counts.count, counts.first, counts.last, [], timed_out, cpu, arrivals)
    out.put(("done", result))
