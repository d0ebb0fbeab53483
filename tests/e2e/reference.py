"""An independent reading of the SPC conventions (docs/spc.md), for expected values only.

Written from the contract's text, not from ``engine/``: constants from the printed tables
(ASTM E2587, Montgomery Appendix VI), X-bar limits CL +/- 3 sigma/sqrt(n), zones with the
inner-zone convention, Nelson's eight rules with Minitab's run lengths, one violation per
episode (re-armed by a passing point).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Printed table values: n -> (d2, d3, c4). d2 and d3 to three decimals, c4 to four.
TABLE: dict[int, tuple[float, float, float]] = {
    2: (1.128, 0.853, 0.7979),
    3: (1.693, 0.888, 0.8862),
    4: (2.059, 0.880, 0.9213),
    5: (2.326, 0.864, 0.9400),
    6: (2.534, 0.848, 0.9515),
    7: (2.704, 0.833, 0.9594),
    8: (2.847, 0.820, 0.9650),
    9: (2.970, 0.808, 0.9693),
    10: (3.078, 0.797, 0.9727),
    11: (3.173, 0.787, 0.9754),
    12: (3.258, 0.778, 0.9776),
    13: (3.336, 0.770, 0.9794),
    14: (3.407, 0.763, 0.9810),
    15: (3.472, 0.756, 0.9823),
    16: (3.532, 0.750, 0.9835),
    17: (3.588, 0.744, 0.9845),
    18: (3.640, 0.739, 0.9854),
    19: (3.689, 0.734, 0.9862),
    20: (3.735, 0.729, 0.9869),
    21: (3.778, 0.724, 0.9876),
    22: (3.819, 0.720, 0.9882),
    23: (3.858, 0.716, 0.9887),
    24: (3.895, 0.712, 0.9892),
    25: (3.931, 0.708, 0.9896),
}
MR_D2 = 1.128
MR_D4 = 3.267

NELSON: dict[int, int] = {1: 1, 2: 9, 3: 6, 4: 14, 5: 2, 6: 4, 7: 15, 8: 8}
WESTERN_ELECTRIC: dict[int, int] = {1: 1, 2: 8, 5: 2, 6: 4}

UPPER = {"beyond_ucl", "zone_a_upper", "zone_b_upper", "zone_c_upper"}
LOWER = {"beyond_lcl", "zone_a_lower", "zone_b_lower", "zone_c_lower"}
ZONE_C = {"zone_c_upper", "zone_c_lower"}
A_UP = {"beyond_ucl", "zone_a_upper"}
A_LO = {"beyond_lcl", "zone_a_lower"}
B_UP = A_UP | {"zone_b_upper"}
B_LO = A_LO | {"zone_b_lower"}


def rel_close(a: float | None, b: float | None, tol: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= tol * max(abs(a), abs(b), 1e-300) or a == b


def mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def stdev(xs: Sequence[float]) -> float:
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def secondary(values: Sequence[float], previous: float | None) -> float | None:
    """Moving range (n = 1, None for the first), range (2..10) or S (over 10)."""
    n = len(values)
    if n == 1:
        return None if previous is None else abs(values[0] - previous)
    if n <= 10:
        return max(values) - min(values)
    return stdev(values)


@dataclass(frozen=True)
class Limits:
    center_line: float
    ucl: float
    lcl: float
    sigma: float
    method: str
    sample_count: int
    r_center: float
    r_ucl: float
    r_lcl: float
    capability: dict[str, float | None] | None
    n: int

    @property
    def s(self) -> float:
        return self.sigma / math.sqrt(self.n)


def capability(
    mu: float, sigma: float, readings: Sequence[float], usl: float | None, lsl: float | None
) -> dict[str, float | None] | None:
    if usl is None and lsl is None:
        return None
    overall = stdev(readings)

    def indices(sd: float) -> tuple[float | None, float]:
        sides = []
        if usl is not None:
            sides.append((usl - mu) / (3 * sd))
        if lsl is not None:
            sides.append((mu - lsl) / (3 * sd))
        both = (usl - lsl) / (6 * sd) if usl is not None and lsl is not None else None
        return both, min(sides)

    cp, cpk = indices(sigma)
    pp, ppk = indices(overall)
    return {"cp": cp, "cpk": cpk, "pp": pp, "ppk": ppk}


def compute_limits(
    subgroups: Sequence[Sequence[float]],
    n: int,
    usl: float | None = None,
    lsl: float | None = None,
    table: dict[int, tuple[float, float, float]] = TABLE,
) -> Limits:
    means = [mean(g) for g in subgroups]
    cl = mean(means)
    readings = [x for g in subgroups for x in g]
    if n == 1:
        mrs = [abs(b - a) for a, b in itertools.pairwise(means)]
        r_bar = mean(mrs)
        sigma = r_bar / MR_D2
        method, r_ucl, r_lcl = "moving_range", MR_D4 * r_bar, 0.0
    elif n <= 10:
        d2, d3, _ = table[n]
        r_bar = mean([max(g) - min(g) for g in subgroups])
        sigma = r_bar / d2
        method = "r_bar_d2"
        r_ucl, r_lcl = (1 + 3 * d3 / d2) * r_bar, max(0.0, 1 - 3 * d3 / d2) * r_bar
    else:
        c4 = table[n][2]
        r_bar = mean([stdev(g) for g in subgroups])
        sigma = r_bar / c4
        method = "s_bar_c4"
        k = 3 * math.sqrt(1 - c4 * c4) / c4
        r_ucl, r_lcl = (1 + k) * r_bar, max(0.0, 1 - k) * r_bar
    half = 3 * sigma / math.sqrt(n)
    return Limits(
        cl,
        cl + half,
        cl - half,
        sigma,
        method,
        len(subgroups),
        r_bar,
        r_ucl,
        r_lcl,
        capability(cl, sigma, readings, usl, lsl),
        n,
    )


def limits_from_payload(p: dict[str, Any], n: int) -> Limits:
    """Limits as a ``control_limits`` payload states them (to judge with the bridge's own)."""
    r = p["range"]
    return Limits(
        p["center_line"],
        p["ucl"],
        p["lcl"],
        p["sigma"],
        p["method"],
        p["sample_count"],
        r["center_line"],
        r["ucl"],
        r["lcl"],
        p["capability"],
        n,
    )


def zone(x: float, lim: Limits) -> str:
    cl, s = lim.center_line, lim.s
    if x > lim.ucl:
        return "beyond_ucl"
    if x > cl + 2 * s:
        return "zone_a_upper"
    if x > cl + s:
        return "zone_b_upper"
    if x >= cl:
        return "zone_c_upper"
    if x >= cl - s:
        return "zone_c_lower"
    if x >= cl - 2 * s:
        return "zone_b_lower"
    if x >= lim.lcl:
        return "zone_a_lower"
    return "beyond_lcl"


def x_rule_fails(rule: int, k: int, xs: Sequence[float], zs: Sequence[str]) -> bool:
    """Does the last point of ``xs`` (zones ``zs``) fail ``rule`` with run length ``k``?"""
    count = len(xs)
    if rule == 1:
        return zs[-1] in ("beyond_ucl", "beyond_lcl")
    if rule in (5, 6):
        window = k + 1
        if count < window:
            return False
        last = zs[-window:]
        up, lo = (A_UP, A_LO) if rule == 5 else (B_UP, B_LO)
        return sum(z in up for z in last) >= k or sum(z in lo for z in last) >= k
    if count < k:
        return False
    last_z = zs[-k:]
    last_x = xs[-k:]
    if rule == 2:
        return all(z in UPPER for z in last_z) or all(z in LOWER for z in last_z)
    steps = [b - a for a, b in itertools.pairwise(last_x)]
    if rule == 3:
        return all(d > 0 for d in steps) or all(d < 0 for d in steps)
    if rule == 4:
        return all(d != 0 for d in steps) and all(
            (a > 0) != (b > 0) for a, b in itertools.pairwise(steps)
        )
    if rule == 7:
        return all(z in ZONE_C for z in last_z)
    if rule == 8:
        return all(z not in ZONE_C for z in last_z)
    raise ValueError(rule)


@dataclass
class Point:
    index: int
    value: float
    values: list[float]
    range: float | None
    zone: str | None = None
    failed_rules: list[int] = field(default_factory=list)
    range_failed_rules: list[int] = field(default_factory=list)

    @property
    def in_control(self) -> bool | None:
        if self.zone is None:
            return None
        return not self.failed_rules and not self.range_failed_rules


def make_points(
    subgroups: Sequence[Sequence[float]], start_previous: float | None = None
) -> list[Point]:
    points = []
    previous = start_previous
    for i, g in enumerate(subgroups):
        points.append(Point(i, mean(g), list(g), secondary(g, previous)))
        previous = g[-1] if len(g) == 1 else None
    return points


def judge(points: list[Point], i: int, lim: Limits, rules: dict[int, int]) -> None:
    """Set zone and failed rules of point ``i``, its window classified against ``lim``."""
    xs = [p.value for p in points[: i + 1]]
    zs = [zone(x, lim) for x in xs]
    p = points[i]
    p.zone = zs[-1]
    p.failed_rules = sorted(r for r, k in rules.items() if x_rule_fails(r, k, xs, zs))
    p.range_failed_rules = []
    if 1 in rules and p.range is not None and (p.range > lim.r_ucl or p.range < lim.r_lcl):
        p.range_failed_rules = [1]


def phase_one(
    subgroups: Sequence[Sequence[float]],
    n: int,
    baseline: int,
    rules: dict[int, int],
    usl: float | None = None,
    lsl: float | None = None,
) -> tuple[Limits, list[Point]]:
    """``openspc analyze``: limits from the first ``baseline`` subgroups, every point judged."""
    lim = compute_limits(subgroups[:baseline], n, usl, lsl)
    points = make_points(subgroups)
    for i in range(len(points)):
        judge(points, i, lim, rules)
    return lim, points


@dataclass
class Violation:
    index: int
    rule_id: int
    chart: str


def stream(
    points: list[Point],
    schedule: Sequence[tuple[int, Limits]],
    rules: dict[int, int],
) -> list[Violation]:
    """Judge points live: ``schedule`` gives (first judged index, limits in force from it).

    Points before the first entry are the baseline (not judged). Returns the violations,
    one per episode of each (chart, rule).
    """
    violations: list[Violation] = []
    failing: set[tuple[str, int]] = set()
    first = schedule[0][0]
    for i in range(first, len(points)):
        lim = [lim for start, lim in schedule if start <= i][-1]
        judge(points, i, lim, rules)
        now = {("x", r) for r in points[i].failed_rules}
        now |= {("range", r) for r in points[i].range_failed_rules}
        for chart, rule in sorted(now - failing, key=lambda cr: (cr[0] != "x", cr[1])):
            violations.append(Violation(i, rule, chart))
        failing = now
    return violations
