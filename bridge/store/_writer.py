"""The batch writer: one hop per batch to the database, on a connection of its own.

A pipeline batch (readings, samples, violations, limits, engine snapshots, due clocks) is
written in one transaction. Through SQLAlchemy's async engine that was a pool checkout with a
pre-ping, a greenlet switch and a round trip to aiosqlite's thread per statement, and a
reset on return: about 1.6 ms of CPU per batch beyond its rows (docs/performance.md). The
writers here own their connection and do the whole batch in one go:

- :class:`SqliteWriter`: a thread of its own with a ``sqlite3`` connection (the same
  pragmas: WAL, ``synchronous=FULL``, a 10 s busy timeout); the batch's rows become tuples
  and go, up to 256 rows a statement (:func:`sqlite_many`), between ``BEGIN IMMEDIATE`` and
  ``COMMIT``, one hand-over to the thread and one back.
- :class:`PostgresWriter`: an asyncpg connection of its own; each table is one
  ``executemany`` (asyncpg sends the rows pipelined) inside one transaction.

What a batch writes is decided in one place, :func:`batch_statements`, from the tables'
metadata (bridge/store/_tables.py): the columns the pipeline's rows name and the defaults
SQLAlchemy's ``insert`` would add, bound by SQLAlchemy's own bind processors; so a column a
migration adds is written here as on SQLAlchemy's path (tests/integration/
test_store_writer.py compares every column of every table the two write).

Failures keep the classification the pipeline relies on (docs/reliability.md): a
database that cannot be reached, is locked or full raises ``sqlalchemy.exc.OperationalError``
(retried, waited out); anything else (a poison row) raises as itself or as a
``DBAPIError`` subclass that is not an outage, and is bisected by the pipeline. After any
failure the transaction is rolled back, and a connection that broke is opened again on the
next write.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import chain
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import DateTime, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import CompileError, DBAPIError, NoResultFound, OperationalError

from bridge.store._tables import (
    characteristics,
    control_limits,
    id_counters,
    readings,
    samples,
    violations,
)

if TYPE_CHECKING:
    from bridge.store._store import BatchWrite
    from engine.alarms import OverdueState

__all__ = [
    "BatchWriter",
    "PostgresWriter",
    "SqliteWriter",
    "batch_statements",
    "driver_rows",
    "driver_update",
    "due_values",
    "sqlite_datetime",
    "sqlite_many",
    "sqlite_pragmas",
]

SQLITE_BUSY_TIMEOUT_MS = 10_000
_WAL_SWITCH_BUSY_MS = 50  # the busy timeout while a connection switches the file to WAL
SQLITE_CACHE_KIB = 256


class BatchWriter(Protocol):
    """Writes one batch in one transaction and commits it, or raises (nothing written)."""

    async def write(self, batch: BatchWrite, now: datetime) -> None: ...

    async def allocate(self, name: str, count: int) -> int:
        """Reserve ``count`` ids of counter ``name`` in a transaction of its own; the first."""
        ...

    async def close(self) -> None: ...


_last_datetime: tuple[Any, str | None] = (None, None)  # the last datetime converted, its text


def sqlite_datetime(value: datetime | None) -> str | None:
    """What SQLAlchemy's SQLite DATETIME stores (``2026-01-01 06:00:00.000000``, UTC),
    from the C ``isoformat`` rather than a ``%`` format of seven fields. A reading without
    a source ``ts`` has one datetime object for ``ts`` and ``received_at``: converted once.
    (The writer's thread and the loop's both call it: the cache is one tuple, read and
    replaced whole, so neither sees another's half.)"""
    global _last_datetime  # a one-entry cache, replaced atomically
    if value is None:
        return None
    last = _last_datetime
    if value is last[0]:
        return last[1]
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    text = utc.replace(tzinfo=None).isoformat(" ", "microseconds")
    _last_datetime = (value, text)
    return text


def sqlite_pragmas(dbapi_connection: Any) -> None:
    """Every SQLite connection's settings, the writer's and SQLAlchemy's alike: WAL (see
    :func:`_switch_to_wal`), the busy timeout, then ``synchronous=FULL``: a batch is
    acknowledged to the broker right after its commit, so the commit must survive a power
    cut, not only a crash of the bridge (WAL + NORMAL may roll the last commits back then;
    docs/reliability.md). It costs one fsync per batch, about 1.2 ms here."""
    cursor = dbapi_connection.cursor()
    _switch_to_wal(cursor)
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, waiting up to the busy timeout for the file's lock.

    Switching a rollback-journal file (a database of release 0.1.0, or one made by another
    tool) takes its lock, which another bridge starting at the same moment may hold while it
    upgrades the schema. And when several connections switch such a file at once, SQLite
    refuses all but one with "database is locked", at once or only after its busy handler
    ran out (the connections wait for each other). So the switch is tried with a short busy
    timeout and tried again after a few milliseconds, until the busy timeout has passed
    (tests/integration/test_migrations.py, four stores opening one 0.1.0 file at once). A
    file in WAL already (every one this bridge has opened) takes no lock for it."""
    cursor.execute(f"PRAGMA busy_timeout={_WAL_SWITCH_BUSY_MS}")
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.002 + random.random() * 0.02)  # jitter, not for security
        else:
            return


_MANY_FORM: dict[str, tuple[str, str]] = {}
"""A one-row INSERT or UPDATE of :func:`driver_rows` / :func:`driver_update` -> the text
before and after the rows of its many-row form (:func:`sqlite_many`), recorded where the
statement is made."""
_Processor = Callable[[Any], Any] | None
_Convert = Callable[[Iterable[Any]], list[tuple[Any, ...]]]
_DRIVER_SQL: dict[tuple[str, str, tuple[str, ...], bool], tuple[str, _Convert]] = {}


def _converter(
    getters: Sequence[str], processors: Sequence[_Processor], tail: tuple[Any, ...]
) -> _Convert:
    """One function that turns rows into the driver's tuples: ``getters`` are the Python
    expressions of each value of row ``r`` (``r['ts']``, ``r[1]``), each bound by its
    processor (None: as it is), then the ``tail`` of defaulted values. Generated once per
    statement: one tuple display a row, no loop over the columns (a row of ``samples`` cost
    4 us through a loop of the columns, docs/performance.md)."""
    names: dict[str, Any] = {"_tail": tail}
    parts = []
    for i, (get, process) in enumerate(zip(getters, processors, strict=True)):
        if process is None:
            parts.append(get)
        else:
            names[f"_p{i}"] = process
            parts.append(f"_p{i}({get})")
    body = f"({', '.join(parts)},)" + (" + _tail" if tail else "")
    code = f"def convert(rows):\n    return [{body} for r in rows]\n"
    exec(code, names)  # noqa: S102  # our own column names and processors, never input
    convert: _Convert = names["convert"]
    return convert


def driver_rows(
    table: Table, rows: Sequence[Mapping[str, Any]], dialect: Dialect, *, dollar: bool = False
) -> tuple[str, list[tuple[Any, ...]]]:
    """An INSERT in the driver's own SQL and its rows as tuples, for its ``executemany``.

    What SQLAlchemy's ``insert(table)`` writes with these rows, from the table's metadata:
    the columns the rows name (an unknown name is refused, as Core refuses it), plus each
    column with a scalar Python default that they leave out (its default); the others are
    left to the database (server defaults, NULL). The values are bound by SQLAlchemy's own
    bind processors per column (SQLite's times as its DATETIME text), without its per-row
    parameter processing, which cost more than SQLite's insert itself (docs/performance.md).
    Every row has the keys of the first (the pipeline builds them so; a row without one
    fails the batch, as Core fails it). ``dollar``: ``$1`` placeholders (asyncpg), else ``?``.
    """
    keys = tuple(rows[0])
    cache_key = (dialect.name, table.name, keys, dollar)
    cached = _DRIVER_SQL.get(cache_key)
    if cached is None:
        sql, processors, tail = _insert_for(table, keys, dialect, dollar=dollar)
        getters = [f"r[{k!r}]" for k in keys]
        cached = _DRIVER_SQL[cache_key] = (sql, _converter(getters, processors, tail))
    sql, convert = cached
    return sql, convert(rows)


def _insert_for(
    table: Table, keys: tuple[str, ...], dialect: Dialect, *, dollar: bool
) -> tuple[str, list[_Processor], tuple[Any, ...]]:
    """The INSERT of rows with ``keys``, their bind processors, and the defaulted values."""
    unknown = sorted(set(keys) - set(table.c.keys()))
    if unknown:  # Core's own words for it
        raise CompileError(f"Unconsumed column names: {', '.join(unknown)}")
    defaulted = [
        c
        for c in table.columns
        if c.key not in keys and c.default is not None and c.default.is_scalar
    ]
    names = [*keys, *(c.key for c in defaulted)]
    quote = dialect.identifier_preparer.quote
    marks = [f"${i}" if dollar else "?" for i in range(1, len(names) + 1)]
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(k) for k in names)}) VALUES "  # noqa: S608  # names of our own Table
    sql = f"{head}({', '.join(marks)})"
    _MANY_FORM[sql] = (head, "")
    processors = [_bind_processor(table, k, dialect) for k in keys]
    tail = []
    for column in defaulted:
        value = column.default.arg  # type: ignore[union-attr]  # is_scalar: a ScalarElementColumnDefault
        process = _bind_processor(table, column.key, dialect)
        tail.append(value if process is None else process(value))
    return sql, processors, tuple(tail)


def driver_update(
    table: Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    dialect: Dialect,
    *,
    dollar: bool = False,
) -> tuple[str, list[tuple[Any, ...]]]:
    """``UPDATE table SET columns... WHERE id = ...`` in the driver's SQL, and its rows
    (each the values of ``columns`` then the id) bound as SQLAlchemy binds them."""
    names = (*columns, "id")
    cache_key = (dialect.name, table.name, ("UPDATE", *names), dollar)
    cached = _DRIVER_SQL.get(cache_key)
    if cached is None:
        quote = dialect.identifier_preparer.quote
        marks = [f"${i}" if dollar else "?" for i in range(1, len(names) + 1)]
        sets = ", ".join(f"{quote(k)} = {m}" for k, m in zip(columns, marks, strict=False))
        name, key = quote(table.name), quote("id")
        sql = f"UPDATE {name} SET {sets} WHERE {key} = {marks[-1]}"  # noqa: S608  # names of our own Table
        # many rows: UPDATE ... FROM (VALUES ...) by id, SQLite >= 3.33 (sqlite_many)
        assignments = ", ".join(f"{quote(k)} = v.column{i}" for i, k in enumerate(columns, 1))
        _MANY_FORM[sql] = (
            f"UPDATE {name} SET {assignments} FROM (VALUES ",  # noqa: S608  # names of our own Table
            f") AS v WHERE {name}.{key} = v.column{len(names)}",
        )
        processors = [_bind_processor(table, k, dialect) for k in names]
        getters = [f"r[{i}]" for i in range(len(names))]
        cached = _DRIVER_SQL[cache_key] = (sql, _converter(getters, processors, ()))
    sql, convert = cached
    return sql, convert(rows)


def _bind_processor(table: Table, key: str, dialect: Dialect) -> _Processor:
    """SQLAlchemy's own bind processor of a column for the dialect (asyncpg: None for
    datetimes, floats and text, which it takes as they are; JSON as its text), except
    SQLite's DATETIME: the same text, from :func:`sqlite_datetime`."""
    column_type = table.c[key].type
    if dialect.name == "sqlite" and isinstance(column_type, DateTime):
        return sqlite_datetime
    processor: _Processor = column_type._cached_bind_processor(dialect)  # noqa: SLF001  # SQLAlchemy's own, per dialect
    return processor


def due_values(state: OverdueState | None) -> tuple[datetime | None, bool | None, bool | None]:
    """A due clock as ``characteristics`` keeps it: ``due_since``, ``due_raised``,
    ``due_running`` (all NULL: forgotten; bridge/_alarms.py)."""
    if state is None:
        return None, None, None
    since = None if state.since is None else state.since.astimezone(UTC)
    return since, state.raised, state.running


_INSERTS = (
    (readings, "readings"),
    (samples, "samples"),
    (violations, "violations"),
    (control_limits, "limits"),
)
_STATE_COLUMNS = ("engine_state", "updated_at")
_ALLOCATE_SQL = (
    f"UPDATE {id_counters.name} SET next_id = next_id + {{count}} "  # noqa: S608  # our own table
    "WHERE name = {name} RETURNING next_id"
)
"""A block of ids in one statement (SQLite >= 3.35 and PostgreSQL both have RETURNING)."""
_DUE_COLUMNS = ("due_since", "due_raised", "due_running")


def batch_statements(
    batch: BatchWrite, now: datetime, dialect: Dialect, *, dollar: bool = False
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Every statement of a batch, in the driver's SQL with its rows, in the order of
    SQLAlchemy's path (``UnitOfWork.write_batch``): the rows of readings, samples,
    violations and limits, then the engine states, then the due clocks."""
    statements = [
        driver_rows(table, rows, dialect, dollar=dollar)
        for table, name in _INSERTS
        if (rows := getattr(batch, name))
    ]
    if batch.states:
        at = now.astimezone(UTC)
        rows = [(state, at, cid) for cid, state in batch.states.items()]
        statements.append(
            driver_update(characteristics, _STATE_COLUMNS, rows, dialect, dollar=dollar)
        )
    if batch.due_states:
        dues = [(*due_values(state), cid) for cid, state in batch.due_states.items()]
        statements.append(
            driver_update(characteristics, _DUE_COLUMNS, dues, dialect, dollar=dollar)
        )
    return statements


_MANY_ROWS = (256, 64, 16, 4, 1)
"""The rows a statement of :func:`sqlite_many` carries: a batch is cut into these sizes, so a
handful of statement texts serve every batch (sqlite3 keeps the prepared ones)."""
_MANY_SQL: dict[tuple[str, int], str] = {}


def sqlite_many(
    sql: str, rows: Sequence[tuple[Any, ...]], variable_limit: int
) -> Iterator[tuple[str, list[Any]]]:
    """The statement of :func:`driver_rows` or :func:`driver_update` for many rows at once,
    in parts of up to 256 rows: ``INSERT ... VALUES (...), (...)``, and
    ``UPDATE ... FROM (VALUES ...)`` by id (each id once per batch: the batch's engine
    states and due clocks are keyed by characteristic).

    Why: ``executemany`` steps each row on its own, and sqlite3 lets go of the GIL around
    every step. With the loop's thread busy, the writer's thread then waits for the GIL to
    come back before it binds the next row (up to the interpreter's switch interval), and
    the loop waits for the writer (docs/performance.md, "Issue 12's targets now"). One
    statement for many rows lets go of it once. What is written is the same, row for row.
    A SQLite older than 3.33 has no ``UPDATE ... FROM``: its updates stay one row each."""
    if not rows:
        return
    width = len(rows[0])
    before, after = _MANY_FORM[sql]
    single = bool(after) and sqlite3.sqlite_version_info < (3, 33)  # an UPDATE ... FROM
    at = 0
    for size in _MANY_ROWS:
        if size > 1 and (single or size * width > variable_limit):
            continue
        while len(rows) - at >= size:
            many = _MANY_SQL.get((sql, size))
            if many is None:
                group = f"({', '.join('?' * width)})"
                many = sql if size == 1 else before + ", ".join([group] * size) + after
                _MANY_SQL[(sql, size)] = many
            yield many, list(chain.from_iterable(rows[at : at + size]))
            at += size


class SqliteWriter:
    """A SQLite file written from a thread of its own, one batch per hand-over."""

    def __init__(self, path: str, dialect: Dialect) -> None:
        self.path = path
        self._dialect = dialect
        self._conn: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="openspc-sqlite-writer")
        self._variable_limit: int | None = None  # the connection's bound parameters a statement

    async def write(self, batch: BatchWrite, now: datetime) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._write, batch, now)

    async def allocate(self, name: str, count: int) -> int:
        """A block of ids on the writer's own thread and connection, between two batches:
        through SQLAlchemy's pool it was a second connection that took SQLite's write lock
        against the writer's (its busy handler sleeping 1 to 100 ms at a time) and held the
        pipeline 4 to 46 ms twice a second at 2,000 readings/s (docs/performance.md)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._allocate, name, count)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # BEGIN and COMMIT are ours
            check_same_thread=False,  # opened and used on the writer's thread; closed there too
        )
        sqlite_pragmas(conn)
        # it appends rows and updates engine states: a small page cache is enough (the
        # default 2 MB filled with every characteristic's state: +2-3 MB of RSS at 10,000)
        conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        return conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _write(self, batch: BatchWrite, now: datetime) -> None:
        self._transaction(lambda conn: self._rows(conn, batch, now), "batch write")

    def _transaction(self, work: Callable[[sqlite3.Connection], None], what: str) -> None:
        """``work`` between ``BEGIN IMMEDIATE`` and ``COMMIT`` (rolled back if it fails)."""
        try:
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError):
                self._close()  # opened again (and the file checked again) on the next write
            raise DBAPIError.instance(what, None, exc, sqlite3.Error, hide_parameters=True) from exc

    def _rows(self, conn: sqlite3.Connection, batch: BatchWrite, now: datetime) -> None:
        limit = self._variable_limit
        if limit is None:
            limit = self._variable_limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        for sql, params in batch_statements(batch, now, self._dialect):
            for part_sql, values in sqlite_many(sql, params, limit):
                conn.execute(part_sql, values)

    def _allocate(self, name: str, count: int) -> int:
        end: list[int] = []

        def bump(conn: sqlite3.Connection) -> None:
            sql = _ALLOCATE_SQL.format(count="?", name="?")
            end.extend(row[0] for row in conn.execute(sql, (count, name)).fetchall())

        self._transaction(bump, "id allocation")
        if not end:
            raise NoResultFound(f"no id counter {name!r}")
        return int(end[0]) - count


class PostgresWriter:
    """PostgreSQL written on an asyncpg connection of its own, one transaction per batch."""

    def __init__(self, dsn: str, dialect: Dialect, connect_timeout: float, timeout: float) -> None:
        self._dsn = dsn
        self._dialect = dialect
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def write(self, batch: BatchWrite, now: datetime) -> None:
        async def rows(conn: Any) -> None:
            async with conn.transaction():
                await self._rows(conn, batch, now)

        await self._on_connection(rows)

    async def allocate(self, name: str, count: int) -> int:
        """A block of ids on the writer's connection (one statement, its own transaction)."""
        end: list[int] = []

        async def bump(conn: Any) -> None:
            value = await conn.fetchval(_ALLOCATE_SQL.format(count="$1", name="$2"), count, name)
            if value is not None:
                end.append(int(value))

        await self._on_connection(bump)
        if not end:
            raise NoResultFound(f"no id counter {name!r}")
        return end[0] - count

    async def _on_connection(self, work: Callable[[Any], Awaitable[None]]) -> None:
        import asyncpg  # type: ignore[import-untyped]  # no stubs; only with PostgreSQL

        async with self._lock:
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(
                        self._dsn, timeout=self._connect_timeout, command_timeout=self._timeout
                    )
                await work(self._conn)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise self._failure(exc) from exc

    def _failure(self, exc: BaseException) -> BaseException:
        import asyncpg

        state = str(getattr(exc, "sqlstate", "") or "")
        broken = isinstance(
            exc, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError
        ) or state.startswith(("08", "57P"))
        if broken:
            conn, self._conn = self._conn, None
            if conn is not None and not conn.is_closed():
                conn.terminate()
            return OperationalError("batch write", None, exc, connection_invalidated=True)
        return DBAPIError("batch write", None, exc)

    async def _rows(self, conn: Any, batch: BatchWrite, now: datetime) -> None:
        for sql, params in batch_statements(batch, now, self._dialect, dollar=True):
            await conn.executemany(sql, params)

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and not conn.is_closed():
                await conn.close(timeout=5)
