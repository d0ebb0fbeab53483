"""Sparkplug B payloads: encode/decode round trips, value widths, topics, the generated code."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sparkplug import (
    DataType,
    InvalidSparkplugPayload,
    InvalidSparkplugTopic,
    MessageType,
    Metric,
    Payload,
    SparkplugTopic,
    ValueField,
    decode_payload,
    decode_value,
    encode_payload,
    encode_value,
)
from bridge.sparkplug._pb import sparkplug_b_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]

_RANGES = {
    DataType.Int8: (-(2**7), 2**7 - 1),
    DataType.Int16: (-(2**15), 2**15 - 1),
    DataType.Int32: (-(2**31), 2**31 - 1),
    DataType.Int64: (-(2**63), 2**63 - 1),
    DataType.UInt8: (0, 2**8 - 1),
    DataType.UInt16: (0, 2**16 - 1),
    DataType.UInt32: (0, 2**32 - 1),
    DataType.UInt64: (0, 2**64 - 1),
}


@st.composite
def _int_metric(draw: st.DrawFn) -> tuple[DataType, int]:
    datatype = draw(st.sampled_from(sorted(_RANGES)))
    low, high = _RANGES[datatype]
    return datatype, draw(st.integers(low, high))


@given(_int_metric())
def test_integers_survive_the_wire_in_every_width(case: tuple[DataType, int]) -> None:
    datatype, value = case
    sent = Payload(timestamp=1, seq=3, metrics=(Metric.of(datatype, value, name="m", alias=7),))
    (got,) = decode_payload(encode_payload(sent)).metrics
    assert got.datatype == datatype
    assert decode_value(datatype, got.value_field, got.value) == value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_doubles_survive_the_wire(value: float) -> None:
    sent = Payload(metrics=(Metric.of(DataType.Double, value, alias=1, with_datatype=False),))
    (got,) = decode_payload(encode_payload(sent)).metrics
    assert got.datatype is None
    assert got.value_field is ValueField.DOUBLE
    assert decode_value(DataType.Double, got.value_field, got.value) == value


def test_a_float_reads_as_the_decimal_the_gauge_meant() -> None:
    sent = Payload(metrics=(Metric.of(DataType.Float, 10.1, alias=1),))
    (got,) = decode_payload(encode_payload(sent)).metrics
    assert got.value != 10.1  # widened from 32 bits on the wire
    assert decode_value(DataType.Float, got.value_field, got.value) == 10.1


@pytest.mark.parametrize(
    ("datatype", "raw", "expected"),
    [
        (DataType.Int8, 0xFFFF_FFFF, -1),  # sign-extended to 32 bits (Eclipse Tahu Java)
        (DataType.Int8, 0xFF, -1),  # masked to 8 bits (other implementations)
        (DataType.Int16, 0xFFFF_8000, -32768),
        (DataType.Int32, 0x8000_0000, -(2**31)),
        (DataType.Int8, 0x7F, 127),
    ],
)
def test_negative_small_integers_read_in_both_conventions(
    datatype: DataType, raw: int, expected: int
) -> None:
    assert decode_value(datatype, ValueField.INT, raw) == expected


def test_int_value_for_small_negatives_is_32_bit_twos_complement() -> None:
    assert encode_value(DataType.Int8, -1) == (ValueField.INT, 0xFFFF_FFFF)
    assert encode_value(DataType.Int64, -2) == (ValueField.LONG, 2**64 - 2)


@pytest.mark.parametrize(
    ("datatype", "value"),
    [(DataType.Int8, 128), (DataType.UInt8, -1), (DataType.Boolean, 1), (DataType.Double, "x")],
)
def test_values_that_do_not_fit_the_datatype_are_refused(
    datatype: DataType, value: int | str
) -> None:
    with pytest.raises(ValueError, match=datatype.name):
        encode_value(datatype, value)


def test_a_field_that_does_not_suit_the_datatype_is_refused() -> None:
    with pytest.raises(ValueError, match="Double metric carries int_value"):
        decode_value(DataType.Double, ValueField.INT, 3)
    with pytest.raises(ValueError, match="carries no value"):
        decode_value(DataType.Double, ValueField.NONE, None)


def test_absent_fields_stay_absent_and_flags_round_trip() -> None:
    sent = Payload(
        timestamp=1_764_309_600_000,
        seq=255,
        uuid="u",
        metrics=(
            Metric(name="bdSeq", datatype=DataType.Int64, value_field=ValueField.LONG, value=4),
            Metric(alias=2, timestamp=5, is_historical=True, is_null=True),
            Metric.of(DataType.Boolean, True, name="Node Control/Rebirth"),
            Metric.of(DataType.String, "ok", name="s"),
        ),
    )
    assert decode_payload(encode_payload(sent)) == sent


def test_a_payload_without_anything_decodes_to_defaults() -> None:
    assert decode_payload(b"") == Payload()


def test_a_datatype_from_a_later_specification_is_kept_as_its_number() -> None:
    raw = pb.Payload(metrics=[pb.Payload.Metric(name="m", datatype=99, int_value=1)])
    (got,) = decode_payload(raw.SerializeToString()).metrics
    assert got.datatype == 99


def test_datasets_decode_without_a_value() -> None:
    raw = pb.Payload(metrics=[pb.Payload.Metric(name="d", datatype=16, dataset_value={})])
    (got,) = decode_payload(raw.SerializeToString()).metrics
    assert (got.value_field, got.value) == (ValueField.DATASET, None)


def test_garbage_is_not_a_payload() -> None:
    with pytest.raises(InvalidSparkplugPayload, match="not a Sparkplug B payload"):
        decode_payload(b"\xff\xff\xff")


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("spBv1.0/P1/NBIRTH/L3", SparkplugTopic("P1", MessageType.NBIRTH, "L3")),
        ("spBv1.0/P1/DDATA/L3/G7", SparkplugTopic("P1", MessageType.DDATA, "L3", "G7")),
        ("spBv1.0/STATE/scada", SparkplugTopic("STATE", MessageType.STATE, "scada")),
    ],
)
def test_topics_parse_and_print_back(topic: str, parsed: SparkplugTopic) -> None:
    assert SparkplugTopic.parse(topic) == parsed
    if parsed.message_type is not MessageType.STATE:
        assert str(parsed) == topic


@pytest.mark.parametrize(
    "topic",
    ["spBv1.0/P1/NDATA/L3/G7", "spBv1.0/P1/DDATA/L3", "spBv1.0/P1/XDATA/L3", "spAv1.0/P1/NDATA/L3"],
)
def test_malformed_topics_are_refused(topic: str) -> None:
    with pytest.raises(InvalidSparkplugTopic):
        SparkplugTopic.parse(topic)


def test_the_committed_generated_code_is_what_the_schema_gives(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "gen-proto"), str(tmp_path)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    for name in ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi"):
        committed = (ROOT / "bridge" / "sparkplug" / "_pb" / name).read_text()
        assert (tmp_path / name).read_text() == committed, f"run scripts/gen-proto ({name})"


def test_hand_written_wire_bytes_decode_as_the_specification_numbers_them() -> None:
    """Field numbers checked without protoc: Payload.timestamp=1, metrics=2, seq=3;
    Metric.alias=2, datatype=4, double_value=13 (a spec-style DATA metric by alias)."""
    metric = b"\x10\x0b" + b"\x69" + struct.pack("<d", 10.25)  # alias 11, double_value
    data = b"\x08\x90\x03" + b"\x12" + bytes([len(metric)]) + metric + b"\x18\x07"
    payload = decode_payload(data)
    assert (payload.timestamp, payload.seq) == (400, 7)
    (got,) = payload.metrics
    assert (got.name, got.alias, got.datatype) == (None, 11, None)
    assert (got.value_field, got.value) == (ValueField.DOUBLE, 10.25)
    assert encode_payload(payload) == data
