"""Parsing of reading payloads (docs/topics.md, "Readings"): pure functions, no I/O, hot path.

Accepted, UTF-8, at most ``max_bytes``:

- a bare number: ``10.5`` (surrounding whitespace ignored);
- ``{"value": 10.5}`` with optional ``"ts"``, ``"batch"``, ``"operator"`` and ``"context"``
  (an object of short strings: part, lot, shift, ...; ``batch`` and ``operator`` join it;
  docs/topics.md, "Context");
- ``{"values": [10.1, 10.3, 9.9, 10.0, 10.2], "ts": ...}`` with exactly ``subgroup_size``
  numbers;
- with a ``value_path`` (``data.od``, ``items.0.od``): the number (or a list of exactly
  ``subgroup_size`` numbers) found at that path in a vendor's JSON object, and the
  top-level ``ts`` if any. A bare number is still accepted there.

:func:`parse_count` reads the counts of the attribute charts (p, np, c, u):
``{"defectives": 3, "inspected": 50}``, ``{"defects": 4}`` or a bare integer,
``{"defects": 7, "units": 5}`` (docs/topics.md), checked by the engine's own rules.

``ts`` is epoch milliseconds (a JSON number) or an ISO 8601 string with a zone (``Z`` or an
offset). Everything else raises :class:`InvalidReading` with a short, specific reason; no
other exception escapes :func:`parse_reading` or :func:`parse_count`, whatever the bytes.

Speed matters more than elegance here: one ``json.loads`` and plain type checks, no pydantic.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import engine
from engine.alarms import InvalidContext, reading_context
from engine.alarms import text_fault as _text_fault
from engine.charts import AttributeFamily

__all__ = [
    "MAX_TEXT_CHARS",
    "MIN_EPOCH_MS",
    "CountReading",
    "InvalidReading",
    "Reading",
    "check_text",
    "compile_value_path",
    "count_shape",
    "parse_count",
    "parse_reading",
    "text_fault",
    "valid_range_fault",
]

MIN_EPOCH_MS = 0
"""Smallest accepted numeric ``ts``: the epoch itself. The contract accepts any epoch
milliseconds, so a small value (epoch seconds sent by mistake) is taken as it is and shows up
as a 1970 timestamp on the chart, rather than losing the measurement."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_SHOW = 40  # characters of an offending input quoted in a reason

MAX_TEXT_CHARS = 200
"""Longest text field taken from outside (``batch``, ``operator``; the columns hold 200)."""


def text_fault(value: str, what: str, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    """Why ``value`` cannot be stored as text (None: it can): the one check of every string
    that enters from outside (readings, commands, Sparkplug string metrics; the alarm
    workflow's comments and context use the same, ``engine.alarms.text_fault``).

    Valid UTF-8 without lone surrogates (``json.loads`` yields ``"\\ud800"`` happily, and no
    database encodes it), no NUL (PostgreSQL refuses it), at most ``max_chars`` characters.
    """
    return _text_fault(value, what, max_chars)


def check_text(value: str, what: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """``value`` itself, or :class:`InvalidReading` saying why it cannot be stored."""
    fault = text_fault(value, what, max_chars)
    if fault is not None:
        raise InvalidReading(fault)
    return value


class InvalidReading(ValueError):
    """A payload that is not a reading. ``reason`` is short and human; the bridge publishes it
    with the topic the payload came on, on ``<prefix>/bridge/errors``."""

    def __init__(self, reason: str, topic: str | None = None) -> None:
        self.reason = reason
        self.topic = topic
        super().__init__(reason if topic is None else f"{topic}: {reason}")


@dataclass(frozen=True, slots=True)
class Reading:
    """One parsed payload: one reading, or a whole subgroup at once.

    ``ts`` is the source's timestamp (UTC) when it sent one (``source_ts`` True), else the
    time of arrival. ``context`` is the reading's context with ``batch`` and ``operator``
    joined in (None when it has none).
    """

    values: tuple[float, ...]
    ts: datetime
    source_ts: bool
    batch: str | None = None
    operator: str | None = None
    context: dict[str, str] | None = None


def _context(
    obj: dict[str, object], batch: str | None, operator: str | None, lenient: bool = False
) -> dict[str, str] | None:
    """A reading's ``context`` object with ``batch`` and ``operator`` joined in (None: none),
    or :class:`InvalidReading`. ``lenient`` (a vendor's JSON under a value_path): a
    ``context`` that is not an object is someone else's key and left out."""
    raw = obj.get("context")
    if raw is None or (lenient and not isinstance(raw, dict)):
        if batch is None and operator is None:
            return None  # the common case: no dict made
        raw = None
    try:
        found = reading_context(raw, batch, operator)
    except InvalidContext as exc:
        raise InvalidReading(exc.reason) from None
    return found or None


def _show(text: str) -> str:
    if len(text) > _SHOW:
        text = text[: _SHOW - 3] + "..."
    return repr(text)


def _cut(text: str) -> str:
    return text if len(text) <= _SHOW else text[: _SHOW - 3] + "..."


def _describe(value: object) -> str:
    """A JSON value as a user would recognise it in a reason."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return _cut(str(value))


def _number(value: object, what: str) -> float:
    """``value`` as a finite float, or InvalidReading naming ``what`` it was."""
    if isinstance(value, float):
        result = value
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            result = float(value)
        except OverflowError:
            raise InvalidReading(f"{what} is too large to be a number") from None
    else:
        raise InvalidReading(f"{what} is not a number: got {_describe(value)}")
    if not math.isfinite(result):
        raise InvalidReading(f"{what} is not a finite number: {result!r}")
    return result


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bare_number(text: str) -> float:
    # float() is lenient where a reading must not be: "1_000", "nan", "infinity", digits of
    # other scripts. Only plain ASCII decimal notation passes.
    if not text.isascii() or "_" in text:
        raise InvalidReading(f"not a number: {_show(text)}")
    try:
        result = float(text)
    except ValueError:
        hint = ""
        if text.count(",") == 1 and _is_float(text.replace(",", ".")):
            hint = " (use a decimal point, not a comma)"
        raise InvalidReading(f"not a number: {_show(text)}{hint}") from None
    if not math.isfinite(result):
        raise InvalidReading(f"not a finite number: {_show(text)}")
    return result


def _timestamp(raw: object) -> datetime:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        try:
            ms = float(raw)
        except OverflowError:
            raise InvalidReading(
                f"ts {_cut(str(raw))} is too large for epoch milliseconds"
            ) from None
        if not math.isfinite(ms):
            raise InvalidReading(f"ts is not a finite number: {ms!r}")
        if ms < MIN_EPOCH_MS:
            raise InvalidReading(f"ts {_cut(str(raw))} is before 1970 (ts is epoch milliseconds)")
        if ms > _MAX_EPOCH_MS:
            raise InvalidReading(f"ts {_cut(str(raw))} is too large for epoch milliseconds")
        return _EPOCH + timedelta(milliseconds=ms)
    if isinstance(raw, str):
        text = raw
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidReading(f"ts is not ISO 8601: {_show(text)}") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise InvalidReading(f"ts has no time zone: {_show(text)} (add Z or an offset)")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise InvalidReading(f"ts is out of range: {_show(text)}") from None
    raise InvalidReading(
        f"ts must be epoch milliseconds or an ISO 8601 string, got {_describe(raw)}"
    )


def _text_field(obj: dict[str, object], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return check_text(value, key)
    raise InvalidReading(f"{key} must be a string, got {_describe(value)}")


def _values(raw: object, subgroup_size: int, what: str) -> tuple[float, ...]:
    if not isinstance(raw, list):
        raise InvalidReading(f"{what} must be a list of numbers, got {_describe(raw)}")
    items: list[object] = raw
    if len(items) != subgroup_size:
        raise InvalidReading(
            f"wrong count of values: got {len(items)}, subgroup size is {subgroup_size}"
        )
    return tuple([_number(item, f"{what}[{i}]") for i, item in enumerate(items)])


@lru_cache(maxsize=256)
def compile_value_path(path: str) -> tuple[str, ...]:
    """Split ``data.items.0.od`` into its steps; ValueError for an empty step.

    A step of digits indexes a list (or names a key of an object: ``{"0": ...}``).
    """
    steps = tuple(path.split("."))
    if not path or any(not step or step != step.strip() for step in steps):
        raise ValueError(f"not a value path: {path!r} (dotted keys, like data.od)")
    return steps


def _follow(obj: object, path: str) -> object:
    current = obj
    for depth, step in enumerate(compile_value_path(path)):
        if isinstance(current, dict):
            if step not in current:
                where = ".".join(compile_value_path(path)[:depth]) or "the top level"
                raise InvalidReading(f"value_path {path}: no key {step!r} at {where}")
            current = current[step]
        elif isinstance(current, list) and step.isascii() and step.isdigit():
            index = int(step)
            if index >= len(current):
                raise InvalidReading(
                    f"value_path {path}: index {index} beyond a list of {len(current)}"
                )
            current = current[index]
        else:
            raise InvalidReading(f"value_path {path}: cannot step into {_describe(current)}")
    return current


def _payload_text(payload: bytes | bytearray | memoryview, max_bytes: int) -> str:
    """A payload's text, stripped, or :class:`InvalidReading`: not empty, at most
    ``max_bytes``, UTF-8 (a leading byte-order mark, as some Windows tools write, is dropped)."""
    size = len(payload)
    if size == 0:
        raise InvalidReading("empty payload")
    if size > max_bytes:
        raise InvalidReading(f"payload too long: {size} bytes, limit is {max_bytes}")
    try:
        text = bytes(payload).decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise InvalidReading(f"not UTF-8 (bad byte at offset {exc.start})") from None
    if text[:1] == "\ufeff":
        text = text[1:].lstrip()
    if not text:
        raise InvalidReading("empty payload (only whitespace)")
    return text


def parse_reading(  # noqa: C901  the hot path: every accepted form, each refusal precise
    payload: bytes | bytearray | memoryview,
    *,
    subgroup_size: int,
    value_path: str | None = None,
    max_bytes: int = 65536,
    received_at: datetime,
) -> Reading:
    """Parse one payload into a :class:`Reading`, or raise :class:`InvalidReading`."""
    text = _payload_text(payload, max_bytes)

    if text[0] != "{":
        if text[0] in '["':
            raise InvalidReading(
                f"unknown shape: {_show(text)}"
                ' (send a number, {"value": x} or {"values": [...]})'
            )
        return Reading((_bare_number(text),), received_at, False)

    try:
        obj = json.loads(text)
    except RecursionError:
        raise InvalidReading("JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise InvalidReading(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    except ValueError:  # an integer literal longer than Python's digit limit
        raise InvalidReading("not valid JSON: a number with too many digits") from None
    if not isinstance(obj, dict):  # pragma: no cover - text starts with "{"
        raise InvalidReading(f"unknown shape: {_show(text)}")

    raw_ts = obj.get("ts")
    if raw_ts is None:
        ts, source_ts = received_at, False
    else:
        ts, source_ts = _timestamp(raw_ts), True

    if value_path is not None:
        found = _follow(obj, value_path)
        if isinstance(found, list):
            values = _values(found, subgroup_size, f"value_path {value_path}")
        else:
            values = (_number(found, f"value_path {value_path}"),)
        # a vendor's JSON may use these keys for something else: only strings are taken
        raw_batch, raw_operator = obj.get("batch"), obj.get("operator")
        batch = check_text(raw_batch, "batch") if isinstance(raw_batch, str) else None
        operator = check_text(raw_operator, "operator") if isinstance(raw_operator, str) else None
        return Reading(
            values, ts, source_ts, batch, operator, _context(obj, batch, operator, lenient=True)
        )

    has_value = "value" in obj
    has_values = "values" in obj
    if has_value and has_values:
        raise InvalidReading('both "value" and "values" given: send one of them')
    if not (has_value or has_values) and not _COUNT_KEYS.isdisjoint(obj):
        raise InvalidReading(
            "a count (defectives, defects) sent to a chart of measured values"
            ' (send a number, {"value": x} or {"values": [...]})'
        )
    if has_value:
        values = (_number(obj["value"], "value"),)
    elif has_values:
        values = _values(obj["values"], subgroup_size, "values")
    else:
        keys = ", ".join(sorted(obj)[:5]) or "none"
        raise InvalidReading(f'unknown shape: no "value" or "values" (keys: {_show(keys)[1:-1]})')
    batch, operator = _text_field(obj, "batch"), _text_field(obj, "operator")
    return Reading(values, ts, source_ts, batch, operator, _context(obj, batch, operator))


# --- attribute readings (docs/topics.md, "Readings of attribute charts") ------------------

_COUNT_KEYS = frozenset(("defectives", "defects", "inspected", "units"))

_SHAPES = {
    "p": ("defectives", "inspected"),
    "np": ("defectives", "inspected"),
    "c": ("defects", None),
    "u": ("defects", "units"),
}


def count_shape(chart: str) -> str:
    """The payload an attribute chart takes, as a reason quotes it."""
    return {
        "p": '{"defectives": 3, "inspected": 50}',
        "np": '{"defectives": 3, "inspected": 50}',
        "c": '{"defects": 4} or a bare integer',
        "u": '{"defects": 7, "units": 5}',
    }[chart]


@dataclass(frozen=True, slots=True)
class CountReading:
    """One attribute reading (p, np, c, u charts): one sample. ``count`` is the defectives
    (p, np) or defects (c, u); ``size`` the number inspected (p, np) or the units (u), None
    for a c chart."""

    count: int
    size: float | None
    ts: datetime
    source_ts: bool
    batch: str | None = None
    operator: str | None = None
    context: dict[str, str] | None = None


def _checked_count(
    family: engine.ChartFamily, spec: engine.CharacteristicSpec, count: object, size: object
) -> tuple[int, float | None]:
    """The engine's own check of a count (engine/charts/_attribute.py): one rule for the
    bridge and ``openspc analyze``."""
    assert isinstance(family, AttributeFamily)
    try:
        c, n = family.reading(count, size, spec)
    except engine.InvalidCount as exc:
        raise InvalidReading(f"{exc.name} {_describe(exc.value)}: {exc.reason}") from None
    except OverflowError:  # an integer of hundreds of digits: no float holds it
        raise InvalidReading("a count or size too large to be a number") from None
    return c, (None if family.size_name is None else n)


def parse_count(  # noqa: C901  every form of an attribute reading, as parse_reading
    payload: bytes | bytearray | memoryview,
    *,
    spec: engine.CharacteristicSpec,
    value_path: str | None = None,
    max_bytes: int = 65536,
    received_at: datetime,
) -> CountReading:
    """Parse one reading of an attribute chart (``spec.chart`` is p, np, c or u):
    ``{"defectives": 3, "inspected": 50}`` (p, np), ``{"defects": 4}`` or a bare integer (c),
    ``{"defects": 7, "units": 5}`` (u), with optional ``ts``, ``batch``, ``operator``,
    ``context``. With a ``value_path`` the object (or, for c, the number) at that path holds
    the fields; ``ts``, ``batch``, ``operator`` and ``context`` stay at the top level.
    Raises :class:`InvalidReading`."""
    chart = spec.chart_name
    family = engine.chart_family(chart)
    count_key, size_key = _SHAPES[chart]
    text = _payload_text(payload, max_bytes)
    wanted = f"a {chart} chart takes {count_shape(chart)}"
    if text[0] != "{":
        if chart != "c" or text[0] in '["':
            raise InvalidReading(f"{wanted}, not a measured value: got {_show(text)}")
        number = _bare_number(text)
        c, _ = _checked_count(family, spec, int(number) if number.is_integer() else number, None)
        return CountReading(c, None, received_at, False)
    try:
        obj = json.loads(text)
    except RecursionError:
        raise InvalidReading("JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise InvalidReading(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    except ValueError:
        raise InvalidReading("not valid JSON: a number with too many digits") from None
    if not isinstance(obj, dict):  # pragma: no cover - text starts with "{"
        raise InvalidReading(f"unknown shape: {_show(text)}")
    raw_ts = obj.get("ts")
    if raw_ts is None:
        ts, source_ts = received_at, False
    else:
        ts, source_ts = _timestamp(raw_ts), True
    fields: object = obj if value_path is None else _follow(obj, value_path)
    if not isinstance(fields, dict):
        if chart == "c" and value_path is not None:
            fields = {"defects": fields}
        else:
            where = "" if value_path is None else f" at value_path {value_path}"
            raise InvalidReading(f"{wanted}{where}: got {_describe(fields)}")
    if count_key not in fields:
        if "value" in fields or "values" in fields:
            raise InvalidReading(f"{wanted}, not measured values")
        other = "defects" if count_key == "defectives" else "defectives"
        hint = f" ({other} is for a {'c or u' if other == 'defects' else 'p or np'} chart)"
        raise InvalidReading(f"{wanted}: no {count_key!r}{hint if other in fields else ''}")
    extra = sorted(k for k in _COUNT_KEYS if k in fields and k not in (count_key, size_key))
    if extra:
        raise InvalidReading(f"{wanted}: {extra[0]!r} does not belong to a {chart} chart")
    raw_size = fields.get(size_key) if size_key is not None else None
    if raw_size is None and chart in ("p", "u"):
        raise InvalidReading(f"{wanted}: no {size_key!r}")
    if raw_size is None and chart == "np":
        raw_size = spec.inspected  # the setting itself (docs/topics.md)
    c, n = _checked_count(family, spec, fields[count_key], raw_size)
    top: dict[str, object] = obj
    lenient = value_path is not None
    batch = _opt_text(top, "batch", lenient)
    operator = _opt_text(top, "operator", lenient)
    return CountReading(
        c, n, ts, source_ts, batch, operator, _context(top, batch, operator, lenient)
    )


def _opt_text(obj: dict[str, object], key: str, lenient: bool) -> str | None:
    """``batch``/``operator``: refused when not a string, or (``lenient``, a vendor's JSON
    under a value_path) left out."""
    value = obj.get(key)
    if lenient and not isinstance(value, str):
        return None
    return _text_field(obj, key)


# --- reasonable limits (docs/configuration.md, "valid_min / valid_max") ------------------


def valid_range_fault(
    values: tuple[float, ...] | list[float],
    valid_min: float | None,
    valid_max: float | None,
) -> str | None:
    """Why readings are physically impossible (None: they are not): the first value below
    ``valid_min`` or above ``valid_max`` (a value on a limit is valid), named with the limit.
    A subgroup with one such value is refused whole, and says so."""
    for i, value in enumerate(values):
        if valid_min is not None and value < valid_min:
            side = f"below valid_min {valid_min:g}"
        elif valid_max is not None and value > valid_max:
            side = f"above valid_max {valid_max:g}"
        else:
            continue
        if len(values) == 1:
            return f"value {value:g} is {side} (a gauge fault or a unit mix-up?); not charted"
        return (
            f"values[{i}] = {value:g} is {side} (a gauge fault or a unit mix-up?);"
            f" the whole subgroup of {len(values)} is refused"
        )
    return None
