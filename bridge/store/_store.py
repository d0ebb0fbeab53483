"""The store: one async SQLAlchemy engine, a unit of work per batch, and the queries.

Writes go through :class:`UnitOfWork` (rolls back unless told to commit) with Core bulk
inserts (``executemany``): one transaction per pipeline batch, never one per message.
Sample and violation ids come from :class:`IdAllocator` in blocks, so several bridges on one
PostgreSQL never collide and no row needs a flush to learn its id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import orjson
from sqlalchemy import bindparam, event, func, insert, select, update
from sqlalchemy.engine import Row, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncTransaction,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from bridge.errors import StoreUnavailable
from bridge.store._schema import at_head, describe
from bridge.store._tables import (
    characteristics,
    control_limits,
    dead_letters,
    id_counters,
    metadata,
    readings,
    samples,
    violations,
)
from bridge.store._writer import (
    BatchWriter,
    PostgresWriter,
    SqliteWriter,
    batch_statements,
    due_values,
    sqlite_pragmas,
)
from engine.alarms import OverdueState

__all__ = [
    "DEAD_LETTER_PAYLOAD_BYTES",
    "BatchWrite",
    "DeadLetter",
    "IdAllocator",
    "SampleRow",
    "Store",
    "UnitOfWork",
    "ViolationRecord",
    "decode_rules",
    "decode_values",
    "encode_rules",
    "encode_values",
]

log = logging.getLogger("openspc.store")

COUNTERS = ("sample", "violation")
DEAD_LETTER_PAYLOAD_BYTES = 1 << 20
"""A dead letter keeps at most this much of its payload (and its full size)."""
CONNECT_TIMEOUT_S = 10.0
STATEMENT_TIMEOUT_S = 30.0


def encode_values(values: Sequence[float]) -> str:
    """``(10.01, 10.02)`` -> ``"10.01,10.02"`` (``repr`` round-trips every finite float)."""
    return ",".join([repr(float(v)) for v in values])


def decode_values(text: str) -> list[float]:
    return [float(v) for v in text.split(",")] if text else []


def encode_rules(rules: Sequence[int]) -> str:
    """``(1, 5)`` -> ``"1,5"``; ``()`` -> ``""``."""
    return ",".join([str(r) for r in sorted(rules)]) if rules else ""


def decode_rules(text: str) -> list[int]:
    return [int(r) for r in text.split(",")] if text else []


def _aware(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC)


@dataclass
class BatchWrite:
    """Everything one pipeline batch writes, as rows ready for ``executemany``."""

    readings: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    limits: list[dict[str, Any]] = field(default_factory=list)
    states: dict[int, dict[str, Any]] = field(default_factory=dict)
    # due clocks to keep across a restart (bridge/_alarms.py); None: forget a stored one
    due_states: dict[int, OverdueState | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.readings
            or self.samples
            or self.violations
            or self.limits
            or self.states
            or self.due_states
        )

    def mark(self) -> tuple[int, int, int, int]:
        """Where the rows added next begin (for :meth:`between`)."""
        return (len(self.readings), len(self.samples), len(self.violations), len(self.limits))

    def between(self, lo: tuple[int, int, int, int], hi: tuple[int, int, int, int]) -> BatchWrite:
        """The rows added between two marks (no engine states): a part of the batch."""
        return BatchWrite(
            readings=self.readings[lo[0] : hi[0]],
            samples=self.samples[lo[1] : hi[1]],
            violations=self.violations[lo[2] : hi[2]],
            limits=self.limits[lo[3] : hi[3]],
        )


def _safe_text(text: str, limit: int) -> str:
    """Text any database stores: no lone surrogates, no NUL, at most ``limit`` characters."""
    clean = text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\ufffd")
    return clean[:limit]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message whose rows could not be written, and why."""

    topic: str
    payload: bytes
    reason: str

    def row(self, now: datetime) -> dict[str, Any]:
        return {
            "ts": _utc(now),
            "topic": _safe_text(self.topic, 500),
            "payload": bytes(self.payload[:DEAD_LETTER_PAYLOAD_BYTES]),
            "payload_size": len(self.payload),
            "reason": _safe_text(self.reason, 2000),
        }


@dataclass(frozen=True, slots=True)
class ViolationRecord:
    id: int
    sample_id: int | None
    characteristic_id: int
    rule_id: int | None
    rule_name: str
    severity: str
    chart: str | None
    ts: datetime
    acknowledged: bool
    kind: str = "rule"

    @classmethod
    def from_row(cls, row: Row[Any]) -> ViolationRecord:
        return cls(
            id=row.id,
            sample_id=row.sample_id,
            characteristic_id=row.characteristic_id,
            rule_id=row.rule_id,
            rule_name=row.rule_name,
            severity=row.severity,
            chart=row.chart,
            ts=_aware(row.ts),
            acknowledged=bool(row.acknowledged),
            kind=row.kind,
        )


@dataclass(slots=True)
class SampleRow:
    """A stored sample as the store returns it: its columns, decoded (``values``, the rules)
    and with an aware ``ts``. bridge/wire/payloads.py turns it into a ``sample`` payload."""

    id: int
    characteristic_id: int
    ts: datetime
    value: float
    values: list[float]
    range: float | None
    zone: str | None
    in_control: bool | None
    failed_rules: list[int]
    range_failed_rules: list[int]
    chart: str | None  # None: a Shewhart variables chart (stored before charts were named)
    statistic: float | None
    ucl: float | None
    lcl: float | None
    cusum_upper: float | None
    cusum_lower: float | None
    size: float | None
    context: dict[str, str]  # {} when none was given (NULL before revision 0007)
    excluded: bool
    limits_version: int | None  # NULL before limits existed, or stored before revision 0006
    out_of_spec: bool | None  # NULL without spec limits (revision 0005)
    due_at: datetime | None  # NULL without a sample_interval, or while the line was stopped

    @classmethod
    def from_row(cls, row: Row[Any]) -> SampleRow:
        m = row._mapping  # noqa: SLF001  SQLAlchemy's public accessor, underscored to stay clear of the columns
        return cls(
            m["id"],
            m["characteristic_id"],
            _aware(m["ts"]),
            m["value"],
            decode_values(m["values"]),
            m["range"],
            m["zone"],
            m["in_control"],
            decode_rules(m["failed_rules"]),
            decode_rules(m["range_failed_rules"]),
            m["chart"],
            m["statistic"],
            m["ucl"],
            m["lcl"],
            m["cusum_upper"],
            m["cusum_lower"],
            m["size"],
            dict(m["context"] or {}),
            bool(m["excluded"]),
            m["limits_version"],
            m["out_of_spec"],
            None if m["due_at"] is None else _aware(m["due_at"]),
        )


class UnitOfWork:
    """One transaction: ``async with store.unit_of_work() as uow: ...; await uow.commit()``.

    With a batch writer (bridge/store/_writer.py) a unit of work that only writes batches
    (the pipeline's) opens no connection: :meth:`commit` hands the batch to the writer, one
    hop. Any other statement opens a connection of the pool and takes the staged batches
    with it, so the order of the writes and the all-or-nothing of the commit stay the same.
    """

    def __init__(self, engine: AsyncEngine, writer: BatchWriter | None = None) -> None:
        self._engine = engine
        self._writer = writer
        self._staged: list[tuple[BatchWrite, datetime]] = []
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None

    async def __aenter__(self) -> UnitOfWork:
        if self._writer is None:
            await self._open()
        return self

    async def _open(self) -> AsyncConnection:
        if self._conn is None:
            self._conn = await self._engine.connect()
            try:
                self._tx = await self._conn.begin()
            except BaseException:
                await self._conn.close()
                self._conn = None
                raise
            staged, self._staged = self._staged, []
            for batch, now in staged:
                await self._write_sql(batch, now)
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._staged = []  # never committed: rolled back, as nothing was written
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
        finally:
            if self._conn is not None:
                await self._conn.close()

    async def connection(self) -> AsyncConnection:
        """The unit of work's connection, opened on first use."""
        return await self._open()

    async def commit(self) -> None:
        if self._conn is None:
            staged, self._staged = self._staged, []
            if self._writer is not None and staged:
                if len(staged) == 1:
                    await self._writer.write(*staged[0])
                else:  # several batches in one unit of work: one transaction still
                    self._staged = staged
                    await self._open()
            if self._conn is None:
                return
        assert self._tx is not None
        await self._tx.commit()

    async def write_batch(self, batch: BatchWrite, now: datetime) -> None:
        if self._conn is None and self._writer is not None:
            self._staged.append((batch, now))
            return
        await self._open()
        await self._write_sql(batch, now)

    async def _write_sql(self, batch: BatchWrite, now: datetime) -> None:
        """The batch through SQLAlchemy, on this unit of work's connection."""
        conn = await self._open()
        if conn.dialect.name == "sqlite":
            await self._write_batch_sqlite(conn, batch, now)
            return
        if batch.readings:
            await conn.execute(insert(readings), batch.readings)
        if batch.samples:
            await conn.execute(insert(samples), batch.samples)
        if batch.violations:
            await conn.execute(insert(violations), batch.violations)
        if batch.limits:
            await conn.execute(insert(control_limits), batch.limits)
        if batch.states:
            await self.save_states(batch.states, now)
        if batch.due_states:
            await self.save_due_states(batch.due_states)

    async def _write_batch_sqlite(
        self, conn: AsyncConnection, batch: BatchWrite, now: datetime
    ) -> None:
        """The same statements as the batch writer's (bridge/store/_writer.py), handed to
        the driver as tuples on this connection (SQLAlchemy's per-row parameter processing
        cost more than SQLite's insert itself: docs/performance.md)."""
        for sql, params in batch_statements(batch, now, conn.dialect):
            await conn.exec_driver_sql(sql, params)

    async def save_due_states(self, states: Mapping[int, OverdueState | None]) -> None:
        """Keep each characteristic's due clock (None: forget it; bridge/_alarms.py)."""
        stmt = (
            update(characteristics)
            .where(characteristics.c.id == bindparam("b_id"))
            .values(
                due_since=bindparam("b_since"),
                due_raised=bindparam("b_raised"),
                due_running=bindparam("b_running"),
            )
        )
        rows = []
        for cid, state in states.items():
            since, raised, running = due_values(state)
            rows.append({"b_id": cid, "b_since": since, "b_raised": raised, "b_running": running})
        conn = await self._open()
        await conn.execute(stmt, rows)

    async def add_dead_letters(self, letters: Sequence[DeadLetter], now: datetime) -> None:
        conn = await self._open()
        await conn.execute(insert(dead_letters), [letter.row(now) for letter in letters])

    async def save_states(self, states: Mapping[int, dict[str, Any]], now: datetime) -> None:
        stmt = (
            update(characteristics)
            .where(characteristics.c.id == bindparam("b_id"))
            .values(engine_state=bindparam("b_state"), updated_at=bindparam("b_at"))
        )
        conn = await self._open()
        await conn.execute(
            stmt,
            [{"b_id": cid, "b_state": state, "b_at": _utc(now)} for cid, state in states.items()],
        )

    async def add_limits(
        self,
        characteristic_id: int,
        ts: datetime,
        payload: dict[str, Any],
        version: int | None = None,
    ) -> None:
        conn = await self._open()
        await conn.execute(
            insert(control_limits),
            [
                {
                    "characteristic_id": characteristic_id,
                    "ts": _utc(ts),
                    "payload": payload,
                    "version": version,
                }
            ],
        )

    async def violations_for_ack(
        self, violation_ids: Sequence[int] | None, characteristic_id: int | None = None
    ) -> list[ViolationRecord]:
        """The violations an acknowledgement names, locked until the end of the unit of work
        (``SELECT ... FOR UPDATE``): those of ``violation_ids``, or with ``violation_ids``
        None the open ones of ``characteristic_id`` (bridge/_ack_workflow.py)."""
        stmt = select(violations)
        if violation_ids is not None:
            stmt = stmt.where(violations.c.id.in_(list(violation_ids)))
        else:
            stmt = stmt.where(violations.c.characteristic_id == characteristic_id).where(
                violations.c.acknowledged.is_(False)
            )
        conn = await self._open()
        rows = await conn.execute(stmt.order_by(violations.c.id).with_for_update())
        return [ViolationRecord.from_row(row) for row in rows]

    async def acknowledge_many(
        self,
        violation_ids: Sequence[int],
        user: str,
        cause: str,
        action: str | None,
        comment: str | None,
        at: datetime,
        *,
        exclude_sample_ids: Sequence[int] = (),
    ) -> int:
        """Acknowledge the open violations among ``violation_ids`` (one statement); how many."""
        conn = await self._open()
        result = await conn.execute(
            update(violations)
            .where(violations.c.id.in_(list(violation_ids)))
            .where(violations.c.acknowledged.is_(False))
            .values(
                acknowledged=True,
                ack_user=user,
                ack_reason=cause,
                ack_action=action,
                ack_comment=comment,
                ack_at=_utc(at),
            )
        )
        if exclude_sample_ids:
            await conn.execute(
                update(samples)
                .where(samples.c.id.in_(list(exclude_sample_ids)))
                .values(excluded=True)
            )
        return int(result.rowcount or 0)

    async def cause_counts(
        self, characteristic_ids: Sequence[int], since: datetime
    ) -> dict[int, list[tuple[str, int]]]:
        """Acknowledged violations by cause since ``since`` (inclusive), per characteristic."""
        conn = await self._open()
        return await _cause_counts(conn, characteristic_ids, since)


async def _cause_counts(
    conn: AsyncConnection, characteristic_ids: Sequence[int] | None, since: datetime
) -> dict[int, list[tuple[str, int]]]:
    stmt = (
        select(violations.c.characteristic_id, violations.c.ack_reason, func.count())
        .where(violations.c.acknowledged.is_(True))
        .where(violations.c.ack_at >= _utc(since))
        .where(violations.c.ack_reason.is_not(None))
        .group_by(violations.c.characteristic_id, violations.c.ack_reason)
    )
    if characteristic_ids is not None:
        stmt = stmt.where(violations.c.characteristic_id.in_(list(characteristic_ids)))
    found: dict[int, list[tuple[str, int]]] = {}
    for cid, cause, count in await conn.execute(stmt):
        found.setdefault(cid, []).append((cause, int(count)))
    return found


class _Allocates(Protocol):
    async def allocate(self, name: str, count: int) -> int: ...


class IdAllocator:
    """Hands out sample and violation ids from blocks reserved in the counter table.

    The next block is reserved ahead, in the background, once half of the current one is
    taken: a batch then waits for a reservation only when it needs more ids than are left
    (the first batch, a burst larger than the block, an outage). A block used up within
    :data:`GROW_SECONDS` of the last is followed by one twice as large (up to
    :data:`BLOCK_MAX`), so a steady stream reserves about once every few seconds. Ids stay
    unique, not contiguous: a restart abandons what is left of a block and of its spare
    (docs/performance.md, "2,000 at 1 Hz").
    """

    GROW_SECONDS = 5.0
    BLOCK_MAX = 64_000

    def __init__(self, store: _Allocates, block: int = 1000, *, ahead: bool = True) -> None:
        self._store = store
        self._block = block
        self._ahead = ahead
        self._next: dict[str, int] = {}
        self._end: dict[str, int] = {}
        self._size: dict[str, int] = {}  # the next block's size, per counter
        self._adopted: dict[str, float] = {}  # when the current block was taken up
        self._spare: dict[str, asyncio.Task[tuple[int, int]]] = {}

    def available(self, name: str) -> int:
        return self._end.get(name, 0) - self._next.get(name, 0)

    async def reserve(self, name: str, count: int) -> None:
        """Make sure ``count`` ids of ``name`` can be taken without touching the database."""
        if self.available(name) < count:
            block = await self._spare_block(name, count)
            if block is None:
                size = max(self._next_size(name), count)
                block = (await self._store.allocate(name, size), size)
            # the rest of the old block is abandoned: ids are unique, not contiguous
            self._next[name] = block[0]
            self._end[name] = block[0] + block[1]
            self._adopted[name] = time.monotonic()
        self._reserve_ahead(name, count)

    def take(self, name: str) -> int:
        value = self._next[name]
        if value >= self._end[name]:
            raise RuntimeError(f"no {name} id reserved")
        self._next[name] = value + 1
        return value

    async def _spare_block(self, name: str, count: int) -> tuple[int, int] | None:
        """The block reserved ahead, if there is one with room for ``count`` (a failed
        reservation is made again by the caller, which waits out an outage)."""
        spare = self._spare.pop(name, None)
        if spare is None:
            return None
        try:
            start, size = await spare
        except Exception:  # reserved again by the caller, which waits out an outage
            return None
        return (start, size) if size >= count else None

    def _next_size(self, name: str) -> int:
        size = self._size.get(name, self._block)
        adopted = self._adopted.get(name)
        if adopted is not None and time.monotonic() - adopted < self.GROW_SECONDS:
            size = min(max(size * 2, self._block), self.BLOCK_MAX)
        self._size[name] = size
        return size

    def _reserve_ahead(self, name: str, count: int) -> None:
        """Start reserving the next block once this batch's ``count`` leaves half or less."""
        if not self._ahead or name in self._spare:
            return
        if self.available(name) - count > self._size.get(name, self._block) // 2:
            return
        size = self._next_size(name)

        async def allocate() -> tuple[int, int]:
            return await self._store.allocate(name, size), size

        task = asyncio.get_running_loop().create_task(allocate(), name=f"reserve-{name}-ids")
        task.add_done_callback(_retrieved)
        self._spare[name] = task


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A reservation ahead that failed, or was never used before the loop ended, is made
    again when needed: its exception is consumed here, not reported as unretrieved."""
    if not task.cancelled():
        task.exception()


class Store:
    """The database: create with :meth:`open`, close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, url: str, writer: BatchWriter | None = None) -> None:
        self.engine = engine
        self.url = url
        self.writer = writer
        """Where the pipeline's batches go, one hop each (bridge/store/_writer.py); None:
        through SQLAlchemy's pool (an in-memory SQLite, or a URL with options of its own)."""
        self.closed = False

    @classmethod
    async def open(cls, url: str) -> Store:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            # said before aiosqlite starts a worker thread that may outlive the event loop
            folder = Path(parsed.database).parent
            if not folder.is_dir():
                raise StoreUnavailable(
                    parsed.render_as_string(hide_password=True),
                    f"unable to open database file: folder {folder} does not exist",
                )
        connect_args: dict[str, Any] = {}
        if parsed.get_driver_name() == "asyncpg":
            # a database that hangs rather than refuses must not hold the pipeline forever:
            # a statement (a batch is milliseconds) or a connect that takes this long fails
            # and the batch is retried like any other outage
            connect_args = {"timeout": CONNECT_TIMEOUT_S, "command_timeout": STATEMENT_TIMEOUT_S}
        engine = create_async_engine(
            url, pool_pre_ping=True, connect_args=connect_args, json_serializer=json_text
        )
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        shown = engine.url.render_as_string(hide_password=True)
        store = cls(engine, shown)
        try:
            await store.create_schema()
        except (OSError, DBAPIError) as exc:
            await engine.dispose()
            raise StoreUnavailable(
                shown, str(exc).splitlines()[0] if str(exc) else repr(exc)
            ) from exc
        except BaseException:
            await engine.dispose()
            raise
        store.writer = _writer_for(engine)
        return store

    async def close(self) -> None:
        self.closed = True  # an id block reserved ahead must not open the pool again
        writer, self.writer = self.writer, None
        try:
            if writer is not None:
                await writer.close()
        finally:
            await self.engine.dispose()

    async def create_schema(self) -> None:
        """Bring the schema to this release's (bridge/store/_migrate.py), then make sure the
        id counters exist. Raises :class:`SchemaTooNew` for a database of a newer release,
        :class:`SchemaUpgradeFailed` when a revision fails (all of it rolled back)."""
        async with self.engine.connect() as conn:
            current = await conn.run_sync(at_head)
        if not current:
            await self._upgrade_schema()
        await self._create_counters()

    async def _upgrade_schema(self) -> None:
        """Alembic's part of :meth:`create_schema`, imported only when the schema must change
        (or be checked by Alembic): a database at head starts without it (about 11 MB)."""
        from bridge.store._migrate import upgrade_to_head

        migrator = self.engine
        if self.engine.dialect.driver == "asyncpg":
            # an upgrade (or the wait for another bridge's, under the advisory lock) may take
            # longer than a batch's statement timeout: a connection of its own, without one
            migrator = create_async_engine(
                self.engine.url, poolclass=NullPool, connect_args={"timeout": CONNECT_TIMEOUT_S}
            )
        try:
            async with migrator.connect() as conn:
                found, head = await conn.run_sync(upgrade_to_head, self.url)
                await conn.commit()
        finally:
            if migrator is not self.engine:
                await migrator.dispose()
        if found != head:
            log.info("database schema: %s -> revision %s", describe(found), head)

    async def _create_counters(self) -> None:
        for name in COUNTERS:
            try:
                async with self.engine.begin() as conn:
                    exists = await conn.scalar(
                        select(func.count())
                        .select_from(id_counters)
                        .where(id_counters.c.name == name)
                    )
                    if not exists:
                        await conn.execute(insert(id_counters).values(name=name, next_id=1))
            except IntegrityError:
                pass  # another bridge created it at the same moment

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.engine, self.writer)

    async def allocate(self, name: str, count: int) -> int:
        """Reserve ``count`` ids in their own transaction; returns the first. With a batch
        writer, on its connection (bridge/store/_writer.py): between its batches, not
        against them for SQLite's write lock. Refused once closed (a reservation ahead,
        :class:`IdAllocator`, may start as the bridge stops)."""
        if self.closed:
            raise StoreUnavailable(self.url, "closed")
        if self.writer is not None:
            return await self.writer.allocate(name, count)
        stmt = (
            update(id_counters)
            .where(id_counters.c.name == name)
            .values(next_id=id_counters.c.next_id + count)
            .returning(id_counters.c.next_id)
        )
        async with self.engine.begin() as conn:
            end = (await conn.execute(stmt)).scalar_one()
        return int(end) - count

    async def register_characteristics(self, names: Mapping[int, str], now: datetime) -> None:
        """Add the configured characteristics the database does not know; rename the rest."""
        async with self.engine.begin() as conn:
            rows = await conn.execute(select(characteristics.c.id, characteristics.c.name))
            known = {row.id: row.name for row in rows}
            new = [
                {"id": cid, "name": name, "engine_state": None, "updated_at": _utc(now)}
                for cid, name in names.items()
                if cid not in known
            ]
            if new:
                await conn.execute(insert(characteristics), new)
            renamed = [
                {"b_id": cid, "b_name": name}
                for cid, name in names.items()
                if cid in known and known[cid] != name
            ]
            if renamed:
                await conn.execute(
                    update(characteristics)
                    .where(characteristics.c.id == bindparam("b_id"))
                    .values(name=bindparam("b_name")),
                    renamed,
                )

    async def engine_states(self) -> dict[int, dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(characteristics.c.id, characteristics.c.engine_state))
            return {row.id: row.engine_state for row in rows if row.engine_state is not None}

    async def due_states(self) -> dict[int, OverdueState]:
        """The stored due clocks (characteristics that had a sample_interval)."""
        c = characteristics.c
        stmt = select(c.id, c.due_since, c.due_raised, c.due_running).where(
            c.due_running.is_not(None)
        )
        async with self.engine.connect() as conn:
            return {
                row.id: OverdueState(
                    row.id,
                    None if row.due_since is None else _aware(row.due_since),
                    bool(row.due_raised),
                    bool(row.due_running),
                )
                for row in await conn.execute(stmt)
            }

    async def recent_samples_of_all(self, count: int) -> dict[int, list[SampleRow]]:
        """The last ``count`` samples of every characteristic, oldest first, in one query."""
        ranked = select(
            samples,
            func.row_number()
            .over(partition_by=samples.c.characteristic_id, order_by=samples.c.id.desc())
            .label("rank"),
        ).subquery()
        stmt = (
            select(*[ranked.c[c.name] for c in samples.c])
            .where(ranked.c.rank <= count)
            .order_by(ranked.c.characteristic_id, ranked.c.id)
        )
        found: dict[int, list[SampleRow]] = {}
        async with self.engine.connect() as conn:
            for row in await conn.execute(stmt):
                found.setdefault(row.characteristic_id, []).append(SampleRow.from_row(row))
        return found

    async def sample_page(
        self,
        characteristic_id: int,
        limit: int,
        *,
        before_id: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[list[SampleRow], bool]:
        """A page of stored samples for the query command (docs/topics.md, "Query"): the
        newest ``limit`` with an id below ``before_id`` and a time in ``[start, end)``,
        oldest first; and whether older ones match.
        One indexed read walking ``(characteristic_id, id)`` backwards."""
        stmt = select(samples).where(samples.c.characteristic_id == characteristic_id)
        if before_id is not None:
            stmt = stmt.where(samples.c.id < before_id)
        if start is not None:
            stmt = stmt.where(samples.c.ts >= _utc(start))
        if end is not None:
            stmt = stmt.where(samples.c.ts < _utc(end))
        stmt = stmt.order_by(samples.c.id.desc()).limit(limit + 1)
        async with self.engine.connect() as conn:
            rows = list(await conn.execute(stmt))
        more = len(rows) > limit
        rows = rows[:limit]
        rows.reverse()
        return [SampleRow.from_row(row) for row in rows], more

    async def latest_limits_of_all(self) -> dict[int, dict[str, Any]]:
        """Every characteristic's last stored ``control_limits`` payload, in one query."""
        last = (
            select(func.max(control_limits.c.id))
            .group_by(control_limits.c.characteristic_id)
            .scalar_subquery()
        )
        stmt = select(
            control_limits.c.characteristic_id, control_limits.c.payload, control_limits.c.version
        ).where(control_limits.c.id.in_(last))
        async with self.engine.connect() as conn:
            return {
                row.characteristic_id: _with_version(row.payload, row.version)
                for row in await conn.execute(stmt)
            }

    async def limits_versions(self) -> dict[int, int]:
        """Every characteristic's highest limits version (docs/topics.md, "control_limits")."""
        stmt = select(control_limits.c.characteristic_id, func.max(control_limits.c.version))
        stmt = stmt.group_by(control_limits.c.characteristic_id)
        async with self.engine.connect() as conn:
            return {
                cid: int(version)
                for cid, version in await conn.execute(stmt)
                if version is not None
            }

    async def cause_counts_of_all(self, since: datetime) -> dict[int, list[tuple[str, int]]]:
        """Acknowledged violations by cause since ``since``, for every characteristic."""
        async with self.engine.connect() as conn:
            return await _cause_counts(conn, None, since)

    async def open_violations(self) -> list[ViolationRecord]:
        stmt = (
            select(violations).where(violations.c.acknowledged.is_(False)).order_by(violations.c.id)
        )
        async with self.engine.connect() as conn:
            return [ViolationRecord.from_row(row) for row in await conn.execute(stmt)]

    async def latest_limits(self, characteristic_id: int) -> dict[str, Any] | None:
        stmt = (
            select(control_limits.c.payload, control_limits.c.version)
            .where(control_limits.c.characteristic_id == characteristic_id)
            .order_by(control_limits.c.id.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _with_version(row.payload, row.version)

    async def subgroups(
        self, characteristic_id: int, last: int | None, between: tuple[int, int] | None = None
    ) -> list[tuple[float, ...]]:
        """The values of the last ``last`` non-excluded samples, oldest first; for an
        attribute chart's sample ``(count, inspected or units)`` (``(count,)`` for c), as
        ``CharacteristicEngine.recalculate`` takes them. With ``between`` = ``(first,
        last_id)``: the non-excluded samples with ids in that range, inclusive."""
        stmt = (
            select(samples.c["values"], samples.c.size)
            .where(samples.c.characteristic_id == characteristic_id)
            .where(samples.c.excluded.is_(False))
            .order_by(samples.c.id.desc())
        )
        if between is not None:
            stmt = stmt.where(samples.c.id.between(*between))
        if last is not None:
            stmt = stmt.limit(last)
        async with self.engine.connect() as conn:
            found = [
                tuple(decode_values(values)) + (() if size is None else (size,))
                for values, size in (await conn.execute(stmt)).all()
            ]
        found.reverse()
        return found

    async def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead letter, oldest first (for tests and diagnostics)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(dead_letters).order_by(dead_letters.c.id))
            return [dict(row._mapping) for row in rows]  # noqa: SLF001  as above (Row._mapping)

    async def count(self, table: str, characteristic_id: int | None = None) -> int:
        """Rows in a table (for tests and diagnostics)."""
        target = metadata.tables[table]
        stmt = select(func.count()).select_from(target)
        if characteristic_id is not None:
            stmt = stmt.where(target.c.characteristic_id == characteristic_id)
        async with self.engine.connect() as conn:
            return int(await conn.scalar(stmt) or 0)

    async def rows(self, table: str, characteristic_id: int) -> Sequence[Row[Any]]:
        """All rows of a characteristic in a table, in id order (for tests and diagnostics)."""
        target = metadata.tables[table]
        stmt = (
            select(target)
            .where(target.c.characteristic_id == characteristic_id)
            .order_by(target.c.id)
        )
        async with self.engine.connect() as conn:
            return list(await conn.execute(stmt))


def _with_version(payload: Mapping[str, Any], version: int | None) -> dict[str, Any]:
    """A stored ``control_limits`` payload with its row's version (rows stored before
    revision 0006 lack it in the payload; the migration numbered them)."""
    found = dict(payload)
    if version is not None:
        found["version"] = version
    else:
        found.setdefault("version", None)
    return found


def _writer_for(engine: AsyncEngine) -> BatchWriter | None:
    """The batch writer of a SQLite file or a PostgreSQL database (bridge/store/_writer.py);
    None for an in-memory SQLite (a connection of its own would be another database) or a
    SQLite URL with options, which keep the pool's path."""
    url = engine.url
    if engine.dialect.name == "sqlite":
        if url.database in (None, "", ":memory:") or url.query:
            return None
        return SqliteWriter(url.database, engine.dialect)
    if engine.dialect.driver == "asyncpg":
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresWriter(dsn, engine.dialect, CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT_S)
    return None


def json_text(value: Any) -> str:
    """The JSON columns' text (engine snapshots, contexts, limits payloads): orjson, about
    8x faster than ``json.dumps`` for an engine snapshot, which every batch writes once per
    characteristic it touched. Only the database reads it back (``json.loads``: the same
    values; orjson writes ``1e-05`` as ``0.00001``); the messages the bridge publishes are
    encoded by bridge/wire/payloads.py as before."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """SQLAlchemy's connections get the writer's settings (:func:`sqlite_pragmas`)."""
    sqlite_pragmas(dbapi_connection)
