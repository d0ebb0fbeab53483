"""The alarms of docs/spc.md ("Alarm workflow: the pure core") as past-tense events.

A run-rule alarm is the engine's ``ViolationRaised``; the two kinds added here are
``SpecViolationRaised`` (a sample beyond a spec limit) and ``SampleOverdue`` (no sample in
time). Both are plain frozen data: the bridge stores and publishes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from engine._types import Severity

__all__ = [
    "OVERDUE_RULE_NAME",
    "SPEC_RULE_NAME",
    "AlarmKind",
    "SampleOverdue",
    "SpecViolationRaised",
]

SPEC_RULE_NAME: Final = "Beyond specification"
"""``rule_name`` of a ``spec`` violation (its ``rule_id`` is null)."""
OVERDUE_RULE_NAME: Final = "Sample overdue"
"""``rule_name`` of an ``overdue`` violation (its ``rule_id`` is null)."""


class AlarmKind(StrEnum):
    """``violation.kind`` on the wire."""

    RULE = "rule"
    SPEC = "spec"
    OVERDUE = "overdue"


@dataclass(frozen=True, slots=True)
class SpecViolationRaised:
    """A sample holds a reading beyond ``usl`` or ``lsl``: the first sample of an episode.

    ``sample_seq`` is the id the caller gave the sample (the engine's ``seq``, which the
    bridge maps to its ``sample_id`` as it does for run-rule violations). ``chart`` is null
    on the wire; ``rule_name`` is ``SPEC_RULE_NAME``.
    """

    characteristic_id: int
    sample_seq: int
    severity: Severity
    timestamp: datetime
    usl: float | None
    lsl: float | None
    worst: float
    """The reading furthest beyond its limit (what an operator looks at first)."""

    kind: AlarmKind = AlarmKind.SPEC
    rule_name: str = SPEC_RULE_NAME


@dataclass(frozen=True, slots=True)
class SampleOverdue:
    """No sample arrived by ``due_at + overdue_grace`` while the line was running.

    Times are the bridge's monotonic seconds (the clock the tracker is fed with), never a
    gauge's ``ts``: ``due_at`` when the sample was due, ``overdue_at`` when it became
    overdue. ``engine.alarms.wall_time`` turns them into aware datetimes. ``sample_id`` and
    ``chart`` are null on the wire; ``rule_name`` is ``OVERDUE_RULE_NAME``.
    """

    characteristic_id: int
    due_at: float
    overdue_at: float
    severity: Severity

    kind: AlarmKind = AlarmKind.OVERDUE
    rule_name: str = OVERDUE_RULE_NAME
