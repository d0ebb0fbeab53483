"""The adapter from host events to the pipeline's inputs (a recording publisher, no broker)."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.domain import SourceStatusChanged
from bridge.pipeline import Submission
from bridge.readings import InvalidReading
from bridge.sparkplug import (
    DataType,
    EdgeNodeMessages,
    Metric,
    SparkplugBinding,
    decode_payload,
)
from bridge.sparkplug._inbound import SparkplugInbound

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def test_readings_status_rejections_and_rebirth_requests_take_their_paths() -> None:
    sent: list[tuple[str, bytes]] = []
    inbound = SparkplugInbound([SparkplugBinding(1, "G", "E", None, "OD")], clock=lambda: T0)
    inbound.attach(lambda topic, data: sent.append((topic, data)))
    (source,) = inbound.sources
    assert source.topic_filter == "spBv1.0/G/+/E/#"
    node = EdgeNodeMessages("G", "E")

    birth = node.nbirth([Metric.of(DataType.Double, 1.0, name="OD", alias=4)], T0)
    assert source.decode(birth.topic, birth.data, T0) == [SourceStatusChanged(1, True)]

    node.skip()
    data = node.ndata([Metric.of(DataType.Double, 2.5, alias=4, with_datatype=False)], T0)
    rejected, reading = source.decode(data.topic, data.data, T0)
    assert isinstance(rejected, InvalidReading)
    assert rejected.reason == "sequence gap: expected seq 1, got 2 (messages lost)"
    assert isinstance(reading, Submission)
    assert (reading.characteristic_id, reading.values, reading.ts) == (1, (2.5,), T0)
    assert reading.source == "spBv1.0/G/NDATA/E"

    [(topic, command)] = sent
    assert topic == "spBv1.0/G/NCMD/E"
    (metric,) = decode_payload(command).metrics
    assert (metric.name, metric.value) == ("Node Control/Rebirth", True)
    assert inbound.rebirths_requested == 1


def test_without_rebirth_on_gap_nothing_is_sent() -> None:
    sent: list[tuple[str, bytes]] = []
    inbound = SparkplugInbound([SparkplugBinding(1, "G", "E", None, "OD")], rebirth_on_gap=False)
    inbound.attach(lambda topic, data: sent.append((topic, data)))
    data = EdgeNodeMessages("G", "E").ndata([], T0)
    (rejected,) = inbound.decode(data.topic, data.data, T0)
    assert isinstance(rejected, InvalidReading)
    assert sent == []
