"""The host side of Sparkplug B as a pure state machine: messages in, events out, no I/O.

:class:`SparkplugHost` follows every edge node a characteristic names (all of its messages,
bound metrics or not: the sequence number counts them all) and turns

- NBIRTH / DBIRTH into learned aliases and datatypes, and the source going online;
- NDATA / DDATA into :class:`ReadingReceived` for the configured metrics (by name or alias,
  with or without a datatype: the birth gives them meaning);
- NDEATH (when its bdSeq matches the NBIRTH's) / DDEATH into the source going offline;
- anything it cannot use for a configured node (data before a birth, an unknown alias, a
  sequence gap, a non-numeric metric, bytes that are not a payload) into
  :class:`InputRejected`, and, where a fresh birth would repair it, :class:`RebirthRequested`.

Births restate the current values; they are not taken as readings (a rebirth the bridge asked
for would otherwise count a measurement twice). NCMD, DCMD and STATE are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bridge.sparkplug._codec import decode_payload
from bridge.sparkplug._types import (
    NAMESPACE,
    InvalidSparkplugPayload,
    InvalidSparkplugTopic,
    MessageType,
    Metric,
    Payload,
    SparkplugTopic,
)
from bridge.sparkplug._values import NUMERIC_TYPES, DataType, as_number, decode_value

__all__ = [
    "HostEvent",
    "InputRejected",
    "ReadingReceived",
    "RebirthRequested",
    "SourceStatusChanged",
    "SparkplugBinding",
    "SparkplugHost",
    "epoch_ms_to_datetime",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEQ_TYPES = frozenset(
    {
        MessageType.NBIRTH,
        MessageType.NDATA,
        MessageType.DBIRTH,
        MessageType.DDATA,
        MessageType.DDEATH,
    }
)


def epoch_ms_to_datetime(ms: int) -> datetime:
    """Sparkplug's epoch milliseconds (UTC) as an aware datetime."""
    return _EPOCH + timedelta(milliseconds=ms)


@dataclass(frozen=True, slots=True)
class SparkplugBinding:
    """A characteristic's Sparkplug source: ``device`` None for a node-level metric."""

    characteristic_id: int
    group: str
    edge: str
    device: str | None
    metric: str


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadingReceived:
    """A numeric value of a configured metric; ``timestamp`` is the metric's own (else the
    payload's, else the time of arrival)."""

    characteristic_id: int
    value: float
    timestamp: datetime
    topic: str
    historical: bool = False


@dataclass(frozen=True, slots=True)
class SourceStatusChanged:
    """A characteristic's Sparkplug source was born (online) or died (offline)."""

    characteristic_id: int
    online: bool
    timestamp: datetime
    topic: str


@dataclass(frozen=True, slots=True)
class InputRejected:
    """Something from a configured edge node that could not be used, and why."""

    topic: str
    payload: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class RebirthRequested:
    """The host wants the edge node to publish its births again (an NCMD to send)."""

    group: str
    edge: str
    reason: str

    @property
    def topic(self) -> str:
        return f"{NAMESPACE}/{self.group}/NCMD/{self.edge}"


HostEvent = ReadingReceived | SourceStatusChanged | InputRejected | RebirthRequested


# --- state --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Definition:
    name: str
    datatype: DataType | int | None


@dataclass(slots=True)
class _Metrics:
    """What a birth defined: names and aliases, each with its datatype."""

    by_alias: dict[int, _Definition] = field(default_factory=dict)
    by_name: dict[str, _Definition] = field(default_factory=dict)

    @classmethod
    def from_birth(cls, metrics: Iterable[Metric]) -> _Metrics:
        table = cls()
        for metric in metrics:
            if metric.name is None:
                continue
            definition = _Definition(metric.name, metric.datatype)
            table.by_name[metric.name] = definition
            if metric.alias is not None:
                table.by_alias[metric.alias] = definition
        return table

    def resolve(self, metric: Metric) -> _Definition | None:
        if metric.name is not None:
            return self.by_name.get(metric.name) or _Definition(metric.name, metric.datatype)
        if metric.alias is not None:
            return self.by_alias.get(metric.alias)
        return None


@dataclass(slots=True)
class _Node:
    born: bool = False
    bd_seq: int | None = None
    seq: int | None = None
    metrics: _Metrics = field(default_factory=_Metrics)
    devices: dict[str, _Metrics] = field(default_factory=dict)
    last_rebirth_request: datetime | None = None


class SparkplugHost:
    """Follows the edge nodes that ``bindings`` name; :meth:`handle` one message at a time.

    ``rebirth_requests``: ask for a rebirth (NCMD ``Node Control/Rebirth``) on a sequence
    gap, on data before a birth and on an unknown alias; at most once per node every
    ``rebirth_holdoff`` (a burst of data from an unborn node asks once).
    """

    def __init__(
        self,
        bindings: Iterable[SparkplugBinding],
        *,
        rebirth_requests: bool = True,
        rebirth_holdoff: timedelta = timedelta(seconds=5),
    ) -> None:
        self._bindings: dict[tuple[str, str], dict[tuple[str | None, str], list[int]]] = {}
        self._by_source: dict[tuple[str, str, str | None], list[int]] = {}
        for binding in bindings:
            node = self._bindings.setdefault((binding.group, binding.edge), {})
            node.setdefault((binding.device, binding.metric), []).append(binding.characteristic_id)
            source = (binding.group, binding.edge, binding.device)
            self._by_source.setdefault(source, []).append(binding.characteristic_id)
        self._rebirth_requests = rebirth_requests
        self._holdoff = rebirth_holdoff
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._online: dict[int, bool] = {}

    @property
    def topic_filters(self) -> list[str]:
        """One subscription per configured edge node: ``spBv1.0/<group>/+/<edge>/#``."""
        return [f"{NAMESPACE}/{group}/+/{edge}/#" for group, edge in sorted(self._bindings)]

    @property
    def nodes(self) -> list[tuple[str, str]]:
        """The configured edge nodes, as ``(group, edge)``."""
        return sorted(self._bindings)

    def restore_bd_seqs(self, bd_seqs: dict[tuple[str, str], int]) -> None:
        """The last bdSeq of each node's NBIRTH, from before a restart of the bridge: an
        NDEATH with another bdSeq is then a stale Will and is ignored (docs/sparkplug.md)."""
        for key, bd_seq in bd_seqs.items():
            if key in self._bindings:
                self._nodes.setdefault(key, _Node()).bd_seq = bd_seq

    def bd_seq(self, group: str, edge: str) -> int | None:
        """The bdSeq of the node's last NBIRTH (or restored), None when unknown."""
        node = self._nodes.get((group, edge))
        return None if node is None else node.bd_seq

    def unborn(self) -> list[tuple[str, str]]:
        """The configured nodes with no NBIRTH since the bridge started."""
        return [key for key in self.nodes if not self._nodes.get(key, _Node()).born]

    def rebirth_requested(self, group: str, edge: str, at: datetime) -> None:
        """A rebirth was asked for outside :meth:`handle` (at start-up): the hold-off counts."""
        if (group, edge) in self._bindings:
            self._nodes.setdefault((group, edge), _Node()).last_rebirth_request = at

    def is_online(self, characteristic_id: int) -> bool | None:
        """Whether the characteristic's source is alive; None before anything was heard."""
        return self._online.get(characteristic_id)

    def handle(self, topic: str, data: bytes, received_at: datetime) -> list[HostEvent]:
        """The events one message gives; never raises for anything a message contains."""
        try:
            where = SparkplugTopic.parse(topic)
        except InvalidSparkplugTopic as exc:
            return [InputRejected(topic, data, exc.reason)]
        key = (where.group, where.edge)
        if where.message_type in (MessageType.NCMD, MessageType.DCMD, MessageType.STATE):
            return []
        if key not in self._bindings:
            return []
        try:
            payload = decode_payload(data)
        except InvalidSparkplugPayload as exc:
            return [InputRejected(topic, data, exc.reason)]
        node = self._nodes.setdefault(key, _Node())
        return _Message(self, node, where, topic, data, payload, received_at).run()

    # used by _Message, the handling of one message (public to it: this module is private)
    def characteristics_of(self, where: SparkplugTopic, device: str | None, name: str) -> list[int]:
        return self._bindings[(where.group, where.edge)].get((device, name), [])

    def status_events(
        self, where: SparkplugTopic, device: str | None, online: bool, at: datetime, topic: str
    ) -> list[HostEvent]:
        events: list[HostEvent] = []
        ids = self._by_source.get((where.group, where.edge, device), [])
        for characteristic_id in ids:
            if self._online.get(characteristic_id) is not online:
                self._online[characteristic_id] = online
                events.append(SourceStatusChanged(characteristic_id, online, at, topic))
        return events

    def node_devices(self, where: SparkplugTopic) -> list[str]:
        node = (where.group, where.edge)
        return sorted({d for g, e, d in self._by_source if (g, e) == node and d is not None})

    def rebirth_events(
        self, node: _Node, where: SparkplugTopic, reason: str, at: datetime
    ) -> list[HostEvent]:
        if not self._rebirth_requests:
            return []
        last = node.last_rebirth_request
        if last is not None and at - last < self._holdoff:
            return []
        node.last_rebirth_request = at
        return [RebirthRequested(where.group, where.edge, reason)]


@dataclass(slots=True)
class _Message:
    """One message being handled (keeps the handle() steps short and flat)."""

    host: SparkplugHost
    node: _Node
    where: SparkplugTopic
    topic: str
    data: bytes
    payload: Payload
    received_at: datetime
    events: list[HostEvent] = field(default_factory=list)

    def run(self) -> list[HostEvent]:
        kind = self.where.message_type
        if kind is MessageType.NBIRTH:
            self._nbirth()
        elif kind is MessageType.NDEATH:
            self._ndeath()
        elif not self.node.born:
            self._reject(f"{kind} before NBIRTH (no birth seen since the bridge started)")
            self._ask_rebirth(f"{kind} from a node without a birth")
        else:
            self._check_seq()
            if kind is MessageType.DBIRTH:
                self._dbirth()
            elif kind is MessageType.DDEATH:
                self._ddeath()
            elif kind is MessageType.NDATA:
                self._data(self.node.metrics, None)
            elif kind is MessageType.DDATA:
                self._ddata()
        return self.events

    @property
    def _at(self) -> datetime:
        if self.payload.timestamp is not None:
            return epoch_ms_to_datetime(self.payload.timestamp)
        return self.received_at

    def _reject(self, reason: str) -> None:
        self.events.append(InputRejected(self.topic, self.data, reason))

    def _ask_rebirth(self, reason: str) -> None:
        self.events += self.host.rebirth_events(self.node, self.where, reason, self.received_at)

    def _check_seq(self) -> None:
        seq = self.payload.seq
        if seq is None or not 0 <= seq <= 255:
            self._reject(f"{self.where.message_type} without a valid seq (0..255): {seq}")
            return
        expected = None if self.node.seq is None else (self.node.seq + 1) % 256
        self.node.seq = seq
        if expected is not None and seq != expected:
            self._reject(f"sequence gap: expected seq {expected}, got {seq} (messages lost)")
            self._ask_rebirth(f"sequence gap (expected {expected}, got {seq})")

    def _nbirth(self) -> None:
        node = self.node
        node.born = True
        node.seq = self.payload.seq
        node.bd_seq = _bd_seq(self.payload)
        node.metrics = _Metrics.from_birth(self.payload.metrics)
        node.devices.clear()  # every device is born again after its node
        node.last_rebirth_request = None  # the next gap may ask at once
        self.events += self.host.status_events(self.where, None, True, self._at, self.topic)

    def _ndeath(self) -> None:
        bd_seq = _bd_seq(self.payload)
        if None not in (bd_seq, self.node.bd_seq) and bd_seq != self.node.bd_seq:
            # the Will of an earlier session, arriving after the current birth (whose bdSeq
            # may be one stored before a restart of the bridge)
            return
        # Unborn, and no bdSeq known to compare with: the death is still news.
        self.node.born = False
        self.node.seq = None
        self.node.devices.clear()
        at = self.received_at
        self.events += self.host.status_events(self.where, None, False, at, self.topic)
        for device in self.host.node_devices(self.where):
            self.events += self.host.status_events(self.where, device, False, at, self.topic)

    def _dbirth(self) -> None:
        device = self.where.device
        assert device is not None
        self.node.devices[device] = _Metrics.from_birth(self.payload.metrics)
        self.events += self.host.status_events(self.where, device, True, self._at, self.topic)

    def _ddeath(self) -> None:
        device = self.where.device
        assert device is not None
        self.node.devices.pop(device, None)
        self.events += self.host.status_events(self.where, device, False, self._at, self.topic)

    def _ddata(self) -> None:
        device = self.where.device
        assert device is not None
        metrics = self.node.devices.get(device)
        if metrics is None:
            self._reject(f"DDATA before DBIRTH of device {device!r}")
            self._ask_rebirth(f"DDATA from device {device!r} without a birth")
            return
        self._data(metrics, device)

    def _data(self, table: _Metrics, device: str | None) -> None:
        for metric in self.payload.metrics:
            definition = table.resolve(metric)
            if definition is None:
                what = f"alias {metric.alias}" if metric.alias is not None else "a metric"
                self._reject(f"unknown {what}: not defined by the last birth")
                self._ask_rebirth(f"unknown {what}")
                continue
            ids = self.host.characteristics_of(self.where, device, definition.name)
            if not ids or metric.is_null:
                continue
            value = self._number(metric, definition)
            if value is None:
                continue
            stamp = metric.timestamp if metric.timestamp is not None else self.payload.timestamp
            at = epoch_ms_to_datetime(stamp) if stamp is not None else self.received_at
            for characteristic_id in ids:
                self.events.append(
                    ReadingReceived(characteristic_id, value, at, self.topic, metric.is_historical)
                )

    def _number(self, metric: Metric, definition: _Definition) -> float | None:
        datatype = metric.datatype if metric.datatype is not None else definition.datatype
        name = definition.name
        if datatype is None:
            self._reject(f"metric {name!r} has no datatype, in the birth or here")
            return None
        if datatype not in NUMERIC_TYPES:
            label = datatype.name if isinstance(datatype, DataType) else f"type {datatype}"
            self._reject(f"metric {name!r} is {label}, not a number")
            return None
        try:
            return as_number(decode_value(DataType(datatype), metric.value_field, metric.value))
        except ValueError as exc:
            self._reject(f"metric {name!r}: {exc}")
            return None


def _bd_seq(payload: Payload) -> int | None:
    """The ``bdSeq`` metric of an NBIRTH or NDEATH (spec v3: Int64, some send UInt64)."""
    for metric in payload.metrics:
        if metric.name != "bdSeq":
            continue
        datatype = metric.datatype if isinstance(metric.datatype, DataType) else DataType.UInt64
        try:
            value = decode_value(datatype, metric.value_field, metric.value)
        except ValueError:
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None
