"""`openspc bench` smoke-tested with tiny counts, so it cannot rot (the figures are not checked:
this is not a timed test; docs/performance.md has the real run)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bridge._bench import BenchOptions, format_report, run_bench
from bridge._mosquitto import find_mosquitto
from bridge.testing import PostgresCluster

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed"),
]


def tiny() -> BenchOptions:
    return BenchOptions(
        readings=1_000,
        latency_seconds=0.5,
        engine_points=2_000,
        memory_characteristics=100,
        idle_s=10.0,
    )


@pytest.mark.slow
def test_every_figure_is_measured_and_every_sample_is_stored() -> None:
    report = run_bench(tiny())

    assert report.problems == []
    assert report.relay_rate > 0
    assert report.bridge_rate > 0
    assert report.samples_received == report.samples_expected == 600
    assert report.samples_stored == 600
    assert report.readings_stored == 1_000
    assert report.samples_in_order
    assert report.latency_samples > 0
    assert report.latency_p99_ms is not None
    assert report.engine_n1 > 0
    assert report.engine_n5 > 0
    assert report.memory_rss_mb > 0
    assert report.memory_rss_after_mb is not None
    text = format_report(report)
    assert "ratio bridge / relay" in text
    assert "PROBLEMS" not in text


@pytest.mark.slow
def test_the_command_prints_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is True
    assert data["samples_stored"] == data["samples_expected"] > 0
    assert {"relay_rate", "bridge_rate", "ratio", "latency_p99_ms", "memory_rss_mb"} <= set(data)


@pytest.mark.slow
@pytest.mark.postgres
def test_workers_one_and_two_bring_every_sample_back_and_store_each_once(
    postgres: PostgresCluster,
) -> None:
    options = tiny()
    options.phases = frozenset({"relay", "workers"})
    options.workers = (1, 2)
    options.postgres = postgres  # the session's cluster: a database of its own per run

    report = run_bench(options)

    assert report.problems == []
    assert [run.workers for run in report.workers_runs] == [1, 2]
    for run in report.workers_runs:
        assert run.samples_expected == 600
        assert run.samples_received == run.samples_stored == run.samples_distinct == 600
        assert run.readings_stored == run.readings == 1_000
        assert run.samples_in_order
        assert run.rate > 0
        assert run.bridge_cpu_s > 0
        assert run.broker_cpu_s > 0
        assert run.postgres_cpu_s > 0
    text = format_report(report)
    assert "cluster, 2 worker(s), PostgreSQL, 16 partitions" in text
    assert "scaling: 2 workers / 1 worker" in text


@pytest.mark.slow
@pytest.mark.parametrize("clients", ["lean", "paho"])
def test_the_plant_phase_brings_every_sample_back_with_either_clients(clients: str) -> None:
    options = tiny()
    options.phases = frozenset({"plant"})
    options.plant_characteristics = 50
    options.plant_rate = 500.0
    options.plant_readings = 4
    options.plant_wait_s = 30.0
    options.plant_clients = clients

    report = run_bench(options)

    assert report.problems == []
    assert report.plant_clients == clients
    assert report.plant_received == report.plant_stored == report.plant_expected == 200
    assert report.plant_p99_ms is not None
    assert report.plant_p99_ms > 0
    assert report.plant_publisher_cpu_s > 0
    assert report.plant_subscriber_cpu_s > 0
    assert f"subscriber ({clients}) CPU" in format_report(report)
