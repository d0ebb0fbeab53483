"""The schema, as SQLAlchemy Core tables (the hot path uses Core bulk inserts, not ORM)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY, PostgreSQL wants BIGINT for volume.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

id_counters = Table(
    "id_counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("next_id", BigInteger, nullable=False),
)

characteristics = Table(
    "characteristics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("engine_state", JSON, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

readings = Table(
    "readings",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("characteristic_id", Integer, nullable=False),
    Column("value", Float, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("batch", String(200), nullable=True),
    Column("operator", String(200), nullable=True),
    Column("source", String(500), nullable=True),
    Index("ix_readings_char_id", "characteristic_id", "id"),
)

samples = Table(
    "samples",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("characteristic_id", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("value", Float, nullable=False),
    # "10.01,10.02": comma-separated reprs (cheaper than JSON on the hot path)
    Column("values", Text, nullable=False),
    Column("range", Float, nullable=True),
    Column("zone", String(20), nullable=True),
    Column("in_control", Boolean, nullable=True),
    # "1,5": rule ids, ascending; "" for none
    Column("failed_rules", String(40), nullable=False),
    Column("range_failed_rules", String(40), nullable=False),
    Column("excluded", Boolean, nullable=False, default=False),
    # the chart families of docs/spc.md (p, np, c, u, ewma, cusum): the family, the plotted
    # point and its own limits, and an attribute sample's inspected/units; all NULL for the
    # Shewhart variables charts, whose plotted point is ``value`` (revision 0004)
    Column("chart", String(10), nullable=True),
    Column("statistic", Float, nullable=True),
    Column("ucl", Float, nullable=True),
    Column("lcl", Float, nullable=True),
    Column("cusum_upper", Float, nullable=True),
    Column("cusum_lower", Float, nullable=True),
    Column("size", Float, nullable=True),
    Index("ix_samples_char_id", "characteristic_id", "id"),
)

violations = Table(
    "violations",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("sample_id", BigInteger, nullable=False),
    Column("characteristic_id", Integer, nullable=False),
    Column("rule_id", Integer, nullable=False),
    Column("rule_name", String(100), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("chart", String(10), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("acknowledged", Boolean, nullable=False, default=False),
    Column("ack_user", String(200), nullable=True),
    Column("ack_reason", String(200), nullable=True),
    Column("ack_at", DateTime(timezone=True), nullable=True),
    Index("ix_violations_open", "characteristic_id", "acknowledged"),
)

control_limits = Table(
    "control_limits",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("characteristic_id", Integer, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("payload", JSON, nullable=False),
    Index("ix_limits_char_id", "characteristic_id", "id"),
)

# messages whose rows could not be written for a reason other than an outage (a poison
# message, docs/bridge.md): kept here, acknowledged, and reported on <prefix>/bridge/errors
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("topic", String(500), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("payload_size", Integer, nullable=False),  # before any truncation
    Column("reason", Text, nullable=False),
)

# --- Sparkplug B state (bridge/sparkplug/_state.py; docs/sparkplug.md) ---------------------
# The last bdSeq per edge node: "inbound" for the edge nodes the bridge reads (so an NDEATH
# that arrives after a restart of the bridge is still matched to its NBIRTH), "own" for the
# bridge's own edge node (its bdSeq goes on across restarts instead of starting at 0).
sparkplug_nodes = Table(
    "sparkplug_nodes",
    metadata,
    Column("role", String(10), primary_key=True),
    Column("group_id", String(200), primary_key=True),
    Column("edge_id", String(200), primary_key=True),
    Column("bd_seq", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# --- the cluster (bridge/cluster; docs/scale-out.md) ---------------------------------------
# One row per partition: its owner, the fencing token (incremented on every acquisition and
# checked in every batch's transaction) and when the lease runs out (the database's clock).
cluster_leases = Table(
    "cluster_leases",
    metadata,
    Column("partition_id", Integer, primary_key=True, autoincrement=False),
    Column("owner", String(200), nullable=True),
    Column("token", BigInteger, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
)

# One row per live node, renewed with its leases: the nodes the partitions are spread over.
cluster_nodes = Table(
    "cluster_nodes",
    metadata,
    Column("node", String(200), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
