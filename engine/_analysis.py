"""Phase I analysis: limits from the first K subgroups, every point judged against them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from engine._engine import CharacteristicEngine
from engine._errors import InsufficientData
from engine._limits import check_subgroup_size, compute_limits, min_subgroups
from engine._rules import resolve_rules
from engine._types import CharacteristicSpec, ControlLimits, SampleProcessed, Zone

__all__ = ["Analysis", "AnalysisPoint", "analyze"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AnalysisPoint:
    """One subgroup of a Phase I review, judged against the analysis's limits."""

    index: int
    value: float
    values: tuple[float, ...]
    range: float | None
    zone: Zone
    failed_rules: tuple[int, ...]
    range_failed_rules: tuple[int, ...]

    @property
    def in_control(self) -> bool:
        return not (self.failed_rules or self.range_failed_rules)


@dataclass(frozen=True, slots=True)
class Analysis:
    limits: ControlLimits
    points: tuple[AnalysisPoint, ...]


def analyze(
    values: Sequence[float],
    subgroup_size: int,
    *,
    baseline: int = 25,
    rules: str | Sequence[int | Mapping[str, object]] | None = None,
    usl: float | None = None,
    lsl: float | None = None,
) -> Analysis:
    """Limits from the first ``baseline`` subgroups, then every subgroup judged against them.

    Readings form subgroups of ``subgroup_size`` in order; trailing readings that do not fill
    a subgroup are ignored. Each point is judged by the same engine the bridge runs, its rules
    looking back over the points before it, so for every point after the baseline the result
    equals the bridge's. Raises ``InsufficientData`` when there are fewer than ``baseline``
    whole subgroups, ``ZeroDispersion`` when they show no variation.
    """
    n = subgroup_size
    check_subgroup_size(n)
    rule_set = resolve_rules(rules)
    if baseline < min_subgroups(n):
        raise ValueError(f"baseline must be at least {min_subgroups(n)} subgroups, got {baseline}")
    whole = len(values) // n
    subgroups = [tuple(float(v) for v in values[i * n : (i + 1) * n]) for i in range(whole)]
    if whole < baseline:
        raise InsufficientData(baseline, whole)
    limits = compute_limits(subgroups[:baseline], n, usl=usl, lsl=lsl)
    spec = CharacteristicSpec(
        id=0, subgroup_size=n, usl=usl, lsl=lsl, baseline=baseline, rules=rule_set
    )
    engine = CharacteristicEngine(spec)
    engine._install(limits)  # Phase I: the limits hold from the first point on
    points: list[AnalysisPoint] = []
    for index, group in enumerate(subgroups):
        for event in engine.add_readings(group, _EPOCH):
            if isinstance(event, SampleProcessed):
                assert event.zone is not None
                points.append(
                    AnalysisPoint(
                        index=index,
                        value=event.value,
                        values=event.values,
                        range=event.range,
                        zone=event.zone,
                        failed_rules=event.failed_rules,
                        range_failed_rules=event.range_failed_rules,
                    )
                )
    return Analysis(limits=limits, points=tuple(points))
