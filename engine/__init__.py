"""The pure SPC engine: readings in, samples, limits and events out. No I/O here."""

from engine._analysis import Analysis, AnalysisPoint, analyze, analyze_counts
from engine._bench import benchmark
from engine._constants import Factors, c4, factors
from engine._engine import CharacteristicEngine
from engine._errors import (
    IncompatibleState,
    InsufficientData,
    InvalidChartSettings,
    InvalidCount,
    ReadingKindMismatch,
    ZeroDispersion,
)
from engine._limits import (
    capability,
    classify,
    compute_limits,
    fixed_limits,
    method_for,
    zone_boundaries,
)
from engine._rules import MAX_RULE_LENGTH, PRESETS, RULE_DEFAULTS, resolve_rules, rule_name
from engine._serialize import (
    figure,
    iso_z,
    limits_from_dict,
    limits_payload,
    limits_to_dict,
    plotted_value,
)
from engine._types import (
    Capability,
    CharacteristicSpec,
    Chart,
    ChartPoint,
    ControlLimits,
    ControlLimitsUpdated,
    EngineEvent,
    Method,
    RuleConfig,
    SampleProcessed,
    SecondaryLimits,
    Severity,
    ViolationRaised,
    Zone,
)
from engine.alarms import AlarmKind, DueTracker, SampleOverdue, SpecViolationRaised
from engine.charts import (
    FAMILIES,
    ChartFamily,
    chart_family,
    chart_faults,
    check_chart,
    default_chart,
)

__all__ = [
    "FAMILIES",
    "MAX_RULE_LENGTH",
    "PRESETS",
    "RULE_DEFAULTS",
    "Analysis",
    "AnalysisPoint",
    "Capability",
    "CharacteristicEngine",
    "CharacteristicSpec",
    "Chart",
    "ChartFamily",
    "ChartPoint",
    "ControlLimits",
    "ControlLimitsUpdated",
    "EngineEvent",
    "Factors",
    "IncompatibleState",
    "InsufficientData",
    "InvalidChartSettings",
    "InvalidCount",
    "Method",
    "ReadingKindMismatch",
    "RuleConfig",
    "SampleProcessed",
    "SecondaryLimits",
    "Severity",
    "ViolationRaised",
    "ZeroDispersion",
    "Zone",
    "analyze",
    "analyze_counts",
    "benchmark",
    "c4",
    "capability",
    "chart_family",
    "chart_faults",
    "check_chart",
    "classify",
    "compute_limits",
    "default_chart",
    "factors",
    "figure",
    "fixed_limits",
    "iso_z",
    "limits_from_dict",
    "limits_payload",
    "limits_to_dict",
    "method_for",
    "plotted_value",
    "resolve_rules",
    "rule_name",
    "zone_boundaries",
]

# the alarm workflow's pure core (docs/spc.md, "Alarm workflow: the pure core"); the rest
# of it is in engine.alarms
__all__ += ["AlarmKind", "DueTracker", "SampleOverdue", "SpecViolationRaised"]
