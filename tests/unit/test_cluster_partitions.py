"""Partitions of characteristics and each node's share (bridge/cluster/_partitions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bridge.cluster import partition_of, partitions_of, quota, subset
from bridge.cluster._node import partition_filters
from bridge.config import Settings
from bridge.wire import Topics

PG = {"url": "postgresql+asyncpg://u@127.0.0.1:5439/x"}


def settings(chars: list[dict[str, Any]], **cluster: Any) -> Settings:
    return Settings(database=PG, cluster={"enabled": True, **cluster}, characteristic=chars)


def test_id_modulo_a_pinned_partition_and_an_edge_node_sharing_its_lowest_ids_partition() -> None:
    s = settings(
        [
            {"id": 5, "name": "a"},
            {"id": 6, "name": "b", "partition": 0},
            {"id": 9, "name": "c", "sparkplug": {"group": "G", "edge": "E", "metric": "m"}},
            {"id": 7, "name": "d", "sparkplug": {"group": "G", "edge": "E", "metric": "n"}},
            {"id": 8, "name": "e", "sparkplug": {"group": "G", "edge": "F", "metric": "m"}},
        ],
        partitions=4,
    )
    assert partition_of(s) == {5: 1, 6: 0, 7: 3, 9: 3, 8: 0}
    assert partitions_of(s) == {0: [6, 8], 1: [5], 2: [], 3: [7, 9]}


def test_each_node_gets_the_floor_or_the_ceiling_and_the_shares_add_up() -> None:
    for partitions in (1, 4, 16, 17):
        for n in range(1, 7):
            nodes = [f"n{i}" for i in range(n)]
            shares = [quota(node, nodes, partitions) for node in nodes]
            assert sum(shares) == partitions
            assert set(shares) <= {partitions // n, -(-partitions // n)}
    assert quota("new", ["a", "b"], 16) == 5  # a joining node counts itself


def test_a_partitions_settings_have_its_characteristics_and_client_id_only() -> None:
    s = settings([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], partitions=2)
    part = subset(s, 1, [1])
    assert [c.id for c in part.characteristic] == [1]
    assert part.broker.client_id == "openspc-bridge-p1"


@pytest.mark.parametrize(
    ("chars", "fault"),
    [
        ([{"id": 1, "name": "a", "partition": 4}], "must be below cluster.partitions (4)"),
        (
            [
                {"id": 1, "name": "a", "sparkplug": {"group": "G", "edge": "E", "metric": "m"}},
                {
                    "id": 2,
                    "name": "b",
                    "partition": 1,
                    "sparkplug": {"group": "G", "edge": "E", "metric": "n"},
                },
            ],
            "share the partition of its lowest id (1)",
        ),
    ],
)
def test_a_partition_key_that_cannot_hold_is_a_config_fault(
    chars: list[dict[str, Any]], fault: str
) -> None:
    with pytest.raises(ValidationError, match=fault.replace("(", r"\(").replace(")", r"\)")):
        settings(chars, partitions=4)


def test_a_cluster_on_sqlite_is_a_config_fault() -> None:
    with pytest.raises(ValidationError, match="a cluster needs PostgreSQL"):
        Settings(cluster={"enabled": True})
    assert Settings(cluster={"enabled": False}).cluster.partitions == 16


def test_a_partition_subscribes_to_its_own_topics_and_only_partition_0_to_queries() -> None:
    s = settings([{"id": 3, "name": "a"}, {"id": 7, "name": "b"}], partitions=4, node="n")
    topics = Topics(s.bridge.topic_prefix)
    wildcards = [
        topics.reading_filter,
        topics.ack_filter,
        topics.recalculate_filter,
        topics.query_filter,
        "plant/line3/od",  # a characteristic's own topic stays
    ]
    assert partition_filters(s.bridge.topic_prefix, 3, [3, 7])(wildcards) == [
        topics.reading(3),
        topics.reading(7),
        topics.ack_filter,
        topics.recalculate_command(3),
        topics.recalculate_command(7),
        "plant/line3/od",
    ]
    assert partition_filters(s.bridge.topic_prefix, 0, [])(wildcards) == [
        topics.ack_filter,
        topics.query_filter,
        "plant/line3/od",
    ]


def test_role_messages_are_partition_0s() -> None:
    s = settings([{"id": 1, "name": "a"}], partitions=2)
    s = s.model_copy(update={"bridge": s.bridge.model_copy(update={"users_file": Path("r.json")})})
    assert subset(s, 0, [0]).bridge.users_file == Path("r.json")
    assert subset(s, 1, [1]).bridge.users_file is None
