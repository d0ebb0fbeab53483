"""What the Sparkplug host side knows across a restart of the bridge (pure, no I/O): the
bdSeq of each node's last NBIRTH, and which nodes to ask for a birth at start-up."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.sparkplug import (
    EdgeNodeMessages,
    SourceStatusChanged,
    SparkplugBinding,
    SparkplugHost,
    SparkplugInbound,
)
from bridge.sparkplug._state import state_payload

G, E, OTHER = "Plant1", "Line3", "Line4"
T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
BINDINGS = [SparkplugBinding(1, G, E, None, "Temp"), SparkplugBinding(2, G, OTHER, None, "OD")]


def restarted(bd_seqs: dict[tuple[str, str], int]) -> SparkplugHost:
    host = SparkplugHost(BINDINGS)
    host.restore_bd_seqs(bd_seqs)
    return host


def ndeath(bd_seq: int, edge: str = E) -> tuple[str, bytes]:
    out = EdgeNodeMessages(G, edge, bd_seq=bd_seq).ndeath(T0)
    return out.topic, out.data


def test_after_a_restart_an_ndeath_with_the_stored_bdseq_is_the_nodes_death() -> None:
    host = restarted({(G, E): 7})
    events = host.handle(*ndeath(7), T0)
    assert [
        (e.characteristic_id, e.online) for e in events if isinstance(e, SourceStatusChanged)
    ] == [(1, False)]


def test_after_a_restart_an_ndeath_with_another_bdseq_is_a_stale_will() -> None:
    host = restarted({(G, E): 7})
    assert host.handle(*ndeath(6), T0) == []
    assert host.is_online(1) is None  # nothing was said about it


def test_without_a_stored_bdseq_an_ndeath_is_still_news() -> None:
    host = restarted({})
    events = host.handle(*ndeath(6), T0)
    assert [e.online for e in events if isinstance(e, SourceStatusChanged)] == [False]


def test_a_stored_bdseq_of_a_node_no_longer_configured_is_ignored() -> None:
    host = restarted({(G, "Gone"): 1})
    assert host.unborn() == [(G, E), (G, OTHER)]
    assert host.bd_seq(G, "Gone") is None


def test_at_start_up_every_unborn_node_is_asked_once_and_births_are_reported_for_storage() -> None:
    sent: list[str] = []
    stored: list[tuple[str, str, int]] = []
    inbound = SparkplugInbound(BINDINGS, clock=lambda: T0)
    inbound.attach(lambda topic, data: sent.append(topic))
    inbound.on_birth = lambda g, e, n: stored.append((g, e, n))
    birth = EdgeNodeMessages(G, E, bd_seq=4).nbirth([], T0)
    inbound.decode(birth.topic, birth.data, T0)
    inbound.decode(birth.topic, birth.data, T0)  # a rebirth: the same bdSeq, stored once
    assert stored == [(G, E, 4)]
    assert inbound.request_rebirths() == 1  # Line3 is born; only Line4 is asked
    assert sent == [f"spBv1.0/{G}/NCMD/{OTHER}"]
    # its first data before the birth is reported, but asks no second time within 5 s
    data = EdgeNodeMessages(G, OTHER, bd_seq=0).ndata([], T0)
    inbound.decode(data.topic, data.data, T0)
    assert sent == [f"spBv1.0/{G}/NCMD/{OTHER}"]


def test_the_state_payload_is_the_specifications_json() -> None:
    assert state_payload(True, T0) == b'{"online": true, "timestamp": 1795845600000}'


def test_with_rebirth_on_gap_false_nothing_is_sent_at_start_up() -> None:
    sent: list[str] = []
    inbound = SparkplugInbound(BINDINGS, rebirth_on_gap=False, clock=lambda: T0)
    inbound.attach(lambda topic, data: sent.append(topic))
    assert inbound.request_rebirths() == 0
    assert sent == []
