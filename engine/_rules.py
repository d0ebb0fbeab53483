"""Nelson's eight rules: defaults, presets, names, and the config form that selects them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from engine._types import RuleConfig, Severity

__all__ = [
    "MAX_RULE_LENGTH",
    "PRESETS",
    "RULE_DEFAULTS",
    "resolve_rules",
    "rule_name",
    "rule_window",
]

MAX_RULE_LENGTH: Final = 50
"""The longest run a rule may be configured with (it bounds each engine's memory)."""

# rule id -> (Minitab's default K, the smallest K that makes sense)
_LENGTHS: Final[Mapping[int, tuple[int, int]]] = MappingProxyType(
    {1: (1, 1), 2: (9, 2), 3: (6, 3), 4: (14, 3), 5: (2, 1), 6: (4, 1), 7: (15, 2), 8: (8, 2)}
)

_WORDS: Final = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]


def _word(k: int) -> str:
    return _WORDS[k] if k < len(_WORDS) else str(k)


def rule_name(rule_id: int, length: int) -> str:
    """A readable name, e.g. ``"Nine on one side"``; K in words, as configured."""
    k = _word(length)
    name = {
        1: "beyond 3 sigma",
        2: f"{k} on one side",
        3: f"{k} in a trend",
        4: f"{k} alternating",
        5: f"{k} of {_word(length + 1)} beyond 2 sigma",
        6: f"{k} of {_word(length + 1)} beyond 1 sigma",
        7: f"{k} within 1 sigma",
        8: f"{k} beyond 1 sigma",
    }[rule_id]
    return name[0].upper() + name[1:]


def rule_window(rule_id: int, length: int) -> int:
    """How many points, ending at the judged one, a rule looks at."""
    return length + 1 if rule_id in (5, 6) else length


def _make(rule_id: int, length: int | None = None, severity: Severity | None = None) -> RuleConfig:
    k = _LENGTHS[rule_id][0] if length is None else length
    sev = severity or (Severity.CRITICAL if rule_id == 1 else Severity.WARNING)
    return RuleConfig(rule_id=rule_id, length=k, severity=sev, name=rule_name(rule_id, k))


RULE_DEFAULTS: Final[tuple[RuleConfig, ...]] = tuple(_make(i) for i in range(1, 9))
"""All eight rules with Minitab's run lengths: rule 1 CRITICAL, the others WARNING."""

PRESETS: Final[Mapping[str, tuple[RuleConfig, ...]]] = MappingProxyType(
    {
        "nelson": RULE_DEFAULTS,
        "western_electric": (_make(1), _make(2, 8), _make(5), _make(6)),
    }
)


def _rule_id(raw: object, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw not in _LENGTHS:
        raise ValueError(f"{where}: rule id must be an integer 1..8, got {raw!r}")
    return raw


def _one(item: object, where: str) -> RuleConfig:
    if not isinstance(item, Mapping):
        return _make(_rule_id(item, where))
    unknown = {str(key) for key in item} - {"id", "length", "severity"}
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} (expected id, length, severity)"
        )
    if "id" not in item:
        raise ValueError(f"{where}: a rule table needs an 'id'")
    rule_id = _rule_id(item["id"], where)
    length: int | None = None
    if "length" in item:
        raw = item["length"]
        low = _LENGTHS[rule_id][1]
        high = 1 if rule_id == 1 else MAX_RULE_LENGTH
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            raise ValueError(f"{where}: rule {rule_id} length must be {low}..{high}, got {raw!r}")
        length = raw
    severity: Severity | None = None
    if "severity" in item:
        raw = item["severity"]
        if not isinstance(raw, str) or raw.upper() not in Severity.__members__:
            raise ValueError(f"{where}: severity must be CRITICAL or WARNING, got {raw!r}")
        severity = Severity(raw.upper())
    return _make(rule_id, length, severity)


def resolve_rules(
    spec: str | Sequence[int | Mapping[str, object]] | None,
) -> tuple[RuleConfig, ...]:
    """Turn the config's ``rules`` into rule settings, ordered by rule id.

    Accepts a preset name (``"nelson"``, ``"western_electric"``), a list of rule ids
    (``[1, 2, 5]``), or a list mixing ids and tables
    (``[{"id": 2, "length": 8, "severity": "CRITICAL"}, 1]``). ``None`` means ``"nelson"``;
    an empty list means no rules at all. Raises ``ValueError`` with one clear line.
    """
    if spec is None:
        return RULE_DEFAULTS
    if isinstance(spec, str):
        preset = PRESETS.get(spec.strip().lower())
        if preset is None:
            raise ValueError(
                f"unknown rules preset {spec!r} (expected {' or '.join(PRESETS)}, or a list of "
                "rule ids)"
            )
        return preset
    if isinstance(spec, Mapping) or not isinstance(spec, Sequence):
        raise ValueError(f"rules must be a preset name or a list, got {spec!r}")
    resolved: dict[int, RuleConfig] = {}
    for index, item in enumerate(spec):
        rule = _one(item, f"rules[{index}]")
        if rule.rule_id in resolved:
            raise ValueError(f"rules[{index}]: rule {rule.rule_id} is listed twice")
        resolved[rule.rule_id] = rule
    return tuple(resolved[i] for i in sorted(resolved))
