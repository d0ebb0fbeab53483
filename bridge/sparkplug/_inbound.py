"""Sparkplug B into the bridge's pipeline: the adapter between :class:`SparkplugHost` and
:class:`bridge.pipeline.InboundSource`.

The bridge subscribes, per configured edge node, to ``spBv1.0/<group>/+/<edge>/#`` on its
own MQTT connection; every message there goes through :meth:`SparkplugInbound.decode`, which
returns the readings (as :class:`~bridge.pipeline.Submission`, the same path JSON readings
take: subgrouping, persistence), the source status changes (the retained ``meta`` says
``online``), and the rejected inputs (published on ``<prefix>/bridge/errors``). A rebirth
request is published straight away as an NCMD through the publisher given to :meth:`attach`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from bridge.domain import SourceStatusChanged as DomainSourceStatus
from bridge.pipeline import Submission
from bridge.readings import InvalidReading
from bridge.sparkplug._host import (
    InputRejected,
    ReadingReceived,
    RebirthRequested,
    SourceStatusChanged,
    SparkplugBinding,
    SparkplugHost,
)
from bridge.sparkplug._node import rebirth_command

__all__ = ["Publish", "SparkplugFilter", "SparkplugInbound"]

log = logging.getLogger("openspc.sparkplug")

Publish = Callable[[str, bytes], None]
"""Sends one message (QoS 0, not retained): how rebirth requests leave the bridge."""

Decoded = Submission | DomainSourceStatus | InvalidReading


class SparkplugInbound:
    """All configured Sparkplug B sources: one :class:`SparkplugHost`, one
    :class:`SparkplugFilter` (an ``InboundSource``) per edge node."""

    def __init__(
        self,
        bindings: Iterable[SparkplugBinding],
        *,
        rebirth_on_gap: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.host = SparkplugHost(bindings, rebirth_requests=rebirth_on_gap)
        self.rebirth_on_gap = rebirth_on_gap
        self.clock = clock
        self._publish: Publish | None = None
        self.rebirths_requested = 0
        # (group, edge, bdSeq) of every NBIRTH that carries one: stored (docs/sparkplug.md)
        self.on_birth: Callable[[str, str, int], None] | None = None
        self._told: dict[tuple[str, str], int] = {}

    @property
    def sources(self) -> list[SparkplugFilter]:
        return [SparkplugFilter(topic_filter, self) for topic_filter in self.host.topic_filters]

    def attach(self, publish: Publish) -> None:
        """Give the adapter the bridge's MQTT publisher, for NCMD rebirth requests."""
        self._publish = publish

    def request_rebirths(self) -> int:
        """Ask every configured edge node without a birth since the bridge started for one
        (at start-up, so that its first data after a restart of the bridge is understood).
        Returns how many were asked."""
        if self._publish is None or not self.rebirth_on_gap:
            return 0  # rebirth_on_gap = false: the bridge never writes to an edge node
        now = self.clock()
        unborn = self.host.unborn()
        for group, edge in unborn:
            self._request_rebirth(RebirthRequested(group, edge, "the bridge started"))
            self.host.rebirth_requested(group, edge, now)
        return len(unborn)

    def decode(self, topic: str, payload: bytes, received_at: datetime) -> list[Decoded]:
        out: list[Decoded] = []
        before = self._birth_key(topic)
        for event in self.host.handle(topic, payload, received_at):
            if isinstance(event, ReadingReceived):
                out.append(
                    Submission(
                        event.characteristic_id,
                        (event.value,),
                        event.timestamp,
                        event.topic,
                        received_at=received_at,
                    )
                )
            elif isinstance(event, SourceStatusChanged):
                out.append(DomainSourceStatus(event.characteristic_id, event.online))
            elif isinstance(event, InputRejected):
                out.append(InvalidReading(event.reason, event.topic))
            elif isinstance(event, RebirthRequested):
                self._request_rebirth(event)
        if before is not None and self.on_birth is not None:
            bd_seq = self.host.bd_seq(*before)
            if bd_seq is not None and self._told.get(before) != bd_seq:
                self._told[before] = bd_seq
                self.on_birth(*before, bd_seq)
        return out

    @staticmethod
    def _birth_key(topic: str) -> tuple[str, str] | None:
        """``(group, edge)`` when ``topic`` is an NBIRTH's."""
        parts = topic.split("/")
        if len(parts) == 4 and parts[2] == "NBIRTH":
            return parts[1], parts[3]
        return None

    def _request_rebirth(self, event: RebirthRequested) -> None:
        if self._publish is None:
            log.warning("cannot request a rebirth of %s/%s: not attached", event.group, event.edge)
            return
        command = rebirth_command(event.group, event.edge, self.clock())
        log.info("requesting a rebirth of %s/%s: %s", event.group, event.edge, event.reason)
        self._publish(command.topic, command.data)
        self.rebirths_requested += 1


class SparkplugFilter:
    """One edge node's topic filter, as a :class:`bridge.pipeline.InboundSource`."""

    def __init__(self, topic_filter: str, inbound: SparkplugInbound) -> None:
        self.topic_filter = topic_filter
        self._inbound = inbound

    def decode(self, topic: str, payload: bytes, received_at: datetime) -> Sequence[Decoded]:
        return self._inbound.decode(topic, payload, received_at)
