"""The context of each characteristic's open subgroup (docs/topics.md, "Context").

A reading's context (part, lot, shift, operator, ...) joins the subgroup it falls into; a
``sample`` carries its readings' contexts merged, the later reading winning a key
(``engine.alarms.merge_context``). The merged context of a subgroup that is still open
survives a restart with the engine's state (:meth:`SubgroupContexts.state`), as the open
subgroup's readings do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.alarms import merge_context

__all__ = ["STATE_KEY", "SubgroupContexts"]

STATE_KEY = "open_context"
"""The key of the open subgroup's merged context in a characteristic's stored state (the
engine ignores keys it does not know)."""

_EMPTY: Mapping[str, str] = {}


class SubgroupContexts:
    """The merged context of every open subgroup; pure bookkeeping, no I/O."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: dict[int, dict[str, str]] = {}

    def restore(self, states: Mapping[int, Mapping[str, Any]]) -> None:
        """Take the open subgroups' contexts back from the stored states."""
        for cid, state in states.items():
            found = state.get(STATE_KEY)
            if isinstance(found, dict) and found:
                self._open[cid] = {str(k): str(v) for k, v in found.items()}

    def check(self, cid: int, context: Mapping[str, str] | None) -> None:
        """Raise :class:`InvalidContext` when ``context`` would take the open subgroup's
        merged context past its bound (the reading is then refused before it is taken)."""
        held = self._open.get(cid)
        if context and held:
            merge_context(held, context)

    def take(
        self, cid: int, context: Mapping[str, str] | None, samples: int, still_open: bool
    ) -> list[dict[str, str]]:
        """One message's readings have joined ``cid``'s subgroups: ``samples`` subgroups
        were completed, and readings of it remain in an open one when ``still_open``.
        Returns each completed sample's context (oldest first; ``{}`` for none)."""
        mine: Mapping[str, str] = context or _EMPTY
        held = self._open.pop(cid, None)
        if samples == 0:
            if still_open and (held or mine):
                self._open[cid] = merge_context(held or _EMPTY, mine) if held else dict(mine)
            return []
        first = merge_context(held, mine) if held else dict(mine)
        out = [first] + [dict(mine) for _ in range(samples - 1)]
        if still_open and mine:
            self._open[cid] = dict(mine)
        return out

    def state(self, cid: int, snapshot: dict[str, Any]) -> dict[str, Any]:
        """``snapshot`` (the engine's state) with the open subgroup's context, to be stored."""
        held = self._open.get(cid)
        if held:
            snapshot[STATE_KEY] = held
        return snapshot

    def open(self, cid: int) -> dict[str, str]:
        """The open subgroup's merged context so far (for tests and diagnostics)."""
        return dict(self._open.get(cid, _EMPTY))
