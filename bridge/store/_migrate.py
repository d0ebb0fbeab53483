"""Schema migrations: the Alembic revisions in ``bridge/store/migrations/`` (docs/bridge.md).

The bridge runs them itself when it opens the store (:meth:`bridge.store.Store.open`), on a
connection of its own async engine (``connection.run_sync``), with an Alembic ``Config`` built
here: no ``alembic.ini`` is needed at run time, and the revisions are found through
:mod:`importlib.resources`, so a checkout, an editable install and a wheel behave alike.

- An empty database is brought to the head revision.
- A database made by release 0.1.0 (its tables, no ``alembic_version``) is stamped with the
  baseline revision ``0001`` (which is exactly 0.1.0's schema) and then upgraded: nothing in
  it is rewritten or lost.
- A database at a revision this code does not know (made by a newer release) is refused with
  :class:`SchemaTooNew`: ``openspc run`` says so in one line and exits with status 2.

The whole upgrade is one transaction, taken exclusively: on PostgreSQL under an advisory lock
(several bridges starting at once on one database upgrade it once, the others wait and find it
done), on SQLite with ``BEGIN IMMEDIATE``.

The store imports this module (and Alembic with it) only when the database is not at the head
revision already: :func:`bridge.store._schema.at_head` tells that without Alembic.

``scripts/new-revision "add dead letters"`` (``python -m bridge.store.migrations``) writes the
next numbered revision from the difference between ``_tables.py`` and the head.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from bridge.store._schema import (
    BASELINE,
    RELEASE_0_1_0_TABLES,
    SchemaTooNew,
    SchemaUnrecognized,
    SchemaUpgradeFailed,
    describe,
    script_location,
)

__all__ = [
    "BASELINE",
    "RELEASE_0_1_0_TABLES",
    "SchemaTooNew",
    "SchemaUnrecognized",
    "SchemaUpgradeFailed",
    "alembic_config",
    "check_tables",
    "describe",
    "head_revision",
    "new_revision",
    "schema_differences",
    "script_location",
    "upgrade_to_head",
]

log = logging.getLogger("openspc.store")
# Alembic's own INFO lines are silenced before it is imported: bridge/store/_alembic_log.py

ADVISORY_LOCK_KEY = 0x6F70656E737063
"""``pg_advisory_xact_lock`` key of the upgrade ("openspc" in ASCII, a positive bigint)."""


def alembic_config(connection: Connection | None = None, location: Path | None = None) -> Config:
    """Alembic's configuration, built in code; ``env.py`` takes ``connection`` from it."""
    config = Config()
    config.set_main_option("script_location", str(location or script_location()))
    # revisions are numbered 0001, 0002, ...: files 0002_add_dead_letters.py
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def head_revision(location: Path | None = None) -> str:
    """The one head revision; two heads (two branches each added one) is a developer's error."""
    return _single_head(ScriptDirectory.from_config(alembic_config(location=location)))


def _single_head(script: ScriptDirectory) -> str:
    heads = script.get_heads()
    if len(heads) != 1:
        # a bug of the package (two branches each added a revision), not of the plant
        raise RuntimeError(
            f"bridge/store/migrations has {len(heads)} heads ({', '.join(sorted(heads))}): "
            "each revision's down_revision must be the one before it (docs/bridge.md)"
        )
    return heads[0]


def upgrade_to_head(
    connection: Connection, url: str, location: Path | None = None
) -> tuple[str | None, str]:
    """Bring the database to the head revision, in the caller's transaction.

    Call it first thing on a fresh connection (``await conn.run_sync(upgrade_to_head, url)``)
    and commit after. Returns the revision found (``None`` for an empty database; ``"0.1.0"``
    for a database made by release 0.1.0) and the revision left.
    """
    if connection.dialect.name == "postgresql":
        # bridges starting at once: one upgrades, the rest wait here and then find it done
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        # pysqlite would run each CREATE/ALTER outside any transaction; this makes the
        # upgrade one transaction, and takes the write lock for it
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    config = alembic_config(connection, location)
    script = ScriptDirectory.from_config(config)
    head = _single_head(script)
    current = MigrationContext.configure(connection).get_current_heads()
    for revision in current:
        try:
            script.get_revision(revision)
        except CommandError:
            raise SchemaTooNew(url, revision, head) from None
    found: str | None = current[0] if len(current) == 1 else None
    stamp = False
    if not current:
        present = RELEASE_0_1_0_TABLES & set(inspect(connection).get_table_names())
        if present == RELEASE_0_1_0_TABLES:
            stamp, found = True, "0.1.0"
        elif present:
            missing = ", ".join(sorted(RELEASE_0_1_0_TABLES - present))
            raise SchemaUnrecognized(
                url, f"no alembic_version and tables of 0.1.0 missing: {missing}"
            )
    if found == head:
        return found, head
    try:
        if stamp:
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
    except Exception as exc:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            raise  # the database went away: an outage, waited out like one
        # a revision that fails here fails again on the next start: said, not retried
        reason = (str(exc).splitlines() or [repr(exc)])[0]
        raise SchemaUpgradeFailed(url, describe(found), head, reason) from exc
    return found, head


def schema_differences(connection: Connection) -> list[object]:
    """What ``_tables.py`` has that the database at hand does not, and the reverse (empty when
    every change to the tables came with its revision)."""
    from bridge.store._tables import metadata

    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _next_revision_id(script: ScriptDirectory) -> str:
    numbers = [int(r.revision) for r in script.walk_revisions() if r.revision.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


def check_tables() -> list[object]:
    """The differences between ``_tables.py`` and the head revision, on a scratch SQLite."""
    with tempfile.TemporaryDirectory(prefix="openspc-check-") as scratch:
        engine = create_engine(f"sqlite:///{scratch}/head.db")
        try:
            with engine.connect() as conn:
                upgrade_to_head(conn, "scratch")
                conn.commit()
                return schema_differences(conn)
        finally:
            engine.dispose()


def new_revision(message: str, location: Path | None = None) -> Path:
    """Write the next revision: the difference between ``_tables.py`` and the head, as ops.

    Made against a scratch SQLite database at head; review the file it writes (Alembic's
    autogenerate sees tables, columns, types, indexes; not renames, nor data to move).
    """
    with tempfile.TemporaryDirectory(prefix="openspc-revision-") as scratch:
        engine = create_engine(f"sqlite:///{scratch}/head.db")
        try:
            with engine.connect() as conn:
                upgrade_to_head(conn, "scratch")
                conn.commit()
            with engine.connect() as conn:
                config = alembic_config(conn, location)
                rev_id = _next_revision_id(ScriptDirectory.from_config(config))
                written = command.revision(
                    config, message=message, autogenerate=True, rev_id=rev_id
                )
        finally:
            engine.dispose()
    scripts = written if isinstance(written, list) else [written]
    assert scripts
    assert scripts[0] is not None
    return Path(scripts[0].path)
