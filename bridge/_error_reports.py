"""Reports on ``<prefix>/bridge/errors``, bounded: coalesced per (topic, reason) and window.

A gauge that sends 20,000 readings to unknown ids in three seconds must not make 20,000
error messages (docs/topics.md, "errors"). Within each window (5 s):

- the first report of each (topic, reason) goes out at once, up to ``burst`` of them;
- every further report is counted: at the end of the window one summary per (topic,
  reason) goes out with its ``count``, for at most ``max_keys`` of them, and one more
  summary (topic ``""``) counts all the rest together.

So a window makes at most ``burst + max_keys + 1`` messages (10 + 50 + 1 = 61 by default),
and the ``count`` fields of all messages add up to the number of rejections. The bridge's
reports about itself (no input topic: "database unavailable") always go out at once; they
come once per outage. Every echoed field is cut short by :func:`bridge.wire.payloads.error_payload`.
Pure but for the optional timer: the clock and the scheduler are passed in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.wire.payloads import encode_error

__all__ = ["ErrorReporter"]

log = logging.getLogger("openspc.pipeline")

WINDOW_S = 5.0
BURST = 10
MAX_KEYS = 50


@dataclass(slots=True)
class _Count:
    payload: bytes
    count: int = 0


def _call_later(delay: float, callback: Callable[[], None]) -> Any:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop (a unit test): the next report flushes
        return None
    return loop.call_later(delay, callback)


class ErrorReporter:
    """Publishes rejected inputs on the errors topic within a bounded rate."""

    def __init__(
        self,
        publish: Callable[[bytes], None],
        clock: Callable[[], datetime],
        *,
        window_s: float = WINDOW_S,
        burst: int = BURST,
        max_keys: int = MAX_KEYS,
        monotonic: Callable[[], float] = time.monotonic,
        schedule: Callable[[float, Callable[[], None]], Any] = _call_later,
    ) -> None:
        self._publish = publish
        self._clock = clock
        self.window_s = window_s
        self.burst = burst
        self.max_keys = max_keys
        self._monotonic = monotonic
        self._schedule = schedule
        self._window_start = monotonic()
        self._sent_at_once = 0
        self._seen: set[tuple[str, str]] = set()  # published at once in this window
        self._counts: dict[tuple[str, str], _Count] = {}
        self._overflow = 0
        self._timer: Any = None
        self.published = 0  # messages published (for tests and metrics)
        self.reported = 0  # reports received

    def report(self, topic: str, payload: bytes, reason: str) -> None:
        self.reported += 1
        now = self._monotonic()
        if now - self._window_start >= self.window_s:
            self.flush()
        key = (topic, reason)
        if not topic or (key not in self._seen and self._sent_at_once < self.burst):
            if topic:
                self._seen.add(key)
                self._sent_at_once += 1
            log.info("rejected input on %s: %.300s", topic or "-", reason)
            self._send(topic, payload, reason, 1, summary=False)
            return
        counted = self._counts.get(key)
        if counted is None:
            if len(self._counts) >= self.max_keys:
                self._overflow += 1
                self._arm(now)
                return
            counted = self._counts[key] = _Count(payload)
        counted.payload = payload
        counted.count += 1
        self._arm(now)

    def flush(self) -> None:
        """Publish the summaries of the window so far and start a new window."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        counts, overflow = self._counts, self._overflow
        self._counts, self._overflow = {}, 0
        self._seen.clear()
        self._sent_at_once = 0
        self._window_start = self._monotonic()
        for (topic, reason), counted in counts.items():
            log.info("rejected input on %s (%d times): %.300s", topic, counted.count, reason)
            self._send(topic, counted.payload, reason, counted.count, summary=True)
        if overflow:
            reason = (
                f"{overflow} more rejected inputs in the last {self.window_s:g} s, on topics "
                "or for reasons beyond those reported (the errors topic is rate-limited)"
            )
            log.info("%s", reason)
            self._send("", b"", reason, overflow, summary=True)

    def _arm(self, now: float) -> None:
        if self._timer is None:
            delay = max(0.0, self._window_start + self.window_s - now)
            self._timer = self._schedule(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def _send(self, topic: str, payload: bytes, reason: str, count: int, *, summary: bool) -> None:
        self.published += 1
        self._publish(encode_error(topic, payload, reason, self._clock(), count, summary))
