"""A sample's and a violation's JSON written straight from their fields (``sample_json``,
``violation_json``; docs/performance.md): byte for byte what ``dumps`` of their payload dict
gives, for any sample, context and time, and the same refusal of what is not JSON."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.domain import OverdueAlarm, SampleRecorded, ViolationCreated, ViolationEvent
from bridge.wire.payloads import (
    dumps,
    encode,
    encode_sample,
    encode_sample_json,
    encode_violation,
    iso_z,
    sample_json,
    sample_payload,
    violation_json,
    violation_payload,
)
from engine import (
    CharacteristicEngine,
    CharacteristicSpec,
    Chart,
    SampleProcessed,
    Severity,
    ViolationRaised,
    Zone,
    _serialize,
)
from engine.alarms import SpecViolationRaised

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)

offsets = st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-9))])
offsets |= st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
# hypothesis takes naive bounds and adds the zone; a day's margin keeps UTC in range
moments = st.datetimes(
    min_value=datetime(1, 1, 2),  # noqa: DTZ001  see above
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001  see above
    timezones=offsets,
)
moments |= st.integers(0, 10**12).map(lambda us: T0 + timedelta(microseconds=us))
ids = st.integers(1, 2**63 - 1)
floats = st.floats() | st.sampled_from([0.0, -0.0, 1e-5, 1e16, 5e-324, 10.0123, 1e300])
readings = st.lists(floats, max_size=25) | st.lists(st.integers(-(10**6), 10**6), max_size=5)
rules = st.lists(st.integers(1, 8), max_size=8, unique=True).map(tuple)
texts = st.text()  # any text: control characters, quotes, non-ASCII, lone surrogates
contexts = st.none() | st.dictionaries(texts, texts, max_size=4)
odd_contexts = st.dictionaries(texts, st.integers() | st.booleans() | st.none(), max_size=3)


@st.composite
def samples(draw: st.DrawFn) -> SampleProcessed:
    values = tuple(draw(readings))
    return SampleProcessed(
        draw(ids),
        draw(ids),
        draw(moments),
        draw(floats | st.integers(-(10**6), 10**6)),
        values,
        draw(st.none() | floats),
        draw(st.none() | st.sampled_from(Zone)),
        draw(st.none() | st.booleans()),
        draw(rules),
        draw(rules),
    )


def _both(make: Any, old: Any) -> tuple[bytes | None, bytes | None]:
    """Each way's bytes, or None where it refused (ValueError: NaN or infinity)."""
    results: list[bytes | None] = []
    for way in (make, old):
        try:
            results.append(way())
        except ValueError:
            results.append(None)
    return results[0], results[1]


@settings(max_examples=400)
@given(
    sample_id=ids,
    sample=samples(),
    chart=st.sampled_from([None, "imr", "xbar_r", "xbar_s"]),
    context=contexts | odd_contexts,
    version=st.none() | ids,
    out_of_spec=st.none() | st.booleans(),
    due_at=st.none() | moments,
)
@example(  # a subgroup mean, a reading of an int gauge, a lone surrogate, an offset
    sample_id=9,
    sample=SampleProcessed(
        3, 1, T0, 10.012345678901, (10, 10.02), 0.02, Zone.BEYOND_LCL, False, (2, 1), (1,)
    ),
    chart="xbar_r",
    context={"lot": '\ud800\x00"é', "shift": "B"},
    version=4,
    out_of_spec=True,
    due_at=datetime(2026, 12, 7, 7, 0, 0, 999, tzinfo=timezone(timedelta(hours=5, minutes=30))),
)
def test_a_samples_json_is_the_dicts_json_byte_for_byte(
    sample_id: int,
    sample: SampleProcessed,
    chart: str | None,
    context: dict[str, Any] | None,
    version: int | None,
    out_of_spec: bool | None,
    due_at: datetime | None,
) -> None:
    new, old = _both(
        lambda: sample_json(
            sample_id, sample, chart, context, version, out_of_spec=out_of_spec, due_at=due_at
        ),
        lambda: dumps(
            sample_payload(
                sample_id, sample, chart, context, version, out_of_spec=out_of_spec, due_at=due_at
            )
        ),
    )
    assert new == old
    if old is None:  # refused alike: a reading that is NaN or infinite, or a figure that
        # rounds to 10 digits past the largest double
        huge = [v for v in (sample.value, sample.range) if v is not None and abs(v) > 1.79e308]
        assert huge or any(not math.isfinite(v) for v in sample.values)
    else:
        assert json.loads(new or b"") == json.loads(old)


def _engine_samples() -> list[tuple[str, SampleProcessed]]:
    """Real results of every chart family, baseline and judged samples, rules failing."""
    found: list[tuple[str, SampleProcessed]] = []
    specs = [
        CharacteristicSpec(id=1, subgroup_size=1, baseline=5),
        CharacteristicSpec(id=2, subgroup_size=5, baseline=5),
        CharacteristicSpec(id=3, subgroup_size=12, baseline=5),
        CharacteristicSpec(id=4, chart="ewma", ucl=13.0, lcl=7.0),
        CharacteristicSpec(id=5, chart="cusum", ucl=13.0, lcl=7.0),
    ]
    for spec in specs:
        engine = CharacteristicEngine(spec)
        for k in range(120):
            value = 10.0 + (k % 7) * 0.37 + (3.1 if k > 90 else 0.0)
            events = engine.add_reading(value, T0 + timedelta(seconds=k, microseconds=k * 997))
            found += [(engine.chart, e) for e in events if isinstance(e, SampleProcessed)]
    for chart, spec in (("c", CharacteristicSpec(id=6, chart="c", baseline=5)),):
        engine = CharacteristicEngine(spec)
        for k in range(40):
            events = engine.add_count(k % 5 + (9 if k > 30 else 0), None, T0)
            found += [(chart, e) for e in events if isinstance(e, SampleProcessed)]
    return found


def test_every_chart_familys_samples_encode_as_before() -> None:
    found = _engine_samples()
    assert {chart for chart, _ in found} == {"imr", "xbar_r", "xbar_s", "ewma", "cusum", "c"}
    assert any(s.failed_rules for _, s in found)
    assert any(s.zone is None for _, s in found)
    assert any(s.zone for _, s in found)
    for k, (chart, sample) in enumerate(found, start=1):
        context = {"part": f"A-{k}", "lot": "L42"} if k % 2 else {}
        args = (k, sample, chart, context, k // 3 or None)
        due = T0 + timedelta(seconds=k) if k % 3 else None
        payload = sample_payload(*args, out_of_spec=bool(k % 2), due_at=due)
        encoded = sample_json(*args, out_of_spec=bool(k % 2), due_at=due)
        assert encoded == dumps(payload)
        recorded = SampleRecorded(k, sample, None, encoded=encoded)
        assert encode_sample(recorded) == encode("sample", payload)
        assert encode_sample_json(recorded) == encoded


def test_a_sample_without_its_json_is_encoded_from_its_payload_or_its_fields() -> None:
    _, sample = _engine_samples()[30]
    from_fields = SampleRecorded(7, sample)
    assert encode_sample(from_fields) == encode("sample", sample_payload(7, sample))
    assert encode_sample_json(from_fields) == dumps(sample_payload(7, sample))
    payload = {"sample_id": 7, "made": "by someone else"}
    from_payload = SampleRecorded(7, sample, None, payload)
    assert encode_sample(from_payload) == encode("sample", payload)


def test_a_reading_that_is_not_a_number_is_refused_as_dumps_refuses_it() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        sample = SampleProcessed(1, 1, T0, 10.0, (10.0, bad), 0.1, None, None, (), ())
        with pytest.raises(ValueError, match="not JSON compliant"):
            dumps(sample_payload(1, sample))
        with pytest.raises(ValueError, match="not JSON compliant"):
            sample_json(1, sample)
    # a plotted value or range that is not finite goes out as null, both ways
    odd = SampleProcessed(1, 1, T0, math.nan, (10.0,), math.inf, None, None, (), ())
    assert sample_json(1, odd) == dumps(sample_payload(1, odd))
    assert json.loads(sample_json(1, odd))["value"] is None


@st.composite
def violations(draw: st.DrawFn) -> ViolationEvent:
    kind = draw(st.sampled_from(["rule", "spec", "overdue"]))
    cid, severity, at = draw(ids), draw(st.sampled_from(Severity)), draw(moments)
    if kind == "rule":
        chart = draw(st.sampled_from(Chart))
        return ViolationRaised(
            cid, draw(ids), draw(st.integers(1, 8)), draw(texts), severity, chart, at
        )
    if kind == "spec":
        return SpecViolationRaised(cid, draw(ids), severity, at, 12.0, None, 12.5)
    return OverdueAlarm(cid, severity, at, at - timedelta(seconds=5))


@settings(max_examples=300)
@given(violation_id=ids, sample_id=st.none() | ids, violation=violations())
def test_a_violations_json_is_the_dicts_json_byte_for_byte(
    violation_id: int, sample_id: int | None, violation: ViolationEvent
) -> None:
    payload = violation_payload(violation_id, sample_id, violation)
    assert violation_json(violation_id, sample_id, violation) == dumps(payload)
    event = ViolationCreated(violation_id, sample_id, violation)
    assert encode_violation(event) == encode("violation", payload)


def _iso_z_before(ts: datetime) -> str:
    """iso_z as it was written before it was made faster (the reference)."""
    if ts.utcoffset():
        ts = ts.astimezone(UTC)
    return ts.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


@given(moments)
@example(datetime(2026, 1, 1, tzinfo=UTC))  # no microseconds at all
@example(datetime(2026, 1, 1, 0, 0, 0, 999, tzinfo=UTC))  # under a millisecond
@example(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
@example(datetime(1, 1, 1, 0, 0, 0, 1000, tzinfo=UTC))
def test_iso_z_spells_a_time_as_before(ts: datetime) -> None:
    assert iso_z(ts) == _iso_z_before(ts)
    assert len(iso_z(ts)) == 24


def test_iso_z_keeps_a_bounded_memory_of_minutes() -> None:
    # iso_z keeps the text of recent minutes (docs/performance.md); a long run of minutes
    # is spelt right throughout, and what is kept stays bounded
    start = datetime(2026, 11, 28, 23, 58, 59, 999000, tzinfo=UTC)
    for k in range(3 * _serialize._MINUTES_MAX):
        ts = start + timedelta(minutes=k, microseconds=k)
        assert iso_z(ts) == _iso_z_before(ts)
        assert len(_serialize._MINUTES) <= _serialize._MINUTES_MAX


def test_iso_z_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        iso_z(datetime(2026, 1, 1))  # noqa: DTZ001  the point of the test
