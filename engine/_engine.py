"""The streaming engine of one characteristic: readings in, events out.

Rules are evaluated incrementally: run counters for the "K in a row" rules and bit masks of
the last few zone flags for the "m of m+1" rules, so a point costs the same whatever the run
lengths. The last few plotted values (the longest rule window) are kept so that new limits
can re-classify them, and so that a snapshot can rebuild every counter exactly.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from engine._errors import IncompatibleState, ReadingKindMismatch, ZeroDispersion
from engine._limits import (
    compute_limits,
    fixed_limits,
    zone_boundaries,
)
from engine._rules import rule_window
from engine._serialize import limits_from_dict, limits_to_dict
from engine._types import (
    CharacteristicSpec,
    Chart,
    ControlLimits,
    ControlLimitsUpdated,
    EngineEvent,
    Method,
    RuleConfig,
    ViolationRaised,
    Zone,
    new_sample,
)
from engine.charts import ChartFamily, VariablesFamily, check_chart, default_chart

__all__ = ["CharacteristicEngine"]

_STATE_VERSION: Final = 2
"""2 adds ``chart`` (and each family's own keys); 1, written before chart families existed,
is read as the variables chart its subgroup size implies."""
_NEVER: Final = 1 << 62  # the threshold of a rule that is not configured

_RULE_TABLES: dict[tuple[RuleConfig, ...], dict[int, RuleConfig]] = {}
_RULE_TABLES_MAX: Final = 1024


def _rule_table(rules: Sequence[RuleConfig]) -> dict[int, RuleConfig]:
    """``rule_id -> RuleConfig``, one table shared by every engine with the same rules (an
    engine only reads it): 10,000 characteristics on ``nelson`` keep one table, not 10,000
    (about 3 MB; docs/performance.md). At most ``_RULE_TABLES_MAX`` are kept; past that each
    engine gets a table of its own."""
    key = tuple(rules)
    table = _RULE_TABLES.get(key)
    if table is None:
        table = {rule.rule_id: rule for rule in key}
        if len(_RULE_TABLES) < _RULE_TABLES_MAX:
            _RULE_TABLES[key] = table
    return table


# zone code -> Zone: 1..4 upper (C, B, A, beyond), -1..-4 lower (negative indexing)
_ZONES: Final[tuple[Zone, ...]] = (
    Zone.ZONE_C_UPPER,  # index 0 is never used
    Zone.ZONE_C_UPPER,
    Zone.ZONE_B_UPPER,
    Zone.ZONE_A_UPPER,
    Zone.BEYOND_UCL,
    Zone.BEYOND_LCL,
    Zone.ZONE_A_LOWER,
    Zone.ZONE_B_LOWER,
    Zone.ZONE_C_LOWER,
)

# failure mask (bit i = rule i fails) -> the ascending tuple of rule ids
_FAILED: Final[tuple[tuple[int, ...], ...]] = tuple(
    tuple(rule for rule in range(1, 9) if mask >> rule & 1) for mask in range(512)
)
_RANGE_FAILED: Final = (1,)
_NONE: Final[tuple[int, ...]] = ()


class CharacteristicEngine:
    """SPC for one characteristic: forms subgroups, computes limits, judges Nelson's rules.

    ``CharacteristicEngine(spec)`` builds the engine of the spec's chart family
    (``spec.chart``, docs/spc.md): this class runs the Shewhart variables charts (I-MR,
    X-bar-R, X-bar-S); the attribute, EWMA and CUSUM charts are subclasses that share its
    rules, episodes and snapshot. ``state`` is a ``snapshot()`` taken earlier; restoring it
    gives exactly the events the engine would have produced had it never stopped.
    """

    __slots__ = (
        "_alt",
        "_announce",
        "_baseline",
        "_c_run",
        "_cid",
        "_cl",
        "_count",
        "_failing",
        "_family",
        "_k2",
        "_k3",
        "_k4",
        "_k7",
        "_k8",
        "_keep",
        "_l1",
        "_l2",
        "_la",
        "_last",
        "_lb",
        "_lcl",
        "_limits",
        "_limits_state",
        "_m5",
        "_m6",
        "_mask5",
        "_mask6",
        "_n",
        "_o_run",
        "_partial",
        "_partial_ts",
        "_point",
        "_r1",
        "_rfailing",
        "_rlcl",
        "_rucl",
        "_rules",
        "_run",
        "_seq",
        "_trend",
        "_u1",
        "_u2",
        "_ua",
        "_ub",
        "_ucl",
        "_w5",
        "_w6",
        "_window",
        "spec",
    )

    def __new__(
        cls, spec: CharacteristicSpec, state: Mapping[str, Any] | None = None
    ) -> CharacteristicEngine:
        if cls is CharacteristicEngine:
            cls = check_chart(spec).engine_class()
        return object.__new__(cls)

    def __init__(self, spec: CharacteristicSpec, state: Mapping[str, Any] | None = None) -> None:
        family = self._setup(spec)
        assert isinstance(family, VariablesFamily)
        self._point = family.point
        if state is not None:
            self._restore(state)
        elif spec.has_fixed_limits:
            self._install(self._fixed_limits())
            self._announce = True

    def _fixed_limits(self) -> ControlLimits:
        """The limits the config fixes (docs/spc.md, "Points and limits")."""
        return fixed_limits(self.spec)

    def _setup(self, spec: CharacteristicSpec) -> ChartFamily:
        """What every family's engine shares: settings checked, rules, counters, episodes."""
        family = check_chart(spec)
        n = spec.subgroup_size
        min_baseline = family.fewest_baseline(n)
        if not spec.has_fixed_limits and spec.baseline < min_baseline:
            raise ValueError(
                f"characteristic {spec.id}: baseline must be at least {min_baseline} "
                f"subgroups for subgroup size {n}, got {spec.baseline}"
            )
        self.spec = spec
        self._family = family
        self._cid = spec.id
        self._n = n
        rules = _rule_table(spec.rules)
        self._rules: dict[int, RuleConfig] = rules
        self._r1 = 1 in rules
        self._k2 = rules[2].length if 2 in rules else _NEVER
        self._k3 = rules[3].length - 1 if 3 in rules else _NEVER  # rises in a row
        self._k4 = rules[4].length - 1 if 4 in rules else _NEVER  # alternating steps
        self._m5, self._w5, self._mask5 = self._m_of(rules.get(5))
        self._m6, self._w6, self._mask6 = self._m_of(rules.get(6))
        self._keep = self._mask5 | self._mask6
        self._k7 = rules[7].length if 7 in rules else _NEVER
        self._k8 = rules[8].length if 8 in rules else _NEVER
        span = max([2] + [rule_window(r.rule_id, r.length) for r in spec.rules])
        self._window: deque[float] = deque(maxlen=span)
        self._seq = 0
        self._partial: list[float] = []
        self._partial_ts: datetime | None = None
        # the baseline's readings, flat, as C doubles (8 bytes a reading)
        self._baseline: array[float] | None = array("d")
        self._limits: ControlLimits | None = None
        # (limits, their dict in a snapshot): made once per limits, not once per snapshot
        self._limits_state: tuple[ControlLimits, dict[str, Any]] | None = None
        self._announce = False
        self._failing = 0
        self._rfailing = False
        self._cl = self._u1 = self._u2 = self._ucl = 0.0
        self._l1 = self._l2 = self._lcl = self._rucl = self._rlcl = 0.0
        self._reset_counters()
        return family

    @staticmethod
    def _m_of(rule: RuleConfig | None) -> tuple[int, int, int]:
        if rule is None:
            return _NEVER, _NEVER, 0
        return rule.length, rule.length + 1, (1 << (rule.length + 1)) - 1

    # --- public surface -------------------------------------------------------------------

    @property
    def limits(self) -> ControlLimits | None:
        """The limits in force, or None while the baseline is still being collected."""
        return self._limits

    @property
    def partial(self) -> tuple[float, ...]:
        """Readings of the subgroup being filled, in arrival order."""
        return tuple(self._partial)

    @property
    def seq(self) -> int:
        """How many samples this characteristic has produced (the last ``seq``)."""
        return self._seq

    @property
    def chart(self) -> str:
        """The chart family's name (``imr``, ``xbar_r``, ..., ``cusum``)."""
        return self._family.name

    @property
    def family(self) -> ChartFamily:
        return self._family

    def add_count(self, count: float, size: float | None, ts: datetime) -> list[EngineEvent]:
        """Add one attribute reading (p, np, c, u charts): ``count`` defectives or defects,
        ``size`` the number inspected (p, np) or the units (u), None for c. A variables,
        EWMA or CUSUM chart raises ``ReadingKindMismatch``."""
        raise ReadingKindMismatch(self._family.name, "measured values, not counts")

    def add_reading(self, value: float, ts: datetime) -> list[EngineEvent]:
        """Add one reading taken at ``ts`` (timezone-aware); returns what it caused."""
        if not math.isfinite(value):
            raise ValueError(f"reading {value!r} is not a finite number")
        if ts.tzinfo is None:
            raise ValueError(f"timestamp {ts!r} has no time zone")
        out: list[EngineEvent] = []
        if self._announce:
            self._announce_limits(ts, out)
        partial = self._partial
        partial.append(value)
        if len(partial) >= self._n:
            self._partial = []
            self._partial_ts = None
            self._complete(tuple(partial), ts, out)
        else:
            self._partial_ts = ts
        return out

    def add_readings(self, values: Sequence[float], ts: datetime) -> list[EngineEvent]:
        """Add readings in arrival order, all taken at ``ts``; a whole subgroup is fastest.

        A reading that is not a finite number raises ``ValueError`` and changes nothing.
        """
        if ts.tzinfo is None:
            raise ValueError(f"timestamp {ts!r} has no time zone")
        out: list[EngineEvent] = []
        n = self._n
        if len(values) == n and not self._partial:
            # _complete checks the subgroup before it changes anything
            if self._announce:
                self._announce_limits(ts, out)
            self._complete(tuple(values), ts, out)
            return out
        for value in values:
            if not math.isfinite(value):
                raise ValueError(f"reading {value!r} is not a finite number")
        if self._announce:
            self._announce_limits(ts, out)
        partial = self._partial
        for value in values:
            partial.append(value)
            if len(partial) >= n:
                self._complete(tuple(partial), ts, out)
                partial = self._partial = []
        self._partial_ts = ts if partial else None
        return out

    def recalculate(
        self, subgroups: Sequence[Sequence[float]], ts: datetime
    ) -> ControlLimitsUpdated:
        """New limits from ``subgroups`` (the last N non-excluded ones); they hold from now.

        The rule window is re-classified against them; open alarm episodes carry on.
        Raises ``InsufficientData`` or ``ZeroDispersion`` and changes nothing then.
        """
        spec = self.spec
        limits = compute_limits(subgroups, self._n, usl=spec.usl, lsl=spec.lsl, chart=self.chart)
        self._install(limits)
        self._announce = False
        return ControlLimitsUpdated(self._cid, limits, ts)

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as JSON-serialisable data.

        Its ``limits`` dict is made once per limits in force and shared by the snapshots
        taken under them (one a batch per characteristic fed: docs/performance.md): read it,
        never change it."""
        limits = self._limits
        baseline = self._baseline
        limits_state = None
        if limits is not None:
            kept = self._limits_state
            if kept is None or kept[0] is not limits:
                kept = self._limits_state = (limits, limits_to_dict(limits))
            limits_state = kept[1]
        return {
            "version": _STATE_VERSION,
            "chart": self._family.name,
            "characteristic_id": self._cid,
            "subgroup_size": self._n,
            "seq": self._seq,
            "partial": list(self._partial),
            "partial_ts": None if self._partial_ts is None else self._partial_ts.isoformat(),
            "window": list(self._window),
            "baseline": None if baseline is None else self._groups(baseline),
            "limits": limits_state,
            "limits_pending": self._announce,
            "failing": list(_FAILED[self._failing]),
            "range_failing": self._rfailing,
        }

    # --- internals ------------------------------------------------------------------------

    def _announce_limits(self, ts: datetime, out: list[EngineEvent]) -> None:
        assert self._limits is not None
        out.append(ControlLimitsUpdated(self._cid, self._limits, ts))
        self._announce = False

    def _reset_counters(self) -> None:
        self._last: float | None = None
        self._run = self._trend = self._alt = self._c_run = self._o_run = self._count = 0
        self._ua = self._la = self._ub = self._lb = 0

    def _install(self, limits: ControlLimits) -> None:
        """Make ``limits`` the ones in force and re-classify the window against them."""
        self._limits = limits
        self._baseline = None
        (self._lcl, self._l2, self._l1, self._cl, self._u1, self._u2, self._ucl) = zone_boundaries(
            limits, self._n
        )
        rng = limits.range
        if rng is not None:
            self._rucl = rng.ucl
            self._rlcl = rng.lcl
        self._reset_counters()
        for value in self._window:
            self._advance(value)

    def _advance(self, x: float) -> tuple[int, int]:  # noqa: C901  hot path: every rule's counters in one pass
        """Move every counter past plotted value ``x``; its zone code and failure mask."""
        keep = self._keep
        if x >= self._cl:
            if x <= self._u1:
                z = 1
            elif x <= self._u2:
                z = 2
            elif x <= self._ucl:
                z = 3
            else:
                z = 4
            run = self._run
            run = run + 1 if run > 0 else 1
            ua = ((self._ua << 1) | (z >= 3)) & keep
            ub = ((self._ub << 1) | (z >= 2)) & keep
            la = (self._la << 1) & keep
            lb = (self._lb << 1) & keep
            code = z
        else:
            if x >= self._l1:
                z = 1
            elif x >= self._l2:
                z = 2
            elif x >= self._lcl:
                z = 3
            else:
                z = 4
            run = self._run
            run = run - 1 if run < 0 else -1
            la = ((self._la << 1) | (z >= 3)) & keep
            lb = ((self._lb << 1) | (z >= 2)) & keep
            ua = (self._ua << 1) & keep
            ub = (self._ub << 1) & keep
            code = -z
        last = self._last
        trend = self._trend
        if last is None:
            trend = alt = 0
        elif x > last:
            alt = self._alt + 1 if trend < 0 else 1
            trend = trend + 1 if trend > 0 else 1
        elif x < last:
            alt = self._alt + 1 if trend > 0 else 1
            trend = trend - 1 if trend < 0 else -1
        else:
            trend = alt = 0
        c_run = self._c_run + 1 if z == 1 else 0
        o_run = self._o_run + 1 if z >= 2 else 0
        count = self._count + 1
        self._last = x
        self._run = run
        self._trend = trend
        self._alt = alt
        self._c_run = c_run
        self._o_run = o_run
        self._count = count
        self._ua = ua
        self._la = la
        self._ub = ub
        self._lb = lb

        fail = 2 if z == 4 and self._r1 else 0
        k = self._k2
        if run >= k or -run >= k:
            fail |= 4
        k = self._k3
        if trend >= k or -trend >= k:
            fail |= 8
        if alt >= self._k4:
            fail |= 16
        if count >= self._w5:
            k = self._m5
            mask = self._mask5
            if (ua & mask).bit_count() >= k or (la & mask).bit_count() >= k:
                fail |= 32
        if count >= self._w6:
            k = self._m6
            mask = self._mask6
            if (ub & mask).bit_count() >= k or (lb & mask).bit_count() >= k:
                fail |= 64
        if c_run >= self._k7:
            fail |= 128
        if o_run >= self._k8:
            fail |= 256
        return code, fail

    def _complete(self, values: tuple[float, ...], ts: datetime, out: list[EngineEvent]) -> None:
        """A subgroup is full: compute its point, judge it, and report."""
        window = self._window
        x, r = self._statistic(values)
        window.append(x)
        seq = self._seq + 1
        self._seq = seq
        cid = self._cid
        if self._limits is None:
            out.append(new_sample(cid, seq, ts, x, values, r, None, None, _NONE, _NONE))
            self._grow_baseline(values, ts, out)
            return
        code, fail = self._advance(x)
        range_fails = r is not None and self._r1 and (r > self._rucl or r < self._rlcl)
        out.append(
            new_sample(
                cid,
                seq,
                ts,
                x,
                values,
                r,
                _ZONES[code],
                not (fail or range_fails),
                _FAILED[fail],
                _RANGE_FAILED if range_fails else _NONE,
            )
        )
        new = fail & ~self._failing
        self._failing = fail
        if new:
            rules = self._rules
            for rule_id in _FAILED[new]:
                rule = rules[rule_id]
                out.append(
                    ViolationRaised(cid, seq, rule_id, rule.name, rule.severity, Chart.X, ts)
                )
        if r is not None:
            if range_fails and not self._rfailing:
                rule = self._rules[1]
                out.append(ViolationRaised(cid, seq, 1, rule.name, rule.severity, Chart.RANGE, ts))
            self._rfailing = range_fails

    def _report(self, seq: int, ts: datetime, fail: int, out: list[EngineEvent]) -> None:
        """Raise a violation for each rule that starts failing (one alarm per episode)."""
        new = fail & ~self._failing
        self._failing = fail
        if new:
            rules = self._rules
            cid = self._cid
            for rule_id in _FAILED[new]:
                rule = rules[rule_id]
                out.append(
                    ViolationRaised(cid, seq, rule_id, rule.name, rule.severity, Chart.X, ts)
                )

    def _statistic(self, values: tuple[float, ...]) -> tuple[float, float | None]:
        """The family's plotted mean and secondary statistic; ValueError if not finite."""
        r: float | None
        try:
            x, r = self._point(values, self._window)
        except (OverflowError, ValueError):  # fsum of infinities, or of huge numbers
            r = x = math.nan
        if not (math.isfinite(x) and (r is None or math.isfinite(r))):
            raise ValueError(f"subgroup {values!r} holds a reading that is not a finite number")
        return x, r

    def _groups(self, flat: array[float]) -> list[list[float]]:
        n = self._n
        return [flat[i : i + n].tolist() for i in range(0, len(flat), n)]

    def _grow_baseline(
        self, values: tuple[float, ...], ts: datetime, out: list[EngineEvent]
    ) -> None:
        baseline = self._baseline
        assert baseline is not None
        baseline.extend(values)
        n = self._n
        if len(baseline) < self.spec.baseline * n:
            return
        try:
            limits = self._baseline_limits(self._groups(baseline))
        except ZeroDispersion:
            # No variation yet (a coarse gauge, a machine warming up): slide the baseline on
            # and try again with the next sample rather than collapse every zone onto CL.
            del baseline[:n]
            return
        self._install(limits)
        out.append(ControlLimitsUpdated(self._cid, limits, ts))

    def _baseline_limits(self, subgroups: list[list[float]]) -> ControlLimits:
        spec = self.spec
        return compute_limits(subgroups, self._n, usl=spec.usl, lsl=spec.lsl, chart=self.chart)

    def _check_state_chart(self, state: Mapping[str, Any]) -> None:
        version = state.get("version")
        if version in (1, _STATE_VERSION) and state["subgroup_size"] != self._n:
            raise IncompatibleState(
                f"state is for subgroup size {state['subgroup_size']}, "
                f"characteristic {self._cid} now has {self._n}"
            )
        if version == 1:  # before chart families: the chart followed the subgroup size
            chart = default_chart(state["subgroup_size"])
        elif version == _STATE_VERSION:
            chart = state["chart"]
        else:
            raise IncompatibleState(f"unknown state version {version!r}")
        if chart != self._family.name:
            raise IncompatibleState(
                f"state is of a {chart} chart, characteristic {self._cid} is now a "
                f"{self._family.name} chart"
            )

    def _restore(self, state: Mapping[str, Any]) -> None:
        try:
            self._check_state_chart(state)
            partial = [float(v) for v in state["partial"]]
            if len(partial) >= self._n:
                raise IncompatibleState(f"partial subgroup of {len(partial)} readings")
            self._seq = int(state["seq"])
            self._partial = partial
            raw_ts = state["partial_ts"]
            self._partial_ts = None if raw_ts is None else datetime.fromisoformat(raw_ts)
            self._window.extend(float(v) for v in state["window"])
            raw_baseline = state["baseline"]
            raw_limits = state["limits"]
            limits = None if raw_limits is None else limits_from_dict(raw_limits)
            failing = 0
            for rule_id in state["failing"]:
                failing |= 1 << int(rule_id)
            range_failing = bool(state["range_failing"])
            pending = bool(state["limits_pending"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, IncompatibleState):
                raise
            raise IncompatibleState(f"malformed state ({exc!r})") from exc
        spec = self.spec
        if spec.has_fixed_limits and (limits is None or limits.method is Method.FIXED):
            # The config's fixed limits win over remembered fixed ones (they may be edited).
            fixed = self._fixed_limits()
            if fixed != limits:
                limits, pending = fixed, True
        if limits is not None:
            self._install(limits)
            self._failing = failing & sum(1 << rule_id for rule_id in self._rules)
            self._rfailing = range_failing
            self._announce = pending
        else:
            self._baseline = array("d", (float(v) for group in raw_baseline or () for v in group))
