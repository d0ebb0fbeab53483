"""The guard plugin (mosquitto/plugin/openspc_guard.c) in the shipped config, users made by
`openspc users`: nobody but the bridge's users takes the bridge's client ids, anonymous
clients keep no session, and only the bridge's session is queued for while it is away.

Sessions are driven with paho directly: the tests need clean start, session expiry and the
CONNACK's session-present flag. "Nothing queued" is proven with a live marker published after
the reconnect: it arrives, and nothing of the test's came before it.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge._mosquitto import PlantBroker, find_mosquitto, free_port
from bridge.mosquitto_admin import GuardPluginUnavailable, guard_plugin
from tests.integration.test_broker_security import (
    OPENSPC,
    USERS,
    Who,
    add_users,
    missing,
)

pytestmark = [pytest.mark.mosquitto]

NOT_AUTHORIZED = 135  # paho reports MQTT 3.1.1's "not authorised" (5) as this reason code too
BRIDGE = Who.named("bridge")
ANON_WS = Who(ws=True)


@pytest.fixture(scope="module")
def plant() -> Iterator[PlantBroker]:
    if find_mosquitto() is None:
        missing("mosquitto")
    try:
        guard_plugin()
    except GuardPluginUnavailable as exc:
        missing(f"the guard plugin's build tools ({exc})")
    workdir = Path(tempfile.mkdtemp(prefix="openspc-guard-"))
    workdir.chmod(0o755)
    broker = PlantBroker(workdir, mqtt_port=free_port(), ws_port=free_port())
    add_users(workdir, USERS)
    try:
        with broker:
            yield broker
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Session:
    """One paho connection; ``result`` is (reason code, session present) from its CONNACK."""

    plant: PlantBroker
    who: Who
    client_id: str
    clean: bool = True
    v5: bool = False
    expiry: int | None = None  # MQTT 5 session expiry interval, seconds
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    _connacks: queue.Queue[tuple[int, bool]] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5 if self.v5 else paho.MQTTv311,
            clean_session=None if self.v5 else self.clean,
            transport="websockets" if self.who.ws else "tcp",
            reconnect_on_failure=False,
        )
        if self.who.user is not None:
            self.client.username_pw_set(self.who.user, self.who.password)
        self.client.on_connect = lambda _c, _u, flags, rc, _p: self._connacks.put(
            (int(rc.value), bool(flags.session_present))
        )
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))

    def open(self) -> tuple[int, bool]:
        properties = None
        if self.v5 and self.expiry is not None:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.expiry
        port = self.plant.ws_port if self.who.ws else self.plant.mqtt_port
        self.client.connect(
            "127.0.0.1",
            port,
            clean_start=self.clean if self.v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self.client.loop_start()
        try:
            result = self._connacks.get(timeout=10)
        except queue.Empty:
            self.close()
            raise AssertionError(f"no CONNACK for {self.client_id}") from None
        if result[0] != 0:
            self.close()
        return result

    def subscribe(self, *topics: str) -> None:
        done: queue.Queue[bool] = queue.Queue()
        self.client.on_subscribe = lambda *_a: done.put(True)
        self.client.subscribe([(t, 1) for t in topics])
        done.get(timeout=10)

    def publish(self, topic: str, payload: bytes | str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def until(self, token: str, last: str, timeout: float = 15) -> list[tuple[str, str]]:
        """Everything carrying ``token`` received, up to and including the payload ``last``."""
        seen: list[tuple[str, str]] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, payload = self.messages.get(timeout=left)
            except queue.Empty:
                break
            text = payload.decode()
            if token in text:
                seen.append((got, text))
                if text == last:
                    return seen
        raise AssertionError(f"{last!r} did not arrive; saw {seen[-3:]}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(plant: PlantBroker, who: Who, topic: str, payloads: list[str]) -> None:
    sender = Session(plant, who, f"sender-{uuid.uuid4().hex[:8]}")
    assert sender.open() == (0, False)
    try:
        for payload in payloads:
            sender.publish(topic, payload)
    finally:
        sender.close()


# ---- the bridge's client ids ------------------------------------------------------------------


@pytest.mark.parametrize("client_id", ["openspc-bridge", "openspc-bridge-p3"])
def test_nobody_else_takes_the_bridges_session_and_nothing_is_lost(
    plant: PlantBroker, client_id: str
) -> None:
    """The bridge is away with readings queued; takeovers with its id are refused at CONNECT
    (anonymous over WebSockets, a named user over TCP, MQTT 3.1.1 and 5, clean start or not),
    and the bridge then receives every queued reading, in order."""
    topic = "openspc/char/41/reading"
    token = uuid.uuid4().hex
    bridge = Session(plant, BRIDGE, client_id, clean=False)
    assert bridge.open()[0] == 0
    bridge.subscribe(topic)
    bridge.close()
    readings = [f"{i} {token}" for i in range(200)]
    publish(plant, Who.named("gauge1"), topic, readings)

    attempts = [
        Session(plant, ANON_WS, client_id, clean=False),
        Session(plant, ANON_WS, client_id, clean=True),
        Session(plant, ANON_WS, client_id, clean=False, v5=True, expiry=604800),
        Session(plant, Who.named("alice"), client_id, clean=False),
        Session(plant, Who.named("alice"), client_id, clean=True, v5=True),
        Session(plant, Who.named("gauge1", ws=True), client_id, clean=True),
        Session(plant, Who("bridge", "wrong-password"), client_id, clean=False),
    ]
    for attempt in attempts:
        assert attempt.open()[0] == NOT_AUTHORIZED, (attempt.who, attempt.clean, attempt.v5)

    publish(plant, Who.named("gauge1"), topic, [f"marker {token}"])
    bridge = Session(plant, BRIDGE, client_id, clean=False)
    assert bridge.open() == (0, True)
    try:
        seen = bridge.until(token, f"marker {token}")
    finally:
        bridge.close()
    assert [payload for _, payload in seen] == [*readings, f"marker {token}"]


def test_a_bridge_users_own_client_id_is_reserved_after_a_reload(plant: PlantBroker) -> None:
    """`openspc users add ... --client-id` reserves that id at once (`--reload`)."""
    client_id = f"plant-bridge-{uuid.uuid4().hex[:6]}"
    bridge2 = Who("bridge2", "bridge2-secret")
    done = subprocess.run(
        [
            OPENSPC,
            "users",
            "add",
            "bridge2",
            "--role",
            "bridge",
            "--client-id",
            client_id,
            "--password-file",
            str(plant.workdir / "passwd"),
            "--reload",
        ],
        input=f"{bridge2.password}\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 5  # Mosquitto applies SIGHUP in its main loop
    while (first := Session(plant, bridge2, client_id)).open()[0] != 0:
        assert time.monotonic() < deadline, "bridge2 could not log in after the reload"
        time.sleep(0.05)  # polling the reload: it has no event to await
    first.close()
    for who, cid in [
        (BRIDGE, client_id),
        (Who.named("alice"), f"{client_id}-p1"),
        (ANON_WS, f"{client_id}-spb"),
    ]:
        assert Session(plant, who, cid).open()[0] == NOT_AUTHORIZED, (who.user, cid)
    ok = Session(plant, bridge2, f"{client_id}-p7")
    assert ok.open()[0] == 0
    ok.close()
    # ids that merely share the start are nobody's
    other = Session(plant, Who.named("alice"), f"{client_id}x")
    assert other.open()[0] == 0
    other.close()


# ---- anonymous clients: no lasting session --------------------------------------------------


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt3.1.1", "mqtt5"])
def test_anonymous_clients_must_use_clean_start(plant: PlantBroker, v5: bool) -> None:
    client_id = f"anon-{uuid.uuid4().hex[:8]}"
    assert Session(plant, ANON_WS, client_id, clean=False, v5=v5).open()[0] == NOT_AUTHORIZED
    ok = Session(plant, ANON_WS, client_id, clean=True, v5=v5)
    assert ok.open() == (0, False)
    ok.close()


@pytest.mark.parametrize(
    "who",
    [ANON_WS, Who.named("alice"), Who.named("gw")],
    ids=["anonymous", "hmi", "gateway"],
)
def test_a_session_left_behind_queues_nothing(plant: PlantBroker, who: Who) -> None:
    """A session that outlives its connection (an MQTT 5 session expiry, or an MQTT 3.1.1
    persistent session of a named user) keeps its subscriptions and nothing else: results
    published while it is away are not queued for it. Resumed (by the bridge's user for the
    anonymous one, which may not resume), it gets only what is published after."""
    topic = f"openspc/char/{uuid.uuid4().hex[:8]}/sample"
    token = uuid.uuid4().hex
    client_id = f"left-{uuid.uuid4().hex[:8]}"
    anonymous = who.user is None
    if anonymous:  # clean start is a must, but an MQTT 5 session may outlive its connection
        first = Session(plant, who, client_id, clean=True, v5=True, expiry=3600)
    else:
        first = Session(plant, who, client_id, clean=False)
    assert first.open()[0] == 0
    first.subscribe(topic)
    first.close()
    publish(plant, BRIDGE, topic, [f"{i} {token}" for i in range(5)])

    resumer = BRIDGE if anonymous else who
    again = Session(plant, resumer, client_id, clean=False, v5=anonymous)
    assert again.open() == (0, True)  # the session was there
    try:
        publish(plant, BRIDGE, topic, [f"live {token}"])
        seen = again.until(token, f"live {token}")
    finally:
        again.close()
    assert seen == [(topic, f"live {token}")]
