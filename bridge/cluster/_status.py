"""What a cluster node says about itself on MQTT (docs/scale-out.md, docs/bridge.md "Status").

- ``<prefix>/bridge/nodes/<node>``: the node's own retained status with its Last Will, on a
  connection of its own (client id ``<client_id>-n-<node>``); a second process under the
  same node name is found there (:class:`~bridge.errors.ClientIdInUse`).
- ``<prefix>/bridge/status``: the whole bridge's. Every live node holds a connection
  (``<client_id>-s-<node>``) whose Will says offline and which says online again when it
  hears an "offline" after its own "online" (a late Will: the adapter's own rule). So a
  node that dies or stops says offline there, the others say online again at once, and the
  last node's "offline" stays: online while any node is, with no coordination.
- ``<prefix>/bridge/cluster``: retained, published by the live node first by name (the
  others may be gone at any time), ``{"nodes": [{"node", "partitions"}], "timestamp"}``.
- ``<prefix>/bridge/nodes/<node>/metrics``: retained, the node's metrics: its partitions'
  summed (:func:`node_metrics`); a partition's bridge publishes none of its own (they would
  overwrite each other on ``bridge/metrics``). A clean stop clears the node's metrics.
- ``<prefix>/bridge/metrics``: the whole cluster's, the live nodes' metrics summed
  (:func:`cluster_metrics`), published by the live node first by name, which hears every
  node's on its own connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import paho.mqtt.client as paho

from bridge._mqtt import Inbox, MqttClient, MqttOptions
from bridge.app import _mqtt_options
from bridge.config import Settings
from bridge.wire import Topics
from bridge.wire.payloads import cluster_payload, dumps, encode_status, iso_z

__all__ = ["METRIC_GAUGES", "NodeLinks", "cluster_metrics", "counters", "node_metrics"]

METRIC_GAUGES = frozenset(
    (
        "timestamp",
        "uptime_s",
        "buffered_readings",
        "buffer_max",
        "buffer_full",
        "publish_outstanding",
        "publish_outstanding_max",
        "publishes_retry_pending",
        "connected",
        "latency_ms",
    )
)
"""The keys of a bridge's metrics that say how it is now, not how much happened: a node
sums them over the partitions it runs now only (docs/scale-out.md)."""


def counters(payload: Mapping[str, Any]) -> dict[str, int]:
    """The counters of one bridge's metrics payload (what happened since it started)."""
    return {
        k: int(v)
        for k, v in payload.items()
        if k not in METRIC_GAUGES and isinstance(v, int) and not isinstance(v, bool)
    }


def node_metrics(
    running: Sequence[Mapping[str, Any]],
    retired: Mapping[str, int],
    *,
    node: str,
    partitions: Iterable[int],
    uptime_s: float,
    now: datetime,
) -> dict[str, Any]:
    """A node's metrics: the counters of the partitions it runs plus ``retired`` (those of
    its partitions that have stopped since the node started), so they only grow like a
    bridge's; ``buffered_readings``, ``buffer_max``, ``publish_outstanding`` and
    ``publishes_retry_pending`` summed over the partitions it runs; ``publish_outstanding_max``
    and ``latency_ms`` (``p50``, ``p99``, ``max``) the largest of any of them (percentiles of
    separate partitions do not add up); ``buffer_full`` if any is full; ``connected`` if all
    are (and the node runs any)."""
    total: dict[str, int] = dict(retired)
    for payload in running:
        for k, v in counters(payload).items():
            total[k] = total.get(k, 0) + v
    latency: dict[str, float | None] = {}
    for payload in running:
        for k, v in (payload.get("latency_ms") or {}).items():
            if v is not None:
                seen = latency.get(k)
                latency[k] = v if seen is None else max(seen, v)

    def summed(key: str) -> int:
        return sum(int(p.get(key, 0)) for p in running)

    return {
        "timestamp": iso_z(now),
        "uptime_s": round(uptime_s, 3),
        "node": node,
        "partitions": sorted(partitions),
        **dict(sorted(total.items())),
        "buffered_readings": summed("buffered_readings"),
        "buffer_max": summed("buffer_max"),
        "buffer_full": any(bool(p.get("buffer_full")) for p in running),
        "publish_outstanding": summed("publish_outstanding"),
        "publish_outstanding_max": max(
            (int(p.get("publish_outstanding_max", 0)) for p in running), default=0
        ),
        "publishes_retry_pending": summed("publishes_retry_pending"),
        "connected": bool(running) and all(bool(p.get("connected")) for p in running),
        "latency_ms": {k: latency.get(k) for k in ("p50", "p99", "max")},
    }


def cluster_metrics(nodes: Mapping[str, Mapping[str, Any]], *, now: datetime) -> dict[str, Any]:
    """The cluster's metrics from its live nodes' (``node -> payload``), summed as a node
    sums its partitions' (:func:`node_metrics`): ``cluster`` true, ``nodes`` (names),
    ``partitions`` (all of them held), ``uptime_s`` the longest-running node's."""
    payloads = [nodes[n] for n in sorted(nodes)]
    summed = node_metrics(
        payloads,
        {},
        node="",
        partitions=sorted(k for p in payloads for k in p.get("partitions", ())),
        uptime_s=max((float(p.get("uptime_s", 0.0)) for p in payloads), default=0.0),
        now=now,
    )
    del summed["node"]
    return {"timestamp": summed.pop("timestamp"), "cluster": True, "nodes": sorted(nodes)} | (
        summed
    )


class _OwnStatus(MqttClient):
    """The node's own status connection; it also hears every node's metrics (retained, QoS 0)
    and keeps the latest of each (an empty message: that node stopped cleanly)."""

    def __init__(self, options: MqttOptions, topics: Topics) -> None:
        super().__init__(options, Inbox(100))
        self._topics = topics
        self.node_metrics: dict[str, dict[str, Any]] = {}
        self.add_subscription(topics.node_metrics_filter, retained=True)

    def _receive(self, message: paho.MQTTMessage) -> None:
        node = self._topics.node_of_metrics(message.topic)
        if node is None:
            super()._receive(message)
            return
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)
        try:
            payload = json.loads(message.payload) if message.payload else None
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            self.node_metrics[node] = payload
        else:
            self.node_metrics.pop(node, None)


class _SharedStatus(MqttClient):
    """The shared status connection: the other nodes' "online" found retained is expected
    (it is not another bridge with this client id)."""

    def _status_message(self, message: paho.MQTTMessage) -> None:
        super()._status_message(message)
        self.foreign_online = None


def _options(settings: Settings, client_id: str, status_topic: str) -> MqttOptions:
    """A status connection: the bridge's own connection options (``[broker]``:
    bridge/app.py) with its own client id and status topic, read by paho (its metrics
    subscription is taken in ``_OwnStatus._receive``)."""
    return replace(
        _mqtt_options(settings),
        client_id=client_id,
        receive_maximum=100,
        status_topic=status_topic,
        status_payload=encode_status,
        lean_inbound=False,
    )


class NodeLinks:
    """The node's two connections: its own status, and the whole bridge's status."""

    def __init__(self, settings: Settings) -> None:
        topics = Topics(settings.bridge.topic_prefix)
        node = settings.cluster.node
        cid = settings.broker.client_id
        self.topics = topics
        self.node = node
        self.own = _OwnStatus(_options(settings, f"{cid}-n-{node}", topics.node(node)), topics)
        self.shared = _SharedStatus(
            _options(settings, f"{cid}-s-{node}", topics.status), Inbox(100)
        )
        self._last_view: list[Any] | None = None
        self.metrics_topic = topics.node_metrics(node)

    async def start(self) -> None:
        for client in (self.own, self.shared):
            await client.start()
        for client in (self.own, self.shared):
            await client.wait_answer()

    def publish_cluster(self, nodes: dict[str, list[int]], now: datetime) -> None:
        """The retained cluster message, when what it says has changed."""
        view = sorted(nodes.items())
        if view == self._last_view:
            return
        self._last_view = view
        self.own.publish(self.topics.cluster, dumps(cluster_payload(nodes, now)), retain=True)

    def publish_metrics(
        self, payload: Mapping[str, Any], live: Sequence[str] | None, now: datetime
    ) -> None:
        """The node's metrics (retained, QoS 0 like a bridge's); with ``live`` (this node is
        the first of them by name) the cluster's too, summed over the live nodes whose
        metrics it has heard (its own as just made)."""
        self.own.publish(self.metrics_topic, dumps(payload), qos=0, retain=True)
        if live is None:
            return
        heard = {n: self.own.node_metrics[n] for n in live if n in self.own.node_metrics}
        heard[self.node] = dict(payload)
        self.own.publish(
            self.topics.metrics, dumps(cluster_metrics(heard, now=now)), qos=0, retain=True
        )

    async def stop(self, now: datetime) -> None:
        self.own.publish(self.metrics_topic, b"", retain=True)  # the node is gone: cleared
        for client in (self.own, self.shared):
            client.say_offline(encode_status(False, now))
        for client in (self.own, self.shared):
            await client.flush(5.0)
            await client.stop()
