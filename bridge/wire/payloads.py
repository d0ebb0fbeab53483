"""Every message the bridge publishes, encoded here once; every command it accepts, decoded.

Pure functions over plain data (docs/topics.md is the reference): the envelope
``{"type": ..., "payload": {...}}``, ISO 8601 UTC times with ``Z`` and milliseconds, JSON
numbers only (NaN never leaves the bridge).

- ``*_payload`` functions shape a payload (a dict) from engine results or stored rows;
- ``encode_*`` functions turn a domain event or a payload into the bytes published;
- ``parse_*`` functions decode a command's payload into a :mod:`bridge.domain` command.

The ``sample`` and ``history`` messages, the bridge's hottest, are joined from bytes already
encoded (a sample's JSON is made once, by the pipeline, and kept in the retained history):
:func:`encode_sample` and :func:`encode_history` give the same bytes as
``encode(kind, payload)`` would, without decoding or encoding the samples again. A sample's
JSON itself (:func:`sample_json`) and a violation's (:func:`violation_json`) are written
straight from their fields: byte for byte what ``dumps`` of their payload gives, without a
dict and a ``json`` encoder for each message (docs/performance.md).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any

from bridge.domain import (
    AcknowledgeViolation,
    Recalculate,
    SampleRecorded,
    ViolationAcknowledged,
    ViolationCreated,
    ViolationEvent,
)
from bridge.errors import InvalidCommand
from bridge.readings import text_fault
from engine import (
    CharacteristicSpec,
    ControlLimits,
    RuleConfig,
    SampleProcessed,
    ViolationRaised,
    Zone,
    figure,
    iso_z,
    limits_payload,
    plotted_value,
)

if TYPE_CHECKING:
    from bridge.pipeline import Metrics
    from bridge.ports import BrokerLink
    from bridge.store import SampleRow, ViolationRecord

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
    "causes_payload",
    "chart_parameters",
    "clip",
    "cluster_payload",
    "dumps",
    "encode",
    "encode_ack",
    "encode_alarms",
    "encode_error",
    "encode_history",
    "encode_limits",
    "encode_meta",
    "encode_metrics",
    "encode_reply",
    "encode_sample",
    "encode_sample_json",
    "encode_status",
    "encode_violation",
    "envelope",
    "error_payload",
    "history_payload",
    "iso_z",
    "limits_message",
    "meta_payload",
    "metrics_payload",
    "parse_ack",
    "parse_recalculate",
    "point_fields",
    "reply_payload",
    "rules_payload",
    "sample_json",
    "sample_payload",
    "status_payload",
    "stored_sample_payload",
    "stored_violation_payload",
    "violation_json",
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
    context: Mapping[str, str] | None = None,
    limits_version: int | None = None,
    *,
    out_of_spec: bool | None = None,
    due_at: datetime | None = None,
) -> dict[str, Any]:
    """The ``sample`` payload: readings as given, computed figures rounded
    (engine/_serialize.py, shared with ``openspc analyze``). ``chart`` is the
    characteristic's chart family (None: a Shewhart chart); the families of docs/spc.md
    add their plotted point (docs/topics.md). ``context`` is the readings' merged context:
    always an object, ``{}`` when they had none (docs/topics.md, "Context").
    ``limits_version`` is the version of the limits that judged it (None before limits
    exist); a new sample is never excluded.
    ``out_of_spec`` (None without spec limits) and ``due_at`` (when the next sample is due;
    None without a sample_interval) come from the alarm glue (bridge/_alarms.py)."""
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
        "context": dict(context) if context else {},
        "limits_version": limits_version,
        "excluded": False,
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


_quoted = encode_basestring_ascii
"""A string as ``dumps`` spells it: the ``json`` module's own encoder of strings (ASCII,
escapes included), the one its C encoder calls for every string."""
_ZONES_JSON = {zone: _quoted(str(zone)) for zone in Zone}


def _json_number(value: float | None) -> str:
    """A figure already made a float (or None), as ``dumps`` spells it; ``ValueError`` for
    infinity, as ``dumps`` (a figure of 1.7976931348623157e308 rounds up to it)."""
    if value is None:
        return "null"
    text = float.__repr__(value)
    if "n" in text:  # "inf", "nan": a finite float's repr has no n
        raise ValueError(f"Out of range float values are not JSON compliant: {text}")
    return text


def _json_rules(rules: Sequence[int]) -> str:
    return "[" + ",".join([int.__repr__(rule) for rule in sorted(rules)]) + "]" if rules else "[]"


def _json_context(context: Mapping[str, str] | None) -> str:
    if not context:
        return "{}"
    parts = []
    for key, value in context.items():
        if type(key) is not str or type(value) is not str:
            return dumps(dict(context)).decode()  # whatever else dumps makes of it
        parts.append(_quoted(key) + ":" + _quoted(value))
    return "{" + ",".join(parts) + "}"


def sample_json(
    sample_id: int,
    sample: SampleProcessed,
    chart: str | None = None,
    context: Mapping[str, str] | None = None,
    limits_version: int | None = None,
    *,
    out_of_spec: bool | None = None,
    due_at: datetime | None = None,
) -> bytes:
    """The ``sample`` payload as compact JSON, written from its fields: the bytes
    ``dumps(sample_payload(...))`` gives for the same arguments (keys, their order, numbers,
    escapes; a reading that is not finite raises ``ValueError`` as ``dumps`` does), in about
    two thirds of the time (docs/performance.md). The chart families with a plotted point of
    their own (docs/spc.md) go through the dict."""
    if chart is not None and chart not in SHEWHART_CHARTS:
        return dumps(
            sample_payload(
                sample_id,
                sample,
                chart,
                context,
                limits_version,
                out_of_spec=out_of_spec,
                due_at=due_at,
            )
        )
    values = sample.values
    value = _number(sample.value)
    if value is not None:
        value = plotted_value(value, len(values))
    try:
        readings = ",".join(map(float.__repr__, values))
    except TypeError:  # not floats (an int from a caller): as float(v) spells them
        readings = ",".join([float.__repr__(float(v)) for v in values])
    if "n" in readings:  # as in _json_number
        raise ValueError(f"Out of range float values are not JSON compliant: {readings}")
    zone = sample.zone
    in_control = sample.in_control
    zone_text = "null" if zone is None else _ZONES_JSON.get(zone) or _quoted(str(zone))
    due_text = "null" if due_at is None else f'"{iso_z(due_at)}"'
    text = (
        f'{{"sample_id":{int.__repr__(sample_id)}'
        f',"characteristic_id":{int.__repr__(sample.characteristic_id)}'
        f',"timestamp":"{iso_z(sample.timestamp)}"'
        f',"value":{_json_number(value)}'
        f',"values":[{readings}]'
        f',"range":{_json_number(figure(_number(sample.range)))}'
        f',"zone":{zone_text}'
        f',"in_control":{"null" if in_control is None else "true" if in_control else "false"}'
        f',"failed_rules":{_json_rules(sample.failed_rules)}'
        f',"range_failed_rules":{_json_rules(sample.range_failed_rules)}'
        f',"context":{_json_context(context)}'
        f',"limits_version":{"null" if limits_version is None else int.__repr__(limits_version)}'
        f',"excluded":false'
        f',"out_of_spec":{"null" if out_of_spec is None else "true" if out_of_spec else "false"}'
        f',"due_at":{due_text}}}'
    )
    return text.encode()


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


def violation_json(violation_id: int, sample_id: int | None, violation: ViolationEvent) -> bytes:
    """The ``violation`` payload as compact JSON, written from its fields: the bytes
    ``dumps(violation_payload(...))`` gives for the same arguments."""
    if isinstance(violation, ViolationRaised):
        kind, rule_id, chart = '"rule"', int.__repr__(violation.rule_id), str(violation.chart)
    else:
        kind, rule_id, chart = _quoted(str(violation.kind)), "null", None
    text = (
        f'{{"violation_id":{int.__repr__(violation_id)}'
        f',"sample_id":{"null" if sample_id is None else int.__repr__(sample_id)}'
        f',"characteristic_id":{int.__repr__(violation.characteristic_id)}'
        f',"kind":{kind}'
        f',"rule_id":{rule_id}'
        f',"rule_name":{_quoted(violation.rule_name)}'
        f',"severity":{_quoted(str(violation.severity))}'
        f',"chart":{"null" if chart is None else _quoted(chart)}'
        f',"timestamp":"{iso_z(violation.timestamp)}"}}'
    )
    return text.encode()


def ack_payload(
    violation_id: int,
    characteristic_id: int,
    user: str,
    reason: str,
    ts: datetime,
    action: str | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """The ``ack_update`` payload: ``cause`` and its old name ``reason`` (for OpenSPC
    clients) are the same code; ``action`` and ``comment`` null when not given."""
    return {
        "violation_id": violation_id,
        "characteristic_id": characteristic_id,
        "acknowledged": True,
        "user": user,
        "reason": reason,
        "cause": reason,
        "action": action,
        "comment": comment,
        "timestamp": iso_z(ts),
    }


def causes_payload(
    characteristic_id: int, days: int, counts: Sequence[tuple[str, int]]
) -> dict[str, Any]:
    """The retained ``causes`` payload: acknowledged violations by cause over the last
    ``days`` days, most frequent first (the order ``counts`` is given in)."""
    return {
        "characteristic_id": characteristic_id,
        "days": days,
        "counts": [{"cause": cause, "count": count} for cause, count in counts],
    }


def meta_payload(
    char: Any,
    spec: CharacteristicSpec,
    *,
    codes: tuple[list[str], list[str], bool],
    overdue_grace: float | None,
    shared: dict[Any, list[Any]] | None = None,
) -> dict[str, Any]:
    """The retained ``meta`` payload of a characteristic's config ``char`` (docs/topics.md):
    ``codes`` are the cause codes, the action codes and whether an action is required. With
    ``shared``, characteristics with the same rules share one rules list, and all share one
    code list (never mutated: publish_meta only sets top-level keys); with 10,000
    characteristics that is about 25 MB (docs/performance.md)."""
    if shared is None:
        shared = {}
    engine_rules = spec.rules
    rules_key = ("rules", tuple(engine_rules))
    if rules_key not in shared:
        shared[rules_key] = rules_payload(engine_rules)
    cause_codes, action_codes, require_action = codes
    if "reason_codes" not in shared:
        shared["reason_codes"] = list(cause_codes)
        shared["action_codes"] = list(action_codes)
    sparkplug = getattr(char, "sparkplug", None)
    if sparkplug is not None and hasattr(sparkplug, "model_dump"):
        sparkplug = sparkplug.model_dump()
    return {
        "characteristic_id": char.id,
        "name": char.name,
        "unit": char.unit,
        "subgroup_size": char.subgroup_size,
        "usl": char.usl,
        "lsl": char.lsl,
        "target": char.target,
        "baseline": char.baseline,
        "chart": spec.chart_name,
        "parameters": chart_parameters(spec),
        "rules": shared[rules_key],
        "reason_codes": shared["reason_codes"],
        # the acknowledgement workflow (docs/topics.md, "meta"): reason_codes = cause_codes
        "cause_codes": shared["reason_codes"],
        "action_codes": shared["action_codes"],
        "require_action": require_action,
        "source": {"topic": char.topic, "value_path": char.value_path, "sparkplug": sparkplug},
        "sample_interval": char.sample_interval,
        "overdue_grace": overdue_grace,
        "online": True,
        "timestamp": None,
    }


def metrics_payload(
    now: datetime,
    metrics: Metrics,
    link: BrokerLink,
    held: tuple[int, int, bool, int],
    handler_failures: int,
) -> dict[str, Any]:
    """The retained ``bridge/metrics`` payload (docs/bridge.md, "Metrics"): the pipeline's
    counters, ``held`` (readings buffered, the bound, whether it is full, readings dropped),
    the link's publish counters and the bus's handler failures."""
    m = metrics
    buffered, buffer_max, buffer_full, dropped = held
    return {
        "timestamp": iso_z(now),
        "uptime_s": round(time.monotonic() - m.started, 3),
        "readings_received": m.readings_received,
        "readings_rejected": m.readings_rejected,
        "readings_duplicate": m.readings_duplicate,
        "samples": m.samples,
        "violations": m.violations,
        "acks": m.acks,
        "commands": m.commands,
        "commands_rejected": m.commands_rejected,
        "db_batches": m.db_batches,
        "db_retries": m.db_retries,
        "db_errors": m.db_errors,
        "dead_letters": m.dead_letters,
        "buffered_readings": buffered,
        "buffer_max": buffer_max,
        "buffer_full": buffer_full,
        "dropped_readings": dropped,
        "publish_outstanding": link.outstanding,
        "publish_outstanding_max": link.outstanding_max,
        "publishes_coalesced": link.coalesced,
        "readings_past_receive_maximum": link.over_receive,
        "publishes_refused": link.refused,
        "publishes_denied": link.denied,
        "publishes_retry_pending": link.retry_pending,
        "status_reasserted": link.status_reasserted,
        "connects_refused": link.connects_refused,
        "handler_failures": handler_failures,
        "connected": link.connected.is_set(),
        "latency_ms": m.latency_ms(),
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


def cluster_payload(nodes: Mapping[str, Sequence[int]], ts: datetime) -> dict[str, Any]:
    """``bridge/cluster``: each live node of a cluster and its partitions (docs/scale-out.md)."""
    return {
        "nodes": [{"node": n, "partitions": list(nodes[n])} for n in sorted(nodes)],
        "timestamp": iso_z(ts),
    }


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
    """An acknowledgement's JSON object and its user (the topic's last level). Its fields
    (``violation_id`` / ``violation_ids`` / ``characteristic_id`` + ``all_open``,
    ``cause``, ``action``, ``comment``, ``exclude_sample``) are checked by the handler,
    which knows the configured codes (bridge/_ack_workflow.py)."""
    data = _json_object(topic, payload)
    if not user:
        raise InvalidCommand(topic, "the user (the topic's last level) is empty")
    _checked_text(topic, user, "user")
    return AcknowledgeViolation(user, data)


def parse_recalculate(topic: str, characteristic_id: int, payload: bytes) -> Recalculate:
    """``{}``, ``{"last": 25}`` or ``{"from_sample_id": A, "to_sample_id": B}``."""
    data = _json_object(topic, payload)
    unknown = set(data) - {"last", "from_sample_id", "to_sample_id"}
    if unknown:
        names = clip(", ".join(sorted(unknown)), 100)
        raise InvalidCommand(topic, f"unknown field(s): {names}")
    ranged = [key for key in ("from_sample_id", "to_sample_id") if key in data]
    if not ranged:
        last = _positive_int(topic, data, "last") if "last" in data else None
        return Recalculate(characteristic_id, last)
    if "last" in data:
        raise InvalidCommand(topic, "give 'last' or 'from_sample_id'/'to_sample_id', not both")
    if len(ranged) == 1:
        missing = "to_sample_id" if ranged[0] == "from_sample_id" else "from_sample_id"
        raise InvalidCommand(topic, f"{ranged[0]!r} needs {missing!r} too")
    first = _positive_int(topic, data, "from_sample_id")
    end = _positive_int(topic, data, "to_sample_id")
    if first > end:
        raise InvalidCommand(
            topic, f"'from_sample_id' {first} is after 'to_sample_id' {end}: give the older first"
        )
    return Recalculate(characteristic_id, None, (first, end))


# --- stored rows -> payloads ----------------------------------------------------------------


def stored_sample_payload(row: SampleRow) -> dict[str, Any]:
    """A stored sample as its ``sample`` payload: the same fields, spelt as
    :func:`sample_payload` spells a live one (the retained history restored at start-up)."""
    data: dict[str, Any] = {
        "sample_id": row.id,
        "characteristic_id": row.characteristic_id,
        "timestamp": iso_z(row.ts),
        "value": plotted_value(row.value, len(row.values)),
        "values": row.values,
        "range": figure(row.range),
        "zone": row.zone,
        "in_control": row.in_control,
        "failed_rules": row.failed_rules,
        "range_failed_rules": row.range_failed_rules,
        "context": row.context,
        "limits_version": row.limits_version,
        "excluded": row.excluded,
        "out_of_spec": row.out_of_spec,
        "due_at": None if row.due_at is None else iso_z(row.due_at),
    }
    chart = row.chart
    if chart is None:  # a Shewhart variables chart
        return data
    return point_fields(
        data, chart, row.statistic, row.ucl, row.lcl, row.cusum_upper, row.cusum_lower, row.size
    )


def stored_violation_payload(record: ViolationRecord) -> dict[str, Any]:
    """A stored violation as its ``violation`` payload (the retained ``alarms`` at start-up)."""
    return {
        "violation_id": record.id,
        "sample_id": record.sample_id,
        "characteristic_id": record.characteristic_id,
        "kind": record.kind,
        "rule_id": record.rule_id,
        "rule_name": record.rule_name,
        "severity": record.severity,
        "chart": record.chart,
        "timestamp": iso_z(record.ts),
    }


# --- messages: events and payloads -> bytes -------------------------------------------------


MAX_REPLY_BYTES = 512 * 1024
"""A page's bytes at most (the shipped Mosquitto refuses messages over 1 MB): a page of
samples with long contexts is cut short, its ``next_before_sample_id`` saying where to go on."""


def encode_query_result(characteristic_id: int, samples: list[dict[str, Any]], more: bool) -> bytes:
    """The ``query_result`` message (docs/topics.md, "Query"): the samples that fit in
    :data:`MAX_REPLY_BYTES` (the newest of them), and where the next older page begins (None:
    nothing older)."""
    encoded = [dumps(sample) for sample in samples]
    budget = MAX_REPLY_BYTES - 256  # the envelope's own bytes
    keep, size = len(encoded), 0  # samples kept: encoded[keep:]
    while keep > 0:
        grown = size + len(encoded[keep - 1]) + 1
        if grown > budget and keep < len(encoded):  # the newest always goes, alone if need be
            break
        size, keep = grown, keep - 1
    kept = encoded[keep:]
    following = samples[keep]["sample_id"] if kept and (more or keep > 0) else None
    return b"".join(
        (
            b'{"type":"query_result","payload":{"characteristic_id":%d,"samples":['
            % characteristic_id,
            b",".join(kept),
            b'],"next_before_sample_id":',
            b"null" if following is None else b"%d" % following,
            b"}}",
        )
    )


def encode(kind: str, payload: Mapping[str, Any]) -> bytes:
    """The message ``{"type": kind, "payload": payload}`` as compact JSON."""
    return dumps(envelope(kind, payload))


def encode_sample_json(event: SampleRecorded) -> bytes:
    """The ``sample`` payload of ``event`` as compact JSON (without the envelope): the
    producer's bytes when it encoded them, as the retained history keeps them."""
    if event.encoded:
        return event.encoded
    return dumps(event.payload) if event.payload else sample_json(event.sample_id, event.sample)


def encode_sample(event: SampleRecorded) -> bytes:
    """The ``sample`` message of ``event``."""
    if event.encoded:  # the same bytes as encode("sample", payload), without encoding again
        return b'{"type":"sample","payload":' + event.encoded + b"}"
    return b'{"type":"sample","payload":' + encode_sample_json(event) + b"}"


def encode_history(characteristic_id: int, samples: Sequence[bytes]) -> bytes:
    """The ``history`` message from its samples' JSON (oldest first): the same bytes as
    ``encode("history", history_payload(characteristic_id, decoded samples))``."""
    return b"".join(
        (
            b'{"type":"history","payload":{"characteristic_id":%d,"samples":[' % characteristic_id,
            b",".join(samples),
            b"]}}",
        )
    )


def encode_violation(event: ViolationCreated) -> bytes:
    """The ``violation`` message of ``event``."""
    return (
        b'{"type":"violation","payload":'
        + violation_json(event.violation_id, event.sample_id, event.violation)
        + b"}"
    )


def encode_ack(event: ViolationAcknowledged) -> bytes:
    """The ``ack_update`` message of ``event``."""
    return encode(
        "ack_update",
        ack_payload(
            event.violation_id,
            event.characteristic_id,
            event.user,
            event.reason,
            event.timestamp,
            event.action,
            event.comment,
        ),
    )


def encode_limits(payload: Mapping[str, Any]) -> bytes:
    """The ``control_limits`` message of a payload from :func:`limits_message`."""
    return encode("control_limits", payload)


def encode_meta(meta: Mapping[str, Any]) -> bytes:
    """The ``meta`` message."""
    return encode("meta", meta)


def encode_alarms(
    characteristic_id: int, violations: Sequence[Mapping[str, Any]], limit: int = MAX_ALARMS
) -> bytes:
    """The ``alarms`` message: the open violations, oldest first (see :func:`alarms_payload`)."""
    return encode("alarms", alarms_payload(characteristic_id, violations, limit))


def encode_status(online: bool, ts: datetime) -> bytes:
    """``bridge/status``: flat JSON, no envelope (docs/topics.md)."""
    return dumps(status_payload(online, ts))


def encode_metrics(metrics: Mapping[str, Any]) -> bytes:
    """``bridge/metrics``: flat JSON, no envelope (docs/topics.md)."""
    return dumps(metrics)


def encode_error(
    topic: str, payload: bytes, reason: str, ts: datetime, count: int = 1, summary: bool = False
) -> bytes:
    """A ``bridge/errors`` message: flat JSON (see :func:`error_payload`)."""
    return dumps(error_payload(topic, payload, reason, ts, count, summary))


def encode_reply(error: str | None = None) -> bytes:
    """A command's MQTT 5 reply (see :func:`reply_payload`)."""
    return dumps(reply_payload(error))
