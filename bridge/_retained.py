"""The retained per-characteristic state the bridge keeps current: ``history`` and ``alarms``.

- ``alarms`` (the open violations) is republished whenever the open set changes.
- ``history`` (the last ``history_size`` samples, oldest first) goes out at most once a
  second per characteristic, and all characteristics together share a bandwidth budget
  (``[bridge] history_budget`` bytes a second): the characteristics whose retained history
  has lacked their newest samples longest go first, and none is sent while the broker has
  more than a budget's worth of bytes unconfirmed. At 10,000 characteristics the retained
  history therefore trails the live samples by up to characteristics x history bytes /
  budget (docs/bridge.md, "history"; docs/performance.md, "Plant scale").
- Each history sample is kept once, compactly: its JSON (the very bytes of its ``sample``
  message), and every :data:`CHUNK` samples of a characteristic are compressed together.
  A history message is built (decompressed and joined) only when it is due.

Both are published with ``coalesce=True``: while the broker lags, a newer history or
alarms replaces a held older one in the MQTT adapter instead of queueing behind it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, overload

from bridge.domain import SampleRecorded, ViolationAcknowledged, ViolationCreated
from bridge.ports import Publisher
from bridge.wire import Topics
from bridge.wire.payloads import (
    dumps,
    encode_alarms,
    encode_history,
    encode_sample_json,
    violation_payload,
)

__all__ = ["DEFAULT_HISTORY_BUDGET", "LiveState"]

log = logging.getLogger("openspc.handlers")

DEFAULT_HISTORY_BUDGET = 1_000_000
"""Bytes a second of ``history`` messages, all characteristics together (docs/bridge.md)."""
CHUNK = 16
"""Samples compressed together (zlib level 1 with :data:`_ZDICT`: ~1 us a sample, about 12x
smaller than their JSON)."""
_WBITS = 13
"""An 8 kB window: a chunk is about 5 kB. zlib's default 32 kB window made each chunk's
compressor three times as costly to set up (67 -> 20 us a chunk) for the same bytes."""
_ZDICT = (
    b'{"sample_id":1,"characteristic_id":1,"timestamp":"2026-01-01T00:00:00.000Z",'
    b'"value":10.0,"values":[10.0],"range":null,"zone":"C","in_control":true,'
    b'"failed_rules":[],"range_failed_rules":[],"context":{},"limits_version":1,'
    b'"excluded":false,"out_of_spec":null,"due_at":null,"statistic":null,"ucl":null,'
    b'"lcl":null,"cusum_upper":null,"cusum_lower":null,"inspected":null,"units":null}'
)
"""A preset dictionary for every chunk: a sample's key names, as a history's samples spell
them. A chunk then starts with its keys already known: about a third smaller (484 -> 312
bytes a chunk of 16 samples; 550 -> 375 with a due time), about 10 MB less at 10,000
characteristics of 100 samples (docs/performance.md). Fixed forever within a process (the
rings live in memory only); a payload with other keys only compresses a little less."""


def _pack(raw: bytes) -> bytes:
    packer = zlib.compressobj(1, zlib.DEFLATED, _WBITS, 8, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return packer.compress(raw) + packer.flush()


def _unpack(chunk: bytes) -> bytes:
    unpacker = zlib.decompressobj(_WBITS, _ZDICT)
    return unpacker.decompress(chunk) + unpacker.flush()


SHUTDOWN_BUDGET_SECONDS = 10.0
"""A clean stop flushes at most this many seconds of the budget (the rest at the next start)."""


class _Ring:
    """One characteristic's last samples as JSON: whole chunks compressed, the newest open."""

    __slots__ = ("count", "counts", "open", "packed")

    def __init__(self) -> None:
        self.packed: list[bytes] = []  # zlib of b"\n".join(CHUNK samples' JSON), oldest first
        self.counts: list[int] = []
        self.open: list[bytes] = []
        self.count = 0  # samples held (>= size once full: whole chunks are dropped)

    def append(self, encoded: bytes, size: int) -> None:
        self.open.append(encoded)
        self.count += 1
        if len(self.open) >= CHUNK:
            # JSON escapes newlines inside strings: b"\n" separates samples unambiguously
            self.packed.append(_pack(b"\n".join(self.open)))
            self.counts.append(len(self.open))
            self.open = []
        while self.counts and self.count - self.counts[0] >= size:
            self.count -= self.counts.pop(0)
            self.packed.pop(0)

    def samples(self, size: int) -> list[bytes]:
        """The last ``size`` samples' JSON, oldest first."""
        out: list[bytes] = []
        for chunk in self.packed:
            out.extend(_unpack(chunk).split(b"\n"))
        out.extend(self.open)
        return out[-size:] if len(out) > size else out

    def last(self) -> bytes | None:
        if self.open:
            return self.open[-1]
        if self.packed:
            return _unpack(self.packed[-1]).rsplit(b"\n", 1)[-1]
        return None


class _Decoded(Sequence[dict[str, Any]]):
    """A characteristic's history as sample payloads, decoded only when an item is asked for
    (start-up wants the last one of each)."""

    def __init__(self, ring: _Ring | None, size: int) -> None:
        self._ring = ring
        self._size = size

    def __len__(self) -> int:
        return 0 if self._ring is None else min(self._ring.count, self._size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._ring is not None:
            yield from (json.loads(s) for s in self._ring.samples(self._size))

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if self._ring is None:
            if isinstance(index, slice):
                return []
            raise IndexError(index)
        if index == -1 and self._ring.count:
            last = self._ring.last()
            assert last is not None
            return dict(json.loads(last))
        decoded = [json.loads(s) for s in self._ring.samples(self._size)]
        return decoded[index]


class _HistoryView(Mapping[int, Sequence[dict[str, Any]]]):
    def __init__(self, live: LiveState) -> None:
        self._live = live

    def __getitem__(self, cid: int) -> Sequence[dict[str, Any]]:
        if cid not in self._live.alarms:
            raise KeyError(cid)
        return _Decoded(self._live._rings.get(cid), self._live.history_size)  # noqa: SLF001  the view is LiveState's own read-only face, defined beside it

    def __iter__(self) -> Iterator[int]:
        return iter(self._live.alarms)

    def __len__(self) -> int:
        return len(self._live.alarms)


class LiveState:
    """The retained ``history`` (last N samples) and ``alarms`` (open violations) topics.

    ``budget`` is ``history`` bytes a second for all characteristics; ``backlog`` (the MQTT
    adapter's unconfirmed bytes) holds histories back while the broker lags, and ``full``
    (the adapter at its ``outbound_max``) stops them as the pipeline is stopped.
    """

    def __init__(
        self,
        mqtt: Publisher,
        prefix: str,
        history_size: int,
        characteristic_ids: Sequence[int],
        min_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        budget: float = DEFAULT_HISTORY_BUDGET,
        backlog: Callable[[], int] | None = None,
        full: Callable[[], bool] | None = None,
    ) -> None:
        self.mqtt = mqtt
        self.prefix = prefix
        self.topics = Topics(prefix)
        self.history_size = history_size
        self.min_interval = min_interval
        self.monotonic = monotonic
        self.budget = float(budget)
        self.backlog = backlog
        self.full = full
        self._rings: dict[int, _Ring] = {}  # made on first sample (10,000 empty ones cost)
        self.alarms: dict[int, dict[int, dict[str, Any]]] = {cid: {} for cid in characteristic_ids}
        # characteristics whose retained history lacks samples, longest-waiting first
        self._dirty: dict[int, None] = {}
        self._last_history: dict[int, float] = {}
        self._tokens = self.budget  # a token bucket of bytes, one second deep
        self._tokens_at = monotonic()
        self._scheduled = False
        self.history_bytes = 0  # history bytes published since start (metrics, tests)
        self.history_sent = 0

    @property
    def history(self) -> Mapping[int, Sequence[dict[str, Any]]]:
        """Each characteristic's history as sample payloads (decoded on access)."""
        return _HistoryView(self)

    def restore(
        self, history: Mapping[int, Sequence[dict[str, Any]]], alarms: Sequence[dict[str, Any]]
    ) -> None:
        for cid, samples in history.items():
            if cid in self.alarms:
                ring = self._rings.setdefault(cid, _Ring())
                for sample in samples[-self.history_size :]:
                    ring.append(dumps(sample), self.history_size)
        for violation in alarms:
            open_set = self.alarms.get(violation["characteristic_id"])
            if open_set is not None:
                open_set[violation["violation_id"]] = violation

    # --- events ---------------------------------------------------------------------------

    def on_sample(self, event: SampleRecorded) -> None:
        cid = event.sample.characteristic_id
        if cid not in self.alarms:
            return
        encoded = encode_sample_json(event)
        ring = self._rings.get(cid)
        if ring is None:
            ring = self._rings[cid] = _Ring()
        ring.append(encoded, self.history_size)
        self.publish_history(cid)

    def on_violation(self, event: ViolationCreated) -> None:
        cid = event.violation.characteristic_id
        open_set = self.alarms.get(cid)
        if open_set is None:
            return
        open_set[event.violation_id] = violation_payload(
            event.violation_id, event.sample_id, event.violation
        )
        self.publish_alarms(cid)

    def on_ack(self, event: ViolationAcknowledged) -> None:
        open_set = self.alarms.get(event.characteristic_id)
        if open_set is not None and open_set.pop(event.violation_id, None) is not None:
            self.publish_alarms(event.characteristic_id)

    # --- publishing -----------------------------------------------------------------------

    def publish_history(self, cid: int) -> None:
        """Ask for ``cid``'s history to go out: as soon as its second is up and the budget
        allows (right after the current batch when both do)."""
        if cid not in self.alarms:
            return
        if cid not in self._dirty:
            self._dirty[cid] = None
        if not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (unit tests): the caller pumps
                return
            self._scheduled = True
            loop.call_soon(self.pump)

    def update_samples(
        self, cid: int, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> int:
        """Rewrite ``cid``'s history samples in place (e.g. mark one ``excluded``):
        ``change`` gets each sample payload and returns a new one, or None to keep it.
        Republishes the history (within the budget) when something changed; the count."""
        ring = self._rings.get(cid)
        if ring is None:
            return 0
        samples = ring.samples(self.history_size)
        new = _Ring()
        changed = 0
        for encoded in samples:
            updated = change(json.loads(encoded))
            if updated is not None:
                encoded = dumps(updated)
                changed += 1
            new.append(encoded, self.history_size)
        if changed:
            self._rings[cid] = new
            self.publish_history(cid)
        return changed

    def history_message(self, cid: int) -> bytes:
        """The ``history`` message of ``cid`` now (bridge/wire/payloads.py)."""
        ring = self._rings.get(cid)
        return encode_history(cid, ring.samples(self.history_size) if ring is not None else [])

    def send_history(self, cid: int) -> int:
        """Publish ``cid``'s history now, whatever the budget; its size in bytes."""
        self._dirty.pop(cid, None)
        self._last_history[cid] = self.monotonic()
        message = self.history_message(cid)
        self.mqtt.publish(self.topics.history(cid), message, retain=True, coalesce=True)
        self.history_bytes += len(message)
        self.history_sent += 1
        return len(message)

    def pump(self) -> None:
        """Send the histories that are due, within the budget: each characteristic at most
        once per ``min_interval``, the longest-waiting first."""
        self._scheduled = False
        if not self._dirty:
            return
        now = self.monotonic()
        self._tokens = min(self.budget, self._tokens + (now - self._tokens_at) * self.budget)
        self._tokens_at = now
        if self._tokens <= 0:
            return
        if self.backlog is not None and self.backlog() > self.budget:
            return  # the broker has a second's worth unconfirmed: let it catch up first
        due = now - self.min_interval
        last = self._last_history
        full = self.full
        for cid in list(self._dirty):
            if last.get(cid, -math.inf) > due:
                continue  # sent less than min_interval ago: stays first in line
            if full is not None and full():
                return  # as many publishes unconfirmed as the bridge allows: later
            self._tokens -= self.send_history(cid)
            if self._tokens <= 0:
                return

    def publish_alarms(self, cid: int) -> None:
        violations = [self.alarms[cid][vid] for vid in sorted(self.alarms[cid])]
        self.mqtt.publish(
            self.topics.alarms(cid), encode_alarms(cid, violations), retain=True, coalesce=True
        )

    def flush_idle(self) -> None:
        """The pipeline has nothing waiting: send what is due (within the budget)."""
        self.pump()

    def flush(self, *, force: bool = False) -> None:
        """Send what is due; with ``force`` (a clean stop) every changed history, regardless
        of the once-a-second rule, up to :data:`SHUTDOWN_BUDGET_SECONDS` of the budget."""
        if not force:
            self.pump()
            return
        allowance = self.budget * SHUTDOWN_BUDGET_SECONDS
        for cid in list(self._dirty):
            if allowance <= 0:
                log.warning(
                    "%d histories not republished on stopping (budget %d bytes/s); "
                    "the next start publishes them from the database",
                    len(self._dirty),
                    self.budget,
                )
                return
            allowance -= self.send_history(cid)

    async def run(self, stop: asyncio.Event) -> None:
        """Send due histories a few times a second until ``stop``."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.min_interval / 4)
            except TimeoutError:
                self.pump()
