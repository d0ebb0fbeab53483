"""Test doubles and throw-away services shipped with the code (bytewax-style).

- :class:`PostgresCluster`: a throw-away PostgreSQL cluster on a free port (never 5432).
- :func:`unique_topic`: a topic prefix no other test uses, so tests never hear each other.
- :class:`ManualClock`: a controllable clock for subgroup and timeout logic (a
  :class:`bridge.ports.Clock`).
- :class:`FakeStore`: an in-memory :class:`bridge.ports.StorePort`, transactional, with an
  outage switch (``outage = True``: every transaction and id reservation fails as a
  database that is down) and a poison switch (``poison``: a reading row it refuses as a
  database refuses a bad row).
- :class:`FakeLink`: an in-memory :class:`bridge.ports.BrokerLink` that records publishes,
  replies and acks; :meth:`FakeLink.deliver` hands the pipeline a delivery,
  :meth:`FakeLink.drop` and :meth:`FakeLink.reconnect` play a lost connection.

``bootstrap(settings, store=FakeStore(), link=FakeLink(), clock=ManualClock())`` builds
the real pipeline, bus and handlers on them (docs/architecture.md, "Ports").
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from bridge._mosquitto import free_port
from bridge._mqtt import MqttOptions
from bridge.errors import ClientIdInUse
from bridge.pipeline import AckTracker, Inbound, Inbox
from bridge.ports import BrokerLink, Clock, StorePort
from bridge.store import BatchWrite, DeadLetter, SampleRow, ViolationRecord, decode_values
from bridge.wire.topics import Topics
from engine.alarms import OverdueState


def unique_topic(stem: str = "t") -> str:
    """A topic prefix unique to the caller, e.g. ``test/3f2a9c1d/t``."""
    return f"test/{uuid.uuid4().hex[:10]}/{stem}"


@dataclass
class ManualClock:
    """A clock that moves only when told: ``clock.now()``, ``clock.advance(seconds)``."""

    current: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current

    def monotonic(self) -> float:
        """Seconds that move with :meth:`advance` only."""
        return self.current.timestamp()


class FakeOutage(ConnectionRefusedError):
    """What :class:`FakeStore` raises while ``outage`` is on: an unavailable database."""


class FakePoison(ValueError):
    """What :class:`FakeStore` raises for a row its ``poison`` switch refuses."""


@dataclass
class FakeStore:
    """An in-memory store: what a unit of work writes is kept only when it commits."""

    url: str = "fake://"
    outage: bool = False
    poison: Callable[[dict[str, Any]], bool] | None = None
    readings: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    limits: list[dict[str, Any]] = field(default_factory=list)
    states: dict[int, dict[str, Any]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    due: dict[int, OverdueState] = field(default_factory=dict)
    commits: int = 0
    refusals: int = 0  # transactions refused by the outage switch
    refused: asyncio.Event = field(default_factory=asyncio.Event)  # set at each refusal
    on_commit: Callable[[], None] | None = None  # called as a commit begins (a test's hook)
    _next: dict[str, int] = field(default_factory=dict)

    def check_up(self) -> None:
        if self.outage:
            self.refusals += 1
            self.refused.set()
            raise FakeOutage("fake database down")

    def unit_of_work(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)

    async def allocate(self, name: str, count: int) -> int:
        self.check_up()
        start = self._next.get(name, 1)
        self._next[name] = start + count
        return start

    async def register_characteristics(self, names: Mapping[int, str], now: datetime) -> None:
        self.names.update(names)

    async def engine_states(self) -> dict[int, dict[str, Any]]:
        return dict(self.states)

    async def recent_samples_of_all(self, count: int) -> dict[int, list[SampleRow]]:
        return {}

    async def latest_limits_of_all(self) -> dict[int, dict[str, Any]]:
        return {row["characteristic_id"]: row["payload"] for row in self.limits}

    async def open_violations(self) -> list[ViolationRecord]:
        return [_violation_record(v) for v in self.violations if not v["acknowledged"]]

    async def subgroups(
        self, characteristic_id: int, last: int | None, between: tuple[int, int] | None = None
    ) -> list[tuple[float, ...]]:
        rows = [s for s in self.samples if s["characteristic_id"] == characteristic_id]
        if between is not None:
            rows = [s for s in rows if between[0] <= s["id"] <= between[1]]
        kept = [tuple(decode_values(s["values"])) for s in rows if not s["excluded"]]
        return kept if last is None else kept[-last:]

    async def due_states(self) -> dict[int, OverdueState]:
        return dict(self.due)

    async def limits_versions(self) -> dict[int, int]:
        versions: dict[int, int] = {}
        for row in self.limits:
            cid, version = row["characteristic_id"], row.get("version") or 0
            versions[cid] = max(versions.get(cid, 0), version)
        return versions

    async def cause_counts_of_all(self, since: datetime) -> dict[int, list[tuple[str, int]]]:
        return _cause_counts(self.violations, None, since)

    async def sample_page(
        self,
        characteristic_id: int,
        limit: int,
        *,
        before_id: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[list[SampleRow], bool]:
        return [], False  # the query command is tested against the real store

    async def close(self) -> None:
        return None


def _violation_record(row: dict[str, Any]) -> ViolationRecord:
    keys = ("id", "sample_id", "characteristic_id", "rule_id", "rule_name", "severity", "chart")
    return ViolationRecord(
        **{k: row[k] for k in keys},
        ts=row["ts"],
        acknowledged=bool(row["acknowledged"]),
        kind=row.get("kind", "rule"),
    )


def _cause_counts(
    violations: Sequence[dict[str, Any]], ids: Sequence[int] | None, since: datetime
) -> dict[int, list[tuple[str, int]]]:
    """Acknowledged violations by characteristic and cause since ``since`` (unordered)."""
    counts: dict[int, dict[str, int]] = {}
    for row in violations:
        cid = row["characteristic_id"]
        if not row["acknowledged"] or (ids is not None and cid not in ids):
            continue
        if row.get("ack_at") is not None and row["ack_at"] < since:
            continue
        by_cause = counts.setdefault(cid, {})
        by_cause[row["ack_reason"]] = by_cause.get(row["ack_reason"], 0) + 1
    return {cid: list(found.items()) for cid, found in counts.items()}


@dataclass
class FakeUnitOfWork:
    """One transaction of :class:`FakeStore`: staged, kept at :meth:`commit` only."""

    store: FakeStore
    staged: list[BatchWrite] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    acks: list[tuple[int, str, str, datetime]] = field(default_factory=list)
    due_states: dict[int, OverdueState | None] = field(default_factory=dict)

    async def __aenter__(self) -> FakeUnitOfWork:
        self.store.check_up()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def write_batch(self, batch: BatchWrite, now: datetime) -> None:
        poison = self.store.poison
        for row in batch.readings:
            if poison is not None and poison(row):
                raise FakePoison(f"row refused: {row['value']!r}")
        self.staged.append(batch)

    async def add_dead_letters(self, letters: Sequence[DeadLetter], now: datetime) -> None:
        self.letters += letters

    async def save_states(self, states: Mapping[int, dict[str, Any]], now: datetime) -> None:
        self.staged.append(BatchWrite(states=dict(states)))

    async def add_limits(
        self,
        characteristic_id: int,
        ts: datetime,
        payload: dict[str, Any],
        version: int | None = None,
    ) -> None:
        row = {"characteristic_id": characteristic_id, "ts": ts, "payload": payload}
        self.staged.append(BatchWrite(limits=[{**row, "version": version}]))

    async def save_due_states(self, states: Mapping[int, OverdueState | None]) -> None:
        self.due_states.update(states)

    async def violations_for_ack(
        self, violation_ids: Sequence[int] | None, characteristic_id: int | None = None
    ) -> list[ViolationRecord]:
        rows = self.store.violations
        if violation_ids is None:
            found = [v for v in rows if v["characteristic_id"] == characteristic_id]
            return [_violation_record(v) for v in found if not v["acknowledged"]]
        return [_violation_record(v) for v in rows if v["id"] in violation_ids]

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
    ) -> int:
        self.acks += [(violation_id, user, cause, at) for violation_id in violation_ids]
        return len(violation_ids)

    async def cause_counts(
        self, characteristic_ids: Sequence[int], since: datetime
    ) -> dict[int, list[tuple[str, int]]]:
        staged = [
            {**v, "acknowledged": True, "ack_reason": cause, "ack_at": at}
            for v in self.store.violations
            for violation_id, _, cause, at in self.acks
            if v["id"] == violation_id
        ]
        return _cause_counts([*self.store.violations, *staged], characteristic_ids, since)

    async def commit(self) -> None:
        store = self.store
        if store.on_commit is not None:
            store.on_commit()
        store.check_up()
        for batch in self.staged:
            store.readings += batch.readings
            store.samples += batch.samples
            store.violations += batch.violations
            store.limits += batch.limits
            store.states.update(batch.states)
            self.due_states.update(batch.due_states)
        for violation_id, user, reason, at in self.acks:
            for row in store.violations:
                if row["id"] == violation_id:
                    row.update(acknowledged=True, ack_user=user, ack_reason=reason, ack_at=at)
        for cid, state in self.due_states.items():
            if state is None:
                store.due.pop(cid, None)
            else:
                store.due[cid] = state
        store.dead += self.letters
        store.commits += 1


@dataclass
class FakeLink:
    """An in-memory MQTT link: records what is published, replied and acknowledged."""

    prefix: str = "openspc"
    inbox: Inbox = field(default_factory=lambda: Inbox(10_000))
    acks: AckTracker = field(default_factory=AckTracker)
    options: MqttOptions = field(default_factory=lambda: MqttOptions("fake", 0, "fake"))
    published: list[tuple[str, bytes, bool]] = field(default_factory=list)
    replies: list[tuple[str, bytes]] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)  # packet ids, in the order acked
    subscriptions: list[str] = field(default_factory=list)
    reply_error: Exception | None = None
    on_ack: Callable[[Inbound], None] | None = None  # called with each ack sent (a test's hook)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    status_checked: asyncio.Event = field(default_factory=asyncio.Event)
    fatal: asyncio.Event = field(default_factory=asyncio.Event)
    on_denied: Callable[[str, str], None] | None = None
    foreign_online: str | None = None
    taken_over: ClientIdInUse | None = None
    first_denial: tuple[str, str] | None = None
    outstanding_max: int = 0
    coalesced: int = 0
    over_receive: int = 0
    refused: int = 0
    denied: int = 0
    status_reasserted: int = 0
    connects_refused: int = 0
    connections: int = 0
    outstanding: int = 0
    outstanding_bytes: int = 0
    paused: bool = False
    retry_pending: int = 0
    _mid: int = 0
    _news: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.reconnect(session_present=False)

    # --- the test's side ------------------------------------------------------------------

    def deliver(
        self,
        topic: str,
        payload: str | bytes,
        *,
        qos: int = 1,
        mid: int | None = None,
        dup: bool = False,
        response_topic: str | None = None,
    ) -> Inbound:
        """The broker sends a message on this connection (``topic`` under the prefix)."""
        if mid is None:
            self._mid += 1
            mid = self._mid
        data = payload if isinstance(payload, bytes) else payload.encode()
        item = Inbound(
            f"{self.prefix}/{topic}",
            data,
            qos,
            mid,
            self.acks.generation,
            datetime.now(UTC),
            0.0,
            response_topic,
            b"corr" if response_topic else None,
            dup,
            acker=self.ack,
        )
        self.inbox.put(item, droppable=qos == 0)
        return item

    def drop(self) -> None:
        """The connection is lost (what it delivered can no longer be acknowledged)."""
        self.acks.lost()
        self.connected.clear()
        self.disconnected.set()

    def reconnect(self, *, session_present: bool = True) -> None:
        generation = self.acks.connected(session_present)
        self.inbox.drop_stale(generation)
        self.connected.set()
        self.disconnected.clear()
        self.subscribed.set()
        self.status_checked.set()

    def messages(self, leaf: str) -> list[dict[str, Any]]:
        """The JSON payloads published on ``<prefix>/<leaf>``, in order."""
        topic = f"{self.prefix}/{leaf}"
        return [json.loads(p) for t, p, _ in self.published if t == topic]

    def errors(self) -> list[str]:
        """The reasons said on ``<prefix>/bridge/errors``, in order."""
        return [m["reason"] for m in self.messages("bridge/errors")]

    async def published_on(self, leaf: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait until ``count`` messages were published on ``<prefix>/<leaf>``; them."""
        while len(found := self.messages(leaf)) < count:
            self._news.clear()
            await self._news.wait()
        return found

    # --- the bridge's side (bridge.ports.BrokerLink) -------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        coalesce: bool = False,
    ) -> None:
        self.published.append((topic, payload, retain))
        self._news.set()

    def reply(self, message: Inbound, payload: bytes) -> None:
        if self.reply_error is not None:
            raise self.reply_error
        if message.response_topic:
            self.replies.append((message.response_topic, payload))

    def ack(self, message: Inbound) -> None:
        if self.acks.release(message):
            if self.on_ack is not None:
                self.on_ack(message)
            self.acked.append(message.mid)

    def add_subscription(self, topic_filter: str, *, retained: bool = False) -> None:
        if topic_filter not in self.subscriptions:
            self.subscriptions.append(topic_filter)

    async def wait_window(self, limit: int | None = None) -> None:
        return None

    async def start(self, wait_s: float | None = None) -> None:
        return None

    async def wait_answer(self) -> None:
        return None

    async def wait_readable(self, event: asyncio.Event, wait_s: float) -> bool:
        return event.is_set()

    async def wait_confirmed(self, wait_s: float) -> bool:
        return True

    async def flush(self, wait_s: float) -> bool:
        return True

    def say_offline(self, payload: bytes) -> None:
        self.publish(Topics(self.prefix).status, payload, retain=True)

    async def stop(self) -> None:
        self.drop()


class PostgresNotFound(RuntimeError):
    def __init__(self) -> None:
        super().__init__("PostgreSQL server binaries (initdb, pg_ctl) are not installed")


def find_pg_bin() -> Path | None:
    """The directory of initdb/pg_ctl (Debian keeps them out of PATH), or None."""
    which = shutil.which("pg_ctl")
    if which:
        return Path(which).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


@dataclass
class PostgresCluster:
    """A throw-away cluster: ``initdb`` into a temp dir, ``pg_ctl start`` on a free port.

    As root the server runs as user ``postgres`` (PostgreSQL refuses to run as root).
    ``stop()`` and ``start()`` may be called again to simulate an outage.
    """

    port: int = field(default_factory=free_port)
    datadir: Path | None = None
    _bin: Path | None = field(default=None, init=False)

    @property
    def async_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        assert self._bin is not None
        cmd = [str(self._bin / argv[0]), *argv[1:]]
        preexec = None
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")

            def preexec() -> None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        subprocess.run(
            cmd,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=preexec,  # drops root before exec'ing the server
            cwd=tempfile.gettempdir(),
        )

    def init(self) -> PostgresCluster:
        self._bin = find_pg_bin()
        if self._bin is None:
            raise PostgresNotFound()
        self.datadir = Path(tempfile.mkdtemp(prefix="openspc-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.datadir, user.pw_uid, user.pw_gid)
        self._run("initdb", "-A", "trust", "-U", "postgres", "--no-sync", "-D", str(self.datadir))
        return self

    def start(self) -> PostgresCluster:
        if self.datadir is None:
            self.init()
        assert self.datadir is not None
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c unix_socket_directories={self.datadir} -c max_connections=50"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-o",
            opts,
            "-w",
            "-l",
            str(self.datadir / "server.log"),
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.datadir is not None and (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        self.stop("immediate")
        if self.datadir is not None:
            shutil.rmtree(self.datadir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


if TYPE_CHECKING:  # the fakes are the ports: mypy --strict checks it here
    _store: StorePort = FakeStore()
    _link: BrokerLink = FakeLink()
    _clock: Clock = ManualClock()
