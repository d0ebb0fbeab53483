"""The reconnect loop the bridge's two Sparkplug connections share (the edge node and the
Primary Host's STATE connection): one session after another until ``stop``, a clean close
when it is set, and ``delay`` seconds between a lost session and the next."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["keep_sessions"]

log = logging.getLogger("openspc.sparkplug")


async def keep_sessions(
    stop: asyncio.Event,
    session: Callable[[], Awaitable[None]],
    close: Callable[[asyncio.Future[None]], Awaitable[None]],
    *,
    delay: float,
    what: str,
    ready: asyncio.Event | None = None,
) -> None:
    """Run ``session()`` again and again until ``stop`` is set, then ``close`` the running
    one. With ``ready``, a session starts only while it is set (waited for, not polled)."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            if ready is not None and not ready.is_set():
                up = asyncio.ensure_future(ready.wait())
                await asyncio.wait({up, stopping}, return_when=asyncio.FIRST_COMPLETED)
                up.cancel()
                continue
            running = asyncio.ensure_future(session())
            done, _ = await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if running not in done:
                await close(running)
                return
            with contextlib.suppress(asyncio.CancelledError):
                if exc := running.exception():
                    log.warning("%s connection lost: %s", what, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    finally:
        stopping.cancel()
