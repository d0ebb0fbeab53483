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
    false,
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
    # the due clock of a characteristic with a sample_interval (engine.alarms.OverdueState;
    # docs/bridge.md, "Overdue alarms across a restart"): the wall-clock moment the next
    # sample is due from (NULL while the line is stopped), whether the episode's overdue
    # alarm was raised, and the line state last heard; due_running NULL: never stored
    # (revision 0005)
    Column("due_since", DateTime(timezone=True), nullable=True),
    Column("due_raised", Boolean, nullable=True),
    Column("due_running", Boolean, nullable=True),
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
    # the reading's context, batch and operator joined in (docs/topics.md, "Context"); NULL
    # for none, and for readings stored before revision 0007
    Column("context", JSON(none_as_null=True), nullable=True),
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
    # the alarm workflow (revision 0005): a reading beyond usl/lsl (NULL without spec
    # limits), and when the next sample was due as this one arrived (NULL without a
    # sample_interval, or while the line was stopped)
    Column("out_of_spec", Boolean, nullable=True),
    Column("due_at", DateTime(timezone=True), nullable=True),
    # the version of the control limits that judged it; NULL before limits exist and for
    # samples stored before revision 0006 (docs/topics.md, "sample")
    Column("limits_version", Integer, nullable=True),
    # the readings' contexts merged, the later winning a key (revision 0007); NULL for none
    Column("context", JSON(none_as_null=True), nullable=True),
    Index("ix_samples_char_id", "characteristic_id", "id"),
)

violations = Table(
    "violations",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    # rule, spec or overdue (revision 0005); an overdue alarm has no sample, and neither
    # spec nor overdue has a rule or a chart (docs/topics.md, "violation")
    Column("kind", String(10), nullable=False, server_default="rule"),
    Column("sample_id", BigInteger, nullable=True),
    Column("characteristic_id", Integer, nullable=False),
    Column("rule_id", Integer, nullable=True),
    Column("rule_name", String(100), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("chart", String(10), nullable=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("acknowledged", Boolean, nullable=False, default=False),
    Column("ack_user", String(200), nullable=True),
    Column("ack_reason", String(200), nullable=True),
    Column("ack_at", DateTime(timezone=True), nullable=True),
    # ack_reason is the acknowledgement's cause; its action and comment (revision 0006)
    Column("ack_action", String(200), nullable=True),
    Column("ack_comment", Text, nullable=True),
    Index("ix_violations_open", "characteristic_id", "acknowledged"),
    Index("ix_violations_acked", "characteristic_id", "ack_at"),
)

control_limits = Table(
    "control_limits",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("characteristic_id", Integer, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("payload", JSON, nullable=False),
    # 1, 2, ... per characteristic (revision 0006; rows stored before it numbered in id order)
    Column("version", Integer, nullable=True),
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
    # set once the owner's pipeline has started (subscribed): bridge/cluster shows only these
    Column("serving", Boolean, nullable=False, server_default=false()),
)

# One row per live node, renewed with its leases: the nodes the partitions are spread over.
cluster_nodes = Table(
    "cluster_nodes",
    metadata,
    Column("node", String(200), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
