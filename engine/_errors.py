"""The engine's few exceptions, named by their cause and carrying its data.

An SPC signal is never an exception: it is a ``ViolationRaised`` event.
"""

from __future__ import annotations

__all__ = [
    "IncompatibleState",
    "InsufficientData",
    "InvalidChartSettings",
    "InvalidCount",
    "ReadingKindMismatch",
    "ZeroDispersion",
]


class InsufficientData(ValueError):
    """Too few subgroups to compute control limits."""

    def __init__(self, needed: int, got: int) -> None:
        super().__init__(f"control limits need at least {needed} subgroups, got {got}")
        self.needed = needed
        self.got = got


class ZeroDispersion(ValueError):
    """Every subgroup statistic is identical: sigma would be 0 and the zones would collapse."""

    def __init__(self, sample_count: int, center_line: float) -> None:
        super().__init__(
            f"the {sample_count} subgroups show no variation at all (every reading "
            f"{center_line:g}); control limits need some dispersion"
        )
        self.sample_count = sample_count
        self.center_line = center_line


class IncompatibleState(ValueError):
    """A snapshot cannot be restored into this characteristic (wrong shape or settings)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot restore engine state: {reason}")
        self.reason = reason


class InvalidChartSettings(ValueError):
    """A characteristic's chart settings are wrong: ``key`` is the setting's name as the
    config spells it (``chart``, ``inspected``, ``ewma_lambda``, ``ewma_l``, ``cusum_k``,
    ``cusum_h``, ``subgroup_size``, ``rules``, ``ucl``), ``value`` what was given."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        super().__init__(f"{key} = {value!r}: {reason}")
        self.key = key
        self.value = value
        self.reason = reason


class InvalidCount(ValueError):
    """An attribute reading that no chart can take: a negative or fractional count,
    defectives above inspected, a wrong ``inspected`` for np, zero units. ``name`` is the
    payload field (``defectives``, ``inspected``, ``defects``, ``units``); ``index`` the
    sample's position where a whole series was given (``analyze_counts``)."""

    def __init__(self, name: str, value: object, reason: str, index: int | None = None) -> None:
        where = "" if index is None else f"sample {index}: "
        super().__init__(f"{where}{name} = {value!r}: {reason}")
        self.name = name
        self.value = value
        self.reason = reason
        self.index = index


class ReadingKindMismatch(ValueError):
    """Measured values sent to an attribute chart, or counts to a variables chart."""

    def __init__(self, chart: str, expected: str) -> None:
        super().__init__(f"a {chart} chart takes {expected}")
        self.chart = chart
        self.expected = expected
