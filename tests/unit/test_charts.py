"""The chart families: the registry, the published worked examples, settings and bad input,
snapshots, and the streaming engine against the naive reference of reference_charts.py."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine import (
    FAMILIES,
    CharacteristicEngine,
    CharacteristicSpec,
    ControlLimitsUpdated,
    EngineEvent,
    IncompatibleState,
    InvalidChartSettings,
    InvalidCount,
    Method,
    ReadingKindMismatch,
    SampleProcessed,
    ViolationRaised,
    ZeroDispersion,
    analyze,
    analyze_counts,
    chart_family,
    compute_limits,
    default_chart,
    limits_from_dict,
    limits_payload,
    limits_to_dict,
    resolve_rules,
)

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
NELSON = resolve_rules("nelson")

# Montgomery, Introduction to Statistical Quality Control: the data as the R package qcc
# ships them (data/orangejuice.txt, circuit.txt, pcmanufact.txt, citing Montgomery), and
# Table 9.1 (30 individuals, mu0 = 10, sigma = 1) as the IMSL EWMA example quotes it.
ORANGE_JUICE = [12, 15, 8, 10, 4, 7, 16, 9, 14, 10, 5, 6, 17, 12, 22, 8, 10, 5, 13, 11]
ORANGE_JUICE += [20, 18, 24, 15, 9, 12, 7, 13, 9, 6]  # 30 samples of n = 50
CIRCUIT = [21, 24, 16, 12, 15, 5, 28, 20, 31, 25, 20, 24, 16, 19, 10, 17, 13, 22, 18, 39]
CIRCUIT += [30, 24, 16, 19, 17, 15]  # 26 samples of 100 boards
COMPUTERS = [10, 12, 8, 14, 10, 16, 11, 7, 10, 15, 9, 5, 7, 11, 12, 6, 8, 10, 7, 5]  # of 5
TABLE_9_1 = [9.45, 7.99, 9.29, 11.66, 12.16, 10.18, 8.04, 11.46, 9.20, 10.34, 9.03, 11.47]
TABLE_9_1 += [10.51, 9.40, 10.08, 9.37, 10.62, 10.31, 8.52, 10.84, 10.90, 9.33, 12.29]
TABLE_9_1 += [11.50, 10.60, 11.08, 10.38, 11.62, 11.31, 10.52]
# Montgomery's Table 9.2: C+ of periods 1..30 (two decimals), the signal at period 29.
TABLE_9_2_UPPER = [0.0, 0.0, 0.0, 1.16, 2.82, 2.50, 0.04, 1.00, 0.0, 0.0, 0.0, 0.97, 0.98]
TABLE_9_2_UPPER += [0.0, 0.0, 0.0, 0.12, 0.0, 0.0, 0.34, 0.74, 0.0, 1.79, 2.79, 2.89, 3.47]
TABLE_9_2_UPPER += [3.35, 4.47, 5.28, 5.30]


def samples(events: list[EngineEvent]) -> list[SampleProcessed]:
    return [e for e in events if isinstance(e, SampleProcessed)]


def alarms(events: list[EngineEvent]) -> list[int]:
    return [e.sample_seq for e in events if isinstance(e, ViolationRaised)]


# --- the registry --------------------------------------------------------------------------


def test_the_table_holds_every_family_and_the_size_split_is_one_function() -> None:
    assert list(FAMILIES) == ["imr", "xbar_r", "xbar_s", "p", "np", "c", "u", "ewma", "cusum"]
    assert [default_chart(n) for n in (1, 2, 10, 11, 25)] == [
        "imr", "xbar_r", "xbar_r", "xbar_s", "xbar_s",
    ]  # fmt: skip
    kinds = {name: f.kind for name, f in FAMILIES.items()}
    assert kinds["p"] == kinds["u"] == "attribute"
    assert (kinds["ewma"], kinds["cusum"], kinds["xbar_s"]) == ("ewma", "cusum", "variables")
    for name in ("p", "np", "c", "u", "ewma", "cusum"):
        assert [r.rule_id for r in FAMILIES[name].default_rules] == [1]
    assert [r.rule_id for r in FAMILIES["imr"].default_rules] == list(range(1, 9))


def test_an_explicit_variables_chart_overrides_the_size_default() -> None:
    groups = [[10.0 + ((i * 7 + j * 3) % 5) / 10 for j in range(5)] for i in range(25)]
    by_s = compute_limits(groups, 5, chart="xbar_s")
    assert by_s.method is Method.S_BAR_C4
    assert by_s.range is not None
    assert by_s.range.ucl > by_s.range.center_line
    engine = CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=5, chart="xbar_s"))
    events = [e for g in groups for e in engine.add_readings(g, T0)]
    assert events[-1] == ControlLimitsUpdated(1, by_s, T0)
    assert engine.chart == "xbar_s"
    with pytest.raises(InvalidChartSettings, match="subgroup size 1"):
        CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=5, chart="imr"))


# --- the published worked examples ---------------------------------------------------------


def test_p_chart_of_orange_juice_cans() -> None:
    """qcc prints CL 0.2313333, LCL 0.05242755, UCL 0.4102391 (Montgomery: 0.2313, 0.0524,
    0.4102) and samples 15 and 23 out of control."""
    result = analyze_counts(ORANGE_JUICE, [50] * 30, "p", baseline=30)
    lim = result.limits
    assert (lim.center_line, lim.lcl, lim.ucl) == pytest.approx(
        (0.2313333, 0.05242755, 0.4102391), abs=5e-8
    )
    assert [p.index + 1 for p in result.points if p.failed_rules] == [15, 23]
    assert lim.sigma == pytest.approx(0.05963526, abs=5e-9)  # qcc's "standard deviation"
    np_chart = analyze_counts(ORANGE_JUICE, [50] * 30, "np", baseline=30, inspected=50)
    assert np_chart.limits.center_line == pytest.approx(11.56667, abs=5e-6)  # qcc
    assert [p.index + 1 for p in np_chart.points if p.failed_rules] == [15, 23]


def test_c_chart_of_printed_circuit_boards() -> None:
    """qcc prints CL 19.84615, LCL 6.481447, UCL 33.21086 (Montgomery: 19.85, 6.48, 33.22);
    samples 6 and 20 lie outside."""
    result = analyze_counts(CIRCUIT, [None] * 26, "c", baseline=26)
    lim = result.limits
    assert (lim.center_line, lim.lcl, lim.ucl) == pytest.approx(
        (19.84615, 6.481447, 33.21086), abs=5e-6
    )
    assert lim.sigma == pytest.approx(4.454902, abs=5e-7)
    assert [p.index + 1 for p in result.points if p.failed_rules] == [6, 20]
    assert [p.zone for p in result.points if p.failed_rules] == ["beyond_lcl", "beyond_ucl"]


def test_u_chart_of_personal_computers() -> None:
    """qcc prints CL 1.93, LCL 0.06613305, UCL 3.793867 (Montgomery: 1.93, 0.07, 3.79); the
    process is in control."""
    result = analyze_counts(COMPUTERS, [5] * 20, "u", baseline=20)
    lim = result.limits
    assert (lim.center_line, lim.lcl, lim.ucl) == pytest.approx(
        (1.93, 0.06613305, 3.793867), abs=5e-7
    )
    assert not any(p.failed_rules for p in result.points)
    assert result.points[0].statistic == 2.0


def known(chart: str, **settings: Any) -> CharacteristicEngine:
    """mu0 = 10, sigma = 1 as fixed limits (CL 10, +/- 3 sigma)."""
    return CharacteristicEngine(
        CharacteristicSpec(id=1, chart=chart, ucl=13.0, lcl=7.0, **settings)
    )


def test_tabular_cusum_of_table_9_1() -> None:
    """Montgomery's Table 9.2 (k = 0.5, h = 5): every C+ to two decimals, the signal at
    period 29, and C- never reaching 5."""
    engine = known("cusum")
    events = [e for x in TABLE_9_1 for e in engine.add_reading(x, T0)]
    points = samples(events)
    assert [round(p.cusum_upper or 0.0, 2) for p in points] == TABLE_9_2_UPPER
    assert alarms(events) == [29]  # one alarm for the episode of periods 29 and 30
    assert [p.seq for p in points if p.failed_rules] == [29, 30]
    assert max(p.cusum_lower or 0.0 for p in points) < 5
    assert points[3].cusum_lower == 0.0
    assert points[1].cusum_lower == pytest.approx(0.05 + 1.51)
    assert {(p.ucl, p.lcl) for p in points} == {(5.0, 0.0)}
    assert all(p.statistic == max(p.cusum_upper or 0, p.cusum_lower or 0) for p in points)


def test_ewma_of_table_9_1() -> None:
    """lambda = 0.1, L = 2.7: z_1 = 9.945, z_2 = 9.7495, UCL_1 = 10.27, LCL_1 = 9.73, the
    limits approach 10 +/- 0.6194; the first z beyond them is at period 29."""
    engine = known("ewma", ewma_lambda=0.1, ewma_l=2.7)
    events = [e for x in TABLE_9_1 for e in engine.add_reading(x, T0)]
    points = samples(events)
    assert [round(p.statistic or 0, 4) for p in points[:2]] == [9.945, 9.7495]
    assert (round(points[0].ucl or 0, 4), round(points[0].lcl or 0, 4)) == (10.27, 9.73)
    assert engine.limits is not None
    assert (engine.limits.ucl, engine.limits.lcl) == pytest.approx((10.6194, 9.3806), abs=5e-5)
    assert [(p.ucl or 0) for p in points] == sorted(p.ucl or 0 for p in points)  # widening
    assert alarms(events) == [29]
    assert round(points[28].statistic or 0, 4) == 10.6468


# --- settings and bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"chart": "ewma", "ewma_lambda": 0.0}, "ewma_lambda"),
        ({"chart": "ewma", "ewma_lambda": 1.5}, "ewma_lambda"),
        ({"chart": "ewma", "ewma_l": -1.0}, "ewma_l"),
        ({"chart": "cusum", "cusum_k": 0.0}, "cusum_k"),
        ({"chart": "cusum", "cusum_h": math.inf}, "cusum_h"),
        ({"chart": "np"}, "inspected"),
        ({"chart": "np", "inspected": 0}, "inspected"),
        ({"chart": "p", "inspected": 50}, "inspected"),
        ({"chart": "pp"}, "chart"),
        ({"chart": "u", "subgroup_size": 5}, "subgroup_size"),
        ({"chart": "c", "ucl": 9.0, "lcl": 1.0}, "ucl"),
        ({"chart": "ewma", "rules": resolve_rules("nelson")}, "rules"),
    ],
)
def test_bad_settings_name_the_key(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(InvalidChartSettings) as caught:
        CharacteristicEngine(CharacteristicSpec(id=1, **settings))
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key} = ")


def test_lambda_of_one_is_a_shewhart_chart_of_the_means() -> None:
    engine = known("ewma", ewma_lambda=1.0)
    points = samples([e for x in TABLE_9_1 for e in engine.add_reading(x, T0)])
    assert [p.statistic for p in points] == TABLE_9_1
    assert {round(p.ucl or 0, 12) for p in points} == {13.0}


@pytest.mark.parametrize(
    ("chart", "count", "size", "field"),
    [
        ("p", -1, 50, "defectives"),
        ("p", 2.5, 50, "defectives"),
        ("p", 51, 50, "defectives"),
        ("p", 3, 0, "inspected"),
        ("p", 3, None, "inspected"),
        ("p", "3", 50, "defectives"),
        ("p", True, 50, "defectives"),
        ("np", 3, 49, "inspected"),
        ("c", math.nan, None, "defects"),
        ("c", 3, 2.0, "units"),
        ("u", 3, 0.0, "units"),
        ("u", 3, -2.0, "units"),
        ("u", 3, math.inf, "units"),
    ],
)
def test_bad_counts_are_refused_and_change_nothing(
    chart: str, count: Any, size: Any, field: str
) -> None:
    engine = CharacteristicEngine(
        CharacteristicSpec(id=1, chart=chart, inspected=50 if chart == "np" else None)
    )
    before = engine.snapshot()
    with pytest.raises(InvalidCount) as caught:
        engine.add_count(count, size, T0)
    assert caught.value.name == field
    assert engine.snapshot() == before


def test_counts_given_as_floats_are_integers_and_units_may_be_fractional() -> None:
    engine = CharacteristicEngine(CharacteristicSpec(id=1, chart="p", baseline=2))
    (first,) = engine.add_count(3.0, 50.0, T0)
    assert isinstance(first, SampleProcessed)
    assert (first.value, first.statistic, first.size, first.ucl, first.zone) == (
        3.0, 0.06, 50.0, None, None,
    )  # fmt: skip
    u = CharacteristicEngine(CharacteristicSpec(id=2, chart="u", baseline=2))
    (point,) = u.add_count(19, 9.5, T0)
    assert isinstance(point, SampleProcessed)
    assert point.statistic == 2.0


def test_readings_of_the_wrong_kind_are_refused() -> None:
    attribute = CharacteristicEngine(CharacteristicSpec(id=1, chart="c"))
    with pytest.raises(ReadingKindMismatch, match="counts"):
        attribute.add_reading(3.0, T0)
    with pytest.raises(ReadingKindMismatch):
        attribute.add_readings([3.0], T0)
    for chart in ("imr", "ewma", "cusum"):
        with pytest.raises(ReadingKindMismatch, match="measured values"):
            CharacteristicEngine(CharacteristicSpec(id=1, chart=chart)).add_count(3, None, T0)


# --- limits, baseline, recalculation, snapshots --------------------------------------------


def test_attribute_baseline_samples_carry_their_statistic_and_limits_follow() -> None:
    engine = CharacteristicEngine(CharacteristicSpec(id=1, chart="p", baseline=3))
    events = [
        e for d, n in ((2, 40), (4, 60), (3, 50), (9, 20)) for e in engine.add_count(d, n, T0)
    ]
    points = samples(events)
    assert [p.statistic for p in points] == [0.05, 4 / 60, 0.06, 0.45]
    assert [(p.ucl, p.lcl, p.zone) for p in points[:3]] == [(None, None, None)] * 3
    limits = next(e.limits for e in events if isinstance(e, ControlLimitsUpdated))
    assert limits.center_line == 9 / 150
    assert limits.parameter("inspected") == 50.0  # the average n: control_limits are there
    last = points[3]
    sigma = math.sqrt(0.06 * 0.94 / 20)
    assert last.ucl == 0.06 + 3 * sigma
    assert last.lcl == 0.0
    assert last.failed_rules == (1,)
    assert alarms(events) == [4]
    payload = limits_payload(limits, 1, "2026-11-28T06:00:00.000Z")
    assert (payload["chart"], payload["method"], payload["range"]) == ("p", "p_bar", None)
    assert payload["ucl"] == float(f"{limits.ucl:.10g}")  # payloads carry 10 digits
    # the engine's snapshot keeps them exact
    assert limits_from_dict(json.loads(json.dumps(limits_to_dict(limits)))) == limits


def test_a_p_chart_upper_limit_is_capped_at_one() -> None:
    engine = CharacteristicEngine(CharacteristicSpec(id=1, chart="p", baseline=2))
    events = [e for d, n in ((1, 2), (1, 2), (2, 2)) for e in engine.add_count(d, n, T0)]
    last = samples(events)[-1]
    # the zones stay at CL + 1, 2 sigma_i unclamped: 0.5 + 2 * 0.354 is above the cap
    assert last.ucl == 1.0
    assert last.statistic == 1.0
    assert last.zone == "zone_b_upper"


def test_a_baseline_without_defects_slides_on() -> None:
    engine = CharacteristicEngine(CharacteristicSpec(id=1, chart="c", baseline=3))
    events = [e for c in (0, 0, 0, 0, 2, 1) for e in engine.add_count(c, None, T0)]
    limits = [e.limits for e in events if isinstance(e, ControlLimitsUpdated)]
    assert [lim.center_line for lim in limits] == [2 / 3]  # from (0, 0, 2)
    with pytest.raises(ZeroDispersion):
        engine.recalculate([(0,), (0,)], T0)


def test_ewma_and_cusum_baselines_are_not_judged_and_recalculation_restarts() -> None:
    for chart in ("ewma", "cusum"):
        engine = CharacteristicEngine(CharacteristicSpec(id=1, chart=chart, baseline=20))
        events = [e for x in TABLE_9_1 for e in engine.add_reading(x, T0)]
        points = samples(events)
        assert all(p.statistic is None and p.zone is None for p in points[:20])
        assert all(p.statistic is not None and p.zone is not None for p in points[20:])
        updated = [e for e in events if isinstance(e, ControlLimitsUpdated)]
        assert len(updated) == 1
        assert events.index(updated[0]) == events.index(points[19]) + 1
        base = compute_limits([[x] for x in TABLE_9_1[:20]], 1)
        assert (updated[0].limits.center_line, updated[0].limits.sigma) == (
            base.center_line, base.sigma,
        )  # fmt: skip
        engine.recalculate([[x] for x in TABLE_9_1], T0)
        (after,) = samples(engine.add_reading(10.0, T0))
        if chart == "cusum":
            assert after.cusum_upper == 0.0
            assert after.cusum_lower == 0.0
        else:
            assert engine.limits is not None
            lam = 0.2
            assert after.statistic == lam * 10.0 + (1 - lam) * engine.limits.center_line


def test_ewma_control_limits_are_the_asymptotic_ones_and_cusum_the_interval() -> None:
    groups = [[10.0 + ((i * 7 + j * 3) % 5) / 10 for j in range(4)] for i in range(25)]
    base = compute_limits(groups, 4)
    sx = base.sigma / 2
    ewma = CharacteristicEngine(CharacteristicSpec(id=1, chart="ewma", subgroup_size=4))
    cusum = CharacteristicEngine(CharacteristicSpec(id=2, chart="cusum", subgroup_size=4))
    for g in groups:
        ewma.add_readings(g, T0)
        cusum.add_readings(g, T0)
    assert ewma.limits is not None
    assert cusum.limits is not None
    assert ewma.limits.ucl == base.center_line + 3.0 * sx * math.sqrt(0.2 / 1.8)
    assert (cusum.limits.ucl, cusum.limits.lcl) == (5.0 * sx, 0.0)
    assert (ewma.limits.method, ewma.limits.range, ewma.limits.chart) == (
        Method.R_BAR_D2, None, "ewma",
    )  # fmt: skip
    assert dict(cusum.limits.parameters) == {"k": 0.5, "h": 5.0}


def run(engine: CharacteristicEngine, inputs: list[Any], start: int = 0) -> list[EngineEvent]:
    out: list[EngineEvent] = []
    for i, item in enumerate(inputs, start):
        ts = T0 + timedelta(minutes=i)
        if isinstance(item, tuple):
            out += engine.add_count(item[0], item[1], ts)
        else:
            out += engine.add_reading(item, ts)
    return out


@pytest.mark.parametrize(
    ("settings", "inputs"),
    [
        ({"chart": "p", "baseline": 5}, [(d, 40 + d) for d in (3, 1, 4, 1, 5, 9, 2, 6, 15, 14)]),
        ({"chart": "np", "inspected": 30, "baseline": 4}, [(d, None) for d in (3, 1, 4, 9, 16)]),
        ({"chart": "u", "baseline": 4, "rules": NELSON}, [(c, 2.5) for c in (3, 1, 4, 1, 5, 9, 6)]),
        ({"chart": "ewma", "baseline": 10}, [*TABLE_9_1, 13.5, 13.5, 9.0, 8.0]),
        ({"chart": "cusum", "baseline": 10, "subgroup_size": 3}, [*TABLE_9_1, *[12.0] * 9]),
    ],
)  # fmt: skip
def test_a_restart_anywhere_changes_nothing(settings: dict[str, Any], inputs: list[Any]) -> None:
    spec = CharacteristicSpec(id=1, **settings)
    whole = run(CharacteristicEngine(spec), inputs)
    assert any(isinstance(e, ViolationRaised) for e in whole)  # episodes are crossed too
    for cut in range(len(inputs) + 1):
        first = CharacteristicEngine(spec)
        head = run(first, inputs[:cut])
        state = json.loads(json.dumps(first.snapshot()))
        tail = run(CharacteristicEngine(spec, state=state), inputs[cut:], cut)
        assert head + tail == whole, cut


def test_snapshots_of_the_earlier_release_still_restore() -> None:
    """A version-1 snapshot (no ``chart``) of an X-bar-R characteristic, as today's release
    writes it, restores into the same chart and refuses to become another."""
    spec = CharacteristicSpec(id=1, subgroup_size=2)
    engine = CharacteristicEngine(spec)
    for i in range(30):
        engine.add_readings([10.0 + (i % 3) / 10, 10.1 - (i % 2) / 10], T0)
    state = engine.snapshot()
    del state["chart"]
    state["version"] = 1
    restored = CharacteristicEngine(spec, state=state)
    assert restored.limits == engine.limits
    assert restored.chart == "xbar_r"
    assert restored.add_readings([10.0, 10.3], T0) == engine.add_readings([10.0, 10.3], T0)
    with pytest.raises(IncompatibleState, match="xbar_r chart"):
        CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=2, chart="ewma"), state=state)
    with pytest.raises(IncompatibleState, match="cusum"):
        CharacteristicEngine(spec, state={**engine.snapshot(), "chart": "cusum"})


def test_edited_ewma_parameters_keep_cl_and_sigma_and_announce_new_limits() -> None:
    engine = CharacteristicEngine(CharacteristicSpec(id=1, chart="ewma", baseline=10))
    run(engine, TABLE_9_1[:15])
    state = engine.snapshot()
    edited = CharacteristicEngine(
        CharacteristicSpec(id=1, chart="ewma", baseline=10, ewma_l=2.7), state=state
    )
    assert engine.limits is not None
    assert edited.limits is not None
    assert edited.limits.center_line == engine.limits.center_line
    assert edited.limits.parameter("L") == 2.7
    events = edited.add_reading(10.0, T0)
    assert isinstance(events[0], ControlLimitsUpdated)
    assert events[0].limits == edited.limits


def test_analyze_of_ewma_leaves_the_baseline_unjudged() -> None:
    result = analyze(TABLE_9_1, 1, baseline=20, chart="ewma", ewma_lambda=0.1, ewma_l=2.7)
    assert [p.statistic is None for p in result.points] == [True] * 20 + [False] * 10
    assert result.limits.chart == "ewma"
    assert chart_family("ewma").kind == "ewma"


def test_a_cusum_sum_exactly_on_the_interval_is_no_signal() -> None:
    """'Exceeds h sigma': C+ = 5.0 exactly passes; a hair above fails."""
    engine = known("cusum")
    points = samples([e for x in (15.5, 10.5, 10.5001) for e in engine.add_reading(x, T0)])
    assert [p.cusum_upper for p in points[:2]] == [5.0, 5.0]
    assert [p.failed_rules for p in points] == [(), (), (1,)]
    assert [p.zone for p in points] == ["zone_a_upper", "zone_a_upper", "beyond_ucl"]


@pytest.mark.parametrize(
    ("chart", "count", "size"),
    [("p", 0, 0), ("p", 0, 0.0), ("np", 1, True), ("u", 1, 0), ("c", False, None)],
)
def test_edge_counts_on_the_fast_path_are_refused_too(chart: str, count: Any, size: Any) -> None:
    inspected = 1 if chart == "np" else None
    engine = CharacteristicEngine(CharacteristicSpec(id=1, chart=chart, inspected=inspected))
    with pytest.raises(InvalidCount):
        engine.add_count(count, size, T0)


def test_a_family_engine_stays_small() -> None:
    """Like the Shewhart engine (8 KB each, test_engine.py): 300 engines of each family,
    in and after their baseline."""
    import tracemalloc

    inputs: dict[str, Any] = {
        "p": lambda i, j: engine_count(i, j, 50),
        "u": lambda i, j: engine_count(i, j, 4.5),
        "ewma": None,
        "cusum": None,
    }
    for chart, count in inputs.items():
        for taken in (24, 40):
            tracemalloc.start()
            engines = []
            for i in range(300):
                eng = CharacteristicEngine(CharacteristicSpec(id=i, chart=chart))
                for j in range(taken):
                    if count is None:
                        eng.add_reading(10.0 + ((i + j) % 7) / 100, T0)
                    else:
                        c, size = count(i, j)
                        eng.add_count(c, size, T0)
                engines.append(eng)
            used, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert used / len(engines) < 8_000, (chart, taken)


def engine_count(i: int, j: int, size: float) -> tuple[int, float]:
    return (i + j) % 5 + 1, size


def test_every_fault_of_a_spec_is_named_once() -> None:
    from engine import chart_faults

    ewma = CharacteristicSpec(id=1, chart="ewma", ewma_lambda=2.0, ewma_l=0.0, rules=NELSON)
    assert [f.key for f in chart_faults(ewma)] == ["ewma_lambda", "ewma_l", "rules"]
    np_chart = CharacteristicSpec(id=1, chart="np", subgroup_size=5, ucl=3.0, lcl=1.0)
    assert [f.key for f in chart_faults(np_chart)] == ["inspected", "subgroup_size", "ucl"]
    assert [f.key for f in chart_faults(CharacteristicSpec(id=1, chart="x"))] == ["chart"]
    assert chart_faults(CharacteristicSpec(id=1, chart="cusum", subgroup_size=25)) == []
