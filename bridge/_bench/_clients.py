"""The benchmark's load generator and listener: paho clients, each in its own process.

Both run in a child process (``multiprocessing`` spawn) so that neither shares a GIL with
the other or with the benchmark's parent. They talk to the parent through a queue:
``("ready", ...)`` once connected (and subscribed), then one ``("done", result)``.

Times are ``time.monotonic_ns()``: on Linux that is CLOCK_MONOTONIC, one clock for every
process on the machine, so a send time in one process and an arrival time in another can
be subtracted.
"""

from __future__ import annotations

import json
import random
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

__all__ = [
    "PACE_SLACK_NS",
    "WINDOW",
    "Layout",
    "Pace",
    "PublishResult",
    "SubscribeResult",
    "publisher",
    "subscriber",
]

WINDOW = 10_000
"""Unacknowledged QoS 1 publishes a publisher allows itself (paho fails past ~65,535)."""


PACE_SLACK_NS = 1_000_000
"""How far ahead of its readings' due times a paced publisher may run before it sleeps."""


class Pace:
    """When a paced publisher sleeps: reading ``i`` is due ``i / rate`` s after ``started_ns``;
    the publisher sleeps only when it is :data:`PACE_SLACK_NS` ahead, so readings leave in
    small bursts (8 at 8,000/s) and the load generator wakes 1,000 times a second, not once a
    reading (its CPU is taken from the two cores the bridge runs on). ``rate`` None: never."""

    def __init__(self, rate: float | None, started_ns: int) -> None:
        self.interval_ns = int(1e9 / rate) if rate else 0
        self.started_ns = started_ns

    def sleep_before(self, i: int) -> float:
        """Seconds to sleep before sending reading ``i`` (0.0: send it now)."""
        if not self.interval_ns:
            return 0.0
        ahead = self.started_ns + i * self.interval_ns - time.monotonic_ns()
        return ahead / 1e9 if ahead > PACE_SLACK_NS else 0.0


@dataclass(frozen=True)
class Layout:
    """Which reading goes where: reading ``i`` is the ``i // len(ids)``-th of
    characteristic ``ids[i % len(ids)]`` (round robin, so every characteristic advances
    evenly). ``topic`` has a ``{cid}`` hole."""

    ids: tuple[int, ...]
    sizes: tuple[int, ...]  # subgroup size of each id (same order)
    readings: int
    topic: str

    def per_char(self) -> int:
        return self.readings // len(self.ids)

    def expected_samples(self) -> int:
        per = self.per_char()
        return sum(per // n for n in self.sizes)

    def values(self, index: int) -> list[float]:
        """The readings characteristic ``ids[index]`` receives, in order (seeded)."""
        rng = random.Random(self.ids[index] * 7919)
        return [round(rng.gauss(10.0, 0.01), 4) for _ in range(self.per_char())]

    def count(self) -> int:
        """Readings sent: whole rounds over every characteristic."""
        return self.per_char() * len(self.ids)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        """Every reading in order, made as it is sent (10,000 characteristics x 100
        readings as a list took 150 MB of the publisher's memory)."""
        columns = [self.values(k) for k in range(len(self.ids))]
        topics = [self.topic.format(cid=cid) for cid in self.ids]
        width = len(self.ids)
        for i in range(self.count()):
            k = i % width
            yield topics[k], b'{"value":%r}' % columns[k][i // width]


@dataclass
class PublishResult:
    count: int
    started_ns: int
    finished_ns: int  # every PUBACK in
    sent_ns: list[int] = field(default_factory=list)  # per reading, when asked (latency)
    errors: int = 0
    cpu_s: float = 0.0  # this process, set-up included


@dataclass
class SubscribeResult:
    count: int
    first_ns: int
    last_ns: int
    # (topic, payload, arrival) of each message, when asked to keep them
    kept: list[tuple[str, bytes, int]] = field(default_factory=list)
    timed_out: bool = False
    cpu_s: float = 0.0  # this process, until the last message (set-up included)
    # arrival times by topic, in order, when asked for only those (thousands of topics)
    arrivals: dict[str, array[int]] = field(default_factory=dict)


def _client(client_id: str) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.max_inflight_messages_set(0)  # 0: no limit in paho; the window below bounds it
    client.max_queued_messages_set(0)
    return client


def _connect(client: paho.Client, port: int) -> None:
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"no CONNACK from 127.0.0.1:{port}")


def publisher(
    port: int,
    layout: Layout,
    rate: float | None,
    record: bool,
    go: Any,
    out: Any,
) -> None:
    """Publish every reading of ``layout`` at QoS 1, as fast as the window allows or at
    ``rate`` per second; report when the last PUBACK is in."""
    total = layout.count()
    acked = 0
    lock = threading.Lock()

    def on_publish(*_args: Any) -> None:
        nonlocal acked
        with lock:
            acked += 1

    client = _client(f"bench-pub-{time.monotonic_ns()}")
    client.on_publish = on_publish
    _connect(client, port)
    out.put(("ready", None))
    go.wait()
    publish = client.publish
    sent: list[int] = []
    errors = 0
    started = time.monotonic_ns()
    pace = Pace(rate, started)
    for i, (topic, payload) in enumerate(layout.messages()):
        pause = pace.sleep_before(i)  # each reading's own send time is kept
        if pause:
            time.sleep(pause)
        # paced or not, at most WINDOW unconfirmed: past 65,535 paho refuses the publish
        # (a broker slower than the pace made the plant phase lose readings at the source)
        while i - acked >= WINDOW:
            time.sleep(0.0002)
        if record:
            sent.append(time.monotonic_ns())
        if publish(topic, payload, qos=1).rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            errors += 1
    deadline = time.monotonic() + 60
    while acked < total - errors and time.monotonic() < deadline:
        time.sleep(0.0005)
    finished = time.monotonic_ns()
    client.disconnect()
    client.loop_stop()
    cpu = time.process_time()
    out.put(("done", PublishResult(total, started, finished, sent, errors, cpu)))


def subscriber(  # noqa: C901  paho's callbacks are closures over one run's counters; the plant phase added its arrival-time branch
    port: int,
    topic_filter: str,
    expected: int,
    keep: bool | str,
    idle_s: float,
    give_up_s: float,
    out: Any,
) -> None:
    """Count (and with ``keep``, keep) messages on ``topic_filter`` until ``expected``
    arrived or none came for ``idle_s`` seconds. Retained messages are skipped.
    ``keep="arrivals"`` keeps only each topic's arrival times (8 bytes a message); with
    ``give_up_s``, it stops that long after the first message whatever still comes.
    ``keep="distinct"`` keeps every message but counts each ``sample_id`` once towards
    ``expected`` (a partition taken over may publish a sample again: docs/scale-out.md)."""
    count = 0
    first = last = 0
    kept: list[tuple[str, bytes, int]] = []
    arrivals: dict[str, array[int]] = {}
    only_times = keep == "arrivals"
    distinct: set[object] | None = set() if keep == "distinct" else None
    done = threading.Event()

    def on_message(_client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        nonlocal count, first, last
        if message.retain:
            return
        last = time.monotonic_ns()
        if not count:
            first = last
        if distinct is not None:
            kept.append((message.topic, bytes(message.payload), last))
            distinct.add(json.loads(message.payload)["payload"].get("sample_id"))
            count = len(distinct)
            if count >= expected:
                done.set()
            return
        count += 1
        if only_times:
            topic = message.topic
            times = arrivals.get(topic)
            if times is None:
                times = arrivals[topic] = array("q")
            times.append(last)
        elif keep:
            kept.append((message.topic, bytes(message.payload), last))
        if count >= expected:
            done.set()

    subscribed = threading.Event()
    client = _client(f"bench-sub-{time.monotonic_ns()}")
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    _connect(client, port)
    client.subscribe(topic_filter, qos=1)
    if not subscribed.wait(10):
        raise RuntimeError("no SUBACK")
    out.put(("ready", None))
    seen = -1
    idle_since = time.monotonic()
    while not done.wait(min(idle_s, 1.0)):
        now = time.monotonic()
        if give_up_s and first and now - first / 1e9 > give_up_s:
            break  # samples back in time are counted, the late ones are not
        if count != seen:
            seen, idle_since = count, now
        elif now - idle_since >= idle_s:  # nothing new for idle_s: give up
            break
    timed_out = not done.is_set()
    cpu = time.process_time()
    client.disconnect()
    client.loop_stop()
    out.put(("done", SubscribeResult(count, first, last, kept, timed_out, cpu, arrivals)))
