"""Encoding of everything the bridge publishes, and decoding of the commands it accepts.

Pure functions over plain data (docs/topics.md is the reference): the envelope
``{"type": ..., "payload": {...}}``, ISO 8601 UTC times with ``Z`` and milliseconds, JSON
numbers only (NaN never leaves the bridge).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bridge.domain import AcknowledgeViolation, Recalculate, ViolationEvent
from bridge.errors import InvalidCommand
from bridge.readings import text_fault
from engine import (
    CharacteristicSpec,
    ControlLimits,
    RuleConfig,
    SampleProcessed,
    ViolationRaised,
    figure,
    limits_payload,
    plotted_value,
)

__all__ = [
    "ATTRIBUTE_CHARTS",
    "ERROR_PAYLOAD_CHARS",
    "ERROR_REASON_CHARS",
    "ERROR_TOPIC_CHARS",
    "MAX_ALARMS",
    "MAX_COMMAND_ID",
    "SHEWHART_CHARTS",
    "ack_payload",
    "alarms_payload",
    "chart_parameters",
    "clip",
    "dumps",
    "envelope",
    "error_payload",
    "history_payload",
    "iso_z",
    "limits_message",
    "parse_ack",
    "parse_recalculate",
    "point_fields",
    "reply_payload",
    "rules_payload",
    "sample_payload",
    "status_payload",
    "violation_payload",
]

ERROR_PAYLOAD_CHARS = 200
"""Characters of an input's payload echoed on ``<prefix>/bridge/errors``."""
ERROR_REASON_CHARS = 500
"""Characters of a reason echoed on ``errors`` or in a reply (a 5 MB ``reason`` in a command
must not come back as 5 MB)."""
ERROR_TOPIC_CHARS = 200
"""Characters of an input's topic echoed on ``errors``."""
MAX_COMMAND_ID = 2**63 - 1
"""Largest id a command may name (a database BIGINT)."""


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters plus ``...`` when it was longer."""
    return text if len(text) <= limit else text[:limit] + "..."


def _shown(value: object) -> str:
    """A value from a command, as quoted in a reason: its repr, cut short."""
    return clip(repr(value), 40)


def iso_z(ts: datetime) -> str:
    """``2026-11-28T06:00:00.123Z``: UTC, millisecond precision. ``ts`` must be aware."""
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: timestamps must be timezone-aware")
    if ts.utcoffset():
        ts = ts.astimezone(UTC)
    return ts.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def dumps(message: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; refuses NaN and infinity rather than emit invalid JSON."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()


def envelope(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": kind, "payload": dict(payload)}


SHEWHART_CHARTS = frozenset(("imr", "xbar_r", "xbar_s"))
"""The Shewhart variables charts: their ``sample`` has no ``statistic`` (docs/topics.md)."""
ATTRIBUTE_CHARTS = frozenset(("p", "np", "c", "u"))
"""The attribute charts: one count a sample; ``value`` is that count."""
_SIZE_FIELD = {"p": "inspected", "np": "inspected", "u": "units"}


def sample_payload(
    sample_id: int,
    sample: SampleProcessed,
    chart: str | None = None,
    *,
    out_of_spec: bool | None = None,
    due_at: datetime | None = None,
) -> dict[str, Any]:
    """The ``sample`` payload: readings as given, computed figures rounded
    (engine/_serialize.py, shared with ``openspc analyze``). ``chart`` is the
    characteristic's chart family (None: a Shewhart chart); the families of docs/spc.md
    add their plotted point (docs/topics.md). ``out_of_spec`` (None without spec limits)
    and ``due_at`` (when the next sample is due; None without a sample_interval) come from
    the alarm glue (bridge/_alarms.py)."""
    value = _number(sample.value)
    data: dict[str, Any] = {
        "sample_id": sample_id,
        "characteristic_id": sample.characteristic_id,
        "timestamp": iso_z(sample.timestamp),
        "value": None if value is None else plotted_value(value, len(sample.values)),
        "values": [float(v) for v in sample.values],
        "range": figure(_number(sample.range)),
        "zone": None if sample.zone is None else str(sample.zone),
        "in_control": sample.in_control,
        "failed_rules": sorted(sample.failed_rules),
        "range_failed_rules": sorted(sample.range_failed_rules),
        "out_of_spec": out_of_spec,
        "due_at": None if due_at is None else iso_z(due_at),
    }
    if chart is None or chart in SHEWHART_CHARTS:
        return data
    return point_fields(
        data,
        chart,
        sample.statistic,
        sample.ucl,
        sample.lcl,
        sample.cusum_upper,
        sample.cusum_lower,
        sample.size,
    )


def point_fields(
    data: dict[str, Any],
    chart: str,
    statistic: float | None,
    ucl: float | None,
    lcl: float | None,
    cusum_upper: float | None,
    cusum_lower: float | None,
    size: float | None,
) -> dict[str, Any]:
    """Add a chart family's point to a ``sample`` payload ``data`` (live or stored; one
    spelling): ``statistic``, ``ucl``, ``lcl`` (CUSUM also ``cusum_upper``,
    ``cusum_lower``; p and np ``inspected``, u ``units``); an attribute chart's ``value``
    and ``values`` are its count, as an integer."""
    if chart in ATTRIBUTE_CHARTS:
        count = data["value"]
        if count is not None:
            data["value"] = int(count)
            data["values"] = [int(count)]
        field_name = _SIZE_FIELD.get(chart)
        if field_name is not None:
            shown = None if size is None else figure(size)
            if field_name == "inspected" and shown is not None:
                shown = int(shown)
            data[field_name] = shown
    data["statistic"] = figure(_number(statistic))
    data["ucl"] = figure(_number(ucl))
    data["lcl"] = figure(_number(lcl))
    if chart == "cusum":
        data["cusum_upper"] = figure(_number(cusum_upper))
        data["cusum_lower"] = figure(_number(cusum_lower))
    return data


def limits_message(
    limits: ControlLimits, characteristic_id: int | None, timestamp_iso: str, chart: str
) -> dict[str, Any]:
    """The ``control_limits`` payload (engine.limits_payload), with ``chart`` for every
    chart family, the Shewhart ones included (docs/topics.md)."""
    payload = limits_payload(limits, characteristic_id, timestamp_iso)
    payload["chart"] = chart
    return payload


def chart_parameters(spec: CharacteristicSpec) -> dict[str, float | int]:
    """The settings of a characteristic's chart family, as ``meta.parameters`` names them
    (the names of docs/spc.md): np ``inspected``; EWMA ``lambda``, ``L``; CUSUM ``k``,
    ``h``; nothing for the others."""
    chart = spec.chart_name
    if chart == "np" and spec.inspected is not None:
        return {"inspected": spec.inspected}
    if chart == "ewma":
        return {"lambda": float(spec.ewma_lambda), "L": float(spec.ewma_l)}
    if chart == "cusum":
        return {"k": float(spec.cusum_k), "h": float(spec.cusum_h)}
    return {}


def violation_payload(
    violation_id: int, sample_id: int | None, violation: ViolationEvent
) -> dict[str, Any]:
    """A ``violation`` of any kind (docs/topics.md): ``spec`` and ``overdue`` have no
    ``rule_id`` or ``chart``; ``overdue`` no ``sample_id`` either."""
    kind, rule_id, chart = "rule", None, None
    if isinstance(violation, ViolationRaised):
        rule_id, chart = violation.rule_id, str(violation.chart)
    else:
        kind = str(violation.kind)
    return {
        "violation_id": violation_id,
        "sample_id": sample_id,
        "characteristic_id": violation.characteristic_id,
        "kind": kind,
        "rule_id": rule_id,
        "rule_name": violation.rule_name,
        "severity": str(violation.severity),
        "chart": chart,
        "timestamp": iso_z(violation.timestamp),
    }


def ack_payload(
    violation_id: int, characteristic_id: int, user: str, reason: str, ts: datetime
) -> dict[str, Any]:
    return {
        "violation_id": violation_id,
        "characteristic_id": characteristic_id,
        "acknowledged": True,
        "user": user,
        "reason": reason,
        "timestamp": iso_z(ts),
    }


def history_payload(characteristic_id: int, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"characteristic_id": characteristic_id, "samples": list(samples)}


MAX_ALARMS = 1000
"""At most this many open violations in one retained ``alarms`` message (the newest): a
characteristic nobody acknowledges for weeks must not grow a message past what a broker or
an HMI accepts. ``open_count`` says how many are open in all."""


def alarms_payload(
    characteristic_id: int, violations: Sequence[Mapping[str, Any]], limit: int = MAX_ALARMS
) -> dict[str, Any]:
    """The open violations, oldest first (the newest ``limit`` of them), and their count."""
    shown = list(violations[-limit:]) if len(violations) > limit else list(violations)
    return {
        "characteristic_id": characteristic_id,
        "violations": shown,
        "open_count": len(violations),
    }


def rules_payload(rules: Sequence[RuleConfig]) -> list[dict[str, Any]]:
    return [
        {
            "rule_id": rule.rule_id,
            "name": rule.name,
            "length": rule.length,
            "severity": str(rule.severity),
        }
        for rule in sorted(rules, key=lambda r: r.rule_id)
    ]


def status_payload(online: bool, ts: datetime) -> dict[str, Any]:
    """``bridge/status``: no client id (it would tell anyone which id to take; docs/topics.md)."""
    return {"online": online, "timestamp": iso_z(ts)}


def _text(raw: bytes | str) -> str:
    """Bytes from outside as text that is safe to echo (bad UTF-8 and lone surrogates
    replaced, NUL shown as U+FFFD)."""
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", errors="replace")
    else:
        text = raw.encode("utf-8", errors="replace").decode("utf-8")
    return text.replace("\x00", "\ufffd")


def error_payload(
    topic: str, payload: bytes, reason: str, ts: datetime, count: int = 1, summary: bool = False
) -> dict[str, Any]:
    """An ``errors`` message; every field echoed from outside is cut short. ``count`` is
    how many rejections it stands for; ``summary`` is true for the end-of-window message that
    counts the repeats not published one by one (bridge/_error_reports.py)."""
    return {
        "topic": clip(_text(topic), ERROR_TOPIC_CHARS),
        # cut the bytes first: a 100 MB payload is not decoded to be cut
        "payload": clip(_text(payload[: ERROR_PAYLOAD_CHARS * 4]), ERROR_PAYLOAD_CHARS),
        "reason": clip(_text(reason), ERROR_REASON_CHARS),
        "timestamp": iso_z(ts),
        "count": count,
        "summary": summary,
    }


def reply_payload(error: str | None = None) -> dict[str, Any]:
    """The MQTT 5 reply to a command: ``{"ok": true}`` or ``{"ok": false, "error": ...}``."""
    return (
        {"ok": True} if error is None else {"ok": False, "error": clip(error, ERROR_REASON_CHARS)}
    )


def _json_object(topic: str, payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload.decode("utf-8") or "{}")
    except RecursionError:
        raise InvalidCommand(topic, "not JSON: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidCommand(topic, clip(f"not JSON: {exc}", 200)) from None
    if not isinstance(data, dict):
        raise InvalidCommand(topic, "a command must be a JSON object")
    return data


def _positive_int(topic: str, data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COMMAND_ID:
        raise InvalidCommand(
            topic,
            f"{key!r} must be an integer from 1 to {MAX_COMMAND_ID}, got {_shown(value)}",
        )
    return value


def _checked_text(topic: str, value: str, what: str) -> str:
    fault = text_fault(value, what)
    if fault is not None:
        raise InvalidCommand(topic, fault)
    return value


def parse_ack(topic: str, user: str, payload: bytes) -> AcknowledgeViolation:
    """``{"violation_id": 10, "reason": "Tool Change", "exclude_sample": false}``."""
    data = _json_object(topic, payload)
    violation_id = _positive_int(topic, data, "violation_id")
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidCommand(topic, f"'reason' must be a non-empty string, got {_shown(reason)}")
    _checked_text(topic, reason, "reason")
    exclude = data.get("exclude_sample", False)
    if not isinstance(exclude, bool):
        raise InvalidCommand(
            topic, f"'exclude_sample' must be true or false, got {_shown(exclude)}"
        )
    if not user:
        raise InvalidCommand(topic, "the user (the topic's last level) is empty")
    _checked_text(topic, user, "user")
    return AcknowledgeViolation(violation_id, user, reason, exclude)


def parse_recalculate(topic: str, characteristic_id: int, payload: bytes) -> Recalculate:
    """``{}`` or ``{"last": 25}``."""
    data = _json_object(topic, payload)
    unknown = set(data) - {"last"}
    if unknown:
        names = clip(", ".join(sorted(unknown)), 100)
        raise InvalidCommand(topic, f"unknown field(s): {names}")
    last = _positive_int(topic, data, "last") if "last" in data else None
    return Recalculate(characteristic_id, last)
