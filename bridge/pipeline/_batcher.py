"""The batcher: turns the readings of one batch of deliveries into engine events and rows.

For each reading, in arrival order: parse it (bridge/readings.py, or a source's decoder),
recognise a redelivery by its source identity (bridge/_dedupe.py), feed the
characteristic's engine and keep the reading's row and the engine's events in the
:class:`Batch`, with where each message's part begins (what a failing write is bisected
into: bridge/_poison.py). Nothing here touches the store or the broker.

:meth:`Batcher._feed` is the one place every reading reaches its engine (the per-sample
seam: a hook on what a reading produced goes there).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge._alarms import Alarms
from bridge._context import SubgroupContexts
from bridge._dedupe import SeenReadings
from bridge.domain import DomainEvent, OverdueAlarm, SourceStatusChanged
from bridge.errors import UnknownCharacteristic
from bridge.pipeline._inbox import Inbound
from bridge.pipeline._model import (
    CharacteristicRoute,
    InboundSource,
    Metrics,
    Origin,
    Submission,
    origin_payload,
    origin_topic,
)
from bridge.readings import InvalidReading, parse_count, parse_reading
from engine import (
    CharacteristicEngine,
    CharacteristicSpec,
    EngineEvent,
    InvalidCount,
    ReadingKindMismatch,
    SampleProcessed,
)
from engine.alarms import InvalidContext, SpecViolationRaised

__all__ = ["Batch", "Batcher", "Report"]

log = logging.getLogger("openspc.pipeline")

Report = Callable[[str, bytes, str], None]
"""(topic, payload, reason) -> said on the errors topic (``Topics.errors``)."""


@dataclass
class Batch:
    """What a batch has gathered so far: rows of readings, engine events, what to ack."""

    readings: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[EngineEvent | SpecViolationRaised | OverdueAlarm, float]] = field(
        default_factory=list
    )
    touched: set[int] = field(default_factory=set)
    acks: list[Origin] = field(default_factory=list)
    extra: list[DomainEvent] = field(default_factory=list)
    # each message that fed readings, with where its readings and engine events begin: the
    # parts a failing write is bisected into (bridge/_poison.py)
    marks: list[tuple[Origin, int, int]] = field(default_factory=list)
    # index in ``events`` of a SampleProcessed -> the sample's merged context (bridge/_context.py)
    contexts: dict[int, dict[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.readings or self.events or self.touched or self.acks or self.extra)

    def begin(self, origin: Origin) -> None:
        """The rows fed from now on come from ``origin`` (once per message)."""
        if not self.marks or self.marks[-1][0] is not origin:
            self.marks.append((origin, len(self.readings), len(self.events)))

    def ack_once(self, item: Origin) -> None:
        """To be acknowledged after the commit (once, however often it is said)."""
        if not self.acks or self.acks[-1] is not item:
            self.acks.append(item)


def refusal(sub: Submission) -> str:
    """Why a submission from another source cannot be a reading ("" when it can)."""
    if not sub.values:
        return "no values"
    if not all(math.isfinite(v) for v in sub.values):
        return f"not a finite number: {list(sub.values)!r}"
    if sub.ts.tzinfo is None:
        return "timestamp without a time zone"
    return ""


class Batcher:
    """Parses readings and feeds them to their engines, into a :class:`Batch`."""

    def __init__(
        self,
        *,
        routes: Mapping[int, CharacteristicRoute],
        engines: Mapping[int, CharacteristicEngine],
        metrics: Metrics,
        report: Report,
        seen: SeenReadings,
        max_payload_bytes: int,
        contexts: SubgroupContexts,
        alarms: Alarms | None = None,
    ) -> None:
        self.routes = routes
        # the merged context of each open subgroup (bridge/_context.py)
        self.contexts = contexts
        # spec alarms and valid ranges (bridge/_alarms.py)
        self.alarms = alarms
        self.engines = engines
        self.metrics = metrics
        self.report = report
        self.seen = seen
        self.max_payload_bytes = max_payload_bytes

    def _reject(self, msg: Inbound, reason: str) -> None:
        self.metrics.readings_rejected += 1
        self.report(msg.topic, msg.payload, reason)

    def submission(self, batch: Batch, item: Submission) -> None:
        """Readings handed over by another source (:meth:`Pipeline.submit`)."""
        batch.acks.append(item)
        self.metrics.readings_received += 1
        bad = refusal(item)
        if bad:
            self.metrics.readings_rejected += 1
            self.report(item.source, repr(item.values).encode(), bad)
        else:
            self.feed(batch, item, item)

    def unrouted(self, batch: Batch, msg: Inbound) -> None:
        self.report(msg.topic, msg.payload, "no characteristic reads this topic")
        batch.acks.append(msg)

    def reading(
        self, batch: Batch, msg: Inbound, cid: int | None, *, own_topic: bool, key: str = ""
    ) -> None:
        """A reading on a characteristic's topic (its own, or its reading topic in the tree)."""
        batch.acks.append(msg)
        self.metrics.readings_received += 1
        route = self.routes.get(cid) if cid is not None else None
        if route is None:
            self._reject(msg, str(UnknownCharacteristic(key if cid is None else cid)))
            return
        if route.counts is not None:
            self._count(batch, msg, route, route.counts, own_topic)
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
        # straight into the engine: no Submission a reading (docs/performance.md)
        self._feed(
            batch,
            msg,
            (route.id, reading.values, reading.ts),
            (msg.topic, msg.received_at, msg.received),
            (reading.batch, reading.operator, reading.context),
        )

    def _count(
        self,
        batch: Batch,
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
            context=reading.context,
        )
        self.feed(batch, sub, msg)

    def decoded(self, batch: Batch, msg: Inbound, source: InboundSource) -> None:
        """A message on a registered source's topic (Sparkplug B), through its decoder."""
        batch.acks.append(msg)
        try:
            decoded = source.decode(msg.topic, msg.payload, msg.received_at)
        except (InvalidReading, ValueError) as exc:
            self.metrics.readings_rejected += 1
            reason = exc.reason if isinstance(exc, InvalidReading) else str(exc)
            self.report(msg.topic, msg.payload, reason)
            return
        for item in decoded:
            if isinstance(item, SourceStatusChanged):
                batch.extra.append(item)
                continue
            if isinstance(item, InvalidReading):
                self._reject(msg, item.reason)
                continue
            if item.characteristic_id not in self.routes:
                self._reject(msg, str(UnknownCharacteristic(item.characteristic_id)))
                continue
            self.metrics.readings_received += 1
            bad = refusal(item)
            if bad:
                self._reject(msg, bad)
                continue
            item.received = msg.received
            self.feed(batch, item, msg)

    def feed(self, batch: Batch, sub: Submission, origin: Origin) -> None:
        """One message's readings into their engine; its rows and events into the batch."""
        self._feed(
            batch,
            origin,
            (sub.characteristic_id, sub.values, sub.ts),
            (sub.source, sub.received_at, sub.received),
            (sub.batch, sub.operator, sub.context),
            sub.counts,
            sub.size,
        )

    def _feed(
        self,
        batch: Batch,
        origin: Origin,
        what: tuple[int, tuple[float, ...], datetime],
        whence: tuple[str, datetime, float],
        about: tuple[str | None, str | None, dict[str, str] | None],
        counts: bool = False,
        size: float | None = None,
    ) -> None:
        """:meth:`feed`'s work, on the fields of a submission or of a parsed reading (no
        object a reading): ``what`` is (characteristic, values, ts), ``whence`` (source,
        received_at, received), ``about`` (batch, operator, context)."""
        cid, values, ts = what
        engine = self.engines.get(cid)
        if engine is None:
            raise UnknownCharacteristic(cid)
        events = self._engine_events(engine, origin, what, about[2], counts, size)
        if events is None:
            return
        source, received_at, received = whence
        batch_name, operator, context = about
        batch.begin(origin)
        received_at = received_at.astimezone(UTC)
        ts = ts.astimezone(UTC)
        for value in values:
            batch.readings.append(
                {
                    "characteristic_id": cid,
                    "value": float(value),
                    "ts": ts,
                    "received_at": received_at,
                    "batch": batch_name,
                    "operator": operator,
                    "source": source,
                    "context": context,
                }
            )
        first = len(batch.events)
        done = [i for i, event in enumerate(events) if isinstance(event, SampleProcessed)]
        taken = self.contexts.take(cid, context, len(done), bool(engine.partial))
        for i, merged in zip(done, taken, strict=True):
            batch.contexts[first + i] = merged
        batch.events.extend([(event, received) for event in events])
        if self.alarms is not None:  # a spec episode's alarm follows its sample's own events
            batch.events.extend([(a, received) for a in self.alarms.after_engine(events)])
        batch.touched.add(cid)

    def _engine_events(
        self,
        engine: CharacteristicEngine,
        origin: Origin,
        what: tuple[int, tuple[float, ...], datetime],
        context: dict[str, str] | None,
        counts: bool,
        size: float | None,
    ) -> list[EngineEvent] | None:
        """The engine's events of the readings; None when they are refused (reported)."""
        cid, values, ts = what
        alarms = self.alarms
        refused = None if alarms is None else alarms.refusal(cid, values)
        if refused is not None:  # impossible readings never reach the chart
            self.metrics.readings_rejected += 1
            self.report(origin_topic(origin), origin_payload(origin), refused)
            return None
        try:
            self.contexts.check(cid, context)
            if counts:
                return engine.add_count(int(values[0]), size, ts)
            if engine.chart == "c" and len(values) == 1:
                # one number from another source (a Sparkplug metric) is a c chart's count;
                # the engine refuses 2.5 or -1 as it refuses them from MQTT
                return engine.add_count(values[0], None, ts)
            return engine.add_readings(values, ts)
        except (ReadingKindMismatch, InvalidCount, InvalidContext) as exc:
            # e.g. a Sparkplug metric (measured values) on a p chart: refused, nothing changed
            self.metrics.readings_rejected += 1
            self.report(origin_topic(origin), origin_payload(origin), str(exc))
            return None
