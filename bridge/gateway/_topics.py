"""The bridge's result topics the gateway reads (docs/topics.md): which, and parsed here.

Built by :mod:`bridge.wire.topics`, as the bridge builds them; parsed here, where the
kinds the gateway serves are listed."""

from __future__ import annotations

import re
from typing import Final

from bridge.wire.topics import Topics

__all__ = ["AT_CONNECT", "HISTORY", "KINDS", "LIVE", "filters", "parse_topic"]

LIVE: Final = ("meta", "limits", "sample", "violation", "ack")
"""Subscribed for as long as the gateway runs, in this order (retained state first)."""
HISTORY: Final = "history"
"""Subscribed at each connect only until its retained messages are in (docs/gateway.md)."""
KINDS: Final = frozenset((*LIVE, HISTORY))
AT_CONNECT: Final = ("meta", "limits", HISTORY, "sample", "violation", "ack")
"""Subscribed at each connect, in this order: the broker sends the retained messages filter by
filter, and after a reconnect the history (the samples missed meanwhile, oldest first) must
come before the retained latest sample, or the latest would hide the ones before it."""
_ID: Final = re.compile(r"[1-9][0-9]{0,17}")  # ASCII digits only: int() also takes "٢" and "02"


def filters(prefix: str, kinds: tuple[str, ...] = LIVE) -> list[str]:
    """``<prefix>/char/+/<kind>`` for each kind."""
    topics = Topics(prefix)
    return [topics.char_filter(kind) for kind in kinds]


def parse_topic(prefix: str, topic: str) -> tuple[int, str] | None:
    """``(characteristic_id, kind)`` of ``<prefix>/char/<id>/<kind>``, or None."""
    head = f"{prefix}/char/"
    if not topic.startswith(head):
        return None
    cid, sep, kind = topic[len(head) :].partition("/")
    if not sep or kind not in KINDS or not _ID.fullmatch(cid):
        return None
    return int(cid), kind
