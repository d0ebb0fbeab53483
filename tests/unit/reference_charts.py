"""A deliberately naive reference for the chart families, written from the formulas in
docs/spc.md ("Chart families") and the contract, not from the engine's code.

Every point is recomputed from scratch: its own limits and zones, then every rule by
rescanning the window of zones, then the alarm episodes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

UPPER = ("zone_c_upper", "zone_b_upper", "zone_a_upper", "beyond_ucl")
LOWER = ("zone_c_lower", "zone_b_lower", "zone_a_lower", "beyond_lcl")


@dataclass(frozen=True)
class RefPoint:
    statistic: float
    ucl: float
    lcl: float
    zone: str
    failed: tuple[int, ...]
    upper: float | None = None
    lower: float | None = None


def zone_of(x: float, cl: float, s_up: float, s_down: float, ucl: float, lcl: float) -> str:
    """Zones at CL +/- 1, 2 steps; beyond at the limits; on a line: the inner zone."""
    if x >= cl:
        if x > ucl:
            return "beyond_ucl"
        if x <= cl + s_up:
            return "zone_c_upper"
        return "zone_b_upper" if x <= cl + 2 * s_up else "zone_a_upper"
    if x < lcl:
        return "beyond_lcl"
    if x >= cl - s_down:
        return "zone_c_lower"
    return "zone_b_lower" if x >= cl - 2 * s_down else "zone_a_lower"


def _depth(z: str) -> int:
    return (UPPER.index(z) if z in UPPER else LOWER.index(z)) + 1


def rules_failed(
    xs: Sequence[float], zones: Sequence[str], i: int, rules: dict[int, int]
) -> tuple[int, ...]:
    """Rules (id -> K) that point ``i`` fails, rescanning the points up to it."""
    failed = []
    for rule, k in sorted(rules.items()):
        if rule == 1:
            bad = zones[i] in ("beyond_ucl", "beyond_lcl")
        elif rule in (5, 6):
            window = zones[max(0, i - k) : i + 1]
            need = 3 if rule == 5 else 2
            bad = len(window) == k + 1 and any(
                sum(1 for z in window if z in side and _depth(z) >= need) >= k
                for side in (UPPER, LOWER)
            )
        else:
            if i + 1 < k:
                continue
            zs = zones[i - k + 1 : i + 1]
            pts = xs[i - k + 1 : i + 1]
            steps = [b - a for a, b in itertools.pairwise(pts)]
            if rule == 2:
                bad = all(z in UPPER for z in zs) or all(z in LOWER for z in zs)
            elif rule == 3:
                bad = all(s > 0 for s in steps) or all(s < 0 for s in steps)
            elif rule == 4:
                bad = all(s != 0 for s in steps) and all(
                    (a > 0) != (b > 0) for a, b in itertools.pairwise(steps)
                )
            elif rule == 7:
                bad = all(_depth(z) == 1 for z in zs)
            else:
                bad = all(_depth(z) >= 2 for z in zs)
        if bad:
            failed.append(rule)
    return tuple(failed)


def attribute(
    chart: str,
    samples: Sequence[tuple[int, float]],
    baseline: int,
    rules: dict[int, int],
    inspected: int | None = None,
) -> tuple[float, list[RefPoint]]:
    """Centre line from the first ``baseline`` samples, then each sample's own point,
    limits, zone and failed rules (every sample, the baseline's too, as in Phase I)."""
    base = samples[:baseline]
    if chart == "p":
        cl = sum(d for d, _ in base) / math.fsum(n for _, n in base)
    elif chart == "np":
        assert inspected is not None
        cl = inspected * (sum(d for d, _ in base) / math.fsum(n for _, n in base))
    elif chart == "c":
        cl = sum(c for c, _ in base) / len(base)
    else:
        cl = sum(c for c, _ in base) / math.fsum(u for _, u in base)
    xs, zones, bounds = [], [], []
    for count, size in samples:
        if chart == "p":
            x, s = count / size, math.sqrt(cl * (1 - cl) / size)
        elif chart == "np":
            p_bar = sum(d for d, _ in base) / math.fsum(n for _, n in base)
            x, s = float(count), math.sqrt(size * p_bar * (1 - p_bar))
        elif chart == "c":
            x, s = float(count), math.sqrt(cl)
        else:
            x, s = count / size, math.sqrt(cl / size)
        ucl = cl + 3 * s
        if chart == "p":
            ucl = min(ucl, 1.0)
        lcl = max(cl - 3 * s, 0.0)
        xs.append(x)
        zones.append(zone_of(x, cl, s, s, ucl, lcl))
        bounds.append((ucl, lcl))
    points = [
        RefPoint(xs[i], bounds[i][0], bounds[i][1], zones[i], rules_failed(xs, zones, i, rules))
        for i in range(len(xs))
    ]
    return cl, points


def ewma(
    means: Sequence[float], cl: float, sigma_xbar: float, lam: float, big_l: float
) -> list[RefPoint]:
    """z_i from z_0 = CL for the means after the baseline; limits widen with i."""
    points = []
    z = cl
    for i, x in enumerate(means, start=1):
        z = lam * x + (1 - lam) * z
        width = big_l * sigma_xbar * math.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * i)))
        ucl, lcl = cl + width, cl - width
        beyond = z > ucl or z < lcl
        points.append(
            RefPoint(
                z, ucl, lcl, zone_of(z, cl, width / 3, width / 3, ucl, lcl), (1,) if beyond else ()
            )
        )
    return points


def cusum(
    means: Sequence[float], cl: float, sigma_xbar: float, k: float, h: float
) -> list[RefPoint]:
    """C+ and C- from 0, never reset; a signal while either exceeds h sigma_xbar."""
    points = []
    up = down = 0.0
    interval = h * sigma_xbar
    for x in means:
        up = max(0.0, x - (cl + k * sigma_xbar) + up)
        down = max(0.0, (cl - k * sigma_xbar) - x + down)
        signal = up > interval or down > interval
        if up >= down:
            zone = zone_of(up, 0.0, interval / 3, 0.0, interval, 0.0)
        else:
            zone = zone_of(down, 0.0, interval / 3, 0.0, interval, 0.0).replace("upper", "lower")
            zone = zone.replace("beyond_ucl", "beyond_lcl")
        points.append(
            RefPoint(max(up, down), interval, 0.0, zone, (1,) if signal else (), up, down)
        )
    return points


def episodes(failed: Sequence[tuple[int, ...]]) -> list[tuple[int, int]]:
    """(point index, rule) of each alarm: a rule failing where it did not just before."""
    alarms = []
    previous: tuple[int, ...] = ()
    for i, rules in enumerate(failed):
        alarms += [(i, r) for r in rules if r not in previous]
        previous = rules
    return alarms
