"""The chart families, one module each, registered in one table (docs/spc.md).

A new family is one module here (its statistic, limits, zones, default rules) plus its line
in ``FAMILIES``; the streaming engine of its kind, the snapshot and ``openspc analyze`` pick it
up from the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from engine._errors import InvalidChartSettings
from engine._types import CharacteristicSpec
from engine.charts import c, cusum, ewma, imr, np, p, u, xbar_r, xbar_s
from engine.charts._attribute import AttributeFamily
from engine.charts._family import ChartFamily, Kind
from engine.charts._smallshift import SmallShiftFamily
from engine.charts._variables import VariablesFamily

__all__ = [
    "FAMILIES",
    "AttributeFamily",
    "ChartFamily",
    "Kind",
    "SmallShiftFamily",
    "VariablesFamily",
    "chart_family",
    "chart_faults",
    "check_chart",
    "default_chart",
    "variables_family",
]

FAMILIES: Final[Mapping[str, ChartFamily]] = MappingProxyType(
    {
        family.name: family
        for family in (
            imr.FAMILY,
            xbar_r.FAMILY,
            xbar_s.FAMILY,
            p.FAMILY,
            np.FAMILY,
            c.FAMILY,
            u.FAMILY,
            ewma.FAMILY,
            cusum.FAMILY,
        )
    }
)


def default_chart(subgroup_size: int) -> str:
    """The variables chart a subgroup size implies: the one place of the n = 1 / n <= 10 /
    n > 10 split (docs/spc.md, "Points and limits")."""
    if subgroup_size == 1:
        return "imr"
    return "xbar_r" if subgroup_size <= 10 else "xbar_s"


def variables_family(subgroup_size: int) -> VariablesFamily:
    """The default variables family of a subgroup size."""
    family = FAMILIES[default_chart(subgroup_size)]
    assert isinstance(family, VariablesFamily)
    return family


def chart_family(name: str) -> ChartFamily:
    """The family called ``name``; ``InvalidChartSettings`` (key ``chart``) otherwise."""
    family = FAMILIES.get(name) if isinstance(name, str) else None
    if family is None:
        raise InvalidChartSettings("chart", name, f"expected one of {', '.join(FAMILIES)}")
    return family


def chart_faults(spec: CharacteristicSpec) -> list[InvalidChartSettings]:
    """Every chart setting of ``spec`` at fault, each naming its config key (``chart``,
    ``inspected``, ``ewma_lambda``, ``ewma_l``, ``cusum_k``, ``cusum_h``, ``subgroup_size``,
    ``rules``, ``ucl``, ``lcl``, ``center_line``): a config loader prints one line each."""
    try:
        family = chart_family(spec.chart_name)
    except InvalidChartSettings as fault:
        return [fault]
    return family.faults(spec)


def check_chart(spec: CharacteristicSpec) -> ChartFamily:
    """The spec's family, after checking the spec's settings against it (raises
    ``InvalidChartSettings`` naming the config key at fault)."""
    family = chart_family(spec.chart_name)
    family.check(spec)
    return family
