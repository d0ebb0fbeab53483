"""What flows through the pipeline besides MQTT deliveries, and what it counts."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from bridge.domain import SourceStatusChanged
from bridge.pipeline._inbox import Inbound
from bridge.readings import InvalidReading
from engine import CharacteristicSpec

__all__ = [
    "CharacteristicRoute",
    "InboundSource",
    "Metrics",
    "Origin",
    "Submission",
    "origin_payload",
    "origin_topic",
]


@dataclass(slots=True)
class Submission:
    """Readings for one characteristic from a non-MQTT-reading source (e.g. Sparkplug B)."""

    characteristic_id: int
    values: tuple[float, ...]
    ts: datetime
    source: str
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    received: float = field(default_factory=time.monotonic)
    batch: str | None = None
    operator: str | None = None
    ack: Callable[[], None] | None = None
    size: float | None = None
    """An attribute reading's inspected (p, np) or units (u); None otherwise."""
    counts: bool = False
    """True for an attribute reading: ``values`` is ``(count,)`` (docs/topics.md)."""
    context: dict[str, str] | None = None
    """The readings' context, ``batch`` and ``operator`` joined in (docs/topics.md)."""


Origin = Inbound | Submission
"""What an item of the inbox is: an MQTT delivery or a submission of another source."""


def origin_topic(item: Origin) -> str:
    return item.topic if isinstance(item, Inbound) else item.source


def origin_payload(item: Origin) -> bytes:
    return item.payload if isinstance(item, Inbound) else repr(item.values).encode()


class InboundSource(Protocol):
    """An extra inbound topic filter and its decoder, registered at bootstrap.

    ``decode`` turns one message into readings (and source status changes); it raises
    :class:`bridge.readings.InvalidReading` (or ``ValueError``) for a message it refuses,
    which is then reported on ``<prefix>/bridge/errors``. It may also return
    ``InvalidReading`` items, for a part of a message it refuses while using the rest (a
    Sparkplug sequence gap in front of good data); each is reported and counted the same way.
    """

    topic_filter: str

    def decode(
        self, topic: str, payload: bytes, received_at: datetime
    ) -> Sequence[Submission | SourceStatusChanged | InvalidReading]: ...


@dataclass(frozen=True, slots=True)
class CharacteristicRoute:
    """What the pipeline needs to know to parse a characteristic's readings."""

    id: int
    subgroup_size: int
    baseline: int
    topic: str | None = None
    value_path: str | None = None
    counts: CharacteristicSpec | None = None
    """The spec of an attribute chart (p, np, c, u), whose readings are counts; None for a
    chart of measured values."""


@dataclass
class Metrics:
    """Counters since start, and a window of receipt-to-publish latencies."""

    started: float = field(default_factory=time.monotonic)
    readings_received: int = 0
    readings_rejected: int = 0
    readings_duplicate: int = 0  # seen before (redelivered), acked, not stored again
    samples: int = 0
    violations: int = 0
    acks: int = 0
    commands: int = 0
    commands_rejected: int = 0
    db_batches: int = 0
    db_retries: int = 0
    db_errors: int = 0
    dead_letters: int = 0  # messages whose rows could not be written (poison), kept aside
    latencies: list[float] = field(default_factory=list)

    def observe_latency(self, seconds: float) -> None:
        self.latencies.append(seconds)
        if len(self.latencies) > 4096:
            del self.latencies[:2048]

    def latency_ms(self) -> dict[str, float | None]:
        data = sorted(self.latencies[-2048:])
        if not data:
            return {"p50": None, "p99": None, "max": None}

        def pick(q: float) -> float:
            return round(data[min(len(data) - 1, int(q * len(data)))] * 1000, 3)

        return {"p50": pick(0.5), "p99": pick(0.99), "max": round(data[-1] * 1000, 3)}
