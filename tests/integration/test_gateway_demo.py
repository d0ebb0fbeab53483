"""`openspc demo` starts the gateway too: its address printed, OpenSPC clients served."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from bridge._mosquitto import free_port
from tests.integration.test_demo import OPENSPC, start_demo, state_root  # noqa: F401 (fixture)

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]


async def test_the_demo_serves_openspcs_websocket_api_and_prints_its_address(
    state_root: Path,  # noqa: F811 (the fixture imported above)
) -> None:
    demo, client = await start_demo(state_root / "state")
    try:
        assert demo.process is not None
        assert demo.process.stdout is not None
        url = f"ws://127.0.0.1:{demo.gateway_port}/api/v1/ws"
        banner = ""
        while "Press Ctrl-C to stop." not in banner:
            line = await asyncio.to_thread(demo.process.stdout.readline)
            assert line, "the demo ended before its banner"
            banner += line
        assert f"  OpenSPC API (WebSocket):  {url}\n" in banner
        async with connect(url) as ws:
            await ws.send(
                json.dumps({"type": "subscribe", "characteristic_ids": [1, 2], "replay": 2})
            )
            first = json.loads(await ws.recv())
            assert first == {"type": "subscribed", "payload": {"characteristic_ids": [1, 2]}}
            seen: set[tuple[str, int]] = set()
            while not {("sample", 1), ("sample", 2)} <= seen:
                message = json.loads(await ws.recv())
                seen.add((message["type"], message["payload"]["characteristic_id"]))
    finally:
        await client.__aexit__(None, None, None)
        demo.interrupt()
        code, _, err = demo.finish()
    assert code == 0, err
    assert "Traceback" not in err


def test_a_taken_gateway_port_is_one_line_and_exit_2(state_root: Path) -> None:  # noqa: F811
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = subprocess.run(
            [
                OPENSPC,
                "demo",
                "--mqtt-port",
                str(free_port()),
                "--ws-port",
                str(free_port()),
                "--gateway-port",
                str(taken),
                "--state-dir",
                str(state_root / "state"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"openspc demo: port {taken} (OpenSPC WebSocket API) is in use:"
        " choose another with --gateway-port PORT"
    ]
