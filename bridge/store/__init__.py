"""Persistence: readings, samples, violations, limits and engine state (SQLAlchemy 2)."""

from bridge.store import _alembic_log  # noqa: F401  before Alembic is ever imported
from bridge.store._schema import SchemaTooNew, SchemaUnrecognized, SchemaUpgradeFailed
from bridge.store._store import (
    DEAD_LETTER_PAYLOAD_BYTES,
    BatchWrite,
    DeadLetter,
    IdAllocator,
    SampleRow,
    Store,
    UnitOfWork,
    ViolationRecord,
    decode_rules,
    decode_values,
    encode_rules,
    encode_values,
)
from bridge.store._tables import metadata

__all__ = [
    "DEAD_LETTER_PAYLOAD_BYTES",
    "BatchWrite",
    "DeadLetter",
    "IdAllocator",
    "SampleRow",
    "SchemaTooNew",
    "SchemaUnrecognized",
    "SchemaUpgradeFailed",
    "Store",
    "UnitOfWork",
    "ViolationRecord",
    "decode_rules",
    "decode_values",
    "encode_rules",
    "encode_values",
    "metadata",
]
