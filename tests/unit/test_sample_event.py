"""``new_sample``, the engine's fast way to make a ``SampleProcessed`` (docs/performance.md,
"engine n = 5"): the same event as the dataclass's own constructor, frozen alike."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import ChartPoint, SampleProcessed, Zone
from engine._types import _SampleDraft, new_sample

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)

numbers = st.floats(allow_nan=False)
maybe = st.none() | numbers
rule_ids = st.lists(st.integers(1, 8), max_size=8, unique=True).map(lambda r: tuple(sorted(r)))
points = st.none() | st.builds(ChartPoint, maybe, maybe, maybe, maybe, maybe, maybe)
arguments = st.tuples(
    st.integers(1, 2**31),
    st.integers(1, 2**40),
    st.integers(0, 10**9).map(lambda ms: T0 + timedelta(milliseconds=ms)),
    numbers,
    st.lists(numbers, min_size=1, max_size=25).map(tuple),
    maybe,
    st.none() | st.sampled_from(Zone),
    st.none() | st.booleans(),
    rule_ids,
    rule_ids,
    points,
)


def test_the_draft_has_exactly_the_events_fields() -> None:
    fields = {f.name for f in dataclasses.fields(SampleProcessed)}
    assert set(_SampleDraft.__slots__) == fields
    assert set(SampleProcessed.__slots__) == fields


@given(arguments)
def test_new_sample_is_the_dataclass_event(args: tuple[Any, ...]) -> None:
    fast, slow = new_sample(*args), SampleProcessed(*args)
    assert type(fast) is SampleProcessed
    assert fast == slow
    assert hash(fast) == hash(slow)
    assert repr(fast) == repr(slow)
    assert dataclasses.astuple(fast) == dataclasses.astuple(slow) == args
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    assert pickle.loads(pickle.dumps(fast)) == slow  # noqa: S301  our own bytes
    assert copy.deepcopy(fast) == slow
    assert dataclasses.replace(fast, seq=1) == dataclasses.replace(slow, seq=1)
    assert fast.statistic == slow.statistic
    assert fast.ucl == slow.ucl


def test_new_sample_takes_keywords_and_the_default_point() -> None:
    sample = new_sample(
        characteristic_id=3,
        seq=1,
        timestamp=T0,
        value=10.0,
        values=(10.0,),
        range=None,
        zone=None,
        in_control=None,
        failed_rules=(),
        range_failed_rules=(),
    )
    assert sample == SampleProcessed(3, 1, T0, 10.0, (10.0,), None, None, None, (), ())
    assert sample.point is None


def test_a_new_sample_is_frozen() -> None:
    sample = new_sample(3, 1, T0, 10.0, (10.0,), None, Zone.ZONE_C_UPPER, True, (), ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.value = 11.0  # type: ignore[misc]  # the point of the test
    with pytest.raises(dataclasses.FrozenInstanceError):
        del sample.seq
    assert sample.value == 10.0
    assert sample.seq == 1
