"""The edge-node side of Sparkplug B as pure message building: what to publish, no I/O.

:class:`EdgeNodeMessages` numbers messages as the specification asks: ``seq`` 0 in the
NBIRTH, then +1 (wrapping 255 -> 0) for every NDATA, DBIRTH, DDATA and DDEATH; the NDEATH
(usually the MQTT Will) carries no seq but the ``bdSeq`` of the NBIRTH it ends.
Both the bridge's own edge node and the test double :class:`SimulatedEdgeNode` use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from bridge.sparkplug._codec import decode_payload, encode_payload
from bridge.sparkplug._types import (
    InvalidSparkplugPayload,
    MessageType,
    Metric,
    Payload,
    SparkplugTopic,
)
from bridge.sparkplug._values import DataType, decode_value

__all__ = [
    "BD_SEQ",
    "REBIRTH",
    "EdgeNodeMessages",
    "Outgoing",
    "is_rebirth_command",
    "rebirth_command",
    "to_epoch_ms",
]

BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"


def to_epoch_ms(at: datetime) -> int:
    """An aware datetime as Sparkplug's epoch milliseconds."""
    if at.tzinfo is None:
        raise ValueError("Sparkplug timestamps need an aware datetime")
    return round(at.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish: topic, protobuf bytes, and the decoded payload for logging."""

    topic: str
    data: bytes
    payload: Payload


@dataclass(slots=True)
class EdgeNodeMessages:
    """Builds the messages of edge node ``<group>/<edge>``; ``bd_seq`` is this session's."""

    group: str
    edge: str
    bd_seq: int = 0
    seq: int = field(default=0, init=False)

    def _out(
        self,
        kind: MessageType,
        metrics: Iterable[Metric],
        at: datetime,
        device: str | None = None,
        *,
        seq: int | None,
    ) -> Outgoing:
        payload = Payload(timestamp=to_epoch_ms(at), seq=seq, metrics=tuple(metrics))
        topic = str(SparkplugTopic(self.group, kind, self.edge, device))
        return Outgoing(topic, encode_payload(payload), payload)

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def skip(self, count: int = 1) -> None:
        """Lose ``count`` sequence numbers (for tests: the host must see a gap)."""
        self.seq = (self.seq + count) % 256

    def bd_seq_metric(self, at: datetime) -> Metric:
        return Metric.of(DataType.Int64, self.bd_seq, name=BD_SEQ, timestamp=to_epoch_ms(at))

    def nbirth(
        self, metrics: Iterable[Metric], at: datetime, *, rebirth_alias: int | None = None
    ) -> Outgoing:
        """NBIRTH with seq 0, ``bdSeq`` and ``Node Control/Rebirth`` added before ``metrics``."""
        self.seq = 0
        stamp = to_epoch_ms(at)
        control = Metric.of(
            DataType.Boolean, False, name=REBIRTH, alias=rebirth_alias, timestamp=stamp
        )
        return self._out(MessageType.NBIRTH, [self.bd_seq_metric(at), control, *metrics], at, seq=0)

    def ndeath(self, at: datetime) -> Outgoing:
        """NDEATH with this session's ``bdSeq`` (no seq), e.g. for the MQTT Will."""
        return self._out(MessageType.NDEATH, [self.bd_seq_metric(at)], at, seq=None)

    def ndata(self, metrics: Iterable[Metric], at: datetime) -> Outgoing:
        return self._out(MessageType.NDATA, metrics, at, seq=self._next_seq())

    def dbirth(self, device: str, metrics: Iterable[Metric], at: datetime) -> Outgoing:
        return self._out(MessageType.DBIRTH, metrics, at, device, seq=self._next_seq())

    def ddata(self, device: str, metrics: Iterable[Metric], at: datetime) -> Outgoing:
        return self._out(MessageType.DDATA, metrics, at, device, seq=self._next_seq())

    def ddeath(self, device: str, at: datetime) -> Outgoing:
        return self._out(MessageType.DDEATH, [], at, device, seq=self._next_seq())


def rebirth_command(group: str, edge: str, at: datetime) -> Outgoing:
    """The NCMD a host sends to ask edge node ``<group>/<edge>`` for a fresh NBIRTH."""
    payload = Payload(
        timestamp=to_epoch_ms(at),
        metrics=(Metric.of(DataType.Boolean, True, name=REBIRTH, timestamp=to_epoch_ms(at)),),
    )
    topic = str(SparkplugTopic(group, MessageType.NCMD, edge))
    return Outgoing(topic, encode_payload(payload), payload)


def is_rebirth_command(data: bytes, rebirth_alias: int | None = None) -> bool:
    """Whether NCMD bytes ask for a rebirth (``Node Control/Rebirth`` true, by name or by
    the alias the node gave it in its NBIRTH)."""
    try:
        payload = decode_payload(data)
    except InvalidSparkplugPayload:
        return False
    for metric in payload.metrics:
        named = metric.name == REBIRTH
        aliased = (
            metric.name is None and rebirth_alias is not None and metric.alias == rebirth_alias
        )
        if not (named or aliased):
            continue
        try:
            if decode_value(DataType.Boolean, metric.value_field, metric.value) is True:
                return True
        except ValueError:
            continue
    return False
