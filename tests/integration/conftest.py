"""Fixtures for bridge integration tests: the real bridge, in-process, on the test's loop.

``bridge_factory`` builds bridges with :func:`bridge.app.bootstrap` (the one composition
root) against the session's Mosquitto, with the test's own topic prefix and client id, and
a SQLite file in the test's tmp dir (or any URL, e.g. the session's PostgreSQL). ``probe``
is an MQTT 5 client subscribed to the test's prefix that records every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.client import topic_matches_sub
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge._mosquitto import MosquittoProcess
from bridge.app import Bridge, bootstrap
from bridge.config import Settings
from bridge.testing import PostgresCluster

TIMEOUT = 10.0


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    properties: Any

    def json(self) -> Any:
        return json.loads(self.payload)


class Probe:
    """An MQTT 5 client that records every message under its filters."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[Received] = []
        self._changed = asyncio.Event()

    async def _read(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload).encode()
            self.messages.append(
                Received(str(message.topic), data, bool(message.retain), message.properties)
            )
            self._changed.set()

    def matching(self, topic_filter: str) -> list[Received]:
        return [m for m in self.messages if topic_matches_sub(topic_filter, m.topic)]

    async def wait_for(
        self,
        topic_filter: str,
        predicate: Callable[[Any], bool] | None = None,
        *,
        count: int = 1,
        within: float = TIMEOUT,
    ) -> list[Any]:
        """The JSON of the first ``count`` messages on ``topic_filter`` that match."""

        def found() -> list[Any]:
            hits = []
            for m in self.matching(topic_filter):
                try:
                    data = m.json()
                except ValueError:
                    data = m.payload
                if predicate is None or predicate(data):
                    hits.append(data)
            return hits

        async with asyncio.timeout(within):
            while True:
                hits = found()
                if len(hits) >= count:
                    return hits[:count]
                self._changed.clear()
                await self._changed.wait()

    async def wait_until(self, condition: Callable[[], bool], within: float = TIMEOUT) -> None:
        """Wait until ``condition()`` holds, checking it on every message received."""
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def publish(self, topic: str, payload: str | bytes, qos: int = 1, **kw: Any) -> None:
        await self.client.publish(topic, payload, qos=qos, **kw)

    async def request(
        self, topic: str, payload: dict[str, Any], reply_topic: str, correlation: bytes
    ) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation
        await self.client.publish(topic, json.dumps(payload), qos=1, properties=props)


@contextlib.asynccontextmanager
async def open_probe(broker: MosquittoProcess, *filters: str) -> AsyncIterator[Probe]:
    async with aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        identifier=f"probe-{uuid.uuid4().hex[:8]}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        probe = Probe(client)
        for topic_filter in filters:
            await client.subscribe(topic_filter, qos=1)
        reader = asyncio.create_task(probe._read())
        try:
            yield probe
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


@pytest.fixture
async def probe(mosquitto: MosquittoProcess, topic_prefix: str) -> AsyncIterator[Probe]:
    async with open_probe(mosquitto, f"{topic_prefix}/#") as p:
        yield p


def char(cid: int, **kw: Any) -> dict[str, Any]:
    """A characteristic's config table."""
    return {"id": cid, "name": f"Char {cid}", **kw}


@dataclass
class BridgeFactory:
    broker: MosquittoProcess
    prefix: str
    tmp: Path
    client_id: str = field(default_factory=lambda: f"bridge-{uuid.uuid4().hex[:8]}")
    db_url: str | None = None
    running: list[tuple[Bridge, asyncio.Event, asyncio.Task[None]]] = field(default_factory=list)

    def settings(
        self, characteristics: list[dict[str, Any]], db_url: str | None = None, **bridge: Any
    ) -> Settings:
        return Settings(
            broker={"host": "127.0.0.1", "port": self.broker.port, "client_id": self.client_id},
            database={
                "url": db_url or self.db_url or f"sqlite+aiosqlite:///{self.tmp / 'bridge.db'}"
            },
            bridge={"topic_prefix": self.prefix, "metrics_interval": 0.5, **bridge},
            characteristic=characteristics,
        )

    async def start(
        self, characteristics: list[dict[str, Any]], db_url: str | None = None, **bridge: Any
    ) -> Bridge:
        settings = self.settings(characteristics, db_url, **bridge)
        app = await bootstrap(settings)
        await app.start(connect_timeout=TIMEOUT)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop), name="bridge")
        self.running.append((app, stop, task))
        return app

    async def stop(self, app: Bridge) -> None:
        for entry in list(self.running):
            if entry[0] is app:
                self.running.remove(entry)
                entry[1].set()
                await asyncio.wait_for(entry[2], TIMEOUT)

    async def crash(self, app: Bridge) -> None:
        """Kill the bridge like SIGKILL would: no flush, no acks, no offline status."""
        for entry in list(self.running):
            if entry[0] is app:
                self.running.remove(entry)
                app.mqtt.abort()
                entry[2].cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await entry[2]
                await app.store.close()


@contextlib.asynccontextmanager
async def fresh_pg_database(cluster: PostgresCluster) -> AsyncIterator[str]:
    """A database of the test's own on the session's cluster; its async URL."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{cluster.port}/{name}"
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def bridge_factory(
    request: pytest.FixtureRequest, mosquitto: MosquittoProcess, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[BridgeFactory]:
    """Bridges on SQLite, and again on PostgreSQL (a fresh database per test)."""
    async with contextlib.AsyncExitStack() as stack:
        factory = BridgeFactory(mosquitto, topic_prefix, tmp_path)
        if request.param == "postgres":
            cluster = request.getfixturevalue("postgres")
            factory.db_url = await stack.enter_async_context(fresh_pg_database(cluster))
        yield factory
        for _app, stop, task in factory.running:
            stop.set()
            try:
                await asyncio.wait_for(task, TIMEOUT)
            except Exception:
                task.cancel()
