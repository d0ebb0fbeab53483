"""OpenSPC's WebSocket protocol, client side in and server side out (docs/gateway.md).

Pure functions: :func:`parse` turns one received frame into a :class:`Subscribe`,
:class:`Unsubscribe` or :class:`Ping`, or raises :class:`BadRequest` with the message the
client is told; the ``*_message`` functions encode the gateway's own replies. Messages from
the bridge are never re-encoded here: they pass through as the bridge published them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_IDS",
    "MAX_RATE",
    "PONG",
    "SEVERITIES",
    "BadRequest",
    "Ping",
    "Request",
    "Subscribe",
    "Unsubscribe",
    "error_message",
    "parse",
    "subscribed_message",
    "unknown_ids_message",
]

MAX_IDS: Final = 1000
"""At most this many ``characteristic_ids`` in one subscribe or unsubscribe."""
MAX_RATE: Final = 1000.0
"""The highest ``max_rate`` (samples a second per characteristic) a client may ask for."""
SEVERITIES: Final = frozenset({"CRITICAL", "WARNING"})
PONG: Final = b'{"type":"pong"}'
_SHOWN_CHARS: Final = 40  # of a bad value, in an error message
_SHOWN_IDS: Final = 20  # unknown ids named in one error


class BadRequest(Exception):
    """A frame the gateway cannot act on; ``message`` is what the client is told."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Subscribe:
    characteristic_ids: tuple[int, ...]
    replay: int | None = None  # None: no replay (0: the current limits only)
    severities: frozenset[str] | None = None  # None: every severity
    max_rate: float | None = None  # None: every sample


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    characteristic_ids: tuple[int, ...]


Request = Ping | Subscribe | Unsubscribe


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ids(data: dict[str, Any]) -> tuple[int, ...]:
    if "characteristic_ids" not in data:
        raise BadRequest("characteristic_ids is required: a list of integers")
    ids = data["characteristic_ids"]
    if not isinstance(ids, list):
        raise BadRequest(f"characteristic_ids must be a list of integers, got {_show(ids)}")
    if len(ids) > MAX_IDS:
        raise BadRequest(f"at most {MAX_IDS} characteristic_ids in one message, got {len(ids)}")
    for item in ids:
        if not _is_int(item):
            raise BadRequest(f"characteristic_ids must be integers, got {_show(item)}")
    return tuple(dict.fromkeys(ids))  # in the client's order, each once


def _replay(data: dict[str, Any]) -> int | None:
    value = data.get("replay")
    if value is None:
        return None
    if not _is_int(value) or value < 0:
        raise BadRequest(
            f"replay must be a whole number of samples (0 or more), got {_show(value)}"
        )
    return int(value)


def _severities(data: dict[str, Any]) -> frozenset[str] | None:
    value = data.get("severities")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f'severities must be a list like ["CRITICAL"], got {_show(value)}')
    unknown = [v for v in value if v not in SEVERITIES]
    if unknown:
        raise BadRequest(
            f"unknown severity {_show(unknown[0])}: use {', '.join(sorted(SEVERITIES))}"
        )
    return frozenset(value)


def _max_rate(data: dict[str, Any]) -> float | None:
    value = data.get("max_rate")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_RATE
    ):
        raise BadRequest(
            f"max_rate must be a number of samples a second above 0 and at most {MAX_RATE:g},"
            f" got {_show(value)}"
        )
    return float(value)


def parse(frame: str | bytes) -> Request:
    """One client frame (text, or binary holding UTF-8 JSON) as a request."""
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        raise BadRequest("not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest('a message must be a JSON object like {"type": "ping"}')
    kind = data.get("type")
    if kind == "ping":
        return Ping()
    if kind == "subscribe":
        return Subscribe(_ids(data), _replay(data), _severities(data), _max_rate(data))
    if kind == "unsubscribe":
        return Unsubscribe(_ids(data))
    if kind is None:
        raise BadRequest("type is required: subscribe, unsubscribe or ping")
    raise BadRequest(f"unknown message type {_show(kind)}: use subscribe, unsubscribe or ping")


def _dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def error_message(message: str, **extra: Any) -> bytes:
    """``{"type": "error", "payload": {"message": ...}}``."""
    return _dumps({"type": "error", "payload": {"message": message, **extra}})


def subscribed_message(ids: Iterable[int]) -> bytes:
    """``{"type": "subscribed", "payload": {"characteristic_ids": [...]}}``, ascending."""
    return _dumps({"type": "subscribed", "payload": {"characteristic_ids": sorted(ids)}})


def unknown_ids_message(ids: list[int]) -> bytes:
    """The error naming ids the bridge does not announce (the first 20 of them)."""
    shown = ", ".join(str(i) for i in ids[:_SHOWN_IDS])
    more = f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else ""
    word = "characteristic" if len(ids) == 1 else "characteristics"
    return error_message(
        f"unknown {word} {shown}{more}: not subscribed", characteristic_ids=ids[:_SHOWN_IDS]
    )
