"""A cluster node's metrics: its partitions' summed (bridge/cluster/_status.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bridge.cluster._status import cluster_metrics, counters, node_metrics

NOW = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)


def _bridge(
    received: int, *, p99: float | None, full: bool = False, up: bool = True
) -> dict[str, Any]:
    return {
        "timestamp": "2026-12-07T17:59:59Z",
        "uptime_s": 12.5,
        "readings_received": received,
        "samples": received,
        "db_batches": 3,
        "buffered_readings": 4,
        "buffer_max": 100,
        "buffer_full": full,
        "publish_outstanding": 2,
        "publish_outstanding_max": received,
        "publishes_retry_pending": 0,
        "connected": up,
        "latency_ms": {"p50": 1.0, "p99": p99, "max": p99},
    }


def test_counters_are_summed_with_the_retired_and_gauges_over_the_running_only() -> None:
    m = node_metrics(
        [_bridge(10, p99=5.0), _bridge(7, p99=9.0, full=True)],
        {"readings_received": 100, "samples": 90, "dead_letters": 1},
        node="a",
        partitions=[3, 1],
        uptime_s=60.0,
        now=NOW,
    )
    assert m["node"] == "a"
    assert m["partitions"] == [1, 3]
    assert m["timestamp"] == "2026-12-07T18:00:00.000Z"
    assert m["uptime_s"] == 60.0
    assert (m["readings_received"], m["samples"], m["db_batches"]) == (117, 107, 6)
    assert m["dead_letters"] == 1  # from a partition that has stopped
    assert (m["buffered_readings"], m["buffer_max"], m["publish_outstanding"]) == (8, 200, 4)
    assert m["publish_outstanding_max"] == 10  # the largest, not a sum of peaks
    assert m["buffer_full"] is True
    assert m["connected"] is True
    assert m["latency_ms"] == {"p50": 1.0, "p99": 9.0, "max": 9.0}


def test_a_node_with_no_partition_or_one_disconnected_is_not_connected() -> None:
    idle = node_metrics([], {}, node="b", partitions=[], uptime_s=1.0, now=NOW)
    assert idle["connected"] is False
    assert idle["latency_ms"] == {"p50": None, "p99": None, "max": None}
    assert idle["buffered_readings"] == 0
    half = node_metrics(
        [_bridge(1, p99=None), _bridge(1, p99=None, up=False)],
        {},
        node="b",
        partitions=[0, 1],
        uptime_s=1.0,
        now=NOW,
    )
    assert half["connected"] is False
    assert half["latency_ms"]["p99"] is None


def test_counters_leave_out_gauges_flags_and_the_timestamp() -> None:
    assert counters(_bridge(5, p99=1.0)) == {"readings_received": 5, "samples": 5, "db_batches": 3}


def test_the_cluster_is_its_live_nodes_summed_as_a_node_sums_its_partitions() -> None:
    a = node_metrics(
        [_bridge(10, p99=5.0)],
        {"dead_letters": 2},
        node="a",
        partitions=[0, 2],
        uptime_s=30.0,
        now=NOW,
    )
    b = node_metrics(
        [_bridge(7, p99=9.0, up=False)], {}, node="b", partitions=[1], uptime_s=90.0, now=NOW
    )
    m = cluster_metrics({"b": b, "a": a}, now=NOW)
    assert (m["cluster"], m["nodes"], m["partitions"]) == (True, ["a", "b"], [0, 1, 2])
    assert "node" not in m
    assert (m["readings_received"], m["samples"], m["dead_letters"]) == (17, 17, 2)
    assert (m["buffer_max"], m["buffered_readings"], m["publish_outstanding"]) == (200, 8, 4)
    assert m["latency_ms"] == {"p50": 1.0, "p99": 9.0, "max": 9.0}  # the worst node's
    assert m["connected"] is False  # b's partition is not
    assert m["uptime_s"] == 90.0
    assert m["timestamp"] == "2026-12-07T18:00:00.000Z"
