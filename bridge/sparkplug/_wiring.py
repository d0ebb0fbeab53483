"""The bridge's own Sparkplug B edge node, built from the settings for the composition root.

``bridge.app.bootstrap`` calls :func:`build_edge_node` (None unless
``bridge.sparkplug_edge.enabled``), then :func:`feed_edge_node` to hand it every stored
sample and every new set of limits from the event bus, and runs :meth:`SparkplugEdgeNode.run`
beside the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bridge.bus import MessageBus
from bridge.config import Settings
from bridge.domain import LimitsUpdated, SampleRecorded
from bridge.sparkplug._edge import SparkplugEdgeNode

__all__ = ["build_edge_node", "feed_edge_node"]


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
        clock=clock,
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
