"""Leases on partitions as rows in PostgreSQL, with a fencing token (docs/scale-out.md).

- :class:`Leases`: acquire, renew, release, and the cluster's view; every statement takes
  its time from the database's clock (``clock_timestamp()``), never a node's.
- :class:`PartitionStore`: a partition's :class:`~bridge.store.Store`. Every unit of work
  (every batch, every command) first takes the partition's lease row ``FOR KEY SHARE`` and
  checks owner, token and expiry; a bridge whose lease was taken over commits nothing
  (:class:`LeaseLost`). The lock is held until the commit, so a takeover (which locks the
  row ``FOR UPDATE SKIP LOCKED`` before it changes owner and token) leaves a partition with
  a batch under way for a later round, and a batch waits for a takeover under way, then
  sees the new token. A renewal (an UPDATE of
  ``expires_at`` only: PostgreSQL's ``FOR NO KEY UPDATE``) does not conflict with
  ``FOR KEY SHARE``, so it never waits behind the owner's own batches: with ``FOR SHARE``
  it did, met the lock timeout under full load and let the lease lapse (the
  ``openspc bench --workers`` run of docs/performance.md found it).
- :func:`cluster_engine`: one SQLAlchemy engine per process, with a bounded
  ``lock_timeout`` and ``idle_in_transaction_session_timeout``: a paused bridge's open
  transaction is ended by the server and never blocks the others for long.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bridge.errors import CommandElsewhere, CommandRejected, StoreUnavailable
from bridge.store import Store, UnitOfWork, ViolationRecord
from bridge.store._store import CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT_S
from bridge.store._tables import violations
from bridge.wire.topics import CommandTopic

__all__ = ["Fence", "LeaseLost", "Leases", "PartitionStore", "cluster_engine"]

log = logging.getLogger("openspc.cluster")

LOCK_TIMEOUT_MS = 2000
"""How long a statement waits for a row lock (a lease row, an engine state) before it fails
and is retried like any outage."""


class LeaseLost(StoreUnavailable):
    """The partition's lease is no longer this bridge's: nothing was committed. A
    :class:`~bridge.errors.StoreUnavailable`, so the pipeline acknowledges nothing and
    hands the batch back (the broker redelivers it to the partition's next owner)."""

    def __init__(self, url: str, partition: int, node: str, token: int) -> None:
        self.partition = partition
        self.node = node
        self.token = token
        super().__init__(
            url, f"lease of partition {partition} lost by node {node!r} (token {token})"
        )


def cluster_engine(url: str, lease_seconds: float, *, pool_size: int = 4) -> AsyncEngine:
    """The process's engine: PostgreSQL sessions with bounded lock and idle-in-transaction
    times (the idle bound is the lease: a paused bridge's transaction ends by the time its
    lease runs out). ``pool_size=1``: one connection (the lease keeper's)."""
    idle_ms = max(1000, int(lease_seconds * 1000))
    return create_async_engine(
        make_url(url),
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=16 if pool_size > 1 else 0,
        connect_args={
            "timeout": CONNECT_TIMEOUT_S,
            "command_timeout": STATEMENT_TIMEOUT_S,
            "server_settings": {
                "lock_timeout": str(LOCK_TIMEOUT_MS),
                "idle_in_transaction_session_timeout": str(idle_ms),
                "application_name": "openspc-cluster",
            },
        },
    )


@dataclass(frozen=True)
class Fence:
    """What a partition's transactions check: this node still holds this token; and which
    partition owns each characteristic of the cluster (for acknowledgements)."""

    partition: int
    node: str
    token: int
    owners: Mapping[int, int]

    def owner(self, characteristic_id: int | None) -> int:
        """The partition of a characteristic; partition 0 for one the cluster lacks."""
        return 0 if characteristic_id is None else self.owners.get(characteristic_id, 0)


_CHECK = text(
    "SELECT 1 FROM cluster_leases WHERE partition_id = :k AND owner = :n AND token = :t"
    " AND expires_at > clock_timestamp() FOR KEY SHARE"
)


class FencedUnitOfWork(UnitOfWork):
    def __init__(self, store: PartitionStore) -> None:
        super().__init__(store.engine)
        self._store = store
        self._url = store.url
        self._fence = store.fence

    async def __aenter__(self) -> FencedUnitOfWork:
        await super().__aenter__()
        f = self._fence
        try:
            conn = await self.connection()
            held = await conn.scalar(_CHECK, {"k": f.partition, "n": f.node, "t": f.token})
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        if held is None:
            await self.__aexit__(None, None, None)
            raise LeaseLost(self._url, f.partition, f.node, f.token)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None or not issubclass(exc_type, CommandRejected):
            self._store.claimed = False  # only a refusal of a command taken on is answered
        await super().__aexit__(exc_type, exc, tb)

    async def violations_for_ack(
        self, violation_ids: Sequence[int] | None, characteristic_id: int | None = None
    ) -> list[ViolationRecord]:
        """An acknowledgement is carried out by the partition of its violations'
        characteristic; one naming only violations that do not exist, or an unknown
        characteristic, by partition 0. Every partition receives every acknowledgement; the
        others raise :class:`~bridge.errors.CommandElsewhere` (acked, not answered). One
        naming violations of several partitions is refused, by the lowest of them: nothing
        is acknowledged (docs/scale-out.md)."""
        f = self._fence
        if violation_ids is None:
            owners = {f.owner(characteristic_id)}
        else:
            named = violations.c.id.in_(list(violation_ids))
            conn = await self.connection()
            found = await conn.scalars(select(violations.c.characteristic_id).where(named))
            owners = {f.owner(int(cid)) for cid in found.all()} or {0}
        if min(owners) != f.partition:
            raise CommandElsewhere("acknowledgement", f.partition)
        self._store.claimed = True
        if len(owners) > 1:
            raise CommandRejected(
                "the violations named belong to characteristics of different cluster"
                f" partitions ({', '.join(map(str, sorted(owners)))}): acknowledge each"
                " characteristic's in a command of its own; nothing acknowledged"
            )
        return await super().violations_for_ack(violation_ids, characteristic_id)


class PartitionStore(Store):
    """A partition's view of the process's shared engine; closing it leaves the engine."""

    def __init__(self, engine: AsyncEngine, url: str, fence: Fence) -> None:
        super().__init__(engine, url)
        self.fence = fence
        self.claimed = False  # the last acknowledgement refused was taken on here

    def unit_of_work(self) -> UnitOfWork:
        return FencedUnitOfWork(self)

    def answers_refusal(self, topic: CommandTopic) -> bool:
        """Whether a refused command is this partition's to answer (the pipeline's
        ``answers_refusal``): a recalculation is (only its own topics are subscribed); an
        acknowledgement when this partition took it on (its unit of work found the
        violations its own), else partition 0's: refused before any partition was asked (a
        bad payload or reply topic, an unknown cause), it is answered once (docs/scale-out.md)."""
        claimed, self.claimed = self.claimed, False
        return topic.kind != "ack" or claimed or self.fence.partition == 0

    async def close(self) -> None:
        return None  # the node disposes of the shared engine


_ENSURE = text(
    "INSERT INTO cluster_leases (partition_id, owner, token, expires_at)"
    " SELECT g, NULL, 0, NULL FROM generate_series(0, :last) AS g"
    " ON CONFLICT (partition_id) DO NOTHING"
)
_HEARTBEAT = text(
    "INSERT INTO cluster_nodes (node, started_at, expires_at)"
    " VALUES (:n, clock_timestamp(), clock_timestamp() + make_interval(secs => :s))"
    " ON CONFLICT (node) DO UPDATE SET expires_at = EXCLUDED.expires_at"
)
_LIVE = text("SELECT node FROM cluster_nodes WHERE expires_at > clock_timestamp() ORDER BY node")
_FORGET = text("DELETE FROM cluster_nodes WHERE expires_at < clock_timestamp() - interval '1 hour'")
_RENEW_ALL = text(
    # one statement for every lease held; a renewal changes expires_at only, so it never
    # waits behind the partitions' batches (their FOR KEY SHARE, above)
    "UPDATE cluster_leases AS l"
    " SET expires_at = clock_timestamp() + make_interval(secs => :s)"
    " FROM unnest(CAST(:ks AS integer[]), CAST(:ts AS bigint[])) AS h(k, t)"
    " WHERE l.partition_id = h.k AND l.token = h.t AND l.owner = :n"
    " RETURNING l.partition_id, l.token"
)
_ACQUIRE = text(
    # one statement for every partition taken (each round trip of a busy node's loop waits
    # a turn of it). A row that a batch under way holds FOR KEY SHARE is skipped, not
    # waited for: it is taken on a later round, once that batch has committed or failed
    "WITH free AS (SELECT partition_id FROM cluster_leases"
    " WHERE (owner IS NULL OR owner = :n OR expires_at IS NULL"
    " OR expires_at <= clock_timestamp())"
    " AND NOT (partition_id = ANY(CAST(:skip AS integer[])))"
    " ORDER BY partition_id LIMIT :want FOR UPDATE SKIP LOCKED)"
    " UPDATE cluster_leases AS l SET owner = :n, token = l.token + 1, serving = false,"
    " expires_at = clock_timestamp() + make_interval(secs => :s)"
    " FROM free WHERE l.partition_id = free.partition_id"
    " RETURNING l.partition_id, l.token"
)
_RELEASE = text(
    "UPDATE cluster_leases SET owner = NULL, expires_at = NULL, serving = false"
    " WHERE partition_id = :k AND owner = :n AND token = :t"
)
_SERVING = text(
    # the partitions whose pipeline has started: subscribed, so readings sent to them now
    # wait in their session even on its very first start (docs/scale-out.md)
    "UPDATE cluster_leases AS l SET serving = true"
    " FROM unnest(CAST(:ks AS integer[]), CAST(:ts AS bigint[])) AS h(k, t)"
    " WHERE l.partition_id = h.k AND l.token = h.t AND l.owner = :n"
    " AND l.expires_at > clock_timestamp()"
    " RETURNING l.partition_id"
)
_LEAVE = text("DELETE FROM cluster_nodes WHERE node = :n")
_VIEW = text(
    "SELECT partition_id, owner FROM cluster_leases"
    " WHERE owner IS NOT NULL AND serving AND expires_at > clock_timestamp()"
    " ORDER BY partition_id"
)


async def heartbeat(conn: AsyncConnection, node: str, seconds: float) -> list[str]:
    """Say ``node`` is alive (until now + ``seconds``), forget nodes long gone; the live
    nodes, by name. In the caller's transaction."""
    await conn.execute(_HEARTBEAT, {"n": node, "s": seconds})
    await conn.execute(_FORGET)
    return [str(n) for n in (await conn.scalars(_LIVE)).all()]


async def renew_all(
    conn: AsyncConnection, node: str, seconds: float, held: Mapping[int, int]
) -> set[tuple[int, int]]:
    """Renew every lease ``node`` holds (partition -> token) in one statement; the
    (partition, token) pairs still its own. In the caller's transaction."""
    rows = (
        await conn.execute(
            _RENEW_ALL, {"n": node, "s": seconds, "ks": list(held), "ts": list(held.values())}
        )
    ).all()
    return {(int(r[0]), int(r[1])) for r in rows}


class Leases:
    """The lease table, for one node. Each call is its own short transaction."""

    def __init__(self, engine: AsyncEngine, node: str, partitions: int, seconds: float) -> None:
        self.engine = engine
        self.node = node
        self.partitions = partitions
        self.seconds = float(seconds)

    async def prepare(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(_ENSURE, {"last": self.partitions - 1})

    async def renew(self, held: dict[int, int]) -> set[int]:
        """Renew the leases held (partition -> token); returns those still ours. (A running
        node renews from its keeper's thread: bridge/cluster/_keeper.py.)"""
        async with self.engine.begin() as conn:
            kept = await renew_all(conn, self.node, self.seconds, held)
        return {k for k, _ in kept}

    async def acquire(self, want: int, skip: Collection[int]) -> dict[int, int]:
        """Take up to ``want`` free (or expired) partitions, lowest first, none of ``skip``
        and none with a batch under way; partition -> new token."""
        if want <= 0:
            return {}
        params = {"n": self.node, "s": self.seconds, "want": want, "skip": sorted(skip)}
        async with self.engine.begin() as conn:
            rows: Any = (await conn.execute(_ACQUIRE, params)).all()
        return {int(r.partition_id): int(r.token) for r in rows}

    async def release(self, k: int, token: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(_RELEASE, {"k": k, "n": self.node, "t": token})

    async def mark_serving(self, held: Mapping[int, int]) -> set[int]:
        """Say the partitions held (partition -> token) are served: their pipelines have
        started. Returns those marked (a lease lost meanwhile is not)."""
        if not held:
            return set()
        params = {"n": self.node, "ks": list(held), "ts": list(held.values())}
        async with self.engine.begin() as conn:
            rows: Any = (await conn.execute(_SERVING, params)).all()
        return {int(r.partition_id) for r in rows}

    async def leave(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(_LEAVE, {"n": self.node})

    async def view(self) -> tuple[list[str], dict[int, str]]:
        """Live nodes, and partition -> owner of every lease in force whose partition is
        served (its pipeline started)."""
        async with self.engine.begin() as conn:
            live = [str(n) for n in (await conn.scalars(_LIVE)).all()]
            rows: Any = (await conn.execute(_VIEW)).all()
        return live, {int(r.partition_id): str(r.owner) for r in rows}
