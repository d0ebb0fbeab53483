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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge._ack_workflow import (  # acknowledge: one or several violations, all or nothing
    CausesCounted,
    LimitVersions,
    SamplesExcluded,
    WorkflowPublisher,
    acknowledge,
)
from bridge._retained import LiveState
from bridge.bus import CommandHandler, EventHandler
from bridge.config import DEFAULT_PARETO_DAYS
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
from bridge.pipeline import Metrics
from bridge.ports import Publisher, StorePort
from bridge.wire import Topics
from bridge.wire.payloads import (
    encode_ack,
    encode_limits,
    encode_meta,
    encode_sample,
    encode_violation,
    iso_z,
    limits_message,
)
from engine import CharacteristicEngine
from engine.alarms import DEFAULT_ACTION_CODES, AckPolicy

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


# --- commands ---------------------------------------------------------------------------


@dataclass
class CommandContext:
    store: StorePort
    engines: Mapping[int, CharacteristicEngine]
    baselines: Mapping[int, int]
    reason_codes: Sequence[str]  # the cause codes (``cause_codes``, once ``reason_codes``)
    clock: Callable[[], datetime]
    action_codes: Sequence[str] = DEFAULT_ACTION_CODES
    require_action: bool = False
    pareto_days: int = DEFAULT_PARETO_DAYS
    versions: LimitVersions = field(default_factory=LimitVersions)

    @property
    def ack_policy(self) -> AckPolicy:
        return AckPolicy(tuple(self.reason_codes), tuple(self.action_codes), self.require_action)


RANGE_MAX_SUBGROUPS = 100_000
"""Most samples a ``recalculate`` over a sample-id range takes (docs/topics.md)."""


async def recalculate(command: Recalculate, ctx: CommandContext) -> list[DomainEvent]:
    engine = ctx.engines.get(command.characteristic_id)
    if engine is None:
        raise CommandRejected(f"unknown characteristic {command.characteristic_id}")
    if command.between is not None:
        subgroups = await ctx.store.subgroups(
            command.characteristic_id, RANGE_MAX_SUBGROUPS + 1, command.between
        )
        if len(subgroups) > RANGE_MAX_SUBGROUPS:
            raise CommandRejected(
                f"sample ids {command.between[0]} to {command.between[1]} hold more than "
                f"{RANGE_MAX_SUBGROUPS} samples; give a shorter range"
            )
    else:
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
    version = payload["version"] = ctx.versions.new(command.characteristic_id)
    async with ctx.store.unit_of_work() as uow:
        await uow.add_limits(command.characteristic_id, updated.timestamp, payload, version)
        await uow.save_states({command.characteristic_id: engine.snapshot()}, now)
        await uow.commit()
    return [LimitsUpdated(command.characteristic_id, payload)]


# --- events -----------------------------------------------------------------------------


class Broadcaster:
    """Publishes each result on its topic (QoS 1; sample and limits retained)."""

    def __init__(self, mqtt: Publisher, prefix: str, metrics: Metrics) -> None:
        self.mqtt = mqtt
        self.prefix = prefix
        self.topics = Topics(prefix)
        self.metrics = metrics
        self.meta: dict[int, dict[str, Any]] = {}

    def on_sample(self, event: SampleRecorded) -> None:
        cid = event.sample.characteristic_id
        self.mqtt.publish(self.topics.sample(cid), encode_sample(event), retain=True)
        if event.received is not None:
            self.metrics.observe_latency(time.monotonic() - event.received)

    def on_violation(self, event: ViolationCreated) -> None:
        cid = event.violation.characteristic_id
        self.mqtt.publish(self.topics.violation(cid), encode_violation(event))

    def on_ack(self, event: ViolationAcknowledged) -> None:
        self.mqtt.publish(self.topics.ack(event.characteristic_id), encode_ack(event))

    def on_limits(self, event: LimitsUpdated) -> None:
        self.mqtt.publish(
            self.topics.limits(event.characteristic_id),
            encode_limits(event.payload),
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
        self.mqtt.publish(self.topics.meta(cid), encode_meta(meta), retain=True, coalesce=True)

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
    broadcaster: Broadcaster,
    live: LiveState,
    recorder: MetricsRecorder,
    workflow: WorkflowPublisher | None = None,
) -> dict[type, list[EventHandler]]:
    """Which subscribers hear which event, in order."""
    table: dict[type, list[EventHandler]] = {
        SampleRecorded: [broadcaster.on_sample, live.on_sample, recorder.on_sample],
        ViolationCreated: [broadcaster.on_violation, live.on_violation, recorder.on_violation],
        ViolationAcknowledged: [broadcaster.on_ack, live.on_ack, recorder.on_ack],
        LimitsUpdated: [broadcaster.on_limits],
        SourceStatusChanged: [broadcaster.on_source_status],
    }
    if workflow is not None:  # the acknowledgement workflow (bridge/_ack_workflow.py)
        table[SamplesExcluded] = [workflow.on_excluded]
        table[CausesCounted] = [workflow.on_causes]
    return table


def command_table(ctx: CommandContext) -> dict[type, CommandHandler]:
    """Each command's one handler."""
    return {
        AcknowledgeViolation: functools.partial(acknowledge, ctx=ctx),
        Recalculate: functools.partial(recalculate, ctx=ctx),
    }
