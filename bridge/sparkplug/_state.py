"""Sparkplug B state that outlives the bridge, and the bridge as a Primary Host Application.

:class:`BdSeqStore` keeps the last ``bdSeq`` per edge node in the database (table
``sparkplug_nodes``): for the edge nodes the bridge reads (``inbound``: an NDEATH that comes
after a restart of the bridge is still matched to its NBIRTH) and for the bridge's own edge
node (``own``: its bdSeq goes on across restarts instead of starting at 0 again).

:class:`PrimaryHost` is the Sparkplug 3.0 Primary Host Application's own MQTT connection
(an MQTT Will can only be one topic per connection, and the bridge's main connection's Will
is its status): clean start, its Will ``spBv1.0/STATE/<host_id>`` = ``{"online": false,
"timestamp": T}`` retained at QoS 1, then, subscribed to that topic, ``{"online": true,
"timestamp": T}`` with the same ``T`` (the time of connecting). An "offline" delivered on
the topic after its own "online" came back (a Will of an earlier connection, arriving late)
is answered with its "online" again, as the specification asks. docs/sparkplug.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiomqtt
from sqlalchemy import delete, insert, select

from bridge.sparkplug._node import to_epoch_ms
from bridge.sparkplug._sessions import keep_sessions
from bridge.sparkplug._types import NAMESPACE
from bridge.store import Store
from bridge.store._tables import sparkplug_nodes

__all__ = ["BdSeqStore", "PrimaryHost", "state_payload"]

log = logging.getLogger("openspc.sparkplug")

INBOUND = "inbound"
OWN = "own"


class BdSeqStore:
    """The last bdSeq of each edge node, in the bridge's database.

    :meth:`remember` is for code that cannot wait (the decoding of an NBIRTH): it keeps the
    latest value per node and one task writes them; a failed write is logged, not raised (a
    restart then knows an older bdSeq, which is what it knew before this table existed)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: dict[tuple[str, str, str], int] = {}
        self._writer: asyncio.Task[None] | None = None

    async def load(self, role: str) -> dict[tuple[str, str], int]:
        table = sparkplug_nodes
        query = select(table.c.group_id, table.c.edge_id, table.c.bd_seq).where(
            table.c.role == role
        )
        async with self.store.engine.connect() as conn:
            rows = await conn.execute(query)
            return {(row.group_id, row.edge_id): int(row.bd_seq) for row in rows}

    async def save(self, role: str, group: str, edge: str, bd_seq: int) -> None:
        table = sparkplug_nodes
        key = (table.c.role == role) & (table.c.group_id == group) & (table.c.edge_id == edge)
        async with self.store.engine.begin() as conn:
            await conn.execute(delete(table).where(key))
            await conn.execute(
                insert(table).values(
                    role=role,
                    group_id=group,
                    edge_id=edge,
                    bd_seq=bd_seq,
                    updated_at=datetime.now(UTC),
                )
            )

    def remember(self, role: str, group: str, edge: str, bd_seq: int) -> None:
        """Save soon, from the event loop's thread, without waiting."""
        self._pending[(role, group, edge)] = bd_seq
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write(), name="sparkplug-bdseq-writer"
            )

    async def _write(self) -> None:
        while self._pending:
            key, bd_seq = next(iter(self._pending.items()))
            del self._pending[key]
            try:
                await self.save(*key, bd_seq)
            except Exception as exc:  # the database is away: an older bdSeq stays stored
                log.warning("could not store bdSeq %d of %s/%s: %s", bd_seq, key[1], key[2], exc)

    async def flush(self) -> None:
        """Wait until what :meth:`remember` was given is written (a clean stop)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer


def state_payload(online: bool, at: datetime) -> bytes:
    """The STATE payload of Sparkplug 3.0: ``{"online": ..., "timestamp": <epoch ms>}``."""
    return json.dumps({"online": online, "timestamp": to_epoch_ms(at)}).encode()


def _now_ms() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class PrimaryHost:
    """The STATE of Primary Host Application ``host_id`` on its own connection.

    :meth:`run` connects (again after any loss, every ``reconnect_delay`` seconds) until
    ``stop`` is set; then it says offline itself (a clean DISCONNECT suppresses the Will)."""

    def __init__(
        self,
        *,
        host_id: str,
        host: str,
        port: int,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        keepalive: int = 30,
        reconnect_delay: float = 1.0,
        clock: Callable[[], datetime] = _now_ms,
        follows: tuple[asyncio.Event, asyncio.Event] | None = None,
    ) -> None:
        # (up, down) of the bridge's main connection: the host is online only while it is,
        # since edge nodes take "online" to mean that the host hears them
        self.follows = follows
        self.host_id = host_id
        self.topic = f"{NAMESPACE}/STATE/{host_id}"
        self.host, self.port = host, port
        self.client_id = client_id
        self.username, self.password = username, password
        self.tls = tls
        self.keepalive = keepalive
        self.reconnect_delay = reconnect_delay
        self.clock = clock
        self.online = asyncio.Event()  # our "online" has come back from the broker
        self.births = 0
        self.reasserted = 0
        self._client: aiomqtt.Client | None = None
        self._stamp: datetime | None = None

    async def run(self, stop: asyncio.Event) -> None:
        await keep_sessions(
            stop,
            self._session,
            self._close,
            delay=self.reconnect_delay,
            what="sparkplug host",
            ready=None if self.follows is None else self.follows[0],
        )

    async def _close(self, session: asyncio.Future[None]) -> None:
        client, stamp = self._client, self._stamp
        if client is not None and stamp is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await client.publish(
                    self.topic, state_payload(False, stamp), qos=1, retain=True, timeout=2
                )
        session.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await session

    async def _session(self) -> None:
        stamp = self._stamp = self.clock()  # the Will's timestamp is the birth's
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            username=self.username,
            password=self.password,
            will=aiomqtt.Will(self.topic, state_payload(False, stamp), qos=1, retain=True),
            clean_session=True,
            keepalive=self.keepalive,
            tls_params=aiomqtt.TLSParameters() if self.tls else None,
        )
        async with client:
            self._client = client
            try:
                # subscribed first, then the birth: what comes after our own birth is news
                await client.subscribe(self.topic, qos=1)
                await client.publish(self.topic, state_payload(True, stamp), qos=1, retain=True)
                self.births += 1
                listening = asyncio.ensure_future(self._listen(client, stamp))
                waits: set[asyncio.Future[Any]] = {listening}
                if self.follows is not None:
                    waits.add(asyncio.ensure_future(self.follows[1].wait()))
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in waits:
                        waiting.cancel()
                if listening.done() and not listening.cancelled():
                    failure = listening.exception()
                    if failure is not None:
                        raise failure  # the connection was lost: run() connects again
                # the main connection is down: offline, and leave cleanly (no Will then)
                log.info("the bridge's connection is down: %s offline", self.topic)
                await client.publish(
                    self.topic, state_payload(False, stamp), qos=1, retain=True, timeout=2
                )
            finally:
                self._client = None
                self.online.clear()

    async def _listen(self, client: aiomqtt.Client, stamp: datetime) -> None:
        """Our own birth coming back, then any stale "offline": answered with "online"."""
        echoed = False
        async for message in client.messages:
            state = _state_of(message.payload)
            if state is None:
                continue
            online, at = state
            if at == to_epoch_ms(stamp):
                if online and not echoed:
                    echoed = True
                    self.online.set()
                continue
            if echoed and not online:
                self.reasserted += 1
                log.warning(
                    "%s said offline (timestamp %s) while this host is online:"
                    " an earlier connection's Will; saying online again",
                    self.topic,
                    at,
                )
                await client.publish(self.topic, state_payload(True, stamp), qos=1, retain=True)

    def abort(self) -> None:
        """Drop the connection without DISCONNECT, as a crash would: the broker publishes the
        Will (STATE offline). For tests and fault drills."""
        client = self._client
        if client is None:
            return
        sock = client._client.socket()  # noqa: SLF001  aiomqtt has no public abort
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _state_of(payload: Any) -> tuple[bool, int] | None:
    try:
        data = json.loads(payload)
        online, at = data["online"], data["timestamp"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(online, bool) or not isinstance(at, int):
        return None
    return online, at
