"""serving partitions

Revision 0009, after 0008 (docs/scale-out.md, "What the cluster topic says"): a ``serving``
flag on ``cluster_leases``. A node sets it once the partition's pipeline has started (its
MQTT session subscribed), and ``openspc/bridge/cluster`` lists only serving partitions: a
partition taken but not yet subscribed is not announced (readings published to it then, on
its very first start, would have no session at the broker to wait in). Rows already stored
start as not serving; their owners mark them again within a round.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cluster_leases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("serving", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("cluster_leases", schema=None) as batch_op:
        batch_op.drop_column("serving")
