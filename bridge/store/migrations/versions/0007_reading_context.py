"""reading context

Revision 0007 (docs/bridge.md, "Schema migrations"): a nullable JSON ``context`` on
``readings`` (the reading's context, ``batch`` and ``operator`` joined in) and on
``samples`` (its readings' contexts merged; docs/topics.md, "Context"). Rows already stored
keep NULL, published as ``{}``; their ``batch`` and ``operator`` columns stay as they were.
SQLite adds the columns in place (no table copy).

In its own branch this revision follows 0004; the chain is relinked when the branches of
0005, 0006 and 0008 are merged (the ids are fixed beforehand so they agree).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("context", sa.JSON(none_as_null=True), nullable=True))
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("context", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_column("context")
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_column("context")
