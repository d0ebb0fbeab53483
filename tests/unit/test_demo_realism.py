"""The demo is a plant mostly in control (docs/hmi.md "The demo"): its own config and gauges
through the engine, offline, for hours of plant time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import engine
from bridge.config import Settings, load_settings
from bridge.demo import LINE3_RUNNING_TOPIC, demo_config, demo_gauges
from bridge.simulator import (
    CountGauge,
    Disturbances,
    Gauge,
    GaugeProfile,
    LineSchedule,
    Shopfloor,
    alarm_rate,
    reading_payload,
)

PACE = timedelta(seconds=20)  # the demo's default: a point every 20 s


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    path = tmp_path_factory.mktemp("demo") / "openspc.toml"
    path.write_text(demo_config(mqtt_port=1883, bridge_password="x"))
    return load_settings(path)


def test_a_few_alarms_an_hour_per_characteristic(settings: Settings) -> None:
    rates = alarm_rate(settings, demo_gauges(settings, 7), hours=12, points_per_hour=180)
    assert set(rates) == {1, 2, 3, 4, 5, 6}
    assert all(0 < r <= 20 for r in rates.values()), rates  # docs/configuration.md's cap
    assert sum(rates.values()) / len(rates) <= 8, rates  # a few, not twenty a minute


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_the_first_alarm_comes_within_about_a_minute(settings: Settings, seed: int) -> None:
    """Fill weight (fixed limits, judged from its first subgroup) alarms first."""
    fill = next(c for c in settings.characteristic if c.id == 3)
    gauge = next(g for g in demo_gauges(settings, seed) if g.profile.characteristic_id == 3)
    assert isinstance(gauge, Gauge)
    eng = engine.CharacteristicEngine(fill.to_spec())
    start = datetime(2026, 12, 7, 6, tzinfo=UTC)
    for point in range(1, 10):
        values = [r.value for r in gauge.take(fill.subgroup_size)]
        events = eng.add_readings(values, start + point * PACE)
        if any(isinstance(e, engine.ViolationRaised) for e in events):
            break
    assert point * PACE <= timedelta(seconds=90), point


def test_disturbances_per_point_and_a_first_shift() -> None:
    d = Disturbances(
        gap=(200, 400),
        length=(4, 8),
        drift_sigmas_per_reading=0.3,
        outlier_chance=0.01,
        first_gap=(0, 1),
        first_shift=True,
    )
    five = d.in_readings(5)
    assert (five.gap, five.length, five.first_gap) == ((1000, 2000), (20, 40), (0, 5))
    assert five.drift_sigmas_per_reading == pytest.approx(0.06)
    assert five.outlier_chance == pytest.approx(0.002)
    profile = GaugeProfile(1, "t", 10.0, 0.1)
    for seed in range(5):
        first = next(
            r
            for r in Gauge(profile, seed=seed, disturbances=d, baseline=3)
            if r.disturbance.value != "none"
        )
        assert first.disturbance.value == "shift"


def test_readings_carry_their_part_lot_shift_and_operator() -> None:
    six_am = int(datetime(2026, 12, 7, 6, 30, tzinfo=UTC).timestamp() * 1000)
    ten_pm = int(datetime(2026, 12, 7, 22, 5, tzinfo=UTC).timestamp() * 1000)
    floor = Shopfloor(style="context", lot_size=2)
    got = [floor.fields(4, six_am)["context"] for _ in range(3)]
    assert got[0] == {"part": "P4-000001", "lot": "L4001", "shift": "A", "operator": "kim"}
    assert [g["lot"] for g in got] == ["L4001", "L4001", "L4002"]
    assert floor.fields(4, ten_pm)["context"]["shift"] == "C"
    legacy = Shopfloor(style="legacy").fields(2, six_am)
    assert legacy == {"batch": "L2001", "operator": "kim"}
    assert Shopfloor(style="none").fields(2, six_am) == {}
    payload = json.loads(reading_payload(10.5, six_am, value_path="data.od", extra=legacy))
    assert payload == {"data": {"od": 10.5}, "ts": six_am, "batch": "L2001", "operator": "kim"}
    count = CountGauge(GaugeProfile(5, "t", 0.04, 1.0), "p", seed=1)
    assert json.loads(count.payload(six_am, legacy))["operator"] == "kim"
    with pytest.raises(ValueError, match="style"):
        Shopfloor(style="json")


def test_line_three_stops_and_starts(settings: Settings) -> None:
    line = LineSchedule(LINE3_RUNNING_TOPIC, frozenset({1, 4, 5}), run=1500, stop=240)
    assert [line.running(t) for t in (0, 1499, 1500, 1739, 1740, 3239)] == [
        True,
        True,
        False,
        False,
        True,
        True,
    ]
    on_line = {c.id for c in settings.characteristic if (c.topic or "").startswith("plant1/line3/")}
    assert on_line == {1, 4, 5}
    with pytest.raises(ValueError, match="positive"):
        LineSchedule("t", frozenset(), run=0)


def test_line_three_waits_while_it_stands_and_every_chart_has_a_due_time(
    settings: Settings,
) -> None:
    """Line 3's charts name its running topic (no overdue alarm while it stands); every
    chart expects a sample three points after the last (docs/configuration.md "Alarms")."""
    by_id = {c.id: c for c in settings.characteristic}
    assert {cid for cid, c in by_id.items() if c.running_topic == LINE3_RUNNING_TOPIC} == {
        1,
        4,
        5,
    }
    assert {c.sample_interval for c in by_id.values()} == {60.0}
    fast = demo_config(mqtt_port=1883, bridge_password="x", point_seconds=1.0)
    assert fast.count("sample_interval = 3\n") == len(by_id)
    assert 'chart = "p"' in fast
