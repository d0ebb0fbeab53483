"""The bridge's side of the spec and overdue alarms (docs/spc.md, "Alarm workflow"): the
I/O around the pure core of ``engine.alarms``.

- **Valid range**: readings outside ``valid_min`` / ``valid_max`` are refused before the
  engine sees them (:meth:`Alarms.refusal`; the reason is bridge.readings'
  ``valid_range_fault``).
- **Spec**: one :class:`~engine.alarms.SpecWatch` per characteristic with ``usl``/``lsl``;
  :meth:`Alarms.after_engine` judges each new sample and returns the ``spec`` alarm of an
  episode's first sample, which the pipeline stores with the sample.
- **Due and overdue**: ONE :class:`~engine.alarms.DueTracker` (one heap) for every
  characteristic with a ``sample_interval``, on the bridge's monotonic clock. One task,
  :meth:`Alarms.run`, sleeps until the heap's next deadline, then puts :data:`DUE_TICK`
  into the pipeline's inbox; the pipeline calls :meth:`Alarms.expire` and stores the
  ``overdue`` alarms in its own transaction, with the due clocks (:meth:`take_states`), so
  the pipeline stays the only writer and an alarm and its "raised" flag commit together.
- **Line state**: each ``running_topic`` is an inbound source (:class:`RunningTopic`) whose
  messages start or stop the line's clock.
- **Restart**: :meth:`Alarms.restore` rebuilds the due clocks from the stored ones (or from
  the last stored sample) and the spec episodes from the last stored sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from bridge.domain import OverdueAlarm, SourceStatusChanged
from bridge.readings import valid_range_fault
from engine import EngineEvent, SampleProcessed, Severity
from engine.alarms import (
    DEFAULT_RUNNING_VALUES,
    DueTracker,
    OverdueState,
    SpecViolationRaised,
    SpecWatch,
    default_grace,
    is_running,
    out_of_spec,
    wall_time,
)

if TYPE_CHECKING:
    from bridge.pipeline import Submission
    from bridge.readings import InvalidReading

__all__ = ["DUE_TICK", "AlarmSettings", "Alarms", "DueTick", "RunningTopic"]


def _wall_ms(monotonic: float, now: float, wall_now: datetime) -> datetime:
    """:func:`engine.alarms.wall_time` to the millisecond, the precision of every published
    time: a due time stored, restored on the monotonic clock and turned back into wall time
    reads the two clocks twice, and the microseconds between the readings must not turn
    ``06:01:37.000`` into ``06:01:36.999``."""
    exact = wall_time(monotonic, now, wall_now)
    return exact.replace(microsecond=0) + timedelta(milliseconds=round(exact.microsecond / 1000))


log = logging.getLogger("openspc.alarms")


class DueTick:
    """The inbox item that tells the pipeline an overdue deadline was reached."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DUE_TICK"


DUE_TICK: Final = DueTick()

_MAX_PENDING_DUE: Final = 1_000_000
"""Due times of samples judged but not yet turned into rows (a bound, never reached)."""


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    """One characteristic's alarm settings (from ``[[characteristic]]``)."""

    characteristic_id: int
    usl: float | None = None
    lsl: float | None = None
    valid_min: float | None = None
    valid_max: float | None = None
    sample_interval: float | None = None
    overdue_grace: float | None = None
    running_topic: str | None = None
    running_values: tuple[str, ...] = DEFAULT_RUNNING_VALUES
    spec_severity: Severity = Severity.CRITICAL
    overdue_severity: Severity = Severity.WARNING

    @classmethod
    def of(cls, char: Any) -> AlarmSettings:
        """From a ``CharacteristicSettings`` (bridge.config)."""
        return cls(
            char.id,
            char.usl,
            char.lsl,
            char.valid_min,
            char.valid_max,
            char.sample_interval,
            char.overdue_grace,
            char.running_topic,
            tuple(char.running_values),
            Severity(char.spec_severity),
            Severity(char.overdue_severity),
        )

    @property
    def grace(self) -> float | None:
        """``overdue_grace`` as in force (a quarter of the interval by default)."""
        if self.sample_interval is None:
            return None
        if self.overdue_grace is not None:
            return self.overdue_grace
        return default_grace(self.sample_interval)


class Alarms:
    """Valid ranges, spec episodes, due clocks and line states of every characteristic.

    ``monotonic`` is the clock of due times (``time.monotonic``; a ``ManualClock`` in
    tests), ``wall`` the aware wall clock of the timestamps.
    """

    def __init__(
        self,
        settings: Iterable[AlarmSettings],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.monotonic = monotonic
        self.wall = wall
        self.settings = {s.characteristic_id: s for s in settings}
        self.tracker = DueTracker()
        self.spec = {
            cid: SpecWatch(cid, s.usl, s.lsl, severity=s.spec_severity)
            for cid, s in self.settings.items()
            if s.usl is not None or s.lsl is not None
        }
        self.valid = {
            cid: (s.valid_min, s.valid_max)
            for cid, s in self.settings.items()
            if s.valid_min is not None or s.valid_max is not None
        }
        self.lines: dict[str, list[int]] = {}
        for cid, s in self.settings.items():
            if s.running_topic is not None and s.sample_interval is not None:
                self.lines.setdefault(s.running_topic, []).append(cid)
        self._due: dict[tuple[int, int], float | None] = {}  # (cid, seq) -> due (monotonic)
        self._dirty: set[int] = set()  # due clocks changed since the last write
        self._target: float | None = None  # the deadline the timer sleeps until
        self._wake = asyncio.Event()
        self._ticked = asyncio.Event()
        self.ticks = 0  # DUE_TICKs handled (tests, diagnostics)

    # --- start-up ----------------------------------------------------------------------------

    def restore(
        self,
        stored: Mapping[int, OverdueState],
        last_samples: Mapping[int, Mapping[str, Any]],
    ) -> dict[int, OverdueState | None]:
        """Rebuild the due clocks and spec episodes after a (re)start; returns the due states
        to write now (new clocks, and None for a stored clock whose interval left the config).

        A clock comes from its stored state, else from the last stored sample (a database of
        an older release), else it starts now (docs/spc.md, "Restart")."""
        now, wall_now = self.monotonic(), self.wall()
        write: dict[int, OverdueState | None] = {}
        for cid, s in self.settings.items():
            last = last_samples.get(cid)
            watch = self.spec.get(cid)
            if watch is not None and last is not None and last.get("out_of_spec"):
                self.spec[cid] = SpecWatch(
                    cid, s.usl, s.lsl, severity=s.spec_severity, in_episode=True
                )
            if s.sample_interval is None:
                if cid in stored:
                    write[cid] = None
                continue
            state = stored.get(cid)
            if state is None and last is not None:
                state = OverdueState.from_last_sample(cid, _parse_iso(str(last["timestamp"])))
            if state is None:
                self.tracker.configure(
                    cid, s.sample_interval, s.overdue_grace, now=now, severity=s.overdue_severity
                )
                write[cid] = self.tracker.state(cid, now, wall_now)
                continue
            self.tracker.restore(
                state,
                s.sample_interval,
                s.overdue_grace,
                now=now,
                wall_now=wall_now,
                severity=s.overdue_severity,
                running_topic=s.running_topic is not None,
            )
            kept = stored.get(cid)
            if kept is None or kept.running != self.tracker.running(cid):
                write[cid] = self.tracker.state(cid, now, wall_now)
        self._wake.set()
        return write

    # --- the reading path (bridge/pipeline.py) ---------------------------------------------

    def refusal(self, characteristic_id: int, values: Sequence[float]) -> str | None:
        """Why readings are refused as impossible (None: they are not)."""
        limits = self.valid.get(characteristic_id)
        if limits is None:
            return None
        return valid_range_fault(tuple(values), limits[0], limits[1])

    def after_engine(self, events: Sequence[EngineEvent]) -> list[SpecViolationRaised]:
        """Judge each new sample against its spec and restart its due clock; the ``spec``
        alarms of episodes that begin here (stored after the sample's own events)."""
        raised: list[SpecViolationRaised] = []
        now: float | None = None
        for event in events:
            if not isinstance(event, SampleProcessed):
                continue
            cid = event.characteristic_id
            watch = self.spec.get(cid)
            if watch is not None:
                judged = watch.judge(event.seq, event.values, event.timestamp)
                if judged.raised is not None:
                    raised.append(judged.raised)
            if cid in self.tracker:
                now = self.monotonic() if now is None else now
                self.tracker.sample_arrived(cid, now)
                self._dirty.add(cid)
                due = self.tracker.due_at(cid)
                if len(self._due) > _MAX_PENDING_DUE:  # samples never stored (a failed batch)
                    self._due.clear()
                self._due[(cid, event.seq)] = due
                if due is not None:
                    self._earlier(due + self._grace(cid))
        return raised

    def sample_fields(self, sample: SampleProcessed) -> tuple[bool | None, datetime | None]:
        """``out_of_spec`` and ``due_at`` of a sample (``after_engine`` saw it)."""
        cid = sample.characteristic_id
        watch = self.spec.get(cid)
        out = None if watch is None else out_of_spec(sample.values, watch.usl, watch.lsl)
        due = self._due.pop((cid, sample.seq), None)
        if due is None:
            return out, None
        return out, _wall_ms(due, self.monotonic(), self.wall())

    # --- line state ----------------------------------------------------------------------------

    def line_message(self, topic: str, payload: bytes) -> None:
        """A running topic spoke: start or stop the clocks of its characteristics."""
        now = self.monotonic()
        for cid in self.lines.get(topic, ()):
            running = is_running(payload, self.settings[cid].running_values)
            before = self.tracker.running(cid)
            self.tracker.line_changed(cid, running, now)
            if before != running:
                self._dirty.add(cid)
                due = self.tracker.due_at(cid)
                if due is not None:
                    self._earlier(due + self._grace(cid))
                log.info(
                    "line %s: %s (characteristic %d)", topic, "runs" if running else "stopped", cid
                )

    def sources(self) -> list[RunningTopic]:
        """One inbound source per running topic (the bridge subscribes to each)."""
        return [RunningTopic(topic, self) for topic in sorted(self.lines)]

    # --- overdue -----------------------------------------------------------------------------

    def expire(self) -> list[OverdueAlarm]:
        """The overdue alarms due by now (each once per episode), as wall-clock events; the
        pipeline stores them with :meth:`take_states` in one transaction."""
        now, wall_now = self.monotonic(), self.wall()
        alarms = []
        for event in self.tracker.expire(now):
            self._dirty.add(event.characteristic_id)
            alarms.append(
                OverdueAlarm(
                    event.characteristic_id,
                    event.severity,
                    _wall_ms(event.overdue_at, now, wall_now),
                    _wall_ms(event.due_at, now, wall_now),
                )
            )
        self.ticks += 1
        self._ticked.set()
        self._wake.set()
        return alarms

    def take_states(self) -> dict[int, OverdueState | None]:
        """The due clocks changed since the last call, to store with the batch."""
        if not self._dirty:
            return {}
        now, wall_now = self.monotonic(), self.wall()
        states: dict[int, OverdueState | None] = {
            cid: self.tracker.state(cid, now, wall_now)
            for cid in sorted(self._dirty)
            if cid in self.tracker
        }
        self._dirty.clear()
        return states

    def due_at(self, characteristic_id: int) -> datetime | None:
        """When the next sample of a characteristic is due (None: no interval, or stopped)."""
        due = self.tracker.due_at(characteristic_id)
        return None if due is None else _wall_ms(due, self.monotonic(), self.wall())

    async def run(self, stop: asyncio.Event, put: Callable[[DueTick], object]) -> None:
        """The one timer: sleep until the heap's next deadline (or a change that may bring
        it earlier), then hand the pipeline a :data:`DUE_TICK` and wait until it was handled.
        Nothing runs between deadlines, whatever the number of characteristics."""
        if not len(self.tracker):
            return
        while not stop.is_set():
            self._wake.clear()
            deadline = self.tracker.next_deadline()
            self._target = deadline
            timeout = None if deadline is None else max(0.0, deadline - self.monotonic())
            if not await _first(stop, self._wake, timeout):
                continue  # woken: a change, or stopping
            deadline = self.tracker.next_deadline()
            if deadline is None or deadline > self.monotonic():
                continue  # samples came in time and moved it on: nothing for the pipeline
            self._ticked.clear()
            put(DUE_TICK)
            await _first(stop, self._ticked, None)

    # --- internals ---------------------------------------------------------------------------

    def _grace(self, cid: int) -> float:
        return self.settings[cid].grace or 0.0

    def _earlier(self, deadline: float) -> None:
        """Wake the timer when a deadline comes before the one it sleeps until."""
        if self._target is None or deadline < self._target:
            self._target = deadline
            self._wake.set()


async def _first(stop: asyncio.Event, event: asyncio.Event, wait: float | None) -> bool:
    """Wait for ``stop`` or ``event`` at most ``wait`` seconds; True when the time ran
    out (neither was set)."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(event.wait())]
    try:
        done, _ = await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    return not done


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class RunningTopic:
    """A ``running_topic`` as an inbound source of the pipeline: its messages are line
    states, never readings (docs/topics.md, "Line state")."""

    def __init__(self, topic: str, alarms: Alarms) -> None:
        self.topic_filter = topic
        self._alarms = alarms

    def decode(
        self, topic: str, payload: bytes, received_at: datetime
    ) -> Sequence[Submission | SourceStatusChanged | InvalidReading]:
        self._alarms.line_message(topic, payload)
        return ()
