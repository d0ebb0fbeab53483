"""Finding the message(s) that make a batch's write fail (docs/bridge.md, "Poison messages").

A batch is the rows of many messages, written in one transaction. When that write fails for
a reason other than an unavailable database (a lone surrogate in a text column, a NUL on
PostgreSQL, an ``IntegrityError``, a ``TypeError`` from a bug), the batch is split in halves,
each written in its own transaction, and so on down to single messages: the halves that
write are committed (once: a committed half is never written again), the single messages
that still fail are the poison. A batch of ``n`` messages with one poison takes about
``2 log2 n`` extra transactions (18 for 500).

Pure: the writes are a function passed in, so the search is tested with a fake store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bridge.errors import StoreUnavailable

__all__ = ["isolate"]

WriteRange = Callable[[int, int], Awaitable[None]]
"""Write the rows of messages ``lo`` (inclusive) to ``hi`` (exclusive) in one transaction,
waiting out an unavailable database; raise for any other failure."""


async def isolate(lo: int, hi: int, write: WriteRange) -> list[tuple[int, Exception]]:
    """Write messages ``lo..hi`` by halves; the single messages whose write fails, with why.

    :class:`~bridge.errors.StoreUnavailable` (giving up on an outage while stopping)
    propagates: that is not the messages' fault.
    """
    if hi <= lo:
        return []
    try:
        await write(lo, hi)
    except StoreUnavailable:
        raise
    except Exception as exc:
        if hi - lo == 1:
            return [(lo, exc)]
        mid = (lo + hi) // 2
        return await isolate(lo, mid, write) + await isolate(mid, hi, write)
    return []
