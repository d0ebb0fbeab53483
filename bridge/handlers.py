"""Handlers: commands (one each) and event subscribers (many), registered in one table.

- :func:`acknowledge` and :func:`recalculate` carry out the HMI's commands in a unit of
  work and return the events they caused; a refused command raises
  :class:`~bridge.errors.CommandRejected` and changes nothing.
- :class:`Broadcaster` publishes the results on MQTT (sample, violation, ack, limits, meta).
- :class:`LiveState` keeps the retained ``history`` and ``alarms`` topics current:
  alarms are republished whenever the open set changes; history at most once a second per
  characteristic (always the latest), at once when the pipeline is idle (within a budget),
  and on shutdown.
- :class:`MetricsRecorder` counts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge.bus import CommandHandler, EventHandler
from bridge.domain import (
    AcknowledgeViolation,
    DomainEvent,
    LimitsUpdated,
    Recalculate,
    SampleRecorded,
    SourceStatusChanged,
    ViolationAcknowledged,
    ViolationCreated,
)
from bridge.errors import CommandRejected
from bridge.messages import (
    ack_payload,
    alarms_payload,
    dumps,
    envelope,
    history_payload,
    iso_z,
    limits_message,
    sample_payload,
    violation_payload,
)
from bridge.pipeline import Metrics
from bridge.store import Store
from engine import CharacteristicEngine

__all__ = [
    "Broadcaster",
    "CommandContext",
    "LiveState",
    "MetricsRecorder",
    "Publisher",
    "acknowledge",
    "command_table",
    "event_table",
    "recalculate",
]

log = logging.getLogger("openspc.handlers")


class Publisher(Protocol):
    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None: ...


# --- commands ---------------------------------------------------------------------------


@dataclass
class CommandContext:
    store: Store
    engines: Mapping[int, CharacteristicEngine]
    baselines: Mapping[int, int]
    reason_codes: Sequence[str]
    clock: Callable[[], datetime]


async def acknowledge(command: AcknowledgeViolation, ctx: CommandContext) -> list[DomainEvent]:
    if command.reason not in ctx.reason_codes:
        raise CommandRejected(
            f"reason {command.reason!r} is not one of the configured reason codes"
        )
    now = ctx.clock()
    async with ctx.store.unit_of_work() as uow:
        found = await uow.violation_for_update(command.violation_id)
        if found is None:
            raise CommandRejected(f"violation {command.violation_id} does not exist")
        if found.acknowledged:
            raise CommandRejected(f"violation {command.violation_id} is already acknowledged")
        await uow.acknowledge(
            found.id,
            command.user,
            command.reason,
            now,
            exclude_sample_id=found.sample_id if command.exclude_sample else None,
        )
        await uow.commit()
    return [
        ViolationAcknowledged(
            found.id,
            found.characteristic_id,
            command.user,
            command.reason,
            command.exclude_sample,
            now,
        )
    ]


async def recalculate(command: Recalculate, ctx: CommandContext) -> list[DomainEvent]:
    engine = ctx.engines.get(command.characteristic_id)
    if engine is None:
        raise CommandRejected(f"unknown characteristic {command.characteristic_id}")
    last = command.last or ctx.baselines.get(command.characteristic_id, 25)
    subgroups = await ctx.store.subgroups(command.characteristic_id, last)
    if len(subgroups) < 2:
        raise CommandRejected(
            f"characteristic {command.characteristic_id} has {len(subgroups)} usable "
            "subgroup(s); at least 2 are needed"
        )
    now = ctx.clock()
    try:
        updated = engine.recalculate(subgroups, now)
    except ValueError as exc:
        raise CommandRejected(f"cannot recalculate: {exc}") from None
    payload = limits_message(
        updated.limits, command.characteristic_id, iso_z(updated.timestamp), engine.chart
    )
    async with ctx.store.unit_of_work() as uow:
        await uow.add_limits(command.characteristic_id, updated.timestamp, payload)
        await uow.save_states({command.characteristic_id: engine.snapshot()}, now)
        await uow.commit()
    return [LimitsUpdated(command.characteristic_id, payload)]


# --- events -----------------------------------------------------------------------------


class Broadcaster:
    """Publishes each result on its topic (QoS 1; sample and limits retained)."""

    def __init__(self, mqtt: Publisher, prefix: str, metrics: Metrics) -> None:
        self.mqtt = mqtt
        self.prefix = prefix
        self.metrics = metrics
        self.meta: dict[int, dict[str, Any]] = {}

    def _topic(self, cid: int, leaf: str) -> str:
        return f"{self.prefix}/char/{cid}/{leaf}"

    def on_sample(self, event: SampleRecorded) -> None:
        cid = event.sample.characteristic_id
        if event.encoded:  # the same bytes as dumps(envelope("sample", payload))
            message = b'{"type":"sample","payload":' + event.encoded + b"}"
        else:
            payload = event.payload or sample_payload(event.sample_id, event.sample)
            message = dumps(envelope("sample", payload))
        self.mqtt.publish(self._topic(cid, "sample"), message, retain=True)
        if event.received is not None:
            self.metrics.observe_latency(time.monotonic() - event.received)

    def on_violation(self, event: ViolationCreated) -> None:
        payload = violation_payload(event.violation_id, event.sample_id, event.violation)
        cid = event.violation.characteristic_id
        self.mqtt.publish(self._topic(cid, "violation"), dumps(envelope("violation", payload)))

    def on_ack(self, event: ViolationAcknowledged) -> None:
        payload = ack_payload(
            event.violation_id, event.characteristic_id, event.user, event.reason, event.timestamp
        )
        self.mqtt.publish(
            self._topic(event.characteristic_id, "ack"), dumps(envelope("ack_update", payload))
        )

    def on_limits(self, event: LimitsUpdated) -> None:
        self.mqtt.publish(
            self._topic(event.characteristic_id, "limits"),
            dumps(envelope("control_limits", event.payload)),
            retain=True,
        )

    def publish_meta(
        self, cid: int, online: bool | None = None, now: datetime | None = None
    ) -> None:
        meta = self.meta.get(cid)
        if meta is None:
            return
        if online is not None:
            meta["online"] = online
        meta["timestamp"] = iso_z(now or datetime.now(UTC))
        self.mqtt.publish(self._topic(cid, "meta"), dumps(envelope("meta", meta)), retain=True)

    def on_source_status(self, event: SourceStatusChanged) -> None:
        meta = self.meta.get(event.characteristic_id)
        if meta is not None and meta.get("online") != event.online:
            self.publish_meta(event.characteristic_id, event.online)


IDLE_FLUSH_RATE = 20.0
"""History publishes a second that idle flushes may make, all characteristics together."""
IDLE_FLUSH_BURST = 50.0


class LiveState:
    """The retained ``history`` (last N samples) and ``alarms`` (open violations) topics."""

    def __init__(
        self,
        mqtt: Publisher,
        prefix: str,
        history_size: int,
        characteristic_ids: Sequence[int],
        min_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mqtt = mqtt
        self.prefix = prefix
        self.min_interval = min_interval
        self.monotonic = monotonic
        self.history: dict[int, deque[dict[str, Any]]] = {
            cid: deque(maxlen=history_size) for cid in characteristic_ids
        }
        # each sample's JSON, encoded once: a history message joins them instead of
        # encoding the last N samples again every second (docs/performance.md); a plain
        # list made on first use (an empty deque is 624 bytes: 6 MB for 10,000)
        self._history_size = history_size
        self._encoded: dict[int, list[bytes]] = {}
        self.alarms: dict[int, dict[int, dict[str, Any]]] = {cid: {} for cid in characteristic_ids}
        self._dirty: set[int] = set()
        self._last_history: dict[int, float] = {}
        # idle flushes: a budget of history publishes (a token bucket), so a quiet plant sees
        # its retained history current at once and a busy one stays coalesced
        self._idle_tokens = IDLE_FLUSH_BURST
        self._idle_tokens_at = monotonic()

    def restore(
        self, history: Mapping[int, Sequence[dict[str, Any]]], alarms: Sequence[dict[str, Any]]
    ) -> None:
        for cid, samples in history.items():
            if cid in self.history:
                self.history[cid].extend(samples)
                encoded = self._encoded.setdefault(cid, [])
                encoded.extend(dumps(sample) for sample in samples)
                del encoded[: -self._history_size]
        for violation in alarms:
            open_set = self.alarms.get(violation["characteristic_id"])
            if open_set is not None:
                open_set[violation["violation_id"]] = violation

    def on_sample(self, event: SampleRecorded) -> None:
        cid = event.sample.characteristic_id
        ring = self.history.get(cid)
        if ring is None:
            return
        payload = event.payload or sample_payload(event.sample_id, event.sample)
        ring.append(payload)
        encoded = self._encoded.setdefault(cid, [])
        encoded.append(event.encoded or dumps(payload))
        if len(encoded) > self._history_size:
            del encoded[0]
        self._dirty.add(cid)
        if self.monotonic() - self._last_history.get(cid, -math.inf) >= self.min_interval:
            self.publish_history(cid)

    def on_violation(self, event: ViolationCreated) -> None:
        cid = event.violation.characteristic_id
        open_set = self.alarms.get(cid)
        if open_set is None:
            return
        open_set[event.violation_id] = violation_payload(
            event.violation_id, event.sample_id, event.violation
        )
        self.publish_alarms(cid)

    def on_ack(self, event: ViolationAcknowledged) -> None:
        open_set = self.alarms.get(event.characteristic_id)
        if open_set is not None and open_set.pop(event.violation_id, None) is not None:
            self.publish_alarms(event.characteristic_id)

    def publish_history(self, cid: int) -> None:
        self._dirty.discard(cid)
        self._last_history[cid] = self.monotonic()
        encoded = self._encoded.get(cid, [])
        if len(encoded) == len(self.history[cid]):
            # the same bytes as dumps(envelope("history", history_payload(...)))
            message = b"".join(
                (
                    b'{"type":"history","payload":{"characteristic_id":%d,"samples":[' % cid,
                    b",".join(encoded),
                    b"]}}",
                )
            )
        else:  # someone changed the history from outside: encode it afresh
            message = dumps(envelope("history", history_payload(cid, list(self.history[cid]))))
        self.mqtt.publish(f"{self.prefix}/char/{cid}/history", message, retain=True)

    def publish_alarms(self, cid: int) -> None:
        violations = [self.alarms[cid][vid] for vid in sorted(self.alarms[cid])]
        self.mqtt.publish(
            f"{self.prefix}/char/{cid}/alarms",
            dumps(envelope("alarms", alarms_payload(cid, violations))),
            retain=True,
        )

    def flush_idle(self) -> None:
        """The pipeline has nothing waiting: publish changed histories now, within a budget.

        After a burst the retained history then ends at the last sample as soon as that
        sample is out, instead of up to ``min_interval`` later; under a steady load the
        budget (``IDLE_FLUSH_RATE`` publishes a second) keeps the once-a-second coalescing.
        """
        if not self._dirty:
            return
        now = self.monotonic()
        self._idle_tokens = min(
            IDLE_FLUSH_BURST, self._idle_tokens + (now - self._idle_tokens_at) * IDLE_FLUSH_RATE
        )
        self._idle_tokens_at = now
        for cid in sorted(self._dirty):
            if self._idle_tokens < 1.0:
                return
            self._idle_tokens -= 1.0
            self.publish_history(cid)

    def flush(self, *, force: bool = False) -> None:
        """Publish every history that changed and is due (all of them with ``force``)."""
        now = self.monotonic()
        for cid in sorted(self._dirty):
            if force or now - self._last_history.get(cid, -math.inf) >= self.min_interval:
                self.publish_history(cid)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish due histories a few times a second until ``stop``."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.min_interval / 4)
            except TimeoutError:
                self.flush()


class MetricsRecorder:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_sample(self, event: SampleRecorded) -> None:
        self.metrics.samples += 1

    def on_violation(self, event: ViolationCreated) -> None:
        self.metrics.violations += 1

    def on_ack(self, event: ViolationAcknowledged) -> None:
        self.metrics.acks += 1


def event_table(
    broadcaster: Broadcaster, live: LiveState, recorder: MetricsRecorder
) -> dict[type, list[EventHandler]]:
    """Which subscribers hear which event, in order."""
    return {
        SampleRecorded: [broadcaster.on_sample, live.on_sample, recorder.on_sample],
        ViolationCreated: [broadcaster.on_violation, live.on_violation, recorder.on_violation],
        ViolationAcknowledged: [broadcaster.on_ack, live.on_ack, recorder.on_ack],
        LimitsUpdated: [broadcaster.on_limits],
        SourceStatusChanged: [broadcaster.on_source_status],
    }


def command_table(ctx: CommandContext) -> dict[type, CommandHandler]:
    """Each command's one handler."""
    return {
        AcknowledgeViolation: functools.partial(acknowledge, ctx=ctx),
        Recalculate: functools.partial(recalculate, ctx=ctx),
    }
