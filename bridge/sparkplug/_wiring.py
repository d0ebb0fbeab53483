"""The bridge's own Sparkplug B edge node, built from the settings for the composition root.

``bridge.app.bootstrap`` calls :func:`build_edge_node` (None unless
``bridge.sparkplug_edge.enabled``), then :func:`feed_edge_node` to hand it every stored
sample and every new set of limits from the event bus; ``Bridge.start`` calls
:func:`seed_edge_node` with the restored state (each characteristic's last stored sample row
and its engine's limits), so that the first NBIRTH after a restart carries the last results
rather than nulls; ``Bridge.run`` runs :meth:`SparkplugEdgeNode.run` beside the pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from bridge.bus import MessageBus
from bridge.config import Settings
from bridge.domain import LimitsUpdated, SampleRecorded
from bridge.sparkplug._edge import SparkplugEdgeNode
from bridge.sparkplug._state import PrimaryHost
from bridge.store import SampleRow
from engine import CharacteristicEngine, figure, plotted_value

__all__ = ["build_edge_node", "build_primary_host", "feed_edge_node", "seed_edge_node"]


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return str(getter()) if callable(getter) else str(value)


def build_edge_node(
    settings: Settings, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> SparkplugEdgeNode | None:
    """The edge node ``bridge.sparkplug_edge`` asks for, on the bridge's broker and
    credentials with client id ``<client_id>-spb``; None when it is not enabled."""
    edge = settings.bridge.sparkplug_edge
    if not edge.enabled:
        return None
    broker = settings.broker
    return SparkplugEdgeNode(
        host=broker.host,
        port=broker.port,
        group=edge.group,
        edge=edge.edge,
        characteristic_ids=[c.id for c in settings.characteristic],
        client_id=f"{broker.client_id}-spb",
        username=broker.username,
        password=_secret(broker.password),
        tls=bool(broker.tls),
        keepalive=int(broker.keepalive),
        clock=clock,
    )


def build_primary_host(
    settings: Settings, follows: tuple[asyncio.Event, asyncio.Event] | None = None
) -> PrimaryHost | None:
    """The Primary Host Application ``[bridge.sparkplug] host_id`` asks for, on its own
    connection (client id ``<client_id>-host``, the bridge's credentials); None without."""
    host_id = settings.bridge.sparkplug.host_id
    if host_id is None:
        return None
    broker = settings.broker
    return PrimaryHost(
        host_id=host_id,
        host=broker.host,
        port=broker.port,
        client_id=f"{broker.client_id}-host",
        username=broker.username,
        password=_secret(broker.password),
        tls=bool(broker.tls),
        keepalive=int(broker.keepalive),
        follows=follows,
    )


def feed_edge_node(edge: SparkplugEdgeNode, bus: MessageBus) -> None:
    """Subscribe the edge node to stored samples and new limits (it never blocks the bus)."""

    def on_sample(event: SampleRecorded) -> None:
        sample = event.sample
        edge.publish_sample(
            sample.characteristic_id,
            sample_id=event.sample_id,
            value=sample.value,
            range_=sample.range,
            zone=None if sample.zone is None else str(sample.zone),
            in_control=sample.in_control,
            failed_rules=(*sample.failed_rules, *sample.range_failed_rules),
            at=sample.timestamp,
        )

    def on_limits(event: LimitsUpdated) -> None:
        edge.publish_limits(event.characteristic_id, event.payload, edge.clock())

    bus.subscribe(SampleRecorded, on_sample)
    bus.subscribe(LimitsUpdated, on_limits)


def seed_edge_node(
    edge: SparkplugEdgeNode,
    last_samples: Mapping[int, SampleRow],
    engines: Mapping[int, CharacteristicEngine],
) -> None:
    """Set the edge node's current values from the restored state: each characteristic's
    last stored sample (its value and range as its ``sample`` payload shows them) and its
    engine's control limits."""
    for cid, row in last_samples.items():
        edge.metrics.sample(
            cid,
            sample_id=row.id,
            value=plotted_value(row.value, len(row.values)),
            range_=figure(row.range),
            zone=row.zone,
            in_control=row.in_control,
            failed_rules=[*row.failed_rules, *row.range_failed_rules],
            at=row.ts,
        )
    for cid, engine in engines.items():
        limits = engine.limits
        if limits is not None:
            edge.metrics.limits(
                cid,
                {
                    "center_line": limits.center_line,
                    "ucl": limits.ucl,
                    "lcl": limits.lcl,
                    "sigma": limits.sigma,
                },
                edge.clock(),
            )
