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
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import paho.mqtt.client as paho

from bridge._mqtt import Inbox, MqttClient, MqttOptions
from bridge.config import Settings
from bridge.wire import Topics
from bridge.wire.payloads import cluster_payload, dumps, encode_status

__all__ = ["NodeLinks"]


class _SharedStatus(MqttClient):
    """The shared status connection: the other nodes' "online" found retained is expected
    (it is not another bridge with this client id)."""

    def _status_message(self, message: paho.MQTTMessage) -> None:
        super()._status_message(message)
        self.foreign_online = None


def _options(settings: Settings, client_id: str, status_topic: str) -> MqttOptions:
    b = settings.broker
    password = b.password
    return MqttOptions(
        host=b.host,
        port=b.port,
        client_id=client_id,
        username=b.username,
        password=str(password) if password is not None else None,
        tls=bool(b.tls),
        keepalive=int(b.keepalive),
        receive_maximum=100,
        status_topic=status_topic,
        status_payload=encode_status,
    )


class NodeLinks:
    """The node's two connections: its own status, and the whole bridge's status."""

    def __init__(self, settings: Settings) -> None:
        topics = Topics(settings.bridge.topic_prefix)
        node = settings.cluster.node
        cid = settings.broker.client_id
        self.topics = topics
        self.node = node
        self.own = MqttClient(_options(settings, f"{cid}-n-{node}", topics.node(node)), Inbox(100))
        self.shared = _SharedStatus(
            _options(settings, f"{cid}-s-{node}", topics.status), Inbox(100)
        )
        self._last_view: list[Any] | None = None

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

    async def stop(self, now: datetime) -> None:
        for client in (self.own, self.shared):
            client.say_offline(encode_status(False, now))
        for client in (self.own, self.shared):
            await client.flush(5.0)
            await client.stop()
