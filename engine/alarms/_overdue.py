"""When is a sample due, and which characteristics are overdue (docs/spc.md, "Alarm
workflow: the pure core").

One heap of deadlines for every characteristic: an event (a sample, a line change) costs
O(log n) at most, and nothing happens between deadlines, so 10,000 characteristics idle at
no cost. The tracker reads no clock: the bridge passes its monotonic clock's ``now``
(seconds) into every call and wakes at ``next_deadline()``.

Each characteristic holds at most one live heap entry. A sample that moves its deadline
later only updates the characteristic; the old entry, when it reaches the top, is pushed
again at the new deadline (once per interval at most, never per second). A deadline that
moves earlier (a shorter interval, a restore) pushes a new entry and leaves the old one to
be dropped when it surfaces.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from engine._types import Severity
from engine.alarms._events import SampleOverdue

__all__ = [
    "DEFAULT_RUNNING_VALUES",
    "DueTracker",
    "InvalidInterval",
    "OverdueState",
    "default_grace",
    "is_running",
    "wall_time",
]

DEFAULT_RUNNING_VALUES: Final = ("true", "1", "running")


def is_running(
    payload: bytes | str, running_values: Iterable[str] = DEFAULT_RUNNING_VALUES
) -> bool:
    """Whether a ``running_topic`` payload says the line runs: its text, trimmed, equals one
    of ``running_values`` ignoring case. Anything else (other text, bytes that are not
    UTF-8, an empty payload) says it does not."""
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            return False
    text = payload.strip().casefold()
    return any(text == v.strip().casefold() for v in running_values)


def default_grace(interval: float) -> float:
    """``overdue_grace`` when the config leaves it out: a quarter of the interval."""
    return interval / 4


def wall_time(monotonic: float, now: float, wall_now: datetime) -> datetime:
    """The aware datetime of a monotonic time, given one moment read on both clocks."""
    return wall_now + timedelta(seconds=monotonic - now)


class InvalidInterval(ValueError):
    """A ``sample_interval`` or ``overdue_grace`` no tracker can use (``key`` names it)."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        super().__init__(f"{key} = {value!r}: {reason}")
        self.key = key
        self.value = value
        self.reason = reason


@dataclass(frozen=True, slots=True)
class OverdueState:
    """What the bridge stores of a characteristic's due clock to survive a restart.

    ``since`` is the wall-clock moment the due time counts from (the last sample, the line
    starting, or start-up), None while the line is not running; ``raised`` says the current
    episode's ``overdue`` alarm has already been raised; ``running`` the line state last heard.
    """

    characteristic_id: int
    since: datetime | None
    raised: bool
    running: bool

    @classmethod
    def from_last_sample(cls, characteristic_id: int, last_sample_at: datetime) -> OverdueState:
        """The state of a database from before overdue states were stored: due from the last
        stored sample, alarm not raised, line running."""
        return cls(characteristic_id, last_sample_at, raised=False, running=True)


class _Clock:
    """One characteristic's due clock (mutable, private: the heap refers to it by id)."""

    __slots__ = ("grace", "interval", "raised", "running", "severity", "since")

    def __init__(
        self, interval: float, grace: float, severity: Severity, since: float | None
    ) -> None:
        self.interval = interval
        self.grace = grace
        self.severity = severity
        self.since = since  # monotonic; None while the line is not running
        self.running = since is not None
        self.raised = False

    def deadline(self) -> float | None:
        """When this characteristic's alarm falls due; None when none can."""
        if self.since is None or self.raised:
            return None
        return self.since + self.interval + self.grace


def _check(interval: float, grace: float | None) -> float:
    if isinstance(interval, bool) or not math.isfinite(interval) or interval <= 0:
        raise InvalidInterval("sample_interval", interval, "must be a number of seconds above 0")
    if grace is None:
        return default_grace(interval)
    if isinstance(grace, bool) or not math.isfinite(grace) or grace < 0:
        raise InvalidInterval("overdue_grace", grace, "must be a number of seconds, 0 or more")
    return grace


class DueTracker:
    """Due times and ``overdue`` alarms of many characteristics, on one heap.

    The bridge calls ``configure`` (or ``restore``) once per characteristic with a
    ``sample_interval``, then ``sample_arrived`` / ``line_changed`` as things happen, sleeps
    until ``next_deadline()`` and calls ``expire(now)`` when it wakes. Every ``now`` is the
    same monotonic clock, non-decreasing.
    """

    __slots__ = ("_clocks", "_heap", "_queued")

    def __init__(self) -> None:
        self._clocks: dict[int, _Clock] = {}
        self._heap: list[tuple[float, int]] = []
        self._queued: dict[int, float] = {}  # the deadline of each characteristic's live entry

    def __len__(self) -> int:
        return len(self._clocks)

    def __contains__(self, characteristic_id: object) -> bool:
        return characteristic_id in self._clocks

    # --- set-up -------------------------------------------------------------------------

    def configure(
        self,
        characteristic_id: int,
        interval: float,
        grace: float | None = None,
        *,
        now: float,
        severity: Severity = Severity.WARNING,
    ) -> None:
        """Track a characteristic from start-up: its first sample is due ``interval`` after
        ``now``. Called again for a tracked one, it changes the settings and keeps its
        clock (the due time counts from the same moment, with the new interval)."""
        grace = _check(interval, grace)
        clock = self._clocks.get(characteristic_id)
        if clock is None:
            clock = _Clock(interval, grace, severity, now)
            self._clocks[characteristic_id] = clock
        else:
            clock.interval, clock.grace, clock.severity = interval, grace, severity
        self._schedule(characteristic_id, clock)

    def restore(
        self,
        state: OverdueState,
        interval: float,
        grace: float | None = None,
        *,
        now: float,
        wall_now: datetime,
        severity: Severity = Severity.WARNING,
        running_topic: bool = True,
    ) -> None:
        """Track a characteristic after a restart, from its stored state: due from
        ``state.since`` (a wall-clock time before the restart), so a pending alarm is not
        lost, one that fell due while the bridge was down is raised by the first
        ``expire``, and one already raised is not raised again.

        The line state last heard is kept (a stopped line stays stopped until its topic
        says otherwise). ``running_topic=False`` (the config has no running topic for it,
        or no longer has one): the line runs, due from ``since`` or, stopped before, from
        ``now``.
        """
        grace = _check(interval, grace)
        if not running_topic and not state.running:
            state = OverdueState(state.characteristic_id, None, state.raised, running=True)
        since = None
        if state.running:
            # a running line with no moment stored counts from start-up, like ``configure``
            since = now if state.since is None else now - (wall_now - state.since).total_seconds()
        clock = _Clock(interval, grace, severity, since)
        clock.running = state.running
        clock.raised = state.raised
        self._clocks[state.characteristic_id] = clock
        self._schedule(state.characteristic_id, clock)

    def remove(self, characteristic_id: int) -> None:
        """Stop tracking (the interval left the config). Unknown ids are ignored."""
        self._clocks.pop(characteristic_id, None)
        self._queued.pop(characteristic_id, None)  # its heap entry is dropped when it surfaces

    # --- events ---------------------------------------------------------------------------

    def sample_arrived(self, characteristic_id: int, now: float) -> None:
        """A sample arrived: the episode is over and the next sample is due ``interval``
        after ``now`` (if the line runs; a stopped line's clock starts when it runs)."""
        clock = self._clocks.get(characteristic_id)
        if clock is None:
            return
        clock.raised = False
        if clock.running:
            clock.since = now
        self._schedule(characteristic_id, clock)

    def line_changed(self, characteristic_id: int, running: bool, now: float) -> None:
        """The line's running topic spoke. Stopping pauses the clock (no alarm while
        stopped); starting again makes the next sample due ``interval`` after ``now``. A
        repeated state changes nothing. An alarm already raised stays the episode's alarm:
        only a sample re-arms it."""
        clock = self._clocks.get(characteristic_id)
        if clock is None or clock.running == running:
            return
        clock.running = running
        clock.since = now if running else None
        self._schedule(characteristic_id, clock)

    def expire(self, now: float) -> list[SampleOverdue]:
        """The alarms that fell due by ``now``, earliest first; each once per episode.
        Costs nothing when nothing is due."""
        heap, queued, clocks = self._heap, self._queued, self._clocks
        raised: list[SampleOverdue] = []
        while heap and heap[0][0] <= now:
            at, cid = heapq.heappop(heap)
            if queued.get(cid) != at:
                continue  # superseded by an earlier entry, or the characteristic is gone
            clock = clocks[cid]
            deadline = clock.deadline()
            if deadline is None:
                del queued[cid]
            elif deadline > now:
                queued[cid] = deadline  # the clock moved on since this entry was pushed
                heapq.heappush(heap, (deadline, cid))
            else:
                del queued[cid]
                clock.raised = True
                due = deadline - clock.grace
                raised.append(SampleOverdue(cid, due, deadline, clock.severity))
        raised.sort(key=lambda e: (e.overdue_at, e.characteristic_id))
        return raised

    # --- questions ------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The monotonic time the bridge should wake at to call ``expire``; None when no
        alarm is pending. Exact: entries that went stale are settled first."""
        heap, queued, clocks = self._heap, self._queued, self._clocks
        while heap:
            at, cid = heap[0]
            if queued.get(cid) != at:
                heapq.heappop(heap)
                continue
            deadline = clocks[cid].deadline()
            if deadline == at:
                return at
            heapq.heappop(heap)
            if deadline is None:
                del queued[cid]
            else:
                queued[cid] = deadline
                heapq.heappush(heap, (deadline, cid))
        return None

    def due_at(self, characteristic_id: int) -> float | None:
        """When the next sample is due (monotonic), for ``due_at`` in ``sample`` and
        ``meta``; None for an untracked characteristic or while the line is not running.
        It stays set after the alarm: the sample is still due since then."""
        clock = self._clocks.get(characteristic_id)
        if clock is None or clock.since is None:
            return None
        return clock.since + clock.interval

    def running(self, characteristic_id: int) -> bool | None:
        clock = self._clocks.get(characteristic_id)
        return None if clock is None else clock.running

    def state(self, characteristic_id: int, now: float, wall_now: datetime) -> OverdueState:
        """What to store for a restart (``KeyError`` for an untracked characteristic)."""
        clock = self._clocks[characteristic_id]
        since = None if clock.since is None else wall_time(clock.since, now, wall_now)
        return OverdueState(characteristic_id, since, clock.raised, clock.running)

    def ids(self) -> Iterator[int]:
        return iter(self._clocks)

    def heap_size(self) -> int:
        """Entries on the heap, live and stale (bounded: about one per characteristic)."""
        return len(self._heap)

    # --- internals ------------------------------------------------------------------------

    def _schedule(self, cid: int, clock: _Clock) -> None:
        deadline = clock.deadline()
        if deadline is None:
            return  # a queued entry, if any, is settled when it surfaces
        queued = self._queued.get(cid)
        if queued is None or deadline < queued:
            self._queued[cid] = deadline
            heapq.heappush(self._heap, (deadline, cid))
        if len(self._heap) > 2 * len(self._queued) + 64:
            self._compact()

    def _compact(self) -> None:
        self._heap = [(at, cid) for at, cid in self._heap if self._queued.get(cid) == at]
        heapq.heapify(self._heap)
