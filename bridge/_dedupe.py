"""Redelivered readings are recognised by what they are, and never stored twice.

The bridge acknowledges a QoS 1 reading only after the transaction that stored it has
committed. A crash (or a lost connection) between the commit and the PUBACK therefore makes
the broker deliver the reading again, and a gauge that lost a PUBACK publishes it again.

A reading that carries its own ``ts`` has an identity that does not depend on the broker:
``(characteristic, ts, values)``. :class:`SeenReadings` remembers the identities of the
last ``size`` such readings; a reading seen again is acknowledged and counted
(``readings_duplicate``), not fed to the engine. The memory survives a restart because it
is rebuilt from the ``readings`` table, which is written in the same transaction as the
samples and the engines' state: whatever the database says was consumed, was consumed.

``size`` must cover what can be in flight: the broker sends at most Receive Maximum
(``buffer_max``) unacknowledged messages, so a window of that many readings (plus the
batches being written) holds every reading that can come back.

A reading without ``ts`` has no identity (its timestamp is the time of arrival, which
differs on redelivery): such readings are delivered at least once. See docs/reliability.md.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from bridge.store import Store, metadata

__all__ = ["ReadingKey", "SeenReadings"]

ReadingKey = tuple[int, datetime, tuple[float, ...]]


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


class SeenReadings:
    """The identities of the last ``size`` readings with a source ``ts``, oldest first."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        # OrderedDict, not dict: dropping the oldest of a plain dict (next(iter(d))) walks
        # the slots of every key deleted before it, which made this quadratic
        self._keys: OrderedDict[ReadingKey, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: ReadingKey) -> bool:
        return key in self._keys

    def add(self, key: ReadingKey) -> bool:
        """Remember ``key``; False when it was already there (a duplicate)."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return True

    async def load(
        self, store: Store, max_rows: int, characteristic_ids: Iterable[int] = ()
    ) -> None:
        """Rebuild from the last ``max_rows`` stored readings (one row per value) of these
        characteristics (all when none are named: other bridges on the same database write
        their own rows in between).

        Plain driver rows, no SQLAlchemy type processing: this runs at every start over up
        to a few hundred thousand rows (10 s through the ORM types, well under 1 s so).
        """
        table = metadata.tables["readings"].name
        ids = ",".join(str(int(cid)) for cid in characteristic_ids)
        where = f" WHERE characteristic_id IN ({ids})" if ids else ""
        sql = (
            f"SELECT characteristic_id, value, ts, received_at FROM {table}{where}"  # noqa: S608  # no input: our table, ints
            f" ORDER BY id DESC LIMIT {int(max_rows)}"
        )
        async with store.engine.connect() as conn:
            rows: list[Any] = list((await conn.exec_driver_sql(sql)).fetchall())
        rows.reverse()
        # the values of one message share characteristic, ts and time of arrival
        groups: dict[tuple[int, Any, Any], list[float]] = {}
        for row in rows:
            cid, value, ts, received_at = row[0], row[1], row[2], row[3]
            if ts == received_at:
                continue  # no source ts: the time of arrival was used, no identity
            groups.setdefault((cid, ts, received_at), []).append(float(value))
        for (cid, ts, _), values in list(groups.items())[-self.size :]:
            self.add((int(cid), _datetime(ts), tuple(values)))


def _datetime(value: Any) -> datetime:
    """A stored ``ts`` as an aware datetime (SQLite gives text, PostgreSQL datetimes)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return _aware(value)
