"""Acceptance checks from outside: the product only as a user drives it.

``openspc run --config FILE`` is a real subprocess against a real Mosquitto; readings and
commands go in with plain paho-mqtt clients (MQTT 3.1.1 and MQTT 5), results are read the
same way; ``openspc analyze`` is a subprocess too. Nothing here imports ``engine`` or
``bridge`` for expected values: those come from ``tests/e2e/reference.py``, written from
the SPC conventions (docs/spc.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import topic_matches_sub
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge._mosquitto import MosquittoProcess

OPENSPC = str(Path(sys.executable).with_name("openspc"))
TIMEOUT = 30.0  # generous: the machine is shared with the team's other suites
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def parse_iso_z(text: str) -> datetime:
    """An ISO 8601 UTC time ending in ``Z`` (asserted), as an aware datetime."""
    assert isinstance(text, str), text
    assert ISO_Z.match(text), f"not ISO 8601 UTC with Z: {text!r}"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def unique_prefix() -> str:
    return f"e2e/{uuid.uuid4().hex[:10]}/spc"


@dataclass
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Any = None

    def json(self) -> Any:
        return json.loads(self.payload)


class Client:
    """A plain paho client (MQTT 3.1.1 or 5) that records what it receives."""

    def __init__(self, port: int, *, v5: bool = True, client_id: str | None = None) -> None:
        self.port = port
        self.v5 = v5
        self.messages: list[Msg] = []
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._suback: dict[int, threading.Event] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"e2e-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda *_a: self._connected.set()
        self.client.on_subscribe = self._on_subscribe
        self.client.max_inflight_messages_set(100)

    def __enter__(self) -> Client:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self._connected.wait(TIMEOUT), "could not connect to the broker"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        props = getattr(m, "properties", None)
        with self._cond:
            self.messages.append(Msg(m.topic, bytes(m.payload), m.qos, bool(m.retain), props))
            self._cond.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, *_a: Any) -> None:
        with self._cond:
            self._suback.setdefault(mid, threading.Event()).set()

    def subscribe(self, *filters: str, qos: int = 2) -> None:
        for topic_filter in filters:
            result, mid = self.client.subscribe(topic_filter, qos=qos)
            assert result == mqtt.MQTT_ERR_SUCCESS
            assert mid is not None
            with self._cond:
                event = self._suback.setdefault(mid, threading.Event())
            assert event.wait(TIMEOUT), f"no SUBACK for {topic_filter}"

    def publish(
        self,
        topic: str,
        payload: str | bytes,
        qos: int = 1,
        *,
        properties: Properties | None = None,
        wait: bool = True,
    ) -> None:
        info = self.client.publish(topic, payload, qos=qos, properties=properties)
        if wait:
            info.wait_for_publish(TIMEOUT)
            assert info.is_published(), f"publish to {topic} not confirmed"

    def request(
        self, topic: str, payload: dict[str, Any], reply_topic: str, correlation: bytes
    ) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation
        self.publish(topic, json.dumps(payload), properties=props)

    def matching(self, topic_filter: str) -> list[Msg]:
        with self._cond:
            return [m for m in self.messages if topic_matches_sub(topic_filter, m.topic)]

    def wait_msgs(
        self,
        topic_filter: str,
        predicate: Callable[[Any], bool] | None = None,
        *,
        count: int = 1,
        within: float = TIMEOUT,
    ) -> list[Msg]:
        """The first ``count`` messages on ``topic_filter`` whose JSON matches ``predicate``."""
        deadline = time.monotonic() + within

        def hits() -> list[Msg]:
            found = []
            for m in self.messages:
                if not topic_matches_sub(topic_filter, m.topic):
                    continue
                if predicate is not None:
                    try:
                        data = m.json()
                    except ValueError:
                        continue
                    if not predicate(data):
                        continue
                found.append(m)
            return found

        with self._cond:
            while True:
                found = hits()
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out waiting for {count} message(s) on {topic_filter}; "
                        f"got {len(found)}"
                    )
                self._cond.wait(left)

    def wait_for(
        self,
        topic_filter: str,
        predicate: Callable[[Any], bool] | None = None,
        *,
        count: int = 1,
        within: float = TIMEOUT,
    ) -> list[Any]:
        return [
            m.json() for m in self.wait_msgs(topic_filter, predicate, count=count, within=within)
        ]

    def marker(self, prefix: str) -> None:
        """Publish a marker and await it: everything published to us before it has arrived."""
        token = uuid.uuid4().hex
        self.publish(f"{prefix}/e2e-marker", json.dumps({"t": token}))
        self.wait_msgs(f"{prefix}/e2e-marker", lambda d: d == {"t": token})


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_config(
    path: Path, sections: dict[str, dict[str, Any]], chars: list[dict[str, Any]]
) -> Path:
    lines: list[str] = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        lines.append("")
    for ch in chars:
        lines.append("[[characteristic]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in ch.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@dataclass
class BridgeProcess:
    """``openspc run --config FILE`` as a subprocess."""

    config: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None  # default: the config's directory
    args: list[str] | None = None  # default: --config FILE
    process: subprocess.Popen[bytes] | None = None
    stderr_path: Path | None = None

    def start(self) -> BridgeProcess:
        self.stderr_path = self.config.with_suffix(f".{uuid.uuid4().hex[:6]}.log")
        args = ["--config", str(self.config)] if self.args is None else self.args
        with self.stderr_path.open("wb") as log:
            self.process = subprocess.Popen(
                [OPENSPC, "run", *args],
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=self.cwd or self.config.parent,
                env={**os.environ, **self.env},
            )
        return self

    def log(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path else ""

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        return code

    def kill(self) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@dataclass
class Plant:
    """A bridge subprocess with its config, prefix and a listener on the prefix."""

    broker: MosquittoProcess
    prefix: str
    tmp: Path
    chars: list[dict[str, Any]]
    bridge_section: dict[str, Any] = field(default_factory=dict)
    client_id: str = field(default_factory=lambda: f"e2e-bridge-{uuid.uuid4().hex[:8]}")
    proc: BridgeProcess | None = None
    listener: Client | None = None
    url: str = "sqlite+aiosqlite:///bridge.db"  # the fixture database_url gives either kind

    @property
    def config(self) -> Path:
        return self.tmp / "openspc.toml"

    def write(self) -> Path:
        bridge = {"topic_prefix": self.prefix, **self.bridge_section}
        return write_config(
            self.config,
            {
                "broker": {
                    "host": "127.0.0.1",
                    "port": self.broker.port,
                    "client_id": self.client_id,
                },
                "database": {"url": self.url},
                "bridge": bridge,
            },
            self.chars,
        )

    def start(self, listener: Client) -> None:
        """Start the bridge; return once it said online after this call."""
        self.write()
        status = f"{self.prefix}/bridge/status"
        before = len([m for m in listener.matching(status) if m.json().get("online") is True])
        self.proc = BridgeProcess(self.config).start()
        try:
            msgs = listener.wait_msgs(status, lambda d: d.get("online") is True, count=before + 1)
            assert msgs
        except AssertionError:
            self.proc.kill()
            raise AssertionError("bridge did not come online:\n" + self.proc.log()) from None

    def stop(self) -> None:
        assert self.proc is not None
        code = self.proc.stop()
        log = self.proc.log()
        assert code == 0, log
        assert "Traceback" not in log, log


async def create_database(port: int, name: str) -> None:
    """A fresh database in the test session's throw-away PostgreSQL cluster."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A bridge's database, once SQLite (a file beside its config) and once PostgreSQL."""
    if request.param == "sqlite":
        return "sqlite+aiosqlite:///bridge.db"
    cluster = request.getfixturevalue("postgres")
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    asyncio.run(create_database(cluster.port, name))
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/{name}"


@pytest.fixture(scope="module")
def broker(mosquitto: MosquittoProcess) -> MosquittoProcess:
    return mosquitto


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


def now_utc() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def listener_factory(broker: MosquittoProcess) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(*filters: str, v5: bool = True) -> Client:
        c = Client(broker.port, v5=v5).__enter__()
        made.append(c)
        if filters:
            c.subscribe(*filters)
        return c

    yield make
    for c in made:
        c.__exit__()
