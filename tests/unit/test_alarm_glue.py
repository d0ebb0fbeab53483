"""The bridge's glue around engine.alarms (bridge/_alarms.py): valid ranges, spec episodes,
due clocks on one timer, line state, restart; with a manual clock (docs/spc.md, "Alarm
workflow")."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge._alarms import DUE_TICK, Alarms, AlarmSettings, DueTick
from bridge.config import CharacteristicSettings, ConfigInvalid, load_settings
from bridge.domain import OverdueAlarm
from bridge.testing import ManualClock
from engine import SampleProcessed, Severity
from engine.alarms import OverdueState, SpecViolationRaised

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


class Clocks:
    """A wall clock and a monotonic one that move together (the monotonic one starts at an
    arbitrary origin, as the real one does)."""

    def __init__(self, origin: float = 5000.0) -> None:
        self.wall = ManualClock(T0)
        self.origin = origin

    def monotonic(self) -> float:
        return self.origin + (self.wall.current - T0).total_seconds()

    def advance(self, seconds: float) -> None:
        self.wall.advance(seconds)


def alarms_of(clocks: Clocks, *settings: AlarmSettings) -> Alarms:
    return Alarms(settings, monotonic=clocks.monotonic, wall=clocks.wall.now)


def sample(cid: int, seq: int, *values: float) -> SampleProcessed:
    return SampleProcessed(cid, seq, T0, values[0], values, None, None, None, (), ())


# --- valid range ----------------------------------------------------------------------------


def test_a_reading_outside_the_valid_range_is_refused_naming_the_limit() -> None:
    a = alarms_of(Clocks(), AlarmSettings(1, valid_min=0.0, valid_max=50.0))
    assert a.refusal(1, [50.0]) is None  # on the limit: valid
    assert a.refusal(1, [0.0]) is None
    assert a.refusal(1, [50.5]) == (
        "value 50.5 is above valid_max 50 (a gauge fault or a unit mix-up?); not charted"
    )
    assert a.refusal(1, [-1.0]) == (
        "value -1 is below valid_min 0 (a gauge fault or a unit mix-up?); not charted"
    )
    assert a.refusal(1, [10.0, 11.0, 500.0]) == (
        "values[2] = 500 is above valid_max 50 (a gauge fault or a unit mix-up?);"
        " the whole subgroup of 3 is refused"
    )
    assert a.refusal(2, [1e9]) is None  # no valid range: anything finite goes


# --- spec episodes --------------------------------------------------------------------------


def test_one_spec_alarm_per_episode_and_out_of_spec_on_each_sample() -> None:
    a = alarms_of(Clocks(), AlarmSettings(3, usl=12.0, lsl=10.0), AlarmSettings(4))
    raised = a.after_engine([sample(3, 1, 12.0)])  # on the limit: within spec
    assert raised == []
    assert a.sample_fields(sample(3, 1, 12.0)) == (False, None)
    (first,) = a.after_engine([sample(3, 2, 11.0, 12.5)])
    assert isinstance(first, SpecViolationRaised)
    assert (first.sample_seq, first.worst, first.severity) == (2, 12.5, Severity.CRITICAL)
    assert a.sample_fields(sample(3, 2, 11.0, 12.5)) == (True, None)
    assert a.after_engine([sample(3, 3, 9.0)]) == []  # the same episode
    assert a.after_engine([sample(3, 4, 11.0)]) == []  # wholly within: re-armed
    (second,) = a.after_engine([sample(3, 5, 9.9)])
    assert second.sample_seq == 5
    # no spec limits: out_of_spec null, never an alarm
    assert a.after_engine([sample(4, 1, 1e6)]) == []
    assert a.sample_fields(sample(4, 1, 1e6)) == (None, None)


def test_a_configured_spec_severity_is_used() -> None:
    a = alarms_of(Clocks(), AlarmSettings(3, usl=1.0, spec_severity=Severity.WARNING))
    (raised,) = a.after_engine([sample(3, 1, 2.0)])
    assert raised.severity == Severity.WARNING


# --- due clocks -----------------------------------------------------------------------------


def test_overdue_once_per_episode_at_interval_plus_grace() -> None:
    clocks = Clocks()
    a = alarms_of(clocks, AlarmSettings(1, sample_interval=60.0))  # grace 15 s
    write = a.restore({}, {})
    assert write == {1: OverdueState(1, T0, raised=False, running=True)}
    assert a.due_at(1) == T0 + timedelta(seconds=60)
    clocks.advance(74.9)
    assert a.expire() == []
    clocks.advance(0.1)
    assert a.expire() == [
        OverdueAlarm(1, Severity.WARNING, T0 + timedelta(seconds=75), T0 + timedelta(seconds=60))
    ]
    clocks.advance(600)
    assert a.expire() == []  # one alarm per episode
    assert a.take_states() == {1: OverdueState(1, T0, raised=True, running=True)}
    # a sample ends the episode: due an interval later, and it says so
    a.after_engine([sample(1, 1, 5.0)])
    assert a.sample_fields(sample(1, 1, 5.0)) == (None, T0 + timedelta(seconds=735))
    assert a.take_states() == {1: OverdueState(1, T0 + timedelta(seconds=675), False, True)}
    clocks.advance(75)
    (again,) = a.expire()
    assert again.timestamp == T0 + timedelta(seconds=750)


def test_overdue_grace_and_severity_from_the_config() -> None:
    clocks = Clocks()
    a = alarms_of(
        clocks,
        AlarmSettings(
            1, sample_interval=10.0, overdue_grace=0.0, overdue_severity=Severity.CRITICAL
        ),
    )
    a.restore({}, {})
    clocks.advance(10)
    (alarm,) = a.expire()
    assert (alarm.severity, alarm.timestamp, alarm.due_at) == (
        Severity.CRITICAL,
        T0 + timedelta(seconds=10),
        T0 + timedelta(seconds=10),
    )


def test_no_overdue_while_the_line_is_stopped_and_due_an_interval_after_it_runs() -> None:
    clocks = Clocks()
    settings = AlarmSettings(1, sample_interval=60.0, running_topic="plant/line3/running")
    a = alarms_of(clocks, settings)
    a.restore({}, {})
    (source,) = a.sources()
    assert source.topic_filter == "plant/line3/running"
    assert source.decode("plant/line3/running", b" Stopped ", T0) == ()
    assert a.due_at(1) is None
    clocks.advance(3600)
    assert a.expire() == []
    a.line_message("plant/line3/running", b"  RUNNING\n")  # trimmed, any case
    assert a.due_at(1) == T0 + timedelta(seconds=3660)
    clocks.advance(74)
    assert a.expire() == []
    clocks.advance(1)
    (alarm,) = a.expire()
    assert alarm.timestamp == T0 + timedelta(seconds=3675)
    assert a.take_states() == {1: OverdueState(1, T0 + timedelta(seconds=3600), True, True)}


def test_custom_running_values() -> None:
    clocks = Clocks()
    a = alarms_of(
        clocks,
        AlarmSettings(1, sample_interval=60.0, running_topic="l/state", running_values=("PROD",)),
    )
    a.restore({}, {})
    a.line_message("l/state", b"true")  # not one of this line's values: stopped
    assert a.due_at(1) is None
    a.line_message("l/state", b"prod")
    assert a.due_at(1) == T0 + timedelta(seconds=60)


# --- restart --------------------------------------------------------------------------------


def test_a_restart_keeps_a_pending_alarm_and_raises_one_that_fell_due_while_down() -> None:
    clocks = Clocks(origin=10.0)
    settings = AlarmSettings(1, sample_interval=60.0)
    stored = {1: OverdueState(1, T0, raised=False, running=True)}
    clocks.advance(30)  # down for 30 s: still pending, due from the stored moment
    a = alarms_of(clocks, settings)
    assert a.restore(stored, {}) == {}
    assert a.due_at(1) == T0 + timedelta(seconds=60)
    clocks.advance(44)
    assert a.expire() == []
    clocks.advance(1)
    assert [x.timestamp for x in a.expire()] == [T0 + timedelta(seconds=75)]

    later = Clocks(origin=99999.0)
    later.advance(500)  # down past the deadline: raised once, at start, at its own time
    b = alarms_of(later, settings)
    b.restore(stored, {})
    assert [x.timestamp for x in b.expire()] == [T0 + timedelta(seconds=75)]
    assert b.expire() == []


def test_an_alarm_raised_before_a_restart_is_not_raised_again() -> None:
    clocks = Clocks()
    clocks.advance(10_000)
    a = alarms_of(clocks, AlarmSettings(1, sample_interval=60.0))
    a.restore({1: OverdueState(1, T0, raised=True, running=True)}, {})
    assert a.expire() == []


def test_a_database_without_due_clocks_counts_from_the_last_stored_sample() -> None:
    clocks = Clocks()
    clocks.advance(70)
    a = alarms_of(clocks, AlarmSettings(1, sample_interval=60.0, usl=1.0))
    last = {1: {"timestamp": "2026-12-07T10:00:00.000Z", "out_of_spec": True}}
    write = a.restore({}, last)
    assert write == {1: OverdueState(1, T0, raised=False, running=True)}
    clocks.advance(5)
    assert len(a.expire()) == 1
    # the spec episode of the last stored sample goes on: no second alarm for it
    assert a.after_engine([sample(1, 9, 2.0)]) == []


def test_an_interval_that_left_the_config_forgets_its_stored_clock() -> None:
    a = alarms_of(Clocks(), AlarmSettings(1))
    assert a.restore({1: OverdueState(1, T0, False, True)}, {}) == {1: None}


# --- the one timer --------------------------------------------------------------------------


async def test_the_timer_puts_one_tick_per_deadline_and_sleeps_in_between() -> None:
    a = Alarms([AlarmSettings(1, sample_interval=0.04, overdue_grace=0.0)])
    a.restore({}, {})
    ticks: list[DueTick] = []
    raised: list[OverdueAlarm] = []

    def put(tick: DueTick) -> None:  # the pipeline's part, at once
        ticks.append(tick)
        raised.extend(a.expire())

    stop = asyncio.Event()
    task = asyncio.create_task(a.run(stop, put))
    await asyncio.sleep(0.3)
    # one deadline, one alarm; afterwards nothing is due and the timer sleeps
    assert len(raised) == 1
    assert ticks[0] is DUE_TICK
    assert len(ticks) <= 2
    # a sample re-arms it: the timer wakes for the new, earlier deadline
    a.after_engine([sample(1, 1, 1.0)])
    await asyncio.sleep(0.2)
    assert len(raised) == 2
    stop.set()
    await asyncio.wait_for(task, 1.0)


async def test_samples_in_time_never_wake_the_pipeline() -> None:
    a = Alarms([AlarmSettings(1, sample_interval=0.3, overdue_grace=0.2)])
    a.restore({}, {})
    ticks: list[DueTick] = []

    def put(tick: DueTick) -> None:
        ticks.append(tick)
        a.expire()

    stop = asyncio.Event()
    task = asyncio.create_task(a.run(stop, put))
    for seq in range(1, 21):  # every 50 ms, for twice the interval: always in time
        await asyncio.sleep(0.05)
        a.after_engine([sample(1, seq, 1.0)])
    assert ticks == []
    stop.set()
    await asyncio.wait_for(task, 1.0)


async def test_without_intervals_the_timer_does_not_run() -> None:
    a = Alarms([AlarmSettings(1)])
    a.restore({}, {})
    await asyncio.wait_for(a.run(asyncio.Event(), lambda tick: None), 0.5)


# --- config ---------------------------------------------------------------------------------


def test_alarm_settings_from_the_config() -> None:
    char = CharacteristicSettings.model_validate(
        {
            "id": 1,
            "name": "OD",
            "usl": 10.05,
            "lsl": 9.95,
            "valid_min": 0.0,
            "valid_max": 50.0,
            "sample_interval": 60.0,
            "running_topic": "plant/line3/running",
            "running_values": [" Running ", "1"],
            "overdue_severity": "CRITICAL",
        }
    )
    s = AlarmSettings.of(char)
    assert s.running_values == ("Running", "1")
    assert (s.grace, s.overdue_severity, s.spec_severity) == (
        15.0,
        Severity.CRITICAL,
        Severity.CRITICAL,
    )


@pytest.mark.parametrize(
    ("toml", "fault"),
    [
        (
            "valid_min = 5.0\nvalid_max = 5.0",
            "characteristic[0].valid_min = 5.0: must be below valid_max (5)",
        ),
        ("usl = 60.0\nvalid_max = 50.0", "characteristic[0].usl = 60.0: lies above valid_max (50)"),
        ("overdue_grace = 5.0", "characteristic[0].overdue_grace = 5.0: needs a sample_interval"),
        (
            'running_topic = "a/b"',
            'characteristic[0].running_topic = "a/b": needs a sample_interval',
        ),
        ("sample_interval = 0", "characteristic[0].sample_interval = 0: must be greater than 0"),
        ('sample_interval = "60"', 'characteristic[0].sample_interval = "60": must be a number'),
        (
            "sample_interval = 60\noverdue_grace = -1",
            "characteristic[0].overdue_grace = -1: must be at least 0",
        ),
        (
            'spec_severity = "LOUD"',
            'characteristic[0].spec_severity = "LOUD": must be "CRITICAL" or "WARNING"',
        ),
        (
            "sample_interval = 60\nrunning_values = []",
            "characteristic[0].running_values = []: must list at least one value",
        ),
        (
            'sample_interval = 60\nrunning_topic = "openspc/line"',
            'characteristic[0].running_topic = "openspc/line": must not lie under openspc/ or'
            " spBv1.0/",
        ),
        (
            'sample_interval = 60\nrunning_topic = "plant/od"\ntopic = "plant/od"',
            'characteristic[0].running_topic = "plant/od": is the reading topic of'
            " characteristic[0]",
        ),
    ],
)
def test_alarm_keys_are_checked(tmp_path: Path, toml: str, fault: str) -> None:
    path = tmp_path / "openspc.toml"
    path.write_text(f'[[characteristic]]\nid = 1\nname = "OD"\n{toml}\n')
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path)
    assert [str(f).removeprefix(f"{path}: ") for f in info.value.faults] == [fault]
