"""The engine's vocabulary: enums, rule settings, limits, and the events it emits.

Everything here is plain immutable data. The engine takes readings in and returns these
events; it never does I/O. Timestamps are always timezone-aware ``datetime`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final, NamedTuple, cast


class Zone(StrEnum):
    """Where a plotted point falls, at CL +/- 1, 2, 3 sigma of the plotted statistic."""

    BEYOND_UCL = "beyond_ucl"
    ZONE_A_UPPER = "zone_a_upper"
    ZONE_B_UPPER = "zone_b_upper"
    ZONE_C_UPPER = "zone_c_upper"
    ZONE_C_LOWER = "zone_c_lower"
    ZONE_B_LOWER = "zone_b_lower"
    ZONE_A_LOWER = "zone_a_lower"
    BEYOND_LCL = "beyond_lcl"


class Method(StrEnum):
    """How the control limits were obtained."""

    MOVING_RANGE = "moving_range"
    R_BAR_D2 = "r_bar_d2"
    S_BAR_C4 = "s_bar_c4"
    FIXED = "fixed"
    P_BAR = "p_bar"
    """p and np charts: p-bar = sum of defectives / sum inspected (binomial sigma)."""
    C_BAR = "c_bar"
    """c chart: c-bar, the mean count (Poisson sigma)."""
    U_BAR = "u_bar"
    """u chart: u-bar = sum of defects / sum of units (Poisson sigma)."""


class Severity(StrEnum):
    CRITICAL = "CRITICAL"
    WARNING = "WARNING"


class Chart(StrEnum):
    """The X (individuals / X-bar) chart, or the secondary (MR, R or S) chart."""

    X = "x"
    RANGE = "range"


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """One Nelson rule as a characteristic uses it.

    ``length`` is the rule's run length K in Minitab's terms: 1 for rule 1, 9 for rule 2,
    6 for rule 3, 14 for rule 4, 2 for rule 5 (2 of 3), 4 for rule 6 (4 of 5), 15 for rule 7
    and 8 for rule 8. For the "m of n" rules 5 and 6, ``length`` is m and the window is m + 1.
    """

    rule_id: int
    length: int
    severity: Severity
    name: str


@dataclass(frozen=True, slots=True)
class SecondaryLimits:
    """Centre line and limits of the secondary chart (MR, R or S)."""

    center_line: float
    ucl: float
    lcl: float


@dataclass(frozen=True, slots=True)
class Capability:
    """Process capability; an index is None where the spec limits do not define it."""

    cp: float | None
    cpk: float | None
    pp: float | None
    ppk: float | None


@dataclass(frozen=True, slots=True)
class ControlLimits:
    """Limits of both charts. ``sigma`` is the within-subgroup process sigma; an X-bar
    chart's zones are ``sigma / sqrt(n)`` wide.

    ``chart`` and ``parameters`` are set by the chart families of docs/spc.md ("Chart
    families": p, np, c, u, EWMA, CUSUM); they stay None and ``()`` for the Shewhart
    variables charts, whose limits (and their payload) are as they always were. ``range``
    is None for a family without a secondary chart. For p and u charts, whose limits vary
    from point to point, ``ucl`` and ``lcl`` are those at the baseline's average size.
    """

    center_line: float
    ucl: float
    lcl: float
    sigma: float
    method: Method
    sample_count: int
    range: SecondaryLimits | None
    capability: Capability | None
    chart: str | None = None
    parameters: tuple[tuple[str, float], ...] = ()
    """The family's settings, e.g. ``(("lambda", 0.2), ("L", 3.0), ("n", 1))``."""

    def parameter(self, name: str) -> float:
        """One of ``parameters`` by name (KeyError when the family has no such setting)."""
        for key, value in self.parameters:
            if key == name:
                return value
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class CharacteristicSpec:
    """What the engine needs to know of a characteristic (a subset of its config)."""

    id: int
    subgroup_size: int = 1
    usl: float | None = None
    lsl: float | None = None
    target: float | None = None
    center_line: float | None = None
    ucl: float | None = None
    lcl: float | None = None
    baseline: int = 25
    rules: tuple[RuleConfig, ...] = field(default_factory=lambda: _unset_rules())
    """The rules to judge. Left out: the family's default (Nelson's eight for the Shewhart
    variables charts, rule 1 for the others); an explicit ``()`` judges none."""
    chart: str | None = None
    """The chart family (docs/spc.md): ``imr``, ``xbar_r``, ``xbar_s``, ``p``, ``np``, ``c``,
    ``u``, ``ewma``, ``cusum``; None follows the subgroup size (``engine.default_chart``)."""
    inspected: int | None = None
    """np charts: the number inspected in every sample (required there, refused elsewhere)."""
    ewma_lambda: float = 0.2
    ewma_l: float = 3.0
    cusum_k: float = 0.5
    cusum_h: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.rules, _UnsetRules):
            from engine._rules import RULE_DEFAULTS
            from engine.charts import FAMILIES, default_chart

            # an unknown chart keeps Nelson's rules here: the engine's check refuses it
            n = self.subgroup_size
            name = self.chart or (default_chart(n) if isinstance(n, int) else "")
            family = FAMILIES.get(name)
            rules = RULE_DEFAULTS if family is None else family.default_rules
            object.__setattr__(self, "rules", rules)

    @property
    def has_fixed_limits(self) -> bool:
        return self.ucl is not None and self.lcl is not None

    @property
    def chart_name(self) -> str:
        """``chart``, or the variables chart the subgroup size implies."""
        if self.chart is not None:
            return self.chart
        from engine.charts import default_chart

        return default_chart(self.subgroup_size)


class _UnsetRules(tuple[RuleConfig, ...]):
    """Marks ``rules`` left out, so the spec can take its family's default."""

    __slots__ = ()


def _unset_rules() -> tuple[RuleConfig, ...]:
    return _UnsetRules()


# --- events (past tense): what the engine tells the world --------------------------------


@dataclass(frozen=True, slots=True)
class SampleProcessed:
    """A subgroup was completed and judged.

    ``seq`` counts the characteristic's samples from 1; the bridge maps it to a global
    ``sample_id``. ``zone`` and ``in_control`` are None while no control limits exist.
    ``range`` is the moving range (n = 1), range (2..10) or standard deviation (> 10),
    None where undefined (the first individual).
    """

    characteristic_id: int
    seq: int
    timestamp: datetime
    value: float
    values: tuple[float, ...]
    range: float | None
    zone: Zone | None
    in_control: bool | None
    failed_rules: tuple[int, ...]
    range_failed_rules: tuple[int, ...]
    point: ChartPoint | None = None
    """The plotted point of the chart families of docs/spc.md (p, np, c, u, EWMA, CUSUM);
    None for the Shewhart variables charts, whose plotted point is ``value``. One field
    rather than six: a frozen dataclass pays for every field it sets, and the Shewhart path
    makes a few hundred thousand of these a second."""

    @property
    def statistic(self) -> float | None:
        """d/n, d, c, c/units, the EWMA z or the larger CUSUM sum; None for the Shewhart
        variables charts and for EWMA/CUSUM baseline samples."""
        return None if self.point is None else self.point.statistic

    @property
    def ucl(self) -> float | None:
        """This point's own upper limit (it varies for p, u and EWMA); None before limits."""
        return None if self.point is None else self.point.ucl

    @property
    def lcl(self) -> float | None:
        return None if self.point is None else self.point.lcl

    @property
    def cusum_upper(self) -> float | None:
        return None if self.point is None else self.point.cusum_upper

    @property
    def cusum_lower(self) -> float | None:
        return None if self.point is None else self.point.cusum_lower

    @property
    def size(self) -> float | None:
        """Attribute charts: the sample's ``inspected`` (p, np) or ``units`` (u); None else."""
        return None if self.point is None else self.point.size


class _SampleDraft:
    """``SampleProcessed``'s slots without its frozen ``__setattr__``: ``new_sample`` fills one
    with plain slot stores and turns it into the ``SampleProcessed`` it is (same slots, same
    layout), ready-made and frozen from then on. A frozen dataclass's own ``__init__`` sets each
    field through ``object.__setattr__``: 1.3 us of the 3.5 us a point costs at n = 5
    (docs/performance.md, "engine n = 5")."""

    __slots__ = (
        "characteristic_id",
        "failed_rules",
        "in_control",
        "point",
        "range",
        "range_failed_rules",
        "seq",
        "timestamp",
        "value",
        "values",
        "zone",
    )

    def __init__(
        self,
        characteristic_id: int,
        seq: int,
        timestamp: datetime,
        value: float,
        values: tuple[float, ...],
        range: float | None,
        zone: Zone | None,
        in_control: bool | None,
        failed_rules: tuple[int, ...],
        range_failed_rules: tuple[int, ...],
        point: ChartPoint | None = None,
    ) -> None:
        self.characteristic_id = characteristic_id
        self.seq = seq
        self.timestamp = timestamp
        self.value = value
        self.values = values
        self.range = range
        self.zone = zone
        self.in_control = in_control
        self.failed_rules = failed_rules
        self.range_failed_rules = range_failed_rules
        self.point = point
        self.__class__ = SampleProcessed  # type: ignore[assignment]  # same layout: see above


new_sample: Final = cast("type[SampleProcessed]", _SampleDraft)
"""``SampleProcessed(...)`` with the same arguments and the same result, several times
faster: the engine's hot path makes every sample with it."""


class ChartPoint(NamedTuple):
    """What a chart family's sample adds to ``SampleProcessed`` (docs/spc.md)."""

    statistic: float | None
    ucl: float | None
    lcl: float | None
    cusum_upper: float | None = None
    cusum_lower: float | None = None
    size: float | None = None


@dataclass(frozen=True, slots=True)
class ViolationRaised:
    """A rule started failing (one alarm per episode; it re-arms once a point passes)."""

    characteristic_id: int
    sample_seq: int
    rule_id: int
    rule_name: str
    severity: Severity
    chart: Chart
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class ControlLimitsUpdated:
    """New control limits hold from now on (baseline complete, fixed, or recalculated)."""

    characteristic_id: int
    limits: ControlLimits
    timestamp: datetime


EngineEvent = SampleProcessed | ViolationRaised | ControlLimitsUpdated
