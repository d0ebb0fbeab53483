"""The pipeline: deliveries -> router -> batcher -> one transaction -> acks -> domain events.

One consumer task takes up to ``batch_max`` items from the :class:`~bridge.pipeline.Inbox`
(group commit: bridge/_group_commit.py), then for each item in arrival order:
the :class:`~bridge.pipeline.AckTracker` skips what an earlier connection delivered and
recognises a resend of what was taken already; the :class:`~bridge.pipeline.Router` says
where it goes; the :class:`~bridge.pipeline.Batcher` parses it and feeds the
characteristic's engine. The whole batch is written by the
:class:`~bridge.pipeline.BatchUnitOfWork` in ONE transaction; only after the commit are the
messages acknowledged (each delivery's ``.ack()``), and the results handed to the bus (which
publishes them). A command in the middle of a batch first commits what came before it, so
every characteristic sees its inputs in order.

Failures are classified where they happen (bridge/pipeline/_unit_of_work.py): an
unavailable database is waited out (nothing acknowledged meanwhile; the inbox fills up to
``buffer_max`` and then the broker queues), any other failure of a batch's write is bisected
down to the message(s) that cause it, which become dead letters.

Other sources (Sparkplug B) register a topic filter and a decoder at bootstrap
(:class:`~bridge.pipeline.InboundSource`), or call :meth:`Pipeline.submit` directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge._ack_workflow import LimitVersions
from bridge._alarms import Alarms, DueTick
from bridge._context import SubgroupContexts
from bridge._dedupe import SeenReadings
from bridge._error_reports import ErrorReporter
from bridge._group_commit import take_batch
from bridge.bus import MessageBus
from bridge.domain import DomainEvent
from bridge.errors import (
    CommandElsewhere,
    CommandRejected,
    InvalidCommand,
    StoreUnavailable,
    UnknownCharacteristic,
)
from bridge.pipeline._acks import AckTracker
from bridge.pipeline._batcher import Batch, Batcher
from bridge.pipeline._inbox import Inbound, Inbox
from bridge.pipeline._model import (
    CharacteristicRoute,
    InboundSource,
    Metrics,
    Origin,
    Submission,
    origin_payload,
    origin_topic,
)
from bridge.pipeline._router import Route, Router, ToCommand, ToReading, ToSource
from bridge.pipeline._unit_of_work import (
    BatchUnitOfWork,
    Retrier,
    Rows,
    database_unavailable,
)
from bridge.ports import SystemClock
from bridge.wire.payloads import clip, dumps, parse_ack, parse_recalculate, reply_payload
from bridge.wire.topics import CommandTopic, Topics
from engine import CharacteristicEngine

if TYPE_CHECKING:
    from bridge.ports import Clock, LinkPort, StorePort

__all__ = ["Pipeline"]

log = logging.getLogger("openspc.pipeline")


class Pipeline:
    """The one consumer of the inbox. Built by :func:`bridge.app.bootstrap` on the ports it
    is given (``store``, ``link``, ``clock``): the real adapters, or the fakes of
    ``bridge/testing.py``. ``inbox`` defaults to the link's."""

    def __init__(
        self,
        *,
        prefix: str,
        routes: Mapping[int, CharacteristicRoute],
        engines: dict[int, CharacteristicEngine],
        store: StorePort,
        link: LinkPort,
        bus: MessageBus,
        inbox: Inbox | None = None,
        batch_max: int = 500,
        batch_ms: float = 10.0,
        commit_interval_ms: float = 0.0,
        max_payload_bytes: int = 65_536,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        seen: SeenReadings | None = None,
        sources: Iterable[InboundSource] = (),
        on_idle: Callable[[], None] | None = None,
        alarms: Alarms | None = None,
    ) -> None:
        self.prefix = prefix
        # spec and overdue alarms, valid ranges, due clocks (bridge/_alarms.py)
        self.alarms = alarms
        # the merged context of each open subgroup; bootstrap restores it with the states
        self.contexts = SubgroupContexts()
        # takes a query command (True) to answer beside the batches (bridge/_query.py)
        self.on_query: Callable[[Inbound], bool] | None = None
        # a cluster's partition (bridge/cluster): whether a refused command is its to answer
        self.answers_refusal: Callable[[CommandTopic], bool] | None = None
        self.engines = engines
        self.store = store
        self.link = link
        self.bus = bus
        self.inbox = inbox if inbox is not None else link.inbox
        self.acks: AckTracker = link.acks
        self.batch_max = batch_max
        self.batch_wait = batch_ms / 1000.0
        self.commit_interval = commit_interval_ms / 1000.0  # bridge/_group_commit.py
        self._batch_at = 0.0  # when the last batch was taken (time.monotonic())
        self.metrics = metrics or Metrics()
        self.clock: Clock = clock or SystemClock()
        self.topics = Topics(prefix)
        self.router = Router(self.topics, routes, sources)
        # every report on <prefix>/bridge/errors goes through it: coalesced, bounded
        self.errors = ErrorReporter(
            lambda data: self.link.publish(self.topics.errors, data, qos=1), self.clock.now
        )
        self.retry = Retrier(store, self.metrics, self._report, self.clock)
        # identities of recent readings with a source ts (bridge/_dedupe.py); bootstrap loads it
        seen = seen if seen is not None else SeenReadings(0)
        self.batcher, self.unit = self._parts(seen, max_payload_bytes)
        self._storing: asyncio.Task[list[DomainEvent]] | None = None  # the batch being written
        self._writing: asyncio.Task[None] | None = None  # the last batch's acks and publishing
        self._lagging: asyncio.Task[None] | None = None  # the batch's before it, if not done
        self._drain_until: float | None = None
        # called after a batch's results are published when nothing more is waiting
        self.on_idle = on_idle

    def _parts(self, seen: SeenReadings, max_payload_bytes: int) -> tuple[Batcher, BatchUnitOfWork]:
        """The batcher and the unit of work, sharing the contexts, the alarms and the report."""
        batcher = Batcher(
            routes=self.router.routes,
            engines=self.engines,
            metrics=self.metrics,
            report=self._report,
            seen=seen,
            max_payload_bytes=max_payload_bytes,
            contexts=self.contexts,
            alarms=self.alarms,
        )
        unit = BatchUnitOfWork(
            store=self.store,
            engines=self.engines,
            metrics=self.metrics,
            report=self._report,
            retry=self.retry,
            contexts=self.contexts,
            alarms=self.alarms,
        )
        return batcher, unit

    # --- entry points -----------------------------------------------------------------

    @property
    def routes(self) -> dict[int, CharacteristicRoute]:
        return self.router.routes

    @property
    def limit_versions(self) -> LimitVersions:
        """The limits version in force per characteristic (bridge/_ack_workflow.py)."""
        return self.unit.limit_versions

    @limit_versions.setter
    def limit_versions(self, versions: LimitVersions) -> None:
        self.unit.limit_versions = versions

    @property
    def held(self) -> int:
        """Taken from the inbox, not yet acknowledged or dropped: with the inbox, what is
        held (the AckTracker's count)."""
        return self.acks.held

    def topic_filters(self) -> list[str]:
        """Every filter the bridge subscribes to."""
        return self.router.topic_filters()

    def add_source(self, source: InboundSource) -> None:
        self.router.add_source(source)

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
        """After ``stop``: empty the inbox until ``drain_until`` (the clock's monotonic),
        and give up on an unavailable database after ``give_up_after`` seconds (nothing is
        acked then)."""
        self._drain_until = drain_until
        self.retry.give_up_at = self.clock.monotonic() + give_up_after

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set and the inbox is empty (or the drain time is up)."""
        try:
            await self._consume(stop)
        except asyncio.CancelledError:
            for task in (self._storing, self._writing, self._lagging):
                if task is not None:
                    task.cancel()
            raise
        finally:
            self.errors.flush()  # the counts of repeated errors not yet summed up

    def _drained(self, stop: asyncio.Event) -> bool:
        return stop.is_set() and (
            not len(self.inbox)
            or (self._drain_until is not None and self.clock.monotonic() > self._drain_until)
        )

    async def _consume(self, stop: asyncio.Event) -> None:
        while True:
            if self._drained(stop):
                try:
                    await self.wait_written()
                except StoreUnavailable:
                    log.error("stopping with a batch not stored; the broker will redeliver it")
                return
            wait = 0.0 if stop.is_set() else self.batch_wait
            try:
                await self._next_batch(stop, wait)
            except StoreUnavailable:
                if stop.is_set():
                    log.error("stopping with a batch not stored; the broker will redeliver it")
                    return
                raise

    async def _next_batch(self, stop: asyncio.Event, wait: float) -> None:
        """Take, parse and store the next batch (nothing when ``stop`` ends an empty wait).

        Group commit: the batch is what arrived while the last one was written; what is
        taken counts as held at once (the wait for that write may be an outage). Each part
        is parsed as it is taken, while the last batch is still being written
        (bridge/_group_commit.py)."""
        pending = Batch()
        parts = 0

        async def part(items: list[Origin | DueTick]) -> None:
            nonlocal pending, parts
            parts += 1
            pending = await self._add(pending, items)

        items = await take_batch(
            self.inbox,
            self.batch_max,
            wait,
            self._storing,
            stop,
            self.acks.took,
            not_before=self._batch_at + self.commit_interval,
            part=part,
        )
        if items:
            await part(items)
        if not parts:
            return
        self._batch_at = time.monotonic()
        await self._commit(pending, overlap=True)

    # --- one batch --------------------------------------------------------------------

    async def _add(self, pending: Batch, items: Sequence[Origin | DueTick]) -> Batch:
        """Items into the batch ``pending``, in order; the batch that goes on (a command or
        a due tick commits what came before it and starts a fresh one)."""
        for item in items:
            if isinstance(item, DueTick):  # overdue deadlines reached (bridge/_alarms.py)
                pending = await self._due(pending)
                continue
            if isinstance(item, Inbound) and self.acks.stale(item):
                self.acks.settled()
                continue  # from an earlier connection: the broker delivers it again
            if isinstance(item, Inbound) and self.acks.taken_before(item):
                self.metrics.readings_duplicate += 1
                pending.acks.append(item)  # stored already; now its ack can be sent
                continue
            if isinstance(item, Inbound) and self.on_query is not None and self.on_query(item):
                pending.acks.append(item)  # answered beside the batch; acked in its turn
                continue
            route = self.router.route(item.topic) if isinstance(item, Inbound) else None
            if isinstance(route, ToCommand):
                assert isinstance(item, Inbound)
                # what came before is committed first, so every characteristic sees its
                # inputs in order; the command then starts a fresh batch
                await self._commit(pending)
                pending = Batch()
                await self._command(item, route.command)  # raises only StoreUnavailable
                continue
            try:
                self._take(pending, item, route)
            except Exception as exc:
                log.exception("could not process a message on %s", origin_topic(item))
                self._report(origin_topic(item), origin_payload(item), f"internal error: {exc!r}")
                pending.ack_once(item)
        return pending

    async def _due(self, pending: Batch) -> Batch:
        """The overdue alarms whose time came: what came before is committed first, then
        the alarms in a batch of their own; a fresh batch goes on."""
        self.acks.settled()  # the tick was counted as held when taken
        if self.alarms is None:
            return pending
        await self._commit(pending)
        alarms = Batch()
        now = time.monotonic()  # as a reading's ``received``: the latency clock
        alarms.events.extend((alarm, now) for alarm in self.alarms.expire())
        await self._commit(alarms)
        return Batch()

    def _take(self, pending: Batch, item: Origin, route: Route | None) -> None:
        """One reading message into the batch, the way the router says."""
        if isinstance(item, Submission):
            self.batcher.submission(pending, item)
        elif isinstance(route, ToReading):
            self.batcher.reading(
                pending, item, route.characteristic_id, own_topic=route.own_topic, key=route.key
            )
        elif isinstance(route, ToSource):
            self.batcher.decoded(pending, item, route.source)
        else:
            assert isinstance(item, Inbound)  # only a submission has no route
            self.batcher.unrouted(pending, item)

    # --- commit, ack, publish ---------------------------------------------------------

    async def _commit(self, pending: Batch, *, overlap: bool = False) -> None:
        """Store the batch, then ack its messages, then publish its results.

        With ``overlap`` the write runs in the background while the caller goes on parsing
        the next batch; batches still commit, ack and publish strictly one after another.
        A batch's write starts as soon as the one before it has committed, while that one's
        acks and results are still being sent: the writer's thread does not wait for the
        loop to publish 1,000 samples, nor the loop for the writer (docs/performance.md,
        "Issue 12's targets now").
        """
        if not pending:
            await self.wait_written()
            return
        rows = await self.unit.rows(pending)
        await self.wait_stored()
        # at most one batch is still being published behind the one being written: the
        # publishing waits for the broker when too much is outstanding (wait_window), and
        # the pipeline with it, so the outbound stays bounded (docs/reliability.md)
        lagging, self._lagging = self._lagging, None
        if lagging is not None:
            await lagging
        previous = self._writing
        storing = asyncio.create_task(self._store(rows, self.clock.now()), name="pipeline-write")
        publishing = self._publish(storing, previous, pending.acks, rows.extra)
        self._storing = storing
        self._writing = asyncio.create_task(publishing, name="pipeline-publish")
        self._lagging = previous
        if not overlap:
            await self.wait_written()

    async def wait_stored(self) -> None:
        """Wait until the batch in flight is committed (its errors propagate)."""
        storing, self._storing = self._storing, None
        if storing is None:
            return
        try:
            await storing
        except BaseException:
            await self.wait_written()  # its publishing task ends with the same failure
            raise

    async def wait_written(self) -> None:
        """Wait until every batch taken is stored, acked and published (errors propagate)."""
        self._storing = self._lagging = None  # the publishing task waits for both
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def _store(self, rows: Rows, now: datetime) -> list[DomainEvent]:
        if not rows.batch:
            return rows.events
        return await self.unit.commit(rows, now)

    async def _publish(
        self,
        storing: asyncio.Task[list[DomainEvent]],
        previous: asyncio.Task[None] | None,
        acks: list[Origin],
        extra: list[DomainEvent],
    ) -> None:
        """Once the batch is committed and the one before it published: ack, then publish."""
        events = await storing
        if previous is not None:
            await previous
        events = events + extra
        for item in acks:  # only now: the commit is behind us (docs/reliability.md)
            ack = item.ack  # a delivery's own, or the callback of a submission (or None)
            if ack is not None:
                ack()
        self.acks.settled(len(acks))
        await self.bus.publish(events)
        if self.on_idle is not None and not len(self.inbox):
            self.on_idle()
        await self.link.wait_window()

    # --- commands ---------------------------------------------------------------------

    async def _command(self, msg: Inbound, topic: CommandTopic) -> None:
        """Carry out a command, answer on its response topic, ack it. Raises only
        :class:`StoreUnavailable` (stopping during an outage: not acked, delivered again).

        A response topic outside the sender's reply tree (bridge/topics.py) refuses the
        command: nothing is done, nothing is answered, and it is reported on the errors
        topic (docs/topics.md, "Commands").
        """
        self.metrics.commands += 1
        refusal = None
        if msg.response_topic:
            sender = topic.user if topic.kind == "ack" else None
            refusal = self.topics.reply_fault(msg.response_topic, sender)
        try:
            error = await self._carry_out(msg, topic, refusal)
        except CommandElsewhere:  # another partition of a cluster answers it (docs/scale-out.md)
            msg.ack()
            self.acks.settled()
            return
        if error is not None:
            self.metrics.commands_rejected += 1
            self._report(msg.topic, msg.payload, error)
        if refusal is None:
            self._reply(msg, dumps(reply_payload(error)))
        msg.ack()
        self.acks.settled()

    async def _carry_out(
        self, msg: Inbound, topic: CommandTopic, refusal: str | None
    ) -> str | None:
        """Run the command's handler (waiting out an outage); why it was refused, or None."""
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
            await self.retry.run(
                lambda: self.bus.execute(command), only=database_unavailable, resumes=True
            )
        except (InvalidCommand, CommandRejected) as exc:
            if self.answers_refusal is not None and not self.answers_refusal(topic):
                raise CommandElsewhere(topic.kind, -1) from None
            return str(exc)
        except (StoreUnavailable, CommandElsewhere):
            raise  # stopping: not acked, so the broker delivers the command again; or not ours
        except Exception as exc:
            log.exception("command on %s failed", msg.topic)
            return clip(f"internal error: {exc}", 300)
        return None

    def _reply(self, msg: Inbound, payload: bytes) -> None:
        """Answer on the (checked) response topic; a failure here touches nothing else."""
        try:
            self.link.reply(msg, payload)
        except Exception as exc:
            log.warning("could not reply on %r: %s", clip(msg.response_topic or "", 80), exc)
            self._report(msg.topic, msg.payload, f"reply not sent: {exc}")

    # --- errors -----------------------------------------------------------------------

    def report_condition(self, reason: str) -> None:
        """Report a condition of the bridge itself (no input topic) on the errors topic."""
        self._report("", b"", reason)

    def _report(self, topic: str, payload: bytes, reason: str) -> None:
        """On ``<prefix>/bridge/errors``, coalesced and cut short (bridge/_error_reports.py)."""
        self.errors.report(topic, payload, reason)
