"""The pure SPC engine: readings in, samples, limits and events out. No I/O here."""

from engine._types import (
    Capability,
    CharacteristicSpec,
    Chart,
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

__all__ = [
    "Capability",
    "CharacteristicSpec",
    "Chart",
    "ControlLimits",
    "ControlLimitsUpdated",
    "EngineEvent",
    "Method",
    "RuleConfig",
    "SampleProcessed",
    "SecondaryLimits",
    "Severity",
    "ViolationRaised",
    "Zone",
]
