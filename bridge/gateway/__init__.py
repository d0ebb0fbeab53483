"""``openspc gateway``: OpenSPC's own WebSocket API, fed from the broker (docs/gateway.md).

A front-end written for OpenSPC connects to ``ws://HOST:PORT/api/v1/ws``, subscribes by
characteristic and receives the bridge's ``sample``, ``violation``, ``control_limits`` and
``ack_update`` messages unchanged. The gateway reads MQTT only, writes nothing, and keeps
nothing a restart would lose.
"""

from bridge.gateway._feed import BrokerRefused
from bridge.gateway._protocol import MAX_IDS, BadRequest, parse
from bridge.gateway._server import MAX_FRAME_BYTES, PATH, Gateway, run_gateway

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_IDS",
    "PATH",
    "BadRequest",
    "BrokerRefused",
    "Gateway",
    "parse",
    "run_gateway",
]
