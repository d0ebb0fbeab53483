"""The engine's vocabulary: enums, rule settings, limits, and the events it emits.

Everything here is plain immutable data. The engine takes readings in and returns these
events; it never does I/O. Timestamps are always timezone-aware ``datetime`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


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
    chart's zones are ``sigma / sqrt(n)`` wide."""

    center_line: float
    ucl: float
    lcl: float
    sigma: float
    method: Method
    sample_count: int
    range: SecondaryLimits
    capability: Capability | None


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
    rules: tuple[RuleConfig, ...] = field(default_factory=lambda: _nelson())
    """The rules to judge; Nelson's eight by default (an explicit ``()`` judges none)."""

    @property
    def has_fixed_limits(self) -> bool:
        return self.ucl is not None and self.lcl is not None


def _nelson() -> tuple[RuleConfig, ...]:
    from engine._rules import RULE_DEFAULTS  # the rule table imports this module

    return RULE_DEFAULTS


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
