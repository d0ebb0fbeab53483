"""Edge-node message building and the SPC metric table (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.sparkplug import (
    BD_SEQ,
    REBIRTH,
    DataType,
    EdgeNodeMessages,
    Metric,
    SpcMetrics,
    decode_payload,
    encode_payload,
    is_rebirth_command,
    rebirth_command,
)
from bridge.sparkplug import Payload as SpPayload

AT = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def test_seq_starts_at_zero_in_nbirth_and_wraps_after_255() -> None:
    node = EdgeNodeMessages("G", "E", bd_seq=7)
    seqs = [decode_payload(node.nbirth([], AT).data).seq]
    seqs += [decode_payload(node.ndata([], AT).data).seq for _ in range(256)]
    assert seqs == [0, *range(1, 256), 0]


def test_nbirth_and_ndeath_carry_the_same_bdseq_and_ndeath_no_seq() -> None:
    node = EdgeNodeMessages("G", "E", bd_seq=7)
    birth = decode_payload(node.nbirth([], AT).data)
    death = node.ndeath(AT)
    assert death.topic == "spBv1.0/G/NDEATH/E"
    (bd,) = decode_payload(death.data).metrics
    assert (bd.name, bd.datatype, bd.value) == (BD_SEQ, DataType.Int64, 7)
    assert decode_payload(death.data).seq is None
    assert [m.name for m in birth.metrics] == [BD_SEQ, REBIRTH]
    assert birth.metrics[0].value == 7


def test_device_messages_share_the_nodes_sequence() -> None:
    node = EdgeNodeMessages("G", "E")
    node.nbirth([], AT)
    outs = [node.dbirth("D", [], AT), node.ddata("D", [], AT), node.ndata([], AT)]
    assert [o.topic for o in outs] == [
        "spBv1.0/G/DBIRTH/E/D",
        "spBv1.0/G/DDATA/E/D",
        "spBv1.0/G/NDATA/E",
    ]
    assert [decode_payload(o.data).seq for o in outs] == [1, 2, 3]


def test_rebirth_commands_are_recognised_by_name_or_alias_and_only_when_true() -> None:
    assert is_rebirth_command(rebirth_command("G", "E", AT).data)
    by_alias = SpPayload(metrics=(Metric.of(DataType.Boolean, True, alias=1),))
    assert is_rebirth_command(encode_payload(by_alias), rebirth_alias=1)
    assert not is_rebirth_command(encode_payload(by_alias), rebirth_alias=2)
    false = SpPayload(metrics=(Metric.of(DataType.Boolean, False, name=REBIRTH),))
    assert not is_rebirth_command(encode_payload(false))
    assert not is_rebirth_command(b"\xff\xff")


def test_spc_metrics_have_stable_unique_aliases_and_nulls_before_any_value() -> None:
    table = SpcMetrics([5, 2])
    birth = table.birth()
    assert len({m.alias for m in birth}) == len(birth) == 20
    assert table.alias(2, "value") == 100  # id order, not config order
    assert table.alias(5, "value") == 200
    assert all(m.is_null for m in birth)
    assert SpcMetrics([2, 5]).birth() == birth


def test_a_sample_updates_the_birth_values_and_sends_by_alias_only() -> None:
    table = SpcMetrics([1])
    data = table.sample(
        1,
        sample_id=9,
        value=1.5,
        range_=None,
        zone="zone_c_upper",
        in_control=True,
        failed_rules=(),
        at=AT,
    )
    assert {m.alias for m in data} == {
        table.alias(1, f)
        for f in ("value", "range", "sample_id", "in_control", "zone", "failed_rules")
    }
    assert all(m.name is None and m.datatype is None for m in data)
    births = {m.name: m for m in table.birth()}
    assert births["SPC/1/value"].value == 1.5
    assert births["SPC/1/range"].is_null
    assert births["SPC/1/failed_rules"].value == ""
    assert (
        table.sample(
            99,
            sample_id=1,
            value=1,
            range_=None,
            zone=None,
            in_control=None,
            failed_rules=(),
            at=AT,
        )
        == []
    )
