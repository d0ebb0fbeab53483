"""The chart families' streaming engines agree with the naive reference on random input."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import (
    CharacteristicEngine,
    CharacteristicSpec,
    ControlLimitsUpdated,
    EngineEvent,
    SampleProcessed,
    ViolationRaised,
    analyze_counts,
    resolve_rules,
)
from tests.unit import reference_charts as ref

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
LENGTHS = {1: (1, 1), 2: (2, 9), 3: (3, 7), 4: (3, 8), 5: (1, 3), 6: (1, 4), 7: (2, 9), 8: (2, 8)}


@st.composite
def rule_sets(draw: st.DrawFn) -> dict[int, int]:
    chosen = draw(st.sets(st.integers(1, 8), min_size=1))
    return {r: draw(st.integers(*LENGTHS[r])) for r in chosen}


@st.composite
def attribute_series(draw: st.DrawFn) -> tuple[str, list[tuple[int, float]], int | None]:
    chart = draw(st.sampled_from(["p", "np", "c", "u"]))
    length = draw(st.integers(3, 60))
    if chart == "np":
        n = draw(st.integers(1, 80))
        return chart, [(draw(st.integers(0, n)), float(n)) for _ in range(length)], n
    if chart == "p":
        out = []
        for _ in range(length):
            n = draw(st.integers(1, 200))
            out.append((draw(st.integers(0, n)), float(n)))
        return chart, out, None
    if chart == "c":
        return chart, [(draw(st.integers(0, 40)), 1.0) for _ in range(length)], None
    units = st.floats(0.25, 20.0, allow_nan=False).map(lambda u: round(u, 2))
    return chart, [(draw(st.integers(0, 60)), draw(units)) for _ in range(length)], None


def feed_counts(
    engine: CharacteristicEngine, data: list[tuple[int, float]], chart: str
) -> list[EngineEvent]:
    out: list[EngineEvent] = []
    for i, (c, n) in enumerate(data):
        size: float | int | None = None if chart == "c" else n
        if chart in ("p", "np"):
            size = int(n)  # as JSON gives it (the fast path); analyze_counts below gets floats
        out += engine.add_count(c, size, T0 + timedelta(minutes=i))
    return out


@settings(max_examples=300, deadline=None)
@given(attribute_series(), st.integers(1, 25), rule_sets())
def test_attribute_charts_equal_the_reference(
    series: tuple[str, list[tuple[int, float]], int | None], baseline: int, rules: dict[int, int]
) -> None:
    chart, data, inspected = series
    baseline = min(baseline, len(data))
    config = resolve_rules([{"id": r, "length": k} for r, k in rules.items()])
    spec = CharacteristicSpec(
        id=1, chart=chart, baseline=baseline, rules=config, inspected=inspected
    )
    events = feed_counts(CharacteristicEngine(spec), data, chart)
    updates = [e for e in events if isinstance(e, ControlLimitsUpdated)]
    base = data[:baseline]
    if sum(c for c, _ in base) == 0 or (chart in ("p", "np") and all(c == n for c, n in base)):
        return  # no dispersion: the baseline slides on (checked in test_charts.py)
    cl, expected = ref.attribute(chart, data, baseline, rules, inspected)
    assert updates[0].limits.center_line == cl
    got = [e for e in events if isinstance(e, SampleProcessed)]
    assert [p.statistic for p in got] == [p.statistic for p in expected]
    judged = got[baseline:]
    want = expected[baseline:]
    assert [(p.ucl, p.lcl, p.zone) for p in judged] == [(p.ucl, p.lcl, p.zone) for p in want]
    assert [p.failed_rules for p in judged] == [p.failed for p in want]
    raised = [
        (e.sample_seq - baseline - 1, e.rule_id) for e in events if isinstance(e, ViolationRaised)
    ]
    assert raised == ref.episodes([p.failed for p in want])
    # Phase I over the same data judges every point; after the baseline it equals the stream
    phase1 = analyze_counts(
        [c for c, _ in data],
        [None if chart == "c" else n for _, n in data],
        chart,
        baseline=baseline,
        rules=[{"id": r, "length": k} for r, k in rules.items()],
        inspected=inspected,
    )
    first = [(p.statistic, p.ucl, p.lcl, p.zone, p.failed_rules) for p in phase1.points]
    assert first[baseline:] == [(p.statistic, p.ucl, p.lcl, p.zone, p.failed_rules) for p in judged]
    assert [p.failed_rules for p in phase1.points] == [p.failed for p in expected]


@st.composite
def shifted(draw: st.DrawFn) -> tuple[int, list[float]]:
    n = draw(st.integers(1, 5))
    length = draw(st.integers(1, 60)) * n
    shift_at = draw(st.integers(0, length))
    shift = draw(st.sampled_from([0.0, 0.5, 1.0, -1.5, 3.0]))
    values = draw(st.lists(st.floats(-2.5, 2.5, allow_nan=False), min_size=length, max_size=length))
    return n, [round(10.0 + v + (shift if i >= shift_at else 0.0), 3) for i, v in enumerate(values)]


@settings(max_examples=300, deadline=None)
@given(
    shifted(),
    st.sampled_from(["ewma", "cusum"]),
    st.floats(0.05, 1.0),
    st.floats(0.5, 4.0),
    st.floats(0.1, 1.5),
    st.floats(1.0, 8.0),
    st.floats(0.2, 3.0),
)
def test_ewma_and_cusum_equal_the_reference(
    series: tuple[int, list[float]],
    chart: str,
    lam: float,
    big_l: float,
    k: float,
    h: float,
    sigma: float,
) -> None:
    """Known mu0 and sigma as fixed limits: CL 10, sigma = (ucl - lcl) / 6 * sqrt(n)."""
    n, readings = series
    half = 3.0 * sigma / math.sqrt(n)
    spec = CharacteristicSpec(
        id=1, chart=chart, subgroup_size=n, ucl=10.0 + half, lcl=10.0 - half,
        ewma_lambda=lam, ewma_l=big_l, cusum_k=k, cusum_h=h,
    )  # fmt: skip
    engine = CharacteristicEngine(spec)
    events: list[EngineEvent] = []
    for i in range(0, len(readings), n):
        events += engine.add_readings(readings[i : i + n], T0)
    got = [e for e in events if isinstance(e, SampleProcessed)]
    means = [math.fsum(readings[i : i + n]) / n for i in range(0, len(readings), n)]
    sx = ((10.0 + half) - (10.0 - half)) / 6.0 * math.sqrt(n) / math.sqrt(n)
    if chart == "ewma":
        want = ref.ewma(means, 10.0, sx, lam, big_l)
    else:
        want = ref.cusum(means, 10.0, sx, k, h)
    assert [p.value for p in got] == means
    assert [(p.statistic, p.ucl, p.lcl, p.zone) for p in got] == [
        (p.statistic, p.ucl, p.lcl, p.zone) for p in want
    ]
    assert [p.failed_rules for p in got] == [p.failed for p in want]
    if chart == "cusum":
        assert [(p.cusum_upper, p.cusum_lower) for p in got] == [(p.upper, p.lower) for p in want]
    raised = [(e.sample_seq - 1, e.rule_id) for e in events if isinstance(e, ViolationRaised)]
    assert raised == ref.episodes([p.failed for p in want])


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["p", "u", "ewma", "cusum"]),
    st.lists(st.integers(0, 30), min_size=2, max_size=50),
    st.integers(2, 12),
    st.data(),
)
def test_a_restart_anywhere_changes_nothing(
    chart: str, counts: list[int], baseline: int, data: Any
) -> None:
    cut = data.draw(st.integers(0, len(counts)))
    spec = CharacteristicSpec(id=1, chart=chart, baseline=baseline)

    def run(engine: CharacteristicEngine, part: list[int], start: int) -> list[EngineEvent]:
        out: list[EngineEvent] = []
        for i, c in enumerate(part, start):
            ts = T0 + timedelta(minutes=i)
            if chart in ("p", "u"):
                out += engine.add_count(c, 30 + i % 7, ts)
            else:
                out += engine.add_reading(float(c), ts)
        return out

    whole = run(CharacteristicEngine(spec), counts, 0)
    first = CharacteristicEngine(spec)
    head = run(first, counts[:cut], 0)
    state = json.loads(json.dumps(first.snapshot()))
    assert head + run(CharacteristicEngine(spec, state=state), counts[cut:], cut) == whole


def test_long_runs_equal_the_reference_after_the_limits_settle() -> None:
    """(1 - lambda)^(2i) underflows to 0 after about 1,700 points at lambda 0.2: the engine
    then stops recomputing the limits; they must still equal the formula's to the bit."""
    readings = [10.0 + ((i * 7919) % 1000 - 500) / 400 for i in range(4000)]
    for chart in ("ewma", "cusum"):
        spec = CharacteristicSpec(id=1, chart=chart, ucl=13.0, lcl=7.0)
        engine = CharacteristicEngine(spec)
        events = [e for x in readings for e in engine.add_reading(x, T0)]
        got = [e for e in events if isinstance(e, SampleProcessed)]
        want = (
            ref.ewma(readings, 10.0, 1.0, 0.2, 3.0)
            if chart == "ewma"
            else ref.cusum(readings, 10.0, 1.0, 0.5, 5.0)
        )
        assert [(p.statistic, p.ucl, p.lcl, p.zone) for p in got] == [
            (p.statistic, p.ucl, p.lcl, p.zone) for p in want
        ]
        assert [p.failed_rules for p in got] == [p.failed for p in want]
