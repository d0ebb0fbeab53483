"""Reading payloads (docs/topics.md): what is accepted, and why the rest is refused."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from types import FrameType

import pytest

from bridge.readings import InvalidReading, Reading, compile_value_path, parse_reading

ARRIVAL = datetime(2026, 11, 28, 6, 0, 0, tzinfo=UTC)
TS_MS = 1_764_309_600_123  # 2025-11-28T06:00:00.123Z


def parse(payload: bytes, n: int = 1, path: str | None = None, max_bytes: int = 65536) -> Reading:
    return parse_reading(
        payload, subgroup_size=n, value_path=path, max_bytes=max_bytes, received_at=ARRIVAL
    )


def reason(payload: bytes, n: int = 1, path: str | None = None, max_bytes: int = 65536) -> str:
    with pytest.raises(InvalidReading) as info:
        parse(payload, n, path, max_bytes)
    return info.value.reason


# --- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "value"),
    [
        (b"10.5", 10.5),
        (b"  10.5\r\n", 10.5),
        (b"-3", -3.0),
        (b"1e-3", 0.001),
        (b"0", 0.0),
    ],
)
def test_a_bare_number_is_one_reading_at_arrival(payload: bytes, value: float) -> None:
    assert parse(payload, n=5) == Reading((value,), ARRIVAL, source_ts=False)


def test_a_value_object_with_epoch_ms_batch_and_operator() -> None:
    payload = b'{"value": 10.5, "ts": 1764309600123, "batch": "B-17", "operator": "ana"}'
    assert parse(payload) == Reading(
        (10.5,),
        datetime(2025, 11, 28, 6, 0, 0, 123000, tzinfo=UTC),
        source_ts=True,
        batch="B-17",
        operator="ana",
        context={"batch": "B-17", "operator": "ana"},  # they join the context
    )


def test_a_value_object_without_ts_takes_the_arrival_time() -> None:
    assert parse(b'{"value": 7}') == Reading((7.0,), ARRIVAL, source_ts=False)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ('"2026-11-28T07:00:00Z"', datetime(2026, 11, 28, 7, tzinfo=UTC)),
        ('"2026-11-28T08:00:00+01:00"', datetime(2026, 11, 28, 7, tzinfo=UTC)),
        ('"2026-11-28T07:00:00.250-00:30"', datetime(2026, 11, 28, 7, 30, 0, 250000, tzinfo=UTC)),
    ],
)
def test_iso_timestamps_with_a_zone_are_converted_to_utc(ts: str, expected: datetime) -> None:
    reading = parse(b'{"value": 1, "ts": %s}' % ts.encode())
    assert reading.ts == expected
    assert reading.ts.utcoffset() == timedelta(0)
    assert reading.source_ts


def test_a_whole_subgroup_at_once() -> None:
    payload = b'{"values": [10.1, 10.3, 9.9, 10.0, 10.2], "ts": 1764309600123}'
    reading = parse(payload, n=5)
    assert reading.values == (10.1, 10.3, 9.9, 10.0, 10.2)
    assert reading.ts == datetime(2025, 11, 28, 6, 0, 0, 123000, tzinfo=UTC)


def test_value_path_picks_the_number_out_of_vendor_json() -> None:
    payload = b'{"device": "g7", "data": {"od": 10.02, "unit": "mm"}, "ts": 1764309600123}'
    reading = parse(payload, path="data.od")
    assert reading.values == (10.02,)
    assert reading.source_ts


def test_value_path_with_list_indexes() -> None:
    payload = b'{"channels": [{"v": 1.5}, {"v": 2.5}]}'
    assert parse(payload, path="channels.1.v").values == (2.5,)


def test_value_path_to_a_list_is_a_subgroup() -> None:
    assert parse(b'{"m": {"od": [1, 2, 3]}}', n=3, path="m.od").values == (1.0, 2.0, 3.0)


def test_value_path_still_accepts_a_bare_number() -> None:
    assert parse(b"4.25", path="data.od").values == (4.25,)


def test_a_small_epoch_ms_is_taken_as_it_is() -> None:
    # epoch seconds sent by mistake: kept (a 1970 timestamp), not a lost measurement
    reading = parse(b'{"value": 1, "ts": 1764309600}')
    assert reading.ts == datetime(1970, 1, 21, 10, 5, 9, 600000, tzinfo=UTC)
    assert reading.source_ts


def test_extra_keys_beside_value_are_ignored() -> None:
    assert parse(b'{"value": 1.5, "unit": "mm", "quality": "good"}').values == (1.5,)


# --- refused --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", "empty payload"),
        (b"  \n", "empty payload (only whitespace)"),
        (b"\xff\xfe", "not UTF-8 (bad byte at offset 0)"),
        (b"abc", "not a number: 'abc'"),
        (b"1_000", "not a number: '1_000'"),
        (b"0x10", "not a number: '0x10'"),
        (b"10,5", "not a number: '10,5' (use a decimal point, not a comma)"),
        (b"1,000.5", "not a number: '1,000.5'"),
        (b"nan", "not a finite number: 'nan'"),
        (b"Infinity", "not a finite number: 'Infinity'"),
        (b"1e999", "not a finite number: '1e999'"),
        (b"true", "not a number: 'true'"),
        (b'"10.5"', 'unknown shape: \'"10.5"\' (send a number, {"value": x} or {"values": [...]})'),
        (b"[1, 2]", 'unknown shape: \'[1, 2]\' (send a number, {"value": x} or {"values": [...]})'),
        (b'{"value": NaN}', "value is not a finite number: nan"),
        (b'{"value": -Infinity}', "value is not a finite number: -inf"),
        (b'{"value": 1e999}', "value is not a finite number: inf"),
        (b'{"value": "NaN"}', "value is not a number: got the string 'NaN'"),
        (b'{"value": "10.5"}', "value is not a number: got the string '10.5'"),
        (b'{"value": true}', "value is not a number: got true"),
        (b'{"value": null}', "value is not a number: got null"),
        (b'{"value": [1]}', "value is not a number: got a list"),
        (b'{"value": 1e400}', "value is not a finite number: inf"),
        (b'{"value": 1, "values": [1]}', 'both "value" and "values" given: send one of them'),
        (b'{"vaule": 1}', 'unknown shape: no "value" or "values" (keys: vaule)'),
        (b"{}", 'unknown shape: no "value" or "values" (keys: none)'),
        (b'{"value": 1', "not valid JSON: Expecting ',' delimiter at column 12"),
        (b'{"value": 1, "ts": "2026-11-28T07:00:00"}', "ts has no time zone:"),
        (b'{"value": 1, "ts": "yesterday"}', "ts is not ISO 8601: 'yesterday'"),
        (b'{"value": 1, "ts": -5}', "ts -5 is before 1970 (ts is epoch milliseconds)"),
        (b'{"value": 1, "ts": 1e300}', "ts 1e+300 is too large for epoch milliseconds"),
        (b'{"value": 1, "ts": true}', "ts must be epoch milliseconds or an ISO 8601 string"),
        (b'{"value": 1, "batch": 7}', "batch must be a string, got 7"),
        (b'{"value": 1, "operator": {}}', "operator must be a string, got an object"),
    ],
)
def test_refused_with_a_specific_reason(payload: bytes, expected: str) -> None:
    assert reason(payload).startswith(expected)


def test_wrong_count_of_values() -> None:
    assert (
        reason(b'{"values": [1, 2, 3]}', n=5) == "wrong count of values: got 3, subgroup size is 5"
    )


def test_a_value_inside_values_that_is_not_a_number() -> None:
    assert reason(b'{"values": [1, true, 3]}', n=3) == "values[1] is not a number: got true"


def test_values_must_be_a_list() -> None:
    assert reason(b'{"values": 5}', n=1) == "values must be a list of numbers, got 5"


def test_over_long_payloads_are_refused_before_parsing() -> None:
    assert reason(b"1" * 17, max_bytes=16) == "payload too long: 17 bytes, limit is 16"


def test_deep_nesting_is_refused_not_crashing() -> None:
    payload = b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert reason(payload, max_bytes=1_000_000) == "JSON nested too deeply"


def test_an_integer_with_too_many_digits() -> None:
    payload = b'{"value": ' + b"9" * 5000 + b"}"
    assert reason(payload) == "not valid JSON: a number with too many digits"


@pytest.mark.parametrize(
    ("payload", "path", "expected"),
    [
        (b'{"data": {}}', "data.od", "value_path data.od: no key 'od' at data"),
        (b'{"x": 1}', "data.od", "value_path data.od: no key 'data' at the top level"),
        (b'{"data": [1]}', "data.3", "value_path data.3: index 3 beyond a list of 1"),
        (b'{"data": 5}', "data.od", "value_path data.od: cannot step into 5"),
        (b'{"data": {"od": "x"}}', "data.od", "value_path data.od is not a number: got the"),
        (
            b'{"data": {"od": [1, 2]}}',
            "data.od",
            "wrong count of values: got 2, subgroup size is 1",
        ),
    ],
)
def test_value_path_faults(payload: bytes, path: str, expected: str) -> None:
    assert reason(payload, path=path).startswith(expected)


@pytest.mark.parametrize("path", ["", "data.", ".od", "data..od", "data. od"])
def test_malformed_value_paths(path: str) -> None:
    with pytest.raises(ValueError, match="not a value path"):
        compile_value_path(path)


def test_parsing_stays_on_the_fast_path() -> None:
    """A guard against slow parsing creeping in (pydantic per message would be ~10x), counted
    rather than timed (timings belong in `openspc bench`): one JSON reading costs a handful of
    Python calls (18 today: the parser, its field and context helpers, json.loads and the
    dataclass), and
    none of them is pydantic's."""
    payload = b'{"value": 10.5, "ts": 1764309600123, "batch": "B-17"}'
    parse(payload)  # warm: first-use imports and caches are not the steady state
    calls: list[str] = []

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        if event == "call":
            calls.append(f"{frame.f_globals.get('__name__')}.{frame.f_code.co_qualname}")

    sys.setprofile(profile)
    try:
        parse(payload)
    finally:
        sys.setprofile(None)
    assert not [c for c in calls if c.startswith("pydantic")], calls
    assert len(calls) <= 25, calls
