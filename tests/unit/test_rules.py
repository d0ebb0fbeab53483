"""Each rule fires exactly where its definition says, not a point earlier or later.

Fixed limits CL 0, UCL 3, LCL -3 on individuals make every zone one unit wide, so the
series below can put points exactly on zone lines and on the centre line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from engine import (
    PRESETS,
    RULE_DEFAULTS,
    CharacteristicEngine,
    CharacteristicSpec,
    Chart,
    SampleProcessed,
    Severity,
    ViolationRaised,
    Zone,
    classify,
    fixed_limits,
    resolve_rules,
)

TS = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def run(
    values: Sequence[float],
    rules: str | Sequence[int | Mapping[str, object]] | None = None,
) -> tuple[list[SampleProcessed], list[ViolationRaised]]:
    spec = CharacteristicSpec(id=1, ucl=3.0, lcl=-3.0, rules=resolve_rules(rules))
    engine = CharacteristicEngine(spec)
    events = [event for v in values for event in engine.add_reading(v, TS)]
    samples = [e for e in events if isinstance(e, SampleProcessed)]
    violations = [e for e in events if isinstance(e, ViolationRaised)]
    return samples, violations


def failing_at(values: Sequence[float], rule_id: int, **kwargs: object) -> list[int]:
    samples, _ = run(values, **kwargs)  # type: ignore[arg-type]  # rules keyword only
    return [i for i, s in enumerate(samples) if rule_id in s.failed_rules]


def test_zone_lines_belong_to_the_inner_zone_and_cl_is_upper() -> None:
    limits = fixed_limits(CharacteristicSpec(id=1, ucl=3.0, lcl=-3.0))
    expected = {
        0.0: Zone.ZONE_C_UPPER,
        1.0: Zone.ZONE_C_UPPER,
        1.5: Zone.ZONE_B_UPPER,
        2.0: Zone.ZONE_B_UPPER,
        3.0: Zone.ZONE_A_UPPER,
        3.0001: Zone.BEYOND_UCL,
        -1e-9: Zone.ZONE_C_LOWER,
        -1.0: Zone.ZONE_C_LOWER,
        -2.0: Zone.ZONE_B_LOWER,
        -2.5: Zone.ZONE_A_LOWER,
        -3.0: Zone.ZONE_A_LOWER,
        -3.0001: Zone.BEYOND_LCL,
    }
    assert {v: classify(v, limits, 1) for v in expected} == expected
    samples, _ = run(list(expected))
    assert [s.zone for s in samples] == list(expected.values())


def test_fixed_limits_may_be_asymmetric() -> None:
    limits = fixed_limits(CharacteristicSpec(id=1, center_line=1.0, ucl=4.0, lcl=-5.0))
    assert classify(2.0, limits, 1) is Zone.ZONE_C_UPPER  # upper zones 1 wide
    assert classify(3.5, limits, 1) is Zone.ZONE_A_UPPER
    assert classify(-1.0, limits, 1) is Zone.ZONE_C_LOWER  # lower zones 2 wide
    assert classify(-1.01, limits, 1) is Zone.ZONE_B_LOWER
    assert classify(-3.0, limits, 1) is Zone.ZONE_B_LOWER
    assert classify(-3.01, limits, 1) is Zone.ZONE_A_LOWER


def test_rule_1_beyond_the_limits_but_not_on_them() -> None:
    assert failing_at([0, 3.0, 3.01, -3.0, -3.01, 0], 1) == [2, 4]


def test_rule_2_nine_on_one_side_counting_cl_as_upper() -> None:
    assert failing_at([0.5] * 8 + [0.0, 0.5, -0.1], 2) == [8, 9]
    assert failing_at([-0.5] * 8, 2) == []
    assert failing_at([-0.5] * 9, 2) == [8]
    assert failing_at([0.0] * 9, 2) == [8]
    assert failing_at([-0.5] * 8 + [0.0], 2) == []


def test_rule_3_six_in_a_trend_broken_by_an_equal_step() -> None:
    rising = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert failing_at(rising, 3) == [5]
    assert failing_at(rising[:5], 3) == []
    assert failing_at([0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1], 3) == [5, 6]
    assert failing_at([0.0, 0.1, 0.2, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], 3) == [8]


def test_rule_4_fourteen_alternating_broken_by_a_zero_step() -> None:
    assert failing_at([0.0, 0.5] * 7, 4) == [13]
    assert failing_at([0.0, 0.5] * 7 + [0.0], 4) == [13, 14]
    assert failing_at([0.0, 0.5] * 6 + [0.0], 4) == []
    assert failing_at([0.0, 0.5, 0.5] + [0.0, 0.5] * 6, 4) == []
    assert failing_at([0.0, 0.5, 0.5] + [0.0, 0.5] * 6 + [0.0], 4) == [15]


def test_rule_5_two_of_three_beyond_two_sigma_on_one_side() -> None:
    assert failing_at([0, 2.5, 0, 2.5, 0, 0], 5) == [3]
    assert failing_at([0, 2.5, 2.5, 0, 0], 5) == [2, 3]  # the point itself may be inside
    assert failing_at([2.5, 2.5], 5) == []  # fewer than three points so far
    assert failing_at([0, 2.5, 2.5], 5) == [2]
    assert failing_at([0, 2.0, 2.0, 2.0], 5) == []  # 2 sigma itself is zone B
    assert failing_at([0, 2.5, -2.5, 2.5], 5) == [3]  # the two uppers are within three
    assert failing_at([0, 2.5, -2.5, -0.5], 5) == []
    assert failing_at([0, -2.5, 0, -3.5], 5) == [3]  # beyond the limit counts too


def test_rule_6_four_of_five_beyond_one_sigma_on_one_side() -> None:
    assert failing_at([0, 1.5, 1.5, 0, 1.5, 1.5, 0, 0], 6) == [5]
    assert failing_at([0, 1.5, 1.5, 1.5, 1.5, 0, 0], 6) == [4, 5]
    assert failing_at([1.5] * 4, 6) == []  # fewer than five points so far
    assert failing_at([0, 1.0, 1.5, 1.5, 1.5], 6) == []  # 1 sigma itself is zone C
    assert failing_at([0, -1.5, -2.5, -3.5, -1.01], 6) == [4]
    assert failing_at([0, 1.5, -1.5, 1.5, 1.5], 6) == []


def test_rule_7_fifteen_within_one_sigma_lines_included() -> None:
    assert failing_at([0.5, -0.5] * 8, 7) == [14, 15]
    assert failing_at([1.0, -1.0] * 7 + [0.0], 7) == [14]
    assert failing_at([0.5] * 14 + [1.01], 7) == []


def test_rule_8_eight_beyond_one_sigma_either_side() -> None:
    assert failing_at([1.5, -1.5] * 4, 8) == [7]
    assert failing_at([1.5, -1.5] * 3 + [1.0, -1.5], 8) == []
    assert failing_at([4.0, -4.0, 2.5, -2.5, 1.5, -1.5, 1.01, -1.01, 1.5], 8) == [7, 8]


def test_configured_lengths_move_the_firing_point() -> None:
    rules = [{"id": 2, "length": 3}, {"id": 5, "length": 3}, {"id": 3, "length": 3}]
    assert failing_at([0.5] * 4, 2, rules=rules) == [2, 3]
    assert failing_at([0, 2.5, 2.5, 0, 2.5], 5, rules=rules) == [4]  # 3 of 4
    assert failing_at([0.0, 0.1, 0.2], 3, rules=rules) == [2]


def test_rules_left_out_are_not_judged() -> None:
    samples, violations = run([0, 5.0] + [0.5] * 9, rules=[2])
    assert samples[1].failed_rules == ()
    assert samples[1].in_control is True
    assert [v.rule_id for v in violations] == [2]


def test_the_moving_range_chart_has_rule_1_only() -> None:
    # sigma 1: MR chart CL 1.128, UCL 3.267 * 1.128 = 3.685
    samples, violations = run([0.0, 2.9, -2.9, -2.0, 1.8, 0.0])
    assert [s.range_failed_rules for s in samples] == [(), (), (1,), (), (1,), ()]
    assert samples[0].range is None
    assert [(v.chart, v.rule_id, v.sample_seq) for v in violations if v.chart is Chart.RANGE] == [
        (Chart.RANGE, 1, 3),
        (Chart.RANGE, 1, 5),
    ]
    assert samples[2].in_control is False
    assert samples[2].failed_rules == ()


def test_one_alarm_per_episode_and_rearm_on_a_passing_point() -> None:
    values = [0.5] * 11 + [-0.5] + [0.5] * 9
    samples, violations = run(values, rules=[2])
    assert [i for i, s in enumerate(samples) if s.failed_rules] == [8, 9, 10, 20]
    assert [(v.sample_seq, v.rule_id, v.rule_name, v.severity) for v in violations] == [
        (9, 2, "Nine on one side", Severity.WARNING),
        (21, 2, "Nine on one side", Severity.WARNING),
    ]


def test_a_point_failing_several_rules_raises_one_alarm_each_in_rule_order() -> None:
    samples, violations = run([0.5] * 8 + [3.5])
    assert samples[-1].failed_rules == (1, 2)
    assert [(v.rule_id, v.severity) for v in violations] == [
        (1, Severity.CRITICAL),
        (2, Severity.WARNING),
    ]


# --- configuration -------------------------------------------------------------------------


def test_presets() -> None:
    assert resolve_rules(None) == RULE_DEFAULTS == PRESETS["nelson"]
    assert [(r.rule_id, r.length) for r in RULE_DEFAULTS] == [
        (1, 1), (2, 9), (3, 6), (4, 14), (5, 2), (6, 4), (7, 15), (8, 8),
    ]  # fmt: skip
    western = resolve_rules("western_electric")
    assert [(r.rule_id, r.length, r.name) for r in western] == [
        (1, 1, "Beyond 3 sigma"),
        (2, 8, "Eight on one side"),
        (5, 2, "Two of three beyond 2 sigma"),
        (6, 4, "Four of five beyond 1 sigma"),
    ]
    assert [r.severity for r in RULE_DEFAULTS].count(Severity.CRITICAL) == 1


def test_default_names() -> None:
    assert [r.name for r in RULE_DEFAULTS] == [
        "Beyond 3 sigma",
        "Nine on one side",
        "Six in a trend",
        "Fourteen alternating",
        "Two of three beyond 2 sigma",
        "Four of five beyond 1 sigma",
        "Fifteen within 1 sigma",
        "Eight beyond 1 sigma",
    ]


def test_lists_and_tables() -> None:
    rules = resolve_rules([{"id": 6, "length": 3, "severity": "critical"}, 2, 1])
    assert [(r.rule_id, r.length, r.severity, r.name) for r in rules] == [
        (1, 1, Severity.CRITICAL, "Beyond 3 sigma"),
        (2, 9, Severity.WARNING, "Nine on one side"),
        (6, 3, Severity.CRITICAL, "Three of four beyond 1 sigma"),
    ]
    assert resolve_rules([]) == ()
    assert resolve_rules([{"id": 7, "length": 25}])[0].name == "25 within 1 sigma"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nelsen", "unknown rules preset 'nelsen'"),
        ([9], r"rules\[0\]: rule id must be an integer 1..8, got 9"),
        ([1, 1], r"rules\[1\]: rule 1 is listed twice"),
        ([{"length": 3}], "needs an 'id'"),
        ([{"id": 2, "length": 1}], "rule 2 length must be 2..50, got 1"),
        ([{"id": 1, "length": 2}], "rule 1 length must be 1..1"),
        ([{"id": 3, "severity": "HIGH"}], "severity must be CRITICAL or WARNING"),
        ([{"id": 3, "lenght": 5}], "unknown key"),
        ([True], "rule id must be an integer"),
        ({"id": 1}, "a preset name or a list"),
    ],
)
def test_bad_rule_settings_are_one_clear_line(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        resolve_rules(spec)  # type: ignore[arg-type]  # deliberately wrong shapes
    assert "\n" not in str(info.value)


def test_a_range_exactly_on_its_ucl_passes_and_just_above_fails() -> None:
    spec = CharacteristicSpec(id=1, ucl=3.0, lcl=-3.0)
    engine = CharacteristicEngine(spec)
    assert engine.limits is not None
    on = engine.limits.range.ucl
    samples = [
        e
        for v in (0.0, on, 0.0, math.nextafter(on, 9.0))
        for e in engine.add_reading(v, TS)
        if isinstance(e, SampleProcessed)
    ]
    assert [s.range == on for s in samples[1:3]] == [True, True]
    assert [s.range_failed_rules for s in samples] == [(), (), (), (1,)]
