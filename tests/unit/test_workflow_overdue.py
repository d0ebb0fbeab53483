"""Due times and overdue alarms (docs/spc.md, "Alarm workflow: the pure core"): by hand,
then random histories against a naive tracker that scans every characteristic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Severity
from engine.alarms import (
    OVERDUE_RULE_NAME,
    AlarmKind,
    DueTracker,
    InvalidInterval,
    OverdueState,
    SampleOverdue,
    default_grace,
    is_running,
    wall_time,
)

W0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def ids(events: list[SampleOverdue]) -> list[int]:
    return [e.characteristic_id for e in events]


# --- by hand ---------------------------------------------------------------------------


def test_overdue_at_due_plus_grace_once_per_episode() -> None:
    t = DueTracker()
    t.configure(1, 60.0, now=100.0)  # grace: a quarter, 15 s
    assert t.due_at(1) == 160.0
    assert t.next_deadline() == 175.0
    assert t.expire(174.999) == []
    assert t.expire(175.0) == [SampleOverdue(1, 160.0, 175.0, Severity.WARNING)]
    assert t.next_deadline() is None
    assert t.expire(10_000.0) == []  # one alarm per episode
    assert t.due_at(1) == 160.0  # still due since then


def test_a_sample_rearms_and_makes_the_next_one_due_an_interval_later() -> None:
    t = DueTracker()
    t.configure(1, 60.0, 5.0, now=0.0)
    t.sample_arrived(1, 50.0)
    assert t.due_at(1) == 110.0
    assert t.expire(65.0) == []
    assert t.next_deadline() == 115.0
    assert ids(t.expire(115.0)) == [1]
    t.sample_arrived(1, 200.0)
    assert t.next_deadline() == 265.0
    assert ids(t.expire(265.0)) == [1]


def test_no_overdue_while_the_line_is_stopped_and_an_interval_after_it_runs() -> None:
    t = DueTracker()
    t.configure(1, 60.0, 0.0, now=0.0)
    t.line_changed(1, False, 30.0)
    assert t.due_at(1) is None
    assert t.next_deadline() is None
    assert t.expire(1_000.0) == []
    t.sample_arrived(1, 1_010.0)  # a sample while stopped changes no due time
    assert t.due_at(1) is None
    t.line_changed(1, True, 2_000.0)
    assert t.due_at(1) == 2_060.0
    t.line_changed(1, True, 2_030.0)  # repeated: no change
    assert t.due_at(1) == 2_060.0
    assert ids(t.expire(2_060.0)) == [1]


def test_a_raised_alarm_stays_the_episodes_alarm_across_a_line_stop() -> None:
    t = DueTracker()
    t.configure(1, 10.0, 0.0, now=0.0)
    assert ids(t.expire(10.0)) == [1]
    t.line_changed(1, False, 11.0)
    t.line_changed(1, True, 12.0)
    assert t.expire(100.0) == []
    t.sample_arrived(1, 101.0)
    assert ids(t.expire(111.0)) == [1]


def test_the_event_carries_kind_name_and_configured_severity() -> None:
    t = DueTracker()
    t.configure(4, 8.0, now=0.0, severity=Severity.CRITICAL)
    (event,) = t.expire(10.0)
    assert (event.kind, event.rule_name) == (AlarmKind.OVERDUE, OVERDUE_RULE_NAME)
    assert event.rule_name == "Sample overdue"
    assert (event.due_at, event.overdue_at, event.severity) == (8.0, 10.0, Severity.CRITICAL)


def test_many_characteristics_fall_due_in_order() -> None:
    t = DueTracker()
    for cid in range(1, 6):
        t.configure(cid, float(cid * 10), 0.0, now=0.0)
    t.sample_arrived(2, 15.0)  # 2 now due at 35
    assert ids(t.expire(35.0)) == [1, 3, 2]
    assert t.next_deadline() == 40.0


def test_reconfiguring_keeps_the_clock_and_a_shorter_interval_applies_at_once() -> None:
    t = DueTracker()
    t.configure(1, 100.0, 0.0, now=0.0)
    t.configure(1, 10.0, 0.0, now=5.0)
    assert t.next_deadline() == 10.0
    assert ids(t.expire(10.0)) == [1]


def test_removed_characteristics_raise_nothing() -> None:
    t = DueTracker()
    t.configure(1, 10.0, now=0.0)
    t.remove(1)
    t.remove(99)
    assert t.next_deadline() is None
    assert t.expire(1e9) == []
    t.sample_arrived(1, 5.0)  # untracked: ignored
    assert 1 not in t


@pytest.mark.parametrize(
    ("interval", "grace", "key"),
    [
        (0.0, None, "sample_interval"),
        (-1.0, None, "sample_interval"),
        (float("nan"), None, "sample_interval"),
        (float("inf"), None, "sample_interval"),
        (10.0, -1.0, "overdue_grace"),
        (10.0, float("nan"), "overdue_grace"),
    ],
)
def test_bad_intervals_are_refused_by_name(interval: float, grace: float | None, key: str) -> None:
    with pytest.raises(InvalidInterval) as caught:
        DueTracker().configure(1, interval, grace, now=0.0)
    assert caught.value.key == key


def test_default_grace_is_a_quarter_of_the_interval() -> None:
    assert default_grace(60.0) == 15.0


@pytest.mark.parametrize(
    ("payload", "running"),
    [
        (b"true", True),
        (b" TRUE\n", True),
        (b"1", True),
        ("Running", True),
        (b"false", False),
        (b"0", False),
        (b"", False),
        (b"stopped", False),
        (b"\xff\xfe", False),
        (b"truex", False),
    ],
)
def test_running_values_match_trimmed_text_ignoring_case(
    payload: bytes | str, running: bool
) -> None:
    assert is_running(payload) is running


def test_configured_running_values_replace_the_default() -> None:
    assert is_running(b" auto ", ["AUTO", "Hand"]) is True
    assert is_running(b"true", ["AUTO"]) is False


# --- restart ---------------------------------------------------------------------------


def test_restart_due_from_the_last_stored_sample_not_from_the_restart() -> None:
    t = DueTracker()
    last_sample = W0
    restart_wall = W0 + timedelta(seconds=30)
    t.restore(
        OverdueState.from_last_sample(1, last_sample), 60.0, 10.0, now=7.0, wall_now=restart_wall
    )
    assert t.due_at(1) == 37.0  # 60 s after the sample, 30 s of it gone before the restart
    assert t.next_deadline() == 47.0


def test_an_alarm_that_fell_due_while_down_is_raised_once_on_start() -> None:
    t = DueTracker()
    t.restore(
        OverdueState.from_last_sample(1, W0), 60.0, 10.0, now=0.0, wall_now=W0 + timedelta(hours=2)
    )
    (event,) = t.expire(0.0)
    assert wall_time(event.overdue_at, 0.0, W0 + timedelta(hours=2)) == W0 + timedelta(seconds=70)
    state = t.state(1, 0.5, W0 + timedelta(hours=2, seconds=0.5))
    assert state.raised is True
    again = DueTracker()
    again.restore(state, 60.0, 10.0, now=3.0, wall_now=W0 + timedelta(hours=3))
    assert again.expire(3.0) == []
    assert again.next_deadline() is None


def test_a_stopped_line_stays_stopped_across_a_restart() -> None:
    t = DueTracker()
    t.configure(1, 10.0, now=0.0)
    t.line_changed(1, False, 1.0)
    state = t.state(1, 2.0, W0)
    assert state == OverdueState(1, None, raised=False, running=False)
    again = DueTracker()
    again.restore(state, 10.0, now=0.0, wall_now=W0 + timedelta(hours=1))
    assert again.expire(1e6) == []
    again.line_changed(1, True, 100.0)
    assert again.due_at(1) == 110.0


def test_state_converts_monotonic_to_wall_time() -> None:
    t = DueTracker()
    t.configure(1, 10.0, now=1_000.0)
    t.sample_arrived(1, 1_004.0)
    assert t.state(1, 1_005.0, W0) == OverdueState(1, W0 - timedelta(seconds=1), False, True)


# --- random histories against a naive reference -------------------------------------------


@dataclass
class NaiveClock:
    interval: float
    grace: float
    running: bool = True
    since: float | None = None
    raised: bool = False


class NaiveTracker:
    """Scans every characteristic at every question: obviously right, O(n) per call."""

    def __init__(self) -> None:
        self.clocks: dict[int, NaiveClock] = {}

    def configure(self, cid: int, interval: float, grace: float, now: float) -> None:
        if cid in self.clocks:
            self.clocks[cid].interval, self.clocks[cid].grace = interval, grace
        else:
            self.clocks[cid] = NaiveClock(interval, grace, since=now)

    def sample(self, cid: int, now: float) -> None:
        if cid in self.clocks:
            c = self.clocks[cid]
            c.raised = False
            if c.running:
                c.since = now

    def line(self, cid: int, running: bool, now: float) -> None:
        if cid in self.clocks and self.clocks[cid].running != running:
            c = self.clocks[cid]
            c.running = running
            c.since = now if running else None

    def pending(self) -> list[tuple[float, int]]:
        return sorted(
            (c.since + c.interval + c.grace, cid)
            for cid, c in self.clocks.items()
            if c.running and c.since is not None and not c.raised
        )

    def expire(self, now: float) -> list[tuple[int, float]]:
        out = []
        for at, cid in self.pending():
            if at <= now:
                self.clocks[cid].raised = True
                out.append((cid, at))
        return out

    def next_deadline(self) -> float | None:
        p = self.pending()
        return p[0][0] if p else None

    def due_at(self, cid: int) -> float | None:
        c = self.clocks.get(cid)
        return None if c is None or c.since is None else c.since + c.interval


CIDS = st.integers(1, 6)
Step = tuple[int, tuple[str, int, int, int | None]]
"""(seconds since the previous step, (what, characteristic, number, grace)); "number" is the
interval for configure, the running flag (0/1) for line; unused fields are 0."""

op = st.one_of(
    st.tuples(st.just("configure"), CIDS, st.integers(1, 40), st.none() | st.integers(0, 10)),
    st.tuples(st.just("sample"), CIDS, st.just(0), st.none()),
    st.tuples(st.just("line"), CIDS, st.integers(0, 1), st.none()),
    st.tuples(st.just("expire"), st.just(0), st.just(0), st.none()),
    st.tuples(st.just("remove"), CIDS, st.just(0), st.none()),
)
history = st.lists(st.tuples(st.integers(0, 15), op), max_size=80)


def apply(t: DueTracker, op: tuple[str, int, int, int | None], now: float) -> list[SampleOverdue]:
    """One step on the real tracker; the alarms of an ``expire`` step."""
    name, cid, number, grace = op
    if name == "configure":
        t.configure(cid, float(number), None if grace is None else float(grace), now=now)
    elif name == "sample":
        t.sample_arrived(cid, now)
    elif name == "line":
        t.line_changed(cid, bool(number), now)
    elif name == "remove":
        t.remove(cid)
    else:
        return t.expire(now)
    return []


def apply_naive(
    naive: NaiveTracker, op: tuple[str, int, int, int | None], now: float
) -> list[tuple[int, float]]:
    name, cid, number, grace = op
    if name == "configure":
        naive.configure(cid, float(number), number / 4 if grace is None else float(grace), now)
    elif name == "sample":
        naive.sample(cid, now)
    elif name == "line":
        naive.line(cid, bool(number), now)
    elif name == "remove":
        naive.clocks.pop(cid, None)
    else:
        return naive.expire(now)
    return []


@settings(max_examples=300)
@given(history)
def test_the_heap_agrees_with_the_naive_tracker(steps: list[Step]) -> None:
    t, naive, now = DueTracker(), NaiveTracker(), 0.0
    for dt, step in steps:
        now += dt
        got = [(e.characteristic_id, e.overdue_at) for e in apply(t, step, now)]
        assert got == apply_naive(naive, step, now)
        assert t.next_deadline() == naive.next_deadline()
        assert t.due_at(step[1]) == naive.due_at(step[1])
        assert t.heap_size() <= 2 * len(t) + 64


def play(
    t: DueTracker, steps: list[Step], now: float, wall: datetime, out: list[tuple[int, datetime]]
) -> tuple[float, datetime]:
    """Run ``steps`` from (``now``, ``wall``), adding each alarm's wall-clock time to ``out``."""
    for dt, step in steps:
        now, wall = now + dt, wall + timedelta(seconds=dt)
        out += [
            (e.characteristic_id, wall_time(e.overdue_at, now, wall)) for e in apply(t, step, now)
        ]
    return now, wall


@settings(max_examples=200)
@given(history, st.integers(0, 80), st.integers(0, 500), st.integers(-1_000, 1_000))
def test_a_restart_neither_loses_nor_repeats_an_alarm(
    steps: list[Step], cut: int, downtime: int, base: int
) -> None:
    """One tracker runs through; another is stopped at ``cut``, its states stored, and
    restored ``downtime`` seconds later on a monotonic clock starting elsewhere. Both raise
    the same alarms at the same wall-clock times; those that fell due while down once."""
    cut = min(cut, len(steps))
    whole: list[tuple[int, datetime]] = []
    through = DueTracker()
    now, wall = play(through, steps[:cut], 0.0, W0, whole)
    down_wall = wall + timedelta(seconds=downtime)
    # what the uninterrupted tracker raises while the other is down (one expire at the end)
    whole += [
        (e.characteristic_id, wall_time(e.overdue_at, now + downtime, down_wall))
        for e in through.expire(now + downtime)
    ]
    play(through, steps[cut:], now + downtime, down_wall, whole)

    split: list[tuple[int, datetime]] = []
    first = DueTracker()
    now, wall = play(first, steps[:cut], 0.0, W0, split)
    configured: dict[int, tuple[float, float | None]] = {}  # what the config says
    for _, (name, cid, number, grace) in steps[:cut]:
        if name == "configure":
            configured[cid] = (float(number), None if grace is None else float(grace))
    states = [first.state(cid, now, wall) for cid in first.ids()]
    second = DueTracker()
    for state in states:
        interval, grace = configured[state.characteristic_id]
        second.restore(state, interval, grace, now=float(base), wall_now=down_wall)
    split += [
        (e.characteristic_id, wall_time(e.overdue_at, float(base), down_wall))
        for e in second.expire(float(base))
    ]
    play(second, steps[cut:], float(base), down_wall, split)
    assert split == whole
    assert whole == sorted(set(whole), key=whole.index)  # no alarm twice at one moment


# --- what it costs: counted, not timed (the figures are in docs/spc.md) -----------------------


def test_idle_characteristics_cost_one_wake_each_per_episode_and_none_between() -> None:
    from engine.alarms._bench import overdue_costs

    costs = overdue_costs(2_000)
    assert costs.day_wakes == 2_000  # one alarm each, then nothing until a sample
    assert costs.running_wakes == 0  # samples in time: the bridge never wakes for nothing
    assert costs.heap_size == 2_000  # one entry per characteristic, however many samples
    assert costs.running_samples > 2_000


def test_a_stopped_line_whose_running_topic_left_the_config_runs_after_a_restart() -> None:
    stopped = OverdueState(1, None, raised=False, running=False)
    t = DueTracker()
    t.restore(stopped, 10.0, 0.0, now=50.0, wall_now=W0, running_topic=False)
    assert t.running(1) is True
    assert t.due_at(1) == 60.0
    assert ids(t.expire(60.0)) == [1]


def test_a_running_state_without_a_moment_counts_from_start_up() -> None:
    t = DueTracker()
    t.restore(OverdueState(1, None, raised=False, running=True), 10.0, 0.0, now=5.0, wall_now=W0)
    assert t.due_at(1) == 15.0
