"""Group commit: a batch is whatever arrived while the previous batch was being written.

The pipeline used to wait a fixed ``batch_ms`` (5 ms) for a batch to fill, so at a steady
2,000 readings/s every reading waited about 5 ms before anything was done with it
(docs/performance.md). With group commit the wait is the write in flight, and only that:

- nothing being written: take what is waiting now (at least one message) and go;
- a batch being written: take what is waiting, and what arrives until that write has
  finished (at most ``batch_max`` in all); a full batch that is waiting already goes at
  once.

So a reading waits for at most the write in flight plus its own; at low rates batches are
small and immediate, under load they grow by themselves up to ``batch_max``.

While a write is in flight the batch is handed over (``part``) as it is taken, so that it is
parsed (fed to the engines) during the write instead of after it: what waits now at once,
then what arrives while the write lasts, then what arrived just before it ended. Before,
the batch was gathered until the write ended and only then parsed: at 10,000
characteristics the loop sat idle about a quarter of the time, waiting for writes, while the
backlog grew (docs/performance.md).

``not_before`` (the last batch's start plus ``[bridge] commit_interval_ms``) caps the
batches a second: a batch that would start sooner waits out the rest first (a full batch goes
at once), so a steady stream of readings is committed in batches of a few milliseconds'
worth instead of a transaction for every two or three readings, each with its fixed cost
(the hand-over to the writer, the engine snapshots, the commit's fsync, the acks' write).
A reading after a quiet spell goes at once. The order of
commits, acks and publishes is the pipeline's as before (a write still starts only after the
previous one has committed). A positive ``batch_ms`` keeps the fixed wait instead
(docs/configuration.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.pipeline import Inbox

__all__ = ["take_batch"]


async def take_batch(
    inbox: Inbox,
    max_items: int,
    max_wait: float,
    writing: asyncio.Future[Any] | None,
    stop: asyncio.Event | None = None,
    taken: Callable[[int], None] = lambda count: None,
    not_before: float = 0.0,
    *,
    part: Callable[[list[Any]], Awaitable[None]],
) -> list[Any]:
    """The next batch: at least one item (or [] once ``stop`` is set and nothing waits).

    ``taken(count)`` is told of every item as it leaves the inbox, before any wait: the
    items gathered while a write is retried through an outage are held by the pipeline,
    and its bound (``buffer_max``) must count them (docs/reliability.md). A full batch
    waiting already goes at once: it is parsed while the previous batch is written.
    ``not_before`` (``time.monotonic()``): a batch that is not full waits until then.

    ``part``: while a write is in flight, each part of the batch is handed to it as it is
    taken (in order), and only what is left is returned (the last part; may be empty).
    Otherwise the whole batch is returned.
    """
    if max_wait > 0:
        items = await inbox.take(max_items, max_wait, stop)
        taken(len(items))
        return items
    items = await inbox.take(max_items, 0.0, stop)
    taken(len(items))
    early = not_before - time.monotonic()
    if early > 0 and len(items) < max_items and not (stop is not None and stop.is_set()):
        await asyncio.sleep(early)  # at most commit_interval_ms: the batches a second are capped
        if len(inbox):
            more = await inbox.take(max_items - len(items), 0.0, stop)
            taken(len(more))
            items += more
    if writing is None or writing.done() or len(items) >= max_items:
        return items
    return await _parts(inbox, max_items, writing, stop, taken, part, items)


async def _parts(
    inbox: Inbox,
    max_items: int,
    writing: asyncio.Future[Any],
    stop: asyncio.Event | None,
    taken: Callable[[int], None],
    part: Callable[[list[Any]], Awaitable[None]],
    items: list[Any],
) -> list[Any]:
    """Hand ``items`` and what arrives while ``writing`` lasts to ``part``; what arrived
    before it ended is returned. The write's failure is the pipeline's to see
    (wait_written): here only its end counts."""
    written = asyncio.Event()

    def ended(_: object) -> None:
        written.set()
        inbox.wake()  # a take waiting for an item sees the end of the write

    writing.add_done_callback(ended)
    count = len(items)
    await part(items)
    while count < max_items and not written.is_set():
        more = await inbox.take(max_items - count, 0.0, written)  # [] once the write ended
        if more:
            taken(len(more))
            count += len(more)
            await part(more)
    if count >= max_items or not len(inbox):
        return []
    last = await inbox.take(max_items - count, 0.0, stop)
    taken(len(last))
    return last
