"""Limit versions (docs/spc.md, "Alarm workflow: the pure core"): 1, 2, ... per
characteristic; a sample carries the version that judged it (None before limits exist)."""

from __future__ import annotations

from engine._types import CharacteristicSpec, ControlLimits, Method

__all__ = ["limits_version_at_start", "next_limits_version"]


def next_limits_version(current: int | None) -> int:
    """The version new limits take: 1 for the first, then one more each time (a baseline
    completing, a recalculation, fixed limits changed in the config)."""
    return 1 if current is None else current + 1


def _same_fixed(stored: ControlLimits, spec: CharacteristicSpec) -> bool:
    if stored.method is not Method.FIXED or spec.ucl is None or spec.lcl is None:
        return False
    ucl, lcl = float(spec.ucl), float(spec.lcl)
    centre = (ucl + lcl) / 2.0 if spec.center_line is None else float(spec.center_line)
    return (stored.ucl, stored.lcl, stored.center_line) == (ucl, lcl, centre)


def limits_version_at_start(
    current: int | None, stored: ControlLimits | None, spec: CharacteristicSpec
) -> tuple[int | None, bool]:
    """The limits version in force after start-up, and whether it is new (the bridge then
    stores and publishes the config's fixed limits under it).

    With fixed limits in the config: the stored version when the stored limits are those
    same fixed limits, else the next version. Without: the stored version stays (limits
    from a baseline or a recalculation keep theirs until the next recalculation).
    """
    if not spec.has_fixed_limits:
        return current, False
    if stored is not None and current is not None and _same_fixed(stored, spec):
        return current, False
    return next_limits_version(current), True
