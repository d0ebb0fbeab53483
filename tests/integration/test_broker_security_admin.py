"""The shipped config and its administration: rendering, `openspc users`, deep persistent queues."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from bridge._mosquitto import find_mosquitto, free_port
from bridge.broker import DEFAULT_TEMPLATE, BrokerLayout, PlantBroker, Role, render_config

OPENSPC = [str(Path(sys.executable).with_name("openspc"))]


def test_the_default_layout_renders_the_shipped_file_unchanged() -> None:
    assert render_config(BrokerLayout()) == DEFAULT_TEMPLATE.read_text()


def test_a_loopback_layout_binds_both_listeners_to_ipv4_loopback() -> None:
    text = render_config(BrokerLayout(mqtt_port=11883, ws_port=19001, bind="127.0.0.1"))
    lines = text.splitlines()
    for listener in ("listener 11883 127.0.0.1", "listener 19001 127.0.0.1"):
        assert lines[lines.index(listener) + 1] == "socket_domain ipv4"
    assert lines[lines.index("listener 19001 127.0.0.1") + 2] == "protocol websockets"


@pytest.fixture
def plant() -> Iterator[PlantBroker]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (scripts/setup installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="openspc-admin-"))
    broker = PlantBroker(workdir, mqtt_port=free_port(), ws_port=free_port())
    try:
        with broker:
            yield broker
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def users(plant: PlantBroker, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPENSPC, "users", *argv, "--password-file", str(plant.workdir / "passwd")],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def can_login(plant: PlantBroker, user: str, password: str) -> bool:
    try:
        async with aiomqtt.Client(
            "127.0.0.1", plant.mqtt_port, username=user, password=password, timeout=5
        ):
            return True
    except aiomqtt.MqttError:
        return False


async def eventually_login(plant: PlantBroker, user: str, password: str, *, expect: bool) -> bool:
    """Mosquitto applies SIGHUP in its main loop: wait (up to 5 s) for the change to show."""
    deadline = time.monotonic() + 5
    while True:
        result = await can_login(plant, user, password)
        if result == expect or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


@pytest.mark.mosquitto
async def test_users_add_and_remove_take_effect_on_reload(plant: PlantBroker) -> None:
    assert await can_login(plant, "carol", "carol-pw") is False

    added = users(plant, "add", "carol", "--role", "hmi", "--reload", stdin="carol-pw\n")
    assert added.returncode == 0, added.stderr
    assert "reload" in added.stdout
    assert await eventually_login(plant, "carol", "carol-pw", expect=True) is True
    assert await can_login(plant, "carol", "wrong") is False

    listed = users(plant, "list")
    assert listed.stdout.splitlines()[1].split() == ["carol", "hmi"]

    removed = users(plant, "remove", "carol", "--reload")
    assert removed.returncode == 0, removed.stderr
    assert await eventually_login(plant, "carol", "carol-pw", expect=False) is False


@pytest.mark.mosquitto
async def test_a_generated_password_is_printed_once_and_works(plant: PlantBroker) -> None:
    added = users(plant, "add", "gauge9", "--role", "gauge", "--generate", "--reload")
    assert added.returncode == 0, added.stderr
    printed = [line for line in added.stdout.splitlines() if line.startswith("password: ")]
    assert len(printed) == 1
    password = printed[0].removeprefix("password: ")
    assert len(password) >= 16
    assert await eventually_login(plant, "gauge9", password, expect=True) is True


@pytest.mark.mosquitto
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["add", "a/b", "--role", "hmi", "--password", "x"], "user name 'a/b'"),
        (["add", "dave", "--role", "hmi", "--password", ""], "password must be"),
        (["add", "g", "--role", "gauge", "--topic", "a/#/b", "--password", "x"], "'#'"),
        (["add", "h", "--role", "hmi", "--topic", "a/b", "--password", "x"], "--topic is for"),
        (["remove", "nobody"], "no broker user 'nobody'"),
        (["add", "x", "--role", "admin", "--password", "x"], "invalid choice"),
    ],
)
def test_users_mistakes_exit_2_with_one_clear_line(
    plant: PlantBroker, argv: list[str], message: str
) -> None:
    result = users(plant, *argv)
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1]


@pytest.mark.mosquitto
async def test_a_bridge_down_across_a_broker_restart_loses_no_qos1_reading(
    plant: PlantBroker,
) -> None:
    char_id = 1 + uuid.uuid4().int % 10**6
    plant.users.add("bridge", Role.BRIDGE, "bridge-pw")
    plant.users.add("gauge", Role.GAUGE, "gauge-pw", characteristics=[char_id])
    plant.reload()
    assert await eventually_login(plant, "gauge", "gauge-pw", expect=True) is True
    topic = f"openspc/char/{char_id}/reading"
    identifier = f"bridge-{uuid.uuid4().hex[:6]}"
    count = 3000  # three times Mosquitto's default max_queued_messages (1000)

    def bridge() -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1",
            plant.mqtt_port,
            username="bridge",
            password="bridge-pw",
            identifier=identifier,
            clean_session=False,
            timeout=5,
        )

    async with bridge() as client:
        await client.subscribe(topic, qos=1)
    async with aiomqtt.Client(
        "127.0.0.1", plant.mqtt_port, username="gauge", password="gauge-pw", timeout=5
    ) as gauge:
        for i in range(count):
            await gauge.publish(topic, str(i), qos=1)

    plant.stop()  # SIGTERM: Mosquitto writes its persistence file
    plant.start()

    received: list[int] = []
    async with bridge() as client:
        async with asyncio.timeout(30):
            async for message in client.messages:
                received.append(int(bytes(message.payload)))  # type: ignore[arg-type]  # bytes
                if len(received) == count:
                    break
    assert received == list(range(count))
