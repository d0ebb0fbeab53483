"""`openspc bench`: the bridge measured against the broker's own limit, in one run.

Everything runs on this machine, on loopback, in processes of its own:

1. *relay*: a paho publisher -> Mosquitto -> a paho subscriber, N QoS 1 readings; the limit
   this machine and client library allow;
2. *bridge*: the same N QoS 1 readings over 200 characteristics (half n = 1, half n = 5) into
   ``openspc run`` (SQLite); from the first publish until the last ``sample`` reaches a
   subscriber; the samples are checked (count, values, order) and counted in the database;
3. *latency*: readings paced at 2,000/s; publish-to-``sample`` p50 and p99;
4. *engine*: points/s of one :class:`engine.CharacteristicEngine` (``engine.benchmark``);
5. *memory*: VmRSS of ``openspc run`` with 10,000 characteristics, after start-up and after
   one sample each;
6. *plant* (only when asked: ``--only plant`` or ``--characteristics``): thousands of
   characteristics, n = 1, fixed limits, readings paced at ``--rate`` (e.g. 10,000
   characteristics at 8,000 readings/s, or 2,000 at 1 Hz each): samples back, latency
   from publish to ``sample``, the bridge's RSS sampled over the run (max) and the
   publishes it had outstanding (max). docs/performance.md, "Plant scale";
7. *workers* (only when asked: ``--workers 1,2``): the bridge phase's readings into
   ``openspc run --workers N`` on a throw-away PostgreSQL, for each N (bridge/_bench/_workers.py).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bridge._bench._clients import WINDOW, Layout, PublishResult, SubscribeResult
from bridge._bench._clients import publisher as _publisher
from bridge._bench._clients import subscriber as _subscriber
from bridge._bench._lean import publisher as _lean_publisher
from bridge._bench._lean import subscriber as _lean_subscriber
from bridge._mosquitto import MosquittoProcess, free_port, minimal_config
from bridge.wire.topics import ALARMS, DEFAULT_PREFIX, SAMPLE, Topics

if TYPE_CHECKING:
    from bridge._bench._workers import WorkersRun
    from bridge.testing import PostgresCluster

__all__ = ["BenchOptions", "BenchReport", "format_report", "run_bench"]

CHARACTERISTICS = 200
THROUGHPUT_BASE = 0  # ids 1..200
LATENCY_BASE = 1000  # ids 1001..1200
MEMORY_PREFIX = "openspcmem"
PHASES = frozenset({"relay", "bridge", "latency", "engine", "memory", "plant", "workers"})
DEFAULT_PHASES = PHASES - {"plant", "workers"}
PLANT_PREFIX = "openspcplant"


@dataclass
class BenchOptions:
    readings: int = 100_000
    latency_rate: float = 2000.0
    latency_seconds: float = 5.0
    engine_points: int = 200_000
    memory_characteristics: int = 10_000
    idle_s: float = 15.0  # a phase gives up when nothing arrived for this long
    keep_dir: bool = False
    profile: Path | None = None  # py-spy record of the bridge during the throughput phase
    phases: frozenset[str] = DEFAULT_PHASES
    plant_characteristics: int = 10_000
    plant_rate: float = 8_000.0  # readings a second, all characteristics together
    plant_readings: int = 100  # per characteristic
    plant_rss_limit_mb: float = 4_000.0  # the bench stops a bridge that grows past it
    plant_wait_s: float = 300.0  # samples later than this after the readings were due: late
    plant_clients: str = "lean"  # "lean" (bridge/_bench/_lean.py) or "paho" (_clients.py)
    bridge_source: Path | None = None  # run this checkout's bridge (PYTHONPATH) instead
    broker_pid: int = 0  # set by run_bench
    tcp_nodelay: bool = False  # the broker's set_tcp_nodelay (off by default, as in Mosquitto)
    workers: tuple[int, ...] = (1, 2)  # the workers phase: openspc run --workers N, each N
    postgres: PostgresCluster | None = None  # a running one for it (else a throw-away one)
    lease_seconds: float | None = None  # the workers' [cluster] lease_seconds (else 6)
    log: Callable[[str], None] = field(default=lambda _text: None)

    @classmethod
    def quick(cls) -> BenchOptions:
        return cls(
            readings=4_000,
            latency_seconds=1.0,
            engine_points=20_000,
            memory_characteristics=1_000,
            idle_s=10.0,
        )


@dataclass
class BenchReport:
    machine: dict[str, Any]
    readings: int
    relay_rate: float = 0.0
    bridge_rate: float = 0.0
    ratio: float = 0.0
    samples_expected: int = 0
    samples_received: int = 0
    samples_in_order: bool = False
    samples_stored: int = 0
    readings_stored: int = 0
    bridge_cpu_s: float = 0.0
    broker_cpu_s: float = 0.0
    relay_broker_cpu_s: float = 0.0
    relay_seconds: float = 0.0
    relay_publisher_cpu_s: float = 0.0
    relay_subscriber_cpu_s: float = 0.0
    bridge_seconds: float = 0.0
    latency_rate: float = 0.0
    latency_samples: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    relay_latency_p50_ms: float | None = None
    latency_bridge_cpu_s: float = 0.0
    relay_latency_p99_ms: float | None = None
    # the bridge's own view (openspc/bridge/metrics): receipt of the last reading -> publish
    bridge_latency_ms: dict[str, float | None] = field(default_factory=dict)
    engine_n1: float = 0.0
    engine_n5: float = 0.0
    memory_characteristics: int = 0
    memory_startup_s: float = 0.0
    memory_rss_mb: float = 0.0
    memory_rss_after_mb: float | None = None
    plant_characteristics: int = 0
    plant_rate: float = 0.0
    plant_clients: str = ""
    plant_expected: int = 0
    plant_received: int = 0
    plant_stored: int = 0
    plant_publish_s: float = 0.0  # first to last reading sent
    plant_publish_errors: int = 0  # readings the publisher could not send
    plant_back_s: float = 0.0  # first reading sent to last sample back
    plant_p50_ms: float | None = None
    plant_p99_ms: float | None = None
    plant_max_ms: float | None = None
    plant_rss_start_mb: float = 0.0
    plant_rss_max_mb: float = 0.0
    plant_outstanding_max: int = 0
    plant_bridge_cpu_s: float = 0.0
    # the rest of the machine's work in that run: what the bridge did not get of two cores
    plant_inside_p99_max_ms: float = 0.0  # inside the bridge: worst p99 of a metrics window
    plant_inside_max_ms: float = 0.0
    plant_broker_cpu_s: float = 0.0
    plant_publisher_cpu_s: float = 0.0
    plant_subscriber_cpu_s: float = 0.0
    plant_killed: str = ""  # why the bench stopped the bridge early, if it did
    workers_runs: list[WorkersRun] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


# --- the machine --------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    mosquitto = ""
    try:
        # mosquitto -h prints "mosquitto version 2.0.11" and exits 3
        text = subprocess.run(
            ["mosquitto", "-h"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
        mosquitto = text.splitlines()[0].replace("mosquitto version", "").strip() if text else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "load_before": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count() or 0,
        "cpu_model": cpu,
        "memory_gb": mem_gb,
        "python": sys.version.split()[0],
        "mosquitto": mosquitto,
        "paho": importlib_metadata.version("paho-mqtt"),
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# --- child processes ----------------------------------------------------------------------

_ctx = multiprocessing.get_context("spawn")


class _Child:
    """A publisher or subscriber process and its queue."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.queue: Any = _ctx.Queue()
        self.process = _ctx.Process(target=target, args=(*args, self.queue), daemon=True)
        self.process.start()

    def wait(self, kind: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"benchmark client: no {kind!r} in {timeout:.0f} s")
            try:
                got_kind, value = self.queue.get(timeout=min(remaining, 0.5))
            except Exception:  # queue.Empty; the process may have died
                if not self.process.is_alive() and self.queue.empty():
                    raise RuntimeError(
                        f"benchmark client exited ({self.process.exitcode})"
                    ) from None
                continue
            if got_kind == kind:
                return value

    def close(self) -> None:
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def _relay_or_bridge(
    port: int,
    layout: Layout,
    sub_filter: str,
    expected: int,
    *,
    keep: bool | str,
    rate: float | None,
    record: bool,
    idle_s: float,
    during: Callable[[], None] | None = None,
    timeout_s: float = 600.0,
    give_up_s: float = 0.0,
    lean: bool = False,
) -> tuple[PublishResult, SubscribeResult]:
    """One publisher and one subscriber process: subscribe, publish, wait for the last.
    ``lean``: the socket-and-codec clients of bridge/_bench/_lean.py instead of paho's."""
    go = _ctx.Event()
    publisher, subscriber = (
        (_lean_publisher, _lean_subscriber) if lean else (_publisher, _subscriber)
    )
    sub = _Child(subscriber, port, sub_filter, expected, keep, idle_s, give_up_s)
    try:
        sub.wait("ready", 30)
        pub = _Child(publisher, port, layout, rate, record, go)
        try:
            pub.wait("ready", 60)
            go.set()
            if during is not None:
                during()
            published: PublishResult = pub.wait("done", timeout_s)
            received: SubscribeResult = sub.wait("done", timeout_s)
        finally:
            pub.close()
    finally:
        sub.close()
    return published, received


# --- the bridge as users run it -----------------------------------------------------------


def _bridge_config(
    port: int,
    db: Path,
    client_id: str,
    prefix: str,
    groups: list[tuple[Layout, Callable[[int], int]]],
    *,
    fixed: bool = False,
) -> str:
    lines = [
        "[broker]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f'client_id = "{client_id}"',
        "",
        "[database]",
        f'url = "sqlite+aiosqlite:///{db}"',
        "",
        "[bridge]",
        f'topic_prefix = "{prefix}"',
        "metrics_interval = 1.0",
        "",
    ]
    for layout, baseline in groups:
        for cid, n in zip(layout.ids, layout.sizes, strict=True):
            lines += [
                "[[characteristic]]",
                f"id = {cid}",
                f'name = "bench {cid}"',
                f"subgroup_size = {n}",
                f"baseline = {baseline(n)}",
                "usl = 10.05",
                "lsl = 9.95",
                *(["center_line = 10.0", "ucl = 10.03", "lcl = 9.97"] if fixed else []),
                'rules = "nelson"',
                "",
            ]
    return "\n".join(lines)


class _Watcher:
    """A paho client in the parent: counts messages per topic filter (retained included)."""

    def __init__(self, port: int, filters: list[str]) -> None:
        self.counts: dict[str, set[str]] = {f: set() for f in filters}
        self.payloads: dict[str, bytes] = {}
        self._lock = threading.Lock()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-watch-{os.getpid()}")
        client.on_message = self._on_message
        client.connect("127.0.0.1", port)
        for f in filters:
            client.subscribe(f, qos=1)
        client.loop_start()
        self.client = client

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.payloads[message.topic] = bytes(message.payload)
            for f, seen in self.counts.items():
                if paho.topic_matches_sub(f, message.topic):
                    seen.add(message.topic)

    def distinct(self, topic_filter: str) -> int:
        with self._lock:
            return len(self.counts[topic_filter])

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"benchmark: {what} not seen in {timeout:.0f} s")
            time.sleep(0.02)

    def online(self, topic: str) -> bool:
        with self._lock:
            raw = self.payloads.get(topic)
        if raw is None:
            return False
        try:
            return bool(json.loads(raw).get("online"))
        except ValueError:
            return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def _bridge_process(
    config: Path,
    workdir: Path,
    name: str,
    source: Path | None = None,
    extra: Sequence[str] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """``openspc run --config FILE`` as a child; SIGTERM and wait on the way out. With
    ``source``, the bridge of that checkout (first on its PYTHONPATH): before and after a
    change measured by the same clients."""
    log = (workdir / f"{name}.log").open("wb")
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "bridge", "run", "--config", str(config)),
            *("--log-level", "WARNING", *extra),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env=env,
    )
    log.close()
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _check_samples(
    layout: Layout, kept: list[tuple[str, bytes, int]]
) -> tuple[bool, list[list[int]]]:
    """Every characteristic's samples carry its readings, in order (the first ones, when
    some did not arrive); arrival times by characteristic index and sample number."""
    index = {cid: k for k, cid in enumerate(layout.ids)}
    got: list[list[list[float]]] = [[] for _ in layout.ids]
    arrivals: list[list[int]] = [[] for _ in layout.ids]
    for _topic, payload, arrived in kept:
        data = json.loads(payload)["payload"]
        k = index.get(data["characteristic_id"])
        if k is None:
            continue
        got[k].append(data["values"])
        arrivals[k].append(arrived)
    ok = True
    for k, n in enumerate(layout.sizes):
        values = layout.values(k)
        want = [values[j : j + n] for j in range(0, len(values) - n + 1, n)]
        if got[k] != want[: len(got[k])]:  # missing ones are counted, not called disorder
            ok = False
    return ok, arrivals


def _count_rows(db: Path, table: str, low: int, high: int) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM {table} WHERE characteristic_id BETWEEN ? AND ?",  # noqa: S608  # table is one of ours
            (low, high),
        ).fetchone()
    return int(row[0])


def _layout(base: int, count: int, readings: int, prefix: str) -> Layout:
    ids = tuple(base + k + 1 for k in range(count))
    sizes = tuple(1 if k % 2 == 0 else 5 for k in range(count))
    per = max(5, readings // count // 5 * 5)  # a multiple of 5: whole subgroups
    return Layout(ids, sizes, per * count, Topics(prefix).reading("{cid}"))


def _baseline_for(layout: Layout) -> Callable[[int], int]:
    """About a tenth of each characteristic's subgroups (2..25): limits for most of the run."""
    per = layout.per_char()
    return lambda n: max(2, min(25, per // n // 10))


# --- the run ------------------------------------------------------------------------------


def run_bench(options: BenchOptions) -> BenchReport:
    say = options.log
    workdir = Path(tempfile.mkdtemp(prefix="openspc-bench-"))
    workdir.chmod(0o755)
    report = BenchReport(machine=_machine(), readings=options.readings)
    try:
        port = free_port()
        data = workdir / "mosquitto" / "data"
        data.mkdir(parents=True)
        data.chmod(0o1777)
        # persisted as mosquitto/mosquitto.conf does (every 60 s and on a clean stop): once a
        # second, as for the tests, the whole in-memory store was written out each second,
        # about 0.06 of a core at 10,000 characteristics
        config = minimal_config(port, data, autosave_s=60)
        if options.tcp_nodelay:
            config += "set_tcp_nodelay true\n"
        with MosquittoProcess(port=port, config=config, workdir=workdir / "mosquitto") as broker:
            assert broker.process is not None
            options.broker_pid = broker.process.pid
            if "relay" in options.phases:
                _relay(options, report, broker.port)
            if "latency" in options.phases:
                _relay_latency(options, report, broker.port)
            if {"bridge", "latency"} & options.phases:
                _bridge(options, report, broker.port, workdir)
            if "memory" in options.phases:
                _memory(options, report, broker.port, workdir)
            if "plant" in options.phases:
                _plant(options, report, broker.port, workdir)
            if "workers" in options.phases:
                from bridge._bench._workers import run_workers_phase

                run_workers_phase(options, report, broker.port, workdir)
        if "engine" in options.phases:
            say("engine alone")
            from engine import benchmark

            report.engine_n1 = benchmark(options.engine_points, 1)
            report.engine_n5 = benchmark(options.engine_points, 5)
        report.machine["load_after"] = round(os.getloadavg()[0], 2)
        report.machine["commit"] = _commit()
    finally:
        if options.keep_dir:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


def _relay(options: BenchOptions, report: BenchReport, port: int) -> None:
    layout = _layout(0, CHARACTERISTICS, options.readings, "bench/relay")
    report.readings = layout.readings
    options.log(f"relay: {layout.readings} QoS 1 readings, paho -> mosquitto -> paho")
    broker0 = _cpu_s(options.broker_pid)
    pub, sub = _relay_or_bridge(
        port,
        layout,
        "bench/relay/#",
        layout.readings,
        keep=False,
        rate=None,
        record=False,
        idle_s=options.idle_s,
    )
    if sub.count != layout.readings:
        report.problems.append(f"relay: {sub.count} of {layout.readings} readings arrived")
    report.relay_broker_cpu_s = round(_cpu_s(options.broker_pid) - broker0, 2)
    report.relay_seconds = round((sub.last_ns - pub.started_ns) / 1e9, 3)
    report.relay_rate = sub.count / max(1e-9, report.relay_seconds)
    report.relay_publisher_cpu_s = round(pub.cpu_s, 2)
    report.relay_subscriber_cpu_s = round(sub.cpu_s, 2)


def _bridge(options: BenchOptions, report: BenchReport, port: int, workdir: Path) -> None:
    prefix = DEFAULT_PREFIX
    through = _layout(THROUGHPUT_BASE, CHARACTERISTICS, options.readings, prefix)
    paced = round(options.latency_rate * options.latency_seconds)
    latency = _layout(LATENCY_BASE, CHARACTERISTICS, paced, prefix)
    db = workdir / "bench.db"
    config = workdir / "bench.toml"
    config.write_text(
        _bridge_config(
            port,
            db,
            "openspc-bench",
            prefix,
            [(through, _baseline_for(through)), (latency, _baseline_for(latency))],
        )
    )
    topics = Topics(prefix)
    watcher = _Watcher(port, [topics.status, topics.metrics])
    try:
        with _bridge_process(config, workdir, "bridge", options.bridge_source) as bridge:
            watcher.wait_for(
                lambda: watcher.online(topics.status) or bridge.poll() is not None,
                60,
                "the bridge online",
            )
            if bridge.poll() is not None:
                raise RuntimeError(f"openspc run exited: {(workdir / 'bridge.log').read_text()}")
            time.sleep(0.5)  # let it publish its retained start-up state
            if "bridge" in options.phases:
                _throughput(options, report, port, bridge.pid, through, db)
            if "latency" in options.phases:
                cpu0 = _cpu_s(bridge.pid)
                _latency(options, report, port, bridge.pid, latency)
                report.latency_bridge_cpu_s = round(_cpu_s(bridge.pid) - cpu0, 2)
                time.sleep(1.5)  # the next metrics message covers the paced run only
                raw = watcher.payloads.get(topics.metrics)
                if raw is not None:
                    report.bridge_latency_ms = json.loads(raw).get("latency_ms") or {}
    finally:
        watcher.close()


def _throughput(
    options: BenchOptions, report: BenchReport, port: int, pid: int, layout: Layout, db: Path
) -> None:
    expected = layout.expected_samples()
    report.samples_expected = expected
    options.log(
        f"bridge: {layout.readings} QoS 1 readings over {len(layout.ids)} characteristics, "
        f"{expected} samples expected"
    )
    cpu0 = _cpu_s(pid)
    broker0 = _cpu_s(options.broker_pid)
    profiler: list[subprocess.Popen[bytes]] = []

    pub, sub = _relay_or_bridge(
        port,
        layout,
        Topics().char_filter(SAMPLE),
        expected,
        keep=True,
        rate=None,
        record=False,
        idle_s=options.idle_s,
        during=lambda: _profile(options.profile, pid, profiler),
    )
    _profile_stop(profiler)
    report.bridge_cpu_s = round(_cpu_s(pid) - cpu0, 2)
    report.broker_cpu_s = round(_cpu_s(options.broker_pid) - broker0, 2)
    seconds = (sub.last_ns - pub.started_ns) / 1e9
    report.bridge_seconds = round(seconds, 3)
    report.samples_received = sub.count
    report.bridge_rate = layout.readings / max(1e-9, seconds) if sub.count == expected else 0.0
    if report.relay_rate:
        report.ratio = report.bridge_rate / report.relay_rate
    in_order, _ = _check_samples(layout, sub.kept)
    report.samples_in_order = in_order
    low, high = layout.ids[0], layout.ids[-1]
    report.samples_stored = _count_rows(db, "samples", low, high)
    report.readings_stored = _count_rows(db, "readings", low, high)
    if sub.count != expected:
        report.problems.append(f"bridge: {sub.count} of {expected} samples arrived")
    if not in_order:
        report.problems.append("bridge: samples do not match the readings sent, in order")
    if report.samples_stored != expected:
        report.problems.append(f"bridge: {report.samples_stored} of {expected} samples stored")
    if report.readings_stored != layout.readings:
        report.problems.append(
            f"bridge: {report.readings_stored} of {layout.readings} readings stored"
        )


def _profile(path: Path | None, pid: int, running: list[subprocess.Popen[bytes]]) -> None:
    """py-spy record of ``pid`` into ``path`` (a flame graph for .svg, else collapsed stacks)."""
    if path is None:
        return
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    running.append(
        subprocess.Popen(
            [
                *(py_spy, "record", "-p", str(pid), "-o", str(path)),
                *("-r", "200", "--threads", "--idle", "--format"),
                "flamegraph" if path.suffix == ".svg" else "raw",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )


def _profile_stop(running: list[subprocess.Popen[bytes]]) -> None:
    for p in running:
        p.send_signal(signal.SIGINT)
        p.wait(60)


def _latency(
    options: BenchOptions, report: BenchReport, port: int, pid: int, layout: Layout
) -> None:
    rate = options.latency_rate
    report.latency_rate = rate
    options.log(f"latency: {layout.readings} readings paced at {rate:,.0f}/s")
    expected = layout.expected_samples()
    # profiled when it is the only bridge run (else the throughput run is)
    profile = options.profile if "bridge" not in options.phases else None
    profiler: list[subprocess.Popen[bytes]] = []
    pub, sub = _relay_or_bridge(
        port,
        layout,
        Topics().char_filter(SAMPLE),
        expected,
        keep=True,
        rate=rate,
        record=True,
        idle_s=options.idle_s,
        during=lambda: _profile(profile, pid, profiler),
    )
    _profile_stop(profiler)
    ok, arrivals = _check_samples(layout, sub.kept)
    if not ok or sub.count != expected:
        report.problems.append(f"latency: {sub.count} of {expected} samples, in order: {ok}")
    delays = _delays(layout, pub, arrivals)
    if delays:
        report.latency_samples = len(delays)
        report.latency_p50_ms, report.latency_p99_ms, report.latency_max_ms = _quantiles(delays)


def _delays(layout: Layout, pub: PublishResult, arrivals: list[list[int]]) -> list[float]:
    """Milliseconds from sending the reading that completed each sample to its arrival."""
    return [delay for _, delay in _sent_and_delays(layout, pub, arrivals)]


def _sent_and_delays(
    layout: Layout, pub: PublishResult, arrivals: list[list[int]]
) -> Iterator[tuple[int, float]]:
    """For each sample back: when the reading that completed it was sent (ns), and the
    milliseconds from then to the sample's arrival."""
    width = len(layout.ids)
    for k, n in enumerate(layout.sizes):
        for j, arrived in enumerate(arrivals[k]):
            i = ((j + 1) * n - 1) * width + k  # the reading that completed sample j
            if i < len(pub.sent_ns):
                yield pub.sent_ns[i], (arrived - pub.sent_ns[i]) / 1e6


def _latency_by_second(
    layout: Layout, pub: PublishResult, arrivals: list[list[int]], path: Path
) -> None:
    """The plant phase's latency by the second its readings were sent, for ``--keep``:
    whether a missed p99 is the start's backlog or a steady deficit (docs/performance.md)."""
    by_second: dict[int, list[float]] = {}
    for sent, delay in _sent_and_delays(layout, pub, arrivals):
        by_second.setdefault((sent - pub.started_ns) // 1_000_000_000, []).append(delay)
    lines = ["second,samples,p50_ms,p99_ms,max_ms"]
    for second in sorted(by_second):
        p50, p99, top = _quantiles(by_second[second])
        lines.append(f"{second},{len(by_second[second])},{p50},{p99},{top}")
    path.write_text("\n".join(lines) + "\n")


def _quantiles(delays: list[float]) -> tuple[float, float, float]:
    delays = sorted(delays)
    p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))]
    return round(statistics.median(delays), 2), round(p99, 2), round(delays[-1], 2)


def _relay_latency(options: BenchOptions, report: BenchReport, port: int) -> None:
    """The same pacing through the broker alone: the floor under the bridge's latency."""
    paced = round(options.latency_rate * options.latency_seconds)
    layout = _layout(0, CHARACTERISTICS, paced, "bench/paced")
    layout = Layout(layout.ids, (1,) * len(layout.ids), layout.readings, layout.topic)
    pub, sub = _relay_or_bridge(
        port,
        layout,
        "bench/paced/#",
        layout.readings,
        keep=True,
        rate=options.latency_rate,
        record=True,
        idle_s=options.idle_s,
    )
    index = {layout.topic.format(cid=cid): k for k, cid in enumerate(layout.ids)}
    arrivals: list[list[int]] = [[] for _ in layout.ids]
    for topic, _payload, arrived in sub.kept:
        arrivals[index[topic]].append(arrived)
    delays = _delays(layout, pub, arrivals)
    if delays:
        report.relay_latency_p50_ms, report.relay_latency_p99_ms, _ = _quantiles(delays)


def _memory(options: BenchOptions, report: BenchReport, port: int, workdir: Path) -> None:
    count = options.memory_characteristics
    report.memory_characteristics = count
    options.log(f"memory: openspc run with {count} characteristics")
    layout = _layout(0, count, count * 5, MEMORY_PREFIX)
    db = workdir / "memory.db"
    config = workdir / "memory.toml"
    config.write_text(
        _bridge_config(port, db, "openspc-bench-memory", MEMORY_PREFIX, [(layout, lambda n: 25)])
    )
    topics = Topics(MEMORY_PREFIX)
    alarms, samples = topics.char_filter(ALARMS), topics.char_filter(SAMPLE)
    watcher = _Watcher(port, [alarms, samples])
    try:
        started = time.monotonic()
        with _bridge_process(config, workdir, "memory", options.bridge_source) as bridge:
            # the bridge publishes meta, limits, history, alarms per characteristic at start-up
            watcher.wait_for(
                lambda: watcher.distinct(alarms) >= count or bridge.poll() is not None,
                300,
                f"{count} characteristics started",
            )
            if bridge.poll() is not None:
                raise RuntimeError(f"openspc run exited: {(workdir / 'memory.log').read_text()}")
            report.memory_startup_s = round(time.monotonic() - started, 2)
            time.sleep(1.0)
            report.memory_rss_mb = round(_rss_mb(bridge.pid), 1)
            # one whole subgroup for each: one sample each
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-memory-pub")
            client.max_inflight_messages_set(0)
            client.max_queued_messages_set(0)
            client.connect("127.0.0.1", port)
            client.loop_start()
            rng_values = [10.0, 10.01, 9.99, 10.02, 9.98]
            for k, cid in enumerate(layout.ids):
                n = layout.sizes[k]
                body = {"values": rng_values[:n]} if n > 1 else {"value": rng_values[0]}
                info = client.publish(
                    layout.topic.format(cid=cid), json.dumps(body).encode(), qos=1
                )
                if k % WINDOW == WINDOW - 1:
                    info.wait_for_publish(30)
            try:
                watcher.wait_for(
                    lambda: watcher.distinct(samples) >= count, 120, f"{count} samples"
                )
                time.sleep(1.0)
                report.memory_rss_after_mb = round(_rss_mb(bridge.pid), 1)
            except TimeoutError as exc:
                report.problems.append(str(exc))
            finally:
                client.disconnect()
                client.loop_stop()
    finally:
        watcher.close()


class _Sampler:
    """A thread in the parent: the bridge's RSS and outstanding publishes, every 0.2 s; it
    kills a bridge that grows past ``rss_limit_mb`` (a run that would take the machine)."""

    def __init__(self, pid: int, watcher: _Watcher, metrics: str, rss_limit_mb: float) -> None:
        self.pid = pid
        self.watcher = watcher
        self.metrics = metrics
        self.rss_limit_mb = rss_limit_mb
        self.rss_max = 0.0
        self.outstanding_max = 0
        self.inside_p99_max = 0.0  # the worst p99 of arrival -> publish in one metrics window
        self.inside_max = 0.0
        self.killed = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                rss = _rss_mb(self.pid)
            except (OSError, ValueError):
                return  # it exited
            self.rss_max = max(self.rss_max, rss)
            raw = self.watcher.payloads.get(self.metrics)
            if raw is not None:
                try:
                    m = json.loads(raw)
                except ValueError:
                    m = {}
                seen = max(m.get("publish_outstanding") or 0, m.get("publish_outstanding_max") or 0)
                self.outstanding_max = max(self.outstanding_max, int(seen))
                inside = m.get("latency_ms") or {}  # the bridge's last 2,048 samples
                self.inside_p99_max = max(self.inside_p99_max, inside.get("p99") or 0.0)
                self.inside_max = max(self.inside_max, inside.get("max") or 0.0)
            if rss > self.rss_limit_mb and not self.killed:
                self.killed = (
                    f"RSS {rss:,.0f} MB past the bench's limit of {self.rss_limit_mb:,.0f}"
                )
                os.kill(self.pid, signal.SIGKILL)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _plant(options: BenchOptions, report: BenchReport, port: int, workdir: Path) -> None:
    count, rate = options.plant_characteristics, options.plant_rate
    layout = Layout(
        tuple(range(1, count + 1)),
        (1,) * count,
        count * options.plant_readings,
        Topics(PLANT_PREFIX).reading("{cid}"),
    )
    expected = layout.expected_samples()
    report.plant_characteristics, report.plant_rate = count, rate
    report.plant_clients = options.plant_clients
    report.plant_expected = expected
    options.log(
        f"plant: {count:,} characteristics, n = 1, fixed limits, {layout.readings:,} QoS 1 "
        f"readings paced at {rate:,.0f}/s, {options.plant_clients} clients"
    )
    db = workdir / "plant.db"
    config = workdir / "plant.toml"
    config.write_text(
        _bridge_config(
            port, db, "openspc-bench-plant", PLANT_PREFIX, [(layout, lambda n: 25)], fixed=True
        )
    )
    topics = Topics(PLANT_PREFIX)
    status, metrics, alarms = topics.status, topics.metrics, topics.char_filter(ALARMS)
    watcher = _Watcher(port, [status, metrics, alarms])
    try:
        with _bridge_process(config, workdir, "plant", options.bridge_source) as bridge:
            watcher.wait_for(
                lambda: watcher.distinct(alarms) >= count or bridge.poll() is not None,
                300,
                f"{count} characteristics started",
            )
            if bridge.poll() is not None:
                raise RuntimeError(f"openspc run exited: {(workdir / 'plant.log').read_text()}")
            time.sleep(1.0)
            report.plant_rss_start_mb = round(_rss_mb(bridge.pid), 1)
            cpu0 = _cpu_s(bridge.pid)
            broker0 = _cpu_s(options.broker_pid)
            sampler = _Sampler(bridge.pid, watcher, metrics, options.plant_rss_limit_mb)
            try:
                pub, sub = _relay_or_bridge(
                    port,
                    layout,
                    topics.char_filter(SAMPLE),
                    expected,
                    keep="arrivals",
                    rate=rate,
                    record=True,
                    idle_s=max(options.idle_s, 30.0),
                    timeout_s=layout.readings / rate + options.plant_wait_s + 300,
                    give_up_s=layout.readings / rate + options.plant_wait_s,
                    lean=options.plant_clients == "lean",
                )
                report.plant_broker_cpu_s = round(_cpu_s(options.broker_pid) - broker0, 2)
                report.plant_publisher_cpu_s = round(pub.cpu_s, 2)
                report.plant_subscriber_cpu_s = round(sub.cpu_s, 2)
                if bridge.poll() is None:
                    report.plant_bridge_cpu_s = round(_cpu_s(bridge.pid) - cpu0, 2)
                    time.sleep(1.5)  # one more metrics message
            finally:
                sampler.stop()
            report.plant_rss_max_mb = round(sampler.rss_max, 1)
            report.plant_outstanding_max = sampler.outstanding_max
            report.plant_inside_p99_max_ms = sampler.inside_p99_max
            report.plant_inside_max_ms = sampler.inside_max
            report.plant_killed = sampler.killed
    finally:
        watcher.close()
    report.plant_received = sub.count
    report.plant_publish_errors = pub.errors
    report.plant_publish_s = (
        round((pub.sent_ns[-1] - pub.started_ns) / 1e9, 2) if pub.sent_ns else 0
    )
    report.plant_back_s = round((sub.last_ns - pub.started_ns) / 1e9, 2) if sub.count else 0.0
    index = {layout.topic.format(cid=cid).rsplit("/", 1)[0]: k for k, cid in enumerate(layout.ids)}
    arrivals: list[list[int]] = [[] for _ in layout.ids]
    for topic, times in sub.arrivals.items():
        k = index.get(topic.rsplit("/", 1)[0])
        if k is not None:
            arrivals[k] = list(times)
    delays = _delays(layout, pub, arrivals)
    if delays:
        report.plant_p50_ms, report.plant_p99_ms, report.plant_max_ms = _quantiles(delays)
        _latency_by_second(layout, pub, arrivals, workdir / "plant-latency.csv")
    report.plant_stored = _count_rows(db, "samples", 1, count)
    if report.plant_killed:
        report.problems.append(f"plant: bridge stopped by the bench: {report.plant_killed}")
    if pub.errors:
        report.problems.append(f"plant: the publisher could not send {pub.errors:,} readings")
    if sub.count != expected:
        report.problems.append(f"plant: {sub.count:,} of {expected:,} samples arrived")
    if report.plant_stored != expected and not report.plant_killed:
        report.problems.append(f"plant: {report.plant_stored:,} of {expected:,} samples stored")


# --- output -------------------------------------------------------------------------------


_Row = tuple[str, str, str]  # what, value, target


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def format_report(r: BenchReport) -> str:
    m = r.machine
    rows: list[_Row] = []
    if r.relay_rate or r.bridge_rate:  # not with --only leaving both out
        rows += _throughput_rows(r)
    if r.latency_rate:  # not with --only leaving latency out
        rows += _latency_rows(r)
    if r.engine_n1 or r.engine_n5:  # not with --only leaving the engine out
        rows += _engine_rows(r)
    if r.memory_characteristics:  # not with --only leaving memory out
        rows += _memory_rows(r)
    if r.plant_characteristics:  # only when asked for
        rows += _plant_rows(r)
    if r.workers_runs:  # only when asked for
        from bridge._bench._workers import workers_rows

        rows += workers_rows(r)
    w1 = max(len(a) for a, _, _ in rows)
    w2 = max(len(b) for _, b, _ in rows)
    lines = [
        f"openspc bench: {r.readings:,} readings; {m['cpus']} CPU(s) {m['cpu_model']}, "
        f"{m['memory_gb']} GB, Python {m['python']}, Mosquitto {m['mosquitto']}",
        f"load average {m.get('load_before', 0)} before, {m.get('load_after', 0)} after"
        f"; commit {m.get('commit') or '-'}",
        "",
    ]
    lines += [f"  {a:<{w1}}  {b:>{w2}}  {c}".rstrip() for a, b, c in rows]
    if r.problems:
        lines += ["", "PROBLEMS:", *[f"  - {p}" for p in r.problems]]
    return "\n".join(lines)


def _plant_rows(r: BenchReport) -> list[_Row]:
    """The plant phase (``--characteristics N --rate R``), against the issue's targets."""
    rows: list[_Row] = []

    def row(what: str, value: str, target: str = "") -> None:
        rows.append((what, value, target))

    # the targets: 10,000 characteristics at 8,000 readings/s (p99 < 1 s, RSS
    # <= 250 MB); 2,000 at 1 Hz each (p99 < 50 ms, RSS < 150 MB)
    large = r.plant_characteristics >= 10_000
    p99_target, rss_target = (1000.0, 250.0) if large else (50.0, 150.0)
    p99 = r.plant_p99_ms
    row(
        f"plant: {r.plant_characteristics:,} chars, n = 1, {r.plant_rate:,.0f} readings/s",
        f"{r.plant_received:,} / {r.plant_expected:,} samples back",
        f"all: {_mark(r.plant_received == r.plant_expected)}",
    )
    row("  samples stored in the database", f"{r.plant_stored:,}")
    row(
        "  publish -> sample p50 / max",
        "-" if r.plant_p50_ms is None else f"{r.plant_p50_ms:,.1f} / {r.plant_max_ms or 0:,.1f} ms",
    )
    row(
        "  p99",
        "-" if p99 is None else f"{p99:,.1f} ms",
        f"< {p99_target:,.0f} ms: {_mark(p99 is not None and p99 < p99_target)}",
    )
    row(
        "  readings sent in / last sample back after",
        f"{r.plant_publish_s:,.1f} / {r.plant_back_s:,.1f} s",
        f"(paced: {r.plant_expected / r.plant_rate:,.1f} s)",
    )
    row(
        "  bridge RSS after start-up / max over the run",
        f"{r.plant_rss_start_mb:,.0f} / {r.plant_rss_max_mb:,.0f} MB",
        f"<= {rss_target:,.0f} MB: {_mark(r.plant_rss_max_mb <= rss_target)}",
    )
    row("  publishes outstanding, max", f"{r.plant_outstanding_max:,}")
    row(
        "  inside the bridge (arrival -> publish), worst p99 / max",
        f"{r.plant_inside_p99_max_ms:,.1f} / {r.plant_inside_max_ms:,.1f} ms",
        "(p99 of the last 2,048 samples, worst of the run's metrics)",
    )
    row("  bridge CPU during the run", f"{r.plant_bridge_cpu_s:,.1f} s")
    row(
        f"  broker / publisher / subscriber ({r.plant_clients}) CPU",
        f"{r.plant_broker_cpu_s:,.1f} / {r.plant_publisher_cpu_s:,.1f} /"
        f" {r.plant_subscriber_cpu_s:,.1f} s",
    )
    return rows


def _throughput_rows(r: BenchReport) -> list[_Row]:
    """Relay against bridge: rates, ratio, counts, CPU."""
    rows: list[_Row] = []

    def row(what: str, value: str, target: str = "") -> None:
        rows.append((what, value, target))

    row("relay paho -> mosquitto -> paho, QoS 1", f"{r.relay_rate:,.0f} readings/s")
    row("  broker CPU, relay run", f"{r.relay_broker_cpu_s:.1f} s in {r.relay_seconds:.1f} s")
    row(
        "  relay publisher / subscriber CPU",
        f"{r.relay_publisher_cpu_s:.1f} / {r.relay_subscriber_cpu_s:.1f} s",
    )
    if not r.samples_expected:  # the bridge phase left out (--only relay,workers)
        return rows
    row("bridge end to end, QoS 1, 200 chars", f"{r.bridge_rate:,.0f} readings/s")
    row(
        "  ratio bridge / relay",
        f"{r.ratio:.2f}",
        f">= 0.80: {_mark(r.ratio >= 0.8)}",
    )
    row("  samples received / expected", f"{r.samples_received:,} / {r.samples_expected:,}")
    row("  samples stored in the database", f"{r.samples_stored:,}")
    row("  readings stored in the database", f"{r.readings_stored:,}")
    row("  per-characteristic order and values", "ok" if r.samples_in_order else "WRONG")
    row("  bridge CPU during the run", f"{r.bridge_cpu_s:.1f} s in {r.bridge_seconds:.1f} s")
    row("  broker CPU, bridge run", f"{r.broker_cpu_s:.1f} s")
    per = r.bridge_cpu_s / r.readings * 1e6 if r.readings else 0.0
    row("  bridge CPU per reading", f"{per:.0f} us")
    return rows


def _latency_rows(r: BenchReport) -> list[_Row]:
    """The paced run: latency percentiles, the relay alone, inside the bridge."""
    rows: list[_Row] = []

    def row(what: str, value: str, target: str = "") -> None:
        rows.append((what, value, target))

    p99 = r.latency_p99_ms
    row(
        f"latency at {r.latency_rate:,.0f} readings/s, p50",
        "-" if r.latency_p50_ms is None else f"{r.latency_p50_ms:.1f} ms",
    )
    row(
        "  p99",
        "-" if p99 is None else f"{p99:.1f} ms",
        f"<= 10 ms: {_mark(p99 is not None and p99 <= 10)}",
    )
    row("  max", "-" if r.latency_max_ms is None else f"{r.latency_max_ms:.1f} ms")
    if r.relay_latency_p50_ms is not None:
        row(
            "  relay alone at that pace, p50 / p99",
            f"{r.relay_latency_p50_ms:.1f} / {r.relay_latency_p99_ms or 0:.1f} ms",
        )
    if r.latency_bridge_cpu_s:
        row("  bridge CPU during the paced run", f"{r.latency_bridge_cpu_s:.1f} s")
    inside = r.bridge_latency_ms
    if inside:
        row(
            "  inside the bridge, last 2,048 samples",
            f"{inside.get('p50') or 0:.1f} / {inside.get('p99') or 0:.1f} ms",
        )
    return rows


def _engine_rows(r: BenchReport) -> list[_Row]:
    """The engine alone, n = 1 and n = 5."""
    rows: list[_Row] = []

    def row(what: str, value: str, target: str = "") -> None:
        rows.append((what, value, target))

    row(
        "engine, n = 1, eight rules",
        f"{r.engine_n1:,.0f} points/s",
        f">= 300,000: {_mark(r.engine_n1 >= 300_000)}",
    )
    row(
        "engine, n = 5, eight rules",
        f"{r.engine_n5:,.0f} points/s",
        f">= 300,000: {_mark(r.engine_n5 >= 300_000)}",
    )
    return rows


def _memory_rows(r: BenchReport) -> list[_Row]:
    """Memory with many characteristics, and start-up time."""
    rows: list[_Row] = []

    def row(what: str, value: str, target: str = "") -> None:
        rows.append((what, value, target))

    row(
        f"bridge memory, {r.memory_characteristics:,} chars, started",
        f"{r.memory_rss_mb:.0f} MB",
        f"<= 150 MB: {_mark(r.memory_rss_mb <= 150)}",
    )
    after = r.memory_rss_after_mb
    row(
        "  after one sample each",
        "-" if after is None else f"{after:.0f} MB",
        "" if after is None else f"<= 150 MB: {_mark(after <= 150)}",
    )
    row("  start-up time", f"{r.memory_startup_s:.1f} s")
    return rows
