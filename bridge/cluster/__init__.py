"""Several bridges as one: partitions, leases on PostgreSQL, failover (docs/scale-out.md)."""

from bridge.cluster._leases import Fence, LeaseLost, Leases, PartitionStore, cluster_engine
from bridge.cluster._node import ClusterNode, run_node
from bridge.cluster._partitions import partition_of, partitions_of, quota, subset
from bridge.cluster._workers import run_workers

__all__ = [
    "ClusterNode",
    "Fence",
    "LeaseLost",
    "Leases",
    "PartitionStore",
    "cluster_engine",
    "partition_of",
    "partitions_of",
    "quota",
    "run_node",
    "run_workers",
    "subset",
]
