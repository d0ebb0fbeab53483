"""A deliberately naive SPC reference, written from the definitions in docs/spc.md.

It rescans every window for every point, with no counters or bit masks, so the tests can
compare the engine's incremental evaluation against something obviously right.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

UPPER_ZONES = ("zone_c_upper", "zone_b_upper", "zone_a_upper", "beyond_ucl")
LOWER_ZONES = ("zone_c_lower", "zone_b_lower", "zone_a_lower", "beyond_lcl")


@dataclass(frozen=True)
class RefLimits:
    center_line: float
    ucl: float
    lcl: float
    up: float  # width of one zone above CL
    down: float  # width of one zone below CL
    range_ucl: float
    range_lcl: float


def point(values: Sequence[float], previous: float | None) -> tuple[float, float | None]:
    """The plotted value and the secondary statistic of one subgroup."""
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None if previous is None else abs(mean - previous)
    if n <= 10:
        return mean, max(values) - min(values)
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def zone(x: float, lim: RefLimits) -> str:
    cl = lim.center_line
    if x >= cl:
        for k, name in ((1, "zone_c_upper"), (2, "zone_b_upper")):
            if x <= cl + k * lim.up:
                return name
        return "zone_a_upper" if x <= lim.ucl else "beyond_ucl"
    for k, name in ((1, "zone_c_lower"), (2, "zone_b_lower")):
        if x >= cl - k * lim.down:
            return name
    return "zone_a_lower" if x >= lim.lcl else "beyond_lcl"


def depth(z: str) -> int:
    """1 for zone C, 2 for B, 3 for A, 4 beyond."""
    return (UPPER_ZONES.index(z) if z in UPPER_ZONES else LOWER_ZONES.index(z)) + 1


def failed_rules(xs: Sequence[float], i: int, lim: RefLimits, rules: dict[int, int]) -> list[int]:
    """Rules (id -> K) that point ``i`` fails, looking back over ``xs[: i + 1]``."""
    zones = [zone(x, lim) for x in xs[: i + 1]]
    failed = []
    for rule_id in sorted(rules):
        k = rules[rule_id]
        window = k + 1 if rule_id in (5, 6) else k
        if i + 1 < window:
            continue
        zs = zones[i + 1 - window : i + 1]
        pts = xs[i + 1 - window : i + 1]
        steps = [b - a for a, b in itertools.pairwise(pts)]
        upper = [z in UPPER_ZONES for z in zs]
        if rule_id == 1:
            hit = zs[-1] in ("beyond_ucl", "beyond_lcl")
        elif rule_id == 2:
            hit = all(upper) or not any(upper)
        elif rule_id == 3:
            hit = all(s > 0 for s in steps) or all(s < 0 for s in steps)
        elif rule_id == 4:
            hit = all(s != 0 for s in steps) and all(
                (a > 0) != (b > 0) for a, b in itertools.pairwise(steps)
            )
        elif rule_id in (5, 6):
            line = 3 if rule_id == 5 else 2
            ups = sum(1 for z in zs if z in UPPER_ZONES and depth(z) >= line)
            downs = sum(1 for z in zs if z in LOWER_ZONES and depth(z) >= line)
            hit = ups >= k or downs >= k
        elif rule_id == 7:
            hit = all(depth(z) == 1 for z in zs)
        else:
            hit = all(depth(z) >= 2 for z in zs)
        if hit:
            failed.append(rule_id)
    return failed


def range_fails(r: float | None, lim: RefLimits, rules: dict[int, int]) -> bool:
    return 1 in rules and r is not None and (r > lim.range_ucl or r < lim.range_lcl)


def episodes(per_point: Sequence[tuple[int, list[int], bool]]) -> list[tuple[int, str, int]]:
    """(index, chart, rule) of every raised alarm, given (index, failed X rules, range
    fails) of the judged points in order: an alarm when a rule fails and did not fail on
    the previous judged point."""
    raised = []
    previous: set[tuple[str, int]] = set()
    for index, x_failed, r_failed in per_point:
        now = {("x", rule) for rule in x_failed} | ({("range", 1)} if r_failed else set())
        raised += [(index, chart, rule) for chart, rule in sorted(now - previous)]
        previous = now
    return raised
