"""Readings of the attribute charts (docs/topics.md, "Readings of attribute charts")."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.readings import CountReading, InvalidReading, parse_count, parse_reading
from engine import CharacteristicSpec

NOW = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)
SPECS = {
    "p": CharacteristicSpec(id=1, chart="p"),
    "np": CharacteristicSpec(id=2, chart="np", inspected=50),
    "c": CharacteristicSpec(id=3, chart="c"),
    "u": CharacteristicSpec(id=4, chart="u"),
}


def parse(chart: str, payload: str, value_path: str | None = None) -> CountReading:
    return parse_count(payload.encode(), spec=SPECS[chart], value_path=value_path, received_at=NOW)


def refused(chart: str, payload: str) -> str:
    with pytest.raises(InvalidReading) as info:
        parse(chart, payload)
    return info.value.reason


def test_the_payloads_of_the_contract() -> None:
    p = parse("p", '{"defectives": 3, "inspected": 50, "ts": 0, "batch": "B1"}')
    assert (p.count, p.size, p.source_ts, p.batch) == (3, 50.0, True, "B1")
    assert p.ts == datetime(1970, 1, 1, tzinfo=UTC)
    assert (parse("np", '{"defectives": 4, "inspected": 50}').size) == 50.0
    assert (parse("np", '{"defectives": 4}').count, parse("np", '{"defectives": 4}').size) == (
        4,
        50.0,
    )
    c = parse("c", '{"defects": 4}')
    assert (c.count, c.size, c.ts, c.source_ts) == (4, None, NOW, False)
    assert parse("c", " 7 ").count == 7
    u = parse("u", '{"defects": 7, "units": 9.5}')
    assert (u.count, u.size) == (7, 9.5)


def test_a_json_count_of_3_point_0_is_3() -> None:
    reading = parse("p", '{"defectives": 3.0, "inspected": 50.0}')
    assert (reading.count, reading.size) == (3, 50.0)
    assert type(reading.count) is int
    assert parse("c", "3.0").count == 3


@pytest.mark.parametrize(
    ("chart", "payload", "reason"),
    [
        ("p", '{"defectives": -1, "inspected": 50}', "defectives -1: must not be negative"),
        ("p", '{"defectives": 2.5, "inspected": 50}', "defectives 2.5: must be a whole number"),
        ("p", '{"defectives": 51, "inspected": 50}', "defectives 51: more than the 50 inspected"),
        ("p", '{"defectives": 1, "inspected": 0}', "inspected 0: must be positive"),
        ("p", '{"defectives": "1", "inspected": 5}', "defectives the string '1': must be a number"),
        ("p", '{"defectives": 1}', 'a p chart takes {"defectives": 3, "inspected": 50}: no '),
        ("p", '{"value": 0.1}', "not measured values"),
        ("p", "0.1", "not a measured value"),
        ("p", '{"defects": 1, "inspected": 5}', "no 'defectives' (defects is for a c or u chart)"),
        ("np", '{"defectives": 3, "inspected": 40}', "this np chart inspects 50 a sample"),
        ("c", "-2", "defects -2: must not be negative"),
        ("c", "2.5", "defects 2.5: must be a whole number"),
        ("c", '{"defects": 2, "units": 3}', "'units' does not belong to a c chart"),
        ("c", "[3]", "not a measured value"),
        ("u", '{"defects": 2, "units": 0}', "units 0: must be positive"),
        ("u", '{"defects": 2, "units": -1.5}', "units -1.5: must be positive"),
        ("u", '{"defects": 2}', "no 'units'"),
        ("u", '{"defects": null, "units": 2}', "defects null: must be a number"),
        ("u", "{", "not valid JSON"),
        ("c", "", "empty payload"),
    ],
)
def test_bad_counts_are_refused_with_the_reason(chart: str, payload: str, reason: str) -> None:
    assert reason in refused(chart, payload)


def test_a_count_on_a_chart_of_measured_values_is_refused() -> None:
    with pytest.raises(InvalidReading) as info:
        parse_reading(b'{"defectives": 3, "inspected": 50}', subgroup_size=1, received_at=NOW)
    assert "a count (defectives, defects) sent to a chart of measured values" in info.value.reason


def test_value_path_finds_the_fields_in_a_vendors_json() -> None:
    reading = parse("p", '{"ts": 0, "data": {"caps": {"defectives": 2, "inspected": 48}}}',
                    "data.caps")  # fmt: skip
    assert (reading.count, reading.size, reading.source_ts) == (2, 48.0, True)
    assert parse("c", '{"board": {"defects": 5}}', "board.defects").count == 5


def test_an_integer_too_large_for_a_float_is_refused() -> None:
    big = "9" * 400
    assert "too large" in refused("u", f'{{"defects": 1, "units": {big}}}')
    assert "too large" in refused("p", f'{{"defectives": 1, "inspected": {big}}}')


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "defectives": _json,
        "defects": _json,
        "inspected": _json,
        "units": _json,
        "ts": _json,
        "batch": _json,
        "value": _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(chart=st.sampled_from(sorted(SPECS)), body=_fields | _json, raw=st.binary(max_size=40))
def test_nothing_but_invalid_reading_escapes(chart: str, body: object, raw: bytes) -> None:
    for payload in (json.dumps(body).encode(), raw):
        try:
            reading = parse_count(payload, spec=SPECS[chart], received_at=NOW)
        except InvalidReading:
            continue
        assert type(reading.count) is int
        assert reading.count >= 0
        assert (reading.size is None) == (chart == "c")
