"""Release 0.1.0's schema, table by table, as its ``metadata.create_all`` made it.

Written out as operations (not taken from ``_tables.py``) so that later changes to the tables
never change what this revision means. A database made by 0.1.0 has exactly this and no
``alembic_version``: the bridge stamps it 0001 instead of running this (bridge/store/_migrate.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite only auto-increments an INTEGER PRIMARY KEY, PostgreSQL wants BIGINT (BIGSERIAL).
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "id_counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("next_id", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "characteristics",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("engine_state", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "readings",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("characteristic_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch", sa.String(200), nullable=True),
        sa.Column("operator", sa.String(200), nullable=True),
        sa.Column("source", sa.String(500), nullable=True),
    )
    op.create_index("ix_readings_char_id", "readings", ["characteristic_id", "id"])
    op.create_table(
        "samples",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("characteristic_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("values", sa.Text(), nullable=False),
        sa.Column("range", sa.Float(), nullable=True),
        sa.Column("zone", sa.String(20), nullable=True),
        sa.Column("in_control", sa.Boolean(), nullable=True),
        sa.Column("failed_rules", sa.String(40), nullable=False),
        sa.Column("range_failed_rules", sa.String(40), nullable=False),
        sa.Column("excluded", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_samples_char_id", "samples", ["characteristic_id", "id"])
    op.create_table(
        "violations",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("sample_id", sa.BigInteger(), nullable=False),
        sa.Column("characteristic_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("rule_name", sa.String(100), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("chart", sa.String(10), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged", sa.Boolean(), nullable=False),
        sa.Column("ack_user", sa.String(200), nullable=True),
        sa.Column("ack_reason", sa.String(200), nullable=True),
        sa.Column("ack_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_violations_open", "violations", ["characteristic_id", "acknowledged"])
    op.create_table(
        "control_limits",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("characteristic_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
    )
    op.create_index("ix_limits_char_id", "control_limits", ["characteristic_id", "id"])


def downgrade() -> None:
    for table in (
        "control_limits",
        "violations",
        "samples",
        "readings",
        "characteristics",
        "id_counters",
    ):
        op.drop_table(table)
