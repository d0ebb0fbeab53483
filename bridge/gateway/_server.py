"""``openspc gateway``: OpenSPC's WebSocket API at ``ws://HOST:PORT/api/v1/ws``.

:class:`Gateway` is the composition root: the websockets asyncio server, the :class:`Hub`
that fans messages out, the :class:`Feed` that reads the broker, and the per-characteristic
state rebuilt from retained messages. Each connection's frames are handled one after the
other, in order; nothing a client sends can make the gateway allocate without bound
(docs/gateway.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import Final

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bridge.config import Settings
from bridge.gateway._feed import BROKER_UNAVAILABLE, Feed
from bridge.gateway._hub import Client, Hub
from bridge.gateway._protocol import (
    PONG,
    BadRequest,
    Ping,
    Subscribe,
    Unsubscribe,
    error_message,
    parse,
    subscribed_message,
    unknown_ids_message,
)
from bridge.gateway._state import Characteristics

__all__ = ["MAX_FRAME_BYTES", "PATH", "Gateway", "run_gateway"]

log = logging.getLogger("openspc.gateway")
_ws_log = logging.getLogger("openspc.gateway.ws")  # websockets' own: a line per connection
if _ws_log.level == logging.NOTSET:
    _ws_log.setLevel(logging.WARNING)  # `openspc gateway --log-level DEBUG` shows them

PATH: Final = "/api/v1/ws"
MAX_FRAME_BYTES: Final = 65_536
"""The largest message a client may send (after decompression); larger closes with 1009."""
READY_WAIT_S: Final = 5.0
"""A subscribe that arrives before the broker's retained state is in waits this long for it."""
CLOSE_TIMEOUT_S: Final = 5.0
SOCKET_SEND_BUFFER: Final = 65_536
"""Each client socket's kernel send buffer, fixed (autotuning on loopback grows it past a
megabyte): with ``client_queue_bytes`` it bounds what a slow client can hold up."""


class Gateway:
    """The gateway, started with :meth:`start` and stopped with :meth:`stop`."""

    def __init__(self, settings: Settings, *, close_timeout: float = CLOSE_TIMEOUT_S) -> None:
        self.settings = settings
        self.options = settings.gateway
        self.close_timeout = close_timeout
        self.chars = Characteristics(self.options.replay_max)
        self.hub: Hub
        self.feed: Feed
        self._server: Server | None = None
        self._feed_task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://{self.options.host}:{self.port}{PATH}"

    async def start(self) -> None:
        """Listen (OSError when the port is taken), then start reading the broker."""
        self.hub = Hub(self.options.client_queue_bytes, self.close_timeout)
        self.feed = Feed(self.settings, self.hub, self.chars)
        self._server = await serve(
            self._connection,
            self.options.host,
            self.options.port,
            process_request=self._route,
            compression="deflate",
            max_size=MAX_FRAME_BYTES,
            close_timeout=self.close_timeout,
            logger=_ws_log,
        )
        self._feed_task = asyncio.create_task(self.feed.run(), name="gateway-feed")

    @property
    def feed_task(self) -> asyncio.Task[None]:
        assert self._feed_task is not None, "start() first"
        return self._feed_task

    async def wait_ready(self) -> None:
        """Until the broker's retained state is in; the feed's error if it failed first."""
        ready = asyncio.create_task(self.feed.ready.wait())
        try:
            done, _ = await asyncio.wait(
                {ready, self.feed_task}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if self.feed_task in done:
            self.feed_task.result()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close(close_connections=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.close_timeout + 1):
                    await self._server.wait_closed()
        if self._feed_task is not None:
            self._feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._feed_task
        await self.hub.aclose()

    # --- connections ---------------------------------------------------------------------

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.partition("?")[0] != PATH:
            return connection.respond(
                HTTPStatus.NOT_FOUND, f"Not Found: OpenSPC's WebSocket API is at {PATH}\n"
            )
        if len(self.hub.clients) >= self.options.max_clients:
            log.warning("refused a client: %d connected (max_clients)", len(self.hub.clients))
            return connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, "Too many clients: try again later\n"
            )
        return None

    async def _connection(self, ws: ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)
        client = self.hub.add(ws)
        idle = self.options.idle_timeout
        try:
            if self.feed.down:
                self.hub.send(client, BROKER_UNAVAILABLE)
            while not client.closing:
                try:
                    async with asyncio.timeout(idle):
                        frame = await ws.recv()
                except TimeoutError:
                    await self._close(ws, 1000, f"idle: no message for {idle:g} s (send a ping)")
                    return
                await self._request(client, frame)
        except ConnectionClosed:
            pass
        finally:
            self.hub.remove(client)

    async def _close(self, ws: ServerConnection, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(self.close_timeout):
                await ws.close(code, reason)
        except TimeoutError:
            ws.transport.abort()

    async def _request(self, client: Client, frame: str | bytes) -> None:
        try:
            request = parse(frame)
        except BadRequest as exc:
            self.hub.send(client, error_message(exc.message))
            return
        if isinstance(request, Ping):
            self.hub.send(client, PONG)
            return
        if not self.feed.ready.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(READY_WAIT_S):
                    await self.feed.ready.wait()
        if client.closing:
            return
        # from here on nothing awaits: no broker message can come between the replies, the
        # replay and the first live message (no gap, no duplicate)
        ids = request.characteristic_ids
        if isinstance(request, Subscribe):
            known = [cid for cid in ids if self.chars.known(cid)]
            unknown = [cid for cid in ids if not self.chars.known(cid)]
            added = self.hub.subscribe(client, request, known)
        else:
            assert isinstance(request, Unsubscribe)
            unknown = [
                cid for cid in ids if not self.chars.known(cid) and cid not in client.subscriptions
            ]
            self.hub.unsubscribe(client, ids)
            added = []
        self.hub.send(client, subscribed_message(client.subscriptions))
        if unknown:
            self.hub.send(client, unknown_ids_message(unknown))
        if isinstance(request, Subscribe) and request.replay is not None:
            self._replay(client, added, request.replay)

    def _replay(self, client: Client, cids: list[int], count: int) -> None:
        """Queue the replay, unless it alone would fill half the client's queue: then an
        error says so and the subscription goes on live (a replay must not get the client
        closed as too slow before it could read a byte)."""
        messages = [m for cid in cids for m in self.chars.replay(cid, count)]
        size = sum(len(m) for m in messages)
        limit = self.options.client_queue_bytes // 2
        if size > limit:
            self.hub.send(
                client,
                error_message(
                    f"replay of {len(messages)} messages ({size} bytes) is more than half of"
                    f" client_queue_bytes ({self.options.client_queue_bytes}): not replayed;"
                    " ask for fewer samples or characteristics"
                ),
            )
            return
        self.hub.send_many(client, messages)


async def run_gateway(
    settings: Settings, stop: asyncio.Event, *, on_ready: Callable[[Gateway], None] | None = None
) -> None:
    """Serve until ``stop`` is set. ``on_ready`` is called once the server listens.

    Raises OSError when the port cannot be bound, and
    :class:`~bridge.gateway.BrokerRefused` when the broker refuses the first connection.
    """
    gateway = Gateway(settings)
    await gateway.start()
    try:
        if on_ready is not None:
            on_ready(gateway)
        stopper = asyncio.create_task(stop.wait(), name="gateway-stop")
        await asyncio.wait({stopper, gateway.feed_task}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if gateway.feed_task.done():
            gateway.feed_task.result()
    finally:
        await gateway.stop()
