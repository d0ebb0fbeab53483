"""What the store knows of its schema without Alembic: the revision files, the database's
``alembic_version``, and the refusals (docs/bridge.md, "Schema migrations").

A database already at the head revision (every start but the first after an upgrade) needs
none of Alembic: :func:`at_head` reads ``alembic_version`` and the names of the revision files,
and only when they differ does the store import :mod:`bridge.store._migrate` (and with it
Alembic, Mako and Pygments: about 11 MB of a running bridge, docs/performance.md).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from sqlalchemy import Connection, inspect, text

from bridge.errors import BridgeError

__all__ = [
    "BASELINE",
    "RELEASE_0_1_0_TABLES",
    "VERSION_TABLE",
    "SchemaTooNew",
    "SchemaUnrecognized",
    "SchemaUpgradeFailed",
    "at_head",
    "describe",
    "newest_revision",
    "script_location",
    "stored_revisions",
]

BASELINE = "0001"
"""The revision that is release 0.1.0's schema, as 0.1.0 made it (``metadata.create_all``)."""

RELEASE_0_1_0_TABLES = frozenset(
    {"id_counters", "characteristics", "readings", "samples", "violations", "control_limits"}
)
"""The tables of a database made by 0.1.0, which had no ``alembic_version``."""

VERSION_TABLE = "alembic_version"
"""Where Alembic keeps the revision a database is at (its default name)."""

_REVISION_FILE = re.compile(r"^(\d{4})_\w*\.py$")
"""``0002_dead_letters.py``: the revision's number, then its slug (``file_template``)."""


class SchemaTooNew(BridgeError):
    """The database is at a revision this code does not have: a newer release made it."""

    def __init__(self, url: str, revision: str, head: str) -> None:
        self.url = url
        self.revision = revision
        self.head = head
        super().__init__(
            f"database {url} has schema revision {revision}, which this openspc-bridge does "
            f"not know (its newest is {head}): a newer release upgraded it; run that release, "
            "or restore the backup taken before the upgrade"
        )


class SchemaUpgradeFailed(BridgeError):
    """A revision failed on this database; the upgrade was rolled back as a whole."""

    def __init__(self, url: str, found: str, head: str, reason: str) -> None:
        self.url = url
        self.found = found
        self.head = head
        self.reason = reason
        super().__init__(
            f"database {url}: the upgrade from {found} to revision {head} failed and was "
            f"rolled back, nothing changed: {reason}"
        )


class SchemaUnrecognized(BridgeError):
    """The database has some of the bridge's tables but is neither empty nor a known schema."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"database {url} has an unrecognised schema: {reason}")


def script_location() -> Path:
    """The folder of ``env.py`` and ``versions/``, wherever the package is installed."""
    folder = resources.files("bridge.store") / "migrations"
    if not isinstance(folder, Path):
        # a zip import: Alembic loads the revisions from files
        raise RuntimeError(f"the migrations at {folder} are not plain files: install unzipped")
    return folder


def newest_revision(location: Path | None = None) -> str | None:
    """The highest-numbered revision file's number: the head revision, since the revisions
    form one numbered line and each file is named after its revision
    (tests/unit/test_migration_chain.py). ``None`` when no revision file can be read (then
    only Alembic can tell)."""
    try:
        names = [path.name for path in ((location or script_location()) / "versions").iterdir()]
    except (OSError, RuntimeError):
        return None
    numbers = [m.group(1) for m in map(_REVISION_FILE.match, names) if m is not None]
    return max(numbers, default=None)


def stored_revisions(connection: Connection) -> list[str] | None:
    """The revisions in the database's ``alembic_version`` (one, unless two branches were
    applied); ``None`` when it has no such table (empty, or made by 0.1.0)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608  a constant
    return [str(row[0]) for row in rows]


def at_head(connection: Connection) -> bool:
    """Whether the database is at this release's head revision, so that opening it changes
    nothing (read only: no lock taken; anything else goes to ``upgrade_to_head``)."""
    head = newest_revision()
    return head is not None and stored_revisions(connection) == [head]


def describe(found: str | None) -> str:
    """What ``upgrade_to_head`` found, in words: for its callers' log lines."""
    if found is None:
        return "an empty database"
    return "release 0.1.0's schema" if found == "0.1.0" else f"revision {found}"
