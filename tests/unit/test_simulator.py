"""Simulated gauges: deterministic, calm through the baseline, then alarming soon after."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.config import CharacteristicSettings, Settings, load_settings
from bridge.readings import parse_reading
from bridge.simulator import (
    Disturbance,
    Disturbances,
    Gauge,
    GaugeProfile,
    gauges_from_settings,
    profile_for,
    reading_payload,
)
from engine import CharacteristicEngine, CharacteristicSpec, ViolationRaised

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def profile(n: int = 1, cid: int = 1) -> GaugeProfile:
    return GaugeProfile(cid, f"p/char/{cid}/reading", mean=10.0, sigma=0.02, subgroup_size=n)


def test_the_same_seed_gives_the_same_stream() -> None:
    assert Gauge(profile(), seed=7).take(300) == Gauge(profile(), seed=7).take(300)
    assert Gauge(profile(), seed=7).take(50) != Gauge(profile(), seed=8).take(50)


def test_gauges_of_different_characteristics_differ_under_one_seed() -> None:
    one = [r.value for r in Gauge(profile(cid=1), seed=3).take(50)]
    two = [r.value for r in Gauge(profile(cid=2), seed=3).take(50)]
    assert one != two


@pytest.mark.parametrize("n", [1, 5])
def test_the_baseline_is_calm_and_centred(n: int) -> None:
    readings = Gauge(profile(n), seed=1).take(25 * n)
    assert {r.disturbance for r in readings} == {Disturbance.NONE}
    values = [r.value for r in readings]
    assert statistics.fmean(values) == pytest.approx(10.0, abs=4 * 0.02 / (25 * n) ** 0.5)
    assert statistics.stdev(values) == pytest.approx(0.02, rel=0.35)


def test_every_kind_of_disturbance_appears_after_the_warm_up() -> None:
    readings = Gauge(profile(), seed=1).take(400)
    kinds = {r.disturbance for r in readings[25:]}
    assert kinds == {Disturbance.NONE, Disturbance.SHIFT, Disturbance.DRIFT, Disturbance.OUTLIER}


def test_a_shift_moves_the_mean_by_its_sigmas() -> None:
    shifted = [
        r.value - 10.0
        for seed in range(5)
        for r in Gauge(profile(), seed=seed).take(400)
        if r.disturbance is Disturbance.SHIFT
    ]
    assert statistics.fmean(abs(x) for x in shifted) == pytest.approx(2 * 0.02, rel=0.3)


def test_an_outlier_is_far_out() -> None:
    outliers = [
        r.value
        for seed in range(5)
        for r in Gauge(profile(), seed=seed).take(400)
        if r.disturbance is Disturbance.OUTLIER
    ]
    assert outliers
    assert all(abs(x - 10.0) > 4 * 0.02 for x in outliers)


def test_without_disturbances_the_process_stays_calm() -> None:
    readings = Gauge(profile(), seed=1, disturbances=Disturbances.none()).take(2000)
    assert {r.disturbance for r in readings} == {Disturbance.NONE}


@pytest.mark.parametrize(("n", "rate"), [(1, 1.0), (5, 2.5)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_engine_alarms_within_a_minute_of_the_limits(n: int, rate: float, seed: int) -> None:
    """At ``rate`` readings a second, the first violation comes within 60 s of the control
    limits (the baseline of 25 subgroups is calm, so it raises none)."""
    engine = CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=n))
    gauge = Gauge(profile(n), seed=seed)
    baseline_readings = 25 * n
    first_alarm: int | None = None
    for i in range(baseline_readings + int(60 * rate)):
        events = engine.add_reading(gauge.next().value, T0 + timedelta(seconds=i / rate))
        if any(isinstance(e, ViolationRaised) for e in events):
            first_alarm = i
            break
    assert first_alarm is not None
    assert first_alarm >= baseline_readings


def test_payloads_parse_back_to_the_reading() -> None:
    at = datetime.now(UTC)
    plain = reading_payload(10.0123456, 1_764_309_600_000, decimals=4)
    assert plain == b'{"value":10.0123,"ts":1764309600000}'
    vendor = reading_payload(10.5, 1_764_309_600_000, value_path="data.ch.1.od")
    assert vendor == b'{"data":{"ch":[0,{"od":10.5}]},"ts":1764309600000}'
    reading = parse_reading(vendor, subgroup_size=1, value_path="data.ch.1.od", received_at=at)
    assert reading.values == (10.5,)
    assert reading.ts == datetime(2025, 11, 28, 6, tzinfo=UTC)


def test_a_whole_subgroup_payload() -> None:
    assert reading_payload([1.23456, 2.0], 1_764_309_600_000, decimals=2) == (
        b'{"values":[1.23,2.0],"ts":1764309600000}'
    )
    assert reading_payload([1.0, 2.0], 1_764_309_600_000, value_path="d.od") == (
        b'{"d":{"od":[1.0,2.0]},"ts":1764309600000}'
    )


def test_gauges_from_the_shipped_example() -> None:
    repo = Path(__file__).resolve().parents[2]
    gauges = gauges_from_settings(load_settings(repo / "config" / "openspc.toml"), seed=1)
    profiles = [g.profile for g in gauges]
    assert [(p.characteristic_id, p.topic, p.value_path) for p in profiles] == [
        (1, "plant1/line3/gauge4/bore", "data.bore"),
        (2, "openspc/char/2/reading", None),
        (3, "openspc/char/3/reading", None),
    ]
    bore, shaft, fill = profiles
    assert (bore.mean, bore.sigma) == pytest.approx((25.0, 0.1 / 8))
    assert (shaft.mean, shaft.subgroup_size) == (10.0, 5)
    # fixed limits 497.3..503.1 for n = 4: sigma of the individuals is 2 x (5.8 / 6)
    assert (fill.mean, fill.sigma) == pytest.approx((500.2, 5.8 / 6 * 2))


def test_a_gauge_needs_a_spread() -> None:
    with pytest.raises(ValueError, match="sigma > 0"):
        GaugeProfile(1, "t", mean=1.0, sigma=0.0)


@pytest.mark.parametrize(
    ("limits", "mean", "sigma"),
    [
        ({"usl": 1.6}, 1.28, 0.08),
        ({"lsl": 5.0}, 6.0, 0.25),
        ({"usl": 1.6, "target": 0.8}, 0.8, 0.2),
        ({}, 10.0, 0.1),
        ({"target": 0.0}, 0.0, 0.1),
    ],
)
def test_gauges_for_one_sided_or_no_limits(
    limits: dict[str, float], mean: float, sigma: float
) -> None:
    gauge = profile_for(CharacteristicSettings(id=1, name="x", **limits), "p")
    assert (gauge.mean, gauge.sigma) == pytest.approx((mean, sigma))


def test_against_fixed_limits_the_alarms_start_early() -> None:
    char = CharacteristicSettings(id=1, name="x", subgroup_size=5, ucl=503.0, lcl=497.0)
    settings = Settings.model_validate({"characteristic": [char.model_dump()]})
    [gauge] = gauges_from_settings(settings, seed=1)
    kinds = [r.disturbance for r in gauge.take(60)]
    assert kinds[:25] == [Disturbance.NONE] * 25
    assert set(kinds[25:]) - {Disturbance.NONE}
