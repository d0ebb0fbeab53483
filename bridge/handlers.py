"""Handlers: commands (one each) and event subscribers (many), registered in one table.

- :func:`acknowledge` and :func:`recalculate` carry out the HMI's commands in a unit of
  work and return the events they caused; a refused command raises
  :class:`~bridge.errors.CommandRejected` and changes nothing.
- :class:`Broadcaster` publishes the results on MQTT (sample, violation, ack, limits, meta).
- :class:`~bridge._retained.LiveState` keeps the retained ``history`` and ``alarms`` topics
  current: alarms whenever the open set changes; history at most once a second per
  characteristic within a bandwidth budget for all (docs/bridge.md).
- :class:`MetricsRecorder` counts.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge._retained import LiveState
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
    dumps,
    envelope,
    iso_z,
    limits_message,
    sample_payload,
    violation_payload,
)
from bridge.pipeline import Metrics
from bridge.ports import StorePort
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
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        coalesce: bool = False,  # retained state: a newer one replaces a held older one
    ) -> None: ...


# --- commands ---------------------------------------------------------------------------


@dataclass
class CommandContext:
    store: StorePort
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
            coalesce=True,
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
        self.mqtt.publish(
            self._topic(cid, "meta"), dumps(envelope("meta", meta)), retain=True, coalesce=True
        )

    def on_source_status(self, event: SourceStatusChanged) -> None:
        meta = self.meta.get(event.characteristic_id)
        if meta is not None and meta.get("online") != event.online:
            self.publish_meta(event.characteristic_id, event.online)


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
