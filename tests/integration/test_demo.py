"""`openspc demo` as a user runs it: a real subprocess, watched from outside over MQTT and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiomqtt
import pytest

from bridge._mosquitto import find_mosquitto, free_port
from bridge._package_data import hmi_dir

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

OPENSPC = str(Path(sys.executable).with_name("openspc"))


@dataclass
class Demo:
    """A running `openspc demo` subprocess and what it printed."""

    state_dir: Path
    mqtt_port: int = field(default_factory=free_port)
    ws_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None

    def start(self, *extra: str, env: dict[str, str] | None = None) -> Demo:
        self.process = subprocess.Popen(
            [
                OPENSPC,
                "demo",
                "--mqtt-port",
                str(self.mqtt_port),
                "--ws-port",
                str(self.ws_port),
                "--gateway-port",
                str(self.gateway_port),
                "--state-dir",
                str(self.state_dir),
                "--rate",
                "20",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        return self

    def interrupt(self, signum: signal.Signals = signal.SIGINT) -> None:
        """Ctrl-C (or another signal, e.g. SIGTERM from a service manager)."""
        assert self.process is not None
        self.process.send_signal(signum)

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        """Its exit status and output, once it has exited."""
        assert self.process is not None
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate()

    @property
    def broker_pid(self) -> int:
        return int((self.state_dir / "broker" / "data" / "mosquitto.pid").read_text())


@pytest.fixture
def state_root() -> Iterator[Path]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (scripts/setup installs it)")
    # not pytest's tmp_path: Mosquitto drops root to user `mosquitto`, who must reach it
    root = Path(tempfile.mkdtemp(prefix="openspc-demo-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


class PortRace(Exception):
    """Another process took a port between choosing it and the demo binding it."""


async def start_demo(
    state_dir: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    ports: tuple[int, int] | None = None,
) -> tuple[Demo, aiomqtt.Client]:
    """Start the demo (on ``ports``, or free ones) and connect a watcher to it."""
    for _ in range(3):
        mqtt_port, ws_port = ports or (free_port(), free_port())
        demo = Demo(state_dir, mqtt_port, ws_port).start(*extra, env=env)
        try:
            return demo, await watcher(demo)
        except PortRace:
            ports = None  # tests elsewhere on this machine open ports too: choose again
        except BaseException:
            demo.kill()
            raise
    raise AssertionError("three port races in a row")


async def watcher(demo: Demo, wait: float = 20) -> aiomqtt.Client:
    """An anonymous client on the demo's WebSocket port (the MQTT port takes named users
    only), once the demo's broker answers."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        assert demo.process is not None
        if demo.process.poll() is not None:
            _, err = demo.process.communicate()
            if demo.process.returncode == 2 and " is in use: choose another with " in err:
                raise PortRace(err)
            raise AssertionError(f"the demo exited {demo.process.returncode}: {err}")
        client = aiomqtt.Client("127.0.0.1", demo.ws_port, transport="websockets", timeout=5)
        try:
            await client.__aenter__()
        except aiomqtt.MqttError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)  # polling a port that is not open yet: no event to await
            continue
        return client


async def messages(client: aiomqtt.Client) -> AsyncIterator[tuple[str, dict[str, object]]]:
    async for message in client.messages:
        payload = message.payload
        assert isinstance(payload, bytes | bytearray)
        yield str(message.topic), json.loads(payload)


def http_get(port: int) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return int(response.status), bytes(response.read())


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return "gone"


async def test_the_demo_runs_a_plant_and_stops_cleanly(state_root: Path) -> None:
    demo, client = await start_demo(state_root / "state")
    try:
        try:
            await client.subscribe("openspc/char/+/sample", qos=1)
            await client.subscribe("openspc/char/+/violation", qos=1)
            await client.subscribe("openspc/bridge/status", qos=1)
            samples: list[dict[str, object]] = []
            violations: list[dict[str, object]] = []
            async with asyncio.timeout(30):
                async for topic, message in messages(client):
                    if topic.endswith("/sample"):
                        samples.append(message)
                    elif topic.endswith("/violation"):
                        violations.append(message)
                    if len(samples) >= 5 and violations:
                        break
            assert {m["type"] for m in samples} == {"sample"}
            assert violations[0]["type"] == "violation"

            violation = violations[0]["payload"]
            assert isinstance(violation, dict)
            reply = await acknowledge_as_alice(demo, violation, client)
            assert reply == {"ok": True}

            status, body = await asyncio.to_thread(http_get, demo.ws_port)
            assert status == 200
            assert body == (hmi_dir() / "index.html").read_bytes()

            broker_pid = demo.broker_pid
            assert process_exists(broker_pid)
            demo.interrupt()
            async with asyncio.timeout(20):
                async for topic, message in messages(client):
                    if topic == "openspc/bridge/status" and message["online"] is False:
                        break
        finally:
            with contextlib.suppress(aiomqtt.MqttError):  # the demo stopped its broker
                await client.__aexit__(None, None, None)
        returncode, out, err = await asyncio.to_thread(demo.finish)
    finally:
        demo.kill()
    assert returncode == 0, err
    assert f"http://127.0.0.1:{demo.ws_port}/" in out
    assert "alice / " in out
    assert "bob / " in out
    assert not process_exists(broker_pid)


async def acknowledge_as_alice(
    demo: Demo, violation: dict[str, object], watcher: aiomqtt.Client
) -> dict[str, object]:
    """Alice, as the HMI does it (WebSockets, MQTT 5, a response topic): the bridge's reply,
    once the ack_update has reached the (anonymous) watcher too."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    credentials = json.loads((demo.state_dir / "credentials.json").read_text())
    reply_topic = f"openspc/reply/alice/test-{uuid.uuid4().hex[:8]}"  # her own reply tree
    cid = violation["characteristic_id"]
    await watcher.subscribe(f"openspc/char/{cid}/ack", qos=1)
    async with aiomqtt.Client(
        "127.0.0.1",
        demo.ws_port,
        username="alice",
        password=credentials["alice"],
        transport="websockets",
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
    ) as alice:
        await alice.subscribe(reply_topic, qos=1)
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = reply_topic
        properties.CorrelationData = b"42"
        command = {"violation_id": violation["violation_id"], "reason": "Tool Change"}
        await alice.publish(
            "openspc/cmd/ack/alice", json.dumps(command), qos=1, properties=properties
        )
        async with asyncio.timeout(10):
            _, answer = await anext(messages(alice))
    async with asyncio.timeout(10):
        async for topic, message in messages(watcher):
            payload = message.get("payload")
            if topic.endswith("/ack") and isinstance(payload, dict):
                assert payload["violation_id"] == violation["violation_id"]
                assert (payload["user"], payload["acknowledged"]) == ("alice", True)
                break
    return answer


def passwords(out: str) -> dict[str, str]:
    """The demo users' passwords from the banner's `name / password` lines."""
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "/" and parts[0] in {"alice", "bob", "gauges", "bridge"}:
            found[parts[0]] = parts[2]
    return found


async def first_sample_ids(client: aiomqtt.Client, since: datetime, count: int = 3) -> list[int]:
    """The ids of the first ``count`` samples measured after ``since`` (not the retained one,
    nor the last sample the bridge publishes again on start)."""
    ids: list[int] = []
    try:
        await client.subscribe("openspc/char/2/sample", qos=1)
        async with asyncio.timeout(30):
            async for _, message in messages(client):
                payload = message["payload"]
                assert isinstance(payload, dict)
                if datetime.fromisoformat(str(payload["timestamp"])) >= since:
                    ids.append(int(payload["sample_id"]))
                if len(ids) == count:
                    return ids
    finally:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)
    raise AssertionError("unreachable")


async def test_a_second_run_carries_on_and_reset_starts_afresh(state_root: Path) -> None:
    state = state_root / "state"
    runs: list[tuple[list[int], dict[str, str]]] = []
    plant_db = state_root / "plant.db"
    # the plant's own overrides must not leak into the demo (nor simulated data into its DB)
    plant_env = {
        "OPENSPC_BROKER__PORT": "1",
        "OPENSPC_DATABASE__URL": f"sqlite+aiosqlite:///{plant_db}",
    }
    ports: tuple[int, int] | None = None  # a user runs it again on the same ports
    for extra, signum in (([], signal.SIGINT), ([], signal.SIGTERM), (["--reset"], signal.SIGINT)):
        since = datetime.now(UTC)
        demo, client = await start_demo(state, *extra, env=plant_env, ports=ports)
        ports = (demo.mqtt_port, demo.ws_port)
        try:
            ids = await first_sample_ids(client, since)
            demo.interrupt(signum)
            returncode, out, err = await asyncio.to_thread(demo.finish)
        finally:
            demo.kill()
        assert returncode == 0, err
        runs.append((ids, passwords(out)))
    (first_ids, first_pw), (second_ids, second_pw), (reset_ids, reset_pw) = runs
    assert not plant_db.exists()
    assert set(first_pw) == {"alice", "bob", "gauges", "bridge"}
    assert second_pw == first_pw  # the same users log in again
    assert min(second_ids) > max(first_ids)  # the same database, carrying on
    assert reset_pw["alice"] != first_pw["alice"]  # afresh: new users
    assert min(reset_ids) < min(second_ids)  # and a new database


def test_ports_taken_exit_2_naming_the_port_before_starting_anything(state_root: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        state = state_root / "state"
        result = subprocess.run(
            [
                OPENSPC,
                "demo",
                "--mqtt-port",
                str(taken),
                "--ws-port",
                str(free_port()),
                "--gateway-port",
                str(free_port()),
                "--state-dir",
                str(state),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"openspc demo: port {taken} (MQTT) is in use: choose another with --mqtt-port PORT"
    ]
    assert not state.exists()


def _state_dir_case(state_root: Path, case: str) -> Path:
    if case == "unreachable":
        if os.geteuid() != 0:
            pytest.skip("only as root does Mosquitto drop to user mosquitto")
        locked = state_root / "locked"
        locked.mkdir(mode=0o700)
        return locked / "state"
    other = state_root / "my-files"
    other.mkdir()
    (other / "thesis.txt").write_text("not a demo's")
    return other


@pytest.mark.parametrize(
    ("case", "extra", "message"),
    [
        ("unreachable", [], "which user 'mosquitto' cannot enter"),
        ("not-a-demo", ["--reset"], "is not an empty or earlier demo directory"),
        ("not-a-demo", [], "is not empty and holds no earlier demo"),
    ],
)
def test_an_unusable_state_dir_exits_2_and_deletes_nothing(
    state_root: Path, case: str, extra: list[str], message: str
) -> None:
    state = _state_dir_case(state_root, case)
    before = sorted(state_root.rglob("*"))
    result = subprocess.run(
        [
            OPENSPC,
            "demo",
            "--mqtt-port",
            str(free_port()),
            "--ws-port",
            str(free_port()),
            "--gateway-port",
            str(free_port()),
            "--state-dir",
            str(state),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"openspc demo: state directory {state} ")
    assert message in last
    assert last.endswith("choose another with --state-dir DIR")
    assert sorted(state_root.rglob("*")) == before


async def test_the_demo_has_a_p_chart_and_an_ewma_chart(state_root: Path) -> None:
    """A vision station (p chart, defectives of about 50 inspected) and an EWMA chart, fed
    by the demo's gauge user through the broker's ACL: samples with their plotted point."""
    demo, client = await start_demo(state_root / "state", "--rate", "20")
    try:
        try:
            for topic in ("5/sample", "6/sample", "5/meta", "6/meta"):
                await client.subscribe(f"openspc/char/{topic}", qos=1)
            await client.subscribe("openspc/bridge/errors", qos=1)
            samples: dict[str, list[dict[str, Any]]] = {"5": [], "6": []}
            metas: dict[str, dict[str, Any]] = {}
            errors: list[dict[str, object]] = []
            async with asyncio.timeout(30):
                async for topic, message in messages(client):
                    cid, leaf = (
                        topic.split("/")[2:4] if topic.startswith("openspc/char/") else ("", "")
                    )
                    if leaf == "sample":
                        samples[cid].append(cast(dict[str, Any], message["payload"]))
                    elif leaf == "meta":
                        metas[cid] = cast(dict[str, Any], message["payload"])
                    else:
                        errors.append(message)
                    if len(metas) == 2 and all(len(s) >= 3 for s in samples.values()):
                        break
        finally:
            demo.interrupt()
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)
        returncode, _, err = await asyncio.to_thread(demo.finish)
    finally:
        demo.kill()
    assert returncode == 0, err
    assert errors == []
    assert (metas["5"]["chart"], metas["5"]["parameters"]) == ("p", {})
    assert (metas["6"]["chart"], metas["6"]["parameters"]) == ("ewma", {"lambda": 0.2, "L": 3.0})
    for p in samples["5"]:
        assert isinstance(p["value"], int)
        assert 45 <= p["inspected"] <= 55
        assert p["statistic"] == pytest.approx(p["value"] / p["inspected"], rel=1e-9)
    assert {"statistic", "ucl", "lcl"} <= set(samples["6"][0])
