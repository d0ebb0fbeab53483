"""What every chart family is: a name, a kind, its rules and its settings check.

A family is one object (docs/spc.md, "Chart families"): the Shewhart variables charts
(``imr``, ``xbar_r``, ``xbar_s``) know how readings become a point and how a baseline becomes
limits; the attribute charts (``p``, ``np``, ``c``, ``u``) how a count becomes a point with its
own limits; ``ewma`` and ``cusum`` how a stream of means becomes a statistic. The streaming
engine of each kind lives beside them and asks its family for every number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal

from engine._errors import InvalidChartSettings
from engine._types import CharacteristicSpec, RuleConfig

if TYPE_CHECKING:
    from engine._engine import CharacteristicEngine

__all__ = ["ChartFamily", "Kind", "positive"]

Kind = Literal["variables", "attribute", "ewma", "cusum"]


def positive(key: str, value: float) -> None:
    """A setting that must be a positive, finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidChartSettings(key, value, "must be a number")
    if not (math.isfinite(value) and value > 0):
        raise InvalidChartSettings(key, value, "must be positive")


class ChartFamily:
    """The part every family shares. Subclasses set the class attributes."""

    name: ClassVar[str]
    kind: ClassVar[Kind]
    title: ClassVar[str]
    default_rules: ClassVar[tuple[RuleConfig, ...]]
    allowed_rules: ClassVar[frozenset[int]] = frozenset(range(1, 9))

    def engine_class(self) -> type[CharacteristicEngine]:
        """The streaming engine that runs charts of this family."""
        raise NotImplementedError

    def fewest_baseline(self, subgroup_size: int) -> int:
        """The smallest ``baseline`` (in samples) limits can come from."""
        return 1

    def faults(self, spec: CharacteristicSpec) -> list[InvalidChartSettings]:
        """Every setting of ``spec`` this family cannot run with, each naming its config key
        (a config loader reports them one line each)."""
        found: list[InvalidChartSettings] = []
        for check in self._checks():
            try:
                check(spec)
            except InvalidChartSettings as fault:
                found.append(fault)
        return found

    def check(self, spec: CharacteristicSpec) -> None:
        """Raise the first of ``faults(spec)``, if any."""
        found = self.faults(spec)
        if found:
            raise found[0]

    def _checks(self) -> list[Callable[[CharacteristicSpec], None]]:
        """The family's checks, each raising ``InvalidChartSettings`` for one key."""
        return [self._check_inspected, self._check_rules]

    def _check_inspected(self, spec: CharacteristicSpec) -> None:
        if spec.inspected is not None and self.name != "np":
            raise InvalidChartSettings(
                "inspected", spec.inspected, f"only an np chart takes it (this is {self.name})"
            )

    def _check_rules(self, spec: CharacteristicSpec) -> None:
        refused = sorted(r.rule_id for r in spec.rules if r.rule_id not in self.allowed_rules)
        if refused:
            allowed = ", ".join(str(r) for r in sorted(self.allowed_rules))
            raise InvalidChartSettings(
                "rules",
                refused,
                f"a {self.name} chart judges rule {allowed} only",
            )

    def __repr__(self) -> str:
        return f"<chart family {self.name}>"
