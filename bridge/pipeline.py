"""The pipeline: inbound messages -> engines -> one transaction -> acks -> domain events.

One consumer task takes up to ``batch_max`` items from the :class:`~bridge._mqtt.Inbox`
(group commit: bridge/_group_commit.py), then for each item in arrival order:
parses it, feeds the characteristic's engine and collects the engine's events. The whole
batch (readings, samples, violations, limits, engine snapshots of the touched
characteristics) is written in ONE transaction; only after the commit are the MQTT
messages acknowledged to the broker, and the results handed to the bus (which publishes
them). A command in the middle of a batch first commits what came before it, so every
characteristic sees its inputs in order.

Failures are classified where they happen (docs/bridge.md, "Poison messages"): an
unavailable database (connection refused or lost, PostgreSQL starting up, SQLite locked or
busy, disk full) is retried with back-off (0.1 s doubling to 5 s) and reported once per
outage on ``<prefix>/bridge/errors``; meanwhile nothing is acknowledged, the inbox fills up
to ``buffer_max`` (MQTT 5 Receive Maximum) and then the broker queues. Any other failure of
a batch's write is bisected down to the message(s) that cause it (bridge/_poison.py): those
go to the ``dead_letters`` table and the errors topic and are acknowledged; the rest of the
batch is stored.

Other sources (Sparkplug B) register a topic filter and a decoder at bootstrap
(:class:`InboundSource`), or call :meth:`Pipeline.submit` directly.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from paho.mqtt.client import topic_matches_sub
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from bridge._dedupe import SeenReadings
from bridge._error_reports import ErrorReporter
from bridge._group_commit import take_batch
from bridge._mqtt import Inbound, Inbox, MqttClient
from bridge._poison import isolate
from bridge.bus import MessageBus
from bridge.domain import (
    DomainEvent,
    LimitsUpdated,
    SampleRecorded,
    SourceStatusChanged,
    ViolationCreated,
)
from bridge.errors import (
    CommandRejected,
    InvalidCommand,
    StoreUnavailable,
    UnknownCharacteristic,
)
from bridge.messages import (
    SHEWHART_CHARTS,
    clip,
    dumps,
    iso_z,
    limits_message,
    parse_ack,
    parse_recalculate,
    reply_payload,
    sample_payload,
)
from bridge.readings import InvalidReading, parse_count, parse_reading
from bridge.store import BatchWrite, DeadLetter, IdAllocator, Store, encode_rules, encode_values
from bridge.topics import CommandTopic, Topics, parse_id
from engine import (
    CharacteristicEngine,
    CharacteristicSpec,
    ControlLimitsUpdated,
    EngineEvent,
    InvalidCount,
    ReadingKindMismatch,
    SampleProcessed,
    ViolationRaised,
)

__all__ = ["CharacteristicRoute", "InboundSource", "Metrics", "Pipeline", "Submission"]

log = logging.getLogger("openspc.pipeline")


@dataclass(slots=True)
class Submission:
    """Readings for one characteristic from a non-MQTT-reading source (e.g. Sparkplug B)."""

    characteristic_id: int
    values: tuple[float, ...]
    ts: datetime
    source: str
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    received: float = field(default_factory=time.monotonic)
    batch: str | None = None
    operator: str | None = None
    ack: Callable[[], None] | None = None
    size: float | None = None
    """An attribute reading's inspected (p, np) or units (u); None otherwise."""
    counts: bool = False
    """True for an attribute reading: ``values`` is ``(count,)`` (docs/topics.md)."""


class InboundSource(Protocol):
    """An extra inbound topic filter and its decoder, registered at bootstrap.

    ``decode`` turns one message into readings (and source status changes); it raises
    :class:`bridge.readings.InvalidReading` (or ``ValueError``) for a message it refuses,
    which is then reported on ``<prefix>/bridge/errors``. It may also return
    ``InvalidReading`` items, for a part of a message it refuses while using the rest (a
    Sparkplug sequence gap in front of good data); each is reported and counted the same way.
    """

    topic_filter: str

    def decode(
        self, topic: str, payload: bytes, received_at: datetime
    ) -> Sequence[Submission | SourceStatusChanged | InvalidReading]: ...


@dataclass(frozen=True, slots=True)
class CharacteristicRoute:
    """What the pipeline needs to know to parse a characteristic's readings."""

    id: int
    subgroup_size: int
    baseline: int
    topic: str | None = None
    value_path: str | None = None
    counts: CharacteristicSpec | None = None
    """The spec of an attribute chart (p, np, c, u), whose readings are counts; None for a
    chart of measured values."""


@dataclass
class Metrics:
    """Counters since start, and a window of receipt-to-publish latencies."""

    started: float = field(default_factory=time.monotonic)
    readings_received: int = 0
    readings_rejected: int = 0
    readings_duplicate: int = 0  # seen before (redelivered), acked, not stored again
    samples: int = 0
    violations: int = 0
    acks: int = 0
    commands: int = 0
    commands_rejected: int = 0
    db_batches: int = 0
    db_retries: int = 0
    db_errors: int = 0
    dead_letters: int = 0  # messages whose rows could not be written (poison), kept aside
    latencies: list[float] = field(default_factory=list)

    def observe_latency(self, seconds: float) -> None:
        self.latencies.append(seconds)
        if len(self.latencies) > 4096:
            del self.latencies[:2048]

    def latency_ms(self) -> dict[str, float | None]:
        data = sorted(self.latencies[-2048:])
        if not data:
            return {"p50": None, "p99": None, "max": None}

        def pick(q: float) -> float:
            return round(data[min(len(data) - 1, int(q * len(data)))] * 1000, 3)

        return {"p50": pick(0.5), "p99": pick(0.99), "max": round(data[-1] * 1000, 3)}


@dataclass
class _Pending:
    """What a batch has gathered so far."""

    readings: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[EngineEvent, float]] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)
    acks: list[Inbound | Submission] = field(default_factory=list)
    extra: list[DomainEvent] = field(default_factory=list)
    # each message that fed readings, with where its readings and engine events begin: the
    # parts a failing write is bisected into (bridge/_poison.py)
    marks: list[tuple[Inbound | Submission, int, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.readings or self.events or self.touched or self.acks or self.extra)

    def begin(self, origin: Inbound | Submission) -> None:
        """The rows fed from now on come from ``origin`` (once per message)."""
        if not self.marks or self.marks[-1][0] is not origin:
            self.marks.append((origin, len(self.readings), len(self.events)))


@dataclass
class _Rows:
    """A batch ready to write: its rows, its domain events, and each message's part of
    both (``bounds[k]`` is where message ``k``'s rows and events begin; one more at the
    end)."""

    batch: BatchWrite
    events: list[DomainEvent]
    extra: list[DomainEvent]
    origins: list[Inbound | Submission]
    bounds: list[tuple[tuple[int, int, int, int], int]]


class Pipeline:
    def __init__(
        self,
        *,
        prefix: str,
        routes: Mapping[int, CharacteristicRoute],
        engines: dict[int, CharacteristicEngine],
        store: Store,
        mqtt: MqttClient,
        bus: MessageBus,
        inbox: Inbox,
        batch_max: int = 500,
        batch_ms: float = 10.0,
        max_payload_bytes: int = 65_536,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.prefix = prefix
        self.routes = dict(routes)
        self.engines = engines
        self.store = store
        self.mqtt = mqtt
        self.bus = bus
        self.inbox = inbox
        self.batch_max = batch_max
        self.batch_wait = batch_ms / 1000.0
        self.max_payload_bytes = max_payload_bytes
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.ids = IdAllocator(store)
        self.sources: list[InboundSource] = []
        self._own_topics = {r.topic: r.id for r in routes.values() if r.topic}
        self._own_filters = [
            (r.topic, r.id)
            for r in routes.values()
            if r.topic and ("+" in r.topic or "#" in r.topic)
        ]
        self.topics = Topics(prefix)
        # every report on <prefix>/bridge/errors goes through it: coalesced, bounded
        self.errors = ErrorReporter(
            lambda data: self.mqtt.publish(self.topics.errors, data, qos=1), clock
        )
        self._db_down = False
        self._writing: asyncio.Task[None] | None = None
        self._drain_until: float | None = None
        self._give_up_at: float | None = None
        self._last_sample: dict[int, tuple[int, int]] = {}  # characteristic -> (seq, sample_id)
        # identities of recent readings with a source ts (bridge/_dedupe.py); bootstrap loads it
        self.seen = SeenReadings(0)
        # packet id -> connection of QoS 1 messages taken whose ack was not sent (yet)
        self._taken: dict[int, int] = {}
        self._sessions = 0
        # taken from the inbox, not yet acknowledged or dropped: with the inbox, what is held
        self.held = 0
        # called after a batch's results are published when nothing more is waiting
        self.on_idle: Callable[[], None] | None = None

    # --- entry points -----------------------------------------------------------------

    def topic_filters(self) -> list[str]:
        """Every filter the bridge subscribes to."""
        filters = [
            f"{self.prefix}/char/+/reading",
            f"{self.prefix}/cmd/ack/+",
            f"{self.prefix}/cmd/char/+/recalculate",
        ]
        filters += sorted({r.topic for r in self.routes.values() if r.topic})
        filters += [s.topic_filter for s in self.sources]
        return list(dict.fromkeys(filters))

    def add_source(self, source: InboundSource) -> None:
        self.sources.append(source)

    def submit(
        self,
        characteristic_id: int,
        values: Sequence[float],
        ts: datetime,
        *,
        source: str,
        ack: Callable[[], None] | None = None,
    ) -> bool:
        """Queue readings from another source; ``ack`` is called once they are stored.

        Without ``ack`` the readings may be dropped when the inbox is full (like QoS 0).
        """
        return self.inbox.put(
            Submission(characteristic_id, tuple(values), ts, source, ack=ack),
            droppable=ack is None,
        )

    def stop_by(self, drain_until: float, give_up_after: float) -> None:
        """After ``stop``: empty the inbox until ``drain_until`` (monotonic), and give up
        on an unavailable database after ``give_up_after`` seconds (nothing is acked then)."""
        self._drain_until = drain_until
        self._give_up_at = time.monotonic() + give_up_after

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set and the inbox is empty (or the drain time is up)."""
        try:
            await self._consume(stop)
        except asyncio.CancelledError:
            if self._writing is not None:
                self._writing.cancel()
            raise
        finally:
            self.errors.flush()  # the counts of repeated errors not yet summed up

    async def _consume(self, stop: asyncio.Event) -> None:
        while True:
            if stop.is_set() and (
                not len(self.inbox)
                or (self._drain_until is not None and time.monotonic() > self._drain_until)
            ):
                try:
                    await self.wait_written()
                except StoreUnavailable:
                    log.error("stopping with a batch not stored; the broker will redeliver it")
                return
            wait = 0.0 if stop.is_set() else self.batch_wait
            # group commit: the batch is what arrived while the last one was written; what
            # is taken counts as held at once (the wait for that write may be an outage)
            items = await take_batch(
                self.inbox, self.batch_max, wait, self._writing, stop, self._hold
            )
            if not items:
                continue
            try:
                await self.process(items)
            except StoreUnavailable:
                if stop.is_set():
                    log.error("stopping with a batch not stored; the broker will redeliver it")
                    return
                raise

    def _hold(self, count: int) -> None:
        self.held += count  # taken from the inbox: held here until acknowledged or dropped

    # --- one batch --------------------------------------------------------------------

    async def process(self, items: Sequence[Inbound | Submission]) -> None:
        pending = _Pending()
        for item in items:
            if (
                isinstance(item, Inbound)
                and item.qos > 0
                and item.generation != self.mqtt.generation
            ):
                self.held -= 1
                continue  # from an earlier connection: the broker delivers it again
            if isinstance(item, Inbound) and item.qos > 0 and self._taken_before(item):
                self.metrics.readings_duplicate += 1
                pending.acks.append(item)  # stored already; now its ack can be sent
                continue
            command = self.topics.command(item.topic) if isinstance(item, Inbound) else None
            if command is not None:
                assert isinstance(item, Inbound)
                # what came before is committed first, so every characteristic sees its
                # inputs in order; the command then starts a fresh batch
                await self._commit(pending)
                pending = _Pending()
                await self._command(item, command)  # raises only StoreUnavailable
                continue
            try:
                if isinstance(item, Submission):
                    pending.acks.append(item)
                    self.metrics.readings_received += 1
                    bad = _refuse(item)
                    if bad:
                        self.metrics.readings_rejected += 1
                        self._report(item.source, repr(item.values).encode(), bad)
                    else:
                        self._feed(pending, item, item)
                else:
                    self._route(pending, item)
            except Exception as exc:
                log.exception("could not process a message on %s", _topic(item))
                self._report(_topic(item), _payload(item), f"internal error: {exc!r}")
                if not pending.acks or pending.acks[-1] is not item:  # ack it exactly once
                    pending.acks.append(item)
        await self._commit(pending, overlap=True)

    def _route(self, pending: _Pending, msg: Inbound) -> None:
        topic = msg.topic
        cid = self._own_topics.get(topic)
        if cid is None:
            for topic_filter, fid in self._own_filters:
                if topic_matches_sub(topic_filter, topic):
                    cid = fid
                    break
        if cid is not None:
            self._reading(pending, msg, cid, own_topic=True)
            return
        key = self.topics.reading_key(topic)
        if key is not None:
            self._reading(pending, msg, parse_id(key), own_topic=False, key=key)
            return
        for source in self.sources:
            if topic_matches_sub(source.topic_filter, topic):
                self._decode(pending, msg, source)
                return
        self._report(topic, msg.payload, "no characteristic reads this topic")
        pending.acks.append(msg)

    def _reading(
        self, pending: _Pending, msg: Inbound, cid: int | None, *, own_topic: bool, key: str = ""
    ) -> None:
        pending.acks.append(msg)
        self.metrics.readings_received += 1
        route = self.routes.get(cid) if cid is not None else None
        if route is None:
            self._reject(msg, str(UnknownCharacteristic(key if cid is None else cid)))
            return
        if route.counts is not None:
            self._count(pending, msg, route, route.counts, own_topic)
            return
        try:
            reading = parse_reading(
                msg.payload,
                subgroup_size=route.subgroup_size,
                value_path=route.value_path if own_topic else None,
                max_bytes=self.max_payload_bytes,
                received_at=msg.received_at,
            )
        except InvalidReading as exc:
            self._reject(msg, exc.reason)
            return
        if reading.source_ts and not self.seen.add((route.id, reading.ts, reading.values)):
            # consumed before: stored, then the crash or reconnect came before the PUBACK
            self.metrics.readings_duplicate += 1
            log.debug("reading on %s seen before; not stored again", msg.topic)
            return
        sub = Submission(
            route.id,
            tuple(reading.values),
            reading.ts,
            msg.topic,
            received_at=msg.received_at,
            received=msg.received,
            batch=reading.batch,
            operator=reading.operator,
        )
        self._feed(pending, sub, msg)

    def _count(
        self,
        pending: _Pending,
        msg: Inbound,
        route: CharacteristicRoute,
        spec: CharacteristicSpec,
        own_topic: bool,
    ) -> None:
        """One reading of an attribute chart: one sample (docs/topics.md)."""
        try:
            reading = parse_count(
                msg.payload,
                spec=spec,
                value_path=route.value_path if own_topic else None,
                max_bytes=self.max_payload_bytes,
                received_at=msg.received_at,
            )
        except InvalidReading as exc:
            self._reject(msg, exc.reason)
            return
        values = (float(reading.count),)
        if reading.source_ts and not self.seen.add((route.id, reading.ts, values)):
            self.metrics.readings_duplicate += 1
            log.debug("reading on %s seen before; not stored again", msg.topic)
            return
        sub = Submission(
            route.id,
            values,
            reading.ts,
            msg.topic,
            received_at=msg.received_at,
            received=msg.received,
            batch=reading.batch,
            operator=reading.operator,
            size=reading.size,
            counts=True,
        )
        self._feed(pending, sub, msg)

    def _decode(self, pending: _Pending, msg: Inbound, source: InboundSource) -> None:
        pending.acks.append(msg)
        try:
            decoded = source.decode(msg.topic, msg.payload, msg.received_at)
        except (InvalidReading, ValueError) as exc:
            self.metrics.readings_rejected += 1
            reason = exc.reason if isinstance(exc, InvalidReading) else str(exc)
            self._report(msg.topic, msg.payload, reason)
            return
        for item in decoded:
            if isinstance(item, SourceStatusChanged):
                pending.extra.append(item)
                continue
            if isinstance(item, InvalidReading):
                self._reject(msg, item.reason)
                continue
            if item.characteristic_id not in self.routes:
                self._reject(msg, str(UnknownCharacteristic(item.characteristic_id)))
                continue
            self.metrics.readings_received += 1
            bad = _refuse(item)
            if bad:
                self._reject(msg, bad)
                continue
            item.received = msg.received
            self._feed(pending, item, msg)

    def _feed(self, pending: _Pending, sub: Submission, origin: Inbound | Submission) -> None:
        engine = self.engines.get(sub.characteristic_id)
        if engine is None:
            raise UnknownCharacteristic(sub.characteristic_id)
        try:
            if sub.counts:
                events = engine.add_count(int(sub.values[0]), sub.size, sub.ts)
            elif engine.chart == "c" and len(sub.values) == 1:
                # one number from another source (a Sparkplug metric) is a c chart's count;
                # the engine refuses 2.5 or -1 as it refuses them from MQTT
                events = engine.add_count(sub.values[0], None, sub.ts)
            else:
                events = engine.add_readings(list(sub.values), sub.ts)
        except (ReadingKindMismatch, InvalidCount) as exc:
            # e.g. a Sparkplug metric (measured values) on a p chart: refused, nothing changed
            self.metrics.readings_rejected += 1
            self._report(_topic(origin), _payload(origin), str(exc))
            return
        pending.begin(origin)
        received_at = sub.received_at.astimezone(UTC)
        ts = sub.ts.astimezone(UTC)
        for value in sub.values:
            pending.readings.append(
                {
                    "characteristic_id": sub.characteristic_id,
                    "value": float(value),
                    "ts": ts,
                    "received_at": received_at,
                    "batch": sub.batch,
                    "operator": sub.operator,
                    "source": sub.source,
                }
            )
        pending.events.extend((event, sub.received) for event in events)
        pending.touched.add(sub.characteristic_id)

    # --- commit, ack, publish ---------------------------------------------------------

    async def _commit(self, pending: _Pending, *, overlap: bool = False) -> None:
        """Store the batch, then ack its messages, then publish its results.

        With ``overlap`` the write runs in the background while the caller goes on parsing
        the next batch; batches still commit, ack and publish strictly one after another.
        """
        if not pending:
            await self.wait_written()
            return
        n_samples = sum(1 for e, _ in pending.events if isinstance(e, SampleProcessed))
        n_violations = sum(1 for e, _ in pending.events if isinstance(e, ViolationRaised))
        if n_samples:
            await self._retry(lambda: self.ids.reserve("sample", n_samples))
        if n_violations:
            await self._retry(lambda: self.ids.reserve("violation", n_violations))
        rows = self._rows(pending)
        await self.wait_written()
        finish = self._finish(rows, pending.acks, self.clock())
        if overlap:
            self._writing = asyncio.create_task(finish, name="pipeline-write")
        else:
            await finish

    async def wait_written(self) -> None:
        """Wait for the batch being written in the background (its errors propagate)."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def _finish(self, rows: _Rows, acks: list[Inbound | Submission], now: datetime) -> None:
        events = rows.events
        if rows.batch:
            events = await self._store(rows, now)
        events = events + rows.extra
        for item in acks:
            if isinstance(item, Inbound):
                self._ack(item)
            elif item.ack is not None:
                item.ack()
        self.held -= len(acks)
        await self.bus.publish(events)
        if self.on_idle is not None and not len(self.inbox):
            self.on_idle()
        await self.mqtt.wait_window()

    async def _write(self, batch: BatchWrite, now: datetime) -> None:
        """Write rows in one transaction, waiting out an unavailable database; any other
        failure is raised (and bisected by the caller)."""
        if not batch:
            return

        async def write() -> None:
            async with self.store.unit_of_work() as uow:
                await uow.write_batch(batch, now)
                await uow.commit()

        await self._retry(write, only=_database_unavailable, resumes=True)

    async def _store(self, rows: _Rows, now: datetime) -> list[DomainEvent]:
        """Store a batch; returns the domain events of what was stored.

        When the write fails for a reason other than an outage, the batch is bisected down
        to the message(s) that cause it (bridge/_poison.py); those become dead letters.
        """
        try:
            await self._write(rows.batch, now)
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
        bounds = rows.bounds

        async def write_part(lo: int, hi: int) -> None:
            await self._write(rows.batch.between(bounds[lo][0], bounds[hi][0]), now)

        poison = await isolate(0, len(rows.origins), write_part)
        self.metrics.db_batches += 1
        if rows.batch.states:
            try:
                await self._write(BatchWrite(states=rows.batch.states), now)
            except StoreUnavailable:
                raise
            except Exception as exc:  # not a message's fault: stored with the next batch
                log.exception("engine states of %s not stored", sorted(rows.batch.states))
                self._report("", b"", f"engine state not stored: {type(exc).__name__}: {exc}")
        await self._dead_letter(rows, poison, now)
        dead = {k for k, _ in poison}
        return [
            event
            for k in range(len(rows.origins))
            if k not in dead
            for event in rows.events[bounds[k][1] : bounds[k + 1][1]]
        ]

    async def _dead_letter(
        self, rows: _Rows, poison: list[tuple[int, Exception]], now: datetime
    ) -> None:
        """Keep the poison messages in ``dead_letters`` and report each on the errors topic."""
        if not poison:
            return
        letters = []
        for k, exc in poison:
            origin = rows.origins[k]
            reason = clip(f"{type(exc).__name__}: {exc}", 1000)
            letters.append(DeadLetter(_topic(origin), _payload(origin), reason))
            log.error("dead letter from %s: %s", _topic(origin), reason)

        async def write() -> None:
            async with self.store.unit_of_work() as uow:
                await uow.add_dead_letters(letters, now)
                await uow.commit()

        # a dead letter is the last place a message can be kept: never acked unkept
        await self._retry(write)
        self.metrics.dead_letters += len(letters)
        for letter in letters:
            self._report(letter.topic, letter.payload, f"kept as a dead letter: {letter.reason}")

    def _rows(self, pending: _Pending) -> _Rows:
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
            if isinstance(event, SampleProcessed):
                sample_id = self.ids.take("sample")
                self._last_sample[event.characteristic_id] = (event.seq, sample_id)
                chart = self.engines[event.characteristic_id].chart
                batch.samples.append(_sample_row(sample_id, event, chart))
                payload = sample_payload(sample_id, event, chart)
                events.append(SampleRecorded(sample_id, event, received, payload, dumps(payload)))
            elif isinstance(event, ViolationRaised):
                violation_id = self.ids.take("violation")
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
                batch.limits.append(
                    {
                        "characteristic_id": event.characteristic_id,
                        "ts": event.timestamp.astimezone(UTC),
                        "payload": payload,
                    }
                )
                events.append(LimitsUpdated(event.characteristic_id, payload))
        reach(len(pending.events))
        bounds.append((batch.mark(), len(events)))
        for cid in sorted(pending.touched):
            batch.states[cid] = self.engines[cid].snapshot()
        return _Rows(batch, events, list(pending.extra), [m[0] for m in marks], bounds)

    async def _retry(
        self,
        action: Callable[[], Any],
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
                self.metrics.db_retries += 1
                if self._give_up_at is not None and time.monotonic() > self._give_up_at:
                    raise StoreUnavailable(self.store.url, str(exc)) from exc
                if not self._db_down:
                    self._db_down = True
                    self.metrics.db_errors += 1
                    log.error("database write failed (retrying): %s", exc)
                    self._report("", b"", f"database unavailable, retrying: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self._db_down and resumes:
                self._db_down = False
                log.info("database writes resumed")
            return

    # --- commands ---------------------------------------------------------------------

    async def _command(self, msg: Inbound, topic: CommandTopic) -> None:
        """Carry out a command, answer on its response topic, ack it. Raises only
        :class:`StoreUnavailable` (stopping during an outage: not acked, delivered again).

        A response topic outside the sender's reply tree (bridge/topics.py) refuses the
        command: nothing is done, nothing is answered, and it is reported on the errors
        topic (docs/topics.md, "Commands").
        """
        self.metrics.commands += 1
        error: str | None = None
        refusal = None
        if msg.response_topic:
            sender = topic.user if topic.kind == "ack" else None
            refusal = self.topics.reply_fault(msg.response_topic, sender)
        try:
            if refusal is not None:
                raise CommandRejected(f"not carried out: {refusal}; no reply sent")
            command: Any
            if topic.kind == "ack":
                command = parse_ack(msg.topic, topic.user, msg.payload)
            else:
                cid = topic.characteristic_id
                if cid is None or cid not in self.routes:
                    raise CommandRejected(str(UnknownCharacteristic(clip(topic.key, 40))))
                command = parse_recalculate(msg.topic, cid, msg.payload)
            # while the database is away the command waits for it, as readings do
            await self._retry(
                lambda: self.bus.execute(command), only=_database_unavailable, resumes=True
            )
        except (InvalidCommand, CommandRejected) as exc:
            error = str(exc)
        except StoreUnavailable:
            raise  # stopping: not acked, so the broker delivers the command again
        except Exception as exc:
            log.exception("command on %s failed", msg.topic)
            error = clip(f"internal error: {exc}", 300)
        if error is not None:
            self.metrics.commands_rejected += 1
            self._report(msg.topic, msg.payload, error)
        if refusal is None:
            self._reply(msg, dumps(reply_payload(error)))
        self._ack(msg)
        self.held -= 1

    def _reply(self, msg: Inbound, payload: bytes) -> None:
        """Answer on the (checked) response topic; a failure here touches nothing else."""
        try:
            self.mqtt.reply(msg, payload)
        except Exception as exc:
            log.warning("could not reply on %r: %s", clip(msg.response_topic or "", 80), exc)
            self._report(msg.topic, msg.payload, f"reply not sent: {exc}")

    # --- acks and redeliveries ---------------------------------------------------------

    def _taken_before(self, item: Inbound) -> bool:
        """Was this message taken on an earlier connection, and its ack never sent?

        When a connection is lost, the batches already taken are still stored, but their
        acks cannot be sent; the broker sends those messages again on the next connection of
        the same session, marked DUP and with the same packet id (which it cannot give to
        another message before the first is acknowledged). That recognises them, ``ts`` or
        not. Only within one run of the bridge; after a crash, see bridge/_dedupe.py.
        """
        if self._sessions != self.mqtt.sessions:  # a fresh session: old ids mean nothing
            self._sessions = self.mqtt.sessions
            self._taken.clear()
        if item.dup and self._taken.get(item.mid, item.generation) != item.generation:
            del self._taken[item.mid]
            return True
        self._taken[item.mid] = item.generation
        return False

    def _ack(self, item: Inbound) -> None:
        if item.qos > 0 and item.generation == self.mqtt.generation:
            self._taken.pop(item.mid, None)  # sent: the broker may give the id to another
        self.mqtt.ack(item)

    # --- errors -----------------------------------------------------------------------

    def _reject(self, msg: Inbound, reason: str) -> None:
        self.metrics.readings_rejected += 1
        self._report(msg.topic, msg.payload, reason)

    def report_condition(self, reason: str) -> None:
        """Report a condition of the bridge itself (no input topic) on the errors topic."""
        self._report("", b"", reason)

    def _report(self, topic: str, payload: bytes, reason: str) -> None:
        """On ``<prefix>/bridge/errors``, coalesced and cut short (bridge/_error_reports.py)."""
        self.errors.report(topic, payload, reason)


def _refuse(sub: Submission) -> str:
    """Why a submission from another source cannot be a reading ("" when it can)."""
    if not sub.values:
        return "no values"
    if not all(math.isfinite(v) for v in sub.values):
        return f"not a finite number: {list(sub.values)!r}"
    if sub.ts.tzinfo is None:
        return "timestamp without a time zone"
    return ""


def _database_unavailable(exc: Exception) -> bool:
    """The database could not be reached (down, restarting, locked), as opposed to a fault
    of the command itself."""
    if isinstance(exc, OSError | OperationalError | InterfaceError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    # PostgreSQL: 08 connection exception; 57P01-57P03 shutting down, crashed, starting up
    # ("the database system is starting up" arrives as a plain DBAPIError from asyncpg)
    state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
    return exc.connection_invalidated or state.startswith(("08", "57P"))


def _topic(item: Inbound | Submission) -> str:
    return item.topic if isinstance(item, Inbound) else item.source


def _payload(item: Inbound | Submission) -> bytes:
    return item.payload if isinstance(item, Inbound) else repr(item.values).encode()


def _sample_row(sample_id: int, s: SampleProcessed, chart: str) -> dict[str, Any]:
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
    }


def _violation_row(violation_id: int, sample_id: int, v: ViolationRaised) -> dict[str, Any]:
    return {
        "id": violation_id,
        "sample_id": sample_id,
        "characteristic_id": v.characteristic_id,
        "rule_id": v.rule_id,
        "rule_name": v.rule_name,
        "severity": str(v.severity),
        "chart": str(v.chart),
        "ts": v.timestamp.astimezone(UTC),
        "acknowledged": False,
        "ack_user": None,
        "ack_reason": None,
        "ack_at": None,
    }
