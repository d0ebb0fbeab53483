"""Several bridges as one (docs/scale-out.md): `openspc run` processes on one PostgreSQL and
one Mosquitto, with characteristics spread over partitions. Through a SIGKILL, a SIGSTOP
longer than a lease, a node joining and a clean stop, every reading the broker acknowledged
to the gauges is stored exactly once, each characteristic's samples in the order sent, and
the partitions end up spread evenly over the live nodes.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge._mosquitto import MosquittoProcess
from bridge.testing import PostgresCluster
from tests.integration.reliability import (
    BridgeProcess,
    Gauge,
    Recorder,
    StoredSample,
    config_text,
    pg_database,
    pg_samples,
    report,
    stack,
    tally,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.reliability, pytest.mark.slow]

CHARS = 4
PARTITIONS = 4
LEASE = 3.0
RATE = 40.0  # readings a second per characteristic
READINGS = 400  # per characteristic: 10 s of stream


@pytest.fixture
def database(postgres: PostgresCluster) -> Iterator[tuple[str, str]]:
    with pg_database(postgres.port) as urls:
        yield urls


def _config(tmp: Path, broker: MosquittoProcess, prefix: str, db_url: str) -> Path:
    config = tmp / "openspc.toml"
    text = config_text(
        port=broker.port,
        prefix=prefix,
        client_id=f"cl-{prefix.split('/')[1]}",
        db_url=db_url,
        characteristics=[{"id": i, "name": f"C{i}"} for i in range(1, CHARS + 1)],
        history_size=50,
        batch_max=50,
    )
    text += f"\n[cluster]\nenabled = true\npartitions = {PARTITIONS}\nlease_seconds = {LEASE}\n"
    config.write_text(text)
    return config


def _node(config: Path, name: str) -> BridgeProcess:
    node_config = config.with_name(f"{name}.toml")
    node_config.write_text(config.read_text())
    return BridgeProcess(node_config, env={"OPENSPC_CLUSTER__NODE": name})


def _cluster(rec: Recorder, prefix: str) -> dict[str, list[int]]:
    found = rec.on(f"{prefix}/bridge/cluster")
    if not found:
        return {}
    return {n["node"]: n["partitions"] for n in found[-1].json()["nodes"]}


def _balanced(view: dict[str, list[int]], nodes: set[str]) -> bool:
    if set(view) != nodes:
        return False
    sizes = [len(p) for p in view.values()]
    taken = sorted(k for p in view.values() for k in p)
    return taken == list(range(PARTITIONS)) and max(sizes) - min(sizes) <= 1


def _check(scenario: str, gauges: list[Gauge], samples: list[StoredSample]) -> None:
    """Zero lost, zero doubled, each characteristic in the order sent, ids unique."""
    assert len({s.id for s in samples}) == len(samples)
    for cid, gauge in enumerate(gauges, start=1):
        mine = [s for s in samples if s.characteristic_id == cid]
        t = tally(gauge.acked, mine)
        report(t.line(f"cluster {scenario}, characteristic {cid}"))
        assert (t.lost, t.duplicated, t.unexpected) == ([], [], []), t.line(scenario)
        assert [s.ts_ms for s in mine] == sorted(s.ts_ms for s in mine), "out of order"


def _wait_stored(dsn: str, gauges: list[Gauge], nodes: list[BridgeProcess]) -> None:
    """Every acknowledged reading stored, or a failure that tells late from lost: each
    characteristic's count and its first readings missing, with the nodes' last log lines."""
    total = sum(len(g.acked) for g in gauges)
    try:
        wait_until(lambda: len(pg_samples(dsn)) >= total, 30, "every reading stored")
    except AssertionError:
        samples = pg_samples(dsn)
        lines = []
        for cid, gauge in enumerate(gauges, start=1):
            stored = {s.ts_ms for s in samples if s.characteristic_id == cid}
            missing = sorted(set(gauge.acked) - stored)
            lines.append(
                f"characteristic {cid}: {len(stored)} of {len(gauge.acked)} stored,"
                f" missing {len(missing)}: {missing[:5]}...{missing[-3:]}"
            )
        logs = "\n".join(n.log_text()[-4000:] for n in nodes)
        raise AssertionError("\n".join(lines) + "\n" + logs) from None


def _run_scenario(
    scenario: str,
    broker: MosquittoProcess,
    tmp_path: Path,
    prefix: str,
    database: tuple[str, str],
    fault: str,
    pg: PostgresCluster | None = None,
) -> None:
    db_url, dsn = database
    config = _config(tmp_path, broker, prefix, db_url)
    with stack() as s:
        rec = s.enter_context(Recorder(broker.port, f"{prefix}/bridge/#"))
        a = s.enter_context(_node(config, "a"))
        b = s.enter_context(_node(config, "b"))
        a.start()
        b.start()
        wait_until(lambda: _balanced(_cluster(rec, prefix), {"a", "b"}), 30, "a and b share")
        gauges = [
            s.enter_context(
                Gauge(broker.port, f"{prefix}/char/{cid}/reading", READINGS, RATE, window=100)
            ).start()
            for cid in range(1, CHARS + 1)
        ]
        wait_until(lambda: len(pg_samples(dsn)) >= CHARS * READINGS // 4, 30, "a quarter")
        began = time.monotonic()
        if fault == "kill":
            b.kill()
            wait_until(lambda: _balanced(_cluster(rec, prefix), {"a"}), LEASE + 10, "a takes all")
            took = time.monotonic() - began
            report(f"cluster {scenario}: node b's partitions resumed by a after {took:.1f} s")
            assert took < LEASE + 5 + 2  # lease_seconds + 5 s, plus our polling
        elif fault == "stop":
            assert b.terminate() == 0
            wait_until(lambda: _balanced(_cluster(rec, prefix), {"a"}), 10, "a takes all")
            took = time.monotonic() - began
            report(f"cluster {scenario}: node b's partitions resumed by a after {took:.1f} s")
            assert took < 3.0 + 1.0  # within 3 s, plus our polling
        elif fault == "pause":
            assert b.process is not None
            b.process.send_signal(signal.SIGSTOP)
            wait_until(lambda: _balanced(_cluster(rec, prefix), {"a"}), LEASE + 10, "a takes all")
            time.sleep(1.0)  # a writes b's partitions for a while before b wakes
            b.process.send_signal(signal.SIGCONT)
            wait_until(lambda: _balanced(_cluster(rec, prefix), {"a", "b"}), 30, "b rejoins")
        elif fault == "dbrestart":
            assert pg is not None
            pg.stop("fast")
            time.sleep(LEASE + 1)  # every lease runs out while the database is away
            pg.start()
            wait_until(lambda: _balanced(_cluster(rec, prefix), {"a", "b"}), 30, "shared again")
        elif fault == "join":
            c = s.enter_context(_node(config, "c"))
            c.start()
            wait_until(lambda: _balanced(_cluster(rec, prefix), {"a", "b", "c"}), 20, "c joins")
        for gauge in gauges:
            gauge.wait_done(60)
        _wait_stored(dsn, gauges, [a, b])
        time.sleep(0.5)  # anything stored twice would show now
        _check(scenario, gauges, pg_samples(dsn))
        logs = a.log_text() + b.log_text()
        assert "Traceback" not in logs, logs[-3000:]
        if fault == "pause":
            assert "lost the lease" in b.log_text() or "lease of partition" in b.log_text()
        statuses = [m.json()["online"] for m in rec.on(f"{prefix}/bridge/status")]
        assert statuses[-1] is True


@pytest.mark.parametrize("fault", ["kill", "stop", "pause", "join"])
def test_cluster_failover_loses_and_doubles_nothing(
    fresh_mosquitto: MosquittoProcess,
    tmp_path: Path,
    topic_prefix: str,
    database: tuple[str, str],
    fault: str,
) -> None:
    _run_scenario(fault, fresh_mosquitto, tmp_path, topic_prefix, database, fault)


def test_cluster_through_a_database_restart_loses_and_doubles_nothing(
    fresh_mosquitto: MosquittoProcess, tmp_path: Path, topic_prefix: str
) -> None:
    """PostgreSQL stopped for longer than a lease and started again: the batches wait, the
    leases that ran out fail their next batch's check, and the partitions go on from the
    database (a cluster of the test's own: the session's must not stop)."""
    with PostgresCluster() as pg, pg_database(pg.port) as database:
        _run_scenario(
            "database restart", fresh_mosquitto, tmp_path, topic_prefix, database, "dbrestart", pg
        )


def test_workers_run_n_nodes_and_stop_cleanly(
    fresh_mosquitto: MosquittoProcess, tmp_path: Path, topic_prefix: str, database: tuple[str, str]
) -> None:
    """`openspc run --workers 2`: two nodes share the partitions (the file does not enable the
    cluster: --workers does); a worker killed is started again and gets its share back;
    SIGTERM stops all, cleanly (exit 0, status offline, no node left)."""
    import os
    import subprocess

    from tests.integration.reliability import OPENSPC

    prefix = topic_prefix
    config = _config(tmp_path, fresh_mosquitto, prefix, database[0])
    config.write_text(config.read_text().replace("enabled = true", "enabled = false"))
    workers = {"x-w0", "x-w1"}
    with stack() as s:
        rec = s.enter_context(Recorder(fresh_mosquitto.port, f"{prefix}/bridge/#"))
        log = (tmp_path / "workers.log").open("wb")
        s.callback(log.close)
        proc = subprocess.Popen(
            [str(OPENSPC), "run", "--config", str(config), "--workers", "2"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OPENSPC_CLUSTER__NODE": "x"},
        )
        s.callback(lambda: proc.poll() is None and proc.kill())
        wait_until(lambda: _balanced(_cluster(rec, prefix), workers), 30, "two workers share")
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=True
        ).stdout.split()
        assert len(children) == 2
        os.kill(int(children[0]), signal.SIGKILL)
        logged = tmp_path / "workers.log"
        wait_until(lambda: logged.read_text().count("partition(s), lease") == 3, 15, "restart")
        # the new worker has the old one's name: it takes its partitions back at once

        def retaken() -> bool:
            text = logged.read_text()
            restarted = max(
                text.rfind("cluster node 'x-w0': "), text.rfind("cluster node 'x-w1': ")
            )
            return "took partition" in text[restarted:]

        wait_until(retaken, LEASE + 10, "the new worker takes partitions")
        wait_until(lambda: _balanced(_cluster(rec, prefix), workers), 30, "the worker is back")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        wait_until(lambda: _cluster(rec, prefix) == {}, 10, "no node left")
        assert [m.json()["online"] for m in rec.on(f"{prefix}/bridge/status")][-1] is False


def test_workers_with_sqlite_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess

    from tests.integration.reliability import OPENSPC

    config = tmp_path / "openspc.toml"
    config.write_text('[[characteristic]]\nid = 1\nname = "a"\n')
    done = subprocess.run(
        [str(OPENSPC), "run", "--config", str(config), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "openspc run: --workers needs PostgreSQL (database.url is SQLite; docs/scale-out.md)"
    ]
    assert json  # the module's imports stay used


def test_cluster_with_sqlite_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess

    from tests.integration.reliability import OPENSPC

    config = tmp_path / "openspc.toml"
    config.write_text('[cluster]\nenabled = true\n[[characteristic]]\nid = 1\nname = "a"\n')
    done = subprocess.run(
        [str(OPENSPC), "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"{config}: cluster.enabled = true: a cluster needs PostgreSQL"
        " (database.url is SQLite; docs/scale-out.md)"
    ]
