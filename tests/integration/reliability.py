"""Tools for the fault tests (``test_reliability*.py``): real processes, real sockets.

- :class:`BridgeProcess`: ``openspc run --config FILE`` as a child process that a test can
  SIGKILL and start again; never outlives the test (context manager).
- :class:`Recorder`: a paho MQTT 5 client (own thread) that records what it hears and lets a
  test wait for a condition on it.
- :class:`Gauge`: a QoS 1 publisher of readings with unique ``ts``; it remembers which
  readings the broker acknowledged (PUBACK), which is what "sent" means in these tests.
- :class:`TcpProxy`: sits between the bridge and the broker, so a test can swallow what the
  bridge sends (its PUBACKs) or cut the connection without a DISCONNECT.
- :func:`sqlite_samples` / :func:`pg_samples`: what the database holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge._mosquitto import free_port

OPENSPC = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "openspc"
EPOCH_MS_2026 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.02
) -> None:
    """Poll ``condition`` (for state outside our process: a database, a child's log)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


# --- configuration ----------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def config_text(
    *,
    port: int,
    prefix: str,
    client_id: str,
    db_url: str,
    characteristics: Sequence[dict[str, Any]],
    **bridge: Any,
) -> str:
    lines = [
        "[broker]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f"client_id = {toml_value(client_id)}",
        "keepalive = 5",
        "",
        "[database]",
        f"url = {toml_value(db_url)}",
        "",
        "[bridge]",
        f"topic_prefix = {toml_value(prefix)}",
    ]
    lines += [f"{k} = {toml_value(v)}" for k, v in {"metrics_interval": 0.5, **bridge}.items()]
    for char in characteristics:
        lines += ["", "[[characteristic]]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in char.items()]
    return "\n".join(lines) + "\n"


# --- the bridge as a process ------------------------------------------------------------------


@dataclass
class BridgeProcess:
    """``openspc run --config <config>``; start() again after kill() to restart it."""

    config: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def log_path(self) -> Path:
        return self.config.with_suffix(".log")

    def start(self) -> BridgeProcess:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- run {self.runs} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [str(OPENSPC), "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.config.parent,
                env={**os.environ, **self.env},
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_started(self, timeout: float = 15.0) -> None:
        marker = f"--- run {self.runs} ---"

        def started() -> bool:
            if not self.alive():
                raise AssertionError(f"the bridge exited:\n{self.log_text()[-3000:]}")
            return "bridge started" in self.log_text().rpartition(marker)[2]

        wait_until(started, timeout, "the bridge to start")

    def kill(self) -> None:
        """SIGKILL: no flush, no acks, no offline status (the broker sends the Will)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def __enter__(self) -> BridgeProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


# --- MQTT clients -----------------------------------------------------------------------------


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


def _client(name: str, **kw: Any) -> paho.Client:
    return paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{name}-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
        **kw,
    )


class Recorder:
    """Records every message under its filters; reconnects by itself after a broker restart."""

    def __init__(self, port: int, *filters: str) -> None:
        self.messages: list[Message] = []
        # by exact topic too: a wait on the status topic must not rescan thousands of samples
        # on every message (that held the lock against paho's thread, and the recorder fell
        # seconds behind the bridge once the bridge got fast)
        self._by_topic: dict[str, list[Message]] = {}
        self._cond = threading.Condition()
        self._filters = filters
        self._subscribed = threading.Event()
        self.client = _client("recorder")
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        self.client.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("the recorder did not subscribe")

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        client.subscribe([(f, 1) for f in self._filters])

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            message = Message(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic())
            self.messages.append(message)
            self._by_topic.setdefault(msg.topic, []).append(message)
            self._cond.notify_all()

    def on(self, topic_filter: str) -> list[Message]:
        with self._cond:
            if "+" not in topic_filter and "#" not in topic_filter:
                return list(self._by_topic.get(topic_filter, ()))
            return [m for m in self.messages if paho.topic_matches_sub(topic_filter, m.topic)]

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for ``condition`` (evaluated whenever a message arrives)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self._cond.wait(min(remaining, 0.2))

    def status(self, prefix: str) -> list[bool]:
        return [m.json()["online"] for m in self.on(f"{prefix}/bridge/status")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Gauge:
    """Publishes QoS 1 readings ``{"value": v, "ts": ms}`` with a unique ``ts`` each.

    ``acked`` maps ts -> value for every reading whose PUBACK came back: those the broker
    took responsibility for. The publishing thread runs until ``count`` are sent.
    """

    def __init__(
        self,
        port: int,
        topic: str,
        count: int,
        rate: float,
        *,
        start_ms: int = EPOCH_MS_2026,
        window: int = 1000,
        bare: bool = False,
    ) -> None:
        self.bare = bare  # bare numbers, no ts: the reading is known by its (unique) value
        self.topic = topic
        self.count = count
        self.rate = rate
        self.window = window
        self.start_ms = start_ms
        self.sent: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        self._by_mid: dict[int, int] = {}
        self._early: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.client = _client("gauge")
        self.client.max_inflight_messages_set(window)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_publish = self._on_publish
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        self.client.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="gauge", daemon=True)

    @staticmethod
    def value(i: int) -> float:
        return round(10.0 + (i % 97) * 0.001 + i * 1e-7, 7)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, *args: Any) -> None:
        with self._lock:
            ts = self._by_mid.pop(mid, None)
            if ts is None:
                self._early.add(mid)  # PUBACK before publish() returned
            else:
                self.acked[ts] = self.sent[ts]

    def start(self) -> Gauge:
        self._thread.start()
        return self

    def _run(self) -> None:
        began = time.monotonic()
        for i in range(self.count):
            if self._stop.is_set():
                return
            due = began + i / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            while len(self._by_mid) >= self.window and not self._stop.is_set():
                time.sleep(0.005)
            ts = self.start_ms + i
            value = self.value(i)
            payload = repr(value) if self.bare else json.dumps({"value": value, "ts": ts})
            # not under our lock: paho calls on_publish holding its own
            info = self.client.publish(self.topic, payload, qos=1)
            with self._lock:
                self.sent[ts] = value
                if info.mid in self._early:
                    self._early.discard(info.mid)
                    self.acked[ts] = value
                else:
                    self._by_mid[info.mid] = ts

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait_done(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError("the gauge did not finish sending")
        wait_until(lambda: len(self.acked) == len(self.sent), timeout, "the gauge's PUBACKs")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Gauge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- a TCP proxy between the bridge and the broker ---------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to the broker, one thread per connection.

    ``swallow_upstream`` drops what clients send (the broker never sees their PUBACKs) while
    still forwarding what the broker sends; ``cut()`` closes every connection at once, with no
    MQTT DISCONNECT (the broker then sends the client's Will). With ``record``, ``sent`` keeps
    what each connection's client sent (swallowed or not), one buffer a connection.
    """

    def __init__(self, target_port: int, *, record: bool = False) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.swallow_upstream = threading.Event()
        self.swallowed = 0
        self.record = record
        self.sent: list[bytearray] = []
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            record = bytearray() if self.record else None
            with self._lock:
                self._pairs.append((client, upstream))
                if record is not None:
                    self.sent.append(record)
            threading.Thread(
                target=self._pump,
                args=(client, upstream, record),
                name="proxy-pump",
                daemon=True,
            ).start()

    def _pump(
        self, client: socket.socket, upstream: socket.socket, record: bytearray | None
    ) -> None:
        try:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 0.5)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        if record is not None:
                            record += data
                        if self.swallow_upstream.is_set():
                            self.swallowed += len(data)
                            continue
                        upstream.sendall(data)
                    else:
                        client.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    sock.close()

    def cut(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- what the database holds -------------------------------------------------------------------


@dataclass(frozen=True)
class StoredSample:
    id: int
    characteristic_id: int
    ts_ms: int
    values: tuple[float, ...]


def _ms(ts: Any) -> int:
    if isinstance(ts, str):
        from datetime import UTC, datetime

        parsed = datetime.fromisoformat(ts)
        ts = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return round(ts.timestamp() * 1000)


def _values(text: Any) -> tuple[float, ...]:
    if isinstance(text, list):
        return tuple(float(v) for v in text)
    text = str(text)
    if text.startswith("["):
        return tuple(float(v) for v in json.loads(text))
    return tuple(float(v) for v in text.split(",")) if text else ()


def sqlite_samples(path: Path, characteristic_id: int | None = None) -> list[StoredSample]:
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        try:
            rows = db.execute(
                'SELECT id, characteristic_id, ts, "values" FROM samples ORDER BY id'
            ).fetchall()
        except sqlite3.OperationalError:
            return []  # not created yet
    return [
        StoredSample(r[0], r[1], _ms(r[2]), _values(r[3]))
        for r in rows
        if characteristic_id is None or r[1] == characteristic_id
    ]


def pg_samples(dsn: str, characteristic_id: int | None = None) -> list[StoredSample]:
    import asyncpg

    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(
                await conn.fetch(
                    'SELECT id, characteristic_id, ts, "values" FROM samples ORDER BY id'
                )
            )
        finally:
            await conn.close()

    try:
        rows = asyncio.run(fetch())
    except (OSError, asyncpg.PostgresError):
        return []
    return [
        StoredSample(r[0], r[1], _ms(r[2]), _values(r[3]))
        for r in rows
        if characteristic_id is None or r[1] == characteristic_id
    ]


@dataclass
class Tally:
    """The figures a reliability test reports: sent, stored, lost, duplicated."""

    sent: int
    stored: int
    lost: list[int]
    duplicated: list[int]
    unexpected: list[int]

    def line(self, scenario: str) -> str:
        return (
            f"{scenario}: sent {self.sent}, stored {self.stored}, lost {len(self.lost)}, "
            f"duplicated {len(self.duplicated)}, unexpected {len(self.unexpected)}"
        )


def tally(acked: dict[int, float], samples: Sequence[StoredSample]) -> Tally:
    """Match one-reading samples against the readings the broker acknowledged (by ts)."""
    by_ts: dict[int, list[StoredSample]] = {}
    for s in samples:
        by_ts.setdefault(s.ts_ms, []).append(s)
    lost = sorted(ts for ts in acked if ts not in by_ts)
    duplicated = sorted(ts for ts, found in by_ts.items() if len(found) > 1)
    unexpected = sorted(
        ts
        for ts, found in by_ts.items()
        if ts not in acked or any(s.values != (acked[ts],) for s in found)
    )
    return Tally(len(acked), len(samples), lost, duplicated, unexpected)


def report(line: str) -> None:
    """Print a figure line; also appended to $RELIABILITY_REPORT when set (for the docs)."""
    print(line)
    target = os.environ.get("RELIABILITY_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(line + "\n")


@contextlib.contextmanager
def stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as s:
        yield s


def metric_total(rec: Recorder, prefix: str, name: str) -> int:
    """A counter summed over every run of the bridge (each run starts again from zero)."""
    total, current, last_uptime = 0, 0, -1.0
    for m in rec.on(f"{prefix}/bridge/metrics"):
        data = m.json()
        if data["uptime_s"] < last_uptime:
            total, current = total + current, 0
        last_uptime = data["uptime_s"]
        current = max(current, int(data.get(name, 0)))
    return total + current


@contextlib.contextmanager
def pg_database(port: int) -> Iterator[tuple[str, str]]:
    """A database of the test's own on a PostgreSQL cluster: (async URL, asyncpg DSN)."""
    import asyncpg

    name = f"r_{uuid.uuid4().hex[:12]}"
    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            f"postgresql+asyncpg://postgres@127.0.0.1:{port}/{name}",
            f"postgresql://postgres@127.0.0.1:{port}/{name}",
        )
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def tally_values(sent: Sequence[float], samples: Sequence[StoredSample]) -> Tally:
    """Match one-reading samples against readings without ts, by their unique values."""
    counts: dict[float, int] = {}
    for x in samples:
        for v in x.values:
            counts[v] = counts.get(v, 0) + 1
    wanted = set(sent)
    lost = [i for i, v in enumerate(sent) if v not in counts]
    duplicated = [i for i, v in enumerate(sent) if counts.get(v, 0) > 1]
    unexpected = [round(v * 1e7) for v in counts if v not in wanted]
    return Tally(len(sent), len(samples), lost, duplicated, unexpected)
