"""Spec alarms (docs/spc.md, "Alarm workflow: the pure core"): out_of_spec and one alarm
per episode, checked by hand and against a naive reference on random series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from engine import Severity
from engine.alarms import (
    SPEC_RULE_NAME,
    AlarmKind,
    SpecViolationRaised,
    SpecWatch,
    out_of_spec,
)

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def test_a_reading_on_a_limit_is_within_spec() -> None:
    assert out_of_spec([10.0, 12.0], usl=12.0, lsl=10.0) is False
    assert out_of_spec([12.0000001], usl=12.0, lsl=10.0) is True
    assert out_of_spec([11.0, 9.99], usl=12.0, lsl=10.0) is True


def test_without_spec_limits_out_of_spec_is_none() -> None:
    assert out_of_spec([1e9], usl=None, lsl=None) is None


def test_a_one_sided_spec_judges_its_side_only() -> None:
    assert out_of_spec([-1e9], usl=5.0, lsl=None) is False
    assert out_of_spec([5.5], usl=5.0, lsl=None) is True
    assert out_of_spec([1e9], usl=None, lsl=0.0) is False
    assert out_of_spec([-0.1], usl=None, lsl=0.0) is True


def test_one_alarm_per_episode_rearmed_by_a_sample_wholly_within_spec() -> None:
    watch = SpecWatch(3, usl=12.0, lsl=10.0)
    series = [[11.0], [12.5, 11.0], [13.0], [11.0, 9.5], [11.0, 11.5], [9.0]]
    judged = [
        watch.judge(seq, values, T0 + timedelta(seconds=seq))
        for seq, values in enumerate(series, start=1)
    ]
    assert [j.out_of_spec for j in judged] == [False, True, True, True, False, True]
    raised = [j.raised for j in judged if j.raised is not None]
    assert raised == [
        SpecViolationRaised(3, 2, Severity.CRITICAL, T0 + timedelta(seconds=2), 12.0, 10.0, 12.5),
        SpecViolationRaised(3, 6, Severity.CRITICAL, T0 + timedelta(seconds=6), 12.0, 10.0, 9.0),
    ]
    assert raised[0].kind is AlarmKind.SPEC
    assert raised[0].rule_name == SPEC_RULE_NAME == "Beyond specification"


def test_the_worst_reading_is_the_one_furthest_beyond_its_limit() -> None:
    watch = SpecWatch(1, usl=12.0, lsl=10.0)
    raised = watch.judge(1, [12.2, 9.5, 12.4], T0).raised
    assert raised is not None
    assert raised.worst == 9.5


def test_severity_is_configurable() -> None:
    watch = SpecWatch(1, usl=1.0, lsl=None, severity=Severity.WARNING)
    raised = watch.judge(7, [2.0], T0).raised
    assert raised is not None
    assert raised.severity is Severity.WARNING


def test_a_restored_episode_is_not_raised_again() -> None:
    before = SpecWatch(1, usl=1.0, lsl=0.0)
    assert before.judge(1, [2.0], T0).raised is not None
    after = SpecWatch(1, usl=1.0, lsl=0.0, in_episode=before.in_episode)
    assert after.judge(2, [3.0], T0).raised is None
    assert after.judge(3, [0.5], T0).raised is None
    assert after.judge(4, [3.0], T0).raised is not None


def test_removing_the_spec_limits_ends_the_episode() -> None:
    watch = SpecWatch(1, usl=1.0, lsl=0.0)
    watch.judge(1, [2.0], T0)
    watch.usl = watch.lsl = None
    assert watch.judge(2, [2.0], T0).out_of_spec is None
    watch.usl = 1.0
    assert watch.judge(3, [2.0], T0).raised is not None


# --- against a naive reference ---------------------------------------------------------


def naive_spec_alarms(
    series: list[list[float]], usl: float | None, lsl: float | None
) -> tuple[list[bool | None], list[int]]:
    """Judge each sample on its own; an alarm where a sample is out and the one before not."""
    flags: list[bool | None] = []
    for values in series:
        if usl is None and lsl is None:
            flags.append(None)
            continue
        out = False
        for v in values:
            if usl is not None and v > usl:
                out = True
            if lsl is not None and v < lsl:
                out = True
        flags.append(out)
    alarms = [i + 1 for i, flag in enumerate(flags) if flag and (i == 0 or not flags[i - 1])]
    return flags, alarms


values = st.integers(-20, 20).map(lambda i: i / 2)
limit = st.none() | st.integers(-20, 20).map(lambda i: i / 2)


@given(st.lists(st.lists(values, min_size=1, max_size=5), max_size=60), limit, limit)
def test_episodes_match_the_naive_reference(
    series: list[list[float]], usl: float | None, lsl: float | None
) -> None:
    watch = SpecWatch(9, usl=usl, lsl=lsl)
    judged = [watch.judge(seq, g, T0) for seq, g in enumerate(series, start=1)]
    flags, alarms = naive_spec_alarms(series, usl, lsl)
    assert [j.out_of_spec for j in judged] == flags
    assert [j.raised.sample_seq for j in judged if j.raised is not None] == alarms


@given(
    st.lists(st.lists(values, min_size=1, max_size=3), min_size=1, max_size=40), st.integers(0, 40)
)
def test_a_restart_anywhere_changes_no_alarm(series: list[list[float]], cut: int) -> None:
    cut = min(cut, len(series))
    whole = SpecWatch(1, usl=5.0, lsl=-5.0)
    expected = [whole.judge(s, g, T0).raised for s, g in enumerate(series, start=1)]
    first = SpecWatch(1, usl=5.0, lsl=-5.0)
    got = [first.judge(s, g, T0).raised for s, g in enumerate(series[:cut], start=1)]
    second = SpecWatch(1, usl=5.0, lsl=-5.0, in_episode=first.in_episode)
    got += [second.judge(s, g, T0).raised for s, g in enumerate(series[cut:], start=cut + 1)]
    assert got == expected


# --- the core stays pure --------------------------------------------------------------------


def test_the_alarm_core_imports_no_io_and_reads_no_clock() -> None:
    import re
    import subprocess
    import sys
    from pathlib import Path

    probe = (
        "import sys, engine.alarms; "
        "print(sorted(m for m in ('asyncio', 'paho', 'sqlalchemy', 'bridge', 'socket') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    package = Path(__file__).resolve().parents[2] / "engine" / "alarms"
    clock = re.compile(r"\.(now|utcnow|today|time|monotonic|perf_counter|process_time)\(")
    readers = [
        p.name
        for p in package.glob("*.py")
        if p.name != "_bench.py" and clock.search(p.read_text())
    ]
    assert readers == []
