"""The Sparkplug host state machine: births, aliases, deaths, sequence gaps (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sparkplug import (
    DataType,
    EdgeNodeMessages,
    HostEvent,
    InputRejected,
    Metric,
    Outgoing,
    Payload,
    ReadingReceived,
    RebirthRequested,
    SourceStatusChanged,
    SparkplugBinding,
    SparkplugHost,
    encode_payload,
    to_epoch_ms,
)
from bridge.testing import ManualClock

G, E = "Plant1", "Line3"
T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
BINDINGS = [
    SparkplugBinding(1, G, E, "Gauge7", "OD"),
    SparkplugBinding(2, G, E, None, "Temp"),
    SparkplugBinding(3, G, E, "Gauge7", "Ok"),
]

OD_BIRTH = [
    Metric.of(DataType.Double, 10.0, name="OD", alias=11),
    Metric.of(DataType.Boolean, True, name="Ok", alias=12),
    Metric.of(DataType.Int8, 0, name="Offset", alias=13),
]


def ms(at: datetime) -> int:
    return to_epoch_ms(at)


class Harness:
    """A host, an edge node that builds its messages, and a clock."""

    def __init__(self, **options: object) -> None:
        self.clock = ManualClock(T0)
        self.host = SparkplugHost(BINDINGS, **options)  # type: ignore[arg-type]
        self.node = EdgeNodeMessages(G, E, bd_seq=3)

    def send(self, message: Outgoing) -> list[HostEvent]:
        self.clock.advance(0.1)
        return self.host.handle(message.topic, message.data, self.clock.now())

    def born(self) -> None:
        self.send(self.node.nbirth([Metric.of(DataType.Float, 20.5, name="Temp", alias=1)], T0))
        self.send(self.node.dbirth("Gauge7", OD_BIRTH, T0))


def od(value: float, at: datetime, **kw: bool) -> Metric:
    """OD by alias only, without datatype, as spec-style DDATA sends it."""
    return Metric.of(DataType.Double, value, alias=11, timestamp=ms(at), with_datatype=False, **kw)


def only(events: list[HostEvent], kind: type) -> list[HostEvent]:
    return [e for e in events if isinstance(e, kind)]


def test_births_bring_sources_online_and_data_by_alias_becomes_readings() -> None:
    h = Harness()
    nbirth = h.send(h.node.nbirth([Metric.of(DataType.Float, 20.5, name="Temp", alias=1)], T0))
    assert nbirth == [SourceStatusChanged(2, True, T0, f"spBv1.0/{G}/NBIRTH/{E}")]
    dbirth = h.send(h.node.dbirth("Gauge7", OD_BIRTH, T0))
    topic = f"spBv1.0/{G}/DBIRTH/{E}/Gauge7"
    assert dbirth == [
        SourceStatusChanged(1, True, T0, topic),
        SourceStatusChanged(3, True, T0, topic),
    ]

    measured = T0 + timedelta(seconds=1)
    events = h.send(h.node.ddata("Gauge7", [od(10.02, measured)], T0 + timedelta(seconds=2)))
    assert events == [ReadingReceived(1, 10.02, measured, f"spBv1.0/{G}/DDATA/{E}/Gauge7")]


def test_node_metric_by_alias_reads_its_float_and_falls_back_to_payload_time() -> None:
    h = Harness()
    h.born()
    sent_at = T0 + timedelta(seconds=5)
    metric = Metric.of(DataType.Float, 21.3, alias=1, with_datatype=False)
    assert h.send(h.node.ndata([metric], sent_at)) == [
        ReadingReceived(2, 21.3, sent_at, f"spBv1.0/{G}/NDATA/{E}")
    ]


def test_signed_values_take_their_width_from_the_birth() -> None:
    host = SparkplugHost([SparkplugBinding(9, G, E, None, "Offset")])
    node = EdgeNodeMessages(G, E)
    birth = node.nbirth([Metric.of(DataType.Int8, 0, name="Offset", alias=5)], T0)
    host.handle(birth.topic, birth.data, T0)
    data = node.ndata([Metric.of(DataType.Int8, -3, alias=5, with_datatype=False)], T0)
    (reading,) = host.handle(data.topic, data.data, T0)
    assert isinstance(reading, ReadingReceived)
    assert reading.value == -3.0


def test_a_message_without_any_timestamp_takes_the_time_of_arrival() -> None:
    h = Harness()
    h.born()
    h.node.seq += 1
    raw = Payload(
        seq=h.node.seq, metrics=(Metric(alias=11, value_field=od(1, T0).value_field, value=9.99),)
    )
    now = T0 + timedelta(minutes=3)
    events = h.host.handle(f"spBv1.0/{G}/DDATA/{E}/Gauge7", encode_payload(raw), now)
    assert events == [ReadingReceived(1, 9.99, now, f"spBv1.0/{G}/DDATA/{E}/Gauge7")]


def test_historical_values_are_readings_with_their_own_time_and_nulls_are_skipped() -> None:
    h = Harness()
    h.born()
    old = T0 - timedelta(hours=1)
    null = Metric(alias=11, timestamp=ms(T0), is_null=True)
    events = h.send(h.node.ddata("Gauge7", [od(9.9, old, is_historical=True), null], T0))
    assert events == [
        ReadingReceived(1, 9.9, old, f"spBv1.0/{G}/DDATA/{E}/Gauge7", historical=True)
    ]


def test_a_boolean_for_a_configured_metric_is_rejected_and_unconfigured_metrics_ignored() -> None:
    h = Harness()
    h.born()
    flag = Metric.of(DataType.Boolean, False, alias=12, with_datatype=False)
    offset = Metric.of(DataType.Int8, 1, alias=13, with_datatype=False)  # not configured
    events = h.send(h.node.ddata("Gauge7", [flag, offset], T0))
    assert [(type(e), getattr(e, "reason", None)) for e in events] == [
        (InputRejected, "metric 'Ok' is Boolean, not a number")
    ]


def test_data_before_any_birth_is_rejected_and_asks_for_a_rebirth_once_per_holdoff() -> None:
    h = Harness(rebirth_holdoff=timedelta(seconds=5))
    h.node.nbirth([], T0)  # the node was born before the bridge started: the host missed it
    first = h.send(h.node.ndata([Metric.of(DataType.Float, 1.0, alias=1)], T0))
    assert [type(e) for e in first] == [InputRejected, RebirthRequested]
    assert isinstance(first[0], InputRejected)
    assert first[0].reason.startswith("NDATA before NBIRTH")
    assert isinstance(first[1], RebirthRequested)
    assert first[1].topic == f"spBv1.0/{G}/NCMD/{E}"

    second = h.send(h.node.ndata([Metric.of(DataType.Float, 1.0, alias=1)], T0))
    assert [type(e) for e in second] == [InputRejected]  # within the holdoff: no second NCMD
    h.clock.advance(5)
    third = h.send(h.node.ndata([Metric.of(DataType.Float, 1.0, alias=1)], T0))
    assert [type(e) for e in third] == [InputRejected, RebirthRequested]


def test_no_rebirth_requests_when_switched_off() -> None:
    h = Harness(rebirth_requests=False)
    h.born()
    h.node.skip(2)
    events = h.send(h.node.ndata([], T0))
    assert [type(e) for e in events] == [InputRejected]


def test_a_sequence_gap_is_reported_with_a_rebirth_request_and_the_data_still_read() -> None:
    h = Harness()
    h.born()
    h.node.skip(3)  # three messages lost
    events = h.send(h.node.ddata("Gauge7", [od(10.1, T0)], T0))
    assert [type(e) for e in events] == [InputRejected, RebirthRequested, ReadingReceived]
    assert isinstance(events[0], InputRejected)
    assert events[0].reason == "sequence gap: expected seq 2, got 5 (messages lost)"


def test_seq_wraps_from_255_to_0_without_a_gap() -> None:
    h = Harness()
    h.born()
    events: list[HostEvent] = []
    for _ in range(300):
        events += h.send(h.node.ndata([], T0))
    assert events == []


def test_unknown_alias_is_rejected_and_asks_for_a_rebirth() -> None:
    h = Harness()
    h.born()
    events = h.send(h.node.ddata("Gauge7", [Metric.of(DataType.Double, 1.0, alias=99)], T0))
    assert [type(e) for e in events] == [InputRejected, RebirthRequested]
    assert isinstance(events[0], InputRejected)
    assert events[0].reason == "unknown alias 99: not defined by the last birth"


def test_ddata_before_its_dbirth_is_rejected() -> None:
    h = Harness()
    h.send(h.node.nbirth([], T0))
    events = h.send(h.node.ddata("Gauge7", [od(1.0, T0)], T0))
    assert [type(e) for e in events] == [InputRejected, RebirthRequested]


def test_ndeath_with_the_births_bdseq_takes_node_and_devices_offline() -> None:
    h = Harness()
    h.born()
    events = h.send(h.node.ndeath(T0))
    assert {(e.characteristic_id, e.online) for e in only(events, SourceStatusChanged)} == {
        (1, False),
        (2, False),
        (3, False),
    }
    assert h.host.is_online(1) is False
    # data after the death needs a new birth
    after = h.send(h.node.ndata([], T0))
    assert [type(e) for e in after] == [InputRejected, RebirthRequested]


def test_an_ndeath_of_an_earlier_session_is_ignored() -> None:
    h = Harness()
    h.born()
    stale = EdgeNodeMessages(G, E, bd_seq=2).ndeath(T0)  # the birth said bdSeq 3
    assert h.send(stale) == []
    assert h.host.is_online(2) is True


def test_ddeath_and_dbirth_toggle_the_devices_characteristics_only() -> None:
    h = Harness()
    h.born()
    dead = h.send(h.node.ddeath("Gauge7", T0))
    assert {(e.characteristic_id, e.online) for e in only(dead, SourceStatusChanged)} == {
        (1, False),
        (3, False),
    }
    assert h.host.is_online(2) is True
    reborn = h.send(h.node.dbirth("Gauge7", OD_BIRTH, T0))
    assert {(e.characteristic_id, e.online) for e in only(reborn, SourceStatusChanged)} == {
        (1, True),
        (3, True),
    }


def test_a_restarted_host_relearns_aliases_from_the_next_birth() -> None:
    h = Harness()
    h.born()
    h.host = SparkplugHost(BINDINGS)  # the bridge restarts: all it knew is gone
    lost = h.send(h.node.ddata("Gauge7", [od(10.0, T0)], T0))
    assert [type(e) for e in lost] == [InputRejected, RebirthRequested]
    h.born()  # the node answers the NCMD
    events = h.send(h.node.ddata("Gauge7", [od(10.03, T0)], T0))
    assert events == [ReadingReceived(1, 10.03, T0, f"spBv1.0/{G}/DDATA/{E}/Gauge7")]


@pytest.mark.parametrize(
    ("topic", "data"),
    [
        (f"spBv1.0/{G}/NCMD/{E}", b"\xff"),
        ("spBv1.0/STATE/scada", b"{}"),
        ("spBv1.0/Other/NDATA/Edge", b"\xff"),
    ],
)
def test_commands_state_and_unconfigured_nodes_are_ignored(topic: str, data: bytes) -> None:
    assert Harness().host.handle(topic, data, T0) == []


def test_bytes_that_are_not_a_payload_are_rejected() -> None:
    (event,) = Harness().host.handle(f"spBv1.0/{G}/NDATA/{E}", b"\xff\xff", T0)
    assert isinstance(event, InputRejected)
    assert event.reason.startswith("not a Sparkplug B payload")


def test_one_subscription_per_configured_edge_node() -> None:
    host = SparkplugHost([*BINDINGS, SparkplugBinding(4, "P2", "L1", None, "X")])
    assert host.topic_filters == ["spBv1.0/P2/+/L1/#", f"spBv1.0/{G}/+/{E}/#"]


@given(st.binary(max_size=200), st.sampled_from(["NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA"]))
def test_whatever_bytes_arrive_the_host_answers_with_events_and_never_raises(
    data: bytes, kind: str
) -> None:
    h = Harness()
    h.born()
    device = "/Gauge7" if kind.startswith("D") else ""
    events = h.host.handle(f"spBv1.0/{G}/{kind}/{E}{device}", data, T0)
    assert all(isinstance(e, HostEvent.__args__) for e in events)  # type: ignore[attr-defined]
