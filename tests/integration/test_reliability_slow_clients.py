"""Slow HMI clients never slow the bridge: the broker, not the bridge, absorbs them.

Two bad subscribers to everything the bridge publishes (``<prefix>/#``, QoS 1):

- a raw MQTT 3.1.1 client that subscribes and then never reads its socket;
- an MQTT 5 client with manual acks that never acknowledges anything (Receive Maximum 10).

The same burst of readings is sent without them and with them; with them the bridge must
store every reading in about the same time, a healthy subscriber must see every sample,
and the bridge's own unacknowledged publishes must stay small (the broker acknowledges the
bridge's QoS 1 publishes whatever its subscribers do). The broker runs with the bounds the
shipped ``mosquitto/mosquitto.conf`` relies on (``max_inflight_messages``,
``max_queued_messages``), here small so that they are reached.
"""

from __future__ import annotations

import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge._mosquitto import MosquittoProcess, find_mosquitto, free_port, minimal_config
from tests.integration.reliability import (
    BridgeProcess,
    Gauge,
    Recorder,
    config_text,
    report,
    sqlite_samples,
    stack,
    wait_until,
)

pytestmark = [pytest.mark.reliability, pytest.mark.mosquitto]

BURST = 3000
RATE = 3000.0
MAX_INFLIGHT = 1000
MAX_QUEUED = 10_000


@pytest.fixture
def bounded_mosquitto() -> Iterator[MosquittoProcess]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="openspc-mosquitto-"))
    port = free_port()
    text = minimal_config(port, workdir / "data")
    text = text.replace("max_inflight_messages 0", f"max_inflight_messages {MAX_INFLIGHT}")
    text = text.replace("max_queued_messages 1000000", f"max_queued_messages {MAX_QUEUED}")
    with MosquittoProcess(port=port, config=text, workdir=workdir) as broker:
        yield broker


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str) -> bytes:
    data = s.encode()
    return len(data).to_bytes(2, "big") + data


def never_reading_subscriber(port: int, topic_filter: str) -> socket.socket:
    """An MQTT 3.1.1 client that subscribes with QoS 1 and never reads its socket again."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = _string("MQTT") + bytes([4, 0x02]) + (600).to_bytes(2, "big")
    body += _string(f"stuck-{uuid.uuid4().hex[:8]}")
    sock.sendall(bytes([0x10]) + _varint(len(body)) + body)
    sub = (1).to_bytes(2, "big") + _string(topic_filter) + bytes([1])
    sock.sendall(bytes([0x82]) + _varint(len(sub)) + sub)
    return sock


def never_acking_subscriber(port: int, topic_filter: str) -> tuple[paho.Client, list[int]]:
    received: list[int] = []
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"never-acks-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=True,
    )
    client.on_message = lambda c, u, m: received.append(m.mid)
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = 10
    client.connect("127.0.0.1", port, properties=props)
    client.loop_start()
    client.subscribe(topic_filter, qos=1)
    return client, received


def test_slow_subscribers_do_not_slow_the_bridge(
    bounded_mosquitto: MosquittoProcess, tmp_path: Path, topic_prefix: str
) -> None:
    broker = bounded_mosquitto
    db = tmp_path / "bridge.db"
    config = tmp_path / "slow.toml"
    config.write_text(
        config_text(
            port=broker.port,
            prefix=topic_prefix,
            client_id="reliability-slow",
            db_url=f"sqlite+aiosqlite:///{db}",
            characteristics=[{"id": 1, "name": "Shaft OD", "subgroup_size": 1}],
        )
    )
    reading = f"{topic_prefix}/char/1/reading"
    samples = f"{topic_prefix}/char/1/sample"
    outstanding: list[int] = []
    with stack() as s:
        healthy = s.enter_context(Recorder(broker.port, f"{topic_prefix}/#"))
        bridge = s.enter_context(BridgeProcess(config))
        bridge.start().wait_started()
        healthy.wait(lambda: healthy.status(topic_prefix)[-1:] == [True], 10, "status online")

        def burst(start_ms: int) -> float:
            began = time.monotonic()
            stored_before = len(sqlite_samples(db, 1))
            with Gauge(broker.port, reading, BURST, RATE, start_ms=start_ms) as gauge:
                gauge.start().wait_done(30)
            wait_until(
                lambda: len(sqlite_samples(db, 1)) >= stored_before + BURST,
                30,
                "the burst stored",
                poll=0.05,
            )
            return time.monotonic() - began

        baseline = burst(1_767_225_600_000)

        stuck = never_reading_subscriber(broker.port, f"{topic_prefix}/#")
        s.callback(stuck.close)
        lazy, lazy_got = never_acking_subscriber(broker.port, f"{topic_prefix}/#")
        s.callback(lazy.loop_stop)
        s.callback(lazy.disconnect)
        wait_until(lambda: len(lazy_got) > 0, 10, "the lazy subscriber to be served")

        with_slow = burst(1_767_229_200_000)
        healthy.wait(
            lambda: (
                len({m.json()["payload"]["sample_id"] for m in healthy.on(samples)}) >= 2 * BURST
            ),
            20,
            "every sample at the healthy subscriber",
        )
        outstanding = [
            m.json()["publish_outstanding"] for m in healthy.on(f"{topic_prefix}/bridge/metrics")
        ]
        lazy_count = len(lazy_got)
        assert bridge.alive()
        assert bridge.terminate() == 0

    report(
        f"slow clients: {BURST} readings stored in {baseline:.2f} s without them, "
        f"{with_slow:.2f} s with a never-reading and a never-acking subscriber "
        f"(the latter got {lazy_count} messages, never acked); healthy subscriber saw all "
        f"{2 * BURST} samples; bridge's unacked publishes at most {max(outstanding)}"
    )
    assert with_slow <= 2 * baseline + 2.0  # timings are noisy on a shared machine
    assert lazy_count < 100  # Receive Maximum 10 (+ QoS 0 metrics): not the 6000 samples
    # within the broker's in-flight window (max_inflight_messages 1000) on each of the two
    # connections the bridge publishes on (results and history; docs/bridge.md)
    assert max(outstanding) < 2 * 1000
