"""The bridge as a Sparkplug B edge node: its SPC results as metrics Ignition picks up as tags.

:class:`SpcMetrics` (pure) names, aliases and types the metrics, remembers their current
values for the next NBIRTH and turns a sample or new limits into NDATA metrics by alias.
:class:`SparkplugEdgeNode` (I/O) keeps its own MQTT connection, because an edge node's Will
must be its NDEATH: per connection it takes the next ``bdSeq`` (0, 1, ... wrapping at 255),
sets the Will to an NDEATH carrying it, publishes an NBIRTH carrying the same ``bdSeq``, and
answers an NCMD ``Node Control/Rebirth`` with a fresh NBIRTH (same ``bdSeq``, seq 0).
Primary host STATE messages are not watched: the node publishes whenever it is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiomqtt

from bridge.sparkplug._node import EdgeNodeMessages, is_rebirth_command
from bridge.sparkplug._node import to_epoch_ms as _ms
from bridge.sparkplug._sessions import keep_sessions
from bridge.sparkplug._types import MessageType, Metric, SparkplugTopic
from bridge.sparkplug._values import DataType, WireValue

__all__ = ["SPC_FIELDS", "SparkplugEdgeNode", "SpcMetrics"]

log = logging.getLogger("openspc.sparkplug.edge")

SPC_FIELDS: tuple[tuple[str, DataType], ...] = (
    ("value", DataType.Double),
    ("range", DataType.Double),
    ("sample_id", DataType.UInt64),
    ("in_control", DataType.Boolean),
    ("zone", DataType.String),
    ("failed_rules", DataType.String),
    ("center_line", DataType.Double),
    ("ucl", DataType.Double),
    ("lcl", DataType.Double),
    ("sigma", DataType.Double),
)
"""Per characteristic ``SPC/<id>/<field>``, in alias order. ``failed_rules`` is the X and
secondary chart's failing rule ids as text (``"1,5"``; ``""`` when none)."""

_LIMIT_FIELDS = ("center_line", "ucl", "lcl", "sigma")


@dataclass(slots=True)
class _Slot:
    name: str
    alias: int
    datatype: DataType
    value: WireValue | None = None
    timestamp: int | None = None


class SpcMetrics:
    """The edge node's metric table: stable aliases while the configuration is unchanged.

    Alias 1 is ``Node Control/Rebirth``; characteristic ``i`` (in id order, from 0) has
    aliases ``100 * (i + 1) + k`` for the ``k``-th entry of :data:`SPC_FIELDS`.
    """

    REBIRTH_ALIAS = 1

    def __init__(self, characteristic_ids: Iterable[int]) -> None:
        self._slots: dict[tuple[int, str], _Slot] = {}
        for index, cid in enumerate(sorted(set(characteristic_ids))):
            for k, (field, datatype) in enumerate(SPC_FIELDS):
                alias = 100 * (index + 1) + k
                self._slots[(cid, field)] = _Slot(f"SPC/{cid}/{field}", alias, datatype)

    def name(self, characteristic_id: int, field: str) -> str:
        return self._slots[(characteristic_id, field)].name

    def alias(self, characteristic_id: int, field: str) -> int:
        return self._slots[(characteristic_id, field)].alias

    def birth(self) -> list[Metric]:
        """Every metric with name, alias, datatype and its current value (null when none)."""
        return [
            Metric.of(
                slot.datatype,
                slot.value,
                name=slot.name,
                alias=slot.alias,
                timestamp=slot.timestamp,
            )
            for slot in self._slots.values()
        ]

    def _update(
        self, cid: int, values: Mapping[str, WireValue | None], at: datetime
    ) -> list[Metric]:
        stamp = _ms(at)
        out: list[Metric] = []
        for field, value in values.items():
            slot = self._slots.get((cid, field))
            if slot is None:
                continue
            slot.value, slot.timestamp = value, stamp
            out.append(
                Metric.of(
                    slot.datatype, value, alias=slot.alias, timestamp=stamp, with_datatype=False
                )
            )
        return out

    def sample(
        self,
        characteristic_id: int,
        *,
        sample_id: int,
        value: float,
        range_: float | None,
        zone: str | None,
        in_control: bool | None,
        failed_rules: Sequence[int],
        at: datetime,
    ) -> list[Metric]:
        """NDATA metrics (by alias, no datatype) for a new sample; [] for an unknown id."""
        return self._update(
            characteristic_id,
            {
                "value": value,
                "range": range_,
                "sample_id": sample_id,
                "in_control": in_control,
                "zone": zone,
                "failed_rules": ",".join(str(rule) for rule in sorted(set(failed_rules))),
            },
            at,
        )

    def limits(
        self, characteristic_id: int, limits: Mapping[str, Any], at: datetime
    ) -> list[Metric]:
        """NDATA metrics for new control limits (a ``control_limits`` payload)."""
        values: dict[str, WireValue | None] = {}
        for field in _LIMIT_FIELDS:
            number = limits.get(field)
            values[field] = float(number) if isinstance(number, int | float) else None
        return self._update(characteristic_id, values, at)


_BIRTH = "birth"


class SparkplugEdgeNode:
    """Publishes :class:`SpcMetrics` as edge node ``<group>/<edge>`` on its own connection.

    :meth:`run` connects (and reconnects) until ``stop`` is set. :meth:`publish_sample` and
    :meth:`publish_limits` never wait on the network: they update the metric table and queue
    an NDATA, which one sender task publishes in order (so ``seq`` follows the publish order).
    While no NBIRTH is out, results only update the table; the next NBIRTH carries them
    (Sparkplug data is QoS 0: nothing is queued across a lost connection).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        group: str,
        edge: str,
        characteristic_ids: Iterable[int],
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        keepalive: int = 30,
        reconnect_delay: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.host, self.port = host, port
        self.group, self.edge = group, edge
        self.client_id = client_id
        self.username, self.password = username, password
        self.tls = tls
        self.keepalive = keepalive
        self.reconnect_delay = reconnect_delay
        self.clock = clock
        self.metrics = SpcMetrics(characteristic_ids)
        self.messages = EdgeNodeMessages(group, edge, bd_seq=0)
        self.births = 0
        self.born = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._connections = 0
        # bdSeq of the first connection (the stored one + 1 after a restart), and where each
        # connection's bdSeq is saved before connecting (docs/sparkplug.md)
        self.first_bd_seq = 0
        self.on_bd_seq: Callable[[int], Awaitable[None]] | None = None
        self._outbox: asyncio.Queue[list[Metric] | str] = asyncio.Queue(maxsize=10_000)

    @property
    def ncmd_topic(self) -> str:
        return str(SparkplugTopic(self.group, MessageType.NCMD, self.edge))

    async def run(self, stop: asyncio.Event) -> None:
        await keep_sessions(
            stop,
            self._session,
            self._close,
            delay=self.reconnect_delay,
            what="sparkplug edge node",
        )

    async def _close(self, session: asyncio.Future[None]) -> None:
        """A clean stop: NDEATH first (a clean DISCONNECT suppresses the Will), then leave."""
        client = self._client
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                death = self.messages.ndeath(self.clock())
                await client.publish(death.topic, death.data, qos=1, timeout=2)
        session.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await session

    async def _session(self) -> None:
        # bdSeq: +1 per new connection (spec v3), going on from the last one stored
        bd_seq = (self.first_bd_seq + self._connections) % 256
        self._connections += 1
        if self.on_bd_seq is not None:
            try:
                await self.on_bd_seq(bd_seq)
            except Exception as exc:  # the database is away: the next restart repeats one
                log.warning("could not store the edge node's bdSeq %d: %s", bd_seq, exc)
        self.messages = EdgeNodeMessages(self.group, self.edge, bd_seq=bd_seq)
        will = self.messages.ndeath(self.clock())
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            username=self.username,
            password=self.password,
            will=aiomqtt.Will(will.topic, will.data, qos=1, retain=False),
            clean_session=True,
            keepalive=self.keepalive,
            tls_params=aiomqtt.TLSParameters() if self.tls else None,
        )
        async with client:
            self._client = client
            sender = asyncio.create_task(self._sender(client), name="sparkplug-edge-sender")
            try:
                await client.subscribe(self.ncmd_topic, qos=1)
                self._drain()
                self._outbox.put_nowait(_BIRTH)
                async for message in client.messages:
                    if isinstance(message.payload, bytes) and is_rebirth_command(
                        message.payload, SpcMetrics.REBIRTH_ALIAS
                    ):
                        log.info("rebirth requested on %s", message.topic)
                        self._outbox.put_nowait(_BIRTH)
            finally:
                self._client = None
                self.born.clear()
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender

    def _drain(self) -> None:
        """Forget queued NDATA: the NBIRTH about to go out carries the current values."""
        while not self._outbox.empty():
            self._outbox.get_nowait()

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            item = await self._outbox.get()
            if item == _BIRTH:
                out = self.messages.nbirth(
                    self.metrics.birth(), self.clock(), rebirth_alias=SpcMetrics.REBIRTH_ALIAS
                )
            elif isinstance(item, list):
                out = self.messages.ndata(item, self.clock())
            else:
                continue
            try:
                await client.publish(out.topic, out.data, qos=0, timeout=5)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                log.warning("sparkplug publish to %s failed: %s", out.topic, exc)
                continue
            if item == _BIRTH:
                self.births += 1
                self.born.set()

    def publish_sample(self, characteristic_id: int, **sample: Any) -> None:
        """Record a sample (see :meth:`SpcMetrics.sample`) and queue its NDATA."""
        self._queue(self.metrics.sample(characteristic_id, **sample))

    def publish_limits(
        self, characteristic_id: int, limits: Mapping[str, Any], at: datetime
    ) -> None:
        """Record new control limits and queue their NDATA."""
        self._queue(self.metrics.limits(characteristic_id, limits, at))

    def _queue(self, metrics: list[Metric]) -> None:
        if not metrics or self._client is None:
            return  # not connected: the next NBIRTH carries the current values
        try:
            self._outbox.put_nowait(metrics)
        except asyncio.QueueFull:
            log.warning("sparkplug edge node falls behind; asking itself for a fresh NBIRTH")
            self._drain()
            self._outbox.put_nowait(_BIRTH)

    def abort(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a crash or a pulled cable would:
        the broker then publishes the Will (NDEATH). For tests and fault drills."""
        client = self._client
        if client is None:
            return
        paho_client = client._client  # noqa: SLF001  aiomqtt has no public abort: its paho client's socket
        sock = paho_client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
