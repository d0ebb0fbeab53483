"""Fan-out: each message from the broker, encoded once, to the clients that want it.

Every write is synchronous (websockets' :func:`broadcast`), so a client's messages leave in
the order they were routed, and no client ever makes the gateway wait. A client's backlog is
what its socket has not taken yet (the transport's write buffer); past ``queue_bytes`` the
client is too slow: it gets nothing more, and is closed with 1008 (aborted after
``close_timeout`` when it reads nothing at all). docs/gateway.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from websockets.asyncio.server import ServerConnection, broadcast

from bridge.gateway._protocol import Subscribe

__all__ = ["Client", "Hub", "Subscription"]

log = logging.getLogger("openspc.gateway")

SLOW_CLOSE_CODE: Final = 1008


@dataclass(slots=True)
class Subscription:
    """One client's interest in one characteristic."""

    severities: frozenset[str] | None = None
    max_rate: float | None = None
    next_at: float = 0.0  # loop time from which the next sample may go (with max_rate)
    pending: bytes | None = None  # the latest sample held back by max_rate
    timer: asyncio.TimerHandle | None = None

    @property
    def plain(self) -> bool:
        return self.severities is None and self.max_rate is None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pending = None


@dataclass(eq=False, slots=True)
class Client:
    ws: ServerConnection
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    closing: bool = False


@dataclass(slots=True)
class _Route:
    """The subscribers of one characteristic; ``plain`` (no filter, no rate) cached."""

    subs: dict[Client, Subscription] = field(default_factory=dict)
    _plain: list[ServerConnection] | None = None
    _special: list[tuple[Client, Subscription]] | None = None

    def changed(self) -> None:
        self._plain = None
        self._special = None

    def split(self) -> tuple[list[ServerConnection], list[tuple[Client, Subscription]]]:
        if self._plain is None or self._special is None:
            self._plain = [c.ws for c, s in self.subs.items() if s.plain and not c.closing]
            self._special = [(c, s) for c, s in self.subs.items() if not s.plain]
        return self._plain, self._special


class Hub:
    """The connected clients and who subscribed to what."""

    def __init__(self, queue_bytes: int, close_timeout: float = 5.0) -> None:
        self.queue_bytes = queue_bytes
        self.close_timeout = close_timeout
        self.clients: dict[ServerConnection, Client] = {}
        self._routes: dict[int, _Route] = {}
        self._loop = asyncio.get_running_loop()
        self._closers: set[asyncio.Task[None]] = set()
        self.slow_closed = 0  # clients closed for falling behind
        self._changed = asyncio.Event()  # a client came or went

    # --- clients -------------------------------------------------------------------------

    def add(self, ws: ServerConnection) -> Client:
        client = Client(ws)
        self.clients[ws] = client
        self._changed.set()
        return client

    def remove(self, client: Client) -> None:
        self.clients.pop(client.ws, None)
        self._changed.set()
        for cid in list(client.subscriptions):
            self._unroute(client, cid)

    async def wait_clients(self, count: int) -> None:
        """Until exactly ``count`` clients are connected (for tests and benchmarks)."""
        while len(self.clients) != count:
            self._changed.clear()
            await self._changed.wait()

    def subscribe(self, client: Client, request: Subscribe, cids: Iterable[int]) -> list[int]:
        """Subscribe ``client`` to ``cids`` with the request's options; returns the ids that
        are new to it (an id it already has just takes the new options)."""
        added = []
        for cid in cids:
            old = client.subscriptions.get(cid)
            if old is None:
                added.append(cid)
            else:
                old.cancel()
            sub = Subscription(request.severities, request.max_rate)
            client.subscriptions[cid] = sub
            route = self._routes.setdefault(cid, _Route())
            route.subs[client] = sub
            route.changed()
        return added

    def unsubscribe(self, client: Client, cids: Iterable[int]) -> None:
        for cid in cids:
            self._unroute(client, cid)

    def _unroute(self, client: Client, cid: int) -> None:
        sub = client.subscriptions.pop(cid, None)
        if sub is not None:
            sub.cancel()
        route = self._routes.get(cid)
        if route is not None and route.subs.pop(client, None) is not None:
            route.changed()
            if not route.subs:
                del self._routes[cid]

    # --- delivery ------------------------------------------------------------------------

    def send(self, client: Client, data: bytes) -> None:
        """One message to one client (a reply, a replayed message)."""
        self._deliver([client.ws], data)

    def send_many(self, client: Client, messages: Iterable[bytes]) -> None:
        for data in messages:
            self._deliver([client.ws], data)

    def to_all(self, data: bytes) -> None:
        """An acknowledgement, or news about the broker: every client."""
        self._deliver([ws for ws, c in self.clients.items() if not c.closing], data)

    def to_subscribers(self, cid: int, data: bytes) -> None:
        """Limits: every subscriber of ``cid``."""
        route = self._routes.get(cid)
        if route is not None:
            self._deliver([c.ws for c in route.subs if not c.closing], data)

    def sample(self, cid: int, data: bytes) -> None:
        """A sample: at once to plain subscribers; through each rate limit to the others."""
        route = self._routes.get(cid)
        if route is None:
            return
        plain, special = route.split()
        if plain:
            self._deliver(plain, data)
        for client, sub in special:
            if client.closing:
                continue
            if sub.max_rate is None:
                self._deliver([client.ws], data)
            else:
                self._rate_limited(client, sub, data)

    def violation(self, cid: int, severity: object, data: bytes) -> None:
        """A violation: every subscriber whose severities (if any) include it; never held."""
        route = self._routes.get(cid)
        if route is None:
            return
        plain, special = route.split()
        targets = list(plain)
        for client, sub in special:
            if not client.closing and (sub.severities is None or severity in sub.severities):
                targets.append(client.ws)
        if targets:
            self._deliver(targets, data)

    def _rate_limited(self, client: Client, sub: Subscription, data: bytes) -> None:
        now = self._loop.time()
        if sub.pending is None and now >= sub.next_at:
            assert sub.max_rate is not None
            sub.next_at = now + 1.0 / sub.max_rate
            self._deliver([client.ws], data)
            return
        sub.pending = data  # the latest is kept
        if sub.timer is None:
            sub.timer = self._loop.call_at(sub.next_at, self._release, client, sub)

    def _release(self, client: Client, sub: Subscription) -> None:
        sub.timer = None
        data, sub.pending = sub.pending, None
        if data is not None and not client.closing:
            assert sub.max_rate is not None
            sub.next_at = self._loop.time() + 1.0 / sub.max_rate
            self._deliver([client.ws], data)

    def _deliver(self, targets: list[ServerConnection], data: bytes) -> None:
        limit = self.queue_bytes
        ready = []
        for ws in targets:
            transport = ws.transport
            if transport is None or transport.get_write_buffer_size() <= limit:
                ready.append(ws)
            else:
                self._too_slow(ws)
        if ready:
            broadcast(ready, data, text=True)

    # --- slow clients --------------------------------------------------------------------

    def _too_slow(self, ws: ServerConnection) -> None:
        client = self.clients.get(ws)
        if client is None or client.closing:
            return
        client.closing = True
        self.slow_closed += 1
        backlog = ws.transport.get_write_buffer_size()
        log.warning(
            "client %s is too slow (%d bytes waiting): closing it with 1008",
            ws.remote_address,
            backlog,
        )
        for cid in list(client.subscriptions):
            self._unroute(client, cid)
        task = self._loop.create_task(self._close(ws, backlog), name="gateway-close-slow")
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _close(self, ws: ServerConnection, backlog: int) -> None:
        reason = f"too slow: {backlog} bytes waiting"
        try:
            async with asyncio.timeout(self.close_timeout):
                await ws.close(SLOW_CLOSE_CODE, reason)
        except TimeoutError:
            ws.transport.abort()  # it reads nothing at all: drop it

    async def aclose(self) -> None:
        for task in list(self._closers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
