"""The attribute charts p, np, c and u (docs/spc.md, "Attribute charts").

One reading is one sample: a count (defectives or defects) with its size (inspected, or
units for u). The family checks the reading, turns it into the plotted statistic, finds
the centre line of a baseline, and gives each point its own standard error sigma_i; the
limits are CL +/- 3 sigma_i, floored at 0 (and a p chart's capped at 1), the zones of rules
2-8 at CL +/- 1 and 2 sigma_i, unclamped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from engine._errors import InvalidChartSettings, InvalidCount
from engine._rules import RULE_DEFAULTS
from engine._types import CharacteristicSpec, Method, RuleConfig
from engine.charts._family import ChartFamily, Kind

if TYPE_CHECKING:
    from engine._engine import CharacteristicEngine

__all__ = ["AttributeFamily", "count_of"]

_RULE_1: tuple[RuleConfig, ...] = RULE_DEFAULTS[:1]


def count_of(name: str, raw: object) -> int:
    """A count as a non-negative integer: ``3`` and ``3.0`` are 3; anything else is refused."""
    if type(raw) is int and raw >= 0:  # the common case first: a count from JSON
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidCount(name, raw, "must be a number")
    if isinstance(raw, float):
        if not math.isfinite(raw) or raw != math.floor(raw):
            raise InvalidCount(name, raw, "must be a whole number")
        raw = int(raw)
    if raw < 0:
        raise InvalidCount(name, raw, "must not be negative")
    return raw


def _units(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidCount("units", raw, "must be a number")
    if not (math.isfinite(raw) and raw > 0):
        raise InvalidCount("units", raw, "must be positive")
    return float(raw)


class AttributeFamily(ChartFamily):
    """A chart of counts with per-point limits."""

    kind: ClassVar[Kind] = "attribute"
    default_rules: ClassVar[tuple[RuleConfig, ...]] = _RULE_1
    method: ClassVar[Method]
    count_name: ClassVar[str]
    size_name: ClassVar[str | None]
    """The payload field of the size (``inspected``, ``units``), None for c."""
    upper_cap: ClassVar[float | None] = None
    varying: ClassVar[bool]
    """Whether the limits vary with the sample's size (p, u)."""

    def engine_class(self) -> type[CharacteristicEngine]:
        from engine.charts._attribute_engine import AttributeEngine

        return AttributeEngine

    def _checks(self) -> list[Callable[[CharacteristicSpec], None]]:
        return [*super()._checks(), self._check_size, self._check_fixed]

    @staticmethod
    def _check_size(spec: CharacteristicSpec) -> None:
        if spec.subgroup_size != 1:
            raise InvalidChartSettings(
                "subgroup_size", spec.subgroup_size, "an attribute chart takes one count a sample"
            )

    @staticmethod
    def _check_fixed(spec: CharacteristicSpec) -> None:
        if spec.has_fixed_limits or spec.center_line is not None:
            key, value = ("ucl", spec.ucl) if spec.ucl is not None else ("lcl", spec.lcl)
            if spec.center_line is not None and value is None:
                key, value = "center_line", spec.center_line
            raise InvalidChartSettings(
                key, value, "fixed limits are for the imr, xbar_r, xbar_s, ewma and cusum charts"
            )

    def reading(self, count: object, size: object, spec: CharacteristicSpec) -> tuple[int, float]:
        """``(count, size)`` checked; raises ``InvalidCount`` naming the field."""
        raise NotImplementedError

    def statistic(self, count: int, size: float) -> float:
        raise NotImplementedError

    def sample(
        self, count: object, size: object, spec: CharacteristicSpec
    ) -> tuple[int, float, float]:
        """``(count, size, statistic)`` of a reading, checked (``InvalidCount`` otherwise).
        Families override it with a fast path for the plain case (int counts, as JSON gives
        them), falling back to ``reading`` for everything else."""
        c, n = self.reading(count, size, spec)
        return c, n, self.statistic(c, n)

    def centre(self, baseline: Sequence[tuple[int, float]]) -> tuple[float, float, float]:
        """The centre line, the standard error at the average size, and the average size
        (n-bar, or units-bar) of a baseline of ``(count, size)`` samples."""
        raise NotImplementedError

    def sigma_at(self, cl: float, size: float, sigma: float) -> float:
        """The standard error sigma_i of one point of that size, unclamped; ``sigma`` is the
        limits' own (np and c, whose sigma_i does not vary, return it)."""
        raise NotImplementedError

    def limits_at(self, cl: float, sigma: float) -> tuple[float, float]:
        """``(ucl, lcl)`` of a point with standard error ``sigma``: floored, capped."""
        ucl = cl + 3.0 * sigma
        cap = self.upper_cap
        if cap is not None and ucl > cap:
            ucl = cap
        lcl = cl - 3.0 * sigma
        return ucl, (lcl if lcl > 0.0 else 0.0)


class ProportionFamily(AttributeFamily):
    name = "p"
    title = "Proportion defective"
    method = Method.P_BAR
    count_name = "defectives"
    size_name = "inspected"
    upper_cap = 1.0
    varying = True

    def reading(self, count: object, size: object, spec: CharacteristicSpec) -> tuple[int, float]:
        d = count_of("defectives", count)
        if size is None:
            raise InvalidCount("inspected", size, "a p chart needs the number inspected")
        n = count_of("inspected", size)
        if n == 0:
            raise InvalidCount("inspected", n, "must be positive")
        if d > n:
            raise InvalidCount("defectives", d, f"more than the {n} inspected")
        return d, float(n)

    def statistic(self, count: int, size: float) -> float:
        return count / size

    def sample(
        self, count: object, size: object, spec: CharacteristicSpec
    ) -> tuple[int, float, float]:
        if type(count) is int and type(size) is int and 0 <= count <= size and size > 0:
            return count, float(size), count / size
        return super().sample(count, size, spec)

    def centre(self, baseline: Sequence[tuple[int, float]]) -> tuple[float, float, float]:
        defectives = sum(c for c, _ in baseline)
        inspected = math.fsum(s for _, s in baseline)
        p_bar = defectives / inspected
        n_bar = inspected / len(baseline)
        return p_bar, math.sqrt(p_bar * (1.0 - p_bar) / n_bar), n_bar

    def sigma_at(self, cl: float, size: float, sigma: float) -> float:
        return math.sqrt(cl * (1.0 - cl) / size)


class NumberDefectiveFamily(AttributeFamily):
    name = "np"
    title = "Number defective"
    method = Method.P_BAR
    count_name = "defectives"
    size_name = "inspected"
    varying = False

    def _check_inspected(self, spec: CharacteristicSpec) -> None:
        inspected = spec.inspected
        if inspected is None:
            raise InvalidChartSettings("inspected", None, "an np chart needs it")
        if isinstance(inspected, bool) or not isinstance(inspected, int) or inspected < 1:
            raise InvalidChartSettings("inspected", inspected, "must be a positive integer")

    def reading(self, count: object, size: object, spec: CharacteristicSpec) -> tuple[int, float]:
        d = count_of("defectives", count)
        assert spec.inspected is not None
        n = spec.inspected if size is None else count_of("inspected", size)
        if n != spec.inspected:
            raise InvalidCount("inspected", n, f"this np chart inspects {spec.inspected} a sample")
        if d > n:
            raise InvalidCount("defectives", d, f"more than the {n} inspected")
        return d, float(n)

    def statistic(self, count: int, size: float) -> float:
        return float(count)

    def sample(
        self, count: object, size: object, spec: CharacteristicSpec
    ) -> tuple[int, float, float]:
        n = spec.inspected
        plain = size is None or (type(size) is int and size == n)
        if type(count) is int and n is not None and 0 <= count <= n and plain:
            return count, float(n), float(count)
        return super().sample(count, size, spec)

    def centre(self, baseline: Sequence[tuple[int, float]]) -> tuple[float, float, float]:
        defectives = sum(c for c, _ in baseline)
        inspected = math.fsum(s for _, s in baseline)
        n = baseline[0][1]
        p_bar = defectives / inspected
        return n * p_bar, math.sqrt(n * p_bar * (1.0 - p_bar)), n

    def sigma_at(self, cl: float, size: float, sigma: float) -> float:
        return sigma


class CountFamily(AttributeFamily):
    name = "c"
    title = "Count of defects"
    method = Method.C_BAR
    count_name = "defects"
    size_name = None
    varying = False

    def reading(self, count: object, size: object, spec: CharacteristicSpec) -> tuple[int, float]:
        if size is not None:
            raise InvalidCount("units", size, "a c chart counts defects per sample (use u)")
        return count_of("defects", count), 1.0

    def statistic(self, count: int, size: float) -> float:
        return float(count)

    def sample(
        self, count: object, size: object, spec: CharacteristicSpec
    ) -> tuple[int, float, float]:
        if type(count) is int and count >= 0 and size is None:
            return count, 1.0, float(count)
        return super().sample(count, size, spec)

    def centre(self, baseline: Sequence[tuple[int, float]]) -> tuple[float, float, float]:
        c_bar = sum(c for c, _ in baseline) / len(baseline)
        return c_bar, math.sqrt(c_bar), 1.0

    def sigma_at(self, cl: float, size: float, sigma: float) -> float:
        return sigma


class RateFamily(AttributeFamily):
    name = "u"
    title = "Defects per unit"
    method = Method.U_BAR
    count_name = "defects"
    size_name = "units"
    varying = True

    def reading(self, count: object, size: object, spec: CharacteristicSpec) -> tuple[int, float]:
        c = count_of("defects", count)
        if size is None:
            raise InvalidCount("units", size, "a u chart needs the number of units")
        return c, _units(size)

    def statistic(self, count: int, size: float) -> float:
        return count / size

    def sample(
        self, count: object, size: object, spec: CharacteristicSpec
    ) -> tuple[int, float, float]:
        if type(count) is int and count >= 0 and type(size) is float and 0.0 < size < math.inf:
            return count, size, count / size
        return super().sample(count, size, spec)

    def centre(self, baseline: Sequence[tuple[int, float]]) -> tuple[float, float, float]:
        defects = sum(c for c, _ in baseline)
        units = math.fsum(s for _, s in baseline)
        u_bar = defects / units
        units_bar = units / len(baseline)
        return u_bar, math.sqrt(u_bar / units_bar), units_bar

    def sigma_at(self, cl: float, size: float, sigma: float) -> float:
        return math.sqrt(cl / size)
