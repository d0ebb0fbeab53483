"""Former home of :mod:`bridge.wire.payloads` (every message encoded, every command decoded),
kept for a release so that ``from bridge.messages import ...`` goes on working. New code
imports from :mod:`bridge.wire`."""

from __future__ import annotations

from typing import Any

from bridge.wire import payloads as _payloads
from bridge.wire.payloads import *  # noqa: F403  # the alias re-exports the whole module

__all__ = list(_payloads.__all__)


def __getattr__(name: str) -> Any:
    """The module's other names too (``_text``, ``_number``...)."""
    return getattr(_payloads, name)
