"""Sparkplug B vocabulary: topics, data types and payloads as plain immutable data.

A :class:`Metric` keeps its value as it travels on the wire (which ``oneof`` field, and the
raw content of that field): a DATA message may name a metric by alias without a datatype,
so only the birth that defined the alias says how to read the bits (an ``Int8`` of -1 is
the ``int_value`` 0xFFFFFFFF or 0xFF). :func:`bridge.sparkplug.decode_value` does that
reading once the datatype is known; :meth:`Metric.of` goes the other way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bridge.sparkplug._values import DataType, ValueField, WireValue, encode_value

__all__ = [
    "NAMESPACE",
    "InvalidSparkplugPayload",
    "InvalidSparkplugTopic",
    "MessageType",
    "Metric",
    "Payload",
    "SparkplugTopic",
]

NAMESPACE = "spBv1.0"


class MessageType(StrEnum):
    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    NDATA = "NDATA"
    DDATA = "DDATA"
    NCMD = "NCMD"
    DCMD = "DCMD"
    STATE = "STATE"

    @property
    def is_device(self) -> bool:
        return self in _DEVICE_TYPES


_DEVICE_TYPES = frozenset(
    {MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA, MessageType.DCMD}
)


class InvalidSparkplugTopic(ValueError):
    """A topic under ``spBv1.0/`` that is not a Sparkplug B topic."""

    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        self.reason = reason
        super().__init__(f"{topic}: {reason}")


class InvalidSparkplugPayload(ValueError):
    """Bytes that are not a Sparkplug B payload (protobuf that does not parse)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """``spBv1.0/<group>/<type>/<edge>[/<device>]``."""

    group: str
    message_type: MessageType
    edge: str
    device: str | None = None

    def __str__(self) -> str:
        base = f"{NAMESPACE}/{self.group}/{self.message_type}/{self.edge}"
        return base if self.device is None else f"{base}/{self.device}"

    @classmethod
    def parse(cls, topic: str) -> SparkplugTopic:
        """Read a topic; raises :class:`InvalidSparkplugTopic` with the reason.

        ``STATE`` topics (``spBv1.0/STATE/<host id>``) parse with ``group`` ``"STATE"`` and
        the host id as ``edge``.
        """
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != NAMESPACE:
            raise InvalidSparkplugTopic(topic, f"not under {NAMESPACE}/")
        if parts[1] == "STATE" and len(parts) == 3:
            return cls("STATE", MessageType.STATE, parts[2])
        if len(parts) not in (4, 5):
            raise InvalidSparkplugTopic(topic, "expected spBv1.0/<group>/<type>/<edge>[/<device>]")
        try:
            kind = MessageType(parts[2])
        except ValueError:
            raise InvalidSparkplugTopic(topic, f"unknown message type {parts[2]!r}") from None
        device = parts[4] if len(parts) == 5 else None
        if kind.is_device != (device is not None):
            raise InvalidSparkplugTopic(
                topic, f"{kind} {'needs' if kind.is_device else 'takes no'} device id"
            )
        if not parts[1] or not parts[3] or device == "":
            raise InvalidSparkplugTopic(topic, "empty group, edge or device id")
        return cls(parts[1], kind, parts[3], device)


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric as carried on the wire.

    ``value`` is the raw content of ``value_field``: an ``int`` for the unsigned
    ``int_value``/``long_value`` fields, ``float``, ``bool``, ``str`` or ``bytes``; None for
    no value and for datasets, templates and extensions (which the bridge does not read).
    ``timestamp`` is epoch milliseconds UTC.
    """

    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: DataType | int | None = None
    value_field: ValueField = ValueField.NONE
    value: WireValue | None = None
    is_historical: bool = False
    is_transient: bool = False
    is_null: bool = False

    @classmethod
    def of(
        cls,
        datatype: DataType,
        value: WireValue | None,
        *,
        name: str | None = None,
        alias: int | None = None,
        timestamp: int | None = None,
        with_datatype: bool = True,
        is_historical: bool = False,
    ) -> Metric:
        """A metric holding the logical ``value`` of ``datatype`` (None: ``is_null``).

        ``with_datatype=False`` leaves the datatype out, as DATA messages by alias may.
        """
        if value is None:
            field, raw = ValueField.NONE, None
        else:
            field, raw = encode_value(datatype, value)
        return cls(
            name=name,
            alias=alias,
            timestamp=timestamp,
            datatype=datatype if with_datatype else None,
            value_field=field,
            value=raw,
            is_historical=is_historical,
            is_null=value is None,
        )


@dataclass(frozen=True, slots=True)
class Payload:
    """A Sparkplug B payload: ``timestamp`` (epoch ms UTC), ``seq`` (0..255), metrics."""

    timestamp: int | None = None
    seq: int | None = None
    metrics: tuple[Metric, ...] = ()
    uuid: str | None = None
    body: bytes | None = None
