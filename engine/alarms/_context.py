"""Reading context (part, lot, shift, operator, ...): checked per reading and merged per
sample (docs/spc.md, "Alarm workflow: the pure core")."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from engine.alarms._text import text_fault

__all__ = [
    "MAX_CONTEXT_KEYS",
    "MAX_CONTEXT_TEXT",
    "InvalidContext",
    "merge_context",
    "reading_context",
    "sample_context",
]

MAX_CONTEXT_KEYS: Final = 64
MAX_CONTEXT_TEXT: Final = 200
"""Longest key or value, in characters (the text columns hold 200)."""


class InvalidContext(ValueError):
    """A reading's ``context`` that is not an object of short strings; ``key`` is the key
    at fault, when one is."""

    def __init__(self, reason: str, key: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key = key


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def reading_context(
    context: object, batch: object = None, operator: object = None
) -> dict[str, str]:
    """One reading's context: ``context`` (a JSON object, or None for none) with the older
    top-level ``batch`` and ``operator`` keys joined in. Where ``context`` names ``batch``
    or ``operator`` too, ``context`` wins: it is the newer, explicit spelling.

    An object of at most 64 keys; keys and values strings of at most 200 characters
    (non-empty keys); anything else is ``InvalidContext`` and the reading is refused whole.
    """
    out: dict[str, str] = {}
    for name, value in (("batch", batch), ("operator", operator)):
        if value is not None:
            out[name] = _text(value, name, name)
    if context is None:
        return out
    if not isinstance(context, Mapping):
        raise InvalidContext(f"context must be an object of strings, got {_shown(context)}")
    if len(context) > MAX_CONTEXT_KEYS:
        raise InvalidContext(f"context has {len(context)} keys, limit is {MAX_CONTEXT_KEYS}")
    for key, value in context.items():
        if not isinstance(key, str) or not key:
            raise InvalidContext(f"context keys must be non-empty strings, got {_shown(key)}")
        fault = text_fault(key, "a context key", MAX_CONTEXT_TEXT)
        if fault is not None:
            raise InvalidContext(fault, key[:MAX_CONTEXT_TEXT])
        out[key] = _text(value, f"context[{key!r}]", key)
    if len(out) > MAX_CONTEXT_KEYS:
        raise InvalidContext(
            f"context with batch and operator has {len(out)} keys, limit is {MAX_CONTEXT_KEYS}"
        )
    return out


def _text(value: object, what: str, key: str) -> str:
    if not isinstance(value, str):
        raise InvalidContext(f"{what} must be a string, got {_shown(value)}", key)
    fault = text_fault(value, what, MAX_CONTEXT_TEXT)
    if fault is not None:
        raise InvalidContext(fault, key)
    return value


def merge_context(merged: Mapping[str, str], later: Mapping[str, str]) -> dict[str, str]:
    """``merged`` with a later reading's context over it (the later reading wins a key).

    The bridge calls it as each reading joins its subgroup: a reading that would take the
    sample's context past 64 keys is ``InvalidContext``, refused before it is taken, so
    nothing already accepted is lost.
    """
    out = dict(merged)
    out.update(later)
    if len(out) > MAX_CONTEXT_KEYS:
        raise InvalidContext(
            f"this reading takes the sample's context to {len(out)} keys, "
            f"limit is {MAX_CONTEXT_KEYS}"
        )
    return out


def sample_context(contexts: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """A sample's context: its readings' contexts merged in order (``merge_context``)."""
    out: dict[str, str] = {}
    for ctx in contexts:
        out = merge_context(out, ctx)
    return out
