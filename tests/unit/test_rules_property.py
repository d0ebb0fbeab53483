"""The engine's incremental rules agree with the naive reference on random series."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import (
    CharacteristicEngine,
    CharacteristicSpec,
    ControlLimits,
    ControlLimitsUpdated,
    EngineEvent,
    InsufficientData,
    Method,
    SampleProcessed,
    ViolationRaised,
    ZeroDispersion,
    analyze,
    resolve_rules,
)
from tests.unit import reference_spc as ref

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
LENGTHS = {1: (1, 1), 2: (2, 10), 3: (3, 8), 4: (3, 8), 5: (1, 4), 6: (1, 5), 7: (2, 10)}
LENGTHS[8] = (2, 10)

sizes = st.one_of(st.integers(1, 3), st.integers(4, 10), st.integers(11, 25))


@st.composite
def rule_sets(draw: st.DrawFn) -> dict[int, int]:
    chosen = draw(st.sets(st.integers(1, 8), min_size=1))
    return {r: draw(st.integers(*LENGTHS[r])) for r in chosen}


def as_config(rules: dict[int, int]) -> list[dict[str, object]]:
    return [{"id": r, "length": k} for r, k in rules.items()]


def feed(engine: CharacteristicEngine, readings: list[float]) -> list[EngineEvent]:
    return [e for i, v in enumerate(readings) for e in engine.add_reading(v, T0 + timedelta(i))]


def check_against_reference(
    samples: list[SampleProcessed],
    violations: list[ViolationRaised],
    limits: ref.RefLimits,
    rules: dict[int, int],
    first_judged: int,
) -> None:
    xs: list[float] = []
    judged: list[tuple[int, list[int], bool]] = []
    previous: float | None = None
    for i, sample in enumerate(samples):
        x, r = ref.point(sample.values, previous)
        previous = x
        xs.append(x)
        assert sample.value == x
        assert sample.range == r
        if i < first_judged:
            assert (sample.zone, sample.in_control, sample.failed_rules) == (None, None, ())
            continue
        failed = ref.failed_rules(xs, i, limits, rules)
        r_failed = ref.range_fails(r, limits, rules)
        assert sample.zone == ref.zone(x, limits), i
        assert list(sample.failed_rules) == failed, i
        assert sample.range_failed_rules == ((1,) if r_failed else ())
        assert sample.in_control is (not failed and not r_failed)
        judged.append((i, failed, r_failed))
    raised = sorted((v.sample_seq - 1, v.chart.value, v.rule_id) for v in violations)
    assert raised == ref.episodes(judged)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=sizes,
    rules=rule_sets(),
    halves=st.lists(st.integers(-9, 9), min_size=1, max_size=60 * 3),
)
def test_fixed_limits_with_points_on_every_line(
    n: int, rules: dict[int, int], halves: list[int]
) -> None:
    """CL 0, zones one wide: readings on a half grid land on lines and on CL all the time."""
    readings = [h / 2 for h in halves]
    rule_set = resolve_rules(as_config(rules))
    spec = CharacteristicSpec(id=1, subgroup_size=n, ucl=3.0, lcl=-3.0, rules=rule_set)
    engine = CharacteristicEngine(spec)
    events = feed(engine, readings)
    assert engine.limits is not None
    samples = [e for e in events if isinstance(e, SampleProcessed)]
    assert len(samples) == len(readings) // n
    assert engine.partial == tuple(readings[len(samples) * n :])
    lim = ref.RefLimits(0.0, 3.0, -3.0, 1.0, 1.0, engine.limits.range.ucl, engine.limits.range.lcl)
    violations = [e for e in events if isinstance(e, ViolationRaised)]
    check_against_reference(samples, violations, lim, rules, first_judged=0)


@st.composite
def processes(draw: st.DrawFn) -> list[float]:
    """Noise around 10 with runs, shifts and trends stitched together, on a coarse grid."""
    out: list[float] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["noise", "shift", "trend", "zigzag", "flat"]))
        length = draw(st.integers(1, 40))
        level = draw(st.integers(-30, 30)) / 10
        base = draw(st.lists(st.integers(-20, 20), min_size=length, max_size=length))
        for j, b in enumerate(base):
            if kind == "noise":
                v = b / 10
            elif kind == "shift":
                v = level + b / 40
            elif kind == "trend":
                v = level + j * 0.07
            elif kind == "zigzag":
                v = level + (0.3 if j % 2 else -0.3)
            else:
                v = level
            out.append(10.0 + v)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=sizes, rules=rule_sets(), readings=processes(), baseline=st.integers(2, 12))
def test_streaming_after_a_baseline_equals_the_reference(
    n: int, rules: dict[int, int], readings: list[float], baseline: int
) -> None:
    spec = CharacteristicSpec(
        id=1, subgroup_size=n, baseline=baseline, rules=resolve_rules(as_config(rules))
    )
    engine = CharacteristicEngine(spec)
    events = feed(engine, readings)
    samples = [e for e in events if isinstance(e, SampleProcessed)]
    updates = [e for e in events if isinstance(e, ControlLimitsUpdated)]
    if engine.limits is None:
        assert updates == []
        return
    # the update follows the sample that completed the baseline (later if it had no spread)
    (update,) = updates
    first_judged = sum(1 for e in events[: events.index(update)] if isinstance(e, SampleProcessed))
    lim = engine.limits
    s = lim.sigma / math.sqrt(n)
    reflim = ref.RefLimits(lim.center_line, lim.ucl, lim.lcl, s, s, lim.range.ucl, lim.range.lcl)
    violations = [e for e in events if isinstance(e, ViolationRaised)]
    check_against_reference(samples, violations, reflim, rules, first_judged=first_judged)
    # the limits themselves, recomputed naively from the subgroups they came from
    used = [smp.values for smp in samples[first_judged - lim.sample_count : first_judged]]
    means = [statistics.fmean(g) for g in used]
    assert lim.center_line == pytest.approx(statistics.fmean(means), rel=1e-12)
    if n == 1:
        moving = [abs(b - a) for a, b in itertools.pairwise(means)]
        assert lim.sigma == pytest.approx(statistics.fmean(moving) / 1.128, rel=1e-12)
    elif n <= 10:
        assert lim.range.center_line == pytest.approx(
            statistics.fmean(max(g) - min(g) for g in used), rel=1e-12
        )
    else:
        assert lim.range.center_line == pytest.approx(
            statistics.fmean(statistics.stdev(g) for g in used), rel=1e-9
        )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=sizes, rules=rule_sets(), readings=processes(), baseline=st.integers(2, 12))
def test_analyze_agrees_with_the_stream_after_the_baseline(
    n: int, rules: dict[int, int], readings: list[float], baseline: int
) -> None:
    try:
        analysis = analyze(readings, n, baseline=baseline, rules=as_config(rules))
    except (InsufficientData, ZeroDispersion):
        return
    spec = CharacteristicSpec(
        id=1, subgroup_size=n, baseline=baseline, rules=resolve_rules(as_config(rules))
    )
    engine = CharacteristicEngine(spec)
    samples = [e for e in feed(engine, readings) if isinstance(e, SampleProcessed)]
    assert engine.limits == analysis.limits
    assert len(analysis.points) == len(samples) == len(readings) // n
    for point, sample in list(zip(analysis.points, samples, strict=True))[baseline:]:
        assert (point.value, point.range, point.zone) == (sample.value, sample.range, sample.zone)
        assert point.failed_rules == sample.failed_rules
        assert point.range_failed_rules == sample.range_failed_rules
    # Phase I: the baseline's own points are judged too, each looking back from where it is
    reflim = ref_limits_of(analysis.limits, n)
    xs = [p.value for p in analysis.points]
    for i, point in enumerate(analysis.points):
        assert point.zone.value == ref.zone(point.value, reflim)
        assert list(point.failed_rules) == ref.failed_rules(xs, i, reflim, rules)
        assert bool(point.range_failed_rules) == ref.range_fails(point.range, reflim, rules)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=sizes,
    rules=rule_sets(),
    readings=processes(),
    baseline=st.integers(2, 12),
    fixed=st.booleans(),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    chunks=st.lists(st.integers(1, 30), min_size=1, max_size=10),
)
def test_snapshot_and_restore_change_nothing(
    n: int,
    rules: dict[int, int],
    readings: list[float],
    baseline: int,
    fixed: bool,
    cuts: list[int],
    chunks: list[int],
) -> None:
    """Stop anywhere (mid-subgroup, mid-baseline, mid-episode), restore from the JSON of a
    snapshot, carry on: the events are exactly those of an engine that never stopped."""
    spec = CharacteristicSpec(
        id=1,
        subgroup_size=n,
        baseline=baseline,
        ucl=11.0 if fixed else None,
        lcl=9.0 if fixed else None,
        usl=10.5,
        rules=resolve_rules(as_config(rules)),
    )
    steady = CharacteristicEngine(spec)
    restarted = CharacteristicEngine(spec)
    expected: list[EngineEvent] = []
    got: list[EngineEvent] = []
    i = 0
    step = 0
    while i < len(readings):
        size = chunks[step % len(chunks)]
        step += 1
        part = readings[i : i + size]
        ts = T0 + timedelta(seconds=i)
        if size == 1:
            expected += steady.add_reading(part[0], ts)
            got += restarted.add_reading(part[0], ts)
        else:
            expected += steady.add_readings(part, ts)
            got += restarted.add_readings(part, ts)
        if any(i <= c < i + size for c in cuts):
            state: dict[str, Any] = json.loads(json.dumps(restarted.snapshot()))
            restarted = CharacteristicEngine(spec, state)
            assert restarted.partial == steady.partial
            assert restarted.limits == steady.limits
        i += size
    assert got == expected
    assert restarted.snapshot() == steady.snapshot()


def ref_limits_of(lim: ControlLimits, n: int) -> ref.RefLimits:
    if lim.method is Method.FIXED:
        up, down = (lim.ucl - lim.center_line) / 3, (lim.center_line - lim.lcl) / 3
    else:
        up = down = lim.sigma / math.sqrt(n)
    return ref.RefLimits(lim.center_line, lim.ucl, lim.lcl, up, down, lim.range.ucl, lim.range.lcl)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=sizes,
    rules=rule_sets(),
    readings=processes(),
    fixed=st.booleans(),
    recalcs=st.lists(st.tuples(st.integers(0, 60), st.integers(1, 15)), max_size=3),
)
def test_recalculation_reclassifies_the_history_and_keeps_episodes(
    n: int,
    rules: dict[int, int],
    readings: list[float],
    fixed: bool,
    recalcs: list[tuple[int, int]],
) -> None:
    """After a recalculation every rule looks back over the earlier points as the new limits
    see them, and alarm episodes carry on across it."""
    spec = CharacteristicSpec(
        id=1,
        subgroup_size=n,
        baseline=3,
        ucl=11.0 if fixed else None,
        lcl=9.0 if fixed else None,
        rules=resolve_rules(as_config(rules)),
    )
    engine = CharacteristicEngine(spec)
    when = dict(recalcs)
    samples: list[SampleProcessed] = []
    violations: list[ViolationRaised] = []
    in_force: list[ControlLimits | None] = []
    for start in range(0, len(readings) - n + 1, n):
        if len(samples) in when:
            groups = [s.values for s in samples[-when[len(samples)] :]]
            with contextlib.suppress(InsufficientData, ZeroDispersion):
                engine.recalculate(groups, T0)
        judged_with = engine.limits
        for event in engine.add_readings(readings[start : start + n], T0):
            if isinstance(event, SampleProcessed):
                samples.append(event)
                in_force.append(judged_with)
            elif isinstance(event, ViolationRaised):
                violations.append(event)
    xs = [s.value for s in samples]
    judged: list[tuple[int, list[int], bool]] = []
    for i, (sample, lim) in enumerate(zip(samples, in_force, strict=True)):
        if lim is None:
            assert sample.zone is None
            continue
        reflim = ref_limits_of(lim, n)
        failed = ref.failed_rules(xs, i, reflim, rules)
        r_failed = ref.range_fails(sample.range, reflim, rules)
        assert sample.zone == ref.zone(sample.value, reflim), i
        assert list(sample.failed_rules) == failed, i
        assert sample.range_failed_rules == ((1,) if r_failed else ())
        judged.append((i, failed, r_failed))
    raised = sorted((v.sample_seq - 1, v.chart.value, v.rule_id) for v in violations)
    assert raised == ref.episodes(judged)
