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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from typing import Any

from bridge._dedupe import SeenReadings
from bridge._mqtt import Inbox, MqttClient, MqttOptions
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
from bridge.messages import (
    ATTRIBUTE_CHARTS,
    chart_parameters,
    dumps,
    error_payload,
    iso_z,
    limits_message,
    rules_payload,
    status_payload,
)
from bridge.pipeline import CharacteristicRoute, InboundSource, Metrics, Pipeline
from bridge.sparkplug import SparkplugEdgeNode, SparkplugInbound
from bridge.sparkplug._state import INBOUND, OWN, BdSeqStore, PrimaryHost
from bridge.sparkplug._wiring import (
    build_edge_node,
    build_primary_host,
    feed_edge_node,
    seed_edge_node,
)
from bridge.store import BatchWrite, Store, ViolationRecord
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
    """Every part of a running bridge, wired together by :func:`bootstrap`."""

    settings: Settings
    store: Store
    inbox: Inbox
    mqtt: MqttClient
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
    sparkplug_edge: SparkplugEdgeNode | None = None  # bridge.sparkplug_edge.enabled
    sparkplug_inbound: SparkplugInbound | None = None  # characteristics with a sparkplug source
    sparkplug_host: PrimaryHost | None = None  # bridge.sparkplug.host_id
    bd_seqs: BdSeqStore | None = None
    _host_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _host_task: asyncio.Task[None] | None = None

    @property
    def prefix(self) -> str:
        return self.settings.bridge.topic_prefix

    @property
    def status_topic(self) -> str:
        return f"{self.prefix}/bridge/status"

    def _on_denied(self, topic: str, reason: str) -> None:
        """The broker refused a publish (its ACL): say so on the errors topic, unless that is
        the topic refused (the adapter logs it and tries again with back-off)."""
        errors = f"{self.prefix}/bridge/errors"
        if topic == errors:
            return
        text = f"the broker refused the bridge's publish: {reason}; retrying with back-off"
        self.mqtt.publish(errors, dumps(error_payload(topic, b"", text, self.clock())), qos=1)

    async def start(self, connect_timeout: float | None = None) -> None:
        """Restore retained state from the database, connect, publish it.

        Waits for the broker's first answer (an unreachable broker is waited for, as long as
        it takes, or ``connect_timeout``). Raises :class:`~bridge.errors.BrokerRefused` when
        it refuses the connection, :class:`~bridge.errors.PublishRefused` when it refuses a
        publish of the start-up, :class:`~bridge.errors.ClientIdInUse` when another bridge
        with the same client id takes its session back (docs/bridge.md)."""
        await self._restore_live_state()
        if self.sparkplug_edge is not None:  # its first NBIRTH carries the restored results
            seed_edge_node(self.sparkplug_edge, self.live.history, self.engines)
        self.mqtt.on_denied = self._on_denied
        await self.mqtt.start()
        async with asyncio.timeout(connect_timeout):
            await self.mqtt.wait_answer()
            await self._publish_retained()
            await self.mqtt.wait_readable(self.mqtt.subscribed, STATUS_CHECK_SECONDS)
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
            self.store.engine.url.render_as_string(hide_password=True),
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

    async def _restore_live_state(self) -> None:
        size = self.settings.bridge.history_size
        history = await self.store.recent_samples_of_all(size)
        alarms = [_violation_dict(v) for v in await self.store.open_violations()]
        self.live.restore(history, alarms)

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
                self.mqtt.publish(
                    f"{self.prefix}/char/{cid}/limits",
                    dumps({"type": "control_limits", "payload": payload}),
                    retain=True,
                )
            if self.live.history[cid]:
                last = self.live.history[cid][-1]
                self.mqtt.publish(
                    f"{self.prefix}/char/{cid}/sample",
                    dumps({"type": "sample", "payload": last}),
                    retain=True,
                )
            self.live.publish_history(cid)
            self.live.publish_alarms(cid)
            # four or five retained messages per characteristic: keep them within the send
            # window rather than queue all at once (10,000 characteristics: a 40,000-message
            # peak that left the process 16 MB larger for good; docs/performance.md)
            await self.mqtt.wait_window()

    def metrics_payload(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "timestamp": iso_z(self.clock()),
            "uptime_s": round(time.monotonic() - m.started, 3),
            "readings_received": m.readings_received,
            "readings_rejected": m.readings_rejected,
            "readings_duplicate": m.readings_duplicate,
            "samples": m.samples,
            "violations": m.violations,
            "acks": m.acks,
            "commands": m.commands,
            "commands_rejected": m.commands_rejected,
            "db_batches": m.db_batches,
            "db_retries": m.db_retries,
            "db_errors": m.db_errors,
            "dead_letters": m.dead_letters,
            "buffered_readings": self.buffered,
            "buffer_max": self.buffer_bound,
            "buffer_full": self.buffer_full,
            "dropped_readings": self.inbox.dropped,
            "publish_outstanding": self.mqtt.outstanding,
            "publish_outstanding_max": self.mqtt.outstanding_max,
            "publishes_coalesced": self.mqtt.coalesced,
            "readings_past_receive_maximum": self.mqtt.over_receive,
            "publishes_refused": self.mqtt.refused,
            "publishes_denied": self.mqtt.denied,
            "publishes_retry_pending": self.mqtt.retry_pending,
            "status_reasserted": self.mqtt.status_reasserted,
            "connects_refused": self.mqtt.connects_refused,
            "handler_failures": self.bus.failures,
            "connected": self.mqtt.connected.is_set(),
            "latency_ms": m.latency_ms(),
        }

    def publish_metrics(self) -> None:
        self.mqtt.publish(
            f"{self.prefix}/bridge/metrics", dumps(self.metrics_payload()), qos=0, retain=True
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
                tasks.create_task(self._metrics_loop(halt), name="metrics")
                tasks.create_task(self._buffer_watch(halt), name="buffer-watch")
                if self.sparkplug_edge is not None:  # says NDEATH when halted
                    tasks.create_task(self.sparkplug_edge.run(halt), name="sparkplug-edge")
                stopper = tasks.create_task(stop.wait(), name="stop")
                fatal = tasks.create_task(self.mqtt.fatal.wait(), name="mqtt-fatal")
                await asyncio.wait({pipeline, stopper, fatal}, return_when=asyncio.FIRST_COMPLETED)
                log.info("stopping: finishing in-flight work")
                halt.set()
                self.inbox.wake()
                self.pipeline.stop_by(time.monotonic() + DRAIN_SECONDS, GIVE_UP_SECONDS)
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
        self.mqtt.say_offline(dumps(status_payload(False, self.clock())))
        if not await self.mqtt.flush(5.0):
            log.warning("some results were not confirmed by the broker before stopping")
        await self.mqtt.stop()
        await self.store.close()
        log.info("bridge stopped")


def _but_time(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key != "timestamp"}


def _violation_dict(v: ViolationRecord) -> dict[str, Any]:
    return {
        "violation_id": v.id,
        "sample_id": v.sample_id,
        "characteristic_id": v.characteristic_id,
        "rule_id": v.rule_id,
        "rule_name": v.rule_name,
        "severity": v.severity,
        "chart": v.chart,
        "timestamp": iso_z(v.ts),
    }


def _meta(
    settings: Settings,
    char: Any,
    spec: CharacteristicSpec,
    shared: dict[Any, list[Any]] | None = None,
) -> dict[str, Any]:
    """The ``meta`` payload. With ``shared``, characteristics with the same rules share one
    rules list, and all share one reason-code list (never mutated: publish_meta only sets
    top-level keys); with 10,000 characteristics that is about 25 MB (docs/performance.md)."""
    if shared is None:
        shared = {}
    engine_rules = spec.rules
    rules_key = ("rules", tuple(engine_rules))
    if rules_key not in shared:
        shared[rules_key] = rules_payload(engine_rules)
    if "reason_codes" not in shared:
        shared["reason_codes"] = list(settings.bridge.reason_codes)
    sparkplug = getattr(char, "sparkplug", None)
    if sparkplug is not None and hasattr(sparkplug, "model_dump"):
        sparkplug = sparkplug.model_dump()
    return {
        "characteristic_id": char.id,
        "name": char.name,
        "unit": char.unit,
        "subgroup_size": char.subgroup_size,
        "usl": char.usl,
        "lsl": char.lsl,
        "target": char.target,
        "baseline": char.baseline,
        "chart": spec.chart_name,
        "parameters": chart_parameters(spec),
        "rules": shared[rules_key],
        "reason_codes": shared["reason_codes"],
        "source": {"topic": char.topic, "value_path": char.value_path, "sparkplug": sparkplug},
        "online": True,
        "timestamp": None,
    }


def _sparkplug_inbound(settings: Settings, mqtt: MqttClient) -> SparkplugInbound | None:
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
    inbound.attach(lambda topic, data: mqtt.publish(topic, data, qos=0))
    return inbound


async def bootstrap(  # noqa: C901  the composition root builds every part; issue 11 splits it
    settings: Settings,
    *,
    sources: Sequence[InboundSource] = (),
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    store: Store | None = None,
    topic_filters: Callable[[list[str]], list[str]] | None = None,
) -> Bridge:
    """Build the bridge: store, engines (restored), MQTT adapter, pipeline, bus, handlers.

    A cluster's partition (bridge/cluster) passes its own ``store`` (fenced by its lease)
    and narrows the ``topic_filters`` to its own characteristics."""
    b = settings.bridge
    store = store or await Store.open(settings.database.url)
    try:
        chars = list(settings.characteristic)
        await store.register_characteristics({c.id: c.name for c in chars}, clock())
        states = await store.engine_states()
        engines: dict[int, CharacteristicEngine] = {}
        specs = {char.id: char.to_spec() for char in chars}
        for char in chars:
            spec = specs[char.id]
            state = states.get(char.id)
            try:
                engines[char.id] = CharacteristicEngine(spec, state=state)
            except IncompatibleState as exc:  # e.g. its subgroup size was changed
                log.warning(
                    "characteristic %s: stored state not usable (%s); starting it afresh",
                    char.id,
                    exc,
                )
                engines[char.id] = CharacteristicEngine(spec)
            except Exception:
                log.exception("could not restore characteristic %s; starting it afresh", char.id)
                engines[char.id] = CharacteristicEngine(spec)
        metrics = Metrics()
        inbox = Inbox(int(b.buffer_max))
        prefix = b.topic_prefix
        mqtt = MqttClient(
            MqttOptions(
                host=settings.broker.host,
                port=settings.broker.port,
                client_id=settings.broker.client_id,
                username=settings.broker.username,
                password=_secret(settings.broker.password),
                tls=bool(settings.broker.tls),
                keepalive=int(settings.broker.keepalive),
                receive_maximum=int(b.buffer_max),
                outbound_max=int(b.outbound_max),
                # retained status, its Will and the answer to a late Will (docs/bridge.md)
                status_topic=f"{prefix}/bridge/status",
                status_payload=lambda online, at: dumps(status_payload(online, at)),
            ),
            inbox,
        )
        bus = MessageBus()
        routes = {
            c.id: CharacteristicRoute(
                id=c.id,
                subgroup_size=c.subgroup_size,
                baseline=c.baseline,
                topic=c.topic,
                value_path=c.value_path,
                counts=specs[c.id] if specs[c.id].chart_name in ATTRIBUTE_CHARTS else None,
            )
            for c in chars
        }
        pipeline = Pipeline(
            prefix=prefix,
            routes=routes,
            engines=engines,
            store=store,
            mqtt=mqtt,
            bus=bus,
            inbox=inbox,
            batch_max=int(b.batch_max),
            batch_ms=float(b.batch_ms),
            max_payload_bytes=int(b.max_payload_bytes),
            metrics=metrics,
            clock=clock,
        )
        # every reading that can come back (up to Receive Maximum in flight, plus the
        # batches being written) is remembered; rows: a subgroup message is n rows
        window = min(int(b.buffer_max), 65_535) + 2 * int(b.batch_max)
        pipeline.seen = SeenReadings(window)
        await pipeline.seen.load(
            store,
            window * max((c.subgroup_size for c in chars), default=1),
            [c.id for c in chars],
        )
        bd_seqs = BdSeqStore(store)
        inbound = _sparkplug_inbound(settings, mqtt)
        if inbound is not None:  # an NDEATH after a restart still meets its NBIRTH's bdSeq
            inbound.host.restore_bd_seqs(await bd_seqs.load(INBOUND))
            inbound.on_birth = lambda g, e, n: bd_seqs.remember(INBOUND, g, e, n)
        for source in [*sources, *(inbound.sources if inbound is not None else [])]:
            pipeline.add_source(source)
        filters = pipeline.topic_filters()
        for topic_filter in topic_filters(filters) if topic_filters else filters:
            mqtt.add_subscription(topic_filter)
        broadcaster = Broadcaster(mqtt, prefix, metrics)
        shared_meta: dict[Any, list[Any]] = {}
        for char in chars:
            broadcaster.meta[char.id] = _meta(settings, char, specs[char.id], shared_meta)
        live = LiveState(
            mqtt,
            prefix,
            int(b.history_size),
            [c.id for c in chars],
            budget=int(b.history_budget),
            backlog=lambda: mqtt.outstanding_bytes,
            full=lambda: mqtt.outstanding >= mqtt.options.outbound_max,
        )
        pipeline.on_idle = live.flush_idle
        for kind, handlers in event_table(broadcaster, live, MetricsRecorder(metrics)).items():
            for handler in handlers:
                bus.subscribe(kind, handler)
        ctx = CommandContext(
            store=store,
            engines=engines,
            baselines={c.id: c.baseline for c in chars},
            reason_codes=list(b.reason_codes),
            clock=clock,
        )
        for kind, command_handler in command_table(ctx).items():
            bus.register(kind, command_handler)
        sparkplug_edge = build_edge_node(settings, clock=clock)
        if sparkplug_edge is not None:
            feed_edge_node(sparkplug_edge, bus)
            group, edge = sparkplug_edge.group, sparkplug_edge.edge
            last = (await bd_seqs.load(OWN)).get((group, edge))
            sparkplug_edge.first_bd_seq = 0 if last is None else (last + 1) % 256

            async def save_bd_seq(n: int) -> None:
                await bd_seqs.save(OWN, group, edge, n)

            sparkplug_edge.on_bd_seq = save_bd_seq
    except BaseException:
        await store.close()
        raise
    return Bridge(
        settings=settings,
        store=store,
        inbox=inbox,
        mqtt=mqtt,
        bus=bus,
        pipeline=pipeline,
        broadcaster=broadcaster,
        live=live,
        metrics=metrics,
        engines=engines,
        clock=clock,
        sparkplug_edge=sparkplug_edge,
        sparkplug_inbound=inbound,
        # online only while the main connection is up (docs/sparkplug.md)
        sparkplug_host=build_primary_host(settings, (mqtt.connected, mqtt.disconnected)),
        bd_seqs=bd_seqs,
    )


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
    """
    stop = stop or asyncio.Event()
    delay = START_RETRY_FIRST_S
    while True:
        try:
            bridge = await bootstrap(settings, sources=sources)
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
