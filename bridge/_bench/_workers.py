"""The bench's *workers* phase: ``openspc run --workers N`` on a throw-away PostgreSQL.

For each N asked (``--workers 1,2``; repeats allowed, e.g. ``1,2,1,2``, since the machine
is noisy): a fresh database on one throw-away PostgreSQL cluster (a free port, never 5432),
a fresh topic prefix and client id, the bridge as a cluster of N worker processes (16
partitions, the bridge phase's 200 characteristics), the bridge phase's QoS 1 readings as
fast as the window allows; samples counted back (values and order checked) and in the
database (each ``(characteristic_id, seq)`` once). CPU is measured for the whole process
tree of each part: the bridge (parent and workers), Mosquitto, PostgreSQL (postmaster and
backends), so the limit is visible (docs/performance.md, "Workers: scaling with cores").
The node logs are read after each run for leases lost: with no fault injected there must be
none, however loaded the machine (a lapse under load was the bench's first finding).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bridge._bench._clients import Layout
from bridge._bench._run import (
    CHARACTERISTICS,
    THROUGHPUT_BASE,
    BenchOptions,
    BenchReport,
    _baseline_for,
    _bridge_config,
    _bridge_process,
    _check_samples,
    _layout,
    _relay_or_bridge,
    _Row,
    _Watcher,
)
from bridge.testing import PostgresCluster, PostgresNotFound
from bridge.wire.topics import ALARMS, SAMPLE, Topics

__all__ = [
    "WorkersRun",
    "lease_losses",
    "parse_workers",
    "run_workers_phase",
    "tree_cpu_s",
    "workers_rows",
]

PARTITIONS = 16
MAX_WORKERS = 64


@dataclass
class WorkersRun:
    workers: int
    readings: int
    partitions: int = PARTITIONS
    seconds: float = 0.0  # first reading sent to last sample back
    rate: float = 0.0  # readings/s; 0 when samples are missing
    samples_expected: int = 0
    samples_received: int = 0
    samples_in_order: bool = False
    samples_stored: int = 0
    samples_distinct: int = 0  # distinct (characteristic_id, seq) in the database
    samples_again: int = 0  # sample messages seen more than once (same sample_id)
    readings_stored: int = 0
    bridge_cpu_s: float = 0.0  # the openspc run process and its workers
    broker_cpu_s: float = 0.0
    postgres_cpu_s: float = 0.0  # postmaster and every backend
    clients_cpu_s: float = 0.0  # the bench's publisher and subscriber
    lease_losses: int = 0  # lines of the node logs saying a lease was lost or not renewed


_LEASE_LOST = re.compile(
    r"lease of partition \d+ lost by node|lost the lease of partition|could not renew its leases"
)


def lease_losses(log_text: str) -> int:
    """How many lines of a node log say a lease was lost (bridge/cluster/: a batch refused
    by the fencing check, a renewal that found the lease gone, a node giving up)."""
    return sum(1 for line in log_text.splitlines() if _LEASE_LOST.search(line))


def parse_workers(text: str) -> tuple[int, ...]:
    """``"2"`` -> (2,), ``"1,2"`` -> (1, 2); a clear ValueError for anything else."""
    counts: list[int] = []
    for part in text.split(","):
        try:
            n = int(part.strip())
        except ValueError:
            raise ValueError(f"--workers takes N or N,M,... (got {text!r})") from None
        if not 1 <= n <= MAX_WORKERS:
            raise ValueError(f"--workers: each count must be 1..{MAX_WORKERS} (got {n})")
        counts.append(n)
    return tuple(counts)


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # it exited meanwhile
    return found


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` and every descendant, the exited ones it waited for included
    (utime + stime + cutime + cstime)."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    own = sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")
    return own + sum(tree_cpu_s(child) for child in _children(pid))


def _postmaster_pid(pg: PostgresCluster) -> int:
    assert pg.datadir is not None
    return int((pg.datadir / "postmaster.pid").read_text().splitlines()[0])


async def _sql(pg: PostgresCluster, database: str, query: str) -> list[tuple[object, ...]]:
    import asyncpg  # type: ignore[import-untyped]  # no stubs

    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/{database}")
    try:
        return [tuple(row) for row in await conn.fetch(query)]
    finally:
        await conn.close()


def run_workers_phase(options: BenchOptions, report: BenchReport, port: int, workdir: Path) -> None:
    """One throw-away PostgreSQL for every run of the phase (or ``options.postgres``, a
    running one: a database of its own per run, dropped after)."""
    pg = options.postgres
    if pg is None:
        try:
            pg = PostgresCluster().start()
        except PostgresNotFound as exc:
            raise RuntimeError(f"--workers needs PostgreSQL: {exc}") from None
    try:
        for i, n in enumerate(options.workers):
            run = _one_run(options, pg, port, workdir, i, n)
            report.workers_runs.append(run)
            report.problems += _problems(run)
    finally:
        if options.postgres is None:
            pg.remove()


def _problems(run: WorkersRun) -> list[str]:
    what = f"workers {run.workers}"
    out: list[str] = []
    if run.samples_received != run.samples_expected:
        out.append(f"{what}: {run.samples_received} of {run.samples_expected} samples arrived")
    if not run.samples_in_order:
        out.append(f"{what}: samples do not match the readings sent, in order")
    if not run.samples_stored == run.samples_distinct == run.samples_expected:
        out.append(
            f"{what}: {run.samples_stored} samples stored ({run.samples_distinct} distinct)"
            f" of {run.samples_expected}"
        )
    if run.readings_stored != run.readings:
        out.append(f"{what}: {run.readings_stored} of {run.readings} readings stored")
    if run.lease_losses:
        out.append(f"{what}: {run.lease_losses} lease loss(es) in the node log, no fault injected")
    return out


def _config(options: BenchOptions, pg: PostgresCluster, port: int, i: int) -> tuple[str, str]:
    """The run's database (created) and config text."""
    database, prefix = f"bench_{uuid.uuid4().hex[:8]}_w{i}", f"openspcw{i}"
    asyncio.run(_sql(pg, "postgres", f'CREATE DATABASE "{database}"'))
    layout = _layout(THROUGHPUT_BASE, CHARACTERISTICS, options.readings, prefix)
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{pg.port}/{database}"
    text = _bridge_config(
        port, Path("unused"), f"openspc-bench-w{i}", prefix, [(layout, _baseline_for(layout))]
    )
    text = text.replace('url = "sqlite+aiosqlite:///unused"', f'url = "{url}"')
    text += f'\n[cluster]\nenabled = true\nnode = "bench{i}"\npartitions = {PARTITIONS}\n'
    if options.lease_seconds is not None:
        text += f"lease_seconds = {options.lease_seconds}\n"
    return database, text


def _wait_ready(watcher: _Watcher, topics: Topics, n: int, alive: Callable[[], bool]) -> None:
    """Every partition held, spread over the N workers, every characteristic started."""

    def spread() -> bool:
        raw = watcher.payloads.get(topics.cluster)
        if raw is None:
            return False
        nodes = json.loads(raw).get("nodes") or []
        held = sorted(k for node in nodes for k in node.get("partitions", []))
        return len(nodes) == n and held == list(range(PARTITIONS))

    alarms = topics.char_filter(ALARMS)
    watcher.wait_for(lambda: spread() or not alive(), 120, f"{n} worker(s) holding")
    watcher.wait_for(
        lambda: watcher.distinct(alarms) >= CHARACTERISTICS or not alive(),
        120,
        f"{CHARACTERISTICS} characteristics started",
    )
    if not alive():
        raise RuntimeError("openspc run --workers exited during start-up")
    time.sleep(1.0)  # the last partitions' subscriptions


def _one_run(
    options: BenchOptions, pg: PostgresCluster, port: int, workdir: Path, i: int, n: int
) -> WorkersRun:
    database, text = _config(options, pg, port, i)
    prefix = f"openspcw{i}"
    layout = _layout(THROUGHPUT_BASE, CHARACTERISTICS, options.readings, prefix)
    run = WorkersRun(n, layout.readings, samples_expected=layout.expected_samples())
    options.log(f"workers {n}: {layout.readings} QoS 1 readings, {PARTITIONS} partitions")
    config = workdir / f"workers{i}.toml"
    config.write_text(text)
    topics = Topics(prefix)
    watcher = _Watcher(port, [topics.cluster, topics.char_filter(ALARMS)])
    extra = ("--workers", str(n))
    try:
        with _bridge_process(config, workdir, f"workers{i}", options.bridge_source, extra) as b:
            _wait_ready(watcher, topics, n, lambda: b.poll() is None)
            _measure(options, run, pg, (port, b.pid), layout, topics)
    finally:
        watcher.close()
    _count(run, pg, database)
    log = workdir / f"workers{i}.log"
    run.lease_losses = lease_losses(log.read_text(errors="replace")) if log.exists() else 0
    return run


def _measure(
    options: BenchOptions,
    run: WorkersRun,
    pg: PostgresCluster,
    where: tuple[int, int],
    layout: Layout,
    topics: Topics,
) -> None:
    """The readings through the cluster (``where``: the broker's port, the bridge's pid)."""
    port, pid = where
    postmaster = _postmaster_pid(pg)
    cpu0 = (tree_cpu_s(pid), tree_cpu_s(options.broker_pid), tree_cpu_s(postmaster))
    pub, sub = _relay_or_bridge(
        port,
        layout,
        topics.char_filter(SAMPLE),
        run.samples_expected,
        keep="distinct",
        rate=None,
        record=False,
        idle_s=options.idle_s,
    )
    cpu1 = (tree_cpu_s(pid), tree_cpu_s(options.broker_pid), tree_cpu_s(postmaster))
    run.bridge_cpu_s, run.broker_cpu_s, run.postgres_cpu_s = (
        round(b - a, 2) for a, b in zip(cpu0, cpu1, strict=True)
    )
    run.clients_cpu_s = round(pub.cpu_s + sub.cpu_s, 2)
    run.seconds = round((sub.last_ns - pub.started_ns) / 1e9, 3)
    run.samples_received = sub.count  # distinct sample ids
    complete = sub.count == run.samples_expected
    run.rate = round(layout.readings / max(1e-9, run.seconds), 1) if complete else 0.0
    first = _first_of_each(sub.kept)
    run.samples_again = len(sub.kept) - len(first)
    run.samples_in_order, _ = _check_samples(layout, first)


def _first_of_each(
    kept: list[tuple[str, bytes, int]],
) -> list[tuple[str, bytes, int]]:
    """Each sample id's first message (a takeover may publish the last sample again)."""
    seen: set[object] = set()
    out: list[tuple[str, bytes, int]] = []
    for message in kept:
        sample_id = json.loads(message[1])["payload"].get("sample_id")
        if sample_id not in seen:
            seen.add(sample_id)
            out.append(message)
    return out


def _count(run: WorkersRun, pg: PostgresCluster, database: str) -> None:
    """After the bridge stopped: every sample and reading in the database, each once."""
    [(samples, distinct)] = asyncio.run(
        _sql(pg, database, "SELECT count(*), count(DISTINCT (characteristic_id, seq)) FROM samples")
    )
    [(readings,)] = asyncio.run(_sql(pg, database, "SELECT count(*) FROM readings"))
    run.samples_stored, run.samples_distinct = int(str(samples)), int(str(distinct))
    run.readings_stored = int(str(readings))
    asyncio.run(_sql(pg, "postgres", f'DROP DATABASE "{database}" WITH (FORCE)'))


def workers_rows(r: BenchReport) -> list[_Row]:
    """Each run's rate beside the relay, counts, and where the CPU went."""
    rows: list[_Row] = []
    cpus = r.machine.get("cpus") or 0
    rates: dict[int, list[float]] = {}  # each N's runs: the scaling line takes their mean
    for run in r.workers_runs:
        rates.setdefault(run.workers, []).append(run.rate)
        share = f"{run.rate / r.relay_rate:.2f} of the relay" if r.relay_rate else ""
        rows.append(
            (
                f"cluster, {run.workers} worker(s), PostgreSQL, {run.partitions} partitions",
                f"{run.rate:,.0f} readings/s",
                share,
            )
        )
        rows.append(
            (
                "  samples back / stored (distinct) / readings stored",
                f"{run.samples_received:,} / {run.samples_stored:,} ({run.samples_distinct:,})"
                f" / {run.readings_stored:,}",
                f"of {run.samples_expected:,} / {run.readings:,}; {run.samples_again:,} again;"
                f" {run.lease_losses} lease loss(es)",
            )
        )
        secs = max(run.seconds, 1e-9)
        rows.append(
            (
                "  cores busy: bridge / broker / PostgreSQL / bench clients",
                f"{run.bridge_cpu_s / secs:.2f} / {run.broker_cpu_s / secs:.2f} / "
                f"{run.postgres_cpu_s / secs:.2f} / {run.clients_cpu_s / secs:.2f}",
                f"of {cpus}, in {run.seconds:.1f} s",
            )
        )
    mean = {n: sum(x) / len(x) for n, x in rates.items()}
    for n, rate in mean.items():
        if n != 1 and mean.get(1):
            rows.append((f"scaling: {n} workers / 1 worker", f"{rate / mean[1]:.2f}", "(means)"))
    return rows
