"""The Shewhart variables charts: I-MR, X-bar-R and X-bar-S (docs/spc.md, "Points and limits").

Each family says how one subgroup becomes its plotted mean and its secondary statistic
(moving range, range, standard deviation), how a baseline's dispersion becomes sigma, and
what the secondary chart's limits are. ``engine/_limits.py`` and the streaming engine ask
the family; nothing else looks at the subgroup size to pick a formula.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from engine._constants import MAX_SUBGROUP_SIZE, MR_D2, MR_D4, factors
from engine._errors import InvalidChartSettings
from engine._rules import RULE_DEFAULTS
from engine._types import CharacteristicSpec, Method, RuleConfig, SecondaryLimits
from engine.charts._family import ChartFamily, Kind

if TYPE_CHECKING:
    from engine._engine import CharacteristicEngine

__all__ = ["VariablesFamily"]


class VariablesFamily(ChartFamily):
    """A Shewhart chart of the subgroup mean with a secondary chart of its dispersion."""

    kind: ClassVar[Kind] = "variables"
    default_rules: ClassVar[tuple[RuleConfig, ...]] = RULE_DEFAULTS
    method: ClassVar[Method]
    secondary_name: ClassVar[str]
    """How the secondary chart is labelled: ``MR``, ``R`` or ``S``."""
    sizes: ClassVar[range]

    def engine_class(self) -> type[CharacteristicEngine]:
        from engine._engine import CharacteristicEngine

        return CharacteristicEngine

    def _checks(self) -> list[Callable[[CharacteristicSpec], None]]:
        return [*super()._checks(), lambda spec: self.check_size(spec.subgroup_size)]

    def check_size(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SUBGROUP_SIZE:
            raise InvalidChartSettings(
                "subgroup_size", n, f"subgroup size must be 1..{MAX_SUBGROUP_SIZE}"
            )
        if n not in self.sizes:
            low, high = self.sizes[0], self.sizes[-1]
            span = f"{low}" if low == high else f"{low}..{high}"
            raise InvalidChartSettings(
                "subgroup_size", n, f"a {self.name} chart needs subgroup size {span}"
            )

    @property
    def min_baseline(self) -> int:
        """Fewest subgroups limits can come from."""
        return 1

    def fewest_baseline(self, subgroup_size: int) -> int:
        return self.min_baseline

    def point(self, values: Sequence[float], window: Sequence[float]) -> tuple[float, float | None]:
        """The plotted mean and the secondary statistic of one subgroup; ``window`` holds the
        earlier plotted points (the last is the previous one)."""
        raise NotImplementedError

    def dispersion(self, values: Sequence[float], mean: float) -> float:
        """The secondary statistic of one subgroup of a baseline (n >= 2)."""
        raise NotImplementedError

    def estimate(self, subgroups: Sequence[Sequence[float]], n: int) -> tuple[float, float]:
        """The baseline's grand mean and mean dispersion (MR-bar, R-bar or S-bar)."""
        k = len(subgroups)
        means = [math.fsum(group) / n for group in subgroups]
        centre = math.fsum(means) / k
        spreads = [self.dispersion(g, m) for g, m in zip(subgroups, means, strict=True)]
        return centre, math.fsum(spreads) / k

    def sigma(self, bar: float, n: int) -> float:
        """The within-subgroup sigma from the mean dispersion."""
        raise NotImplementedError

    def bar_of(self, sigma: float, n: int) -> float:
        """The mean dispersion that a given sigma implies (for fixed limits)."""
        raise NotImplementedError

    def secondary(self, bar: float, n: int) -> SecondaryLimits:
        raise NotImplementedError


class IndividualsFamily(VariablesFamily):
    name = "imr"
    title = "Individuals and moving range"
    method = Method.MOVING_RANGE
    secondary_name = "MR"
    sizes = range(1, 2)

    @property
    def min_baseline(self) -> int:
        return 2  # two individuals give one moving range

    def point(self, values: Sequence[float], window: Sequence[float]) -> tuple[float, float | None]:
        x = values[0]
        return x, (abs(x - window[-1]) if window else None)

    def estimate(self, subgroups: Sequence[Sequence[float]], n: int) -> tuple[float, float]:
        readings = [v for group in subgroups for v in group]
        moving = [abs(b - a) for a, b in itertools.pairwise(readings)]
        return math.fsum(readings) / len(subgroups), math.fsum(moving) / len(moving)

    def sigma(self, bar: float, n: int) -> float:
        return bar / MR_D2

    def bar_of(self, sigma: float, n: int) -> float:
        return MR_D2 * sigma

    def secondary(self, bar: float, n: int) -> SecondaryLimits:
        return SecondaryLimits(center_line=bar, ucl=MR_D4 * bar, lcl=0.0)


class RangeFamily(VariablesFamily):
    name = "xbar_r"
    title = "X-bar and range"
    method = Method.R_BAR_D2
    secondary_name = "R"
    sizes = range(2, MAX_SUBGROUP_SIZE + 1)

    def point(self, values: Sequence[float], window: Sequence[float]) -> tuple[float, float | None]:
        return math.fsum(values) / len(values), max(values) - min(values)

    def dispersion(self, values: Sequence[float], mean: float) -> float:
        return max(values) - min(values)

    def sigma(self, bar: float, n: int) -> float:
        return bar / factors(n).d2

    def bar_of(self, sigma: float, n: int) -> float:
        return factors(n).d2 * sigma

    def secondary(self, bar: float, n: int) -> SecondaryLimits:
        f = factors(n)
        return SecondaryLimits(center_line=bar, ucl=f.D4 * bar, lcl=f.D3 * bar)


class StdDevFamily(VariablesFamily):
    name = "xbar_s"
    title = "X-bar and standard deviation"
    method = Method.S_BAR_C4
    secondary_name = "S"
    sizes = range(2, MAX_SUBGROUP_SIZE + 1)

    def point(self, values: Sequence[float], window: Sequence[float]) -> tuple[float, float | None]:
        n = len(values)
        x = math.fsum(values) / n
        return x, math.sqrt(math.fsum([(v - x) ** 2 for v in values]) / (n - 1))

    def dispersion(self, values: Sequence[float], mean: float) -> float:
        return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))

    def sigma(self, bar: float, n: int) -> float:
        return bar / factors(n).c4

    def bar_of(self, sigma: float, n: int) -> float:
        return factors(n).c4 * sigma

    def secondary(self, bar: float, n: int) -> SecondaryLimits:
        f = factors(n)
        return SecondaryLimits(center_line=bar, ucl=f.B4 * bar, lcl=f.B3 * bar)
