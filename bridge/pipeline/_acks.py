"""The ack tracker: which deliveries may still be acknowledged, and which come back.

It owns what used to be spread over the MQTT adapter and the pipeline
(docs/reliability.md, "Within one run, also by packet id"):

- the connection *generation*: it moves on when a connection is accepted and again the
  moment one is lost, so a delivery of a lost connection is never acknowledged on a later
  one (its packet id means nothing there) and, not yet taken, is skipped (the broker sends
  it again);
- the *packet ids* of QoS 1 deliveries taken whose ack was not sent: when the connection is
  lost after a batch was taken, that batch is still stored but cannot be acknowledged; the
  broker sends it again on the next connection of the same session, marked DUP, with the
  same packet id (which it cannot give to another message before the first is
  acknowledged). Such a resend is acknowledged without being taken again. A fresh session
  (the broker kept nothing) forgets them all;
- ``held``: deliveries taken from the inbox and not yet acknowledged or dropped (with the
  inbox, what the bridge holds: ``buffered_readings`` in metrics).

The MQTT adapter reports connections (:meth:`connected`, :meth:`lost`) and asks
:meth:`release` before it sends a PUBACK; the pipeline asks :meth:`stale` and
:meth:`taken_before` for each delivery it takes.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["AckTracker"]


class _Delivery(Protocol):
    @property
    def qos(self) -> int: ...
    @property
    def mid(self) -> int: ...
    @property
    def generation(self) -> int: ...
    @property
    def dup(self) -> bool: ...


class AckTracker:
    """Connection generations, packet ids taken but not acknowledged, and ``held``."""

    def __init__(self) -> None:
        self.generation = 0
        self.sessions = 0  # connects that found no session at the broker (a fresh one)
        self.held = 0
        self._taken: dict[int, int] = {}  # packet id -> generation it was taken on

    # --- the link's side ----------------------------------------------------------------

    def connected(self, session_present: bool) -> int:
        """A connection was accepted: its generation (a fresh session forgets every id)."""
        self.generation += 1
        if not session_present:
            self.sessions += 1
            self._taken.clear()  # packet ids of earlier connections mean nothing any more
        return self.generation

    def lost(self) -> None:
        """The connection is gone: what it delivered can no longer be acknowledged."""
        self.generation += 1

    def release(self, item: _Delivery) -> bool:
        """An ack is about to be sent: True when it may be (QoS 1, of this connection);
        its packet id is forgotten then (the broker may give it to another message)."""
        if item.qos == 0 or item.generation != self.generation:
            return False
        self._taken.pop(item.mid, None)
        return True

    # --- the pipeline's side ------------------------------------------------------------

    def stale(self, item: _Delivery) -> bool:
        """A QoS 1 delivery of an earlier connection: skip it, the broker sends it again."""
        return item.qos > 0 and item.generation != self.generation

    def taken_before(self, item: _Delivery) -> bool:
        """Was this delivery taken on an earlier connection, and its ack never sent?

        Only within one run of the bridge; after a crash, see bridge/_dedupe.py."""
        if item.qos == 0:
            return False
        if item.dup and self._taken.get(item.mid, item.generation) != item.generation:
            del self._taken[item.mid]
            return True
        self._taken[item.mid] = item.generation
        return False

    def took(self, count: int) -> None:
        """``count`` items were taken from the inbox."""
        self.held += count

    def settled(self, count: int = 1) -> None:
        """``count`` taken items were acknowledged or dropped."""
        self.held -= count
