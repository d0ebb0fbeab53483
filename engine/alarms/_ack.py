"""Acknowledgements with cause, action and comment, for one or many violations, all or
nothing (docs/spc.md, "Alarm workflow: the pure core").

``parse_acknowledgement`` checks a command's JSON object against the configured codes;
``select_violations`` resolves its target against the violations the store found, refusing
the whole command when one id is unknown or already acknowledged. Neither touches a store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from engine.alarms._text import text_fault

__all__ = [
    "DEFAULT_ACTION_CODES",
    "DEFAULT_CAUSE_CODES",
    "MAX_ACK_IDS",
    "MAX_COMMENT_CHARS",
    "AckPolicy",
    "Acknowledgement",
    "AllOpen",
    "InvalidAcknowledgement",
    "KnownViolation",
    "ViolationIds",
    "parse_acknowledgement",
    "select_violations",
]

DEFAULT_CAUSE_CODES: Final = (
    "Tool Change",
    "Raw Material Change",
    "Setup Adjustment",
    "Measurement Error",
    "Process Adjustment",
    "Environmental Factor",
    "Operator Error",
    "Equipment Malfunction",
    "False Alarm",
    "Under Investigation",
    "Other",
)
"""The reason codes of docs/topics.md: ``cause_codes`` when the config names none."""

DEFAULT_ACTION_CODES: Final = (
    "Adjusted Process",
    "Replaced Tool",
    "Recalibrated Gauge",
    "Quarantined Parts",
    "Notified Maintenance",
    "No Action Needed",
    "Other",
)

MAX_COMMENT_CHARS: Final = 500
MAX_ACK_IDS: Final = 1000
"""Most violations one command may name (``violation_ids``)."""
_MAX_ID: Final = 2**63 - 1  # a database BIGINT, as every command id


class InvalidAcknowledgement(ValueError):
    """An acknowledgement refused whole: ``field`` names the payload field at fault
    (``cause``, ``action``, ``comment``, ``violation_ids``, ...), ``reason`` says why.
    ``violation_id`` is set when one violation is the cause (unknown, acknowledged)."""

    def __init__(self, field: str, reason: str, violation_id: int | None = None) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason
        self.violation_id = violation_id


@dataclass(frozen=True, slots=True)
class AckPolicy:
    """The configured codes (``cause_codes``, ``action_codes``, ``require_action``)."""

    cause_codes: tuple[str, ...] = DEFAULT_CAUSE_CODES
    action_codes: tuple[str, ...] = DEFAULT_ACTION_CODES
    require_action: bool = False


@dataclass(frozen=True, slots=True)
class ViolationIds:
    """``violation_id`` or ``violation_ids``: these violations, in the order given, once each."""

    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AllOpen:
    """``characteristic_id`` + ``all_open``: every open violation of the characteristic."""

    characteristic_id: int


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """A checked acknowledgement command (the imperative: acknowledge these)."""

    target: ViolationIds | AllOpen
    cause: str
    action: str | None = None
    comment: str | None = None
    exclude_sample: bool = False


@dataclass(frozen=True, slots=True)
class KnownViolation:
    """What ``select_violations`` needs of a stored violation."""

    id: int
    characteristic_id: int
    acknowledged: bool


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _id(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_ID:
        raise InvalidAcknowledgement(
            name, f"{name!r} must be an integer from 1 to {_MAX_ID}, got {_shown(value)}"
        )
    return value


def _target(data: Mapping[str, object]) -> ViolationIds | AllOpen:
    forms = [k for k in ("violation_id", "violation_ids", "characteristic_id") if k in data]
    if "all_open" in data and "characteristic_id" not in data:
        raise InvalidAcknowledgement("all_open", "'all_open' needs 'characteristic_id'")
    if not forms:
        raise InvalidAcknowledgement(
            "violation_id",
            "name the violations: 'violation_id', 'violation_ids', or "
            "'characteristic_id' with 'all_open': true",
        )
    if len(forms) > 1:
        raise InvalidAcknowledgement(forms[1], f"give one of {', '.join(forms)}, not several")
    form = forms[0]
    if form == "violation_id":
        return ViolationIds((_id(data["violation_id"], "violation_id"),))
    if form == "violation_ids":
        raw = data["violation_ids"]
        if not isinstance(raw, list) or not raw:
            raise InvalidAcknowledgement(
                form, f"'violation_ids' must be a non-empty list of ids, got {_shown(raw)}"
            )
        if len(raw) > MAX_ACK_IDS:
            raise InvalidAcknowledgement(
                form, f"'violation_ids' names {len(raw)} violations, limit is {MAX_ACK_IDS}"
            )
        ids = (_id(v, "violation_ids") for v in raw)
        return ViolationIds(tuple(dict.fromkeys(ids)))
    if data.get("all_open") is not True:
        raise InvalidAcknowledgement(
            "all_open",
            f"'characteristic_id' needs 'all_open': true, got {_shown(data.get('all_open'))}",
        )
    return AllOpen(_id(data["characteristic_id"], "characteristic_id"))


def _code(data: Mapping[str, object], name: str, codes: tuple[str, ...]) -> str | None:
    """``data[name]`` when it is one of ``codes``; None when absent. ``reason`` is checked
    against the cause codes and named as the sender spelled it."""
    value = data.get(name)
    if value is None:
        return None
    kind = "cause" if name == "reason" else name
    if not isinstance(value, str) or value not in codes:
        raise InvalidAcknowledgement(
            name, f"{name} {_shown(value)} is not one of the configured {kind}_codes"
        )
    return value


def parse_acknowledgement(data: Mapping[str, object], policy: AckPolicy) -> Acknowledgement:
    """Check an acknowledgement's JSON object (the user comes from the topic, not here).

    ``cause`` must be one of ``policy.cause_codes`` (``reason`` is its old name; both may be
    given when they agree); ``action`` one of ``action_codes``, required when
    ``require_action``; ``comment`` at most 500 characters (empty means none). Unknown
    fields are ignored, as they always were for ``reason``-only acknowledgements.
    """
    target = _target(data)
    cause, reason = data.get("cause"), data.get("reason")
    if cause is not None and reason is not None and cause != reason:
        raise InvalidAcknowledgement(
            "cause", f"'cause' {_shown(cause)} and 'reason' {_shown(reason)} disagree"
        )
    checked = _code(data, "cause" if cause is not None else "reason", policy.cause_codes)
    if checked is None:
        raise InvalidAcknowledgement("cause", "'cause' is required (one of the cause_codes)")
    action = _code(data, "action", policy.action_codes)
    if action is None and policy.require_action:
        raise InvalidAcknowledgement(
            "action", "'action' is required (require_action is on): one of the action_codes"
        )
    comment = data.get("comment")
    if comment is not None:
        if not isinstance(comment, str):
            raise InvalidAcknowledgement(
                "comment", f"'comment' must be text, got {_shown(comment)}"
            )
        fault = text_fault(comment, "comment", MAX_COMMENT_CHARS)
        if fault is not None:
            raise InvalidAcknowledgement("comment", fault)
        comment = comment or None
    exclude = data.get("exclude_sample", False)
    if not isinstance(exclude, bool):
        raise InvalidAcknowledgement(
            "exclude_sample", f"'exclude_sample' must be true or false, got {_shown(exclude)}"
        )
    return Acknowledgement(target, checked, action, comment, exclude)


def select_violations(
    target: ViolationIds | AllOpen, found: Iterable[KnownViolation]
) -> tuple[KnownViolation, ...]:
    """The violations an acknowledgement covers, or ``InvalidAcknowledgement`` for the whole
    command. ``found`` is what the store holds of the ids named (``ViolationIds``) or of
    the characteristic's violations (``AllOpen``; acknowledged ones may be left out).

    An id the store does not hold, or one already acknowledged, refuses everything, naming
    the first such id in the order given. ``AllOpen`` with nothing open is refused too (an
    acknowledgement that acknowledges nothing is a mistake worth telling the user about).
    """
    if isinstance(target, AllOpen):
        chosen = tuple(
            sorted(
                (
                    v
                    for v in found
                    if v.characteristic_id == target.characteristic_id and not v.acknowledged
                ),
                key=lambda v: v.id,
            )
        )
        if not chosen:
            raise InvalidAcknowledgement(
                "characteristic_id",
                f"characteristic {target.characteristic_id} has no open violations",
            )
        return chosen
    by_id = {v.id: v for v in found}
    out: list[KnownViolation] = []
    for vid in target.ids:
        v = by_id.get(vid)
        if v is None:
            raise InvalidAcknowledgement(
                "violation_ids", f"violation {vid} does not exist; nothing acknowledged", vid
            )
        if v.acknowledged:
            raise InvalidAcknowledgement(
                "violation_ids",
                f"violation {vid} is already acknowledged; nothing acknowledged",
                vid,
            )
        out.append(v)
    return tuple(out)
