"""The Pareto of causes (docs/spc.md, "Alarm workflow: the pure core")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["CauseCount", "cause_pareto", "pareto_since"]


@dataclass(frozen=True, slots=True)
class CauseCount:
    cause: str
    count: int


def pareto_since(now: datetime, days: int) -> datetime:
    """The first acknowledgement time the Pareto counts (inclusive): ``days`` before ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now - timedelta(days=days)


def cause_pareto(
    acknowledged: Iterable[tuple[datetime, str]], now: datetime, days: int
) -> tuple[CauseCount, ...]:
    """Acknowledged violations by cause, from ``(acknowledged_at, cause)`` records: those
    acknowledged at or after ``pareto_since(now, days)``, most frequent first, ties by cause
    name. A record after ``now`` counts (a clock step back must not hide it)."""
    since = pareto_since(now, days)
    counts = Counter(cause for at, cause in acknowledged if at >= since)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(CauseCount(cause, n) for cause, n in ranked)
