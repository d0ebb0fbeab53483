"""``sqlite_many`` (bridge/store/_writer.py): many rows a statement write exactly what
``executemany`` of the one-row statement writes, for any number of rows."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Float, Integer, MetaData, Table, Text
from sqlalchemy.dialects import sqlite

from bridge.store._writer import driver_rows, driver_update, sqlite_many

T = Table(
    "t", MetaData(), Column("id", Integer, primary_key=True), Column("a", Float), Column("b", Text)
)
# the one-row statements as the batch writer makes them (sqlite_many knows their many-row form)
INSERT = driver_rows(T, [{"id": 1, "a": 1.0, "b": ""}], sqlite.dialect())[0]
UPDATE = driver_update(T, ("a", "b"), [], sqlite.dialect())[0]


def table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute('CREATE TABLE "t" ("id" INTEGER PRIMARY KEY, "a" REAL, "b" TEXT)')
    return conn


def rows_of(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute('SELECT * FROM "t" ORDER BY "id"').fetchall()


values = st.tuples(st.floats(allow_nan=False) | st.none(), st.text(max_size=5) | st.none())


@settings(max_examples=60, deadline=None)
@given(st.lists(values, max_size=700), st.sampled_from([32766, 999, 7]))
def test_inserts_and_updates_match_executemany(
    items: list[tuple[object, object]], limit: int
) -> None:
    inserts = [(i, a, b) for i, (a, b) in enumerate(items, 1)]
    # every other row updated, with values of another row (ids once each, as a batch has)
    updates = [
        (a, b, i) for i, (a, b) in zip(range(1, len(items) + 1, 2), reversed(items), strict=False)
    ]
    one, many = table(), table()
    one.executemany(INSERT, inserts)
    one.executemany(UPDATE, updates)
    statements = 0
    for sql, rows in ((INSERT, inserts), (UPDATE, updates)):
        for part, flat in sqlite_many(sql, rows, limit):
            many.execute(part, flat)
            statements += 1
    assert rows_of(many) == rows_of(one)
    if limit >= 999 and len(inserts) >= 256:
        assert statements < len(inserts) // 16  # many rows a statement, not one each


def test_parts_are_of_the_fixed_sizes_in_order() -> None:
    rows = [(i, 1.0, "x") for i in range(1, 347)]  # 256 + 64 + 16 + 4 + 4 + 1 + 1
    sizes = [len(flat) // 3 for _, flat in sqlite_many(INSERT, rows, 32766)]
    assert sizes == [256, 64, 16, 4, 4, 1, 1]
    flat = [v for _, part in sqlite_many(INSERT, rows, 32766) for v in part]
    assert flat == [v for row in rows for v in row]
    # a statement never binds more parameters than the connection allows
    assert {len(p) // 3 for _, p in sqlite_many(INSERT, rows, 20)} == {4, 1}


def test_a_sqlite_without_update_from_updates_one_row_a_statement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    rows = [(i, 1.0, "x") for i in range(1, 20)]
    updates = [(2.0, "y", i) for i in range(1, 20)]
    assert {len(p) // 3 for _, p in sqlite_many(INSERT, rows, 32766)} == {16, 1}
    parts = list(sqlite_many(UPDATE, updates, 32766))
    assert [sql for sql, _ in parts] == [UPDATE] * 19  # no UPDATE ... FROM
    conn = table()
    conn.executemany(INSERT, rows)
    for sql, flat in parts:
        conn.execute(sql, flat)
    assert rows_of(conn) == [(i, 2.0, "y") for i in range(1, 20)]
