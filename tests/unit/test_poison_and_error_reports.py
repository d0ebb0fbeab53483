"""Poison messages found by bisection (bridge/_poison.py) and the bounded errors topic
(bridge/_error_reports.py), with fakes: no broker, no database."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge._error_reports import ErrorReporter
from bridge._poison import isolate
from bridge.errors import StoreUnavailable

T = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


class FakeStore:
    """Commits a range of messages unless it holds a poison one; records every commit."""

    def __init__(self, poison: set[int]) -> None:
        self.poison = poison
        self.committed: list[int] = []
        self.transactions = 0

    async def write(self, lo: int, hi: int) -> None:
        self.transactions += 1
        bad = self.poison & set(range(lo, hi))
        if bad:
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, f"message {min(bad)}")
        self.committed.extend(range(lo, hi))


@pytest.mark.parametrize(
    ("n", "poison"),
    [
        (1, set()),
        (500, set()),
        (1, {0}),
        (500, {0}),
        (500, {499}),
        (500, {250}),
        (500, {3, 4, 400}),
        (7, {0, 1, 2, 3, 4, 5, 6}),
    ],
)
async def test_bisection_stores_every_good_message_once_and_names_each_poison(
    n: int, poison: set[int]
) -> None:
    store = FakeStore(poison)
    found = await isolate(0, n, store.write)
    assert [k for k, _ in found] == sorted(poison)
    assert all(isinstance(exc, UnicodeEncodeError) for _, exc in found)
    assert sorted(store.committed) == [k for k in range(n) if k not in poison]  # none twice
    if len(poison) == 1:  # about 2 log2(n) transactions, not n
        assert store.transactions <= 2 * max(1, n.bit_length()) + 1


async def test_an_outage_given_up_on_is_not_the_messages_fault() -> None:
    async def write(lo: int, hi: int) -> None:
        raise StoreUnavailable("sqlite://", "disk full")

    with pytest.raises(StoreUnavailable):
        await isolate(0, 10, write)


async def test_an_empty_range_writes_nothing() -> None:
    store = FakeStore(set())
    assert await isolate(3, 3, store.write) == []
    assert store.transactions == 0


# --- the errors topic ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def reporter(**kw: Any) -> tuple[ErrorReporter, list[dict[str, Any]], Clock, list[Any]]:
    sent: list[dict[str, Any]] = []
    clock = Clock()
    timers: list[Any] = []

    def schedule(delay: float, callback: Callable[[], None]) -> Any:
        timers.append((clock.now + delay, callback))
        return _Timer()

    errors = ErrorReporter(
        lambda data: sent.append(json.loads(data)),
        lambda: T,
        monotonic=clock,
        schedule=schedule,
        **kw,
    )
    return errors, sent, clock, timers


class _Timer:
    def cancel(self) -> None:
        pass


def test_the_first_of_each_kind_goes_out_at_once_repeats_as_one_summary() -> None:
    errors, sent, clock, timers = reporter()
    for _ in range(1000):
        errors.report("p/char/99/reading", b"1.0", "unknown characteristic 99")
    assert len(sent) == 1
    assert sent[0]["count"] == 1
    assert len(timers) == 1
    assert timers[0][0] == 5.0
    clock.now = 5.0
    timers[0][1]()
    assert len(sent) == 2
    assert sent[1]["count"] == 999
    assert (sent[0]["summary"], sent[1]["summary"]) == (False, True)
    assert (sent[1]["topic"], sent[1]["reason"]) == ("p/char/99/reading", sent[0]["reason"])
    clock.now = 6.0  # a new window: the first goes out at once again
    errors.report("p/char/99/reading", b"1.0", "unknown characteristic 99")
    assert len(sent) == 3
    assert sent[2]["count"] == 1


def test_twenty_thousand_unknown_ids_make_a_bounded_number_of_messages() -> None:
    errors, sent, clock, _timers = reporter()
    for i in range(20_000):
        clock.now = i * 3.4 / 20_000  # 3.4 s, as the issue measured
        errors.report(f"p/char/{1000 + i}/reading", b"1.0", f"unknown characteristic {1000 + i}")
    errors.flush()
    assert len(sent) <= 10 + 50 + 1  # burst + coalesced keys + one summary of the rest
    assert sum(m["count"] for m in sent) == 20_000
    rest = sent[-1]
    assert rest["topic"] == ""
    assert rest["count"] == 20_000 - 60
    assert "20000" not in rest["reason"]
    assert "19940 more" in rest["reason"]


def test_the_bridges_own_conditions_always_go_out() -> None:
    errors, sent, _, _ = reporter(burst=1)
    errors.report("a", b"", "x")
    errors.report("b", b"", "y")  # over the burst: counted
    errors.report("", b"", "database unavailable, retrying: disk full")
    assert [m["reason"] for m in sent] == ["x", "database unavailable, retrying: disk full"]


def test_echoed_fields_are_cut_short() -> None:
    errors, sent, _, _ = reporter()
    errors.report("t/" * 10_000, b"x" * 5_000_000, "r" * 5_000_000)
    [message] = sent
    assert len(json.dumps(message)) < 1200
    assert message["payload"].endswith("...")
    assert message["reason"].endswith("...")


def test_without_a_loop_the_next_report_after_the_window_flushes() -> None:
    sent: list[dict[str, Any]] = []
    clock = Clock()
    errors = ErrorReporter(lambda d: sent.append(json.loads(d)), lambda: T, monotonic=clock)
    errors.report("a", b"", "x")
    errors.report("a", b"", "x")
    clock.now = 10.0
    errors.report("a", b"", "x")
    assert [m["count"] for m in sent] == [1, 1, 1]  # first, the summary of one repeat, first
