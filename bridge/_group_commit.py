"""Group commit: a batch is whatever arrived while the previous batch was being written.

The pipeline used to wait a fixed ``batch_ms`` (5 ms) for a batch to fill, so at a steady
2,000 readings/s every reading waited about 5 ms before anything was done with it
(docs/performance.md). With group commit the wait is the write in flight, and only that:

- nothing being written: take what is waiting now (at least one message) and go;
- a batch being written: take what is waiting, then wait for that write to finish and take
  what arrived meanwhile too (at most ``batch_max`` in all).

So a reading waits for at most the write in flight plus its own; at low rates batches are
small and immediate, under load they grow by themselves up to ``batch_max``. The order of
commits, acks and publishes is the pipeline's as before (a write still starts only after the
previous one has committed). A positive ``batch_ms`` keeps the fixed wait instead
(docs/configuration.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bridge._mqtt import Inbox

__all__ = ["take_batch"]


async def take_batch(
    inbox: Inbox,
    max_items: int,
    max_wait: float,
    writing: asyncio.Future[Any] | None,
    stop: asyncio.Event | None = None,
) -> list[Any]:
    """The next batch: at least one item (or [] once ``stop`` is set and nothing waits)."""
    if max_wait > 0:
        return await inbox.take(max_items, max_wait, stop)
    items = await inbox.take(max_items, 0.0, stop)
    if writing is None or writing.done() or len(items) >= max_items:
        return items
    # its failure is the pipeline's to see (wait_written); here only its end counts
    await asyncio.wait((writing,))
    if len(inbox):
        items += await inbox.take(max_items - len(items), 0.0, stop)
    return items
