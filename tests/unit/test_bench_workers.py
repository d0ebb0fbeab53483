"""`openspc bench --workers`: the option parses, refusals are one line and exit 2, the report
shows each run beside the relay (docs/performance.md, "Workers: scaling with cores")."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pytest

from bridge._bench import BenchOptions, BenchReport, format_report
from bridge._bench._workers import (
    WorkersRun,
    parse_workers,
    run_workers_phase,
    tree_cpu_s,
    workers_rows,
)
from bridge._cli import bench


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="openspc bench")
    bench.configure(parser)
    return parser.parse_args(list(argv))


def test_the_option_takes_one_count_or_a_list_in_order_repeats_kept() -> None:
    assert _args("--workers", "2").workers == "2"
    assert _args().workers is None
    assert parse_workers("2") == (2,)
    assert parse_workers("1,2") == (1, 2)
    assert parse_workers(" 1, 2,1 ,2") == (1, 2, 1, 2)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("0", "--workers: each count must be 1..64 (got 0)"),
        ("1,65", "--workers: each count must be 1..64 (got 65)"),
        ("two", "--workers takes N or N,M,... (got 'two')"),
        ("1,,2", "--workers takes N or N,M,... (got '1,,2')"),
    ],
)
def test_a_bad_count_is_one_line_and_exit_2_before_anything_starts(
    text: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="^" + error.replace("(", r"\(").replace(")", r"\)")):
        parse_workers(text)

    assert bench.main(_args("--workers", text, "--quick")) == 2
    assert capsys.readouterr().err == f"openspc bench: {error}\n"


def test_the_cpu_of_a_process_tree_counts_this_process() -> None:
    before = tree_cpu_s(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert tree_cpu_s(os.getpid()) - before >= 0.15
    assert tree_cpu_s(2**22 + 1) == 0.0  # no such process


def test_each_run_is_reported_beside_the_relay_with_the_scaling_of_the_means() -> None:
    machine = {"cpus": 2, "cpu_model": "x", "memory_gb": 1, "python": "3", "mosquitto": "2"}
    report = BenchReport(machine=machine, readings=1000)
    report.relay_rate = 10_000.0
    for n, rate in [(1, 2_000.0), (2, 3_000.0), (1, 2_200.0), (2, 3_200.0)]:
        run = WorkersRun(n, 1000, seconds=2.0, rate=rate, samples_expected=600)
        run.bridge_cpu_s, run.broker_cpu_s, run.postgres_cpu_s = 1.5, 0.4, 0.6
        report.workers_runs.append(run)

    rows = workers_rows(report)

    assert rows[0] == (
        "cluster, 1 worker(s), PostgreSQL, 16 partitions",
        "2,000 readings/s",
        "0.20 of the relay",
    )
    assert rows[2][1] == "0.75 / 0.20 / 0.30 / 0.00"
    assert rows[-1] == ("scaling: 2 workers / 1 worker", "1.48", "(means)")
    text = format_report(report)
    assert "bridge end to end" not in text  # the bridge phase did not run
    assert "cluster, 2 worker(s), PostgreSQL, 16 partitions" in text


def test_without_postgresql_binaries_it_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import bridge.testing

    monkeypatch.setattr(bridge.testing, "find_pg_bin", lambda: None)
    report = BenchReport(machine={}, readings=1000)

    with pytest.raises(RuntimeError) as caught:
        run_workers_phase(BenchOptions(), report, 1, tmp_path)

    assert str(caught.value) == (
        "--workers needs PostgreSQL: PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    )
    assert report.workers_runs == []


def test_a_lease_outside_the_bridges_range_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert bench.main(_args("--workers", "1", "--lease-seconds", "1")) == 2
    assert capsys.readouterr().err == "openspc bench: --lease-seconds must be 2..3600\n"


def test_lease_losses_are_counted_from_the_node_log() -> None:
    from bridge._bench._workers import lease_losses

    text = "\n".join(
        [
            "2026-12-07 17:53:29,104 WARNING openspc.cluster: partition 0: database postgresql"
            "+asyncpg://x/y unavailable: lease of partition 0 lost by node 'b-w0' (token 1)",
            "2026-12-07 17:53:30,000 WARNING openspc.cluster: node 'b-w0' lost the lease of"
            " partition 3",
            "2026-12-07 17:53:31,000 WARNING openspc.cluster: node 'b-w0' could not renew its"
            " leases for 6 s: stopping its 16 partition(s)",
            "2026-12-07 17:53:32,000 INFO openspc.cluster: node 'b-w0' took partition 0 (token 2)",
            "2026-12-07 17:53:33,000 WARNING openspc.mqtt: some other warning",
        ]
    )
    assert lease_losses(text) == 3
    assert lease_losses("") == 0
