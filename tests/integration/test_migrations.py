"""Schema migrations (docs/bridge.md, "Schema migrations"): a plant upgrades without losing
its history.

The databases of release 0.1.0 were made by 0.1.0's own code against a real Mosquitto
(tests/fixtures/release_0_1_0/make_fixtures.py says how); here today's bridge opens them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from bridge._mosquitto import MosquittoProcess
from bridge.messages import iso_z
from bridge.store import SchemaTooNew, SchemaUnrecognized, SchemaUpgradeFailed, Store
from bridge.store._migrate import (
    BASELINE,
    RELEASE_0_1_0_TABLES,
    alembic_config,
    head_revision,
    schema_differences,
    script_location,
    upgrade_to_head,
)
from bridge.testing import PostgresCluster, find_pg_bin
from tests.integration.conftest import BridgeFactory, Probe, fresh_pg_database

pytestmark = pytest.mark.mosquitto

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1_0"
FACTS = json.loads((FIXTURES / "release-0.1.0.json").read_text())
TIMEOUT = 15.0

# the characteristics 0.1.0 ran with (make_fixtures.py), as today's config
CHARACTERISTICS: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "Shaft OD",
        "unit": "mm",
        "subgroup_size": 1,
        "baseline": 8,
        "usl": 10.3,
        "lsl": 9.7,
        "rules": "nelson",
    },
    {"id": 2, "name": "Bore", "unit": "mm", "subgroup_size": 3, "baseline": 3, "rules": "nelson"},
]

PRIMARY_KEYS = {
    "id_counters": "name",
    "characteristics": "id",
    "readings": "id",
    "samples": "id",
    "violations": "id",
    "control_limits": "id",
}


def _psql() -> Path:
    pg_bin = find_pg_bin()
    assert pg_bin is not None
    # Debian links pg_ctl into PATH from the server's own folder, where psql lies too
    return (pg_bin / "pg_ctl").resolve().parent / "psql"


def restore_release_dump(cluster: PostgresCluster, url: str) -> None:
    """Load the 0.1.0 PostgreSQL fixture (a plain-SQL pg_dump) into the database of ``url``."""
    database = url.rsplit("/", 1)[1]
    subprocess.run(
        [
            str(_psql()),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(cluster.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-f",
            str(FIXTURES / "release-0.1.0.postgres.sql"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


# columns later revisions add to 0.1.0's tables (0004: the chart families' point; 0005: the
# alarm kinds, spec judgement, due time and due clocks)
LATER_COLUMNS: dict[str, tuple[str, ...]] = {
    "samples": ("chart", "statistic", "ucl", "lcl", "cusum_upper", "cusum_lower", "size")
}
LATER_COLUMNS["samples"] += ("out_of_spec", "due_at")
LATER_COLUMNS["violations"] = ("kind",)
LATER_COLUMNS["characteristics"] = ("due_since", "due_raised", "due_running")
# later columns with a value for the rows already stored (every 0.1.0 violation is a rule's)
FILLED = {("violations", "kind"): "rule"}
# 0006: the acknowledgement's action and comment, the limits version that judged a sample
LATER_COLUMNS["samples"] += ("limits_version",)
LATER_COLUMNS["violations"] += ("ack_action", "ack_comment")
# later columns the upgrade fills from the rows already there (checked on their own)
FILLED_COLUMNS = {"control_limits": ("version",)}
# 0007: the readings' and samples' context
LATER_COLUMNS["samples"] += ("context",)
LATER_COLUMNS["readings"] = ("context",)


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of 0.1.0's tables, in key order, as the driver hands them back: 0.1.0's
    columns only (:func:`later_columns` reads the others)."""
    engine = create_async_engine(url)
    found: dict[str, list[tuple[Any, ...]]] = {}
    try:
        async with engine.connect() as conn:
            for table, key in PRIMARY_KEYS.items():
                result = await conn.execute(
                    text(f"SELECT * FROM {table} ORDER BY {key}")  # noqa: S608  # our names
                )
                later = LATER_COLUMNS.get(table, ()) + FILLED_COLUMNS.get(table, ())
                keep = [i for i, name in enumerate(result.keys()) if name not in later]
                found[table] = [tuple(row[i] for i in keep) for row in result]
    finally:
        await engine.dispose()
    return found


async def later_columns(url: str) -> set[Any]:
    """Every value the later revisions' columns hold in the rows of 0.1.0's tables."""
    engine = create_async_engine(url)
    values: set[Any] = set()
    try:
        async with engine.connect() as conn:
            for table, all_names in LATER_COLUMNS.items():
                names = [n for n in all_names if (table, n) not in FILLED]
                if not names:
                    continue
                columns = ", ".join(names)
                for row in await conn.execute(text(f"SELECT {columns} FROM {table}")):  # noqa: S608  # our names
                    values.update(row)
    finally:
        await engine.dispose()
    return values


async def limits_versions(url: str) -> list[tuple[int, int, int]]:
    """``(id, characteristic_id, version)`` of every stored control_limits row, by id."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id, characteristic_id, version FROM control_limits ORDER BY id")
            )
            return [tuple(row) for row in rows]
    finally:
        await engine.dispose()


def numbered_in_id_order(rows: list[tuple[Any, ...]]) -> list[tuple[int, int, int]]:
    """What revision 0006 makes of 0.1.0's limits: 1, 2, ... per characteristic by id."""
    seen: dict[int, int] = {}
    out = []
    for row in rows:  # (id, characteristic_id, ...) in id order
        seen[row[1]] = seen.get(row[1], 0) + 1
        out.append((row[0], row[1], seen[row[1]]))
    return out


async def scalar(url: str, sql: str) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def release_db(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    """A copy of the database release 0.1.0 made; its URL."""
    if backend == "sqlite":
        db = tmp_path / "release-0.1.0.sqlite"
        shutil.copyfile(FIXTURES / "release-0.1.0.sqlite", db)
        yield f"sqlite+aiosqlite:///{db}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    async with fresh_pg_database(cluster) as url:
        await asyncio.to_thread(restore_release_dump, cluster, url)
        yield url


@pytest.fixture
async def empty_db(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    async with fresh_pg_database(request.getfixturevalue("postgres")) as url:
        yield url


# what 0.1.0 published that today's bridge must publish alike (later releases add fields and
# print numbers without binary noise: compared to 1e-9)
SAMPLE_KEYS = ("sample_id", "characteristic_id", "timestamp", "value", "values", "range", "zone")
SAMPLE_KEYS += ("in_control", "failed_rules", "range_failed_rules")
LIMITS_KEYS = ("characteristic_id", "center_line", "ucl", "lcl", "sigma", "method")
LIMITS_KEYS += ("sample_count", "range", "timestamp")


def assert_same(new: dict[str, Any], old: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if isinstance(old[key], str | bool) or old[key] is None:
            assert new[key] == old[key], key
        else:
            assert new[key] == pytest.approx(old[key], rel=1e-9, abs=1e-12), key


def _facts(url: str) -> dict[str, Any]:
    return dict(FACTS["sqlite" if url.startswith("sqlite") else "postgres"])


# -- a new database ------------------------------------------------------------------------


async def test_an_empty_database_gets_exactly_the_tables_of_tables_py(empty_db: str) -> None:
    store = await Store.open(empty_db)
    try:
        async with store.engine.connect() as conn:
            differences = await conn.run_sync(schema_differences)
            version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await store.close()
    assert differences == [], (
        "bridge/store/_tables.py and the migrations differ: every change to the tables comes "
        "with a revision; write it with scripts/new-revision 'what changed' "
        "(docs/bridge.md, Schema migrations). Differences: "
        f"{differences}"
    )
    assert version == head_revision()


# -- release 0.1.0's database ------------------------------------------------------------------


async def _schema_0001(conn: AsyncConnection) -> Any:
    """What describes a schema, dialect by dialect, leaving out Alembic's own table."""
    if conn.dialect.name == "sqlite":
        rows = await conn.execute(
            text(
                "SELECT type, name, tbl_name, sql FROM sqlite_master "
                "WHERE tbl_name != 'alembic_version' ORDER BY name"
            )
        )
        return [tuple(r) for r in rows]
    columns = await conn.execute(
        text(
            "SELECT table_name, column_name, ordinal_position, data_type, "
            "character_maximum_length, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name != 'alembic_version' "
            "ORDER BY table_name, ordinal_position"
        )
    )
    indexes = await conn.execute(
        text(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename != 'alembic_version' ORDER BY indexname"
        )
    )
    sequences = await conn.execute(
        text(
            "SELECT sequence_name, data_type, start_value, increment FROM "
            "information_schema.sequences ORDER BY sequence_name"
        )
    )
    return [tuple(r) for r in columns], [tuple(r) for r in indexes], [tuple(r) for r in sequences]


async def test_revision_0001_is_exactly_the_schema_release_0_1_0_made(
    release_db: str, empty_db: str
) -> None:
    # revision 0001 alone, on an empty database (head may be later)
    engine = create_async_engine(empty_db)
    try:
        async with engine.connect() as conn:

            def to_0001(sync_conn: Any) -> None:
                from alembic import command

                command.upgrade(alembic_config(sync_conn), BASELINE)

            await conn.run_sync(to_0001)
            await conn.commit()
            made_by_0001 = await _schema_0001(conn)
    finally:
        await engine.dispose()
    engine = create_async_engine(release_db)
    try:
        async with engine.connect() as conn:
            made_by_0_1_0 = await _schema_0001(conn)
    finally:
        await engine.dispose()
    assert made_by_0001 == made_by_0_1_0


async def test_a_0_1_0_database_is_stamped_and_upgraded_keeping_every_row(
    release_db: str,
) -> None:
    before = await snapshot(release_db)
    assert len(before["samples"]) == len(_facts(release_db)["samples"])  # the fixture is whole
    store = await Store.open(release_db)
    await store.close()
    assert await scalar(release_db, "SELECT version_num FROM alembic_version") == head_revision()
    after = await snapshot(release_db)
    assert after == before
    assert await later_columns(release_db) == {None}  # 0.1.0's samples are Shewhart samples
    assert await limits_versions(release_db) == numbered_in_id_order(before["control_limits"])
    for (table, column), value in FILLED.items():
        other = f"SELECT COUNT(*) FROM {table} WHERE {column} IS NULL OR {column} <> '{value}'"  # noqa: S608  # our names
        assert await scalar(release_db, other) == 0  # every stored row has the value
    # opened again: nothing to do, nothing changed
    store = await Store.open(release_db)
    await store.close()
    assert await snapshot(release_db) == before


async def test_the_bridge_resumes_on_a_0_1_0_database(
    release_db: str, mosquitto: MosquittoProcess, topic_prefix: str, probe: Probe, tmp_path: Path
) -> None:
    facts = _facts(release_db)
    before = await snapshot(release_db)
    counters = dict(before["id_counters"])
    factory = BridgeFactory(mosquitto, topic_prefix, tmp_path, db_url=release_db)
    app = await factory.start(CHARACTERISTICS)
    try:
        # what it restored and publishes: 0.1.0's last limits (the recalculated ones) ...
        (limits,) = await probe.wait_for(f"{topic_prefix}/char/1/limits")
        assert_same(limits["payload"], facts["limits"]["1"], LIMITS_KEYS)
        # numbered by revision 0006: the last of char 1's stored limits is its version
        stored_1 = [row for row in before["control_limits"] if row[1] == 1]
        assert len(stored_1) >= 2  # 0.1.0 recalculated: more than one version
        assert limits["payload"]["version"] == len(stored_1)
        # ... its open alarms (the acknowledged one is not among them) ...
        (alarms,) = await probe.wait_for(f"{topic_prefix}/char/1/alarms")
        open_ids = [v["violation_id"] for v in alarms["payload"]["violations"]]
        expected = [
            v["violation_id"]
            for v in facts["violations"]
            if v["characteristic_id"] == 1 and v["violation_id"] not in facts["acknowledged"]
        ]
        assert open_ids == expected
        assert facts["acknowledged"][0] not in open_ids
        # ... and its history: the samples 0.1.0 published, ids and all
        (history,) = await probe.wait_for(f"{topic_prefix}/char/1/history")
        published = sorted(
            (s for s in facts["samples"].values() if s["characteristic_id"] == 1),
            key=lambda s: s["sample_id"],
        )
        assert len(history["payload"]["samples"]) == len(published)
        for restored, sample in zip(history["payload"]["samples"], published, strict=True):
            assert_same(restored, sample, SAMPLE_KEYS)

        # the unfinished subgroup of 3 survived: one more reading completes it
        await probe.publish(f"{topic_prefix}/char/2/reading", "5.0")
        samples_2 = await probe.wait_for(
            f"{topic_prefix}/char/2/sample",
            lambda m: m["payload"]["values"] == [*facts["pending"]["2"], 5.0],
        )
        new_2 = samples_2[0]["payload"]
        # ids continue from 0.1.0's counter: no id of its is used again
        assert new_2["sample_id"] == counters["sample"]
        assert new_2["zone"] is not None  # judged against 0.1.0's limits
        stored_2 = [row for row in before["control_limits"] if row[1] == 2]
        assert new_2["limits_version"] == len(stored_2)
        # 0.1.0's own samples: which limits judged them was not recorded
        assert {s["limits_version"] for s in history["payload"]["samples"]} == {None}
        # the sample 0.1.0 excluded with its acknowledgement is marked, and only it
        excluded_rows = {row[0] for row in before["samples"] if row[1] == 1 and row[-1]}
        assert excluded_rows  # the fixture holds one
        marked = {s["sample_id"] for s in history["payload"]["samples"] if s["excluded"]}
        assert marked == excluded_rows

        # a point far beyond the recalculated limits: a new alarm, with the next violation id
        await probe.publish(f"{topic_prefix}/char/1/reading", "12.0")
        (violation,) = await probe.wait_for(
            f"{topic_prefix}/char/1/violation", lambda m: m["payload"]["chart"] == "x"
        )
        assert violation["payload"]["violation_id"] == counters["violation"]
        assert violation["payload"]["sample_id"] == counters["sample"] + 1
    finally:
        await factory.stop(app)
    after = await snapshot(release_db)
    for table in ("readings", "samples", "violations", "control_limits"):
        assert after[table][: len(before[table])] == before[table], table
    assert len(after["samples"]) == len(before["samples"]) + 2


async def test_a_0_1_0_database_with_a_new_sample_interval_counts_from_its_last_sample(
    release_db: str, mosquitto: MosquittoProcess, topic_prefix: str, probe: Probe, tmp_path: Path
) -> None:
    """Revision 0005's due clocks are NULL for 0.1.0's characteristics: the bridge counts from
    the last stored sample, so a sample that has been overdue since then is raised once, at
    once, with the time it fell due (docs/bridge.md, "Restart")."""
    facts = _facts(release_db)
    counters = dict((await snapshot(release_db))["id_counters"])
    last = max(
        (s for s in facts["samples"].values() if s["characteristic_id"] == 1),
        key=lambda s: s["sample_id"],
    )
    chars = [{**CHARACTERISTICS[0], "sample_interval": 60.0}, CHARACTERISTICS[1]]
    factory = BridgeFactory(mosquitto, topic_prefix, tmp_path, db_url=release_db)
    app = await factory.start(chars)
    try:
        (late,) = await probe.wait_for(
            f"{topic_prefix}/char/1/violation", lambda m: m["payload"]["kind"] == "overdue"
        )
        body = late["payload"]
        assert body["violation_id"] == counters["violation"]
        assert body["sample_id"] is None
        fell_due = datetime.fromisoformat(last["timestamp"].replace("Z", "+00:00"))
        assert body["timestamp"] == iso_z(fell_due + timedelta(seconds=75))
        (meta,) = await probe.wait_for(f"{topic_prefix}/char/1/meta")
        assert (meta["payload"]["sample_interval"], meta["payload"]["overdue_grace"]) == (
            60.0,
            15.0,
        )
    finally:
        await factory.stop(app)
    # stored with its "raised" flag: a second start raises nothing more
    app = await factory.start(chars)
    try:
        await probe.publish(f"{topic_prefix}/char/2/reading", "5.0")
        await probe.wait_for(f"{topic_prefix}/char/2/sample")
        rows = await app.store.rows("violations", 1)
        assert [r.kind for r in rows].count("overdue") == 1
    finally:
        await factory.stop(app)


async def test_bridges_starting_at_once_on_a_0_1_0_postgres_upgrade_it_once(
    postgres: PostgresCluster,
) -> None:
    async with fresh_pg_database(postgres) as url:
        await asyncio.to_thread(restore_release_dump, postgres, url)
        before = await snapshot(url)
        stores = await asyncio.gather(*(Store.open(url) for _ in range(4)))
        for store in stores:
            await store.close()
        assert await scalar(url, "SELECT count(*) FROM alembic_version") == 1
        assert await scalar(url, "SELECT version_num FROM alembic_version") == head_revision()
        assert await snapshot(url) == before


OPEN_AND_SAY_IF_ALEMBIC = """
import asyncio, sys
from bridge.store import Store

async def main():
    store = await Store.open(sys.argv[1])
    await store.close()

asyncio.run(main())
print("alembic" in sys.modules)
"""


async def open_in_a_process(url: str) -> str:
    """``Store.open(url)`` in a process of its own; whether it imported Alembic."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        OPEN_AND_SAY_IF_ALEMBIC,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


async def test_a_database_at_head_opens_without_importing_alembic(
    empty_db: str, release_db: str
) -> None:
    """Alembic (about 11 MB of a running bridge) is imported only when the schema must
    change: an empty database and 0.1.0's are upgraded with it, a database at head is read
    without it (bridge/store/_schema.py, docs/performance.md)."""
    assert await open_in_a_process(empty_db) == "True"
    assert await open_in_a_process(release_db) == "True"
    assert await scalar(release_db, "SELECT version_num FROM alembic_version") == head_revision()
    before = await snapshot(release_db)
    assert await open_in_a_process(empty_db) == "False"
    assert await open_in_a_process(release_db) == "False"
    assert await snapshot(release_db) == before


# -- what is refused -----------------------------------------------------------------------


async def test_a_database_of_a_newer_release_is_refused_before_anything_changes(
    release_db: str,
) -> None:
    store = await Store.open(release_db)
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    await store.close()
    before = await snapshot(release_db)
    with pytest.raises(SchemaTooNew) as refused:
        await Store.open(release_db)
    assert refused.value.revision == "9999"
    assert refused.value.head == head_revision()
    assert "newer release" in str(refused.value)
    assert await snapshot(release_db) == before


async def test_openspc_run_on_a_newer_database_says_one_line_and_exits_2(
    mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    db = tmp_path / "plant.db"
    store = await Store.open(f"sqlite+aiosqlite:///{db}")
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0042'"))
    await store.close()
    config = tmp_path / "openspc.toml"
    config.write_text(
        f'[broker]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n\n'
        f'[database]\nurl = "sqlite+aiosqlite:///{db}"\n\n'
        '[[characteristic]]\nid = 1\nname = "OD"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "run",
        "--config",
        str(config),
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 2, err.decode()
    (line,) = err.decode().strip().splitlines()
    assert line.startswith("openspc run: database sqlite+aiosqlite:///")
    assert "schema revision 0042" in line
    assert out == b""


async def test_a_database_with_some_of_the_0_1_0_tables_is_refused(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'partial.db'}"
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE samples (id INTEGER PRIMARY KEY)"))
    await engine.dispose()
    with pytest.raises(SchemaUnrecognized) as refused:
        await Store.open(url)
    missing = sorted(RELEASE_0_1_0_TABLES - {"samples"})
    assert (
        refused.value.reason
        == f"no alembic_version and tables of 0.1.0 missing: {', '.join(missing)}"
    )


# -- the pattern for the next revision ---------------------------------------------------------

NEXT_REVISION = '''"""A table and a column, as docs/bridge.md shows (this test's own names).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "probe_notes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("topic", sa.String(500), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
    )
    with op.batch_alter_table("violations") as batch:
        batch.add_column(sa.Column("probe_note", sa.String(500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("violations") as batch:
        batch.drop_column("probe_note")
    op.drop_table("probe_notes")
'''


async def test_a_next_revision_upgrades_a_0_1_0_database_keeping_its_rows(
    release_db: str, tmp_path: Path
) -> None:
    """The documented pattern (a table and a column) run on 0.1.0's data: stamped, upgraded."""
    location = tmp_path / "migrations"
    shutil.copytree(script_location(), location, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    following = f"{int(head) + 1:04d}"
    (location / "versions" / f"{following}_probe.py").write_text(
        NEXT_REVISION.format(revision=following, down_revision=head)
    )
    before = await snapshot(release_db)
    engine = create_async_engine(release_db)
    try:
        async with engine.connect() as conn:
            found, reached = await conn.run_sync(upgrade_to_head, "test", location)
            await conn.commit()
        assert (found, reached) == ("0.1.0", following)
        async with engine.connect() as conn:
            await conn.execute(
                text("INSERT INTO probe_notes (topic, reason) VALUES ('a/b', 'not JSON')")
            )
            comments = (await conn.execute(text("SELECT probe_note FROM violations"))).all()
            await conn.rollback()
    finally:
        await engine.dispose()
    assert comments == [(None,)] * len(before["violations"])
    after = await snapshot(release_db)
    assert after["violations"] == [(*row, None) for row in before["violations"]]
    for table in ("readings", "samples", "control_limits", "characteristics", "id_counters"):
        assert after[table] == before[table], table


FAILING_REVISION = '''"""A revision that fails half-way."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer(), primary_key=True))
    with op.batch_alter_table("samples") as batch:
        batch.add_column(sa.Column("note", sa.String(50), nullable=True))
    op.execute("UPDATE no_such_table SET x = 1")


def downgrade() -> None:
    pass
'''


async def test_a_failed_upgrade_leaves_the_database_as_it_was(
    release_db: str, tmp_path: Path
) -> None:
    location = tmp_path / "migrations"
    shutil.copytree(script_location(), location, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    following = f"{int(head) + 1:04d}"
    (location / "versions" / f"{following}_fails.py").write_text(
        FAILING_REVISION.format(revision=following, down_revision=head)
    )
    before = await snapshot(release_db)
    engine = create_async_engine(release_db)
    try:
        async with engine.connect() as conn:
            with pytest.raises(SchemaUpgradeFailed) as failed:
                await conn.run_sync(upgrade_to_head, "test", location)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            columns = await conn.run_sync(
                lambda c: [col["name"] for col in inspect(c).get_columns("samples")]
            )
    finally:
        await engine.dispose()
    assert failed.value.found == "release 0.1.0's schema"
    assert failed.value.head == following
    assert "no_such_table" in failed.value.reason
    # not even stamped, nor upgraded to the revisions before the failing one: the next
    # start finds 0.1.0's database as it was
    assert tables == RELEASE_0_1_0_TABLES
    assert "note" not in columns
    assert await snapshot(release_db) == before


async def test_stores_opening_at_once_on_a_0_1_0_sqlite_file_upgrade_it_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "release-0.1.0.sqlite"
    shutil.copyfile(FIXTURES / "release-0.1.0.sqlite", db)
    url = f"sqlite+aiosqlite:///{db}"
    before = await snapshot(url)
    stores = await asyncio.gather(*(Store.open(url) for _ in range(4)))
    for store in stores:
        await store.close()
    assert await scalar(url, "SELECT count(*) FROM alembic_version") == 1
    assert await scalar(url, "SELECT version_num FROM alembic_version") == head_revision()
    assert await snapshot(url) == before


async def test_a_database_of_todays_release_gets_the_context_columns_keeping_its_rows(
    empty_db: str, tmp_path: Path
) -> None:
    """Revision 0007 (reading context) on a database at 0004, today's release's head, with
    rows as that release writes them: kept, their context NULL and published as ``{}``."""
    location = tmp_path / "migrations"
    shutil.copytree(script_location(), location, ignore=shutil.ignore_patterns("__pycache__"))
    for newer in (location / "versions").glob("000[5-9]_*.py"):
        newer.unlink()
    engine = create_async_engine(empty_db)
    try:
        async with engine.connect() as conn:
            _, reached = await conn.run_sync(upgrade_to_head, "test", location)
            await conn.execute(
                text(
                    "INSERT INTO readings (characteristic_id, value, ts, received_at, batch,"
                    " operator, source) VALUES (5, 10.5, '2026-12-01 06:00:00',"
                    " '2026-12-01 06:00:00', 'B-17', 'ana', 'openspc/char/5/reading')"
                )
            )
            await conn.execute(
                text(
                    'INSERT INTO samples (id, characteristic_id, seq, ts, value, "values",'
                    " range, zone, in_control, failed_rules, range_failed_rules, excluded)"
                    " VALUES (77, 5, 1, '2026-12-01 06:00:00', 10.5, '10.5', NULL, NULL,"
                    " NULL, '', '', false)"
                )
            )
            await conn.commit()
        assert reached == "0004"
        async with engine.connect() as conn:
            old_readings = (await conn.execute(text("SELECT * FROM readings"))).all()
            old_samples = (await conn.execute(text("SELECT * FROM samples"))).all()
    finally:
        await engine.dispose()

    store = await Store.open(empty_db)
    try:
        assert await scalar(empty_db, "SELECT version_num FROM alembic_version") == head_revision()
        async with store.engine.connect() as conn:
            readings = (await conn.execute(text("SELECT * FROM readings"))).all()
            samples = (await conn.execute(text("SELECT * FROM samples"))).all()
        # every row kept, column for column; the later revisions' columns after them
        assert [tuple(r)[: len(o)] for r, o in zip(readings, old_readings, strict=True)] == [
            tuple(r) for r in old_readings
        ]
        assert [tuple(s)[: len(o)] for s, o in zip(samples, old_samples, strict=True)] == [
            tuple(s) for s in old_samples
        ]
        assert [r.context for r in readings] == [None]
        assert [s.context for s in samples] == [None]
        [published] = (await store.recent_samples_of_all(10))[5]
        assert published.context == {}
        assert published.id == 77
    finally:
        await store.close()
