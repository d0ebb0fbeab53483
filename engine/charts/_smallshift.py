"""What EWMA and CUSUM share: a Shewhart baseline for CL and sigma, rule 1 only.

Their sigma comes from the baseline exactly as the variables chart of the same subgroup size
computes it (docs/spc.md, "Points and limits"); sigma_xbar = sigma / sqrt(n) is the unit of
their parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from engine._errors import InvalidChartSettings
from engine._rules import RULE_DEFAULTS
from engine._types import CharacteristicSpec, ControlLimits, RuleConfig
from engine.charts._family import ChartFamily

if TYPE_CHECKING:
    from engine.charts._variables import VariablesFamily

__all__ = ["SmallShiftFamily"]


class SmallShiftFamily(ChartFamily):
    """A time-weighted chart of the subgroup means (EWMA, CUSUM)."""

    default_rules: ClassVar[tuple[RuleConfig, ...]] = RULE_DEFAULTS[:1]
    allowed_rules: ClassVar[frozenset[int]] = frozenset({1})

    def base(self, n: int) -> VariablesFamily:
        """The variables family whose baseline gives CL and sigma for subgroup size ``n``."""
        from engine.charts import variables_family

        return variables_family(n)

    def _checks(self) -> list[Callable[[CharacteristicSpec], None]]:
        return [*super()._checks(), self._check_size]

    def _check_size(self, spec: CharacteristicSpec) -> None:
        n = spec.subgroup_size
        if isinstance(n, bool) or not isinstance(n, int):
            raise InvalidChartSettings("subgroup_size", n, "must be an integer")
        self.base(n).check_size(n)

    def fewest_baseline(self, subgroup_size: int) -> int:
        return self.base(subgroup_size).min_baseline

    def parameters(self, spec: CharacteristicSpec) -> tuple[tuple[str, float], ...]:
        raise NotImplementedError

    def limits(self, base: ControlLimits, spec: CharacteristicSpec) -> ControlLimits:
        """This chart's limits from the Shewhart limits of its baseline (or fixed ones)."""
        raise NotImplementedError

    @staticmethod
    def sigma_xbar(limits: ControlLimits, n: int) -> float:
        return limits.sigma / math.sqrt(n)
