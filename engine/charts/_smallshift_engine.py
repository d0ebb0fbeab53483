"""The streaming engines of the EWMA and tabular CUSUM charts (docs/spc.md).

They form subgroups and collect a baseline exactly as the Shewhart engine does (its CL and
sigma are theirs); from the first sample after the baseline they carry a statistic with
memory (z, or the two sums) and judge rule 1 against it. Baseline samples carry no
statistic and are not judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine._engine import _FAILED, _NONE, _ZONES, CharacteristicEngine
from engine._errors import IncompatibleState
from engine._limits import compute_limits, fixed_limits
from engine._types import (
    CharacteristicSpec,
    ChartPoint,
    ControlLimits,
    ControlLimitsUpdated,
    EngineEvent,
    new_sample,
)
from engine.charts._smallshift import SmallShiftFamily

# ChartPoint(...) goes through the NamedTuple's Python-level __new__; building the tuple
# directly costs half as much (about 0.2 us a point, measured), and a point is made per sample.
_point = tuple.__new__  # every field given: defaults do not apply on this path

__all__ = ["CusumEngine", "EwmaEngine"]


def zone_code(x: float, cl: float, step_up: float, step_down: float, ucl: float, lcl: float) -> int:
    """The zone of ``x`` as the rule engine codes it (1..4 upper, -1..-4 lower); the inner
    edges at one and two ``step``s from CL, the outer at the limits themselves."""
    if x >= cl:
        if x > ucl:
            return 4
        if x <= cl + step_up:
            return 1
        return 2 if x <= cl + 2.0 * step_up else 3
    if x < lcl:
        return -4
    if x >= cl - step_down:
        return -1
    return -2 if x >= cl - 2.0 * step_down else -3


class _SmallShiftEngine(CharacteristicEngine):
    __slots__ = ("_sfamily", "_sx")

    def __init__(self, spec: CharacteristicSpec, state: Mapping[str, Any] | None = None) -> None:
        family = self._setup(spec)
        assert isinstance(family, SmallShiftFamily)
        self._sfamily = family
        self._point = family.base(self._n).point
        self._sx = 0.0
        self._restart()
        if state is not None:
            self._restore(state)
        elif spec.has_fixed_limits:
            self._install(self._fixed_limits())
            self._announce = True

    def recalculate(
        self, subgroups: Sequence[Sequence[float]], ts: datetime
    ) -> ControlLimitsUpdated:
        """New CL and sigma from ``subgroups``; the statistic starts again from them."""
        limits = self._baseline_limits([list(g) for g in subgroups])
        self._install(limits)
        self._restart()
        self._announce = False
        return ControlLimitsUpdated(self._cid, limits, ts)

    def _fixed_limits(self) -> ControlLimits:
        return self._sfamily.limits(fixed_limits(self.spec), self.spec)

    def _baseline_limits(self, subgroups: list[list[float]]) -> ControlLimits:
        spec = self.spec
        base = compute_limits(subgroups, self._n, usl=spec.usl, lsl=spec.lsl)
        return self._sfamily.limits(base, spec)

    def _install(self, limits: ControlLimits) -> None:
        self._limits = limits
        self._baseline = None
        self._cl = limits.center_line
        self._sx = limits.sigma / math.sqrt(self._n)

    def _next(
        self, values: tuple[float, ...], ts: datetime, out: list[EngineEvent]
    ) -> tuple[float, float | None, int] | None:
        """A completed subgroup's statistic, secondary statistic and sequence number, to be
        judged; None while the baseline grows (its sample, not judged, is out already)."""
        x, r = self._statistic(values)
        self._window.append(x)
        seq = self._seq + 1
        self._seq = seq
        if self._limits is None:
            out.append(new_sample(self._cid, seq, ts, x, values, r, None, None, _NONE, _NONE))
            self._grow_baseline(values, ts, out)
            return None
        return x, r, seq

    def _restart(self) -> None:
        raise NotImplementedError

    def _restore(self, state: Mapping[str, Any]) -> None:
        super()._restore(state)
        limits = self._limits
        if limits is not None:
            # Parameters edited in the config since the snapshot: same CL and sigma, the
            # limits follow the new parameters and are announced again.
            current = self._sfamily.limits(limits, self.spec)
            if current != limits:
                self._install(current)
                self._announce = True


class EwmaEngine(_SmallShiftEngine):
    """z_i = lambda x_i + (1 - lambda) z_(i-1) from z_0 = CL; time-varying limits."""

    __slots__ = ("_ewma_i", "_settled", "_z")

    def _restart(self) -> None:
        self._ewma_i = 0
        self._z = self._cl
        self._settled: tuple[float, float, float] | None = None
        """(ucl, lcl, zone step) once (1 - lambda)^(2i) has underflowed to 0: from then on the
        formula gives the asymptotic limits to the bit, and they need no more computing."""

    def _install(self, limits: ControlLimits) -> None:
        super()._install(limits)
        self._restart()

    def snapshot(self) -> dict[str, Any]:
        state = super().snapshot()
        state["ewma"] = {"i": self._ewma_i, "z": self._z}
        return state

    def _restore(self, state: Mapping[str, Any]) -> None:
        super()._restore(state)
        try:
            if self._limits is not None:
                self._ewma_i = int(state["ewma"]["i"])
                self._z = float(state["ewma"]["z"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IncompatibleState(f"malformed EWMA state ({exc!r})") from exc

    def _complete(self, values: tuple[float, ...], ts: datetime, out: list[EngineEvent]) -> None:
        judged = self._next(values, ts, out)
        if judged is None:
            return
        x, r, seq = judged
        cid = self._cid
        spec = self.spec
        lam = spec.ewma_lambda
        i = self._ewma_i + 1
        self._ewma_i = i
        z = lam * x + (1.0 - lam) * self._z
        self._z = z
        cl = self._cl
        settled = self._settled
        if settled is None:
            decay = (1.0 - lam) ** (2 * i)
            width = spec.ewma_l * self._sx * math.sqrt(lam / (2.0 - lam) * (1.0 - decay))
            ucl = cl + width
            lcl = cl - width
            step = width / 3.0
            if decay == 0.0:
                self._settled = (ucl, lcl, step)
        else:
            ucl, lcl, step = settled
        code = zone_code(z, cl, step, step, ucl, lcl)
        fail = 2 if self._r1 and (z > ucl or z < lcl) else 0
        out.append(
            new_sample(
                cid,
                seq,
                ts,
                x,
                values,
                r,
                _ZONES[code],
                not fail,
                _FAILED[fail],
                _NONE,
                _point(ChartPoint, (z, ucl, lcl, None, None, None)),
            )
        )
        if fail or self._failing:
            self._report(seq, ts, fail, out)


class CusumEngine(_SmallShiftEngine):
    """Tabular CUSUM: the upper and lower sums from 0, never reset."""

    __slots__ = ("_high", "_interval", "_low", "_lower", "_upper")

    def _restart(self) -> None:
        self._upper = 0.0
        self._lower = 0.0

    def _install(self, limits: ControlLimits) -> None:
        super()._install(limits)
        spec = self.spec
        self._high = self._cl + spec.cusum_k * self._sx  # CL + k sigma_xbar
        self._low = self._cl - spec.cusum_k * self._sx
        self._interval = spec.cusum_h * self._sx  # h sigma_xbar
        self._restart()

    def snapshot(self) -> dict[str, Any]:
        state = super().snapshot()
        state["cusum"] = {"upper": self._upper, "lower": self._lower}
        return state

    def _restore(self, state: Mapping[str, Any]) -> None:
        super()._restore(state)
        try:
            if self._limits is not None:
                self._upper = float(state["cusum"]["upper"])
                self._lower = float(state["cusum"]["lower"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IncompatibleState(f"malformed CUSUM state ({exc!r})") from exc

    def _complete(self, values: tuple[float, ...], ts: datetime, out: list[EngineEvent]) -> None:
        judged = self._next(values, ts, out)
        if judged is None:
            return
        x, r, seq = judged
        cid = self._cid
        upper = max(0.0, x - self._high + self._upper)
        lower = max(0.0, self._low - x + self._lower)
        self._upper = upper
        self._lower = lower
        interval = self._interval
        if upper >= lower:
            code = zone_code(upper, 0.0, interval / 3.0, 0.0, interval, 0.0)
        else:
            code = -zone_code(lower, 0.0, interval / 3.0, 0.0, interval, 0.0)
        fail = 2 if self._r1 and (upper > interval or lower > interval) else 0
        out.append(
            new_sample(
                cid,
                seq,
                ts,
                x,
                values,
                r,
                _ZONES[code],
                not fail,
                _FAILED[fail],
                _NONE,
                _point(ChartPoint, (max(upper, lower), interval, 0.0, upper, lower, None)),
            )
        )
        if fail or self._failing:
            self._report(seq, ts, fail, out)
