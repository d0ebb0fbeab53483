"""Persistence: readings, samples, violations, limits and engine state (SQLAlchemy 2)."""

from bridge.store._store import BatchWrite, IdAllocator, Store, UnitOfWork, ViolationRecord
from bridge.store._tables import metadata

__all__ = ["BatchWrite", "IdAllocator", "Store", "UnitOfWork", "ViolationRecord", "metadata"]
