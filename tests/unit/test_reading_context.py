"""Reading context (docs/topics.md, "Context"): parsed with each reading, merged per sample
(the later reading winning a key), refused with a reason, kept across a restart while its
subgroup is open. The pipeline runs on the fakes of test_pipeline_with_fakes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge._context import STATE_KEY, SubgroupContexts
from bridge.app import bootstrap
from bridge.readings import InvalidReading, parse_count, parse_reading
from bridge.testing import FakeLink, ManualClock
from engine import CharacteristicSpec
from engine.alarms import InvalidContext
from tests.unit.test_pipeline_with_fakes import P, built, drain, settings

T = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def parse(payload: dict[str, Any], **kw: Any) -> dict[str, str] | None:
    return parse_reading(json.dumps(payload).encode(), subgroup_size=1, received_at=T, **kw).context


# --- parsing ------------------------------------------------------------------------------


def test_a_reading_carries_its_context_with_batch_and_operator_joined() -> None:
    found = parse({"value": 1.0, "batch": "B7", "operator": "ana", "context": {"part": "A-113"}})
    assert found == {"batch": "B7", "operator": "ana", "part": "A-113"}


def test_the_context_key_wins_over_the_older_top_level_keys() -> None:
    assert parse({"value": 1.0, "operator": "ana", "context": {"operator": "kim"}}) == {
        "operator": "kim"
    }


def test_a_reading_without_context_has_none() -> None:
    assert parse({"value": 1.0}) is None
    assert parse({"value": 1.0, "context": {}}) is None


@pytest.mark.parametrize(
    ("context", "reason"),
    [
        ("A-113", "context must be an object of strings, got 'A-113'"),
        (["part"], "context must be an object of strings, got ['part']"),
        ({"lot": 42}, "context['lot'] must be a string, got 42"),
        ({"lot": None}, "context['lot'] must be a string, got None"),
        ({"": "x"}, "context keys must be non-empty strings, got ''"),
        ({f"k{i}": "v" for i in range(65)}, "context has 65 keys, limit is 64"),
        ({"lot": "x" * 201}, "context['lot'] is too long: 201 characters, limit is 200"),
        ({"lot": "a\x00b"}, "context['lot'] contains a NUL character"),
    ],
)
def test_bad_context_is_refused_with_a_reason(context: object, reason: str) -> None:
    with pytest.raises(InvalidReading) as info:
        parse({"value": 1.0, "context": context})
    assert info.value.reason == reason


def test_sixty_four_keys_of_two_hundred_characters_are_accepted() -> None:
    context = {f"k{i:02d}": "v" * 200 for i in range(64)}
    assert parse({"value": 1.0, "context": context}) == context


def test_under_a_value_path_a_context_that_is_no_object_is_a_vendors_key() -> None:
    vendor = {"data": {"od": 2.5}, "context": "station-7", "operator": 3}
    assert parse(vendor, value_path="data.od") is None
    found = parse({"data": {"od": 2.5}, "context": {"lot": "L1"}}, value_path="data.od")
    assert found == {"lot": "L1"}
    with pytest.raises(InvalidReading, match="must be a string"):
        parse({"data": {"od": 2.5}, "context": {"lot": 1}}, value_path="data.od")


def test_a_count_reading_carries_context_too() -> None:
    spec = CharacteristicSpec(1, chart="p")
    payload = {"defectives": 1, "inspected": 50, "context": {"lot": "L9"}, "batch": "B"}
    found = parse_count(json.dumps(payload).encode(), spec=spec, received_at=T)
    assert found.context == {"lot": "L9", "batch": "B"}


# --- merging per subgroup (pure) ------------------------------------------------------------


def test_contexts_merge_over_an_open_subgroup_the_later_winning() -> None:
    contexts = SubgroupContexts()
    assert contexts.take(1, {"part": "A", "lot": "L1"}, 0, still_open=True) == []
    assert contexts.take(1, {"lot": "L2"}, 0, still_open=True) == []
    assert contexts.take(1, {"shift": "B"}, 1, still_open=False) == [
        {"part": "A", "lot": "L2", "shift": "B"}
    ]
    assert contexts.open(1) == {}
    assert contexts.take(1, None, 1, still_open=False) == [{}]  # none: an empty object


def test_a_message_that_completes_one_subgroup_and_opens_the_next() -> None:
    contexts = SubgroupContexts()
    contexts.take(1, {"lot": "L1"}, 0, still_open=True)
    assert contexts.take(1, {"lot": "L2", "part": "P"}, 2, still_open=True) == [
        {"lot": "L2", "part": "P"},
        {"lot": "L2", "part": "P"},
    ]
    assert contexts.open(1) == {"lot": "L2", "part": "P"}


def test_a_reading_that_would_take_its_sample_past_64_keys_is_refused_first() -> None:
    contexts = SubgroupContexts()
    contexts.take(1, {f"a{i}": "x" for i in range(40)}, 0, still_open=True)
    with pytest.raises(InvalidContext, match=r"takes the sample's context to 65 keys, limit is 64"):
        contexts.check(1, {f"b{i}": "x" for i in range(25)})
    contexts.check(2, {f"b{i}": "x" for i in range(25)})  # another characteristic: fine


def test_the_open_context_rides_with_the_state_and_comes_back() -> None:
    contexts = SubgroupContexts()
    contexts.take(3, {"lot": "L1"}, 0, still_open=True)
    state = contexts.state(3, {"version": 2})
    assert state == {"version": 2, STATE_KEY: {"lot": "L1"}}
    assert contexts.state(4, {"version": 2}) == {"version": 2}  # nothing open: no key
    again = SubgroupContexts()
    again.restore({3: json.loads(json.dumps(state)), 4: {"version": 2}})
    assert again.open(3) == {"lot": "L1"}
    assert again.open(4) == {}


# --- through the pipeline (fakes) -----------------------------------------------------------


THREE = [{"id": 1, "name": "One", "subgroup_size": 3}, {"id": 2, "name": "Two"}]


async def test_a_sample_carries_its_readings_contexts_merged_and_stores_them() -> None:
    app, store, link = await built(THREE)
    for payload in (
        '{"value": 1, "context": {"part": "A", "lot": "L1"}}',
        '{"value": 2, "batch": "B9"}',
        '{"value": 3, "context": {"lot": "L2"}}',
        "4",
    ):
        link.deliver("char/1/reading", payload)
    await drain(app)
    merged = {"part": "A", "lot": "L2", "batch": "B9"}
    assert [m["payload"]["context"] for m in link.messages("char/1/sample")] == [merged]
    assert [s["context"] for s in store.samples] == [merged]
    assert [r["context"] for r in store.readings] == [
        {"part": "A", "lot": "L1"},
        {"batch": "B9"},
        {"lot": "L2"},
        None,
    ]
    assert app.pipeline.contexts.open(1) == {}  # the fourth reading had none
    assert link.errors() == []


async def test_a_sample_without_context_has_an_empty_one_and_stores_null() -> None:
    app, store, link = await built()
    link.deliver("char/1/reading", "1.5")
    await drain(app)
    assert link.messages("char/1/sample")[0]["payload"]["context"] == {}
    assert store.samples[0]["context"] is None


async def test_a_reading_with_bad_context_is_refused_on_errors_and_nothing_is_lost() -> None:
    app, store, link = await built()
    bad = '{"value": 2, "context": {"lot": 7}}'
    items = [link.deliver("char/1/reading", p) for p in ("1", bad, "3")]
    await drain(app)
    assert [r["value"] for r in store.readings] == [1.0, 3.0]
    [error] = link.messages("bridge/errors")
    assert error["topic"] == f"{P}/char/1/reading"
    assert error["reason"] == "context['lot'] must be a string, got 7"
    assert sorted(link.acked) == sorted(m.mid for m in items)
    assert app.pipeline.metrics.readings_rejected == 1


async def test_the_open_subgroups_context_is_stored_with_the_engine_state() -> None:
    app, store, link = await built(THREE)
    link.deliver("char/1/reading", '{"value": 1, "context": {"lot": "L1"}}')
    await drain(app)
    state = json.loads(json.dumps(store.states[1]))  # as the database hands it back
    assert state[STATE_KEY] == {"lot": "L1"}
    assert len(state["partial"]) == 1
    # a restart on the same store: engine and contexts from that state; the subgroup's
    # context carries on
    store.states[1] = state
    link2 = FakeLink(prefix=P)
    restarted = await bootstrap(settings(THREE), store=store, link=link2, clock=ManualClock())
    link2.deliver("char/1/reading", "2")
    link2.deliver("char/1/reading", '{"value": 3, "context": {"p": "X"}}')
    await drain(restarted)
    assert [s["context"] for s in store.samples] == [{"lot": "L1", "p": "X"}]
