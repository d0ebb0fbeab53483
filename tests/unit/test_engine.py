"""The streaming engine: baseline, fixed limits, recalculation, episodes, state, capability."""

from __future__ import annotations

import json
import math
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine import (
    Capability,
    CharacteristicEngine,
    CharacteristicSpec,
    ControlLimitsUpdated,
    EngineEvent,
    IncompatibleState,
    InsufficientData,
    Method,
    SampleProcessed,
    SecondaryLimits,
    ViolationRaised,
    ZeroDispersion,
    compute_limits,
    factors,
    figure,
    fixed_limits,
    iso_z,
    limits_payload,
    limits_to_dict,
    plotted_value,
    resolve_rules,
)

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def samples_of(events: list[EngineEvent]) -> list[SampleProcessed]:
    return [e for e in events if isinstance(e, SampleProcessed)]


def kinds(events: list[EngineEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


# --- limits by hand --------------------------------------------------------------------------


def test_individuals_limits_and_capability_by_hand() -> None:
    limits = compute_limits([[1.0], [3.0], [2.0], [4.0], [3.0]], 1, usl=8.0, lsl=-2.0)
    sigma = 1.5 / 1.128  # MR-bar = (2 + 1 + 2 + 1) / 4
    assert limits.method is Method.MOVING_RANGE
    assert limits.center_line == pytest.approx(2.6)
    assert limits.sigma == pytest.approx(sigma)
    assert (limits.ucl, limits.lcl) == pytest.approx((2.6 + 3 * sigma, 2.6 - 3 * sigma))
    assert limits.range == SecondaryLimits(center_line=1.5, ucl=3.267 * 1.5, lcl=0.0)
    assert limits.sample_count == 5
    overall = math.sqrt(5.2 / 4)  # sample standard deviation of 1, 3, 2, 4, 3
    assert limits.capability == Capability(
        cp=pytest.approx(10 / (6 * sigma)),
        cpk=pytest.approx(4.6 / (3 * sigma)),  # nearer the LSL: 2.6 - (-2)
        pp=pytest.approx(10 / (6 * overall)),
        ppk=pytest.approx(4.6 / (3 * overall)),
    )
    assert limits.capability.cp == pytest.approx(1.253333, abs=1e-6)
    assert limits.capability.ppk == pytest.approx(1.344822, abs=1e-6)


def test_one_sided_capability_has_no_cp_or_pp() -> None:
    limits = compute_limits([[1.0], [3.0], [2.0], [4.0], [3.0]], 1, usl=8.0)
    assert limits.capability is not None
    assert limits.capability.cp is None
    assert limits.capability.pp is None
    assert limits.capability.cpk == pytest.approx(5.4 / (3 * 1.5 / 1.128))
    assert compute_limits([[1.0], [3.0]], 1).capability is None


def test_xbar_r_limits_by_hand() -> None:
    limits = compute_limits([[1.0, 3.0], [2.0, 2.0], [4.0, 6.0]], 2)
    r_bar = 4 / 3
    f = factors(2)
    assert limits.method is Method.R_BAR_D2
    assert limits.center_line == 3.0
    assert limits.sigma == pytest.approx(r_bar / 1.128)
    assert limits.ucl == pytest.approx(3.0 + f.A2 * r_bar)
    assert limits.ucl == pytest.approx(3.0 + 1.880 * r_bar, abs=1e-3)
    assert limits.range.ucl == pytest.approx((1 + 3 * 0.853 / 1.128) * r_bar)  # D4(2) from d2, d3
    assert limits.range.lcl == 0.0


def test_xbar_s_limits_by_hand() -> None:
    groups = [[float(i + j) for j in range(11)] for i in range(3)]  # each S = sqrt(11)
    limits = compute_limits(groups, 11)
    s = math.sqrt(11.0)
    f = factors(11)
    assert limits.method is Method.S_BAR_C4
    assert limits.center_line == 6.0
    assert limits.sigma == pytest.approx(s / f.c4)
    assert limits.ucl == pytest.approx(6.0 + f.A3 * s)
    assert limits.range == SecondaryLimits(
        center_line=pytest.approx(s), ucl=pytest.approx(f.B4 * s), lcl=pytest.approx(f.B3 * s)
    )


def test_fixed_limits_derive_sigma_and_the_secondary_chart() -> None:
    spec = CharacteristicSpec(id=1, subgroup_size=5, ucl=10.03, lcl=9.97, usl=10.05, lsl=9.95)
    limits = fixed_limits(spec)
    sigma = 0.06 / 6 * math.sqrt(5)
    assert limits.method is Method.FIXED
    assert limits.center_line == pytest.approx(10.0)
    assert limits.sigma == pytest.approx(sigma)
    assert limits.range.center_line == pytest.approx(2.326 * sigma)
    assert limits.range.ucl == pytest.approx(factors(5).D4 * 2.326 * sigma)
    assert limits.capability == Capability(
        cp=pytest.approx(0.1 / (6 * sigma)),
        cpk=pytest.approx(0.05 / (3 * sigma)),
        pp=None,
        ppk=None,
    )
    individuals = fixed_limits(CharacteristicSpec(id=1, ucl=3.0, lcl=-3.0))
    assert individuals.range == SecondaryLimits(1.128, 3.267 * 1.128, 0.0)


@pytest.mark.parametrize(
    ("subgroups", "n", "needed", "got"),
    [([[1.0]], 1, 2, 1), ([], 5, 1, 0), ([], 1, 2, 0)],
)
def test_too_few_subgroups(subgroups: list[list[float]], n: int, needed: int, got: int) -> None:
    with pytest.raises(InsufficientData) as info:
        compute_limits(subgroups, n)
    assert (info.value.needed, info.value.got) == (needed, got)
    assert isinstance(info.value, ValueError)


def test_zero_dispersion_and_bad_input_are_refused() -> None:
    with pytest.raises(ZeroDispersion, match="no variation"):
        compute_limits([[2.0, 2.0]] * 3, 2)
    with pytest.raises(ValueError, match="subgroup 1 has 1 readings, expected 2"):
        compute_limits([[1.0, 2.0], [1.0]], 2)
    with pytest.raises(ValueError, match=r"subgroup size must be 1\.\.25"):
        compute_limits([[1.0]] * 3, 26)
    with pytest.raises(ValueError, match="lcl < center_line < ucl"):
        fixed_limits(CharacteristicSpec(id=4, ucl=1.0, lcl=2.0))


# --- the stream --------------------------------------------------------------------------


def test_baseline_points_are_unjudged_and_the_limits_follow_the_last_one() -> None:
    spec = CharacteristicSpec(id=7, baseline=3, rules=resolve_rules([{"id": 3, "length": 3}]))
    engine = CharacteristicEngine(spec)
    assert engine.add_reading(1.0, at(0))[0] == SampleProcessed(
        7, 1, at(0), 1.0, (1.0,), None, None, None, (), ()
    )
    assert samples_of(engine.add_reading(2.0, at(1)))[0].range == 1.0
    events = engine.add_reading(3.0, at(2))
    assert kinds(events) == ["SampleProcessed", "ControlLimitsUpdated"]
    assert events[0].zone is None  # type: ignore[union-attr]  # a SampleProcessed
    update = events[1]
    assert isinstance(update, ControlLimitsUpdated)
    assert update.timestamp == at(2)
    assert update.limits.center_line == 2.0
    assert engine.limits == update.limits
    # the first judged point looks back over the baseline: 1, 2, 3, 4 is a trend of three
    events = engine.add_reading(4.0, at(3))
    assert samples_of(events)[0].failed_rules == (3,)
    assert samples_of(events)[0].zone is not None
    assert [(e.rule_id, e.sample_seq) for e in events if isinstance(e, ViolationRaised)] == [(3, 4)]


def test_fixed_limits_are_announced_before_the_first_sample() -> None:
    spec = CharacteristicSpec(id=2, subgroup_size=2, ucl=3.0, lcl=-3.0)
    engine = CharacteristicEngine(spec)
    assert engine.limits is not None
    first = engine.add_reading(0.5, at(0))
    assert kinds(first) == ["ControlLimitsUpdated"]
    second = engine.add_reading(0.7, at(1))
    assert kinds(second) == ["SampleProcessed"]
    assert samples_of(second)[0].in_control is True
    assert samples_of(second)[0].timestamp == at(1)  # the subgroup's last reading


def test_partial_subgroups_and_mixed_arrival() -> None:
    engine = CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=3, ucl=3.0, lcl=-3.0))
    engine.add_readings([0.1, 0.2], at(0))
    assert engine.partial == (0.1, 0.2)
    events = engine.add_readings([0.3, 0.4, 0.5, 0.6, 0.7], at(1))
    assert [s.values for s in samples_of(events)] == [(0.1, 0.2, 0.3), (0.4, 0.5, 0.6)]
    assert engine.partial == (0.7,)
    assert engine.seq == 2


def test_no_variation_in_the_baseline_slides_it_on() -> None:
    engine = CharacteristicEngine(CharacteristicSpec(id=1, baseline=3))
    events = [e for v in (5.0, 5.0, 5.0, 5.0, 6.0, 5.0) for e in engine.add_reading(v, at(0))]
    assert kinds(events).index("ControlLimitsUpdated") == 5  # after the fifth sample
    assert engine.limits is not None
    assert engine.limits.sample_count == 3
    assert engine.limits.center_line == pytest.approx(16 / 3)  # 5, 5, 6


def test_non_finite_readings_and_naive_times_are_refused() -> None:
    engine = CharacteristicEngine(CharacteristicSpec(id=1))
    with pytest.raises(ValueError, match="not a finite number"):
        engine.add_reading(math.nan, at(0))
    with pytest.raises(ValueError, match="not a finite number"):
        engine.add_readings([1.0, math.inf], at(0))
    with pytest.raises(ValueError, match="no time zone"):
        engine.add_reading(1.0, datetime(2026, 1, 1))  # noqa: DTZ001 - the mistake under test
    assert engine.seq == 0
    assert engine.partial == ()
    for n, bad in ((2, [1.0, math.inf]), (2, [math.inf, -math.inf]), (12, [1e308] * 12)):
        whole = CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=n))
        with pytest.raises(ValueError, match="not a finite number"):
            whole.add_readings(bad, at(0))
        assert (whole.seq, whole.partial, whole.snapshot()["window"]) == (0, (), [])


def test_recalculate_reclassifies_the_window_and_keeps_episodes() -> None:
    rules = resolve_rules([1, {"id": 2, "length": 3}])
    engine = CharacteristicEngine(CharacteristicSpec(id=1, ucl=3.0, lcl=-3.0, rules=rules))
    events = [e for v in (-0.5, -0.5, -0.5) for e in engine.add_reading(v, at(0))]
    assert [e.rule_id for e in events if isinstance(e, ViolationRaised)] == [2]
    update = engine.recalculate([[-2.0], [-1.0], [-2.0], [-1.0]], at(5))
    assert update == ControlLimitsUpdated(1, engine.limits, at(5))  # type: ignore[arg-type]
    assert update.limits.center_line == -1.5
    assert update.limits.sample_count == 4
    # the old points are now above CL: the next upper point fails rule 2 at once, but that
    # episode (below, then above) never stopped failing, so no new alarm
    events = engine.add_reading(-0.5, at(6))
    assert samples_of(events)[0].failed_rules == (2,)
    assert [e for e in events if isinstance(e, ViolationRaised)] == []
    with pytest.raises(InsufficientData):
        engine.recalculate([[1.0]], at(7))
    assert engine.limits == update.limits


def test_snapshot_mid_subgroup_and_mid_episode() -> None:
    rules = resolve_rules([{"id": 2, "length": 3}])
    spec = CharacteristicSpec(id=1, subgroup_size=2, ucl=3.0, lcl=-3.0, rules=rules)
    engine = CharacteristicEngine(spec)
    for v in (0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5):
        engine.add_reading(v, at(0))
    state = json.loads(json.dumps(engine.snapshot()))
    assert state["partial"] == [0.5]
    assert state["failing"] == [2]
    restored = CharacteristicEngine(spec, state)
    assert restored.partial == (0.5,)
    assert restored.seq == 3
    events = restored.add_reading(0.5, at(1))  # still failing: same episode, no alarm
    assert kinds(events) == ["SampleProcessed"]
    assert samples_of(events)[0].failed_rules == (2,)
    restored.add_readings([-0.5, -0.5], at(2))
    events = [e for v in (0.5,) * 6 for e in restored.add_reading(v, at(3))]
    assert [(e.rule_id, e.sample_seq) for e in events if isinstance(e, ViolationRaised)] == [(2, 8)]


def test_restore_refuses_a_state_of_another_shape() -> None:
    engine = CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=2))
    engine.add_reading(1.0, at(0))
    state = engine.snapshot()
    with pytest.raises(IncompatibleState, match="subgroup size 2"):
        CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=3), state)
    with pytest.raises(IncompatibleState, match="malformed"):
        CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=2), {**state, "seq": None})


def test_edited_fixed_limits_win_over_remembered_ones() -> None:
    engine = CharacteristicEngine(CharacteristicSpec(id=1, ucl=3.0, lcl=-3.0))
    engine.add_reading(0.0, at(0))
    edited = CharacteristicSpec(id=1, ucl=6.0, lcl=-6.0)
    restored = CharacteristicEngine(edited, engine.snapshot())
    assert restored.limits == fixed_limits(edited)
    assert kinds(restored.add_reading(0.0, at(1))) == ["ControlLimitsUpdated", "SampleProcessed"]


def test_the_snapshot_follows_the_limits_in_force() -> None:
    # the limits' dict is made once per limits (docs/performance.md): a new baseline and a
    # recalculation each show in the next snapshot, and a restore gives the same limits
    engine = CharacteristicEngine(CharacteristicSpec(id=1, baseline=5))
    assert engine.snapshot()["limits"] is None
    for k, value in enumerate((1.0, 3.0, 2.0, 4.0, 3.0)):
        engine.add_reading(value, at(k))
    first = engine.limits
    assert first is not None
    assert engine.snapshot()["limits"] == limits_to_dict(first)
    engine.add_reading(2.5, at(6))
    assert engine.snapshot()["limits"] == limits_to_dict(first)
    engine.recalculate([[10.0], [12.0], [11.0], [13.0]], at(7))
    assert engine.limits != first
    state = json.loads(json.dumps(engine.snapshot()))
    assert state["limits"] == json.loads(json.dumps(limits_to_dict(engine.limits)))
    assert CharacteristicEngine(engine.spec, state).limits == engine.limits


def test_the_snapshot_keeps_the_partial_subgroups_time() -> None:
    engine = CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=2))
    cet = timezone(timedelta(hours=1))
    engine.add_reading(1.0, datetime(2026, 11, 28, 7, 0, tzinfo=cet))
    state = json.loads(json.dumps(engine.snapshot()))
    restored = CharacteristicEngine(engine.spec, state)
    assert restored.snapshot()["partial_ts"] == "2026-11-28T07:00:00+01:00"


def test_range_chart_alarms_once_per_episode() -> None:
    engine = CharacteristicEngine(CharacteristicSpec(id=1, ucl=3.0, lcl=-3.0))
    events = [e for v in (0.0, 2.9, -2.9, 2.9, 0.0, 2.9, -2.9) for e in engine.add_reading(v, T0)]
    raised = [e.sample_seq for e in events if isinstance(e, ViolationRaised) and e.chart == "range"]
    assert raised == [3, 7]  # moving ranges 2.9, 5.8, 5.8, 2.9, 2.9, 5.8


def test_limits_payload_has_the_documented_shape() -> None:
    limits = fixed_limits(
        CharacteristicSpec(id=1, subgroup_size=5, ucl=10.03, lcl=9.97, usl=10.05, lsl=9.95)
    )
    payload = limits_payload(limits, 1, iso_z(T0))
    assert list(payload) == [
        "characteristic_id", "center_line", "ucl", "lcl", "sigma", "method", "sample_count",
        "range", "capability", "timestamp",
    ]  # fmt: skip
    assert payload["method"] == "fixed"
    assert payload["timestamp"] == "2026-11-28T06:00:00.000Z"
    assert list(payload["range"]) == ["center_line", "ucl", "lcl"]
    assert payload["capability"] == {
        "cp": pytest.approx(0.745356, abs=1e-6),
        "cpk": pytest.approx(0.745356, abs=1e-6),
        "pp": None,
        "ppk": None,
    }
    assert json.loads(json.dumps(payload)) == payload


def test_an_engine_stays_small() -> None:
    """10,000 engines must fit in 150 MB: measure 300, in and after the baseline."""
    spec = CharacteristicSpec(id=1, subgroup_size=5, usl=10.5, lsl=9.5)
    for samples in (24, 40):
        tracemalloc.start()
        engines = []
        for i in range(300):
            engine = CharacteristicEngine(spec)
            for j in range(samples):
                engine.add_readings([10.0 + ((i + j + k) % 7) / 100 for k in range(5)], T0)
            engines.append(engine)
        used, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert used / len(engines) < 8_000, samples


def test_engines_with_the_same_rules_share_one_rule_table() -> None:
    """An engine only reads its ``rule_id -> rule`` table: 10,000 characteristics on the same
    rules keep one (docs/performance.md, "Memory at start-up"); other rules get their own."""
    a = CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=1, ucl=10.3, lcl=9.7))
    b = CharacteristicEngine(CharacteristicSpec(id=2, subgroup_size=1, ucl=1.3, lcl=0.7))
    c = CharacteristicEngine(
        CharacteristicSpec(id=3, subgroup_size=1, ucl=10.3, lcl=9.7, rules=resolve_rules([1, 2]))
    )
    assert a._rules is b._rules
    assert sorted(a._rules) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert sorted(c._rules) == [1, 2]
    # judged alike, each on its own limits: 2 is beyond b's ucl and inside a's
    assert [e.in_control for e in a.add_reading(2.0, T0) if isinstance(e, SampleProcessed)] == [
        False
    ]
    raised = [e for e in b.add_reading(1.5, T0) if isinstance(e, ViolationRaised)]
    assert [(e.characteristic_id, e.rule_id) for e in raised] == [(2, 1)]
    assert sorted(a._rules) == [1, 2, 3, 4, 5, 6, 7, 8]


@given(st.floats() | st.integers(-(10**20), 10**20))
@example(0.028300000000001546)
@example(-0.0)
def test_a_figure_is_its_ten_significant_digits(value: float) -> None:
    # figure() formats with "%.10g" (docs/performance.md): the text of f"{value:.10g}"
    assert repr(figure(value)) == repr(float(f"{value:.10g}"))
    assert repr(plotted_value(value, 5)) == repr(float(f"{value:.10g}"))
    assert plotted_value(value, 1) is value
