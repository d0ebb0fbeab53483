"""The ports: what the pipeline, the handlers and the bridge need of the outside world.

Small ``Protocol``s, so that :func:`bridge.app.bootstrap` can be given fakes
(``bridge/testing.py``: :class:`~bridge.testing.FakeStore`,
:class:`~bridge.testing.FakeLink`, :class:`~bridge.testing.ManualClock`) and the pipeline's
guarantees tested in milliseconds; the real adapters (``bridge/store/``, ``bridge/_mqtt.py``)
are tested once, against the real thing (docs/architecture.md, "Ports").

- :class:`StorePort`, :class:`UnitOfWorkPort`: the database (``bridge.store.Store``).
- :class:`LinkPort`: the MQTT link as the pipeline and handlers use it (publish, reply,
  subscribe, the deliveries' ack tracker, the send window); :class:`BrokerLink` adds what
  the running bridge needs for its start-up checks, status and metrics
  (``bridge._mqtt.MqttClient``).
- :class:`Clock`: wall time (aware) and a monotonic clock (:class:`SystemClock`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from bridge._mqtt import MqttOptions
    from bridge.errors import ClientIdInUse
    from bridge.pipeline import AckTracker, Inbound, Inbox
    from bridge.store import BatchWrite, DeadLetter, SampleRow, ViolationRecord
    from engine.alarms import OverdueState

__all__ = [
    "BrokerLink",
    "Clock",
    "LinkPort",
    "Publisher",
    "StorePort",
    "SystemClock",
    "UnitOfWorkPort",
]


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall time, timezone-aware."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, latencies)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class UnitOfWorkPort(Protocol):
    """One transaction: rolls back unless :meth:`commit` is called."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    async def write_batch(self, batch: BatchWrite, now: datetime) -> None: ...

    async def add_dead_letters(self, letters: Sequence[DeadLetter], now: datetime) -> None: ...

    async def save_states(self, states: Mapping[int, dict[str, Any]], now: datetime) -> None: ...

    async def add_limits(
        self,
        characteristic_id: int,
        ts: datetime,
        payload: dict[str, Any],
        version: int | None = None,
    ) -> None: ...

    async def save_due_states(self, states: Mapping[int, OverdueState | None]) -> None: ...

    # the acknowledgement workflow (bridge/_ack_workflow.py): all or nothing, one transaction
    async def violations_for_ack(
        self, violation_ids: Sequence[int] | None, characteristic_id: int | None = None
    ) -> list[ViolationRecord]: ...

    async def acknowledge_many(
        self,
        violation_ids: Sequence[int],
        user: str,
        cause: str,
        action: str | None,
        comment: str | None,
        at: datetime,
        *,
        exclude_sample_ids: Sequence[int] = (),
    ) -> int: ...

    async def cause_counts(
        self, characteristic_ids: Sequence[int], since: datetime
    ) -> dict[int, list[tuple[str, int]]]: ...


class StorePort(Protocol):
    """The database, as the pipeline, the handlers and the bridge's start-up use it."""

    url: str  # as shown: without a password

    def unit_of_work(self) -> UnitOfWorkPort: ...

    async def allocate(self, name: str, count: int) -> int:
        """Reserve ``count`` ids of counter ``name`` (``sample``, ``violation``): the first."""
        ...

    async def register_characteristics(self, names: Mapping[int, str], now: datetime) -> None: ...

    async def engine_states(self) -> dict[int, dict[str, Any]]: ...

    async def recent_samples_of_all(self, count: int) -> dict[int, list[SampleRow]]: ...

    async def latest_limits_of_all(self) -> dict[int, dict[str, Any]]: ...

    async def open_violations(self) -> list[ViolationRecord]: ...

    async def subgroups(
        self, characteristic_id: int, last: int | None, between: tuple[int, int] | None = None
    ) -> list[tuple[float, ...]]: ...

    async def due_states(self) -> dict[int, OverdueState]: ...

    async def limits_versions(self) -> dict[int, int]: ...

    async def cause_counts_of_all(self, since: datetime) -> dict[int, list[tuple[str, int]]]: ...

    async def sample_page(
        self,
        characteristic_id: int,
        limit: int,
        *,
        before_id: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[list[SampleRow], bool]: ...

    async def close(self) -> None: ...


class Publisher(Protocol):
    """What publishes a message: the MQTT link (``coalesce``: retained state, a newer one
    replaces a held older one; docs/bridge.md "Bounded outbound")."""

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        coalesce: bool = False,
    ) -> None: ...


class LinkPort(Publisher, Protocol):
    """The MQTT link as the pipeline and the handlers use it.

    Deliveries arrive in :attr:`inbox` as :class:`~bridge.pipeline.Inbound`, each acked by
    its own ``.ack()``, which goes through :attr:`acks` (only a delivery of the current
    connection is acknowledged)."""

    @property
    def inbox(self) -> Inbox: ...

    @property
    def acks(self) -> AckTracker: ...

    def reply(self, message: Inbound, payload: bytes) -> None:
        """Answer an MQTT 5 request on its response topic, with its correlation data."""
        ...

    def ack(self, message: Inbound) -> None: ...

    def add_subscription(self, topic_filter: str, *, retained: bool = False) -> None:
        """Subscribe (now, and on every connect); ``retained``: with the retained message
        (a line's running topic: its last state is known at start)."""
        ...

    async def wait_window(self, limit: int | None = None) -> None:
        """Wait while too many publishes are outstanding (bounded outbound); more than
        ``limit`` when it is lower than the link's own bound."""
        ...

    @property
    def outstanding(self) -> int: ...

    @property
    def outstanding_bytes(self) -> int: ...


class BrokerLink(LinkPort, Protocol):
    """The link as the running bridge uses it: start, stop, start-up checks, status and
    the counters of ``<prefix>/bridge/metrics`` (docs/bridge.md)."""

    on_denied: Callable[[str, str], None] | None  # set by the bridge

    @property
    def options(self) -> MqttOptions: ...

    @property
    def connected(self) -> asyncio.Event: ...

    @property
    def disconnected(self) -> asyncio.Event: ...

    @property
    def subscribed(self) -> asyncio.Event: ...

    @property
    def status_checked(self) -> asyncio.Event: ...

    @property
    def fatal(self) -> asyncio.Event: ...

    @property
    def foreign_online(self) -> str | None: ...

    @property
    def taken_over(self) -> ClientIdInUse | None: ...

    @property
    def first_denial(self) -> tuple[str, str] | None: ...

    @property
    def outstanding_max(self) -> int: ...

    @property
    def coalesced(self) -> int: ...

    @property
    def over_receive(self) -> int: ...

    @property
    def refused(self) -> int: ...

    @property
    def denied(self) -> int: ...

    @property
    def status_reasserted(self) -> int: ...

    @property
    def connects_refused(self) -> int: ...

    @property
    def connections(self) -> int: ...

    @property
    def paused(self) -> bool: ...

    @property
    def retry_pending(self) -> int: ...

    async def start(self, wait_s: float | None = None) -> None: ...

    async def wait_answer(self) -> None: ...

    async def wait_readable(self, event: asyncio.Event, wait_s: float) -> bool: ...

    async def wait_confirmed(self, wait_s: float) -> bool: ...

    async def flush(self, wait_s: float) -> bool: ...

    def say_offline(self, payload: bytes) -> None: ...

    async def stop(self) -> None: ...
