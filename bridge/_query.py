"""The query command: stored samples on request, beside the reading pipeline
(docs/topics.md, "Query").

An HMI publishes QoS 1 to ``<prefix>/cmd/query/<user>`` with an MQTT 5 response topic in
its own reply tree and a JSON request::

    {"characteristic_id": 3, "before_sample_id": 1234, "limit": 500}
    {"characteristic_id": 3, "from": "2026-12-07T10:00:00Z", "to": "2026-12-07T11:00:00Z"}

and gets, on the response topic with its correlation data, one page of samples, oldest
first, each as in the retained ``history`` with ``excluded``::

    {"type": "query_result", "payload": {"characteristic_id": 3, "samples": [...],
     "next_before_sample_id": 1100}}

(``null``: no older sample matches). A bad request gets ``{"ok": false, "error": ...}`` like
every other command, and a line on ``<prefix>/bridge/errors``.

The pipeline hands a query over (:meth:`QueryService.offer`) and acknowledges it with its
batch (in order, as every message); the reads run in this service's own task, so a query
never holds a batch of readings back, and a slow read never holds the pipeline. At most
:data:`MAX_WAITING` queries wait; more are refused ("busy"), and a page is bounded in
samples (:data:`MAX_LIMIT`) and in bytes (:data:`MAX_REPLY_BYTES`, below the shipped
broker's ``message_size_limit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bridge._mqtt import Inbound
from bridge.errors import InvalidCommand
from bridge.store import SampleRow
from bridge.wire.payloads import (
    MAX_COMMAND_ID,
    MAX_REPLY_BYTES,
    clip,
    dumps,
    reply_payload,
    stored_sample_payload,
)
from bridge.wire.payloads import encode_query_result as result_message
from bridge.wire.topics import Topics, reply_topic_fault

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_REPLY_BYTES",
    "MAX_WAITING",
    "QueryService",
    "SampleQuery",
    "parse_query",
    "result_message",
]

log = logging.getLogger("openspc.query")

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000
MAX_WAITING = 64
"""Queries waiting for the reader at most; one more is refused as busy."""

MAX_QUERY_BYTES = 4096
"""A longer request is refused at once (a query is a few dozen bytes): what waits is small."""

_FIELDS = frozenset(("characteristic_id", "before_sample_id", "from", "to", "limit"))


@dataclass(frozen=True, slots=True)
class SampleQuery:
    """One request: a characteristic's samples below ``before_sample_id`` (None: from the
    newest), timed in ``[start, end)`` (either None: open), at most ``limit``."""

    user: str
    characteristic_id: int
    limit: int = DEFAULT_LIMIT
    before_sample_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None


def _shown(value: object) -> str:
    return clip(repr(value), 40)


def _id(topic: str, data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COMMAND_ID:
        raise InvalidCommand(
            topic, f"{key!r} must be an integer from 1 to {MAX_COMMAND_ID}, got {_shown(value)}"
        )
    return value


def _time(topic: str, data: Mapping[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    wanted = f"{key!r} must be an ISO 8601 time with a zone (like 2026-12-07T10:00:00Z)"
    if not isinstance(value, str):
        raise InvalidCommand(topic, f"{wanted}, got {_shown(value)}")
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidCommand(topic, f"{wanted}, got {_shown(value)}") from None
    if found.utcoffset() is None:
        raise InvalidCommand(topic, f"{wanted}, got {_shown(value)} (no zone)")
    return found


def parse_query(topic: str, user: str, payload: bytes) -> SampleQuery:
    """The request on ``topic`` from ``user``, or :class:`InvalidCommand` saying why not."""
    try:
        data = json.loads(bytes(payload).decode("utf-8"))
    except RecursionError:
        raise InvalidCommand(topic, "not JSON: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidCommand(topic, clip(f"not JSON: {exc}", 200)) from None
    if not isinstance(data, dict):
        raise InvalidCommand(topic, "a query must be a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise InvalidCommand(topic, f"unknown field(s): {clip(', '.join(unknown), 100)}")
    if not user:
        raise InvalidCommand(topic, "the user (the topic's last level) is empty")
    cid = _id(topic, data, "characteristic_id")
    before = (
        _id(topic, data, "before_sample_id") if data.get("before_sample_id") is not None else None
    )
    limit = data.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidCommand(
            topic, f"'limit' must be an integer from 1 to {MAX_LIMIT}, got {_shown(limit)}"
        )
    start, end = _time(topic, data, "from"), _time(topic, data, "to")
    if start is not None and end is not None and not start < end:
        raise InvalidCommand(topic, "'from' must be before 'to'")
    return SampleQuery(user, cid, limit, before, start, end)


class SampleReader(Protocol):
    async def sample_page(
        self,
        characteristic_id: int,
        limit: int,
        *,
        before_id: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[list[SampleRow], bool]: ...


class Replier(Protocol):
    def reply(self, message: Inbound, payload: bytes) -> None: ...


class QueryCounts(Protocol):
    commands: int
    commands_rejected: int


class QueryService:
    """Takes query commands from the pipeline and answers them in a task of its own."""

    def __init__(
        self,
        *,
        prefix: str,
        store: SampleReader,
        mqtt: Replier,
        characteristics: Collection[int],
        report: Callable[[str, bytes, str], None],
        metrics: QueryCounts,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        topics = Topics(prefix)
        self._root = topics.query_command("")  # "<prefix>/cmd/query/": the user follows
        self._reply_root = topics.reply_root
        self.store = store
        self.mqtt = mqtt
        self.characteristics = frozenset(characteristics)
        self.report = report
        self.metrics = metrics
        self._waiting: asyncio.Queue[Inbound] = asyncio.Queue(max(1, max_waiting))  # 0: unbounded
        self.answered = 0  # pages sent (tests, diagnostics)

    @property
    def topic_filter(self) -> str:
        return self._root + "+"

    def offer(self, message: Inbound) -> bool:
        """Take ``message`` if it is a query (True; the caller acknowledges it), else False."""
        if not message.topic.startswith(self._root):
            return False
        self.metrics.commands += 1
        if len(message.payload) > MAX_QUERY_BYTES:
            size = f"{len(message.payload)} bytes, limit is {MAX_QUERY_BYTES}"
            self._refuse(
                message, f"query too long: {size}", reply=self._reply_fault(message) is None
            )
            return True
        try:
            self._waiting.put_nowait(message)
        except asyncio.QueueFull:
            busy = "busy: too many queries waiting; ask again in a moment"
            self._refuse(message, busy, reply=self._reply_fault(message) is None)
        return True

    def _reply_fault(self, message: Inbound) -> str | None:
        """Why no reply may go to ``message``'s response topic (None: it may)."""
        if not message.response_topic:
            return "a query needs an MQTT 5 response topic; no reply sent"
        user = message.topic[len(self._root) :]
        fault = reply_topic_fault(message.response_topic, self._reply_root, user)
        return None if fault is None else f"not carried out: {fault}; no reply sent"

    async def run(self, stop: asyncio.Event) -> None:
        """Answer the queries one at a time until ``stop``."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                taking = asyncio.ensure_future(self._waiting.get())
                await asyncio.wait({taking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not taking.done():
                    taking.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await taking
                    return
                await self.answer(taking.result())
        finally:
            stopping.cancel()

    async def answer(self, message: Inbound) -> None:
        """Answer one query (refusals included); never raises but for cancellation."""
        user = message.topic[len(self._root) :]
        fault = self._reply_fault(message)
        if fault is not None:
            self._refuse(message, fault, reply=False)
            return
        try:
            query = parse_query(message.topic, user, message.payload)
        except InvalidCommand as exc:
            self._refuse(message, exc.reason)
            return
        if query.characteristic_id not in self.characteristics:
            self._refuse(message, f"unknown characteristic {query.characteristic_id}")
            return
        try:
            rows, more = await self.store.sample_page(
                query.characteristic_id,
                query.limit,
                before_id=query.before_sample_id,
                start=query.start,
                end=query.end,
            )
        except Exception as exc:  # an outage or a fault: this query fails, the bridge goes on
            log.warning("query on %s failed: %s", message.topic, exc)
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._refuse(message, clip(f"the database could not be read: {first}", 300))
            return
        samples = [stored_sample_payload(row) for row in rows]  # each with its "excluded"
        self._send(message, result_message(query.characteristic_id, samples, more))
        self.answered += 1

    def _refuse(self, message: Inbound, reason: str, *, reply: bool = True) -> None:
        """On ``errors``, and (``reply``: the response topic was checked) to the sender."""
        self.metrics.commands_rejected += 1
        self.report(message.topic, message.payload, reason)
        if reply:
            self._send(message, dumps(reply_payload(reason)))

    def _send(self, message: Inbound, payload: bytes) -> None:
        try:
            self.mqtt.reply(message, payload)
        except Exception as exc:  # e.g. a topic paho refuses: reported, nothing else
            log.warning("could not reply on %r: %s", clip(message.response_topic or "", 80), exc)
            self.report(message.topic, message.payload, f"reply not sent: {exc}")
