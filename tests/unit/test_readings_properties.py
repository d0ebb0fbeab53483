"""Properties of the reading parser: nothing but InvalidReading escapes, valid forms round-trip."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.readings import MIN_EPOCH_MS, InvalidReading, Reading, parse_reading

ARRIVAL = datetime(2026, 11, 28, 6, tzinfo=UTC)
finite = st.floats(allow_nan=False, allow_infinity=False)
sizes = st.integers(min_value=1, max_value=25)
epoch_ms = st.integers(min_value=MIN_EPOCH_MS, max_value=253_402_300_799_999)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)
keys = st.sampled_from(["value", "values", "ts", "batch", "operator", "data", "od", "x"])
reading_like = st.dictionaries(keys, json_values, max_size=5)


def attempt(payload: bytes, n: int, path: str | None = None) -> Reading | None:
    refused: InvalidReading | None = None
    try:
        reading = parse_reading(payload, subgroup_size=n, value_path=path, received_at=ARRIVAL)
    except InvalidReading as exc:
        refused = exc
    if refused is not None:
        assert refused.reason
        assert "\n" not in refused.reason
        return None
    assert len(reading.values) in (1, n)
    assert all(type(v) is float and math.isfinite(v) for v in reading.values)
    assert reading.ts.utcoffset() == timedelta(0)
    return reading


@given(st.binary(max_size=200), sizes)
def test_any_bytes_give_a_reading_or_invalid_reading(payload: bytes, n: int) -> None:
    attempt(payload, n)
    attempt(payload, n, "data.od")


@given(json_values | reading_like, sizes, st.sampled_from([None, "data.od", "values.0", "x"]))
def test_any_json_gives_a_reading_or_invalid_reading(doc: object, n: int, path: str | None) -> None:
    attempt(json.dumps(doc).encode(), n, path)


@given(st.text(max_size=40), sizes)
def test_any_text_gives_a_reading_or_invalid_reading(text: str, n: int) -> None:
    attempt(text.encode("utf-8", "surrogatepass"), n)


@given(finite, st.sampled_from(["", " ", "\n", "\t "]))
def test_bare_numbers_round_trip(x: float, pad: str) -> None:
    assert attempt(f"{pad}{x!r}{pad}".encode(), 5) == Reading((x,), ARRIVAL, False)


storable = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10
)
"""Text a database stores: no lone surrogates, no NUL (the rest is refused, below)."""


@given(
    finite,
    st.none() | epoch_ms,
    st.none() | storable,
    st.none() | storable,
)
def test_value_objects_round_trip(
    x: float, ts: int | None, batch: str | None, operator: str | None
) -> None:
    doc: dict[str, object] = {"value": x, "batch": batch, "operator": operator}
    if ts is not None:
        doc["ts"] = ts
    reading = attempt(json.dumps(doc).encode(), 1)
    expected_ts = (
        ARRIVAL if ts is None else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ts)
    )
    joined = {k: v for k, v in (("batch", batch), ("operator", operator)) if v is not None}
    expected = Reading((x,), expected_ts, ts is not None, batch, operator, joined or None)
    assert reading == expected


@given(
    finite,
    st.sampled_from(["batch", "operator"]),
    st.text(max_size=5),
    st.sampled_from(["\x00", "\ud800", "\udfff"]),
    st.text(max_size=5),
)
def test_text_with_nul_or_a_lone_surrogate_is_refused(
    x: float, key: str, head: str, bad: str, tail: str
) -> None:
    doc = {"value": x, key: head + bad + tail}
    with pytest.raises(InvalidReading, match=key):
        parse_reading(json.dumps(doc).encode(), subgroup_size=1, received_at=ARRIVAL)


@given(sizes.flatmap(lambda n: st.tuples(st.just(n), st.lists(finite, min_size=n, max_size=n))))
def test_subgroups_round_trip(case: tuple[int, list[float]]) -> None:
    n, values = case
    reading = attempt(json.dumps({"values": values}).encode(), n)
    assert reading is not None
    assert reading.values == tuple(values)


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 2),  # noqa: DTZ001  # hypothesis takes naive bounds
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001  # and adds the zones below
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
        ),
    )
)
def test_iso_timestamps_round_trip(when: datetime) -> None:
    reading = attempt(json.dumps({"value": 1, "ts": when.isoformat()}).encode(), 1)
    assert reading is not None
    assert reading.ts == when
    assert reading.source_ts


@settings(max_examples=50)
@given(
    st.lists(st.text("abcdefgh_", min_size=1, max_size=5), min_size=1, max_size=4),
    finite,
)
def test_value_paths_round_trip(steps: list[str], x: float) -> None:
    doc: object = x
    for step in reversed(steps):
        doc = {step: doc, "noise": [1, 2]}
    reading = attempt(json.dumps(doc).encode(), 1, ".".join(steps))
    assert reading is not None
    assert reading.values == (x,)


@given(st.integers(min_value=2, max_value=25), st.integers(min_value=0, max_value=30))
def test_a_wrong_count_is_always_refused_with_both_numbers(n: int, got: int) -> None:
    payload = json.dumps({"values": [1.0] * got}).encode()
    if got == n:
        assert attempt(payload, n) is not None
        return
    with pytest.raises(InvalidReading) as info:
        parse_reading(payload, subgroup_size=n, received_at=ARRIVAL)
    assert info.value.reason == f"wrong count of values: got {got}, subgroup size is {n}"
