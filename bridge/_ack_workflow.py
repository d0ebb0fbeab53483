"""The quality engineer's acknowledgement workflow around the pure core (engine.alarms):
acknowledgements with cause, action and comment, one or many at once, all or nothing; the
retained Pareto of causes; limit versions (docs/topics.md, "Alarm workflow").

- :func:`acknowledge` is the ``AcknowledgeViolation`` command's handler: the request is
  checked by :func:`engine.alarms.parse_acknowledgement`, the violations it names are locked
  and resolved by :func:`engine.alarms.select_violations` in one unit of work, and either
  all are acknowledged in it or none (a refusal raises
  :class:`~bridge.errors.CommandRejected`). It returns one ``ViolationAcknowledged`` per
  violation, then :class:`SamplesExcluded` and :class:`CausesCounted` per characteristic.
- :class:`LimitVersions` numbers the control limits 1, 2, ... per characteristic and tells
  which version judged a sample.
- :class:`WorkflowPublisher` publishes the retained ``causes`` topic and marks excluded
  samples in the retained ``history``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from bridge.domain import AcknowledgeViolation, DomainEvent, ViolationAcknowledged
from bridge.errors import CommandRejected
from bridge.ports import Publisher
from bridge.wire.payloads import causes_payload, dumps, envelope
from bridge.wire.topics import Topics
from engine import Method
from engine.alarms import (
    Acknowledgement,
    AckPolicy,
    AllOpen,
    CauseCount,
    InvalidAcknowledgement,
    KnownViolation,
    next_limits_version,
    pareto_since,
    parse_acknowledgement,
    select_violations,
)

if TYPE_CHECKING:
    from bridge._retained import LiveState
    from bridge.ports import StorePort
    from bridge.store import ViolationRecord

__all__ = [
    "CausesCounted",
    "LimitVersions",
    "SamplesExcluded",
    "WorkflowPublisher",
    "acknowledge",
    "causes_message",
    "checked_request",
    "number_limits",
    "ranked_causes",
]


@dataclass(frozen=True, slots=True)
class CausesCounted:
    """The Pareto of a characteristic's causes changed (an acknowledgement)."""

    characteristic_id: int
    days: int
    counts: tuple[CauseCount, ...]


@dataclass(frozen=True, slots=True)
class SamplesExcluded:
    """Acknowledgements excluded these samples of a characteristic from recalculations."""

    characteristic_id: int
    sample_ids: frozenset[int]


class AckContext(Protocol):
    """What :func:`acknowledge` needs of the handlers' ``CommandContext``."""

    @property
    def store(self) -> StorePort: ...
    @property
    def engines(self) -> Mapping[int, Any]: ...
    @property
    def ack_policy(self) -> AckPolicy: ...
    @property
    def pareto_days(self) -> int: ...
    def clock(self) -> datetime: ...


def ranked_causes(counts: Iterable[tuple[str, int]]) -> tuple[CauseCount, ...]:
    """Grouped ``(cause, count)`` rows from the store in the Pareto's order (most frequent
    first, ties by cause name), as :func:`engine.alarms.cause_pareto` ranks records."""
    ranked = sorted(counts, key=lambda item: (-item[1], item[0]))
    return tuple(CauseCount(cause, count) for cause, count in ranked)


def causes_message(characteristic_id: int, days: int, counts: Sequence[CauseCount]) -> bytes:
    payload = causes_payload(characteristic_id, days, [(c.cause, c.count) for c in counts])
    return dumps(envelope("causes", payload))


def _refused(exc: InvalidAcknowledgement) -> CommandRejected:
    return CommandRejected(exc.reason)


def checked_request(command: AcknowledgeViolation, policy: AckPolicy) -> Acknowledgement:
    """The command's fields checked against the configured codes, or
    :class:`~bridge.errors.CommandRejected` with the reason (at most a few hundred
    characters, whatever the command held)."""
    try:
        return parse_acknowledgement(command.request, policy)
    except InvalidAcknowledgement as exc:
        raise _refused(exc) from None


async def acknowledge(command: AcknowledgeViolation, ctx: AckContext) -> list[DomainEvent]:
    """Acknowledge every violation the command names, or none (docs/topics.md, "Commands")."""
    ack = checked_request(command, ctx.ack_policy)
    target = ack.target
    now = ctx.clock()
    since = pareto_since(now, ctx.pareto_days)
    async with ctx.store.unit_of_work() as uow:
        if isinstance(target, AllOpen):
            # asked first: in a cluster, another partition may own the characteristic
            found = await uow.violations_for_ack(None, target.characteristic_id)
            if target.characteristic_id not in ctx.engines:
                raise CommandRejected(f"unknown characteristic {target.characteristic_id}")
        else:
            found = await uow.violations_for_ack(target.ids)
        records = {v.id: v for v in found}
        known = [KnownViolation(v.id, v.characteristic_id, v.acknowledged) for v in found]
        try:
            chosen = select_violations(target, known)
        except InvalidAcknowledgement as exc:
            raise _refused(exc) from None
        excluded: dict[int, set[int]] = {}
        if ack.exclude_sample:
            for v in chosen:
                excluded_sample = records[v.id].sample_id
                if excluded_sample is not None:
                    excluded.setdefault(v.characteristic_id, set()).add(excluded_sample)
        ids = [v.id for v in chosen]
        done = await uow.acknowledge_many(
            ids,
            command.user,
            ack.cause,
            ack.action,
            ack.comment,
            now,
            exclude_sample_ids=sorted(set().union(*excluded.values())) if excluded else (),
        )
        if done != len(ids):  # cannot happen under the lock; never half an acknowledgement
            raise CommandRejected("the violations changed meanwhile; nothing acknowledged")
        characteristics = sorted({v.characteristic_id for v in chosen})
        counts = await uow.cause_counts(characteristics, since)
        await uow.commit()
    return _events(command.user, ack, chosen, records, excluded, now, counts, ctx.pareto_days)


def _events(
    user: str,
    ack: Acknowledgement,
    chosen: Sequence[KnownViolation],
    records: Mapping[int, ViolationRecord],
    excluded: Mapping[int, set[int]],
    now: datetime,
    counts: Mapping[int, Sequence[tuple[str, int]]],
    days: int,
) -> list[DomainEvent]:
    """One ``ViolationAcknowledged`` per violation, then per characteristic the samples it
    excluded and its new Pareto of causes."""
    events: list[Any] = []
    for v in chosen:
        excluded_id = records[v.id].sample_id if ack.exclude_sample else None
        events.append(
            ViolationAcknowledged(
                v.id,
                v.characteristic_id,
                user,
                ack.cause,
                ack.exclude_sample,
                now,
                ack.action,
                ack.comment,
                excluded_id,
            )
        )
    for cid, sample_ids in sorted(excluded.items()):
        events.append(SamplesExcluded(cid, frozenset(sample_ids)))
    for cid in sorted({v.characteristic_id for v in chosen}):
        events.append(CausesCounted(cid, days, ranked_causes(counts.get(cid, ()))))
    return events


class LimitVersions:
    """The limits version in force per characteristic (1, 2, ...; docs/topics.md).

    A new set of limits (a baseline completing, a recalculation, fixed limits changed in
    the config) takes the next version; the engine's announcement of the config's fixed
    limits keeps the version start-up gave them. A sample carries the version in force when
    it was judged, None when it was not (a baseline sample)."""

    def __init__(self, versions: Mapping[int, int] | None = None) -> None:
        self._versions: dict[int, int] = dict(versions or {})

    def current(self, characteristic_id: int) -> int | None:
        return self._versions.get(characteristic_id)

    def new(self, characteristic_id: int) -> int:
        """The version of new limits, taken at once (as ids are: limits whose write then
        fails leave a gap in the count, never two sets with one version)."""
        version = next_limits_version(self._versions.get(characteristic_id))
        self._versions[characteristic_id] = version
        return version

    def announced(self, characteristic_id: int, method: Method) -> int:
        """The version of limits the engine announces: fixed limits keep the version
        start-up gave them; any other limits are new."""
        current = self._versions.get(characteristic_id)
        if method is Method.FIXED and current is not None:
            return current
        return self.new(characteristic_id)

    def judged(self, characteristic_id: int, in_control: bool | None) -> int | None:
        """The version a sample carries: the one in force, None when it was not judged."""
        return None if in_control is None else self._versions.get(characteristic_id)


def number_limits(rows: Sequence[dict[str, Any]], versions: LimitVersions) -> None:
    """Give new ``control_limits`` rows (start-up: fixed limits first stored or changed in
    the config) the next version each, in their payload too."""
    for row in rows:
        row["version"] = row["payload"]["version"] = versions.new(row["characteristic_id"])


class WorkflowPublisher:
    """Subscribers of the workflow's events: the retained ``causes`` topic, and excluded
    samples marked ``excluded: true`` in the retained ``history``."""

    def __init__(self, mqtt: Publisher, prefix: str, live: LiveState) -> None:
        self.mqtt = mqtt
        self.prefix = prefix
        self.live = live

    def publish_causes(
        self, characteristic_id: int, days: int, counts: Sequence[CauseCount]
    ) -> None:
        self.mqtt.publish(
            Topics(self.prefix).causes(characteristic_id),
            causes_message(characteristic_id, days, counts),
            retain=True,
            coalesce=True,
        )

    async def publish_start(
        self,
        store: StorePort,
        characteristic_ids: Sequence[int],
        days: int,
        now: datetime,
        window: int | None = None,
    ) -> None:
        """Every characteristic's Pareto, at start-up (one query for all), paced by the
        MQTT adapter's send window when it has one (``window``: a smaller one for start-up,
        bridge/app.py ``START_WINDOW``)."""
        counts = await store.cause_counts_of_all(pareto_since(now, days))
        wait_window = getattr(self.mqtt, "wait_window", None)
        for index, cid in enumerate(characteristic_ids, 1):
            self.publish_causes(cid, days, ranked_causes(counts.get(cid, ())))
            if wait_window is not None and index % 100 == 0:
                await wait_window(window)

    def on_causes(self, event: CausesCounted) -> None:
        self.publish_causes(event.characteristic_id, event.days, event.counts)

    def on_excluded(self, event: SamplesExcluded) -> None:
        ids = event.sample_ids

        def mark(sample: dict[str, Any]) -> dict[str, Any] | None:
            if sample.get("sample_id") in ids and sample.get("excluded") is not True:
                return {**sample, "excluded": True}
            return None

        self.live.update_samples(event.characteristic_id, mark)
