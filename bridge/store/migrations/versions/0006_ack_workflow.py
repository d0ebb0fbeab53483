"""ack workflow: causes, actions, comments and limit versions

Revision 0006 (docs/bridge.md, "Schema migrations"; docs/topics.md, "Alarm workflow"):
``violations`` gain the acknowledgement's ``ack_action`` and ``ack_comment`` (``ack_reason``
already holds its cause) and an index for the Pareto of causes; ``control_limits`` gain
``version`` and ``samples`` gain ``limits_version``.

Rows already stored keep every value. The limits already stored are numbered 1, 2, ... per
characteristic in the order they were stored (their ids), so the next limits continue the
count; samples stored before this revision keep ``limits_version`` NULL (which limits judged
them was not recorded), as do violations their action and comment (none was given).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("violations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ack_action", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("ack_comment", sa.Text(), nullable=True))
        batch_op.create_index("ix_violations_acked", ["characteristic_id", "ack_at"], unique=False)
    with op.batch_alter_table("control_limits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=True))
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("limits_version", sa.Integer(), nullable=True))
    # the limits already stored: 1, 2, ... per characteristic, in id order (one statement
    # both databases run; a plant has a handful of limits per characteristic)
    op.execute(
        "UPDATE control_limits SET version = ("
        "SELECT COUNT(*) FROM control_limits AS earlier "
        "WHERE earlier.characteristic_id = control_limits.characteristic_id "
        "AND earlier.id <= control_limits.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_column("limits_version")
    with op.batch_alter_table("control_limits", schema=None) as batch_op:
        batch_op.drop_column("version")
    with op.batch_alter_table("violations", schema=None) as batch_op:
        batch_op.drop_index("ix_violations_acked")
        batch_op.drop_column("ack_comment")
        batch_op.drop_column("ack_action")
