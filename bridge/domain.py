"""The bridge's domain events (past tense) and commands (imperative), as frozen data.

The engine speaks in :mod:`engine` events keyed by a characteristic's sample number; once a
batch is committed, the pipeline turns them into these events, which carry the global ids
the database gave them, and hands them to the :class:`bridge.bus.MessageBus`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine import SampleProcessed, Severity, ViolationRaised
from engine.alarms import OVERDUE_RULE_NAME, AlarmKind, SpecViolationRaised

__all__ = [
    "AcknowledgeViolation",
    "Command",
    "DomainEvent",
    "LimitsUpdated",
    "OverdueAlarm",
    "Recalculate",
    "SampleRecorded",
    "SourceStatusChanged",
    "ViolationAcknowledged",
    "ViolationCreated",
    "ViolationEvent",
]


@dataclass(frozen=True, slots=True)
class SampleRecorded:
    """A sample was judged and stored; ``received`` is the monotonic time its last reading
    arrived (for the latency metric), None when unknown; ``encoded`` the ``sample`` payload's
    JSON (made once, by the producer: the pipeline writes it from the fields with
    ``bridge.wire.payloads.sample_json``); ``payload`` the payload as a dict when a producer
    made one instead. With neither, the encoders make the JSON from ``sample``."""

    sample_id: int
    sample: SampleProcessed
    received: float | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    encoded: bytes = b""  # the payload as compact JSON, when the producer encoded it


@dataclass(frozen=True, slots=True)
class OverdueAlarm:
    """No sample came in time (engine.alarms.SampleOverdue, its monotonic times turned into
    wall-clock ones by bridge/_alarms.py): ``timestamp`` when it became overdue, ``due_at``
    when the sample was due. ``sample_id``, ``rule_id`` and ``chart`` are null on the wire."""

    characteristic_id: int
    severity: Severity
    timestamp: datetime
    due_at: datetime
    kind: AlarmKind = AlarmKind.OVERDUE
    rule_name: str = OVERDUE_RULE_NAME


ViolationEvent = ViolationRaised | SpecViolationRaised | OverdueAlarm
"""An alarm of any kind (docs/topics.md, "violation"): a run rule, a spec, an overdue one."""


@dataclass(frozen=True, slots=True)
class ViolationCreated:
    """An alarm was raised and the violation (an open alarm) was stored; ``sample_id`` is
    None for an overdue alarm (no sample)."""

    violation_id: int
    sample_id: int | None
    violation: ViolationEvent


@dataclass(frozen=True, slots=True)
class ViolationAcknowledged:
    """One violation acknowledged; ``reason`` is its cause (docs/topics.md, ``ack_update``),
    ``sample_id`` the sample it excluded (None: none)."""

    violation_id: int
    characteristic_id: int
    user: str
    reason: str
    exclude_sample: bool
    timestamp: datetime
    action: str | None = None
    comment: str | None = None
    sample_id: int | None = None


@dataclass(frozen=True, slots=True)
class LimitsUpdated:
    """New control limits were stored; ``payload`` is the ``control_limits`` payload."""

    characteristic_id: int
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SourceStatusChanged:
    """A characteristic's source went online or offline (Sparkplug B birth/death)."""

    characteristic_id: int
    online: bool


DomainEvent = (
    SampleRecorded | ViolationCreated | ViolationAcknowledged | LimitsUpdated | SourceStatusChanged
)


@dataclass(frozen=True, slots=True)
class AcknowledgeViolation:
    """Acknowledge one or several violations: ``request`` is the command's JSON object,
    checked by its handler against the configured codes (engine.alarms.parse_acknowledgement;
    docs/topics.md, "Commands")."""

    user: str
    request: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Recalculate:
    """Recompute limits from the last ``last`` non-excluded subgroups (None: the baseline),
    or with ``between`` = ``(from_sample_id, to_sample_id)`` from the non-excluded samples
    in that range, inclusive."""

    characteristic_id: int
    last: int | None = None
    between: tuple[int, int] | None = None


Command = AcknowledgeViolation | Recalculate
