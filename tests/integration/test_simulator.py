"""Simulated gauges publish through a real Mosquitto, and their readings arrive intact."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge._mosquitto import MosquittoProcess, free_port
from bridge.errors import BrokerUnavailable
from bridge.readings import parse_reading
from bridge.simulator import Gauge, GaugeProfile, GaugePublisher

pytestmark = pytest.mark.mosquitto

COUNT = 20


class Recorder:
    """A paho subscriber that records payloads per topic and says when it has enough."""

    def __init__(self, broker: MosquittoProcess, topics: list[str], expected: int) -> None:
        self.payloads: dict[str, list[bytes]] = defaultdict(list)
        self.expected = expected
        self.enough = threading.Event()
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe([(topic, 1) for topic in topics])
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.payloads[msg.topic].append(msg.payload)
            if sum(map(len, self.payloads.values())) >= self.expected:
                self.enough.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_readings_of_every_gauge_arrive_in_order(
    mosquitto: MosquittoProcess, topic_prefix: str
) -> None:
    vendor_topic = f"{topic_prefix}-plant/line3/gauge7/od"
    profiles = [
        GaugeProfile(1, f"{topic_prefix}/char/1/reading", mean=10.0, sigma=0.02),
        GaugeProfile(2, f"{topic_prefix}/char/2/reading", mean=5.0, sigma=0.1, subgroup_size=5),
        GaugeProfile(3, vendor_topic, mean=25.0, sigma=0.01, value_path="data.od"),
    ]
    recorder = Recorder(mosquitto, [f"{topic_prefix}/char/+/reading", vendor_topic], 3 * COUNT)
    try:
        assert recorder.subscribed.wait(5)
        gauges = [Gauge(p, seed=11) for p in profiles]
        publisher = GaugePublisher("127.0.0.1", mosquitto.port, gauges, rate=200, count=COUNT)
        with publisher:
            assert publisher.wait_done(10)
        assert recorder.enough.wait(10)
    finally:
        recorder.close()

    assert publisher.error is None
    assert (publisher.published, publisher.acknowledged) == (3 * COUNT, 3 * COUNT)
    now = datetime.now(UTC)
    for profile in profiles:
        payloads = recorder.payloads[profile.topic]
        readings = [
            parse_reading(p, subgroup_size=1, value_path=profile.value_path, received_at=now)
            for p in payloads
        ]
        expected = [r.value for r in Gauge(profile, seed=11).take(COUNT)]
        assert [r.values[0] for r in readings] == pytest.approx(expected, abs=0.01 * profile.sigma)
        assert all(r.source_ts for r in readings)
        assert all(abs((now - r.ts).total_seconds()) < 30 for r in readings)


def test_whole_subgroups_in_one_message(mosquitto: MosquittoProcess, topic_prefix: str) -> None:
    profile = GaugeProfile(1, f"{topic_prefix}/char/1/reading", 10.0, 0.05, subgroup_size=5)
    recorder = Recorder(mosquitto, [profile.topic], 4)
    try:
        assert recorder.subscribed.wait(5)
        publisher = GaugePublisher(
            "127.0.0.1", mosquitto.port, [Gauge(profile, seed=2)], rate=0, count=4, subgroups=True
        )
        with publisher:
            assert publisher.wait_done(10)
        assert recorder.enough.wait(10)
    finally:
        recorder.close()
    now = datetime.now(UTC)
    subgroups = [
        parse_reading(p, subgroup_size=5, received_at=now).values
        for p in recorder.payloads[profile.topic]
    ]
    expected = [r.value for r in Gauge(profile, seed=2).take(20)]
    assert [v for values in subgroups for v in values] == pytest.approx(expected, abs=1e-3)
    assert [len(values) for values in subgroups] == [5, 5, 5, 5]


def test_stop_ends_an_endless_publisher(mosquitto: MosquittoProcess, topic_prefix: str) -> None:
    topic = f"{topic_prefix}/char/1/reading"
    recorder = Recorder(mosquitto, [topic], 5)
    try:
        assert recorder.subscribed.wait(5)
        gauge = Gauge(GaugeProfile(1, topic, mean=1.0, sigma=0.1), seed=1)
        publisher = GaugePublisher("127.0.0.1", mosquitto.port, [gauge], rate=100).start()
        try:
            assert recorder.enough.wait(10)
        finally:
            publisher.stop()
    finally:
        recorder.close()
    assert publisher.published >= 5
    assert publisher.acknowledged == publisher.published
    assert publisher.error is None


def test_an_unreachable_broker_is_named() -> None:
    port = free_port()
    gauge = Gauge(GaugeProfile(1, "t/x", mean=1.0, sigma=0.1))
    with pytest.raises(BrokerUnavailable) as info:
        GaugePublisher("127.0.0.1", port, [gauge]).start(timeout=2)
    assert (info.value.host, info.value.port) == ("127.0.0.1", port)


@pytest.mark.reliability
def test_gauges_keep_publishing_across_a_broker_restart(
    fresh_mosquitto: MosquittoProcess, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}/char/1/reading"
    restarted_ms = threading.Event()
    marker: list[int] = []
    resumed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        ts = json.loads(msg.payload)["ts"]
        if restarted_ms.is_set() and ts >= marker[0]:
            resumed.set()

    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2)
    subscriber.on_connect = lambda client, *_: client.subscribe(topic, 1)
    subscriber.on_message = on_message
    subscriber.reconnect_delay_set(0.1, 0.5)
    subscriber.connect("127.0.0.1", fresh_mosquitto.port)
    subscriber.loop_start()
    gauge = Gauge(GaugeProfile(1, topic, mean=1.0, sigma=0.1), seed=1)
    publisher = GaugePublisher("127.0.0.1", fresh_mosquitto.port, [gauge], rate=50).start()
    try:
        fresh_mosquitto.restart()
        marker.append(int(time.time() * 1000))
        restarted_ms.set()
        assert resumed.wait(15), "no reading published after the broker came back"
    finally:
        publisher.stop()
        subscriber.disconnect()
        subscriber.loop_stop()
    assert publisher.error is None
    assert publisher.acknowledged == publisher.published


def test_a_line_that_stops_pauses_its_gauges_and_says_so(
    mosquitto: MosquittoProcess, topic_prefix: str
) -> None:
    """bridge.simulator.LineSchedule: the line's gauge sends nothing between "false" and
    "true" on the running topic (retained); the other gauge goes on; every reading carries
    its lot and operator (Shopfloor, "legacy" style) and is still a valid reading."""
    from bridge.simulator import LineSchedule, Shopfloor

    running = f"{topic_prefix}/line3/running"
    on_line = GaugeProfile(1, f"{topic_prefix}/char/1/reading", mean=10.0, sigma=0.02)
    off_line = GaugeProfile(2, f"{topic_prefix}/char/2/reading", mean=5.0, sigma=0.1)
    order: list[tuple[str, bytes]] = []
    done = threading.Event()
    lock = threading.Lock()

    def record(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            order.append((msg.topic, msg.payload))
            if [p for t, p in order if t == running] == [b"true", b"false", b"true"]:
                done.set()

    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = record
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", mosquitto.port)
    client.subscribe(f"{topic_prefix}/#", qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(5)
        line = LineSchedule(running, frozenset({1}), run=0.5, stop=0.5)
        with GaugePublisher(
            "127.0.0.1",
            mosquitto.port,
            [Gauge(on_line, seed=1), Gauge(off_line, seed=1)],
            rate=40,
            shopfloor=Shopfloor(style="legacy"),
            line=line,
            announce_line=True,
        ):
            assert done.wait(10), order[-5:]
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        seen = list(order)
    states = [i for i, (t, _) in enumerate(seen) if t == running]
    stopped, restarted = states[1], states[2]
    between = [t for t, _ in seen[stopped:restarted]]
    assert on_line.topic not in between  # the line stood
    assert between.count(off_line.topic) >= 10  # the other gauge went on (0.5 s at 40/s)
    for topic, payload in seen:
        if topic == running:
            continue
        doc = json.loads(payload)
        assert doc["operator"] in {"kim", "lee", "sam"}
        assert doc["batch"].startswith(f"L{1 if topic == on_line.topic else 2}")
        reading = parse_reading(payload, subgroup_size=1, received_at=datetime.now(UTC))
        assert reading.batch == doc["batch"]
        assert reading.operator == doc["operator"]


def test_a_backfill_sends_the_lines_recent_history_at_once(
    mosquitto: MosquittoProcess, topic_prefix: str
) -> None:
    """``backfill``: the first ticks go out at once, time-stamped ``1 / rate`` apart up to
    now; then the readings keep the pace."""
    profile = GaugeProfile(1, f"{topic_prefix}/char/1/reading", mean=10.0, sigma=0.02)
    recorder = Recorder(mosquitto, [profile.topic], expected=6)
    try:
        assert recorder.subscribed.wait(5)
        began = time.time()
        with GaugePublisher(
            "127.0.0.1", mosquitto.port, [Gauge(profile, seed=2)], rate=0.5, backfill=5
        ):
            assert recorder.enough.wait(5)  # five at once and the first paced one: not 10 s
            arrived = time.time() - began
    finally:
        recorder.close()
    stamps = [json.loads(p)["ts"] / 1000 for p in recorder.payloads[profile.topic][:6]]
    assert arrived < 3
    assert [round(b - a, 1) for a, b in itertools.pairwise(stamps)] == [2.0] * 5
    assert abs(stamps[-1] - began) < 1.5  # the sixth is "now"
