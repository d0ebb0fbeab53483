"""The alarm workflow's pure core (docs/spc.md, "Alarm workflow: the pure core"): spec
alarms, due times and overdue alarms, acknowledgement checks, reading context, the Pareto
of causes and limit versions. Decision logic only: no I/O, no clock reads; the bridge
passes time in (its monotonic clock for due times, aware datetimes for timestamps)."""

from engine.alarms._ack import (
    DEFAULT_ACTION_CODES,
    DEFAULT_CAUSE_CODES,
    MAX_ACK_IDS,
    MAX_COMMENT_CHARS,
    Acknowledgement,
    AckPolicy,
    AllOpen,
    InvalidAcknowledgement,
    KnownViolation,
    ViolationIds,
    parse_acknowledgement,
    select_violations,
)
from engine.alarms._context import (
    MAX_CONTEXT_KEYS,
    MAX_CONTEXT_TEXT,
    InvalidContext,
    merge_context,
    reading_context,
    sample_context,
)
from engine.alarms._events import (
    OVERDUE_RULE_NAME,
    SPEC_RULE_NAME,
    AlarmKind,
    SampleOverdue,
    SpecViolationRaised,
)
from engine.alarms._overdue import (
    DEFAULT_RUNNING_VALUES,
    DueTracker,
    InvalidInterval,
    OverdueState,
    default_grace,
    is_running,
    wall_time,
)
from engine.alarms._pareto import CauseCount, cause_pareto, pareto_since
from engine.alarms._spec import SpecJudgement, SpecWatch, out_of_spec
from engine.alarms._text import text_fault
from engine.alarms._versions import limits_version_at_start, next_limits_version

__all__ = [
    "DEFAULT_ACTION_CODES",
    "DEFAULT_CAUSE_CODES",
    "DEFAULT_RUNNING_VALUES",
    "MAX_ACK_IDS",
    "MAX_COMMENT_CHARS",
    "MAX_CONTEXT_KEYS",
    "MAX_CONTEXT_TEXT",
    "OVERDUE_RULE_NAME",
    "SPEC_RULE_NAME",
    "AckPolicy",
    "Acknowledgement",
    "AlarmKind",
    "AllOpen",
    "CauseCount",
    "DueTracker",
    "InvalidAcknowledgement",
    "InvalidContext",
    "InvalidInterval",
    "KnownViolation",
    "OverdueState",
    "SampleOverdue",
    "SpecJudgement",
    "SpecViolationRaised",
    "SpecWatch",
    "ViolationIds",
    "cause_pareto",
    "default_grace",
    "is_running",
    "limits_version_at_start",
    "merge_context",
    "next_limits_version",
    "out_of_spec",
    "pareto_since",
    "parse_acknowledgement",
    "reading_context",
    "sample_context",
    "select_violations",
    "text_fault",
    "wall_time",
]
