"""The streaming engine of the attribute charts p, np, c and u (docs/spc.md).

It shares the Shewhart engine's rules and episodes; what differs is the input (one count a
sample) and that every point is classified against its own limits and zones, so the rule
window remembers each point's size to re-classify it against new limits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine._engine import _FAILED, _NONE, _ZONES, CharacteristicEngine
from engine._errors import (
    IncompatibleState,
    InsufficientData,
    ReadingKindMismatch,
    ZeroDispersion,
)
from engine._serialize import limits_from_dict
from engine._types import (
    CharacteristicSpec,
    ChartPoint,
    ControlLimits,
    ControlLimitsUpdated,
    EngineEvent,
    new_sample,
)
from engine.charts._attribute import AttributeFamily

# ChartPoint(...) goes through the NamedTuple's Python-level __new__; building the tuple
# directly costs half as much (about 0.2 us a point, measured), and a point is made per sample.
_point = tuple.__new__  # every field given: defaults do not apply on this path

__all__ = ["AttributeEngine"]

_BOUNDS_KEPT = 64
"""Sizes whose bounds are remembered (a u chart of fractional units may see many)."""


class AttributeEngine(CharacteristicEngine):
    """A p, np, c or u chart: ``add_count`` in, events out."""

    __slots__ = ("_afamily", "_bounds_of", "_counts", "_sigma", "_sizes")

    def __init__(self, spec: CharacteristicSpec, state: Mapping[str, Any] | None = None) -> None:
        family = self._setup(spec)
        assert isinstance(family, AttributeFamily)
        self._afamily = family
        self._baseline = None
        self._counts: list[tuple[int, float]] | None = []
        self._sizes: deque[float] = deque(maxlen=self._window.maxlen)
        self._sigma = 0.0
        # size -> its zone edges and limits under the limits in force: most lines inspect the
        # same few sample sizes, and the square root and clamping are most of a point's cost
        self._bounds_of: dict[float, tuple[float, float, float, float, float, float]] = {}
        if state is not None:
            self._restore(state)

    def add_reading(self, value: float, ts: datetime) -> list[EngineEvent]:
        raise ReadingKindMismatch(self.chart, self._expects())

    def add_readings(self, values: Sequence[float], ts: datetime) -> list[EngineEvent]:
        raise ReadingKindMismatch(self.chart, self._expects())

    def _expects(self) -> str:
        family = self._afamily
        size = "" if family.size_name is None else f" and {family.size_name}"
        return f"counts ({family.count_name}{size}), not measured values"

    def add_count(self, count: float, size: float | None, ts: datetime) -> list[EngineEvent]:
        """One sample: ``count`` defectives (p, np) or defects (c, u) of ``size`` inspected
        (p; np may leave it None) or units (u); None for c. A bad count raises
        ``InvalidCount`` and changes nothing."""
        if ts.tzinfo is None:
            raise ValueError(f"timestamp {ts!r} has no time zone")
        family = self._afamily
        c, n, stat = family.sample(count, size, self.spec)
        out: list[EngineEvent] = []
        seq = self._seq + 1
        self._seq = seq
        self._window.append(stat)
        self._sizes.append(n)
        shown = None if family.size_name is None else n
        cid = self._cid
        if self._limits is None:
            out.append(
                new_sample(
                    cid,
                    seq,
                    ts,
                    float(c),
                    (float(c),),
                    None,
                    None,
                    None,
                    _NONE,
                    _NONE,
                    _point(ChartPoint, (stat, None, None, None, None, shown)),
                )
            )
            self._grow(c, n, ts, out)
            return out
        ucl, lcl = self._bounds(n)
        code, fail = self._advance(stat)
        out.append(
            new_sample(
                cid,
                seq,
                ts,
                float(c),
                (float(c),),
                None,
                _ZONES[code],
                not fail,
                _FAILED[fail],
                _NONE,
                _point(ChartPoint, (stat, ucl, lcl, None, None, shown)),
            )
        )
        if fail or self._failing:
            self._report(seq, ts, fail, out)
        return out

    def recalculate(
        self, subgroups: Sequence[Sequence[float]], ts: datetime
    ) -> ControlLimitsUpdated:
        """New limits from earlier samples, each ``(count, size)`` (``(count,)`` for c)."""
        family = self._afamily
        samples = [
            family.reading(item[0], item[1] if len(item) > 1 else None, self.spec)
            for item in subgroups
        ]
        limits = self._limits_of(samples)
        self._install(limits)
        self._announce = False
        return ControlLimitsUpdated(self._cid, limits, ts)

    def snapshot(self) -> dict[str, Any]:
        state = super().snapshot()
        counts = self._counts
        state["baseline"] = None if counts is None else [[c, n] for c, n in counts]
        state["sizes"] = list(self._sizes)
        return state

    # --- internals ------------------------------------------------------------------------

    def _limits_of(self, samples: list[tuple[int, float]]) -> ControlLimits:
        family = self._afamily
        if not samples:
            raise InsufficientData(1, 0)
        cl, sigma, average = family.centre(samples)
        if not sigma > 0.0:
            raise ZeroDispersion(len(samples), cl)
        ucl, lcl = family.limits_at(cl, sigma)
        parameters: tuple[tuple[str, float], ...] = ()
        if family.size_name is not None:
            parameters = ((family.size_name, average),)
        return ControlLimits(
            center_line=cl,
            ucl=ucl,
            lcl=lcl,
            sigma=sigma,
            method=family.method,
            sample_count=len(samples),
            range=None,
            capability=None,
            chart=family.name,
            parameters=parameters,
        )

    def _grow(self, count: int, size: float, ts: datetime, out: list[EngineEvent]) -> None:
        counts = self._counts
        assert counts is not None
        counts.append((count, size))
        if len(counts) < self.spec.baseline:
            return
        try:
            limits = self._limits_of(counts)
        except ZeroDispersion:
            # No defect at all yet (or nothing but defects): slide on, as a variables
            # baseline without variation does (docs/spc.md, "Points and limits").
            del counts[0]
            return
        self._install(limits)
        out.append(ControlLimitsUpdated(self._cid, limits, ts))

    def _bounds(self, size: float) -> tuple[float, float]:
        """Set the zone edges of a point of ``size``; its ``(ucl, lcl)``."""
        bounds = self._bounds_of.get(size)
        if bounds is None:
            family = self._afamily
            cl = self._cl
            sigma = family.sigma_at(cl, size, self._sigma)
            ucl, lcl = family.limits_at(cl, sigma)
            bounds = (cl + sigma, cl + 2.0 * sigma, cl - sigma, cl - 2.0 * sigma, ucl, lcl)
            if len(self._bounds_of) < _BOUNDS_KEPT:
                self._bounds_of[size] = bounds
        self._u1, self._u2, self._l1, self._l2, self._ucl, self._lcl = bounds
        return bounds[4], bounds[5]

    def _install(self, limits: ControlLimits) -> None:
        self._bounds_of = {}
        self._limits = limits
        self._counts = None
        self._cl = limits.center_line
        self._sigma = limits.sigma
        self._reset_counters()
        for stat, size in zip(self._window, self._sizes, strict=True):
            self._bounds(size)
            self._advance(stat)

    def _restore(self, state: Mapping[str, Any]) -> None:
        try:
            self._check_state_chart(state)
            self._seq = int(state["seq"])
            stats = [float(v) for v in state["window"]]
            sizes = [float(v) for v in state["sizes"]]
            if len(stats) != len(sizes):
                raise IncompatibleState("window and sizes differ in length")
            raw_limits = state["limits"]
            limits = None if raw_limits is None else limits_from_dict(raw_limits)
            counts = [(int(c), float(n)) for c, n in state["baseline"] or ()]
            failing = 0
            for rule_id in state["failing"]:
                failing |= 1 << int(rule_id)
            pending = bool(state["limits_pending"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, IncompatibleState):
                raise
            raise IncompatibleState(f"malformed state ({exc!r})") from exc
        inspected = self.spec.inspected
        if (
            limits is not None
            and inspected is not None
            and dict(limits.parameters).get("inspected") != inspected
        ):
            raise IncompatibleState(f"the limits are for another inspected than {inspected}")
        self._window.extend(stats)
        self._sizes.extend(sizes)
        if limits is not None:
            self._install(limits)
            self._failing = failing & sum(1 << rule_id for rule_id in self._rules)
            self._announce = pending
        else:
            self._counts = counts
