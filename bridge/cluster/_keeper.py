"""The node's heartbeat and lease renewals, on a thread and a connection of their own
(docs/scale-out.md, "Leases with a fencing token").

Under full load the node's event loop runs one partition's batch after another's, and each
await of a database round trip waits a whole turn of the loop: a round of heartbeat and
renewals (a dozen round trips and more) took longer than the lease, so a saturated node let
its own leases lapse, stopped all its partitions and took them again, again and again
(``openspc bench --workers``, docs/performance.md). :class:`LeaseKeeper` renews from a
thread with an event loop and a PostgreSQL connection of its own, in one transaction a
tick, whatever the node's loop is doing. The GIL still has to be taken,
but a waiting thread gets it within the interpreter's switch interval (5 ms).

It keeps a lease only while the node's event loop turns: it asks the loop for a sign each
tick, and when none has come for :data:`LOOP_STALL_S` (a loop hung in a blocking call) it
stops renewing, so that the node's partitions fail over as they would have without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.cluster._leases import heartbeat, renew_all

__all__ = ["LOOP_STALL_S", "KeeperView", "LeaseKeeper"]

log = logging.getLogger("openspc.cluster")

LOOP_STALL_S = 20.0
"""How long the node's event loop may go without a turn before its leases are let go (far
beyond a turn under full load, about a second; a loop that stuck is hung); a longer lease
than this is waited for whole."""


@dataclass
class KeeperView:
    """What the keeper last found, for the node's round (read under the keeper's lock)."""

    renewed_at: float  # monotonic, taken before the last renewal that went through was asked
    live: list[str] | None = None  # the live nodes at the last heartbeat, None before one
    lost: set[tuple[int, int]] = field(default_factory=set)  # (partition, token) not ours
    error: str | None = None  # the last renewal's failure, None once one went through


class LeaseKeeper:
    """Says the node is alive and renews its leases every ``tick`` seconds, from a thread.

    The node tells it what it holds (:meth:`hold`, :meth:`drop`) and reads what it found
    (:meth:`view`, :meth:`take_lost`). ``make_engine`` is called on the keeper's own loop
    (an engine's connections belong to the loop that made them)."""

    def __init__(
        self,
        make_engine: Callable[[], AsyncEngine],
        node: str,
        seconds: float,
        tick: float,
        *,
        loop_stall_s: float = LOOP_STALL_S,
    ) -> None:
        self._make_engine = make_engine
        self.node = node
        self.seconds = float(seconds)
        self.tick = float(tick)
        self.loop_stall_s = max(float(loop_stall_s), float(seconds))
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}
        self._view = KeeperView(renewed_at=time.monotonic())
        self._node_loop: asyncio.AbstractEventLoop | None = None
        self._loop_seen = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="lease-keeper", daemon=True)
        self.renewals = 0  # rounds that went through (for tests and logs)

    # --- the node's side (its event loop's thread) ------------------------------------

    async def start(self) -> None:
        """Start the thread; returns after its first round (went through or failed)."""
        self._node_loop = asyncio.get_running_loop()
        self._loop_seen = time.monotonic()
        self._thread.start()
        await asyncio.to_thread(self._started.wait, 30)

    def hold(self, k: int, token: int) -> None:
        """Renew partition ``k`` under ``token`` from now on."""
        with self._lock:
            self._held[k] = token
            self._view.lost.discard((k, token))

    def drop(self, k: int) -> None:
        """Stop renewing partition ``k`` (before its lease is released)."""
        with self._lock:
            self._held.pop(k, None)

    def view(self) -> KeeperView:
        with self._lock:
            v = self._view
            live = None if v.live is None else list(v.live)
            return KeeperView(v.renewed_at, live, set(v.lost), v.error)

    def take_lost(self) -> set[tuple[int, int]]:
        """The leases found no longer ours since the last call (partition, token)."""
        with self._lock:
            lost, self._view.lost = self._view.lost, set()
            return lost

    async def stop(self) -> None:
        """Stop the thread (it disposes of its engine on its own loop)."""
        self._stopping = True
        self._poke()
        await asyncio.to_thread(self._thread.join, 10)

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)

    def _seen(self) -> None:
        self._loop_seen = time.monotonic()

    # --- the keeper's thread ----------------------------------------------------------

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        finally:
            self._started.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        engine = self._make_engine()
        try:
            while not self._stopping:
                self._wake.clear()
                await self._once(engine)
                self._started.set()  # start() returns after the first round, done or failed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.tick)
        finally:
            await engine.dispose()

    def _ask_node_loop(self) -> float:
        """Ask the node's loop for a sign of life; how long since the last one came."""
        loop = self._node_loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._seen)
        return time.monotonic() - self._loop_seen

    async def _once(self, engine: AsyncEngine) -> None:
        stalled = self._ask_node_loop()
        with self._lock:
            held = dict(self._held)
        if stalled > self.loop_stall_s and held:
            log.error(
                "node %r: its event loop has not turned for %.0f s; its leases are no longer"
                " renewed (its partitions move to other nodes)",
                self.node,
                stalled,
            )
            held = {}
        asked = time.monotonic()
        try:
            async with engine.begin() as conn:  # one transaction a tick
                live = await heartbeat(conn, self.node, self.seconds)
                kept = await renew_all(conn, self.node, self.seconds, held)
        except Exception as exc:  # the database away: the leases run out, fencing holds
            with self._lock:
                if self._view.error is None:
                    log.warning("node %r could not renew its leases: %s", self.node, exc)
                self._view.error = str(exc)
            return
        with self._lock:
            if stalled <= self.loop_stall_s:  # a renewal that renewed what the node holds
                self._view.renewed_at = asked
            self._view.live = live
            self._view.error = None
            for k, token in held.items():
                # still held under that token (not dropped meanwhile) and not renewed
                if (k, token) not in kept and self._held.get(k) == token:
                    self._view.lost.add((k, token))
        self.renewals += 1
