"""The bus's subscribers with a recording publisher: retained history and alarms, results."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.bus import MessageBus
from bridge.domain import SampleRecorded, ViolationAcknowledged, ViolationCreated
from bridge.handlers import Broadcaster, LiveState, MetricsRecorder, event_table
from bridge.messages import sample_payload
from bridge.pipeline import Metrics
from engine import Chart, SampleProcessed, Severity, ViolationRaised

T = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


@dataclass
class RecordingPublisher:
    sent: list[tuple[str, Any, bool]] = field(default_factory=list)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        coalesce: bool = False,
    ) -> None:
        self.sent.append((topic, json.loads(payload), retain))

    def on(self, leaf: str) -> list[Any]:
        return [p for t, p, _ in self.sent if t.endswith("/" + leaf)]


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def sample(seq: int, value: float, cid: int = 1) -> SampleRecorded:
    s = SampleProcessed(cid, seq, T, value, (value,), None, None, None, (), ())
    return SampleRecorded(100 + seq, s, None, sample_payload(100 + seq, s))


def violation(vid: int, cid: int = 1) -> ViolationCreated:
    v = ViolationRaised(cid, 1, 1, "Beyond 3 sigma", Severity.CRITICAL, Chart.X, T)
    return ViolationCreated(vid, 101, v)


def test_alarms_follow_the_open_set() -> None:
    out = RecordingPublisher()
    live = LiveState(out, "p", history_size=5, characteristic_ids=[1, 2], monotonic=Clock())
    live.on_violation(violation(7))
    live.on_violation(violation(8))
    live.on_ack(ViolationAcknowledged(7, 1, "alice", "Other", False, T))
    live.on_ack(ViolationAcknowledged(7, 1, "alice", "Other", False, T))  # no change
    live.on_violation(violation(9, cid=3))  # not ours
    alarms = [[v["violation_id"] for v in a["payload"]["violations"]] for a in out.on("alarms")]
    assert alarms == [[7], [7, 8], [8]]


async def test_the_event_table_wires_broadcast_live_state_and_counts() -> None:
    out, metrics = RecordingPublisher(), Metrics()
    broadcaster = Broadcaster(out, "p", metrics)
    live = LiveState(out, "p", history_size=5, characteristic_ids=[1], monotonic=Clock())
    bus = MessageBus(event_table(broadcaster, live, MetricsRecorder(metrics)))
    await bus.publish([sample(1, 5.0), violation(3)])
    await asyncio.sleep(0)  # the history goes out right after the batch
    [message] = out.on("sample")
    assert message["type"] == "sample"
    assert message["payload"]["sample_id"] == 101
    assert out.on("violation")[0]["payload"]["violation_id"] == 3
    assert (metrics.samples, metrics.violations) == (1, 1)
    retained = {topic.rsplit("/", 1)[1] for topic, _, retain in out.sent if retain}
    assert retained == {"sample", "history", "alarms"}
