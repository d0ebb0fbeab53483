"""Tabular CUSUM (docs/spc.md, "CUSUM"): C+_i = max(0, x_i - (CL + k sigma_xbar) + C+_(i-1)),
C-_i = max(0, (CL - k sigma_xbar) - x_i + C-_(i-1)); a signal when either exceeds h sigma_xbar."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from engine._types import CharacteristicSpec, ControlLimits
from engine.charts._family import positive
from engine.charts._smallshift import SmallShiftFamily

if TYPE_CHECKING:
    from engine._engine import CharacteristicEngine

__all__ = ["FAMILY", "CusumFamily"]


class CusumFamily(SmallShiftFamily):
    name = "cusum"
    kind = "cusum"
    title = "Tabular CUSUM"

    def engine_class(self) -> type[CharacteristicEngine]:
        from engine.charts._smallshift_engine import CusumEngine

        return CusumEngine

    def _checks(self) -> list[Callable[[CharacteristicSpec], None]]:
        return [
            lambda spec: positive("cusum_k", spec.cusum_k),
            lambda spec: positive("cusum_h", spec.cusum_h),
            *super()._checks(),
        ]

    def parameters(self, spec: CharacteristicSpec) -> tuple[tuple[str, float], ...]:
        return (("k", float(spec.cusum_k)), ("h", float(spec.cusum_h)))

    def limits(self, base: ControlLimits, spec: CharacteristicSpec) -> ControlLimits:
        """``ucl`` = h sigma_xbar (the decision interval, on the scale of the sums), ``lcl`` 0."""
        interval = float(spec.cusum_h) * self.sigma_xbar(base, spec.subgroup_size)
        return replace(
            base,
            ucl=interval,
            lcl=0.0,
            range=None,
            chart=self.name,
            parameters=self.parameters(spec),
        )


FAMILY = CusumFamily()
