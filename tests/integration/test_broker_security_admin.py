"""The shipped config and its administration: rendering, `openspc users`, deep persistent queues."""

from __future__ import annotations

import asyncio
import json
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

from bridge import mosquitto_admin as broker_module
from bridge._mosquitto import PlantBroker, find_mosquitto, free_port
from bridge.demo import demo_users
from bridge.mosquitto_admin import (
    DEFAULT_TEMPLATE,
    BrokerLayout,
    Role,
    check_password,
    render_config,
)

OPENSPC = [str(Path(sys.executable).with_name("openspc"))]
P = "long-enough-pw"


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
        # weak passwords (docs/security.md)
        (["add", "erin", "--role", "engineer", "--password", "pw"], "at least 8 characters"),
        (["add", "dave1234", "--role", "hmi", "--password", "Dave1234"], "not be the user name"),
        # scopes that do not fit the role, or ids spelled otherwise than topics spell them
        (["add", "h", "--role", "hmi", "--characteristics", "1", "--password", P], "gauge"),
        (["add", "g", "--role", "gauge", "--characteristics", "01", "--password", P], "ids"),
        (["add", "g", "--role", "gauge", "--characteristics", "\u0662", "--password", P], "ids"),
        (["add", "e", "--role", "edge", "--group", "Plant1", "--password", P], "go together"),
        (
            ["add", "e", "--role", "edge", "--group", "a/b", "--edge", "L", "--password", P],
            "Sparkplug id 'a/b'",
        ),
        (["add", "h", "--role", "hmi", "--client-id", "x", "--password", P], "bridge users"),
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


def test_the_demos_generated_passwords_pass_the_rules(tmp_path: Path) -> None:
    for _ in range(20):
        shutil.rmtree(tmp_path, ignore_errors=True)
        tmp_path.mkdir()
        for user in demo_users(tmp_path):
            assert check_password(user.name, user.password) == user.password


OLD_ROLES = {
    "topic_prefix": "openspc",
    "users": [
        {"name": "bridge", "role": "bridge", "topics": []},
        {"name": "edge7", "role": "edge", "topics": []},
        {"name": "gauge7", "role": "gauge", "topics": ["plant1/line3/gauge7/#"]},
        {"name": "alice", "role": "hmi", "topics": []},
    ],
}


def test_a_roles_file_from_before_scoping_still_loads(tmp_path: Path) -> None:
    """Gauges and edge nodes of an old roles.json keep their old (unscoped) rights, so an
    upgrade loses no reading, and every `openspc users` run names them until re-added."""
    (tmp_path / "roles.json").write_text(json.dumps(OLD_ROLES))
    passwd = ["--password-file", str(tmp_path / "passwd")]
    listed = run_users("list", *passwd)
    assert listed.returncode == 0, listed.stderr
    assert "edge7, gauge7 still have the old unscoped rights" in listed.stderr
    assert "LEGACY" in listed.stdout

    added = run_users("add", "carol", "--role", "hmi", *passwd, stdin="carol-secret\n")
    assert added.returncode == 0, added.stderr
    acl = (tmp_path / "acl").read_text()
    assert block(acl, "gauge7") == [
        "topic read openspc/char/#",
        "topic read openspc/bridge/#",
        "topic write openspc/char/+/reading",
        "topic write plant1/line3/gauge7/#",
    ]
    assert "topic write spBv1.0/+/NDATA/#" in block(acl, "edge7")
    assert "topic read openspc/reply/alice/#" in block(acl, "alice")
    rules = (tmp_path / "guard.rules").read_text().splitlines()
    assert "reserve openspc-bridge bridge" in rules
    assert "queue bridge" in rules

    rescoped = run_users(
        "add", "gauge7", "--role", "gauge", "--characteristics", "7", *passwd,
        stdin="gauge7-secret\n",
    )  # fmt: skip
    assert rescoped.returncode == 0, rescoped.stderr
    assert block((tmp_path / "acl").read_text(), "gauge7") == [
        "topic read openspc/char/#",
        "topic read openspc/bridge/#",
        "topic write openspc/char/7/reading",
    ]
    assert "edge7 still have" in rescoped.stderr
    assert "gauge7" not in rescoped.stderr


def run_users(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPENSPC, "users", *argv], input=stdin, capture_output=True, text=True, timeout=30
    )


def block(acl: str, user: str) -> list[str]:
    """The ACL lines of ``user``."""
    lines = acl.splitlines()
    start = lines.index(f"user {user}") + 1
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


@pytest.fixture
def guard_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The plugin's source alone in a directory of its own (as after `pip install .`,
    with no build beside it)."""
    source = tmp_path / "plugin" / "openspc_guard.c"
    source.parent.mkdir()
    shutil.copyfile(broker_module.GUARD_SOURCE, source)
    monkeypatch.setattr(broker_module, "GUARD_SOURCE", source)
    return source


def test_without_a_build_the_plugin_is_compiled_into_the_state_dir_once(
    guard_copy: Path, tmp_path: Path
) -> None:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (scripts/setup installs gcc)")
    state = tmp_path / "state"
    built = broker_module.guard_plugin(cache_dir=state)
    assert built.parent == state
    assert built.name.startswith("openspc_guard-")
    assert not (guard_copy.parent / "openspc_guard.so").exists()
    first = built.stat().st_mtime_ns
    assert broker_module.guard_plugin(cache_dir=state) == built
    assert built.stat().st_mtime_ns == first  # cached by the source's hash
    guard_copy.write_text(guard_copy.read_text() + "\n/* changed */\n")
    assert broker_module.guard_plugin(cache_dir=state) != built


def test_without_a_compiler_the_error_is_one_clear_line(
    guard_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(broker_module.GuardPluginUnavailable) as caught:
        broker_module.guard_plugin(cache_dir=tmp_path / "state")
    message = str(caught.value)
    assert "\n" not in message
    assert "no C compiler (cc)" in message
    assert "scripts/setup" in message
