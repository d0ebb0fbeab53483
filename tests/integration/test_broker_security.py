"""The front door: a real Mosquitto running mosquitto/mosquitto.conf with the generated ACL.

One broker for the module (rendered with free ports and a temp dir), with users of every
role. A denied publish is proven absent, not assumed: a privileged watcher subscribes to the
topic, the denied client publishes (QoS 1, so the broker has routed or dropped it once the
PUBACK is back), then an allowed client publishes a marker; the watcher awaits the marker and
checks nothing of this test's came before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from bridge._mosquitto import find_mosquitto, free_port
from bridge.broker import PlantBroker, Role

pytestmark = [pytest.mark.mosquitto]

PASSWORDS = {
    "bridge": "bridge-secret",
    "gauge1": "gauge-secret",
    "edge1": "edge-secret",
    "alice": "alice-secret",
    "bob": "bob-secret",
    "erin": "erin-secret",
}
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
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (scripts/setup installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="openspc-sec-"))
    http_dir = workdir / "hmi"
    http_dir.mkdir()
    (http_dir / "index.html").write_bytes(INDEX_HTML)
    broker = PlantBroker(workdir, mqtt_port=free_port(), ws_port=free_port(), http_dir=http_dir)
    store = broker.users
    store.add("bridge", Role.BRIDGE, PASSWORDS["bridge"])
    store.add("gauge1", Role.GAUGE, PASSWORDS["gauge1"], ["plant1/line3/gauge1/#"])
    store.add("edge1", Role.EDGE, PASSWORDS["edge1"])
    store.add("alice", Role.HMI, PASSWORDS["alice"])
    store.add("bob", Role.HMI, PASSWORDS["bob"])
    store.add("erin", Role.ENGINEER, PASSWORDS["erin"])
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
    marker = f"openspc/test/marker/{token}"
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


@pytest.mark.parametrize("who", [ANON, ANON_WS], ids=["mqtt", "websockets"])
@pytest.mark.parametrize(
    "topic",
    [
        char_topic("sample"),
        char_topic("reading"),
        "openspc/cmd/ack/alice",
        "openspc/bridge/status",
        "plant1/line3/gauge1/od",
    ],
)
async def test_anonymous_writes_are_dropped(plant: PlantBroker, who: Who, topic: str) -> None:
    assert await delivered(plant, who, topic) is False


async def test_the_watcher_sees_an_allowed_write(plant: PlantBroker) -> None:
    # the same probe as above with a writer that may: proves the probe can say True
    assert await delivered(plant, BRIDGE, char_topic("sample")) is True


@pytest.mark.parametrize("who", [ANON, ANON_WS], ids=["mqtt", "websockets"])
async def test_anonymous_reads_results(plant: PlantBroker, who: Who) -> None:
    assert await readable(plant, who, char_topic("sample"), BRIDGE) is True
    assert await readable(plant, who, "openspc/bridge/status", BRIDGE) is True


async def test_anonymous_reads_nothing_outside_the_prefix(plant: PlantBroker) -> None:
    gauge = Who.named("gauge1")
    assert await readable(plant, ANON, "plant1/line3/gauge1/od", gauge) is False
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


async def test_gauges_write_readings_only(plant: PlantBroker) -> None:
    gauge = Who.named("gauge1")
    assert await delivered(plant, gauge, char_topic("reading")) is True
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
