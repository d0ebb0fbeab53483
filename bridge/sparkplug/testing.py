"""Test doubles for Sparkplug B, shipped with the code (bytewax-style).

- :class:`SimulatedEdgeNode`: an edge node and its devices on a real broker, built on the
  same encoder as the bridge. It publishes births, data (by alias, without datatype, as the
  specification allows), deaths, can lose sequence numbers on purpose, records the NCMD
  rebirth requests it receives and (by default) answers them with fresh births.
- :class:`SparkplugRecorder`: subscribes to an edge node's topics and decodes what arrives,
  resolving aliases through the NBIRTH (a minimal host, for asserting on what a node sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

import aiomqtt

from bridge.sparkplug._codec import decode_payload
from bridge.sparkplug._node import EdgeNodeMessages, Outgoing, is_rebirth_command
from bridge.sparkplug._types import NAMESPACE, MessageType, Metric, Payload, SparkplugTopic
from bridge.sparkplug._values import DataType, WireValue, decode_value

__all__ = ["Received", "SimulatedEdgeNode", "SparkplugRecorder"]


def _now() -> datetime:
    return datetime.now(UTC)


def _abort(client: aiomqtt.Client) -> None:
    """Close the TCP connection without DISCONNECT: the broker publishes the Will."""
    sock = client._client.socket()  # noqa: SLF001  aiomqtt has no public abort
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


async def _close(listener: asyncio.Task[None] | None, client: aiomqtt.Client | None) -> None:
    """Stop a double's listening task, then its connection (quietly: it may be gone)."""
    if listener is not None:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await listener
    if client is not None:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)


class SimulatedEdgeNode:
    """Edge node ``<group>/<edge>`` on the broker at ``host:port``; use ``async with``.

    Its Will is an NDEATH with ``bd_seq``. :meth:`birth` publishes NBIRTH and a DBIRTH per
    device and remembers them, so that an NCMD ``Node Control/Rebirth`` is answered with the
    same births (unless ``answer_rebirth`` is False). ``rebirth_requests`` receives the
    payload of every rebirth NCMD.
    """

    def __init__(
        self,
        host: str,
        port: int,
        group: str,
        edge: str,
        *,
        bd_seq: int = 0,
        answer_rebirth: bool = True,
    ) -> None:
        self.host, self.port = host, port
        self.group, self.edge = group, edge
        self.messages = EdgeNodeMessages(group, edge, bd_seq=bd_seq)
        self.answer_rebirth = answer_rebirth
        self.rebirth_requests: asyncio.Queue[Payload] = asyncio.Queue()
        self.node_metrics: list[Metric] = []
        self.device_metrics: dict[str, list[Metric]] = {}
        self._born = False
        self._client: aiomqtt.Client | None = None
        self._listener: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SimulatedEdgeNode:
        will = self.messages.ndeath(_now())
        self._client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=f"sim-{self.group}-{self.edge}",
            will=aiomqtt.Will(will.topic, will.data, qos=1),
            clean_session=True,
        )
        await self._client.__aenter__()
        await self._client.subscribe(str(SparkplugTopic(self.group, MessageType.NCMD, self.edge)))
        self._listener = asyncio.create_task(self._listen(self._client), name="sim-edge-ncmd")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _close(self._listener, self._client)
        self._client = None

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if not isinstance(message.payload, bytes) or not is_rebirth_command(message.payload):
                continue
            if self.answer_rebirth and self._born:
                await self._births()
            # queued after the births are handed to the client, so that a test awaiting the
            # request publishes its next data after them
            await self.rebirth_requests.put(decode_payload(message.payload))

    async def _send(self, out: Outgoing) -> Outgoing:
        if self._client is None:
            raise RuntimeError("SimulatedEdgeNode is not connected (use async with)")
        await self._client.publish(out.topic, out.data, qos=0)
        return out

    async def _births(self) -> None:
        now = _now()
        await self._send(self.messages.nbirth(self.node_metrics, now))
        for device, metrics in self.device_metrics.items():
            await self._send(self.messages.dbirth(device, metrics, now))

    async def birth(
        self,
        node_metrics: Sequence[Metric] = (),
        devices: Mapping[str, Sequence[Metric]] | None = None,
    ) -> None:
        """NBIRTH with ``node_metrics`` (plus bdSeq and Node Control/Rebirth), then a
        DBIRTH per device."""
        self.node_metrics = list(node_metrics)
        self.device_metrics = {name: list(m) for name, m in (devices or {}).items()}
        self._born = True
        await self._births()

    async def ndata(self, metrics: Sequence[Metric], at: datetime | None = None) -> Outgoing:
        return await self._send(self.messages.ndata(metrics, at or _now()))

    async def ddata(
        self, device: str, metrics: Sequence[Metric], at: datetime | None = None
    ) -> Outgoing:
        return await self._send(self.messages.ddata(device, metrics, at or _now()))

    async def dbirth(self, device: str, metrics: Sequence[Metric]) -> Outgoing:
        self.device_metrics[device] = list(metrics)
        return await self._send(self.messages.dbirth(device, metrics, _now()))

    async def ddeath(self, device: str) -> Outgoing:
        self.device_metrics.pop(device, None)
        return await self._send(self.messages.ddeath(device, _now()))

    async def ndeath(self) -> Outgoing:
        """Publish the NDEATH explicitly (as a node does before a clean disconnect)."""
        return await self._send(self.messages.ndeath(_now()))

    def skip(self, count: int = 1) -> None:
        """Lose ``count`` sequence numbers: the next message shows a gap."""
        self.messages.skip(count)

    def abort(self) -> None:
        """Drop the connection without DISCONNECT: the broker publishes the Will NDEATH."""
        if self._client is not None:
            _abort(self._client)


@dataclass(frozen=True, slots=True)
class Received:
    """One message a :class:`SparkplugRecorder` heard, its metrics resolved by name."""

    topic: SparkplugTopic
    payload: Payload
    values: dict[str, WireValue | None]
    """Metric name -> logical value (None for a null), names resolved through the NBIRTH."""


class SparkplugRecorder:
    """Subscribes to ``spBv1.0/<group>/+/<edge>/#`` and queues each message, decoded.

    Keeps the names and datatypes of the last NBIRTH so that NDATA metrics sent by alias
    without a datatype are shown by name with their logical value.
    """

    def __init__(self, host: str, port: int, group: str, edge: str) -> None:
        self.host, self.port = host, port
        self.filter = f"{NAMESPACE}/{group}/+/{edge}/#"
        self.received: asyncio.Queue[Received] = asyncio.Queue()
        self._names: dict[int, tuple[str, DataType]] = {}
        self._types: dict[str, DataType] = {}
        self._client: aiomqtt.Client | None = None
        self._listener: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SparkplugRecorder:
        self._client = aiomqtt.Client(self.host, self.port, clean_session=True)
        await self._client.__aenter__()
        await self._client.subscribe(self.filter, qos=1)
        self._listener = asyncio.create_task(self._listen(self._client), name="spb-recorder")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _close(self._listener, self._client)

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if not isinstance(message.payload, bytes):
                continue
            topic = SparkplugTopic.parse(message.topic.value)
            payload = decode_payload(message.payload)
            if topic.message_type is MessageType.NBIRTH:
                self._names.clear()
                self._types.clear()
            values: dict[str, WireValue | None] = {}
            for metric in payload.metrics:
                name, datatype = self._resolve(metric)
                if metric.is_null or datatype is None:
                    values[name] = None
                    continue
                values[name] = decode_value(datatype, metric.value_field, metric.value)
            await self.received.put(Received(topic, payload, values))

    def _resolve(self, metric: Metric) -> tuple[str, DataType | None]:
        datatype = metric.datatype if isinstance(metric.datatype, DataType) else None
        if metric.name is not None:
            if datatype is not None:
                self._types[metric.name] = datatype
                if metric.alias is not None:
                    self._names[metric.alias] = (metric.name, datatype)
            return metric.name, datatype or self._types.get(metric.name)
        if metric.alias is not None and metric.alias in self._names:
            name, known = self._names[metric.alias]
            return name, datatype or known
        return f"alias:{metric.alias}", datatype

    async def next(self, kind: MessageType) -> Received:
        """The next message of ``kind`` (earlier ones of other kinds are dropped); wrap it
        in ``asyncio.timeout``."""
        while True:
            got = await self.received.get()
            if got.topic.message_type is kind:
                return got
