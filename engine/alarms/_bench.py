"""What the due-time tracker costs (docs/spc.md, "Alarm workflow: the pure core"): per
event, per idle second, per characteristic. ``python -m engine.alarms._bench``.

CPU time of this process (``time.process_time``), steadier than the wall clock on a shared
machine. The clock the tracker is fed is simulated: a day passes in well under a second.
"""

from __future__ import annotations

import random
import time
import tracemalloc
from dataclasses import dataclass

from engine.alarms._overdue import DueTracker

__all__ = ["OverdueCosts", "overdue_costs"]


@dataclass(frozen=True, slots=True)
class OverdueCosts:
    characteristics: int
    configure_us: float
    """CPU microseconds per ``configure``."""
    sample_us: float
    """Per ``sample_arrived`` (random characteristics, on a full heap)."""
    idle_expire_us: float
    """Per ``expire(now)`` + ``next_deadline()`` when nothing is due (a spurious wake)."""
    bytes_per_characteristic: float
    day_wakes: int
    """Wake-ups in a simulated day with no readings at all (each raises one alarm or more:
    one per characteristic and episode, and without readings the episode never ends)."""
    day_cpu_s: float
    """CPU seconds for that whole day, wakes and alarms included."""
    running_samples: int
    """Samples in a simulated hour where every characteristic samples on time."""
    running_wakes: int
    """Wake-ups in that hour (none is due: every sample comes in time)."""
    running_cpu_s: float
    """CPU seconds of that hour's tracker calls (samples, wakes)."""
    heap_size: int
    """Heap entries after that hour (live and stale)."""


def _intervals(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.choice((30, 60, 120, 300, 600, 900, 1800, 3600))) for _ in range(n)]


def overdue_costs(n: int = 10_000, seed: int = 7) -> OverdueCosts:
    intervals = _intervals(n, seed)
    rng = random.Random(seed)

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracker = DueTracker()
    started = time.process_time()
    for cid, interval in enumerate(intervals, start=1):
        tracker.configure(cid, interval, now=0.0)
    configure_s = time.process_time() - started
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()

    events = 200_000
    cids = [rng.randint(1, n) for _ in range(events)]
    started = time.process_time()
    for i, cid in enumerate(cids):
        tracker.sample_arrived(cid, 1.0 + i * 1e-4)
    sample_s = time.process_time() - started

    calls = 200_000
    now = 21.0  # before any deadline (the shortest is 30 s + 7.5 s after the last sample)
    started = time.process_time()
    for _ in range(calls):
        tracker.expire(now)
        tracker.next_deadline()
    idle_s = time.process_time() - started

    # a day without readings: the bridge sleeps until next_deadline and expires then; the
    # clocks start at scattered moments (as after a restart), so every alarm is its own wake
    quiet = DueTracker()
    for cid, interval in enumerate(intervals, start=1):
        quiet.configure(cid, interval, now=rng.random() * interval)
    wakes = 0
    started = time.process_time()
    deadline = quiet.next_deadline()
    while deadline is not None and deadline <= 86_400.0:
        wakes += 1
        quiet.expire(deadline)
        deadline = quiet.next_deadline()
    day_s = time.process_time() - started

    # an hour of every characteristic sampling on time (90 % of its interval): the samples
    # and the wakes their postponed entries cause
    busy = DueTracker()
    for cid, interval in enumerate(intervals, start=1):
        busy.configure(cid, interval, now=0.0)
    # each sample is followed by next_deadline(), as the bridge re-arms its one timer
    arrivals = sorted(
        (k * 0.9 * interval + rng.random(), cid)
        for cid, interval in enumerate(intervals, start=1)
        for k in range(1, int(3_600 / (0.9 * interval)) + 1)
    )
    busy_wakes = 0
    started = time.process_time()
    deadline = busy.next_deadline()
    for at, cid in arrivals:
        while deadline is not None and deadline <= at:
            busy_wakes += 1
            busy.expire(deadline)
            deadline = busy.next_deadline()
        busy.sample_arrived(cid, at)
        deadline = busy.next_deadline()
    busy_s = time.process_time() - started

    return OverdueCosts(
        characteristics=n,
        configure_us=configure_s / n * 1e6,
        sample_us=sample_s / events * 1e6,
        idle_expire_us=idle_s / calls * 1e6,
        bytes_per_characteristic=used / n,
        day_wakes=wakes,
        day_cpu_s=day_s,
        running_samples=len(arrivals),
        running_wakes=busy_wakes,
        running_cpu_s=busy_s,
        heap_size=busy.heap_size(),
    )


def main() -> None:
    for n in (1_000, 10_000, 100_000):
        c = overdue_costs(n)
        print(
            f"{n:7,} characteristics: configure {c.configure_us:5.2f} us, sample "
            f"{c.sample_us:5.2f} us, idle expire+next_deadline {c.idle_expire_us:5.2f} us, "
            f"{c.bytes_per_characteristic:4.0f} B each"
        )
        print(
            f"         a day without readings: {c.day_wakes:,} wakes, {c.day_cpu_s:.3f} s CPU "
            f"({c.day_cpu_s / 86_400 * 100:.5f} % of a core)"
        )
        per_sample = c.running_cpu_s / c.running_samples * 1e6
        print(
            f"         an hour sampling on time: {c.running_samples:,} samples, "
            f"{c.running_wakes:,} wakes, {per_sample:.2f} us a sample with next_deadline, "
            f"heap {c.heap_size:,}"
        )


if __name__ == "__main__":
    main()
