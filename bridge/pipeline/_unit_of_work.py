"""The unit of work of a batch: its rows, one transaction, and what a failure means.

A batch's rows (readings, samples, violations, limits, the touched engines' snapshots) are
written in ONE transaction. Failures are classified where they happen (docs/bridge.md,
"Poison messages"):

- the database is *unavailable* (connection refused or lost, PostgreSQL starting up,
  SQLite locked or busy, disk full): retried with back-off (0.1 s doubling to 5 s),
  reported once per outage on ``<prefix>/bridge/errors``; nothing is acknowledged meanwhile;
- *anything else* (a lone surrogate, an ``IntegrityError``, a ``TypeError`` from a bug):
  the batch is bisected down to the message(s) that cause it (bridge/_poison.py); those go
  to ``dead_letters`` and the errors topic, the rest of the batch is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from bridge._ack_workflow import LimitVersions
from bridge._alarms import Alarms
from bridge._context import SubgroupContexts
from bridge._poison import isolate
from bridge.domain import (
    DomainEvent,
    LimitsUpdated,
    OverdueAlarm,
    SampleRecorded,
    ViolationCreated,
)
from bridge.errors import StoreUnavailable
from bridge.pipeline._batcher import Batch, Report
from bridge.pipeline._model import Metrics, Origin, origin_payload, origin_topic
from bridge.store import BatchWrite, DeadLetter, IdAllocator, encode_rules, encode_values
from bridge.wire.payloads import (
    SHEWHART_CHARTS,
    clip,
    iso_z,
    limits_message,
    sample_json,
)
from engine import (
    CharacteristicEngine,
    ControlLimitsUpdated,
    SampleProcessed,
    ViolationRaised,
)
from engine.alarms import SpecViolationRaised

if TYPE_CHECKING:
    from bridge.ports import Clock, StorePort

__all__ = ["BatchUnitOfWork", "Retrier", "Rows", "database_unavailable"]

log = logging.getLogger("openspc.pipeline")


def database_unavailable(exc: Exception) -> bool:
    """The database could not be reached (down, restarting, locked), as opposed to a fault
    of the rows or the command themselves."""
    if isinstance(exc, OSError | OperationalError | InterfaceError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    # PostgreSQL: 08 connection exception; 57P01-57P03 shutting down, crashed, starting up
    # ("the database system is starting up" arrives as a plain DBAPIError from asyncpg)
    state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
    return exc.connection_invalidated or state.startswith(("08", "57P"))


class Retrier:
    """Runs an action until it succeeds, waiting out an unavailable database."""

    def __init__(self, store: StorePort, metrics: Metrics, report: Report, clock: Clock) -> None:
        self.store = store
        self.metrics = metrics
        self.report = report
        self.clock = clock
        self.down = False
        self.give_up_at: float | None = None  # monotonic; set when stopping

    async def run(
        self,
        action: Callable[[], Awaitable[Any]],
        only: Callable[[Exception], bool] | None = None,
        *,
        resumes: bool = False,
    ) -> None:
        """Run ``action`` until it succeeds, backing off; with ``only``, retry only the
        exceptions it accepts (the others propagate). Only an action that ``resumes`` (a
        committed write) ends an outage: "database writes resumed" is said when a write
        really went through, not when a read or a counter did."""
        delay = 0.1
        while True:
            try:
                await action()
            except Exception as exc:
                if only is not None and not only(exc):
                    raise
                self._failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self.down and resumes:
                self.down = False
                log.info("database writes resumed")
            return

    def _failed(self, exc: Exception) -> None:
        self.metrics.db_retries += 1
        if self.give_up_at is not None and self.clock.monotonic() > self.give_up_at:
            raise StoreUnavailable(self.store.url, str(exc)) from exc
        if not self.down:
            self.down = True
            self.metrics.db_errors += 1
            log.error("database write failed (retrying): %s", exc)
            self.report("", b"", f"database unavailable, retrying: {exc}")


@dataclass
class Rows:
    """A batch ready to write: its rows, its domain events, and each message's part of
    both (``bounds[k]`` is where message ``k``'s rows and events begin; one more at the
    end)."""

    batch: BatchWrite
    events: list[DomainEvent]
    extra: list[DomainEvent]
    origins: list[Origin]
    bounds: list[tuple[tuple[int, int, int, int], int]]


class BatchUnitOfWork:
    """Turns a :class:`Batch` into rows (with their ids) and stores them in one transaction."""

    def __init__(
        self,
        *,
        store: StorePort,
        engines: Mapping[int, CharacteristicEngine],
        metrics: Metrics,
        report: Report,
        retry: Retrier,
        contexts: SubgroupContexts,
        alarms: Alarms | None = None,
    ) -> None:
        self.store = store
        self.engines = engines
        self.metrics = metrics
        self.report = report
        self.retry = retry
        self.contexts = contexts  # open subgroups' contexts go into the engine snapshots
        self.alarms = alarms  # sample fields and due clocks (bridge/_alarms.py)
        # the limits version in force per characteristic; bootstrap loads it from the store
        self.limit_versions = LimitVersions()
        self.ids = IdAllocator(store)
        self._last_sample: dict[int, tuple[int, int]] = {}  # characteristic -> (seq, sample_id)

    async def rows(self, pending: Batch) -> Rows:
        """The batch's rows, with sample and violation ids reserved (waiting out an outage)."""
        n_samples = sum(1 for e, _ in pending.events if isinstance(e, SampleProcessed))
        n_violations = sum(1 for e, _ in pending.events if isinstance(e, _ALARMS))
        if n_samples:
            await self.retry.run(lambda: self.ids.reserve("sample", n_samples))
        if n_violations:
            await self.retry.run(lambda: self.ids.reserve("violation", n_violations))
        return self._rows(pending)

    def _rows(self, pending: Batch) -> Rows:
        batch = BatchWrite(readings=pending.readings)
        events: list[DomainEvent] = []
        marks = pending.marks
        bounds: list[tuple[tuple[int, int, int, int], int]] = []

        def reach(event_index: int) -> None:
            # every message whose engine events begin at ``event_index`` begins here
            while len(bounds) < len(marks) and marks[len(bounds)][2] <= event_index:
                k = len(bounds)
                row = (marks[k][1], len(batch.samples), len(batch.violations), len(batch.limits))
                bounds.append((row, len(events)))

        for index, (event, received) in enumerate(pending.events):
            reach(index)
            self._row(batch, events, event, received, pending.contexts.get(index, {}))
        reach(len(pending.events))
        bounds.append((batch.mark(), len(events)))
        for cid in sorted(pending.touched):
            batch.states[cid] = self.contexts.state(cid, self.engines[cid].snapshot())
        if self.alarms is not None:  # due clocks changed by samples, line states, alarms
            batch.due_states = self.alarms.take_states()
        return Rows(batch, events, list(pending.extra), [m[0] for m in marks], bounds)

    def _row(
        self,
        batch: BatchWrite,
        events: list[DomainEvent],
        event: Any,
        received: float,
        context: dict[str, str],
    ) -> None:
        """One engine event: its row, and the domain event published once it is stored."""
        if isinstance(event, SampleProcessed):
            self._sample(batch, events, event, received, context)
        elif isinstance(event, _ALARMS):
            violation_id = self.ids.take("violation")
            sample_id: int | None = None
            if not isinstance(event, OverdueAlarm):  # an overdue alarm has no sample
                seq, sample_id = self._last_sample.get(event.characteristic_id, (0, 0))
                if seq != event.sample_seq:
                    log.warning("violation of sample %s without its sample", event.sample_seq)
            batch.violations.append(_violation_row(violation_id, sample_id, event))
            events.append(ViolationCreated(violation_id, sample_id, event))
        elif isinstance(event, ControlLimitsUpdated):
            payload = limits_message(
                event.limits,
                event.characteristic_id,
                iso_z(event.timestamp),
                self.engines[event.characteristic_id].chart,
            )
            payload["version"] = self.limit_versions.announced(
                event.characteristic_id, event.limits.method
            )
            batch.limits.append(
                {
                    "characteristic_id": event.characteristic_id,
                    "ts": event.timestamp.astimezone(UTC),
                    "payload": payload,
                    "version": payload["version"],
                }
            )
            events.append(LimitsUpdated(event.characteristic_id, payload))

    def _sample(
        self,
        batch: BatchWrite,
        events: list[DomainEvent],
        event: SampleProcessed,
        received: float,
        context: dict[str, str],
    ) -> None:
        sample_id = self.ids.take("sample")
        cid = event.characteristic_id
        self._last_sample[cid] = (event.seq, sample_id)
        chart = self.engines[cid].chart
        version = self.limit_versions.judged(cid, event.in_control)
        out, due = (None, None) if self.alarms is None else self.alarms.sample_fields(event)
        batch.samples.append(_sample_row(sample_id, event, chart, context, version, out, due))
        # its JSON written straight from the fields (no dict; docs/performance.md)
        encoded = sample_json(
            sample_id, event, chart, context, version, out_of_spec=out, due_at=due
        )
        events.append(SampleRecorded(sample_id, event, received, encoded=encoded))

    async def write(self, batch: BatchWrite, now: datetime) -> None:
        """Write rows in one transaction, waiting out an unavailable database; any other
        failure is raised (and bisected by :meth:`commit`)."""
        if not batch:
            return

        async def write() -> None:
            async with self.store.unit_of_work() as uow:
                await uow.write_batch(batch, now)
                await uow.commit()

        await self.retry.run(write, only=database_unavailable, resumes=True)

    async def commit(self, rows: Rows, now: datetime) -> list[DomainEvent]:
        """Store a batch; returns the domain events of what was stored.

        When the write fails for a reason other than an outage, the batch is bisected down
        to the message(s) that cause it (bridge/_poison.py); those become dead letters.
        """
        try:
            await self.write(rows.batch, now)
        except StoreUnavailable:
            raise
        except Exception as exc:
            log.warning(
                "a batch of %d messages could not be stored (%s); looking for the cause",
                len(rows.origins),
                clip(f"{type(exc).__name__}: {exc}", 300),
            )
        else:
            self.metrics.db_batches += 1
            return rows.events
        return await self._bisect(rows, now)

    async def _bisect(self, rows: Rows, now: datetime) -> list[DomainEvent]:
        bounds = rows.bounds

        async def write_part(lo: int, hi: int) -> None:
            await self.write(rows.batch.between(bounds[lo][0], bounds[hi][0]), now)

        poison = await isolate(0, len(rows.origins), write_part)
        self.metrics.db_batches += 1
        if rows.batch.states or rows.batch.due_states:
            try:
                states = BatchWrite(states=rows.batch.states, due_states=rows.batch.due_states)
                await self.write(states, now)
            except StoreUnavailable:
                raise
            except Exception as exc:  # not a message's fault: stored with the next batch
                log.exception("engine states of %s not stored", sorted(rows.batch.states))
                self.report("", b"", f"engine state not stored: {type(exc).__name__}: {exc}")
        await self._dead_letter(rows, poison, now)
        dead = {k for k, _ in poison}
        return [
            event
            for k in range(len(rows.origins))
            if k not in dead
            for event in rows.events[bounds[k][1] : bounds[k + 1][1]]
        ]

    async def _dead_letter(
        self, rows: Rows, poison: list[tuple[int, Exception]], now: datetime
    ) -> None:
        """Keep the poison messages in ``dead_letters`` and report each on the errors topic."""
        if not poison:
            return
        letters = []
        for k, exc in poison:
            origin = rows.origins[k]
            reason = clip(f"{type(exc).__name__}: {exc}", 1000)
            letters.append(DeadLetter(origin_topic(origin), origin_payload(origin), reason))
            log.error("dead letter from %s: %s", origin_topic(origin), reason)

        async def write() -> None:
            async with self.store.unit_of_work() as uow:
                await uow.add_dead_letters(letters, now)
                await uow.commit()

        # a dead letter is the last place a message can be kept: never acked unkept
        await self.retry.run(write)
        self.metrics.dead_letters += len(letters)
        for letter in letters:
            self.report(letter.topic, letter.payload, f"kept as a dead letter: {letter.reason}")


def _sample_row(
    sample_id: int,
    s: SampleProcessed,
    chart: str,
    context: dict[str, str],
    limits_version: int | None = None,
    out_of_spec: bool | None = None,
    due_at: datetime | None = None,
) -> dict[str, Any]:
    point = s.point
    return {
        "id": sample_id,
        "characteristic_id": s.characteristic_id,
        "seq": s.seq,
        "ts": s.timestamp.astimezone(UTC),
        "value": s.value,
        "values": encode_values(s.values),
        "range": s.range,
        "zone": None if s.zone is None else str(s.zone),
        "in_control": s.in_control,
        "failed_rules": encode_rules(s.failed_rules),
        "range_failed_rules": encode_rules(s.range_failed_rules),
        "excluded": False,
        # the chart families of docs/spc.md: the plotted point with its own limits (NULL
        # for the Shewhart variables charts, whose point is ``value``; docs/bridge.md)
        "chart": None if chart in SHEWHART_CHARTS else chart,
        "statistic": None if point is None else point.statistic,
        "ucl": None if point is None else point.ucl,
        "lcl": None if point is None else point.lcl,
        "cusum_upper": None if point is None else point.cusum_upper,
        "cusum_lower": None if point is None else point.cusum_lower,
        "size": None if point is None else point.size,
        "context": context or None,  # docs/topics.md, "Context"
        "limits_version": limits_version,
        "out_of_spec": out_of_spec,
        "due_at": None if due_at is None else due_at.astimezone(UTC),
    }


_ALARMS = (ViolationRaised, SpecViolationRaised, OverdueAlarm)
"""The engine events that are stored as violations (docs/topics.md, "violation": kinds)."""


def _violation_row(
    violation_id: int,
    sample_id: int | None,
    v: ViolationRaised | SpecViolationRaised | OverdueAlarm,
) -> dict[str, Any]:
    # every row of a batch has the same keys (the SQLite fast path binds them as tuples)
    return {
        "id": violation_id,
        "sample_id": sample_id,
        "characteristic_id": v.characteristic_id,
        "kind": "rule" if isinstance(v, ViolationRaised) else str(v.kind),
        "rule_id": v.rule_id if isinstance(v, ViolationRaised) else None,
        "rule_name": v.rule_name,
        "severity": str(v.severity),
        "chart": str(v.chart) if isinstance(v, ViolationRaised) else None,
        "ts": v.timestamp.astimezone(UTC),
        "acknowledged": False,
        "ack_user": None,
        "ack_reason": None,
        "ack_at": None,
    }
