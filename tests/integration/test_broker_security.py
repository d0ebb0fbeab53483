"""The front door: a real Mosquitto running mosquitto/mosquitto.conf with the generated ACL.

One broker for the module (rendered with free ports and a temp dir), with users of every
role made by `openspc users`. A denied publish is proven absent, not assumed: a privileged
watcher subscribes to the topic, the denied client publishes (QoS 1, so the broker has routed
or dropped it once the PUBACK is back), then an allowed client publishes a marker; the
watcher awaits the marker and checks nothing of this test's came before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from bridge._mosquitto import PlantBroker, find_mosquitto, free_port
from bridge.mosquitto_admin import GuardPluginUnavailable, guard_plugin

pytestmark = [pytest.mark.mosquitto]

OPENSPC = str(Path(sys.executable).with_name("openspc"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PASSWORDS = {
    "bridge": "bridge-secret",
    "gauge1": "gauge-secret",
    "gauge2": "gauge2-secret",
    "edge1": "edge-secret",
    "alice": "alice-secret",
    "bob": "bob-secret",
    "erin": "erin-secret",
    "gw": "gateway-secret",
}
# what each user is given, as `openspc users add NAME ...` takes it
USERS = {
    "bridge": ["--role", "bridge"],
    "gauge1": ["--role", "gauge", "--characteristics", "41,42", "--topic", "plant1/line3/gauge1/#"],
    "gauge2": ["--role", "gauge", "--characteristics", "43"],
    "edge1": ["--role", "edge", "--group", "Plant1", "--edge", "Line3"],
    "alice": ["--role", "hmi"],
    "bob": ["--role", "hmi"],
    "erin": ["--role", "engineer"],
    "gw": ["--role", "gateway"],
}


def missing(what: str) -> None:
    message = f"{what} is not installed (scripts/setup installs it)"
    if IN_CI:
        pytest.fail(message + "; under CI=true this is a failure, not a skip")
    pytest.skip(message)


def add_users(workdir: Path, users: dict[str, list[str]]) -> None:
    """Make ``users`` with the command a plant uses (each password on stdin)."""
    for name, argv in users.items():
        done = subprocess.run(
            [OPENSPC, "users", "add", name, *argv, "--password-file", str(workdir / "passwd")],
            input=PASSWORDS[name] + "\n",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr


INDEX_HTML = b"<!doctype html><title>OpenSPC HMI placeholder</title><p>HMI</p>\n"


@dataclass(frozen=True)
class Who:
    """Who connects, and how: user None is anonymous; ws picks the WebSocket listener."""

    user: str | None = None
    password: str | None = None
    ws: bool = False

    @staticmethod
    def named(user: str, *, ws: bool = False) -> Who:
        return Who(user, PASSWORDS[user], ws)


ANON = Who()
ANON_WS = Who(ws=True)
BRIDGE = Who.named("bridge")


@pytest.fixture(scope="module")
def plant() -> Iterator[PlantBroker]:
    """The shipped config (free ports, a temp dir) with users made by `openspc users`."""
    if find_mosquitto() is None:
        missing("mosquitto")
    try:
        guard_plugin()
    except GuardPluginUnavailable as exc:
        missing(f"the guard plugin's build tools ({exc})")
    workdir = Path(tempfile.mkdtemp(prefix="openspc-sec-"))
    workdir.chmod(0o755)
    http_dir = workdir / "hmi"
    http_dir.mkdir()
    (http_dir / "index.html").write_bytes(INDEX_HTML)
    broker = PlantBroker(workdir, mqtt_port=free_port(), ws_port=free_port(), http_dir=http_dir)
    add_users(workdir, USERS)
    try:
        with broker:
            yield broker
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def connect(
    plant: PlantBroker, who: Who, *, protocol: aiomqtt.ProtocolVersion | None = None
) -> AsyncIterator[aiomqtt.Client]:
    kwargs: dict[str, object] = {}
    if protocol is not None:
        kwargs["protocol"] = protocol
    async with aiomqtt.Client(
        "127.0.0.1",
        plant.ws_port if who.ws else plant.mqtt_port,
        username=who.user,
        password=who.password,
        transport="websockets" if who.ws else "tcp",
        timeout=5,
        **kwargs,  # type: ignore[arg-type]  # protocol is a ProtocolVersion when given
    ) as client:
        yield client


async def _until_marker(
    watcher: aiomqtt.Client, marker_topic: str, token: str
) -> list[tuple[str, str]]:
    """Everything carrying ``token`` the watcher receives, up to and including the marker."""
    seen: list[tuple[str, str]] = []
    async with asyncio.timeout(5):
        async for message in watcher.messages:
            payload = bytes(message.payload).decode()  # type: ignore[arg-type]  # bytes here
            if token not in payload:
                continue  # a retained or late message of another test
            seen.append((str(message.topic), payload))
            if str(message.topic) == marker_topic:
                return seen
    raise AssertionError("unreachable")


async def delivered(plant: PlantBroker, who: Who, topic: str) -> bool:
    """Did ``who``'s QoS 1 publish on ``topic`` reach a subscriber allowed to read it?"""
    token = uuid.uuid4().hex
    marker = f"openspc/test/marker/{token}"
    async with connect(plant, BRIDGE) as watcher:
        await watcher.subscribe(topic, qos=1)
        await watcher.subscribe(marker, qos=1)
        async with connect(plant, who) as publisher:
            await publisher.publish(topic, f"probe {token}", qos=1)
        async with connect(plant, BRIDGE) as marker_client:
            await marker_client.publish(marker, f"marker {token}", qos=1)
        seen = await _until_marker(watcher, marker, token)
    assert seen[-1] == (marker, f"marker {token}")
    assert seen[:-1] in ([], [(topic, f"probe {token}")])
    return bool(seen[:-1])


async def readable(plant: PlantBroker, who: Who, topic: str, writer: Who) -> bool:
    """Does ``who``, subscribed to ``topic``, receive what ``writer`` publishes there?"""
    token = uuid.uuid4().hex
    marker = f"openspc/char/marker/{token}"  # every reader may read results
    async with connect(plant, who) as reader:
        await reader.subscribe(topic, qos=1)
        await reader.subscribe(marker, qos=1)
        async with connect(plant, writer) as publisher:
            await publisher.publish(topic, f"probe {token}", qos=1)
        async with connect(plant, BRIDGE) as marker_client:
            await marker_client.publish(marker, f"marker {token}", qos=1)
        seen = await _until_marker(reader, marker, token)
    assert seen[-1] == (marker, f"marker {token}")
    return seen[:-1] == [(topic, f"probe {token}")]


def char_topic(kind: str) -> str:
    return f"openspc/char/{uuid.uuid4().hex[:8]}/{kind}"


@pytest.mark.parametrize(
    "topic",
    [
        char_topic("sample"),
        char_topic("reading"),
        "openspc/cmd/ack/alice",
        "openspc/bridge/status",
        "plant1/line3/gauge1/od",
    ],
    ids=["sample", "reading", "ack", "status", "gauge-topic"],
)
async def test_anonymous_writes_are_dropped(plant: PlantBroker, topic: str) -> None:
    assert await delivered(plant, ANON_WS, topic) is False


@pytest.mark.parametrize("protocol", [aiomqtt.ProtocolVersion.V311, aiomqtt.ProtocolVersion.V5])
async def test_anonymous_clients_are_refused_on_the_mqtt_listener(
    plant: PlantBroker, protocol: aiomqtt.ProtocolVersion
) -> None:
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
        async with connect(plant, ANON, protocol=protocol):
            pass


async def test_the_watcher_sees_an_allowed_write(plant: PlantBroker) -> None:
    # the same probe as above with a writer that may: proves the probe can say True
    assert await delivered(plant, BRIDGE, char_topic("sample")) is True


async def test_anonymous_reads_results(plant: PlantBroker) -> None:
    assert await readable(plant, ANON_WS, char_topic("sample"), BRIDGE) is True
    assert await readable(plant, ANON_WS, "openspc/bridge/status", BRIDGE) is True


async def test_anonymous_reads_nothing_outside_the_prefix(plant: PlantBroker) -> None:
    gauge = Who.named("gauge1")
    assert await readable(plant, ANON_WS, "plant1/line3/gauge1/od", gauge) is False
    assert await readable(plant, Who.named("bridge"), "plant1/line3/gauge1/od", gauge) is True


@pytest.mark.parametrize("ws", [False, True], ids=["mqtt", "websockets"])
async def test_alice_acknowledges_as_alice_but_not_as_bob(plant: PlantBroker, ws: bool) -> None:
    alice = Who.named("alice", ws=ws)
    assert await delivered(plant, alice, "openspc/cmd/ack/alice") is True
    assert await delivered(plant, alice, "openspc/cmd/ack/bob") is False
    assert await delivered(plant, Who.named("bob", ws=ws), "openspc/cmd/ack/bob") is True


async def test_hmi_users_read_results_and_write_nothing_else(plant: PlantBroker) -> None:
    alice = Who.named("alice", ws=True)
    assert await readable(plant, alice, char_topic("violation"), BRIDGE) is True
    assert await delivered(plant, alice, char_topic("sample")) is False
    assert await delivered(plant, alice, char_topic("reading")) is False
    assert (
        await delivered(plant, alice, f"openspc/cmd/char/{uuid.uuid4().hex[:6]}/recalculate")
        is False
    )


async def test_engineers_may_recalculate(plant: PlantBroker) -> None:
    erin = Who.named("erin")
    recalculate = f"openspc/cmd/char/{uuid.uuid4().hex[:6]}/recalculate"
    assert await delivered(plant, erin, recalculate) is True
    assert await delivered(plant, erin, "openspc/cmd/ack/erin") is True
    assert await delivered(plant, erin, "openspc/cmd/ack/alice") is False


@pytest.mark.parametrize("ws", [False, True])
async def test_hmi_users_and_engineers_query_as_themselves_only(
    plant: PlantBroker, ws: bool
) -> None:
    alice, erin = Who.named("alice", ws=ws), Who.named("erin", ws=ws)
    assert await delivered(plant, alice, "openspc/cmd/query/alice") is True
    assert await delivered(plant, alice, "openspc/cmd/query/erin") is False
    assert await delivered(plant, erin, "openspc/cmd/query/erin") is True
    assert await delivered(plant, erin, "openspc/cmd/query/alice") is False
    assert await delivered(plant, ANON_WS, "openspc/cmd/query/alice") is False
    assert await delivered(plant, Who.named("gauge1"), "openspc/cmd/query/gauge1") is False
    assert await delivered(plant, Who.named("gw"), "openspc/cmd/query/gw") is False


async def test_gauges_write_readings_only(plant: PlantBroker) -> None:
    gauge = Who.named("gauge1")
    assert await delivered(plant, gauge, "openspc/char/41/reading") is True
    assert await delivered(plant, gauge, "plant1/line3/gauge1/od") is True
    assert await delivered(plant, gauge, char_topic("sample")) is False
    assert await delivered(plant, gauge, char_topic("violation")) is False
    assert await delivered(plant, gauge, "openspc/bridge/status") is False
    assert await delivered(plant, gauge, "openspc/cmd/ack/gauge1") is False
    assert await delivered(plant, gauge, "plant1/line3/gauge2/od") is False


async def test_only_the_bridge_writes_results(plant: PlantBroker) -> None:
    bridge = Who.named("bridge")
    for kind in ("sample", "violation", "ack", "limits", "meta", "history", "alarms"):
        assert await delivered(plant, bridge, char_topic(kind)) is True
    assert await delivered(plant, bridge, "openspc/bridge/status") is True
    assert await delivered(plant, bridge, "spBv1.0/Plant1/NCMD/Line3") is True


async def test_edge_nodes_publish_sparkplug_but_no_commands(plant: PlantBroker) -> None:
    edge = Who.named("edge1")
    assert await delivered(plant, edge, "spBv1.0/Plant1/NDATA/Line3") is True
    assert await delivered(plant, edge, "spBv1.0/Plant1/DDATA/Line3/Gauge7") is True
    assert await delivered(plant, edge, "spBv1.0/Plant1/NCMD/Line3") is False
    assert await delivered(plant, edge, char_topic("sample")) is False
    assert await readable(plant, edge, "spBv1.0/Plant1/NCMD/Line3", BRIDGE) is True


@pytest.mark.parametrize("ws", [False, True], ids=["mqtt", "websockets"])
@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("mallory", "x")])
async def test_wrong_credentials_are_refused(
    plant: PlantBroker, ws: bool, user: str, password: str
) -> None:
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed|[Bb]ad user"):
        async with connect(plant, Who(user, password, ws)):
            pass


async def test_mqtt5_clients_are_told_not_authorized(plant: PlantBroker) -> None:
    """An MQTT 5 client learns of a denied publish from the PUBACK's reason code."""
    results: asyncio.Queue[int] = asyncio.Queue()
    async with connect(plant, Who.named("alice"), protocol=aiomqtt.ProtocolVersion.V5) as client:
        paho = client._client  # private: no public hook for the PUBACK reason code

        def on_publish(_c: object, _u: object, _mid: int, reason: object, _p: object) -> None:
            results.put_nowait(int(reason.value))  # type: ignore[attr-defined]  # a ReasonCode

        previous = paho.on_publish
        paho.on_publish = lambda *a: (previous(*a), on_publish(*a))
        await client.publish("openspc/cmd/ack/bob", b"{}", qos=1)
        denied = await asyncio.wait_for(results.get(), 5)
        await client.publish("openspc/cmd/ack/alice", b"{}", qos=1)
        allowed = await asyncio.wait_for(results.get(), 5)
    # 0x87 Not authorized; the allowed one is Success or 0x10 No matching subscribers
    assert denied == 0x87
    assert allowed in (0x00, 0x10)


async def test_http_root_serves_the_hmi_page(plant: PlantBroker) -> None:
    def get() -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{plant.ws_port}/"
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), bytes(response.read())

    status, body = await asyncio.to_thread(get)
    assert (status, body) == (200, INDEX_HTML)


# ---- each writes only what it was given (docs/security.md) -----------------------------------


async def test_a_gauge_writes_only_its_own_characteristics(plant: PlantBroker) -> None:
    gauge1, gauge2 = Who.named("gauge1"), Who.named("gauge2")
    assert await delivered(plant, gauge1, "openspc/char/42/reading") is True
    assert await delivered(plant, gauge2, "openspc/char/43/reading") is True
    # another gauge's characteristic, or one nobody was given: never reaches a subscriber
    assert await delivered(plant, gauge1, "openspc/char/43/reading") is False
    assert await delivered(plant, gauge2, "openspc/char/41/reading") is False
    assert await delivered(plant, gauge2, "openspc/char/44/reading") is False
    # other spellings of its own id are other topics
    assert await delivered(plant, gauge1, "openspc/char/041/reading") is False
    # its own topic, not the other gauge's
    assert await delivered(plant, gauge2, "plant1/line3/gauge1/od") is False


async def test_an_edge_node_writes_only_its_own_node(plant: PlantBroker) -> None:
    edge = Who.named("edge1")
    for topic in (
        "spBv1.0/Plant1/NBIRTH/Line3",
        "spBv1.0/Plant1/NDEATH/Line3",
        "spBv1.0/Plant1/DBIRTH/Line3/Gauge7",
        "spBv1.0/Plant1/DDEATH/Line3/Gauge7",
    ):
        assert await delivered(plant, edge, topic) is True, topic
    for topic in (
        "spBv1.0/Plant1/NBIRTH/Line4",
        "spBv1.0/Plant1/NDATA/Line4",
        "spBv1.0/Plant1/NDEATH/Line4",
        "spBv1.0/Plant1/DBIRTH/Line4/Gauge7",
        "spBv1.0/Plant1/DDATA/Line4/Gauge7",
        "spBv1.0/Plant1/DDEATH/Line4/Gauge7",
        "spBv1.0/Plant2/NDATA/Line3",
        "spBv1.0/Plant1/DCMD/Line3/Gauge7",
        "spBv1.0/STATE/openspc",
    ):
        assert await delivered(plant, edge, topic) is False, topic
    assert await readable(plant, edge, "spBv1.0/Plant1/DCMD/Line3/Gauge7", BRIDGE) is True
    assert await readable(plant, edge, "spBv1.0/Plant1/NCMD/Line4", BRIDGE) is False


# ---- reply trees: each user reads only its own, only the bridge writes them ------------------


async def test_a_reply_tree_is_read_by_its_user_only(plant: PlantBroker) -> None:
    tree = f"openspc/reply/alice/hmi-{uuid.uuid4().hex[:8]}"
    assert await readable(plant, Who.named("alice", ws=True), tree, BRIDGE) is True
    assert await readable(plant, Who.named("bob", ws=True), tree, BRIDGE) is False
    assert await readable(plant, Who.named("erin"), tree, BRIDGE) is False
    assert await readable(plant, Who.named("gw"), tree, BRIDGE) is False
    assert await readable(plant, ANON_WS, tree, BRIDGE) is False
    # a wildcard subscription to every tree yields nothing of alice's either
    assert await readable_by_filter(plant, ANON_WS, "openspc/reply/#", tree) is False
    assert await readable_by_filter(plant, Who.named("bob"), "openspc/#", tree) is False
    assert await readable(plant, Who.named("erin"), "openspc/reply/erin/x", BRIDGE) is True


async def test_only_the_bridge_writes_reply_trees(plant: PlantBroker) -> None:
    assert await delivered(plant, Who.named("alice"), "openspc/reply/alice/x") is False
    assert await delivered(plant, Who.named("bob"), "openspc/reply/alice/x") is False
    assert await delivered(plant, BRIDGE, "openspc/reply/alice/x") is True


async def readable_by_filter(plant: PlantBroker, who: Who, topic_filter: str, topic: str) -> bool:
    """Does ``who``, subscribed to ``topic_filter``, receive the bridge's publish on ``topic``?"""
    token = uuid.uuid4().hex
    marker = f"openspc/char/marker/{token}"
    async with connect(plant, who) as reader:
        await reader.subscribe(topic_filter, qos=1)
        await reader.subscribe(marker, qos=1)
        async with connect(plant, BRIDGE) as publisher:
            await publisher.publish(topic, f"probe {token}", qos=1)
            await publisher.publish(marker, f"marker {token}", qos=1)
        seen = await _until_marker(reader, marker, token)
    return (topic, f"probe {token}") in seen


# ---- the gateway: reads results and status, writes nothing ----------------------------------


async def test_the_gateway_reads_results_and_writes_nothing(plant: PlantBroker) -> None:
    gateway = Who.named("gw")
    assert await readable(plant, gateway, char_topic("sample"), BRIDGE) is True
    assert await readable(plant, gateway, "openspc/bridge/status", BRIDGE) is True
    assert await readable(plant, gateway, "openspc/cmd/ack/alice", Who.named("alice")) is False
    assert await delivered(plant, gateway, "openspc/cmd/ack/gw") is False
    assert await delivered(plant, gateway, "openspc/cmd/char/1/recalculate") is False
    assert await delivered(plant, gateway, "openspc/char/41/reading") is False
    assert await delivered(plant, gateway, char_topic("sample")) is False


# ---- message_size_limit ---------------------------------------------------------------------


async def test_a_message_over_the_size_limit_is_refused_by_the_broker(plant: PlantBroker) -> None:
    """1 MiB (mosquitto.conf): a bigger reading reaches nobody, one at the limit passes.

    MQTT 3.1.1 here: Mosquitto 2.0.11 answers an MQTT 5 client with PUBACK 0x95, a code the
    MQTT 5 spec does not allow in a PUBACK, and paho then drops the connection."""
    topic = "openspc/char/41/reading"
    token = uuid.uuid4().hex.encode()
    marker = f"openspc/char/marker/{token.decode()}"
    limit = 1024 * 1024
    async with connect(plant, BRIDGE) as watcher:
        await watcher.subscribe(topic, qos=1)
        await watcher.subscribe(marker, qos=1)
        async with connect(plant, Who.named("gauge1")) as gauge:
            await gauge.publish(topic, token + b" " + b"9" * limit, qos=1)  # one byte over
            # the connection outlived the refusal: the next one, at the limit, goes through
            await gauge.publish(topic, token + b" " + b"1" * (limit - len(token) - 1), qos=1)
        async with connect(plant, BRIDGE) as marker_client:
            await marker_client.publish(marker, token, qos=1)
        seen: list[tuple[str, int]] = []
        async with asyncio.timeout(10):
            async for message in watcher.messages:
                payload = bytes(message.payload)  # type: ignore[arg-type]  # bytes here
                if payload.startswith(token):
                    seen.append((str(message.topic), len(payload)))
                if str(message.topic) == marker and payload == token:
                    break
    assert seen == [(topic, limit), (marker, len(token))]
