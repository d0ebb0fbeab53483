"""What the gateway knows about each characteristic, rebuilt from the broker at every start.

Nothing here outlives the process, and nothing needs to: the bridge's retained ``meta``,
``limits``, ``history`` and ``sample`` messages give it all back (docs/gateway.md).

- A characteristic is *known* while the bridge announces it with a retained ``meta``.
- ``limits`` is the current ``control_limits`` message, as the bridge published it.
- ``ring`` holds the last ``replay_max`` samples, oldest first, each as the ``sample``
  message a client receives: filled from the retained ``history`` and kept current by the
  live samples. Sample ids grow per characteristic, so the highest one seen tells a new
  sample from a repeated one (a retained sample sent again after a reconnect); a live sample
  with a lower id means the bridge's ids started again, and is taken.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bridge.wire.payloads import encode

__all__ = ["CharacteristicState", "Characteristics", "sample_id_of"]


def sample_id_of(payload: Any) -> int | None:
    """The ``sample_id`` of a sample payload, or None when it has no integer one."""
    if not isinstance(payload, dict):
        return None
    value = payload.get("sample_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(slots=True)
class CharacteristicState:
    ring: deque[tuple[int, bytes]]
    known: bool = False
    limits: bytes | None = None
    last_id: int | None = None  # the highest sample id taken in


@dataclass
class Characteristics:
    """Per-characteristic state; ``replay_max`` bounds each ring."""

    replay_max: int
    states: dict[int, CharacteristicState] = field(default_factory=dict)

    def get(self, cid: int) -> CharacteristicState:
        state = self.states.get(cid)
        if state is None:
            state = CharacteristicState(ring=deque(maxlen=self.replay_max))
            self.states[cid] = state
        return state

    def known(self, cid: int) -> bool:
        state = self.states.get(cid)
        return state is not None and state.known

    def on_meta(self, cid: int, raw: bytes) -> None:
        """A retained meta announces the characteristic; an empty one withdraws it."""
        self.get(cid).known = bool(raw)

    def on_limits(self, cid: int, raw: bytes) -> bool:
        """Keep the limits; True when they are new (not the same message sent again)."""
        state = self.get(cid)
        if not raw:
            state.limits = None
            return False
        if raw == state.limits:
            return False
        state.limits = raw
        return True

    def on_sample(self, cid: int, sample_id: int, raw: bytes, retained: bool = False) -> bool:
        """Take a sample; True when it is new. The one taken last, sent again (the bridge
        republishes its latest at start-up), and a retained one no newer than what was taken
        (sent again at a reconnect) are not new. A live sample with a lower id than the last
        is: the bridge's ids started again (a new database), so the ring starts afresh."""
        state = self.get(cid)
        last = state.last_id
        if last is not None and sample_id <= last:
            if sample_id == last or retained:
                return False
            state.ring.clear()
        state.last_id = sample_id
        state.ring.append((sample_id, raw))
        return True

    def on_history(self, cid: int, samples: list[Any]) -> list[bytes]:
        """Merge a ``history`` (oldest first) into the ring. Returns the sample messages
        newer than any taken before (missed while the broker was away), oldest first; none
        on the first history of a characteristic the gateway has seen no sample of."""
        state = self.get(cid)
        items: list[tuple[int, bytes]] = []
        for payload in samples:
            sid = sample_id_of(payload)
            if sid is not None and (not items or sid > items[-1][0]):
                items.append((sid, encode("sample", payload)))  # as the bridge sends it
        if not items:
            return []
        newest = items[-1][0]
        missed: list[bytes] = []
        if state.last_id is not None:
            missed = [raw for sid, raw in items if sid > state.last_id]
        later = [item for item in state.ring if item[0] > newest]
        state.ring.clear()
        state.ring.extend(items[-self.replay_max :] if self.replay_max else [])
        state.ring.extend(later)
        state.last_id = max(newest, state.last_id if state.last_id is not None else newest)
        return missed

    def replay(self, cid: int, count: int) -> list[bytes]:
        """The current limits (if any), then the last ``count`` samples, oldest first."""
        state = self.states.get(cid)
        if state is None:
            return []
        out = [state.limits] if state.limits is not None else []
        if count > 0:
            ring = state.ring
            out.extend(raw for _, raw in list(ring)[max(0, len(ring) - count) :])
        return out
