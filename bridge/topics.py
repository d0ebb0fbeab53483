"""Former home of :mod:`bridge.wire.topics` (every topic built and parsed), kept for a release
so that ``from bridge.topics import ...`` goes on working. New code imports from
:mod:`bridge.wire`."""

from __future__ import annotations

from typing import Any

from bridge.wire import topics as _topics
from bridge.wire.topics import *  # noqa: F403  # the alias re-exports the whole module

__all__ = list(_topics.__all__)


def __getattr__(name: str) -> Any:
    """The module's other names too (``_ID``...)."""
    return getattr(_topics, name)
