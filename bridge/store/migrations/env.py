"""Alembic's environment: migrations run on the connection the caller hands in.

The bridge (``bridge.store._migrate.upgrade_to_head``) and the developer tools
(``scripts/new-revision``) put an open connection in ``config.attributes["connection"]``; there
is no ``alembic.ini`` and no URL here. ``render_as_batch`` makes autogenerate write
``batch_alter_table`` blocks, which SQLite needs for anything beyond adding a column.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from bridge.store._tables import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise SystemExit(
        "bridge/store/migrations runs on a connection handed in by bridge.store._migrate: "
        "use scripts/new-revision, or start the bridge (docs/bridge.md)"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
