"""How many points per second one engine judges (one core): the Shewhart charts with all
eight rules, and every chart family of docs/spc.md with its default rules."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from engine._engine import CharacteristicEngine
from engine._types import CharacteristicSpec
from engine.charts import FAMILIES

__all__ = ["bench_series", "benchmark", "chart_rates"]


def bench_series(points: int, subgroup_size: int, seed: int = 7) -> list[list[float]]:
    """A process around 10.0 with noise, a shift, a drift and the odd outlier (so rules fire)."""
    rng = random.Random(seed)
    series: list[list[float]] = []
    for i in range(points):
        phase = (i // 500) % 4
        centre = 10.0 + (0.01 if phase == 1 else 0.0) + (0.00004 * (i % 500) if phase == 3 else 0)
        group = [rng.gauss(centre, 0.01) for _ in range(subgroup_size)]
        if i % 997 == 0:
            group[0] += 0.08
        series.append(group)
    return series


def benchmark(points: int = 200_000, subgroup_size: int = 1, *, repeat: int = 3) -> float:
    """Points (samples) per second through ``add_readings``, Nelson's eight rules on.

    Each point is one whole subgroup; limits come from the default 25-subgroup baseline.
    The best of ``repeat`` runs is returned (the least disturbed by other processes).
    """
    series = bench_series(points, subgroup_size)
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    best = 0.0
    for _ in range(repeat):
        engine = CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=subgroup_size))
        add = engine.add_readings
        started = time.perf_counter()
        for group in series:
            add(group, ts)
        elapsed = time.perf_counter() - started
        best = max(best, points / elapsed)
    return best


def reading_rate(points: int = 100_000, subgroup_size: int = 5) -> float:
    """Readings per second when each reading arrives on its own (``add_reading``)."""
    series = bench_series(points, subgroup_size)
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    engine = CharacteristicEngine(CharacteristicSpec(id=1, subgroup_size=subgroup_size))
    add = engine.add_reading
    flat = [v for group in series for v in group]
    started = time.perf_counter()
    for value in flat:
        add(value, ts)
    return len(flat) / (time.perf_counter() - started)


def _count_series(chart: str, points: int, seed: int = 7) -> list[tuple[int, float | None]]:
    # sizes as JSON gives them: integers inspected, units as floats
    """Counts of a process that shifts now and then (so rule 1 fires), with sizes that vary
    for p and u (so every point has its own limits)."""
    rng = random.Random(seed)
    series: list[tuple[int, float | None]] = []
    for i in range(points):
        worse = 2.0 if (i // 700) % 5 == 4 else 1.0
        if chart in ("p", "np"):
            n = 50 if chart == "np" else rng.randint(40, 60)
            d = sum(1 for _ in range(n) if rng.random() < 0.05 * worse)
            series.append((d, n))
        elif chart == "c":
            series.append((int(rng.gauss(9.0 * worse, 3.0)) % 40, None))
        else:
            units = rng.choice((4.0, 5.0, 5.5, 6.0))
            series.append((int(rng.gauss(10.0 * worse, 3.0)) % 50, units))
    return series


def chart_rates(points: int = 100_000, *, repeat: int = 5) -> dict[str, list[float]]:
    """Points per CPU second of one engine of each chart family (n = 1 for imr, EWMA and
    CUSUM, 2 for xbar_r/xbar_s; one count per call for the attribute charts), ``repeat`` runs
    each. CPU time of this process (``time.process_time``): on a machine shared with other
    work it is far steadier than the wall clock, and one engine uses one core."""
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    rates: dict[str, list[float]] = {}
    values = [group[0] for group in bench_series(points, 1)]
    for name, family in FAMILIES.items():
        n = 2 if name in ("xbar_r", "xbar_s") else 1
        spec = CharacteristicSpec(
            id=1, subgroup_size=n, chart=name, inspected=50 if name == "np" else None
        )
        run: Callable[[CharacteristicEngine], None]
        if family.kind == "attribute":
            counts = _count_series(name, points)

            def run(
                engine: CharacteristicEngine, counts: list[tuple[int, float | None]] = counts
            ) -> None:
                add = engine.add_count
                for c, size in counts:
                    add(c, size, ts)

        else:
            groups = [[v] for v in values] if n == 1 else bench_series(points, n)

            def run(engine: CharacteristicEngine, groups: list[list[float]] = groups) -> None:
                add = engine.add_readings
                for group in groups:
                    add(group, ts)

        rates[name] = []
        for _ in range(repeat):
            engine = CharacteristicEngine(spec)
            started = time.process_time()
            run(engine)
            rates[name].append(points / (time.process_time() - started))
    return rates


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Benchmark the SPC engine on one core.")
    parser.add_argument("--points", type=int, default=200_000, help="points per run")
    args = parser.parse_args()
    print(f"SPC engine, Nelson's eight rules, {args.points} points a run, best of 3")
    for n in (1, 5, 25):
        rate = benchmark(args.points, n)
        print(f"  n = {n:2}: {rate:10,.0f} points/s  ({rate * n:12,.0f} readings/s)")
    rate = reading_rate(args.points // 2, 5)
    print(f"  n =  5, one reading at a time: {rate:10,.0f} readings/s")
    print(f"Each chart family, default rules, {args.points // 2} points a run, 5 runs, CPU time")
    for name, runs in chart_rates(args.points // 2).items():
        median, best = statistics.median(runs), max(runs)
        print(f"  {name:7}: median {median:10,.0f} points/s  (best {best:10,.0f})")


if __name__ == "__main__":
    main()
