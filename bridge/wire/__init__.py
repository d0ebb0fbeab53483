"""The wire contract in one place (docs/topics.md; docs/architecture.md):

- :mod:`bridge.wire.topics`: every topic of the bridge's tree, built and parsed;
- :mod:`bridge.wire.payloads`: every message the bridge publishes, encoded once, and every
  command it accepts, decoded.

Reading payloads (plain, JSON) are parsed by :mod:`bridge.readings`; Sparkplug B by
:mod:`bridge.sparkplug`.
"""

from __future__ import annotations

from bridge.wire import payloads, topics
from bridge.wire.topics import Topics

__all__ = ["Topics", "payloads", "topics"]
