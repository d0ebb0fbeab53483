"""Plain-dict forms of the engine's data, for JSON messages and for snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from engine._types import Capability, ControlLimits, Method, SecondaryLimits

__all__ = [
    "figure",
    "iso_z",
    "limits_from_dict",
    "limits_payload",
    "limits_to_dict",
    "plotted_value",
]

FIGURE_DIGITS = 10
_FIGURE_FORMAT = f"%.{FIGURE_DIGITS}g"
"""``%.10g``: the same text as ``f"{value:.10g}"``, without parsing a nested format spec on
every call (half the time; every sample spells one or two figures: docs/performance.md)."""


def figure(value: float | None) -> float | None:
    """A computed figure as it goes out in a payload: 10 significant digits, so a mean or a
    range carries no binary noise (``0.0283``, not ``0.028300000000001546``). Readings
    themselves never pass through here: they keep the gauge's digits (docs/topics.md)."""
    if value is None:
        return None
    return float(_FIGURE_FORMAT % value)


def plotted_value(value: float, subgroup_size: int) -> float:
    """A sample's ``value`` as it goes out: an individual reading as the gauge gave it, a
    subgroup mean (computed) as a :func:`figure`. ``sample`` payloads, stored history and
    ``openspc analyze`` all spell it through here."""
    return value if subgroup_size == 1 else float(_FIGURE_FORMAT % value)


_MINUTES: dict[tuple[int, int, int, int, int], str] = {}
"""``2026-11-28T06:00:`` of the minutes :func:`iso_z` spelt lately (cleared past
:data:`_MINUTES_MAX`): the date and the hour change seldom between two samples."""
_MINUTES_MAX = 256


def iso_z(ts: datetime) -> str:
    """ISO 8601 UTC with ``Z`` and milliseconds: ``2026-11-28T06:00:00.123Z``. ``ts`` must
    be aware. The one spelling of a time in every message (bridge/wire/payloads.py too)."""
    if ts.tzinfo is not UTC:
        if ts.tzinfo is None:
            raise ValueError(
                f"naive timestamp {ts!r} has no time zone: timestamps must be timezone-aware"
            )
        if ts.utcoffset():
            ts = ts.astimezone(UTC)
    # isoformat(timespec="milliseconds") without the offset, its minute kept: every sample
    # spells one or two of these (0.56 us against 1.6; docs/performance.md)
    key = (ts.year, ts.month, ts.day, ts.hour, ts.minute)
    head = _MINUTES.get(key)
    if head is None:
        if len(_MINUTES) >= _MINUTES_MAX:
            _MINUTES.clear()
        head = _MINUTES[key] = ts.isoformat()[:17]  # 2026-11-28T06:00:
    return "%s%02d.%03dZ" % (head, ts.second, ts.microsecond // 1000)  # noqa: UP031  the fastest here


def limits_to_dict(limits: ControlLimits) -> dict[str, Any]:
    """The limits as the ``control_limits`` payload spells them (without id and timestamp)."""
    cap = limits.capability
    rng = limits.range
    data: dict[str, Any] = {
        "center_line": limits.center_line,
        "ucl": limits.ucl,
        "lcl": limits.lcl,
        "sigma": limits.sigma,
        "method": limits.method.value,
        "sample_count": limits.sample_count,
        "range": None
        if rng is None
        else {"center_line": rng.center_line, "ucl": rng.ucl, "lcl": rng.lcl},
        "capability": None
        if cap is None
        else {"cp": cap.cp, "cpk": cap.cpk, "pp": cap.pp, "ppk": cap.ppk},
    }
    if limits.chart is not None:
        # The chart families of docs/spc.md; the Shewhart variables charts' payload keeps
        # the shape it always had (their chart follows from the characteristic).
        data["chart"] = limits.chart
        data["parameters"] = dict(limits.parameters)
    return data


def limits_payload(
    limits: ControlLimits, characteristic_id: int | None, timestamp_iso: str
) -> dict[str, Any]:
    """The ``control_limits`` payload of docs/topics.md (the envelope is the caller's), its
    figures rounded by :func:`figure`; the engine's snapshot keeps them exact
    (:func:`limits_to_dict`)."""
    data = limits_to_dict(limits)
    # fixed limits are the config's own numbers, kept as given; the rest is computed
    if limits.method is not Method.FIXED:
        for key in ("center_line", "ucl", "lcl"):
            data[key] = figure(data[key])
    data["sigma"] = figure(data["sigma"])
    if "parameters" in data:  # an attribute chart's average inspected or units is computed
        data["parameters"] = {key: figure(value) for key, value in data["parameters"].items()}
    for part in ("range", "capability"):
        if data[part] is not None:
            data[part] = {key: figure(value) for key, value in data[part].items()}
    return {"characteristic_id": characteristic_id, **data, "timestamp": timestamp_iso}


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def limits_from_dict(data: Mapping[str, Any]) -> ControlLimits:
    """Inverse of ``limits_to_dict`` (extra keys such as a timestamp are ignored)."""
    rng = data["range"]
    cap = data.get("capability")
    chart = data.get("chart")
    parameters = data.get("parameters") or {}
    return ControlLimits(
        center_line=float(data["center_line"]),
        ucl=float(data["ucl"]),
        lcl=float(data["lcl"]),
        sigma=float(data["sigma"]),
        method=Method(data["method"]),
        sample_count=int(data["sample_count"]),
        range=None
        if rng is None
        else SecondaryLimits(
            center_line=float(rng["center_line"]), ucl=float(rng["ucl"]), lcl=float(rng["lcl"])
        ),
        capability=None
        if cap is None
        else Capability(
            cp=_opt(cap.get("cp")),
            cpk=_opt(cap.get("cpk")),
            pp=_opt(cap.get("pp")),
            ppk=_opt(cap.get("ppk")),
        ),
        chart=None if chart is None else str(chart),
        parameters=tuple((str(k), float(v)) for k, v in parameters.items()),
    )
