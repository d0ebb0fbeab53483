"""Overload: a broker that takes the bridge's publishes slower than readings come.

The bridge reaches Mosquitto through a proxy that forwards what the bridge sends at 60 kB/s
(what the broker sends back goes at full speed), while a gauge connected directly sends
readings as fast as it can. The bridge must hold its unconfirmed publishes at
``outbound_max`` (plus the batch in hand) and its readings at ``buffer_max``, and lose
nothing: every reading stored, every sample delivered in order (docs/bridge.md, "Bounded
outbound").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge._mosquitto import MosquittoProcess, free_port
from bridge.app import bootstrap
from bridge.config import Settings

pytestmark = pytest.mark.mosquitto

CHARS = 20
PER_CHAR = 50
OUTBOUND_MAX = 300
BUFFER_MAX = 200
BATCH_MAX = 50
UPSTREAM_BYTES_S = 60_000


class SlowUpstream:
    """127.0.0.1:``port`` -> the broker; client -> broker at ``rate`` bytes/s, the other way
    at full speed (one thread per direction)."""

    def __init__(self, target_port: int, rate: float) -> None:
        self.target_port = target_port
        self.rate = rate
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._socks += [client, upstream]
            threading.Thread(target=self._copy, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._copy, args=(upstream, client, False), daemon=True).start()

    def _copy(self, src: socket.socket, dst: socket.socket, slow: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(4096 if slow else 65536):
                dst.sendall(data)
                if slow:
                    time.sleep(len(data) / self.rate)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.close()


def _client(port: int, name: str) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *_a: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10)
    return client


@pytest.mark.parametrize("split", [True, False], ids=["three-connections", "one-connection"])
async def test_a_slow_broker_holds_the_bridge_at_its_bounds_and_nothing_is_lost(
    mosquitto: MosquittoProcess, topic_prefix: str, tmp_path: Path, split: bool
) -> None:
    proxy = SlowUpstream(mosquitto.port, UPSTREAM_BYTES_S)
    settings = Settings.model_validate(
        {
            "broker": {
                "host": "127.0.0.1",
                "port": proxy.port,
                "client_id": f"slow-{topic_prefix}",
            },
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"},
            "bridge": {
                "topic_prefix": topic_prefix,
                "outbound_max": OUTBOUND_MAX,
                "buffer_max": BUFFER_MAX,
                "batch_max": BATCH_MAX,
                "history_budget": 20_000,
                "split_connections": split,
            },
            "characteristic": [
                {
                    "id": cid,
                    "name": f"c{cid}",
                    "center_line": 10.0,
                    "ucl": 13.0,
                    "lcl": 7.0,
                    "rules": [1],  # one sample a reading, no violations: a known count
                }
                for cid in range(1, CHARS + 1)
            ],
        }
    )
    received: dict[int, list[float]] = {}
    lock = threading.Lock()

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        if message.retain:
            return
        payload = json.loads(message.payload)["payload"]
        with lock:
            received.setdefault(payload["characteristic_id"], []).append(payload["value"])

    subscriber = _client(mosquitto.port, "hmi")
    subscriber.on_message = on_message
    subscribed = threading.Event()
    subscriber.on_subscribe = lambda *_a: subscribed.set()
    subscriber.subscribe(f"{topic_prefix}/char/+/sample", qos=1)
    assert subscribed.wait(10)
    gauge = _client(mosquitto.port, "gauge")
    app = await bootstrap(settings)
    stop = asyncio.Event()
    peaks = {"outstanding": 0, "buffered": 0}
    try:
        await app.start(connect_timeout=10)
        run = asyncio.create_task(app.run(stop))

        async def watch() -> None:
            while True:
                peaks["outstanding"] = max(peaks["outstanding"], app.mqtt.outstanding)
                peaks["buffered"] = max(peaks["buffered"], app.buffered)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        sent = {cid: [10 + k / 1000 for k in range(PER_CHAR)] for cid in range(1, CHARS + 1)}
        for k in range(PER_CHAR):
            for cid in sent:
                gauge.publish(f"{topic_prefix}/char/{cid}/reading", repr(sent[cid][k]), qos=1)
        deadline = time.monotonic() + 90
        while sum(map(len, received.values())) < CHARS * PER_CHAR:
            assert time.monotonic() < deadline, f"{sum(map(len, received.values()))} samples"
            await asyncio.sleep(0.05)
        watcher.cancel()
        stored = await app.store.count("samples")
        readings = await app.store.count("readings")
        mqtt = app.mqtt
        stop.set()
        await asyncio.wait_for(run, 30)
    finally:
        stop.set()
        gauge.loop_stop()
        subscriber.loop_stop()
        proxy.close()

    with lock:
        assert received == sent  # nothing lost, per-characteristic order kept
    assert (stored, readings) == (CHARS * PER_CHAR, CHARS * PER_CHAR)
    assert mqtt.window_waits > 0  # the broker was the bottleneck: the bound was reached
    # on top of the bound: one batch's samples (the pipeline waits after a batch), one
    # history per characteristic (sent beside the pipeline), "buffer full" and status
    slack = BATCH_MAX + CHARS + 2
    assert mqtt.outstanding_max <= OUTBOUND_MAX + slack, mqtt.outstanding_max
    assert peaks["outstanding"] <= OUTBOUND_MAX + slack
    if split:
        # the readings connection never reads on for the PUBACKs of results (they come on
        # the results connection): nothing past our Receive Maximum is taken, whatever the
        # broker sends
        assert mqtt.over_receive == 0
    # readings past buffer_max come only when the broker oversteps our Receive Maximum
    # (Mosquitto 2.0.11 does, after a PUBACK) while one connection reads on for its PUBACKs
    assert peaks["buffered"] <= BUFFER_MAX + 2 * BATCH_MAX + mqtt.over_receive
    print(
        f"outstanding max {mqtt.outstanding_max} (bound {OUTBOUND_MAX}), buffered max "
        f"{peaks['buffered']} (buffer_max {BUFFER_MAX}), over Receive Maximum "
        f"{mqtt.over_receive}, waits {mqtt.window_waits}"
    )
