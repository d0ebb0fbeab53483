"""EWMA chart (docs/spc.md, "EWMA"): z_i = lambda x_i + (1 - lambda) z_(i-1), z_0 = CL;
limits CL +/- L sigma_xbar sqrt(lambda / (2 - lambda) (1 - (1 - lambda)^(2i)))."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from engine._errors import InvalidChartSettings
from engine._types import CharacteristicSpec, ControlLimits
from engine.charts._family import positive
from engine.charts._smallshift import SmallShiftFamily

if TYPE_CHECKING:
    from engine._engine import CharacteristicEngine

__all__ = ["FAMILY", "EwmaFamily"]


class EwmaFamily(SmallShiftFamily):
    name = "ewma"
    kind = "ewma"
    title = "Exponentially weighted moving average"

    def engine_class(self) -> type[CharacteristicEngine]:
        from engine.charts._smallshift_engine import EwmaEngine

        return EwmaEngine

    def _checks(self) -> list[Callable[[CharacteristicSpec], None]]:
        return [
            self._check_lambda,
            lambda spec: positive("ewma_l", spec.ewma_l),
            *super()._checks(),
        ]

    @staticmethod
    def _check_lambda(spec: CharacteristicSpec) -> None:
        lam = spec.ewma_lambda
        if isinstance(lam, bool) or not isinstance(lam, int | float):
            raise InvalidChartSettings("ewma_lambda", lam, "must be a number")
        if not 0.0 < lam <= 1.0:
            raise InvalidChartSettings("ewma_lambda", lam, "must lie in (0, 1]")

    def parameters(self, spec: CharacteristicSpec) -> tuple[tuple[str, float], ...]:
        return (("lambda", float(spec.ewma_lambda)), ("L", float(spec.ewma_l)))

    def limits(self, base: ControlLimits, spec: CharacteristicSpec) -> ControlLimits:
        """The asymptotic limits CL +/- L sigma_xbar sqrt(lambda / (2 - lambda))."""
        lam, big_l = float(spec.ewma_lambda), float(spec.ewma_l)
        width = big_l * self.sigma_xbar(base, spec.subgroup_size) * math.sqrt(lam / (2.0 - lam))
        cl = base.center_line
        return replace(
            base,
            ucl=cl + width,
            lcl=cl - width,
            range=None,
            chart=self.name,
            parameters=self.parameters(spec),
        )


FAMILY = EwmaFamily()
