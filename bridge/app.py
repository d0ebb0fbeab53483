"""The composition root: :func:`bootstrap` builds the one real bridge; :func:`run_bridge` runs it.

Everything is built here and only here: the store (SQLAlchemy), the engines (restored from
their last snapshot), the MQTT adapter (paho, MQTT 5, persistent session, Last Will), the
pipeline, the bus and the table of handlers. Tests build the same thing (see
``tests/integration/conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata as importlib_metadata
from typing import Any

from bridge._ack_workflow import LimitVersions, WorkflowPublisher, number_limits
from bridge._alarms import Alarms, AlarmSettings
from bridge._dedupe import SeenReadings
from bridge._mqtt import MqttClient, MqttOptions
from bridge._mqtt_codec import MAX_PACKET_LIMIT
from bridge._query import QueryService
from bridge._roles import RolePublisher
from bridge._split_link import SplitLink
from bridge.bus import MessageBus
from bridge.config import Settings
from bridge.errors import PublishRefused, StoreUnavailable
from bridge.handlers import (
    Broadcaster,
    CommandContext,
    LiveState,
    MetricsRecorder,
    command_table,
    event_table,
)
from bridge.pipeline import CharacteristicRoute, InboundSource, Inbox, Metrics, Pipeline
from bridge.ports import BrokerLink, Clock, LinkPort, StorePort, SystemClock
from bridge.sparkplug import SparkplugEdgeNode, SparkplugInbound
from bridge.sparkplug._state import INBOUND, OWN, BdSeqStore, PrimaryHost
from bridge.sparkplug._wiring import (
    build_edge_node,
    build_primary_host,
    feed_edge_node,
    seed_edge_node,
)
from bridge.store import BatchWrite, SampleRow, Store
from bridge.wire import Topics
from bridge.wire.payloads import (
    ATTRIBUTE_CHARTS,
    encode,
    encode_error,
    encode_limits,
    encode_metrics,
    encode_status,
    iso_z,
    limits_message,
    meta_payload,
    metrics_payload,
    stored_sample_payload,
    stored_violation_payload,
)
from engine import CharacteristicEngine, CharacteristicSpec, IncompatibleState, limits_from_dict

__all__ = ["Bridge", "bootstrap", "run_bridge"]

log = logging.getLogger("openspc.bridge")

START_RETRY_FIRST_S = 1.0
START_RETRY_MAX_S = 30.0


def _cannot_open_sqlite(exc: StoreUnavailable) -> bool:
    return exc.url.startswith("sqlite") and "unable to open database file" in exc.reason


DRAIN_SECONDS = 3.0
"""On a clean stop, how long the pipeline may go on emptying its inbox."""

GIVE_UP_SECONDS = 10.0
"""On a clean stop, how long a batch may wait for an unavailable database."""

BUFFER_WATCH_SECONDS = 0.25
"""How often the bridge checks whether its buffer of unacknowledged readings is full."""

STATUS_CHECK_SECONDS = 3.0
"""At start-up, how long to wait for our own "online" to come back on the status topic."""

TAKEOVER_GRACE_SECONDS = 3.0
"""At start-up, when another bridge had said "online" on our status topic: how long to wait,
before taking any reading, for it to take its session back (its reconnect takes about 1 s)."""

START_FLUSH_SECONDS = 30.0
"""At start-up, how long to wait for the broker to confirm the retained state."""

STATE_ONLINE_SECONDS = 5.0
"""At start-up, how long to wait for the Sparkplug STATE "online" before asking for births."""

START_WINDOW = 1000
"""Start-up's retained messages (meta, limits, history, alarms, causes of every
characteristic) go out with at most about this many unacknowledged, not ``outbound_max``
(10,000): 10,000 characteristics then start about 9 MB smaller, for good
(docs/performance.md, "Memory at start-up")."""


def _version() -> str:
    try:
        return importlib_metadata.version("openspc-bridge")
    except importlib_metadata.PackageNotFoundError:
        return "0.0.0"


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return str(getter()) if callable(getter) else str(value)


@dataclass
class Bridge:
    """Every part of a running bridge, wired together by :func:`bootstrap`.

    ``settings`` are the bridge's settings without the characteristics: what each
    characteristic's config says lives on in the parts built from it (engines, routes,
    alarms, meta), and the models themselves are not kept (:func:`_without_characteristics`)."""

    settings: Settings
    store: StorePort
    inbox: Inbox
    mqtt: BrokerLink
    bus: MessageBus
    pipeline: Pipeline
    broadcaster: Broadcaster
    live: LiveState
    metrics: Metrics
    engines: dict[int, CharacteristicEngine]
    clock: Callable[[], datetime]
    version: str = field(default_factory=_version)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    buffer_full: bool = False  # see _buffer_watch
    queries: QueryService | None = None  # the query command (docs/topics.md, "Query")
    roles: RolePublisher | None = None  # bridge.users_file (docs/topics.md, "Role")
    sparkplug_edge: SparkplugEdgeNode | None = None  # bridge.sparkplug_edge.enabled
    sparkplug_inbound: SparkplugInbound | None = None  # characteristics with a sparkplug source
    sparkplug_host: PrimaryHost | None = None  # bridge.sparkplug.host_id
    bd_seqs: BdSeqStore | None = None
    workflow: WorkflowPublisher | None = None  # causes and excluded samples (_ack_workflow)
    alarms: Alarms | None = None  # spec and overdue alarms, due clocks (bridge/_alarms.py)
    publishes_metrics: bool = True  # a cluster's node sums its partitions' (docs/scale-out.md)
    _host_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _host_task: asyncio.Task[None] | None = None

    @property
    def prefix(self) -> str:
        return self.settings.bridge.topic_prefix

    @property
    def topics(self) -> Topics:
        return self.broadcaster.topics

    @property
    def status_topic(self) -> str:
        return self.topics.status

    def _on_denied(self, topic: str, reason: str) -> None:
        """The broker refused a publish (its ACL): say so on the errors topic, unless that is
        the topic refused (the adapter logs it and tries again with back-off)."""
        errors = self.topics.errors
        if topic == errors:
            return
        text = f"the broker refused the bridge's publish: {reason}; retrying with back-off"
        self.mqtt.publish(errors, encode_error(topic, b"", text, self.clock()), qos=1)

    async def start(self, connect_timeout: float | None = None) -> None:
        """Restore retained state from the database, connect, publish it.

        Waits for the broker's first answer (an unreachable broker is waited for, as long as
        it takes, or ``connect_timeout``). Raises :class:`~bridge.errors.BrokerRefused` when
        it refuses the connection, :class:`~bridge.errors.PublishRefused` when it refuses a
        publish of the start-up, :class:`~bridge.errors.ClientIdInUse` when another bridge
        with the same client id takes its session back (docs/bridge.md)."""
        last_samples = await self._restore_live_state()
        await self._restore_due_clocks()
        if self.sparkplug_edge is not None:  # its first NBIRTH carries the restored results
            seed_edge_node(self.sparkplug_edge, last_samples, self.engines)
        self.mqtt.on_denied = self._on_denied
        await self.mqtt.start()
        async with asyncio.timeout(connect_timeout):
            await self.mqtt.wait_answer()
            await self._publish_retained()
            if self.roles is not None:
                self.roles.publish_all()
            await self.mqtt.wait_readable(self.mqtt.subscribed, STATUS_CHECK_SECONDS)
        if self.workflow is not None:  # the retained Pareto of causes (bridge/_ack_workflow.py)
            await self.workflow.publish_start(
                self.store,
                list(self.engines),
                self.settings.bridge.pareto_days,
                self.clock(),
                START_WINDOW,
            )
        await self._check_start()
        await self._start_sparkplug_host()

    async def _start_sparkplug_host(self) -> None:
        """The Primary Host's STATE online, then a rebirth request to every configured edge
        node not born since the bridge started (docs/sparkplug.md)."""
        host = self.sparkplug_host
        if host is not None and self._host_task is None:
            self._host_task = asyncio.create_task(host.run(self._host_stop), name="sparkplug-host")
            try:
                await asyncio.wait_for(host.online.wait(), STATE_ONLINE_SECONDS)
            except TimeoutError:
                log.warning("no Sparkplug STATE online on %s yet; going on", host.topic)
        if self.sparkplug_inbound is not None:
            asked = self.sparkplug_inbound.request_rebirths()
            if asked:
                log.info("asked %d Sparkplug edge node(s) for their births", asked)
        log.info(
            "bridge started: %d characteristic(s), prefix %r, database %s",
            len(self.engines),
            self.prefix,
            self.store.url,
        )

    async def _check_start(self) -> None:
        """Before any reading is taken: is the broker letting us publish, and are we the only
        bridge with this client id? (docs/bridge.md "Status" and "A second bridge")"""
        # Waits end early while the adapter holds buffer_max unacknowledged readings (a
        # backlog in the session): what they wait for is behind them in the socket, and only
        # the pipeline, which starts after this, acknowledges readings. The checks are then
        # skipped (docs/bridge.md).
        mqtt = self.mqtt
        checked = await mqtt.wait_readable(mqtt.status_checked, STATUS_CHECK_SECONDS)
        if not checked and mqtt.paused:
            log.warning("a backlog of readings at start-up: start-up checks skipped")
            return
        if mqtt.foreign_online is not None and not mqtt.fatal.is_set():
            log.warning(
                "%s said online at %s, not this bridge: another bridge with client id %r may be"
                " running; waiting %.0f s to see whether it takes its session back",
                self.status_topic,
                mqtt.foreign_online,
                mqtt.options.client_id,
                TAKEOVER_GRACE_SECONDS,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(mqtt.fatal.wait(), TAKEOVER_GRACE_SECONDS)
        if mqtt.taken_over is not None:
            raise mqtt.taken_over
        if not await mqtt.wait_confirmed(START_FLUSH_SECONDS) and mqtt.connected.is_set():
            log.warning("the broker has not confirmed the start-up's retained state yet")
        if mqtt.first_denial is not None:
            topic, reason = mqtt.first_denial
            o = mqtt.options
            raise PublishRefused(o.host, o.port, o.username, topic, reason)

    async def _restore_live_state(self) -> dict[int, SampleRow]:
        """The retained history and alarms from the stored rows; each characteristic's last
        stored sample (for the Sparkplug edge node)."""
        size = self.settings.bridge.history_size
        rows = await self.store.recent_samples_of_all(size)
        last_samples = {cid: found[-1] for cid, found in rows.items() if found}
        # one characteristic at a time: its rows become payloads, then the retained history
        for cid in list(rows):
            self.live.restore({cid: [stored_sample_payload(row) for row in rows.pop(cid)]}, ())
        alarms = [stored_violation_payload(v) for v in await self.store.open_violations()]
        self.live.restore({}, alarms)
        return last_samples

    async def _restore_due_clocks(self) -> None:
        """Due clocks and spec episodes as they were (bridge/_alarms.py): from the stored
        clocks and each characteristic's last stored sample; new clocks stored at once, so
        a restart before the first sample still counts from this start."""
        if self.alarms is None:
            return
        history = self.live.history
        last = {cid: history[cid][-1] for cid in self.engines if len(history[cid])}
        write = self.alarms.restore(await self.store.due_states(), last)
        if write:
            async with self.store.unit_of_work() as uow:
                await uow.save_due_states(write)
                await uow.commit()

    async def _publish_retained(self) -> None:
        now = self.clock()
        stored = await self.store.latest_limits_of_all()
        in_force: dict[int, dict[str, Any]] = {}
        new_rows: list[dict[str, Any]] = []
        for cid, engine in self.engines.items():
            if engine.limits is None:
                continue  # collecting a (new) baseline: no limits are in force
            payload = stored.get(cid)
            fresh = limits_message(engine.limits, cid, iso_z(now), engine.chart)
            same = payload is not None and (
                limits_from_dict(payload) == engine.limits
                or _but_time({"chart": engine.chart, **payload}) == _but_time(fresh)
            )
            if payload is not None and same:
                payload.setdefault("chart", engine.chart)  # stored before limits named it
            else:
                # fixed limits never stored yet, or edited in the config since (compared
                # exactly, as 0.1.0 stored them, or as published: figures are rounded since,
                # engine/_serialize.py)
                payload = fresh
                new_rows.append({"characteristic_id": cid, "ts": now, "payload": payload})
            in_force[cid] = payload
        if new_rows:
            number_limits(new_rows, self.pipeline.limit_versions)  # bridge/_ack_workflow.py
            async with self.store.unit_of_work() as uow:
                await uow.write_batch(BatchWrite(limits=new_rows), now)
                await uow.commit()
        # the send window below only paces a connected client: give the CONNACK a moment
        # (without it, half the start-ups queued every message at once; docs/performance.md)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.mqtt.connected.wait(), 1.0)
        for cid in self.engines:
            self.broadcaster.publish_meta(cid, None, now)
            payload = in_force.get(cid)
            if payload is not None:
                self.mqtt.publish(self.topics.limits(cid), encode_limits(payload), retain=True)
            if self.live.history[cid]:
                last = self.live.history[cid][-1]
                self.mqtt.publish(self.topics.sample(cid), encode("sample", last), retain=True)
            self.live.publish_history(cid)
            self.live.publish_alarms(cid)
            # four or five retained messages per characteristic: keep them within a send
            # window rather than queue all at once (10,000 characteristics: a 40,000-message
            # peak that left the process 16 MB larger for good; docs/performance.md); past
            # it, wait down to half of it: one wait per hundred characteristics, not one each
            if self.mqtt.outstanding > START_WINDOW:
                await self.mqtt.wait_window(START_WINDOW // 2)

    def metrics_payload(self) -> dict[str, Any]:
        """The ``bridge/metrics`` payload (bridge/wire/payloads.py ``metrics_payload``)."""
        held = (self.buffered, self.buffer_bound, self.buffer_full, self.inbox.dropped)
        return metrics_payload(self.clock(), self.metrics, self.mqtt, held, self.bus.failures)

    def publish_metrics(self) -> None:
        if not self.publishes_metrics:
            return
        self.mqtt.publish(
            self.topics.metrics, encode_metrics(self.metrics_payload()), qos=0, retain=True
        )

    @property
    def buffered(self) -> int:
        """Readings held by the bridge and not yet acknowledged: queued or in a batch."""
        return len(self.inbox) + self.pipeline.held

    @property
    def buffer_bound(self) -> int:
        """What the broker may have in flight to us (MQTT 5 Receive Maximum, <= 65535)."""
        return min(self.inbox.maxlen, 65_535)

    async def _buffer_watch(self, stop: asyncio.Event) -> None:
        """Say once per episode, on the errors topic and in metrics, that the buffer is full:
        the broker then holds back further readings (they queue in the bridge's session)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), BUFFER_WATCH_SECONDS)
            held, bound = self.buffered, self.buffer_bound
            if not self.buffer_full and held >= bound:
                self.buffer_full = True
                log.warning("buffer full (%d readings held); the broker queues the rest", held)
                self.pipeline.report_condition(
                    f"buffer full: {held} readings held (buffer_max {bound}) and not yet"
                    " stored; the broker queues further readings until the database catches up"
                )
                self.publish_metrics()
            elif self.buffer_full and held <= bound // 2:
                self.buffer_full = False
                log.info("buffer below half again (%d readings held)", held)
                self.publish_metrics()

    async def _metrics_loop(self, stop: asyncio.Event) -> None:
        interval = float(self.settings.bridge.metrics_interval)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            self.publish_metrics()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then finish in-flight work, flush, say offline."""
        halt = asyncio.Event()
        self.ready.set()
        try:
            async with asyncio.TaskGroup() as tasks:
                pipeline = tasks.create_task(self.pipeline.run(halt), name="pipeline")
                tasks.create_task(self.live.run(halt), name="history")
                if self.queries is not None:
                    tasks.create_task(self.queries.run(halt), name="queries")
                if self.roles is not None:
                    tasks.create_task(self.roles.run(halt), name="roles")
                tasks.create_task(self._metrics_loop(halt), name="metrics")
                tasks.create_task(self._buffer_watch(halt), name="buffer-watch")
                if self.alarms is not None:  # the one timer of every due clock
                    tasks.create_task(self.alarms.run(halt, self.inbox.put), name="due-timer")
                if self.sparkplug_edge is not None:  # says NDEATH when halted
                    tasks.create_task(self.sparkplug_edge.run(halt), name="sparkplug-edge")
                stopper = tasks.create_task(stop.wait(), name="stop")
                fatal = tasks.create_task(self.mqtt.fatal.wait(), name="mqtt-fatal")
                await asyncio.wait({pipeline, stopper, fatal}, return_when=asyncio.FIRST_COMPLETED)
                log.info("stopping: finishing in-flight work")
                halt.set()
                self.inbox.wake()
                self.pipeline.stop_by(
                    self.pipeline.clock.monotonic() + DRAIN_SECONDS, GIVE_UP_SECONDS
                )
                stopper.cancel()
                fatal.cancel()
        finally:
            await self.close()
        if self.mqtt.taken_over is not None:
            raise self.mqtt.taken_over

    async def close(self) -> None:
        if self._host_task is not None:  # STATE offline first: the host stops here
            self._host_stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._host_task, 5.0)
        if self.bd_seqs is not None:
            await self.bd_seqs.flush()
        self.live.flush(force=True)
        self.publish_metrics()
        self.mqtt.say_offline(encode_status(False, self.clock()))
        if not await self.mqtt.flush(5.0):
            log.warning("some results were not confirmed by the broker before stopping")
        await self.mqtt.stop()
        await self.store.close()
        log.info("bridge stopped")


def _but_time(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key not in ("timestamp", "version")}


def _meta(
    settings: Settings,
    char: Any,
    spec: CharacteristicSpec,
    shared: dict[Any, list[Any]] | None = None,
) -> dict[str, Any]:
    """The ``meta`` payload of ``char`` (bridge/wire/payloads.py ``meta_payload``)."""
    b = settings.bridge
    return meta_payload(
        char,
        spec,
        codes=(list(b.cause_codes), list(b.action_codes), b.require_action),
        overdue_grace=AlarmSettings.of(char).grace,
        shared=shared,
    )


async def bootstrap(
    settings: Settings,
    *,
    store: StorePort | None = None,
    link: BrokerLink | None = None,
    clock: Clock | None = None,
    sources: Sequence[InboundSource] = (),
    topic_filters: Callable[[list[str]], list[str]] | None = None,
) -> Bridge:
    """Build the bridge: store, engines (restored), MQTT link, pipeline, bus, handlers.

    Without ``store``, ``link`` and ``clock``: the real ones (``Store.open`` on
    ``[database] url``, an :class:`~bridge._mqtt.MqttClient` on ``[broker]``, the system
    clock). Tests pass fakes (``bridge/testing.py``). The store is closed when building
    fails. With a store other than ``bridge.store.Store`` the redelivery memory starts
    empty and Sparkplug's bdSeq numbers are not kept (both read the database directly).

    ``topic_filters`` narrows the subscriptions: a cluster's partition (bridge/cluster) keeps
    to its own characteristics' topics (docs/scale-out.md)."""
    clock = clock if clock is not None else SystemClock()
    if store is None:
        store = await Store.open(settings.database.url)
    try:
        return await _build(settings, store, link, clock, sources, topic_filters)
    except BaseException:
        await store.close()
        raise


async def _build(
    settings: Settings,
    store: StorePort,
    link: BrokerLink | None,
    clock: Clock,
    sources: Sequence[InboundSource],
    narrow: Callable[[list[str]], list[str]] | None = None,
) -> Bridge:
    """Every part, in the order each needs the others."""
    b = settings.bridge
    chars = list(settings.characteristic)
    specs = {char.id: char.to_spec() for char in chars}
    await store.register_characteristics({c.id: c.name for c in chars}, clock.now())
    states = await store.engine_states()
    engines = _restore_engines(specs, states)
    metrics = Metrics()
    link = link if link is not None else _broker_link(settings)
    bus = MessageBus()
    live = _live_state(settings, link, clock)
    bd_seqs = BdSeqStore(store) if isinstance(store, Store) else None
    inbound = await _sparkplug_inbound(settings, link, bd_seqs)
    alarms = Alarms([AlarmSettings.of(c) for c in chars], wall=clock.now)
    extra = [*sources, *(inbound.sources if inbound is not None else []), *alarms.sources()]
    parts = (store, link, bus, metrics, clock)
    pipeline = await _pipeline(settings, specs, engines, parts, live, extra, alarms)
    await _restore_pipeline(pipeline, store, states)
    queries = _queries(settings, store, link, pipeline, metrics)
    _subscribe(link, pipeline, queries, alarms, narrow)
    broadcaster = _broadcaster(settings, link, metrics, specs)
    workflow = WorkflowPublisher(link, b.topic_prefix, live)
    commands = _commands(settings, store, engines, clock, pipeline)
    _register_handlers(bus, broadcaster, live, metrics, workflow, commands)
    return Bridge(
        settings=_without_characteristics(settings),
        store=store,
        inbox=link.inbox,
        mqtt=link,
        bus=bus,
        pipeline=pipeline,
        broadcaster=broadcaster,
        live=live,
        metrics=metrics,
        engines=engines,
        clock=clock.now,
        queries=queries,
        roles=None if b.users_file is None else RolePublisher(link, b.topic_prefix, b.users_file),
        sparkplug_edge=await _edge_node(settings, bus, bd_seqs, clock),
        sparkplug_inbound=inbound,
        # online only while the main connection is up (docs/sparkplug.md)
        sparkplug_host=build_primary_host(settings, (link.connected, link.disconnected)),
        bd_seqs=bd_seqs,
        workflow=workflow,
        alarms=alarms,
    )


def _without_characteristics(settings: Settings) -> Settings:
    """The settings a running bridge keeps: all but the ``[[characteristic]]`` models, which
    only building it reads. At 10,000 characteristics they are about 8 MB that an
    ``openspc run`` frees once started (it hands its settings over to :func:`run_bridge`;
    docs/performance.md, "Memory at start-up")."""
    return settings.model_copy(update={"characteristic": []})


async def _pipeline(
    settings: Settings,
    specs: dict[int, CharacteristicSpec],
    engines: dict[int, CharacteristicEngine],
    parts: tuple[StorePort, LinkPort, MessageBus, Metrics, Clock],
    live: LiveState,
    sources: Sequence[InboundSource],
    alarms: Alarms,
) -> Pipeline:
    store, link, bus, metrics, clock = parts
    return Pipeline(
        prefix=settings.bridge.topic_prefix,
        routes=_routes(settings, specs),
        engines=engines,
        store=store,
        link=link,
        bus=bus,
        metrics=metrics,
        clock=clock,
        seen=await _seen_readings(settings, store),
        sources=sources,
        on_idle=live.flush_idle,
        alarms=alarms,
        **_batching(settings),
    )


async def _restore_pipeline(
    pipeline: Pipeline, store: StorePort, states: dict[int, dict[str, Any]]
) -> None:
    """What the pipeline carries over a restart besides the engines: each open subgroup's
    context (where its engine took the subgroup back) and the limits versions in force."""
    engines = pipeline.engines
    partial = {c: s for c, s in states.items() if c in engines and engines[c].partial}
    pipeline.contexts.restore(partial)
    pipeline.limit_versions = LimitVersions(await store.limits_versions())


def _subscribe(
    link: LinkPort,
    pipeline: Pipeline,
    queries: QueryService,
    alarms: Alarms,
    narrow: Callable[[list[str]], list[str]] | None = None,
) -> None:
    for source in alarms.sources():  # a line's last state is its retained message
        link.add_subscription(source.topic_filter, retained=True)
    filters = [*pipeline.topic_filters(), queries.topic_filter]
    for topic_filter in narrow(filters) if narrow is not None else filters:
        link.add_subscription(topic_filter)


def _queries(
    settings: Settings, store: StorePort, link: LinkPort, pipeline: Pipeline, metrics: Metrics
) -> QueryService:
    """The query command, answered beside the batches (bridge/_query.py)."""
    queries = QueryService(
        prefix=settings.bridge.topic_prefix,
        store=store,
        mqtt=link,
        characteristics=[c.id for c in settings.characteristic],
        report=pipeline.errors.report,
        metrics=metrics,
    )
    pipeline.on_query = queries.offer
    return queries


def _commands(
    settings: Settings,
    store: StorePort,
    engines: dict[int, CharacteristicEngine],
    clock: Clock,
    pipeline: Pipeline,
) -> CommandContext:
    """What the command handlers work with (the acknowledgement workflow's codes too)."""
    b = settings.bridge
    return CommandContext(
        store=store,
        engines=engines,
        baselines={c.id: c.baseline for c in settings.characteristic},
        reason_codes=list(b.cause_codes),
        clock=clock.now,
        action_codes=list(b.action_codes),
        require_action=b.require_action,
        pareto_days=int(b.pareto_days),
        versions=pipeline.limit_versions,
    )


def _batching(settings: Settings) -> dict[str, Any]:
    b = settings.bridge
    return {
        "batch_max": int(b.batch_max),
        "batch_ms": float(b.batch_ms),
        "commit_interval_ms": float(b.commit_interval_ms),
        "max_payload_bytes": int(b.max_payload_bytes),
    }


def _restore_engines(
    specs: dict[int, CharacteristicSpec], states: dict[int, dict[str, Any]]
) -> dict[int, CharacteristicEngine]:
    """Each characteristic's engine from its last stored snapshot (afresh when unusable)."""
    engines: dict[int, CharacteristicEngine] = {}
    for cid, spec in specs.items():
        try:
            engines[cid] = CharacteristicEngine(spec, state=states.get(cid))
        except IncompatibleState as exc:  # e.g. its subgroup size was changed
            log.warning(
                "characteristic %s: stored state not usable (%s); starting it afresh", cid, exc
            )
            engines[cid] = CharacteristicEngine(spec)
        except Exception:
            log.exception("could not restore characteristic %s; starting it afresh", cid)
            engines[cid] = CharacteristicEngine(spec)
    return engines


def _broker_link(settings: Settings) -> BrokerLink:
    """The real link: three connections (readings, results, history; bridge/_split_link.py)
    unless ``[bridge] split_connections = false``: then one (:func:`_mqtt_link`)."""
    if not settings.bridge.split_connections:
        return _mqtt_link(settings)
    inbox = Inbox(int(settings.bridge.buffer_max))
    topics = Topics(settings.bridge.topic_prefix)
    return SplitLink.from_options(_mqtt_options(settings), inbox, topics.is_history)


def _mqtt_link(settings: Settings) -> MqttClient:
    """One connection: paho, MQTT 5, persistent session, Last Will (bridge/_mqtt.py)."""
    return MqttClient(_mqtt_options(settings), Inbox(int(settings.bridge.buffer_max)))


def _mqtt_options(settings: Settings) -> MqttOptions:
    """The bridge's connection to ``[broker]`` (its readings connection when split)."""
    b, broker = settings.bridge, settings.broker
    prefix = b.topic_prefix
    return MqttOptions(
        host=broker.host,
        port=broker.port,
        client_id=broker.client_id,
        username=broker.username,
        password=_secret(broker.password),
        tls=bool(broker.tls),
        keepalive=int(broker.keepalive),
        receive_maximum=int(b.buffer_max),
        outbound_max=int(b.outbound_max),
        # retained status, its Will and the answer to a late Will (docs/bridge.md)
        status_topic=Topics(prefix).status,
        status_payload=encode_status,
        lean_inbound=bool(b.lean_inbound),
        lean_publish=bool(b.lean_publish),
        # room for topic and properties beyond the largest payload taken (docs/performance.md)
        max_packet=min(MAX_PACKET_LIMIT, max(16 << 20, int(b.max_payload_bytes) + (1 << 16))),
    )


def _routes(
    settings: Settings, specs: dict[int, CharacteristicSpec]
) -> dict[int, CharacteristicRoute]:
    return {
        c.id: CharacteristicRoute(
            id=c.id,
            subgroup_size=c.subgroup_size,
            baseline=c.baseline,
            topic=c.topic,
            value_path=c.value_path,
            counts=specs[c.id] if specs[c.id].chart_name in ATTRIBUTE_CHARTS else None,
        )
        for c in settings.characteristic
    }


async def _seen_readings(settings: Settings, store: StorePort) -> SeenReadings:
    """The memory of recent readings' identities (bridge/_dedupe.py), reloaded from the
    store: every reading that can come back (up to Receive Maximum in flight, plus the
    batches being written); rows: a subgroup message is n rows."""
    b, chars = settings.bridge, list(settings.characteristic)
    window = min(int(b.buffer_max), 65_535) + 2 * int(b.batch_max)
    seen = SeenReadings(window)
    if isinstance(store, Store):  # read straight from its readings table
        await seen.load(
            store,
            window * max((c.subgroup_size for c in chars), default=1),
            [c.id for c in chars],
        )
    return seen


def _live_state(settings: Settings, link: LinkPort, clock: Clock) -> LiveState:
    b = settings.bridge
    outbound_max = int(b.outbound_max)
    return LiveState(
        link,
        b.topic_prefix,
        int(b.history_size),
        [c.id for c in settings.characteristic],
        monotonic=clock.monotonic,
        budget=int(b.history_budget),
        backlog=lambda: link.outstanding_bytes,
        full=lambda: link.outstanding >= outbound_max,
    )


def _broadcaster(
    settings: Settings, link: LinkPort, metrics: Metrics, specs: dict[int, CharacteristicSpec]
) -> Broadcaster:
    broadcaster = Broadcaster(link, settings.bridge.topic_prefix, metrics)
    shared_meta: dict[Any, list[Any]] = {}
    for char in settings.characteristic:
        broadcaster.meta[char.id] = _meta(settings, char, specs[char.id], shared_meta)
    return broadcaster


def _register_handlers(
    bus: MessageBus,
    broadcaster: Broadcaster,
    live: LiveState,
    metrics: Metrics,
    workflow: WorkflowPublisher,
    ctx: CommandContext,
) -> None:
    """The tables of bridge/handlers.py onto the bus."""
    table = event_table(broadcaster, live, MetricsRecorder(metrics), workflow)
    for kind, handlers in table.items():
        for handler in handlers:
            bus.subscribe(kind, handler)
    for kind, command_handler in command_table(ctx).items():
        bus.register(kind, command_handler)


async def _sparkplug_inbound(
    settings: Settings, link: LinkPort, bd_seqs: BdSeqStore | None
) -> SparkplugInbound | None:
    """The Sparkplug B host side, for the edge nodes the characteristics read from."""
    chars = [c for c in settings.characteristic if c.sparkplug is not None]
    if not chars:
        return None
    from bridge.sparkplug import SparkplugBinding

    bindings = []
    for c in chars:
        sp = c.sparkplug
        assert sp is not None
        bindings.append(SparkplugBinding(c.id, sp.group, sp.edge, sp.device, sp.metric))
    inbound = SparkplugInbound(bindings, rebirth_on_gap=settings.bridge.rebirth_on_gap)
    inbound.attach(lambda topic, data: link.publish(topic, data, qos=0))
    if bd_seqs is not None:  # an NDEATH after a restart still meets its NBIRTH's bdSeq
        inbound.host.restore_bd_seqs(await bd_seqs.load(INBOUND))
        inbound.on_birth = lambda g, e, n: bd_seqs.remember(INBOUND, g, e, n)
    return inbound


async def _edge_node(
    settings: Settings, bus: MessageBus, bd_seqs: BdSeqStore | None, clock: Clock
) -> SparkplugEdgeNode | None:
    """The bridge's own Sparkplug edge node (``bridge.sparkplug_edge``), fed by the bus;
    its bdSeq goes on from the last one it used (docs/sparkplug.md)."""
    edge_node = build_edge_node(settings, clock=clock.now)
    if edge_node is None:
        return None
    feed_edge_node(edge_node, bus)
    if bd_seqs is not None:
        group, edge = edge_node.group, edge_node.edge
        last = (await bd_seqs.load(OWN)).get((group, edge))
        edge_node.first_bd_seq = 0 if last is None else (last + 1) % 256

        async def save_bd_seq(n: int) -> None:
            await bd_seqs.save(OWN, group, edge, n)

        edge_node.on_bd_seq = save_bd_seq
    return edge_node


async def run_bridge(
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    sources: Sequence[InboundSource] = (),
    started: Callable[[], None] | None = None,
) -> None:
    """Run the bridge until ``stop`` is set (forever without one); ``started`` is called once
    the bridge has started, before it serves.

    A database that is unavailable at start-up is waited out like one that goes away later:
    retried with back-off (1 s doubling to 30 s), one log line per attempt, until it comes
    or ``stop`` is set. Only a SQLite file that cannot be opened at all (a wrong path) is
    raised at once: waiting would not mend it.

    Once built, the bridge does not keep ``settings`` (only its copy without the
    characteristics): a caller that hands its settings over (``openspc run``) lets the
    characteristics' models go (docs/performance.md, "Memory at start-up").
    """
    stop = stop or asyncio.Event()
    delay = START_RETRY_FIRST_S
    while True:
        try:
            bridge = await bootstrap(settings, sources=sources)
            del settings  # built: the characteristics' models may go (see above)
            break
        except StoreUnavailable as exc:
            if _cannot_open_sqlite(exc):
                raise
            log.warning("%s; waiting for it, next try in %.0f s", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
            delay = min(delay * 2, START_RETRY_MAX_S)
    try:
        # waits for the broker as long as it takes; a stop request ends the wait
        starting = asyncio.ensure_future(bridge.start())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await bridge.close()
            return
        starting.result()
    except BaseException:
        await bridge.close()
        raise
    if started is not None:  # `openspc run`: bridge._startup.freeze_startup_heap
        started()
    await bridge.run(stop)
