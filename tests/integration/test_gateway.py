"""`openspc gateway`: OpenSPC's WebSocket API end to end (docs/gateway.md).

A real bridge and a real gateway (in-process) against the session's Mosquitto, and real
``websockets`` clients: subscribe, ping, the messages of the subscribed characteristics only,
acknowledgements to everyone, replay with no gap and no duplicate, severities, max_rate.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bridge._mosquitto import MosquittoProcess
from bridge.gateway import Gateway
from tests.integration.conftest import Probe, char
from tests.integration.gateway_support import FIXED, TIMEOUT, Plant, open_plant, ws_client

pytestmark = pytest.mark.mosquitto


@pytest.fixture
async def plant(
    mosquitto: MosquittoProcess, probe: Probe, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[Plant]:
    async with open_plant(mosquitto, probe, topic_prefix, tmp_path) as p:
        yield p


class OpenSpcStyleClient:
    """A client written like OpenSPC's own example: subscribe on open, ping every
    ``ping_every`` seconds (30 in OpenSPC's example), and switch on ``message.type``."""

    def __init__(self, url: str, characteristic_ids: list[int], ping_every: float) -> None:
        self.url = url
        self.characteristic_ids = characteristic_ids
        self.ping_every = ping_every
        self.samples: list[dict[str, Any]] = []
        self.violations: list[dict[str, Any]] = []
        self.acks: list[dict[str, Any]] = []
        self.limits: list[dict[str, Any]] = []
        self.other: list[dict[str, Any]] = []
        self.pongs = 0
        self.changed = asyncio.Event()

    async def run(self) -> None:
        async with connect(self.url) as ws:
            # ws.onopen
            await ws.send(json.dumps({"type": "subscribe", "characteristic_ids": self.ids()}))

            async def keepalive() -> None:
                while True:
                    await asyncio.sleep(self.ping_every)
                    await ws.send(json.dumps({"type": "ping"}))

            pinger = asyncio.create_task(keepalive())
            try:
                # ws.onmessage
                async for data in ws:
                    message = json.loads(data)
                    match message["type"]:
                        case "sample":
                            self.samples.append(message["payload"])
                        case "violation":
                            self.violations.append(message["payload"])
                        case "ack_update":
                            self.acks.append(message["payload"])
                        case "control_limits":
                            self.limits.append(message["payload"])
                        case "pong":
                            self.pongs += 1
                        case _:
                            self.other.append(message)
                    self.changed.set()
            finally:
                pinger.cancel()

    def ids(self) -> list[int]:
        return self.characteristic_ids

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def test_a_client_written_like_openspcs_example_gets_its_characteristics(
    plant: Plant, probe: Probe, topic_prefix: str
) -> None:
    await plant.start_bridge([char(1, **FIXED, rules=[1]), char(2, **FIXED, rules=[1])])
    gateway = await plant.start_gateway()
    client = OpenSpcStyleClient(gateway.url, [1], ping_every=0.2)
    running = asyncio.create_task(client.run())
    try:
        await client.until(
            lambda: {"type": "subscribed", "payload": {"characteristic_ids": [1]}} in client.other
        )
        for value in (10.0, 11.0, 13.5, 12.0):  # 13.5: beyond the UCL (moving ranges < 3.69)
            await plant.reading(1, value)
            await plant.reading(2, value)
        mqtt_samples = await plant.samples_on_mqtt(1, 4)
        [violation] = await probe.wait_for(f"{topic_prefix}/char/1/violation")
        [other_violation] = await probe.wait_for(f"{topic_prefix}/char/2/violation")
        await client.until(lambda: len(client.samples) == 4 and len(client.violations) == 1)
        # the bridge's own payloads, unchanged, of characteristic 1 only
        assert client.samples == [m["payload"] for m in mqtt_samples]
        assert client.violations == [violation["payload"]]

        # an acknowledgement goes to every client, whatever it subscribed to
        for v in (violation, other_violation):
            body = {"violation_id": v["payload"]["violation_id"], "reason": "Tool Change"}
            await probe.publish(f"{topic_prefix}/cmd/ack/alice", json.dumps(body))
        await client.until(lambda: len(client.acks) == 2)
        assert sorted(a["characteristic_id"] for a in client.acks) == [1, 2]
        assert {a["user"] for a in client.acks} == {"alice"}

        # new limits of a subscribed characteristic arrive; the other's do not
        await probe.publish(f"{topic_prefix}/cmd/char/2/recalculate", "{}")
        await probe.publish(f"{topic_prefix}/cmd/char/1/recalculate", "{}")
        await client.until(lambda: len(client.limits) == 1)
        assert client.limits[0]["characteristic_id"] == 1
        await client.until(lambda: client.pongs >= 3)  # the pings were answered
        assert all(s["characteristic_id"] == 1 for s in client.samples)
        assert all(v["characteristic_id"] == 1 for v in client.violations)
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


async def test_messages_pass_through_byte_for_byte(plant: Plant, probe: Probe) -> None:
    await plant.start_bridge([char(1, **FIXED)])
    gateway = await plant.start_gateway()
    async with ws_client(gateway.url) as ws:
        await ws.send({"type": "subscribe", "characteristic_ids": [1]})
        await ws.wait_type("subscribed")
        for value in (10.1, 10.2):
            await plant.reading(1, value)
        await ws.wait_type("sample", 2)
        await plant.samples_on_mqtt(1, 2)
        on_mqtt = [m.payload for m in probe.matching(f"{plant.prefix}/char/1/sample")][-2:]
        assert [frame.encode() for frame in ws.raw if '"type":"sample"' in frame] == on_mqtt


async def test_replay_gives_limits_then_the_last_samples_then_live_without_gap_or_duplicate(
    plant: Plant,
) -> None:
    await plant.start_bridge([char(1, **FIXED)])
    for i in range(30):  # before the gateway exists: they count too
        await plant.reading(1, 10 + (i % 5) / 10)
    before = await plant.samples_on_mqtt(1, 30)
    gateway = await plant.start_gateway()
    feeding = asyncio.create_task(_feed(plant, 1, 40))
    try:
        async with ws_client(gateway.url) as ws:
            await plant.samples_on_mqtt(1, 35)  # subscribe while samples are flowing
            await ws.send({"type": "subscribe", "characteristic_ids": [1], "replay": 10})
            await feeding
            after = await plant.samples_on_mqtt(1, 70)
            last_id = after[-1]["payload"]["sample_id"]
            await ws.wait_type("sample", sample_id=last_id)
            kinds = [m["type"] for m in ws.messages]
            assert kinds[:2] == ["subscribed", "control_limits"]
            ids = [s["sample_id"] for s in ws.of("sample")]
            all_ids = [m["payload"]["sample_id"] for m in after]
            # oldest first, contiguous, each once, up to the last
            start = all_ids.index(ids[0])
            assert ids == all_ids[start:]
            assert len(ids) >= 10
            assert ids[0] >= before[0]["payload"]["sample_id"]
    finally:
        feeding.cancel()


async def _feed(plant: Plant, cid: int, count: int) -> None:
    for i in range(count):
        await plant.reading(cid, 10 + (i % 7) / 10)
        await asyncio.sleep(0.005)


async def test_replay_of_samples_from_before_the_gateway_started(plant: Plant) -> None:
    await plant.start_bridge([char(1, **FIXED), char(2)])
    for i in range(15):
        await plant.reading(1, 10 + i / 100)
    before = await plant.samples_on_mqtt(1, 15)
    await plant.probe.wait_for(
        f"{plant.prefix}/char/1/history",
        lambda h: len(h["payload"]["samples"]) == 15,
    )
    gateway = await plant.start_gateway()
    async with ws_client(gateway.url) as ws:
        await ws.send({"type": "subscribe", "characteristic_ids": [1, 2], "replay": 5})
        await ws.ping_pong()
        # characteristic 1: its limits, then its last 5 samples; characteristic 2 has neither
        assert [m["type"] for m in ws.messages] == [
            "subscribed",
            "control_limits",
            *["sample"] * 5,
            "pong",
        ]
        assert ws.of("sample") == [m["payload"] for m in before[-5:]]
        # replay 0: the limits alone
        await ws.send({"type": "unsubscribe", "characteristic_ids": [1]})
        await ws.send({"type": "subscribe", "characteristic_ids": [1], "replay": 0})
        await ws.ping_pong()
        assert [m["type"] for m in ws.messages[-4:]] == [
            "subscribed",
            "subscribed",
            "control_limits",
            "pong",
        ]


async def test_subscribe_and_unsubscribe_answer_with_all_current_ids(plant: Plant) -> None:
    await plant.start_bridge([char(1), char(2), char(3)])
    gateway = await plant.start_gateway()
    async with ws_client(gateway.url) as ws:
        await ws.send({"type": "subscribe", "characteristic_ids": [2, 1]})
        await ws.send({"type": "subscribe", "characteristic_ids": [3, 404, 2]})
        await ws.send({"type": "unsubscribe", "characteristic_ids": [1, 505]})
        await ws.send({"type": "ping"})
        await ws.wait_type("pong")
        assert ws.messages == [
            {"type": "subscribed", "payload": {"characteristic_ids": [1, 2]}},
            {"type": "subscribed", "payload": {"characteristic_ids": [1, 2, 3]}},
            {
                "type": "error",
                "payload": {
                    "message": "unknown characteristic 404: not subscribed",
                    "characteristic_ids": [404],
                },
            },
            {"type": "subscribed", "payload": {"characteristic_ids": [2, 3]}},
            {
                "type": "error",
                "payload": {
                    "message": "unknown characteristic 505: not subscribed",
                    "characteristic_ids": [505],
                },
            },
            {"type": "pong"},
        ]
        # unsubscribed: no more samples of 1, while 2 still arrive
        await plant.reading(1, 10.0)
        await plant.reading(2, 10.0)
        await ws.wait_type("sample", characteristic_id=2)
        await plant.samples_on_mqtt(1, 1)
        await ws.ping_pong()
        assert ws.of("sample", 1) == []


async def test_severities_pick_the_violations_a_client_gets(plant: Plant) -> None:
    rules = [{"id": 1}, {"id": 2, "length": 3}]  # rule 2 with a run of 3: a quick WARNING
    await plant.start_bridge([char(1, **FIXED, rules=rules)])
    gateway = await plant.start_gateway()
    async with (
        ws_client(gateway.url) as critical,
        ws_client(gateway.url) as everything,
    ):
        await critical.send(
            {"type": "subscribe", "characteristic_ids": [1], "severities": ["CRITICAL"]}
        )
        await everything.send({"type": "subscribe", "characteristic_ids": [1]})
        await critical.wait_type("subscribed")
        await everything.wait_type("subscribed")
        for value in (11.0, 11.0, 11.0, 13.5):  # three on one side (WARNING), one beyond (CRITICAL)
            await plant.reading(1, value)
        both = await everything.wait_type("violation", 2)
        assert sorted(v["severity"] for v in both) == ["CRITICAL", "WARNING"]
        await everything.wait_type("sample", 4)
        await critical.wait_type("sample", 4)
        await critical.ping_pong()
        assert [v["severity"] for v in critical.of("violation")] == ["CRITICAL"]


async def test_max_rate_keeps_the_latest_sample_and_never_drops_violations(
    plant: Plant,
) -> None:
    await plant.start_bridge([char(1, **FIXED, rules=[1])])
    gateway = await plant.start_gateway()
    async with ws_client(gateway.url) as slow, ws_client(gateway.url) as full:
        await slow.send({"type": "subscribe", "characteristic_ids": [1], "max_rate": 2})
        await full.send({"type": "subscribe", "characteristic_ids": [1]})
        await slow.wait_type("subscribed")
        await full.wait_type("subscribed")
        loop = asyncio.get_running_loop()
        started = loop.time()
        values = [10.0 + (i % 5) / 10 for i in range(60)]
        values[20] = values[40] = 13.5  # two violations (rule 1 re-arms in between)
        for value in values:
            await plant.reading(1, value)
        samples = await full.wait_type("sample", 60)
        last = samples[-1]["sample_id"]
        await slow.wait_type("sample", sample_id=last)  # the latest is always delivered
        elapsed = loop.time() - started
        got = slow.of("sample")
        assert len(got) <= 2 * elapsed + 2, (len(got), elapsed)
        assert len(got) < 60
        ids = [s["sample_id"] for s in got]
        assert ids == sorted(ids)
        assert len(full.of("violation")) == 2
        await slow.wait_type("violation", 2)


async def test_other_paths_are_refused_and_compression_is_offered(plant: Plant) -> None:
    await plant.start_bridge([char(1)])
    gateway = await plant.start_gateway()
    base = gateway.url.removesuffix("/api/v1/ws")
    for path in ("/", "/ws", "/api/v1/ws/extra", "/api/v2/ws"):
        with pytest.raises(InvalidStatus) as info:
            async with connect(base + path):
                pass
        assert info.value.response.status_code == 404
    async with connect(gateway.url + "?token=abc", compression="deflate") as ws:
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}
    async with connect(gateway.url, compression=None) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}


async def test_two_gateways_side_by_side_feed_the_same(plant: Plant) -> None:
    await plant.start_bridge([char(1, **FIXED)])
    first: Gateway = await plant.start_gateway()
    second: Gateway = await plant.start_gateway()
    async with ws_client(first.url) as a, ws_client(second.url) as b:
        for ws in (a, b):
            await ws.send({"type": "subscribe", "characteristic_ids": [1]})
            await ws.wait_type("subscribed")
        for value in (10.0, 10.5, 9.5):
            await plant.reading(1, value)
        assert await a.wait_type("sample", 3) == await b.wait_type("sample", 3)


async def test_a_bridge_restarted_on_a_new_database_is_followed(
    plant: Plant, tmp_path: Path
) -> None:
    await plant.start_bridge([char(1, **FIXED)])
    gateway = await plant.start_gateway()
    async with ws_client(gateway.url) as ws:
        await ws.send({"type": "subscribe", "characteristic_ids": [1]})
        await ws.wait_type("subscribed")
        for value in (10.0, 10.1, 10.2):
            await plant.reading(1, value)
        await ws.wait_type("sample", 3)
        [(app, _, _)] = plant.factory.running
        await plant.factory.stop(app)
        fresh = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        await plant.factory.start([char(1, **FIXED)], db_url=fresh)  # sample ids from 1 again
        for value in (9.9, 9.8):
            await plant.reading(1, value)
        samples = await ws.wait_type("sample", 5)
        assert [s["value"] for s in samples] == [10.0, 10.1, 10.2, 9.9, 9.8]
        assert [s["sample_id"] for s in samples[3:]] == [1, 2]


async def test_a_replay_bigger_than_half_the_client_queue_is_refused_and_live_goes_on(
    plant: Plant,
) -> None:
    await plant.start_bridge([char(1, **FIXED)])
    for i in range(30):
        await plant.reading(1, 10 + i / 100)
    await plant.samples_on_mqtt(1, 30)
    gateway = await plant.start_gateway(client_queue_bytes=8192)  # half: 4 KiB, ~15 samples
    async with ws_client(gateway.url) as ws:
        await ws.send({"type": "subscribe", "characteristic_ids": [1], "replay": 30})
        [error] = await ws.wait_type("error")
        assert error["message"].startswith("replay of 31 messages (")
        assert error["message"].endswith(
            "bytes) is more than half of client_queue_bytes (8192): not replayed;"
            " ask for fewer samples or characteristics"
        )
        await ws.send({"type": "unsubscribe", "characteristic_ids": [1]})
        await ws.send({"type": "subscribe", "characteristic_ids": [1], "replay": 3})
        await ws.ping_pong()
        assert [m["type"] for m in ws.messages] == [
            "subscribed",
            "error",
            "subscribed",
            "subscribed",
            "control_limits",
            *["sample"] * 3,
            "pong",
        ]
        await plant.reading(1, 10.5)
        [live] = await ws.wait_type("sample", value=10.5)
        assert live["characteristic_id"] == 1
