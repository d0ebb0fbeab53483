"""Control limits (computed from subgroups, or fixed by config), zones and capability."""

from __future__ import annotations

import math
from collections.abc import Sequence

from engine._constants import MAX_SUBGROUP_SIZE
from engine._errors import InsufficientData, ZeroDispersion
from engine._types import (
    Capability,
    CharacteristicSpec,
    ControlLimits,
    Method,
    Zone,
)
from engine.charts import SmallShiftFamily, VariablesFamily, chart_family, variables_family

__all__ = [
    "capability",
    "check_subgroup_size",
    "classify",
    "compute_limits",
    "fixed_limits",
    "method_for",
    "min_subgroups",
    "subgroup_dispersion",
    "zone_boundaries",
]


def check_subgroup_size(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SUBGROUP_SIZE:
        raise ValueError(f"subgroup size must be 1..{MAX_SUBGROUP_SIZE}, got {n!r}")


def _family(n: int, chart: str | None) -> VariablesFamily:
    """The variables family ``chart`` names, or the one the subgroup size implies."""
    if chart is None:
        return variables_family(n)
    family = chart_family(chart)
    if not isinstance(family, VariablesFamily):
        raise ValueError(f"{chart} is not a variables chart (imr, xbar_r, xbar_s)")
    family.check_size(n)
    return family


def method_for(n: int, chart: str | None = None) -> Method:
    """The sigma estimator for subgroup size ``n`` (docs/spc.md): its family's."""
    return _family(n, chart).method


def min_subgroups(n: int, chart: str | None = None) -> int:
    """Fewest subgroups limits can come from: two individuals (one moving range), else one."""
    return _family(n, chart).min_baseline


def subgroup_dispersion(values: Sequence[float], mean: float) -> float:
    """The secondary chart's statistic of one subgroup (n >= 2): range, or S for n > 10."""
    return variables_family(len(values)).dispersion(values, mean)


def _stdev(values: Sequence[float]) -> float:
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _gap(high: float | None, low: float | None) -> float | None:
    return None if high is None or low is None else high - low


def capability(
    mu: float,
    sigma_within: float,
    *,
    usl: float | None,
    lsl: float | None,
    sigma_overall: float | None,
) -> Capability | None:
    """Cp/Cpk from the within sigma, Pp/Ppk from the overall one; None without spec limits."""
    if usl is None and lsl is None:
        return None

    def pair(sigma: float | None) -> tuple[float | None, float | None]:
        if sigma is None or sigma <= 0.0:
            return None, None
        both = None if usl is None or lsl is None else (usl - lsl) / (6.0 * sigma)
        gaps = [gap for gap in (_gap(usl, mu), _gap(mu, lsl)) if gap is not None]
        one = min(gaps) / (3.0 * sigma)
        return both, one

    cp, cpk = pair(sigma_within)
    pp, ppk = pair(sigma_overall)
    return Capability(cp=cp, cpk=cpk, pp=pp, ppk=ppk)


def compute_limits(
    subgroups: Sequence[Sequence[float]],
    subgroup_size: int,
    *,
    usl: float | None = None,
    lsl: float | None = None,
    chart: str | None = None,
) -> ControlLimits:
    """Limits of both charts from ``subgroups`` (each of ``subgroup_size`` readings), by the
    variables family ``chart`` (default: the one the subgroup size implies).

    Raises ``InsufficientData`` with fewer than 2 individuals (n = 1) or no subgroup at all,
    ``ZeroDispersion`` when sigma comes out 0, ``ValueError`` for a subgroup of the wrong size
    or a reading that is not finite.
    """
    n = subgroup_size
    check_subgroup_size(n)
    family = _family(n, chart)
    k = len(subgroups)
    if k < family.min_baseline:
        raise InsufficientData(family.min_baseline, k)
    for index, group in enumerate(subgroups):
        if len(group) != n:
            raise ValueError(f"subgroup {index} has {len(group)} readings, expected {n}")
        if not all(math.isfinite(v) for v in group):
            raise ValueError(f"subgroup {index} holds a reading that is not a finite number")
    readings = [v for group in subgroups for v in group]
    centre, bar = family.estimate(subgroups, n)
    sigma = family.sigma(bar, n)
    half_width = 3.0 * sigma / math.sqrt(n)
    if not sigma > 0.0:
        raise ZeroDispersion(k, centre)
    overall = _stdev(readings) if len(readings) > 1 else None
    return ControlLimits(
        center_line=centre,
        ucl=centre + half_width,
        lcl=centre - half_width,
        sigma=sigma,
        method=family.method,
        sample_count=k,
        range=family.secondary(bar, n),
        capability=capability(centre, sigma, usl=usl, lsl=lsl, sigma_overall=overall),
    )


def fixed_limits(spec: CharacteristicSpec) -> ControlLimits:
    """Limits fixed by config: ``ucl``, ``lcl`` and ``center_line`` (default the midpoint).

    sigma = (ucl - lcl) / 6 * sqrt(n); the secondary chart's limits derive from that sigma;
    Cp/Cpk come from it too, Pp/Ppk are None (no readings behind fixed limits).
    """
    n = spec.subgroup_size
    check_subgroup_size(n)
    chosen = chart_family(spec.chart_name)
    # EWMA and CUSUM take a known CL and sigma from fixed limits, as their baseline would
    family = chosen.base(n) if isinstance(chosen, SmallShiftFamily) else _family(n, chosen.name)
    if spec.ucl is None or spec.lcl is None:
        raise ValueError(f"characteristic {spec.id}: fixed limits need both ucl and lcl")
    ucl, lcl = float(spec.ucl), float(spec.lcl)
    centre = (ucl + lcl) / 2.0 if spec.center_line is None else float(spec.center_line)
    if not (math.isfinite(ucl) and math.isfinite(lcl) and lcl < centre < ucl):
        raise ValueError(
            f"characteristic {spec.id}: fixed limits need lcl < center_line < ucl, "
            f"got lcl={lcl:g}, center_line={centre:g}, ucl={ucl:g}"
        )
    sigma = (ucl - lcl) / 6.0 * math.sqrt(n)
    secondary = family.secondary(family.bar_of(sigma, n), n)
    return ControlLimits(
        center_line=centre,
        ucl=ucl,
        lcl=lcl,
        sigma=sigma,
        method=Method.FIXED,
        sample_count=0,
        range=secondary,
        capability=capability(centre, sigma, usl=spec.usl, lsl=spec.lsl, sigma_overall=None),
    )


def zone_boundaries(
    limits: ControlLimits, subgroup_size: int
) -> tuple[float, float, float, float, float, float, float]:
    """``(lcl, CL-2s, CL-s, CL, CL+s, CL+2s, ucl)`` of the plotted statistic.

    s = sigma / sqrt(n) for computed limits. Fixed limits may be asymmetric: above CL the
    zones are (ucl - CL) / 3 wide, below it (CL - lcl) / 3.
    """
    cl = limits.center_line
    if limits.method is Method.FIXED:
        up = (limits.ucl - cl) / 3.0
        down = (cl - limits.lcl) / 3.0
    else:
        up = down = limits.sigma / math.sqrt(subgroup_size)
    return (limits.lcl, cl - 2.0 * down, cl - down, cl, cl + up, cl + 2.0 * up, limits.ucl)


def classify(value: float, limits: ControlLimits, subgroup_size: int) -> Zone:
    """The zone of a plotted ``value``: on a boundary it is the inner zone, on CL upper C."""
    lcl, l2, l1, cl, u1, u2, ucl = zone_boundaries(limits, subgroup_size)
    if value >= cl:
        if value <= u1:
            return Zone.ZONE_C_UPPER
        if value <= u2:
            return Zone.ZONE_B_UPPER
        return Zone.ZONE_A_UPPER if value <= ucl else Zone.BEYOND_UCL
    if value >= l1:
        return Zone.ZONE_C_LOWER
    if value >= l2:
        return Zone.ZONE_B_LOWER
    return Zone.ZONE_A_LOWER if value >= lcl else Zone.BEYOND_LCL
