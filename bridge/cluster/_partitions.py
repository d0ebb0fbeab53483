"""Which partition each characteristic falls into, and how many partitions each node holds.

Pure functions (no I/O), shared by the lease manager and the tests (docs/scale-out.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bridge.config import CharacteristicSettings, Settings

__all__ = ["partition_of", "partitions_of", "quota", "subset"]


def partition_of(settings: Settings) -> dict[int, int]:
    """characteristic id -> partition: its ``partition`` key, else id modulo ``partitions``;
    all characteristics of one Sparkplug edge node share the partition of the lowest id
    among them (their aliases and sequence numbers are the edge node's)."""
    count = settings.cluster.partitions

    def own(char: CharacteristicSettings) -> int:
        return char.partition if char.partition is not None else char.id % count

    lowest: dict[tuple[str, str], int] = {}
    result: dict[int, int] = {}
    for char in sorted(settings.characteristic, key=lambda c: c.id):
        sp = char.sparkplug
        if sp is None:
            result[char.id] = own(char)
            continue
        key = (sp.group, sp.edge)
        if key not in lowest:
            lowest[key] = own(char)
        result[char.id] = lowest[key]
    return result


def partitions_of(settings: Settings) -> dict[int, list[int]]:
    """partition -> its characteristic ids (every partition listed, empty ones too)."""
    result: dict[int, list[int]] = {k: [] for k in range(settings.cluster.partitions)}
    for cid, k in sorted(partition_of(settings).items()):
        result[k].append(cid)
    return result


def quota(node: str, live: Sequence[str], partitions: int) -> int:
    """How many partitions ``node`` should hold: the floor or the ceiling of partitions /
    nodes; the first ``partitions % nodes`` live nodes by name get the ceiling, so the
    quotas add up to ``partitions`` exactly."""
    nodes = sorted(set(live) | {node})
    base, extra = divmod(partitions, len(nodes))
    return base + (1 if nodes.index(node) < extra else 0)


def subset(settings: Settings, partition: int, ids: Sequence[int]) -> Settings:
    """The settings of one partition's pipeline: its characteristics only, its own MQTT
    client id ``<client_id>-p<k>``; the bridge's own Sparkplug edge node and Primary Host
    are not run by a partition, the role messages (``users_file``) only by partition 0
    (docs/scale-out.md)."""
    wanted = set(ids)
    chars = [c for c in settings.characteristic if c.id in wanted]
    broker = settings.broker.model_copy(
        update={"client_id": f"{settings.broker.client_id}-p{partition}"}
    )
    bridge = settings.bridge.model_copy(
        update={
            "sparkplug_edge": settings.bridge.sparkplug_edge.model_copy(update={"enabled": False}),
            "sparkplug": settings.bridge.sparkplug.model_copy(update={"host_id": None}),
            "users_file": settings.bridge.users_file if partition == 0 else None,
        }
    )
    return settings.model_copy(update={"characteristic": chars, "broker": broker, "bridge": bridge})


def owners_view(leases: Mapping[int, str]) -> dict[str, list[int]]:
    """owner -> its partitions, sorted (for the retained cluster message)."""
    result: dict[str, list[int]] = {}
    for k, owner in sorted(leases.items()):
        result.setdefault(owner, []).append(k)
    return result
