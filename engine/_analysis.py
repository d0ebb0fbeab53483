"""Phase I analysis: limits from the first K samples, every point judged against them.

EWMA and CUSUM are the exception (docs/spc.md, "openspc analyze"): their statistic starts
after the baseline, so the baseline's own points carry none and are not judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine._engine import CharacteristicEngine
from engine._errors import InsufficientData, InvalidCount
from engine._limits import check_subgroup_size, compute_limits
from engine._rules import resolve_rules
from engine._types import (
    CharacteristicSpec,
    ControlLimits,
    ControlLimitsUpdated,
    EngineEvent,
    SampleProcessed,
    Zone,
)
from engine.charts import AttributeFamily, VariablesFamily, check_chart

__all__ = ["Analysis", "AnalysisPoint", "analyze", "analyze_counts"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RulesInput = str | Sequence[int | Mapping[str, object]] | None


@dataclass(frozen=True, slots=True)
class AnalysisPoint:
    """One sample of a Phase I review, judged against the analysis's limits.

    ``zone`` is None only for the baseline points of EWMA and CUSUM charts (not judged).
    ``statistic``, ``ucl``, ``lcl`` (and the CUSUM sums) are set for the chart families of
    docs/spc.md, None for the Shewhart variables charts.
    """

    index: int
    value: float
    values: tuple[float, ...]
    range: float | None
    zone: Zone | None
    failed_rules: tuple[int, ...]
    range_failed_rules: tuple[int, ...]
    statistic: float | None = None
    ucl: float | None = None
    lcl: float | None = None
    cusum_upper: float | None = None
    cusum_lower: float | None = None
    size: float | None = None

    @property
    def in_control(self) -> bool:
        return not (self.failed_rules or self.range_failed_rules)


@dataclass(frozen=True, slots=True)
class Analysis:
    limits: ControlLimits
    points: tuple[AnalysisPoint, ...]
    chart: str = ""


def _point(index: int, e: SampleProcessed) -> AnalysisPoint:
    return AnalysisPoint(
        index=index,
        value=e.value,
        values=e.values,
        range=e.range,
        zone=e.zone,
        failed_rules=e.failed_rules,
        range_failed_rules=e.range_failed_rules,
        statistic=e.statistic,
        ucl=e.ucl,
        lcl=e.lcl,
        cusum_upper=e.cusum_upper,
        cusum_lower=e.cusum_lower,
        size=e.size,
    )


def _spec(
    rules: RulesInput, *, subgroup_size: int = 1, baseline: int, **settings: Any
) -> CharacteristicSpec:
    if rules is None:
        return CharacteristicSpec(id=0, subgroup_size=subgroup_size, baseline=baseline, **settings)
    return CharacteristicSpec(
        id=0,
        subgroup_size=subgroup_size,
        baseline=baseline,
        rules=resolve_rules(rules),
        **settings,
    )


def analyze(
    values: Sequence[float],
    subgroup_size: int,
    *,
    baseline: int = 25,
    rules: RulesInput = None,
    usl: float | None = None,
    lsl: float | None = None,
    chart: str | None = None,
    ewma_lambda: float = 0.2,
    ewma_l: float = 3.0,
    cusum_k: float = 0.5,
    cusum_h: float = 5.0,
) -> Analysis:
    """Limits from the first ``baseline`` subgroups, then every subgroup judged against them.

    Readings form subgroups of ``subgroup_size`` in order; trailing readings that do not fill
    a subgroup are ignored. Each point is judged by the same engine the bridge runs, its rules
    looking back over the points before it, so for every point after the baseline the result
    equals the bridge's. ``chart`` is a variables family, ``ewma`` or ``cusum`` (default: the
    one the subgroup size implies); ``rules`` None means the family's default. Raises
    ``InsufficientData`` when there are fewer than ``baseline`` whole subgroups,
    ``ZeroDispersion`` when they show no variation, ``InvalidChartSettings`` for bad settings.
    """
    n = subgroup_size
    check_subgroup_size(n)
    spec = _spec(
        rules,
        subgroup_size=n,
        baseline=baseline,
        usl=usl,
        lsl=lsl,
        chart=chart,
        ewma_lambda=ewma_lambda,
        ewma_l=ewma_l,
        cusum_k=cusum_k,
        cusum_h=cusum_h,
    )
    family = check_chart(spec)
    if isinstance(family, AttributeFamily):
        raise ValueError(f"a {family.name} chart takes counts: use analyze_counts")
    min_baseline = family.fewest_baseline(n)
    if baseline < min_baseline:
        raise ValueError(f"baseline must be at least {min_baseline} subgroups, got {baseline}")
    subgroups = _whole_subgroups(values, n, baseline)
    base_chart = family.name if isinstance(family, VariablesFamily) else None
    limits = compute_limits(subgroups[:baseline], n, usl=usl, lsl=lsl, chart=base_chart)
    engine = CharacteristicEngine(spec)
    if isinstance(family, VariablesFamily):
        engine._install(limits)  # noqa: SLF001  Phase I: the limits hold from the first point
    points: list[AnalysisPoint] = []
    for index, group in enumerate(subgroups):
        for event in engine.add_readings(group, _EPOCH):
            if isinstance(event, SampleProcessed):
                points.append(_point(index, event))
            elif isinstance(event, ControlLimitsUpdated):
                limits = event.limits  # EWMA/CUSUM: their own, from the same baseline
    return Analysis(limits=limits, points=tuple(points), chart=family.name)


def _whole_subgroups(values: Sequence[float], n: int, baseline: int) -> list[tuple[float, ...]]:
    """``values`` in subgroups of ``n``, trailing readings left out; at least ``baseline``."""
    whole = len(values) // n
    if whole < baseline:
        raise InsufficientData(baseline, whole)
    return [tuple(float(v) for v in values[i * n : (i + 1) * n]) for i in range(whole)]


def analyze_counts(
    counts: Sequence[float],
    sizes: Sequence[float | None],
    chart: str,
    *,
    baseline: int = 25,
    rules: RulesInput = None,
    inspected: int | None = None,
) -> Analysis:
    """A Phase I review of an attribute chart (p, np, c, u): limits from the first
    ``baseline`` samples, every sample judged against them. ``sizes`` holds each sample's
    inspected (p, np) or units (u), None for c. Raises ``InvalidCount`` (with the sample's
    index in ``index``) for a bad count, ``InsufficientData``, ``ZeroDispersion``."""
    spec = _spec(rules, baseline=baseline, chart=chart, inspected=inspected)
    family = check_chart(spec)
    if not isinstance(family, AttributeFamily):
        raise ValueError(f"a {family.name} chart takes measured values: use analyze")
    if baseline < 1:
        raise ValueError(f"baseline must be at least 1 sample, got {baseline}")
    samples = [
        _reading(family, index, count, size, spec)
        for index, (count, size) in enumerate(zip(counts, sizes, strict=True))
    ]
    if len(samples) < baseline:
        raise InsufficientData(baseline, len(samples))
    engine = CharacteristicEngine(spec)
    if family.size_name is None:
        given: list[tuple[float, ...]] = [(c,) for c, _ in samples[:baseline]]
    else:
        given = [(c, size) for c, size in samples[:baseline]]
    limits = engine.recalculate(given, _EPOCH).limits
    events: list[EngineEvent] = []
    for c, size in samples:
        events += engine.add_count(c, None if family.size_name is None else size, _EPOCH)
    points = [e for e in events if isinstance(e, SampleProcessed)]
    return Analysis(
        limits=limits,
        points=tuple(_point(i, e) for i, e in enumerate(points)),
        chart=family.name,
    )


def _reading(
    family: AttributeFamily,
    index: int,
    count: float,
    size: float | None,
    spec: CharacteristicSpec,
) -> tuple[int, float]:
    try:
        return family.reading(count, size, spec)
    except InvalidCount as exc:
        raise InvalidCount(exc.name, exc.value, exc.reason, index) from None
