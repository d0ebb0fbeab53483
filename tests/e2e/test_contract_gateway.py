"""The WebSocket API (docs/gateway.md) from outside: `openspc run` and `openspc gateway`
as subprocesses.

A front-end's view: a plain ``websockets`` client at ``ws://HOST:PORT/api/v1/ws`` that
subscribes, pings and switches on ``message.type``; the same messages as MQTT readers see;
acknowledgements to every client; the command line's exit statuses.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from bridge._mosquitto import MosquittoProcess, free_port

from .conftest import OPENSPC, TIMEOUT, BridgeProcess, Client, unique_prefix, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.mosquitto]

FIXED = {"center_line": 10.0, "ucl": 13.0, "lcl": 7.0, "rules": [1]}


def _config(tmp: Path, broker: MosquittoProcess, prefix: str, **gateway: Any) -> Path:
    return write_config(
        tmp / "openspc.toml",
        {
            "broker": {"port": broker.port, "client_id": f"e2e-{uuid.uuid4().hex[:8]}"},
            "database": {"url": "sqlite+aiosqlite:///bridge.db"},
            "bridge": {"topic_prefix": prefix},
            "gateway": gateway,
        },
        [{"id": 1, "name": "OD", **FIXED}, {"id": 2, "name": "Bore", **FIXED}],
    )


class GatewayProcess:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [OPENSPC, "gateway", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("OPENSPC_")},
        )

    def banner(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=TIMEOUT)
        return self.process.returncode, err


@pytest.fixture
def plant(mosquitto: MosquittoProcess, tmp_path: Path) -> Iterator[tuple[str, int, Client]]:
    """The bridge running, its retained state out; the gateway's port and config written."""
    prefix = unique_prefix()
    port = free_port()
    config = _config(tmp_path, mosquitto, prefix, port=port)
    with Client(mosquitto.port) as mqtt:
        mqtt.subscribe(f"{prefix}/#")
        bridge = BridgeProcess(config).start()
        try:
            mqtt.wait_for(f"{prefix}/bridge/status", lambda d: d["online"] is True)
            mqtt.wait_msgs(f"{prefix}/char/+/meta", count=2)
            yield prefix, port, mqtt
        finally:
            assert bridge.stop() == 0, bridge.log()


async def _collect(
    url: str, ids: list[int], until: Any, ping_every: float, subscribed: asyncio.Event
) -> list[Any]:
    """OpenSPC's example: subscribe on open, ping every ``ping_every`` s, switch on type."""
    received: list[Any] = []
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "subscribe", "characteristic_ids": ids}))

        async def keepalive() -> None:
            while True:
                await asyncio.sleep(ping_every)
                await ws.send(json.dumps({"type": "ping"}))

        pinger = asyncio.create_task(keepalive())
        try:
            async with asyncio.timeout(TIMEOUT):
                async for data in ws:
                    message = json.loads(data)
                    match message["type"]:
                        case "sample" | "violation" | "ack_update" | "control_limits":
                            received.append(message)
                        case "subscribed":
                            received.append(message)
                            subscribed.set()
                        case "pong" | "error":
                            received.append(message)
                    if until(received):
                        return received
        finally:
            pinger.cancel()
    return received


def test_openspc_clients_get_the_bridges_messages_through_the_gateway(
    plant: tuple[str, int, Client], tmp_path: Path
) -> None:
    prefix, port, mqtt = plant
    gateway = GatewayProcess("--config", str(tmp_path / "openspc.toml"))
    try:
        url = f"ws://127.0.0.1:{port}/api/v1/ws"
        assert gateway.banner().startswith(f"openspc gateway: serving {url} ")

        def done(received: list[Any]) -> bool:
            kinds = [m["type"] for m in received]
            return kinds.count("sample") >= 3 and "ack_update" in kinds and "pong" in kinds

        async def scenario() -> list[Any]:
            subscribed = asyncio.Event()
            task = asyncio.create_task(_collect(url, [1], done, 0.2, subscribed))
            async with asyncio.timeout(TIMEOUT):
                await subscribed.wait()
            for value in ("10.0", "13.5", "10.5"):
                await asyncio.to_thread(mqtt.publish, f"{prefix}/char/1/reading", value)
                await asyncio.to_thread(mqtt.publish, f"{prefix}/char/2/reading", value)
            [violation] = await asyncio.to_thread(mqtt.wait_for, f"{prefix}/char/2/violation")
            body = {"violation_id": violation["payload"]["violation_id"], "reason": "Other"}
            await asyncio.to_thread(mqtt.publish, f"{prefix}/cmd/ack/alice", json.dumps(body))
            return await task

        received = asyncio.run(scenario())
        assert received[0] == {"type": "subscribed", "payload": {"characteristic_ids": [1]}}
        on_mqtt = [m.json() for m in mqtt.wait_msgs(f"{prefix}/char/1/sample", count=3)]
        assert [m for m in received if m["type"] == "sample"] == on_mqtt
        kinds = {
            (m["type"], m["payload"].get("characteristic_id")) for m in received if "payload" in m
        }
        # characteristic 2: only its acknowledgement, which goes to everyone
        assert ("ack_update", 2) in kinds
        assert ("sample", 2) not in kinds
        assert ("violation", 2) not in kinds
        assert ("violation", 1) in kinds
    finally:
        code, err = gateway.stop()
    assert code == 0, err
    assert "Traceback" not in err


def test_a_taken_port_and_a_wrong_config_are_one_line_and_exit_2(
    mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    config = _config(tmp_path, mosquitto, unique_prefix())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = subprocess.run(
            [OPENSPC, "gateway", "--config", str(config), "--port", str(taken)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"openspc gateway: port {taken} is in use: choose another with --port PORT"
    )
    wrong = _config(tmp_path, mosquitto, unique_prefix(), port="8000", idle_timeout=-1)
    result = subprocess.run(
        [OPENSPC, "gateway", "--config", str(wrong)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'{wrong}: gateway.port = "8000": must be a whole number',
        f"{wrong}: gateway.idle_timeout = -1: must be between 1 and 86400",
    ]


def test_a_broker_that_refuses_the_gateway_stops_it_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    closed = f"per_listener_settings false\nallow_anonymous false\nlistener {port} 127.0.0.1\n"
    with MosquittoProcess(port=port, config=closed) as broker:
        config = _config(tmp_path, broker, unique_prefix(), port=free_port())
        result = subprocess.run(
            [OPENSPC, "gateway", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"openspc gateway: MQTT broker 127.0.0.1:{port} refused the gateway: ")
    assert line.endswith("(connecting as an anonymous client)")
