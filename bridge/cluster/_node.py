"""One node of the cluster: leases, and one bridge pipeline per partition it holds.

A thread of the node's own (bridge/cluster/_keeper.py) says it is alive and renews its
leases every tick (``lease_seconds / 3``, at most every second), whatever the node's event
loop is doing. The node's round, on the same tick, stops the partitions whose lease the
keeper found lost, releases what is beyond its share (the floor or the ceiling of
partitions / live nodes), and takes free or expired partitions up to its share. Each
partition it holds runs as its own :class:`~bridge.app.Bridge`, built by
the one :func:`~bridge.app.bootstrap`, restricted to the partition's characteristics, with
its own MQTT client id ``<client_id>-p<k>`` and persistent session, and a store whose every
transaction checks the lease's fencing token (bridge/cluster/_leases.py). A takeover
bootstraps the partition from the database exactly as a restart does (docs/scale-out.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge._mqtt import MqttClient
from bridge.app import Bridge, _mqtt_link, bootstrap
from bridge.cluster._keeper import LeaseKeeper
from bridge.cluster._leases import Fence, LeaseLost, Leases, PartitionStore, cluster_engine
from bridge.cluster._partitions import owners_view, partition_of, partitions_of, quota, subset
from bridge.cluster._status import NodeLinks, counters, node_metrics
from bridge.config import Settings
from bridge.errors import StoreUnavailable
from bridge.store import Store
from bridge.wire import Topics

__all__ = ["ClusterNode", "run_node"]

log = logging.getLogger("openspc.cluster")

HANDOVER_SECONDS = 10.0
"""On a clean stop or a release, how long a partition may take to finish its batches."""


def partition_filters(
    prefix: str, partition: int, ids: list[int]
) -> Callable[[list[str]], list[str]]:
    """A partition's subscriptions: its own characteristics' reading and recalculate topics
    instead of the wildcards; acknowledgements stay; the query command only in partition 0
    (docs/scale-out.md)."""
    topics = Topics(prefix)
    instead = {
        topics.reading_filter: [topics.reading(cid) for cid in ids],
        topics.recalculate_filter: [topics.recalculate_command(cid) for cid in ids],
        topics.query_filter: [topics.query_filter] if partition == 0 else [],
    }

    def narrow(filters: list[str]) -> list[str]:
        out: list[str] = []
        for f in filters:
            out += instead.get(f, [f])
        return list(dict.fromkeys(out))

    return narrow


@dataclass
class _Partition:
    number: int
    token: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    link: MqttClient | None = None
    bridge: Bridge | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    served: bool = False  # marked serving in its lease row (shown on bridge/cluster)

    def abort(self) -> None:
        """The lease is lost: drop the connection (nothing more is acknowledged; the broker
        keeps the session's messages for the next owner) and end the pipeline."""
        if self.link is not None:
            self.link.abort()
        if self.task is not None:
            self.task.cancel()


class ClusterNode:
    def __init__(
        self, settings: Settings, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.settings = settings
        self.node = settings.cluster.node
        self.clock = clock
        c = settings.cluster
        self.tick = min(1.0, c.lease_seconds / 3)
        self.lease_seconds = float(c.lease_seconds)
        self._renewed_at = time.monotonic()
        self.groups = partitions_of(settings)
        self.owners = partition_of(settings)
        self.held: dict[int, _Partition] = {}
        # being handed over: still renewed until their pipeline has finished, then released
        self.leaving: dict[int, _Partition] = {}
        # hand-overs under way, and partitions being announced (_announce)
        self._background: set[asyncio.Task[None]] = set()
        self.links = NodeLinks(settings)
        self._began = time.monotonic()
        self._retired: dict[str, int] = {}  # counters of the partitions that have stopped
        self._live: list[str] | None = None  # the live nodes, while this node is their first
        self._url = ""
        self._leases: Leases | None = None
        self._keeper: LeaseKeeper | None = None
        self._store_url = ""

    # --- the loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, started: Callable[[], None] | None = None) -> None:
        s = self.settings
        base = await _open_store(s.database.url, stop)  # brings the schema up to date
        if base is None:
            return
        self._store_url = base.url
        await base.close()
        engine = cluster_engine(s.database.url, s.cluster.lease_seconds)
        self._leases = Leases(engine, self.node, s.cluster.partitions, s.cluster.lease_seconds)
        self._keeper = keeper = LeaseKeeper(
            lambda: cluster_engine(s.database.url, s.cluster.lease_seconds, pool_size=1),
            self.node,
            s.cluster.lease_seconds,
            self.tick,
        )
        try:
            await self._leases.prepare()
            await keeper.start()
            if not await _unless_stopped(self.links.start(), stop):
                await self.links.stop(self.clock())
                return
            b = s.bridge
            if b.sparkplug_edge.enabled or b.sparkplug.host_id is not None:
                log.warning(
                    "a cluster does not run the bridge's own Sparkplug edge node or Primary"
                    " Host yet ([bridge.sparkplug_edge], [bridge.sparkplug]): not started"
                    " (docs/scale-out.md)"
                )
            log.info(
                "cluster node %r: %d partition(s), lease %.0f s",
                self.node,
                s.cluster.partitions,
                s.cluster.lease_seconds,
            )
            if started is not None:
                started()
            fatal = asyncio.ensure_future(self.links.own.fatal.wait())
            every = float(s.bridge.metrics_interval)
            metrics_due = time.monotonic() + every
            try:
                while not stop.is_set() and not fatal.done():
                    await self._round()
                    if time.monotonic() >= metrics_due:
                        metrics_due = time.monotonic() + every
                        self.publish_metrics()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.tick)
            finally:
                fatal.cancel()
            await self._leave()
        finally:
            for part in [*self.held.values(), *self.leaving.values()]:
                part.abort()
            for task in self._background:
                task.cancel()
            await keeper.stop()
            await engine.dispose()
        if self.links.own.taken_over is not None:
            raise self.links.own.taken_over

    async def _round(self) -> None:
        leases, keeper = self._leases, self._keeper
        assert leases is not None
        assert keeper is not None
        try:
            if not keeper.alive:
                raise RuntimeError("the lease keeper's thread has ended")
            found = keeper.view()
            self._renewed_at = found.renewed_at
            for k, token in sorted(keeper.take_lost()):
                part = self.held.get(k) or self.leaving.get(k)
                if part is None or part.token != token:
                    continue  # released or taken again meanwhile
                log.warning("node %r lost the lease of partition %d", self.node, k)
                keeper.drop(k)
                (self.held.pop(k, None) or self.leaving.pop(k)).abort()
            await self._reap()
            if found.live is None or found.error is not None:
                self._give_up_unrenewed()
                return  # no heartbeat went through: the live nodes are not known
            share = quota(self.node, found.live, leases.partitions)
            for k in sorted(self.held, reverse=True)[: max(0, len(self.held) - share)]:
                self._hand_over(k)  # in the background: the rounds go on renewing
            got = await leases.acquire(share - len(self.held), set(self.held | self.leaving))
            for k, token in sorted(got.items()):
                self._start(k, token)
            await self._mark_serving()
            await self._publish_view()
        except Exception as exc:  # the database away: the leases run out, fencing holds
            log.warning("cluster round of node %r failed: %s", self.node, exc)
            self._give_up_unrenewed()

    async def _publish_view(self) -> None:
        """The first live node publishes who serves what on bridge/cluster."""
        assert self._leases is not None
        live, owners = await self._leases.view()
        self._live = list(live) if live and live[0] == self.node else None
        if live and live[0] == self.node:
            nodes: dict[str, list[int]] = {n: [] for n in live} | owners_view(owners)
            self.links.publish_cluster({n: nodes[n] for n in live}, self.clock())

    async def _mark_serving(self) -> None:
        """Mark the partitions whose pipeline has started as served (their sessions are
        subscribed): only those are shown on bridge/cluster (docs/scale-out.md)."""
        assert self._leases is not None
        due = {k: p.token for k, p in self.held.items() if p.started.is_set() and not p.served}
        for k in await self._leases.mark_serving(due):
            part = self.held.get(k)
            if part is not None and part.token == due[k]:
                part.served = True

    async def _announce(self) -> None:
        """A partition has started: mark it and show it at once, not a round later."""
        try:
            await self._mark_serving()
            await self._publish_view()
        except Exception as exc:  # the round tries again
            log.debug("node %r: marking partitions served failed: %s", self.node, exc)

    def _give_up_unrenewed(self) -> None:
        """Cut off from the database for a whole lease: the leases have run out (their time
        counted from before the last renewal asked), so the others may hold the partitions
        now. Stop them here, so that their MQTT sessions are not taken back from the new
        owners again and again; the node rejoins when the database answers."""
        parts = [*self.held.values(), *self.leaving.values()]
        if not parts or time.monotonic() - self._renewed_at < self.lease_seconds:
            return
        log.warning(
            "node %r could not renew its leases for %.0f s: stopping its %d partition(s)",
            self.node,
            self.lease_seconds,
            len(parts),
        )
        for part in parts:
            part.abort()
            if self._keeper is not None:
                self._keeper.drop(part.number)  # not renewed when the database answers again
        self.held.clear()

    async def _reap(self) -> None:
        """Partitions whose pipeline ended on its own (lease lost, an error): released, to
        be taken again (by this node or another) in a round."""
        assert self._leases is not None
        for k, part in list(self.held.items()):
            if part.task is not None and part.task.done():
                self.held.pop(k)
                if self._keeper is not None:
                    self._keeper.drop(k)
                await self._leases.release(k, part.token)

    def _start(self, k: int, token: int) -> None:
        part = _Partition(k, token)
        part.task = asyncio.create_task(self._serve(part), name=f"partition-{k}")
        self.held[k] = part
        if self._keeper is not None:
            self._keeper.hold(k, token)
        log.info("node %r took partition %d (token %d)", self.node, k, token)

    async def _serve(self, part: _Partition) -> None:
        try:
            await self._serve_partition(part)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # one line; the node goes on
            lost = _lease_lost(exc)
            if lost is not None:
                log.warning("partition %d: %s", part.number, lost)
            else:
                log.error("partition %d stopped: %r", part.number, exc)
        finally:
            if part.bridge is not None:  # its counters stay in the node's metrics
                for k, v in counters(part.bridge.metrics_payload()).items():
                    self._retired[k] = self._retired.get(k, 0) + v

    def publish_metrics(self) -> None:
        """The node's metrics: its partitions' summed (bridge/cluster/_status.py)."""
        running = {
            k: part.bridge
            for k, part in (self.held | self.leaving).items()
            if part.bridge is not None and part.task is not None and not part.task.done()
        }
        payload = node_metrics(
            [b.metrics_payload() for b in running.values()],
            self._retired,
            node=self.node,
            partitions=running,
            uptime_s=time.monotonic() - self._began,
            now=self.clock(),
        )
        self.links.publish_metrics(payload, self._live, self.clock())

    async def _serve_partition(self, part: _Partition) -> None:
        ids = self.groups.get(part.number, [])
        s = subset(self.settings, part.number, ids)
        leases = self._leases
        assert leases is not None
        fence = Fence(part.number, self.node, part.token, self.owners)
        store = PartitionStore(leases.engine, self._store_url, fence)
        part.link = link = _mqtt_link(s)
        # a partition says nothing on the status topic and has no Will there: the node's
        # connections do (bridge/cluster/_status.py); nothing to check at its start-up
        link.options.status_topic = None
        link.on_connect = link.status_checked.set
        bridge = await bootstrap(
            s,
            store=store,
            link=link,
            topic_filters=partition_filters(s.bridge.topic_prefix, part.number, ids),
        )
        if part.number == 0 and bridge.queries is not None:  # it answers every query
            bridge.queries.characteristics = frozenset(self.owners)
        bridge.pipeline.answers_refusal = store.answers_refusal
        bridge.publishes_metrics = False  # the node publishes their sum (publish_metrics)
        part.bridge = bridge
        try:
            await bridge.start()
        except BaseException:  # its connection must not live on (and take the session back)
            await bridge.close()
            raise
        part.started.set()
        announce = asyncio.create_task(self._announce(), name=f"announce-{part.number}")
        self._background.add(announce)
        announce.add_done_callback(self._background.discard)
        await bridge.run(part.stop)

    def _hand_over(self, k: int) -> None:
        """Stop a partition cleanly (its batches finish), then release its lease at once."""
        part = self.held.pop(k)
        self.leaving[k] = part
        part.stop.set()
        task = asyncio.create_task(self._release_when_done(part), name=f"hand-over-{k}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release_when_done(self, part: _Partition) -> None:
        k = part.number
        if part.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(part.task), HANDOVER_SECONDS)
            except TimeoutError:
                part.abort()
            except Exception as exc:
                log.debug("partition %d ended with %r", k, exc)
        assert self._leases is not None
        if self._keeper is not None:
            self._keeper.drop(k)
        try:
            await self._leases.release(k, part.token)
        finally:
            self.leaving.pop(k, None)
        log.info("node %r released partition %d", self.node, k)

    async def _leave(self) -> None:
        """A clean stop: every partition handed over, the node gone, offline."""
        leases = self._leases
        assert leases is not None
        for k in list(self.held):
            self._hand_over(k)
        # the keeper renews the leases until each partition has finished and released it
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._keeper is not None:
            await self._keeper.stop()  # no heartbeat after the node has left
        with contextlib.suppress(Exception):
            await leases.leave()
            live, _ = await leases.view()
            if not [n for n in live if n != self.node]:
                self.links.publish_cluster({}, self.clock())
        await self.links.stop(self.clock())
        log.info("cluster node %r stopped", self.node)


async def _open_store(url: str, stop: asyncio.Event) -> Store | None:
    """The database, waited for as ``openspc run`` waits for it (1 s doubling to 30 s,
    docs/reliability.md); None when ``stop`` comes first."""
    delay = 1.0
    while not stop.is_set():
        try:
            return await Store.open(url)
        except StoreUnavailable as exc:
            log.warning("%s; waiting for it, next try in %.0f s", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30.0)
    return None


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` (waiting for the broker, as long as it takes) unless ``stop`` comes
    first; whether it finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()
    return True


def _lease_lost(exc: BaseException) -> LeaseLost | None:
    if isinstance(exc, LeaseLost):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _lease_lost(inner)
            if found is not None:
                return found
    return None


async def run_node(
    settings: Settings,
    stop: asyncio.Event | None = None,
    *,
    started: Callable[[], None] | None = None,
) -> None:
    """Run one cluster node until ``stop`` is set. Raises
    :class:`~bridge.errors.ClientIdInUse` when another process runs under its node name."""
    await ClusterNode(settings).run(stop or asyncio.Event(), started)
