"""`openspc gateway` under bad input, slow and silent clients, and a broker that goes away.

Bad frames get an ``error`` (or, for an oversized one, close code 1009) and never stop the
gateway; a client that falls behind is closed with 1008 while the others get everything in
order; the broker's restart is reported to every client and the feed resumes
(docs/gateway.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge._mosquitto import MosquittoProcess
from bridge.gateway import MAX_IDS
from tests.integration.conftest import Probe, char
from tests.integration.gateway_support import (
    FIXED,
    TIMEOUT,
    Plant,
    open_plant,
    outliving_probe,
    small_window_socket,
    ws_client,
)

pytestmark = pytest.mark.mosquitto


@pytest.fixture
async def plant(
    mosquitto: MosquittoProcess, probe: Probe, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[Plant]:
    async with open_plant(mosquitto, probe, topic_prefix, tmp_path) as p:
        yield p


BAD_FRAMES = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", 'a message must be a JSON object like {"type": "ping"}'),
    ('"ping"', 'a message must be a JSON object like {"type": "ping"}'),
    ("{}", "type is required: subscribe, unsubscribe or ping"),
    ('{"type": "hello"}', 'unknown message type "hello": use subscribe, unsubscribe or ping'),
    ('{"type": 7}', "unknown message type 7: use subscribe, unsubscribe or ping"),
    ('{"type": "subscribe"}', "characteristic_ids is required: a list of integers"),
    (
        '{"type": "subscribe", "characteristic_ids": "1,2"}',
        'characteristic_ids must be a list of integers, got "1,2"',
    ),
    (
        '{"type": "subscribe", "characteristic_ids": [1, "2"]}',
        'characteristic_ids must be integers, got "2"',
    ),
    (
        '{"type": "subscribe", "characteristic_ids": [1.5]}',
        "characteristic_ids must be integers, got 1.5",
    ),
    (
        '{"type": "unsubscribe", "characteristic_ids": [true]}',
        "characteristic_ids must be integers, got true",
    ),
    (
        '{"type": "subscribe", "characteristic_ids": [null]}',
        "characteristic_ids must be integers, got null",
    ),
    (
        '{"type": "subscribe", "characteristic_ids": [1], "replay": -1}',
        "replay must be a whole number of samples (0 or more), got -1",
    ),
    (
        '{"type": "subscribe", "characteristic_ids": [1], "severities": ["LOW"]}',
        'unknown severity "LOW": use CRITICAL, WARNING',
    ),
    (
        '{"type": "subscribe", "characteristic_ids": [1], "max_rate": 0}',
        "max_rate must be a number of samples a second above 0 and at most 1000, got 0",
    ),
    ("\x00\xff", "not valid JSON"),
    ("[" * 100_00 + "]" * 100_00, "not valid JSON"),
]


async def test_bad_frames_get_an_error_and_the_connection_stays_open(plant: Plant) -> None:
    await plant.start_bridge([char(1)])
    gateway = await plant.start_gateway()
    async with ws_client(gateway.url) as ws:
        for frame, _ in BAD_FRAMES:
            await ws.ws.send(frame)
        await ws.ws.send(b'{"type": "ping"}')  # a binary frame of JSON is read too
        await ws.wait_type("pong")
        assert ws.messages == [
            *({"type": "error", "payload": {"message": why}} for _, why in BAD_FRAMES),
            {"type": "pong"},
        ]
        # nothing was subscribed by the refused messages
        await ws.send({"type": "subscribe", "characteristic_ids": []})
        [answer] = await ws.wait_type("subscribed")
        assert answer == {"characteristic_ids": []}


async def test_ten_thousand_ids_are_refused_whole_with_a_clear_error(plant: Plant) -> None:
    await plant.start_bridge([char(1)])
    gateway = await plant.start_gateway()
    async with ws_client(gateway.url) as ws:
        ids = list(range(1, 10_001))
        await ws.send({"type": "subscribe", "characteristic_ids": ids})
        [error] = await ws.wait_type("error")
        assert error == {
            "message": f"at most {MAX_IDS} characteristic_ids in one message, got 10000"
        }
        # at the bound: accepted, the unknown ids named (the first 20 of them)
        await ws.send({"type": "subscribe", "characteristic_ids": ids[:MAX_IDS]})
        [subscribed] = await ws.wait_type("subscribed")
        assert subscribed == {"characteristic_ids": [1]}
        [_, unknown] = await ws.wait_type("error", 2)
        assert unknown["message"] == (
            "unknown characteristics "
            + ", ".join(str(i) for i in range(2, 22))
            + f" and {MAX_IDS - 21} more: not subscribed"
        )
        assert unknown["characteristic_ids"] == list(range(2, 22))


async def test_a_one_megabyte_frame_closes_with_1009_bad_utf8_1007_others_served(
    plant: Plant,
) -> None:
    await plant.start_bridge([char(1)])
    gateway = await plant.start_gateway()
    async with ws_client(gateway.url) as other:
        async with connect(gateway.url, max_size=None) as ws:
            await ws.send(json.dumps({"type": "ping", "pad": "x" * 1_000_000}))
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1009
        async with connect(gateway.url) as ws:
            await ws.send(b'{"type": "\xff"}', text=True)  # a text frame that is not UTF-8
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1007
        await other.ping_pong()
        assert other.messages == [{"type": "pong"}]


async def test_clients_beyond_max_clients_are_refused_with_503(plant: Plant) -> None:
    await plant.start_bridge([char(1)])
    gateway = await plant.start_gateway(max_clients=2)
    async with ws_client(gateway.url) as first, ws_client(gateway.url) as second:
        with pytest.raises(InvalidStatus) as info:
            async with connect(gateway.url):
                pass
        assert info.value.response.status_code == 503
        await first.ping_pong()
        await second.ping_pong()
    async with asyncio.timeout(TIMEOUT):
        await gateway.hub.wait_clients(0)
    async with ws_client(gateway.url) as again:  # a place is free again
        await again.ping_pong()


async def test_a_slow_client_is_closed_with_1008_while_a_fast_one_gets_everything_in_order(
    plant: Plant,
) -> None:
    await plant.start_bridge([char(1, **FIXED, rules=[1])])
    # the closing handshake waits (up to 30 s) for the slow client to read what was queued
    gateway = await plant.start_gateway(client_queue_bytes=8192, close_timeout=30)
    slow_sock = small_window_socket(gateway.port)
    async with (
        ws_client(gateway.url) as fast,
        connect(gateway.url, sock=slow_sock, max_queue=1, compression=None) as slow,
    ):
        await fast.send({"type": "subscribe", "characteristic_ids": [1]})
        await slow.send(json.dumps({"type": "subscribe", "characteristic_ids": [1]}))
        await fast.wait_type("subscribed")
        total = 1000
        for i in range(total):
            await plant.reading(1, 10 + (i % 10) / 10)
        mqtt = await plant.samples_on_mqtt(1, total)
        expected = [m["payload"]["sample_id"] for m in mqtt]
        got = await fast.wait_type("sample", total)
        assert [s["sample_id"] for s in got] == expected  # everything, in order
        assert gateway.hub.slow_closed == 1
        # the slow client reads now: a prefix of the same sequence, then 1008
        received: list[int] = []
        with pytest.raises(ConnectionClosed) as info:
            await _read_samples(slow, received)
        closed = info.value
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1008
        assert closed.rcvd.reason.startswith("too slow: ")
        assert 0 < len(received) < total
        assert received == expected[: len(received)]
        await fast.ping_pong()
        assert fast.closed is None


async def _read_samples(ws: ClientConnection, into: list[int]) -> None:
    async with asyncio.timeout(TIMEOUT):
        async for frame in ws:
            message = json.loads(frame)
            if message["type"] == "sample":
                into.append(message["payload"]["sample_id"])


async def test_a_client_that_reads_nothing_is_dropped(plant: Plant) -> None:
    await plant.start_bridge([char(1, **FIXED, rules=[1])])
    gateway = await plant.start_gateway(client_queue_bytes=8192, close_timeout=0.5)
    sock = small_window_socket(gateway.port)
    async with connect(gateway.url, sock=sock, max_queue=1, compression=None) as silent:
        await silent.send(json.dumps({"type": "subscribe", "characteristic_ids": [1]}))
        async with ws_client(gateway.url) as fast:
            await fast.send({"type": "subscribe", "characteristic_ids": [1]})
            await fast.wait_type("subscribed")
            for i in range(1000):
                await plant.reading(1, 10 + (i % 10) / 10)
            await fast.wait_type("sample", 1000)
            # the close handshake cannot reach it: the gateway drops the connection
            async with asyncio.timeout(TIMEOUT):
                await gateway.hub.wait_clients(1)
            assert gateway.hub.slow_closed == 1
            await fast.ping_pong()


async def test_idle_clients_are_closed_and_pinging_ones_kept(plant: Plant) -> None:
    await plant.start_bridge([char(1)])
    gateway = await plant.start_gateway(idle_timeout=2.0)
    async with ws_client(gateway.url) as idle, ws_client(gateway.url) as busy:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while idle.closed is None:
            await busy.ping_pong()
            await asyncio.sleep(0.3)  # a client's ping period
            assert loop.time() - started < TIMEOUT
        closed = await idle.wait_closed()
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (
            1000,
            "idle: no message for 2 s (send a ping)",
        )
        assert loop.time() - started >= 2.0
        for _ in range(8):  # busy outlives more idle periods
            await busy.ping_pong()
            await asyncio.sleep(0.3)
        assert busy.closed is None


async def test_the_broker_going_away_is_told_and_the_feed_resumes(
    fresh_mosquitto: MosquittoProcess, topic_prefix: str, tmp_path: Path
) -> None:
    broker = fresh_mosquitto
    async with (
        outliving_probe(broker, f"{topic_prefix}/#") as probe,
        open_plant(broker, probe, topic_prefix, tmp_path) as plant,
    ):
        await plant.start_bridge([char(1, **FIXED, rules=[1])])
        gateway = await plant.start_gateway()
        async with ws_client(gateway.url) as ws:
            await ws.send({"type": "subscribe", "characteristic_ids": [1]})
            await ws.wait_type("subscribed")
            for value in (10.0, 10.2):
                await plant.reading(1, value)
            await ws.wait_type("sample", 2)

        async with ws_client(gateway.url) as ws:
            await ws.send({"type": "subscribe", "characteristic_ids": [1]})
            await ws.wait_type("subscribed")
            broker.stop()
            [down] = await ws.wait_type("error")
            assert down == {"message": "broker unavailable"}
            await ws.ping_pong()  # still connected and served
            async with ws_client(gateway.url) as late:  # connects while the broker is away
                [told] = await late.wait_type("error")
                assert told == {"message": "broker unavailable"}
            broker.start()
            async with outliving_probe(broker, f"{topic_prefix}/#") as again:
                await again.wait_for(f"{topic_prefix}/bridge/status", lambda s: s["online"])
                for value in (9.8, 10.1, 10.3):
                    await again.publish(f"{topic_prefix}/char/1/reading", json.dumps(value))
                after = await again.wait_for(
                    f"{topic_prefix}/char/1/sample", lambda s: s["payload"]["values"] == [10.3]
                )
            last = after[-1]["payload"]["sample_id"]
            await ws.wait_type("sample", sample_id=last)
            ids = [s["sample_id"] for s in ws.of("sample")]
            assert ids == sorted(set(ids)), "no duplicate, in order"
            values = [s["value"] for s in ws.of("sample")]
            assert values[-3:] == [9.8, 10.1, 10.3]
            assert ws.closed is None


async def test_samples_published_while_the_gateway_was_cut_off_are_sent_on_in_order(
    plant: Plant,
) -> None:
    await plant.start_bridge([char(1, **FIXED)])
    gateway = await plant.start_gateway()
    async with ws_client(gateway.url) as ws:
        await ws.send({"type": "subscribe", "characteristic_ids": [1]})
        await ws.wait_type("subscribed")
        for value in (10.0, 10.1):
            await plant.reading(1, value)
        await ws.wait_type("sample", 2)
        # the gateway's MQTT side goes away (its state stays), the bridge goes on
        gateway.feed_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gateway.feed_task
        for value in (10.2, 10.3, 10.4):
            await plant.reading(1, value)
        await plant.probe.wait_for(
            f"{plant.prefix}/char/1/history", lambda h: len(h["payload"]["samples"]) == 5
        )
        assert len(ws.of("sample")) == 2
        # back: the missed samples come from the retained history, then live ones
        feed = asyncio.create_task(gateway.feed.run())
        try:
            await ws.wait_type("sample", 5)
            await plant.reading(1, 10.5)
            samples = await ws.wait_type("sample", 6)
            assert [s["value"] for s in samples] == [10.0, 10.1, 10.2, 10.3, 10.4, 10.5]
            await ws.ping_pong()
            assert len(ws.of("sample")) == 6  # the retained sample was not sent again
        finally:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
