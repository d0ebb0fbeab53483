"""The pipeline's input: :class:`Inbound` deliveries (each with its own ``.ack()``) and the
bounded :class:`Inbox` they wait in.

The MQTT adapter (``bridge/_mqtt.py``) makes the deliveries and fills the inbox; other
sources put :class:`~bridge.pipeline.Submission` items in the same inbox. Which deliveries
may still be acknowledged is the :class:`~bridge.pipeline.AckTracker`'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Inbound", "Inbox"]


@dataclass(slots=True)
class Inbound:
    """One received MQTT message (a delivery), as the pipeline sees it."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int
    received_at: datetime
    received: float  # time.monotonic() at receipt
    response_topic: str | None = None
    correlation_data: bytes | None = None
    dup: bool = False  # the broker says it may have sent this before (same packet id)
    # the link that delivered it: sends the PUBACK, if the AckTracker says it still may
    acker: Callable[[Inbound], None] | None = field(default=None, repr=False, compare=False)

    def ack(self) -> None:
        """Acknowledge to the broker (a no-op for QoS 0 and for a connection since lost)."""
        if self.acker is not None:
            self.acker(self)


class Inbox:
    """A bounded FIFO filled from the loop or any thread, drained by one asyncio consumer."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._items: deque[Any] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()
        self._wake_pending = False
        self._loop_thread: int | None = None
        self.dropped = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any, *, droppable: bool = False) -> bool:
        """Add an item (from any thread). A droppable item (QoS 0) is dropped when full."""
        if droppable and len(self._items) >= self.maxlen:
            self.dropped += 1
            return False
        self._items.append(item)
        if self._loop_thread == threading.get_ident():
            self._event.set()
        elif not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            # the loop may be closed already when we are shutting down
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._event.set)
        return True

    def drop_stale(self, generation: int) -> int:
        """Forget QoS 1 messages of earlier connections (the broker delivers them again);
        on a reconnect, so that a long outage does not pile up one buffer per connection."""
        stale = [
            i
            for i in self._items
            if isinstance(i, Inbound) and i.qos > 0 and i.generation != generation
        ]
        if stale:
            self._items = deque(
                i
                for i in self._items
                if not (isinstance(i, Inbound) and i.qos > 0 and i.generation != generation)
            )
        return len(stale)

    def wake(self) -> None:
        """Wake the consumer (from the loop's thread), e.g. to notice a stop request."""
        self._event.set()

    async def take(
        self, max_items: int, max_wait: float, stop: asyncio.Event | None = None
    ) -> list[Any]:
        """Wait for at least one item; then gather up to ``max_items``, waiting at most
        ``max_wait`` seconds for more. Returns [] when ``stop`` is set and nothing is queued."""
        while not self._items:
            if stop is not None and stop.is_set():
                return []
            self._wake_pending = False
            self._event.clear()
            if self._items:
                break
            await self._event.wait()
        if len(self._items) < max_items and max_wait > 0:
            deadline = time.monotonic() + max_wait
            while len(self._items) < max_items:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    break
                self._wake_pending = False
                self._event.clear()
                try:
                    await asyncio.wait_for(self._event.wait(), remaining)
                except TimeoutError:
                    break
        count = min(max_items, len(self._items))
        return [self._items.popleft() for _ in range(count)]
