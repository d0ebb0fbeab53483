"""Helpers for the gateway's tests: a bridge and a gateway in-process, real websockets clients.

The bridge is :func:`bridge.app.bootstrap`'s (SQLite only: the gateway never touches the
database), the gateway is :class:`bridge.gateway.Gateway`, both on the test's loop against a
real Mosquitto; clients are ``websockets`` clients that record every message they receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bridge._mosquitto import MosquittoProcess
from bridge.gateway import Gateway
from tests.integration.conftest import BridgeFactory, Probe

TIMEOUT = 30.0  # generous: the machine is shared with the team's other suites

FIXED = {"center_line": 10.0, "ucl": 13.0, "lcl": 7.0}
"""Fixed limits with sigma 1 (n = 1): judged from the first reading; 20 fails rule 1."""


@dataclass
class WsClient:
    """A websockets client that records every message (parsed) and how it closed."""

    ws: ClientConnection
    messages: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    closed: ConnectionClosed | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    def start(self) -> WsClient:
        self._reader = asyncio.create_task(self._read(), name="ws-client")
        return self

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                assert isinstance(frame, str), "the gateway sends text frames"
                self.raw.append(frame)
                self.messages.append(json.loads(frame))
                self._changed.set()
        except ConnectionClosed as exc:
            self.closed = exc
        else:
            self.closed = self.ws.protocol.close_exc
        self._changed.set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    def of(self, kind: str, cid: int | None = None) -> list[dict[str, Any]]:
        return [
            m["payload"]
            for m in self.messages
            if m["type"] == kind
            and (cid is None or m.get("payload", {}).get("characteristic_id") == cid)
        ]

    async def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        count: int = 1,
        within: float = TIMEOUT,
    ) -> list[dict[str, Any]]:
        """The first ``count`` messages that match ``predicate``."""
        async with asyncio.timeout(within):
            while True:
                hits = [m for m in self.messages if predicate(m)]
                if len(hits) >= count:
                    return hits[:count]
                if self.closed is not None:
                    raise AssertionError(f"closed ({self.closed}) after {self.messages[-5:]}")
                self._changed.clear()
                await self._changed.wait()

    async def wait_type(self, kind: str, count: int = 1, **match: Any) -> list[dict[str, Any]]:
        def wanted(m: dict[str, Any]) -> bool:
            payload = m.get("payload") or {}
            return m["type"] == kind and all(payload.get(k) == v for k, v in match.items())

        return [m.get("payload", {}) for m in await self.wait_for(wanted, count)]

    async def wait_closed(self, within: float = TIMEOUT) -> ConnectionClosed:
        async with asyncio.timeout(within):
            while self.closed is None:
                self._changed.clear()
                await self._changed.wait()
        return self.closed

    async def ping_pong(self) -> None:
        """A ping answered: every message the gateway sent before it has arrived."""
        before = len([m for m in self.messages if m["type"] == "pong"])
        await self.send({"type": "ping"})
        await self.wait_for(lambda m: m["type"] == "pong", count=before + 1)

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


@contextlib.asynccontextmanager
async def ws_client(url: str, **kw: Any) -> AsyncIterator[WsClient]:
    async with connect(url, **kw) as ws:
        client = WsClient(ws).start()
        try:
            yield client
        finally:
            await client.close()


def small_window_socket(port: int, rcvbuf: int = 4096) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` that advertises a small receive window (set
    before connecting): a client that stops reading fills it after a few kilobytes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    return sock


@contextlib.asynccontextmanager
async def outliving_probe(broker: MosquittoProcess, *filters: str) -> AsyncIterator[Probe]:
    """Like conftest's ``open_probe``, for a test that stops the broker under it: the lost
    connection ends the probe quietly."""
    async with contextlib.AsyncExitStack() as stack:
        client = aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            identifier=f"probe-{uuid.uuid4().hex[:8]}",
            protocol=aiomqtt.ProtocolVersion.V5,
        )
        await client.__aenter__()

        async def leave() -> None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)

        stack.push_async_callback(leave)
        probe = Probe(client)
        for topic_filter in filters:
            await client.subscribe(topic_filter, qos=1)
        reader = asyncio.create_task(probe._read())

        async def stop_reading() -> None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader

        stack.push_async_callback(stop_reading)
        yield probe


@dataclass
class Plant:
    """A bridge and a gateway in-process against ``broker``, with a probe on the prefix."""

    factory: BridgeFactory
    probe: Probe
    prefix: str
    gateways: list[Gateway] = field(default_factory=list)

    async def start_bridge(self, characteristics: list[dict[str, Any]], **bridge: Any) -> None:
        await self.factory.start(characteristics, **bridge)
        # the retained meta is on the broker before any gateway subscribes
        await self.probe.wait_for(f"{self.prefix}/char/+/meta", count=len(characteristics))

    async def start_gateway(self, *, close_timeout: float = 2.0, **options: Any) -> Gateway:
        settings = self.factory.settings([])
        gateway_options = {"port": 0, **options}
        settings = settings.model_copy(
            update={"gateway": settings.gateway.model_copy(update=gateway_options)}
        )
        gateway = Gateway(settings, close_timeout=close_timeout)
        await gateway.start()
        self.gateways.append(gateway)
        async with asyncio.timeout(TIMEOUT):
            await gateway.wait_ready()
        return gateway

    async def reading(self, cid: int, value: float) -> None:
        await self.probe.publish(f"{self.prefix}/char/{cid}/reading", json.dumps(value))

    async def samples_on_mqtt(self, cid: int, count: int) -> list[Any]:
        """``count`` samples on MQTT, and a retained history that holds the last of them
        (history goes out at most once a second: docs/bridge.md), so a gateway that starts
        now finds them all in the broker's retained state."""
        samples = await self.probe.wait_for(
            f"{self.prefix}/char/{cid}/sample", count=count, within=3 * TIMEOUT
        )
        last = samples[-1]["payload"]["sample_id"]

        def holds_last(history: Any) -> bool:
            return any(s["sample_id"] == last for s in history["payload"]["samples"])

        await self.probe.wait_for(
            f"{self.prefix}/char/{cid}/history", holds_last, within=3 * TIMEOUT
        )
        return samples


@contextlib.asynccontextmanager
async def open_plant(
    broker: MosquittoProcess, probe: Probe, prefix: str, tmp: Path
) -> AsyncIterator[Plant]:
    factory = BridgeFactory(broker, prefix, tmp)
    plant = Plant(factory, probe, prefix)
    try:
        yield plant
    finally:
        for gateway in plant.gateways:
            await gateway.stop()
        for app, stop, task in list(factory.running):
            stop.set()
            try:
                await asyncio.wait_for(task, TIMEOUT)
            except Exception:
                task.cancel()
            factory.running.remove((app, stop, task))
