"""Acknowledgements, context, the Pareto of causes and limit versions (docs/spc.md, "Alarm
workflow: the pure core")."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import CharacteristicSpec, Method, fixed_limits
from engine.alarms import (
    DEFAULT_ACTION_CODES,
    DEFAULT_CAUSE_CODES,
    Acknowledgement,
    AckPolicy,
    AllOpen,
    CauseCount,
    InvalidAcknowledgement,
    InvalidContext,
    KnownViolation,
    ViolationIds,
    cause_pareto,
    limits_version_at_start,
    merge_context,
    next_limits_version,
    parse_acknowledgement,
    reading_context,
    sample_context,
    select_violations,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
POLICY = AckPolicy()


def refused(data: dict[str, Any], policy: AckPolicy = POLICY) -> InvalidAcknowledgement:
    with pytest.raises(InvalidAcknowledgement) as caught:
        parse_acknowledgement(data, policy)
    return caught.value


# --- parsing ---------------------------------------------------------------------------


def test_the_default_codes_are_the_documented_lists() -> None:
    assert DEFAULT_CAUSE_CODES[0] == "Tool Change"
    assert DEFAULT_CAUSE_CODES[-1] == "Other"
    assert len(DEFAULT_CAUSE_CODES) == 11
    assert DEFAULT_ACTION_CODES == (
        "Adjusted Process",
        "Replaced Tool",
        "Recalibrated Gauge",
        "Quarantined Parts",
        "Notified Maintenance",
        "No Action Needed",
        "Other",
    )


def test_the_old_single_form_with_reason_still_parses() -> None:
    got = parse_acknowledgement({"violation_id": 10, "reason": "Tool Change"}, POLICY)
    assert got == Acknowledgement(ViolationIds((10,)), "Tool Change")


def test_every_field_of_the_new_form() -> None:
    data = {
        "violation_ids": [10, 11, 12, 11],
        "cause": "Tool Change",
        "action": "Replaced Tool",
        "comment": "insert worn",
        "exclude_sample": True,
    }
    assert parse_acknowledgement(data, POLICY) == Acknowledgement(
        ViolationIds((10, 11, 12)), "Tool Change", "Replaced Tool", "insert worn", True
    )


def test_all_open_of_a_characteristic() -> None:
    data = {"characteristic_id": 3, "all_open": True, "cause": "Other"}
    assert parse_acknowledgement(data, POLICY).target == AllOpen(3)


def test_cause_and_reason_may_both_be_given_when_they_agree() -> None:
    data = {"violation_id": 1, "cause": "Other", "reason": "Other"}
    assert parse_acknowledgement(data, POLICY).cause == "Other"
    assert refused({"violation_id": 1, "cause": "Other", "reason": "Tool Change"}).field == "cause"


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"cause": "Other"}, "violation_id", "name the violations"),
        ({"violation_id": 1}, "cause", "'cause' is required"),
        ({"violation_id": 1, "cause": "Gremlins"}, "cause", "not one of the configured"),
        ({"violation_id": 1, "reason": "tool change"}, "reason", "not one of the configured"),
        ({"violation_id": 1, "cause": 7}, "cause", "not one of"),
        ({"violation_id": 1, "cause": "Other", "action": "Prayed"}, "action", "action_codes"),
        ({"violation_id": 1, "cause": "Other", "comment": "x" * 501}, "comment", "501 characters"),
        ({"violation_id": 1, "cause": "Other", "comment": 5}, "comment", "must be text"),
        ({"violation_id": 1, "cause": "Other", "comment": "a\x00b"}, "comment", "NUL"),
        ({"violation_id": 1, "cause": "Other", "exclude_sample": 1}, "exclude_sample", "true"),
        ({"violation_id": 0, "cause": "Other"}, "violation_id", "integer from 1"),
        ({"violation_id": True, "cause": "Other"}, "violation_id", "integer from 1"),
        ({"violation_ids": [], "cause": "Other"}, "violation_ids", "non-empty list"),
        ({"violation_ids": 5, "cause": "Other"}, "violation_ids", "non-empty list"),
        ({"violation_ids": [1, "2"], "cause": "Other"}, "violation_ids", "integer from 1"),
        ({"violation_ids": list(range(1, 1002)), "cause": "Other"}, "violation_ids", "1001"),
        ({"violation_id": 1, "violation_ids": [2], "cause": "Other"}, "violation_ids", "one of"),
        ({"characteristic_id": 3, "cause": "Other"}, "all_open", "all_open': true"),
        ({"characteristic_id": 3, "all_open": 1, "cause": "Other"}, "all_open", "true"),
        ({"all_open": True, "cause": "Other"}, "all_open", "needs 'characteristic_id'"),
    ],
)
def test_bad_commands_are_refused_with_the_field_named(
    data: dict[str, Any], field: str, words: str
) -> None:
    error = refused(data)
    assert error.field == field
    assert words in str(error)


def test_a_comment_of_500_characters_is_accepted_and_empty_means_none() -> None:
    data = {"violation_id": 1, "cause": "Other", "comment": "é" * 500}
    assert parse_acknowledgement(data, POLICY).comment == "é" * 500
    assert parse_acknowledgement({**data, "comment": ""}, POLICY).comment is None


@pytest.mark.parametrize(
    "target",
    [{"violation_id": 1}, {"violation_ids": [1, 2]}, {"characteristic_id": 3, "all_open": True}],
)
def test_require_action_holds_for_every_form(target: dict[str, Any]) -> None:
    strict = AckPolicy(require_action=True)
    assert refused({**target, "cause": "Other"}, strict).field == "action"
    data = {**target, "cause": "Other", "action": "Other"}
    assert parse_acknowledgement(data, strict).action == "Other"


def test_configured_codes_replace_the_defaults() -> None:
    policy = AckPolicy(cause_codes=("Chatter",), action_codes=("Reground",))
    ok = parse_acknowledgement(
        {"violation_id": 1, "cause": "Chatter", "action": "Reground"}, policy
    )
    assert (ok.cause, ok.action) == ("Chatter", "Reground")
    assert refused({"violation_id": 1, "cause": "Tool Change"}, policy).field == "cause"


# --- selecting the violations: all or nothing -----------------------------------------------


STORE = [
    KnownViolation(10, 3, acknowledged=False),
    KnownViolation(11, 3, acknowledged=False),
    KnownViolation(12, 3, acknowledged=True),
    KnownViolation(13, 4, acknowledged=False),
]


def test_named_ids_in_the_order_given() -> None:
    got = select_violations(ViolationIds((11, 10)), STORE)
    assert [v.id for v in got] == [11, 10]


def test_one_unknown_id_refuses_the_whole_command_naming_it() -> None:
    with pytest.raises(InvalidAcknowledgement) as caught:
        select_violations(ViolationIds((10, 99, 11)), STORE)
    assert caught.value.violation_id == 99
    assert "violation 99 does not exist" in str(caught.value)


def test_one_acknowledged_id_refuses_the_whole_command_naming_it() -> None:
    with pytest.raises(InvalidAcknowledgement) as caught:
        select_violations(ViolationIds((10, 12)), STORE)
    assert caught.value.violation_id == 12
    assert "violation 12 is already acknowledged" in str(caught.value)


def test_all_open_takes_the_characteristics_open_ones() -> None:
    assert [v.id for v in select_violations(AllOpen(3), STORE)] == [10, 11]


def test_all_open_with_nothing_open_is_refused() -> None:
    with pytest.raises(InvalidAcknowledgement) as caught:
        select_violations(AllOpen(5), STORE)
    assert "characteristic 5 has no open violations" in str(caught.value)


stored = st.dictionaries(st.integers(1, 30), st.booleans(), max_size=20)


@given(stored, st.lists(st.integers(1, 35), min_size=1, max_size=10))
def test_selection_is_all_or_nothing(store: dict[int, bool], asked: list[int]) -> None:
    found = [KnownViolation(i, 1, acked) for i, acked in store.items()]
    unique = list(dict.fromkeys(asked))
    bad = [i for i in unique if i not in store or store[i]]
    if bad:
        with pytest.raises(InvalidAcknowledgement) as caught:
            select_violations(ViolationIds(tuple(unique)), found)
        assert caught.value.violation_id == bad[0]
    else:
        assert [v.id for v in select_violations(ViolationIds(tuple(unique)), found)] == unique


# --- context ---------------------------------------------------------------------------


def test_context_with_batch_and_operator_joined() -> None:
    got = reading_context({"part": "A-113", "lot": "L42"}, batch="B7", operator="kim")
    assert got == {"batch": "B7", "operator": "kim", "part": "A-113", "lot": "L42"}
    assert reading_context({"operator": "lee"}, operator="kim") == {"operator": "lee"}
    assert reading_context(None) == {}


@pytest.mark.parametrize(
    ("context", "words"),
    [
        (["part"], "must be an object"),
        ("part", "must be an object"),
        ({"part": 5}, "must be a string"),
        ({"part": None}, "must be a string"),
        ({"part": {"x": "y"}}, "must be a string"),
        ({"": "x"}, "non-empty strings"),
        ({"k" * 201: "x"}, "201 characters"),
        ({"part": "v" * 201}, "201 characters"),
        ({"part": "a\x00"}, "NUL"),
        ({f"k{i}": "v" for i in range(65)}, "65 keys"),
    ],
)
def test_bad_context_is_refused_clearly(context: object, words: str) -> None:
    with pytest.raises(InvalidContext) as caught:
        reading_context(context)
    assert words in str(caught.value)


def test_64_keys_of_200_characters_are_accepted_but_batch_may_not_make_65() -> None:
    context = {f"{i:0>200}": "v" * 200 for i in range(64)}
    assert reading_context(context) == context
    with pytest.raises(InvalidContext, match="65 keys"):
        reading_context(context, batch="B1")


def test_a_bad_batch_is_refused() -> None:
    with pytest.raises(InvalidContext, match="batch must be a string"):
        reading_context(None, batch=5)


def test_the_later_reading_wins_a_key() -> None:
    merged = sample_context([{"part": "A", "lot": "L1"}, {"lot": "L2"}, {"shift": "B"}])
    assert merged == {"part": "A", "lot": "L2", "shift": "B"}


def test_a_reading_that_would_take_the_sample_past_64_keys_is_refused() -> None:
    merged = {f"a{i}": "v" for i in range(60)}
    with pytest.raises(InvalidContext, match="65 keys"):
        merge_context(merged, {f"b{i}": "v" for i in range(5)})
    assert len(merged) == 60  # the sample's context is untouched


small = st.dictionaries(st.sampled_from("abcdef"), st.text(max_size=3), max_size=6)


@given(st.lists(small, max_size=8))
def test_merging_matches_a_naive_last_writer_wins(contexts: list[dict[str, str]]) -> None:
    expected: dict[str, str] = {}
    for ctx in contexts:
        for key, value in ctx.items():
            expected[key] = value
    assert sample_context(contexts) == expected


# --- Pareto ----------------------------------------------------------------------------


def test_pareto_most_frequent_first_ties_by_name_within_the_window() -> None:
    records = [
        (NOW - timedelta(days=1), "Tool Change"),
        (NOW - timedelta(days=2), "Tool Change"),
        (NOW - timedelta(days=3), "Other"),
        (NOW - timedelta(days=4), "Measurement Error"),
        (NOW - timedelta(days=30), "Other"),  # on the edge: counts
        (NOW - timedelta(days=30, seconds=1), "Other"),  # before the window
    ]
    assert cause_pareto(records, NOW, 30) == (
        CauseCount("Other", 2),
        CauseCount("Tool Change", 2),
        CauseCount("Measurement Error", 1),
    )
    assert cause_pareto([], NOW, 30) == ()


moments = st.integers(-40 * 86_400, 86_400).map(lambda s: NOW + timedelta(seconds=s))
causes = st.sampled_from(["Tool Change", "Other", "False Alarm", "Setup Adjustment"])


@given(st.lists(st.tuples(moments, causes), max_size=50), st.integers(1, 40))
def test_pareto_matches_a_naive_count(records: list[tuple[datetime, str]], days: int) -> None:
    counts = Counter(c for at, c in records if (NOW - at).total_seconds() <= days * 86_400)
    got = cause_pareto(records, NOW, days)
    assert {c.cause: c.count for c in got} == dict(counts)
    ranks = [(-c.count, c.cause) for c in got]
    assert ranks == sorted(ranks)


# --- limit versions --------------------------------------------------------------------


def test_versions_count_from_one() -> None:
    assert next_limits_version(None) == 1
    assert next_limits_version(4) == 5


def test_fixed_limits_unchanged_keep_their_version_changed_make_a_new_one() -> None:
    spec = CharacteristicSpec(id=1, ucl=12.0, lcl=8.0)
    stored = fixed_limits(spec)
    assert stored.method is Method.FIXED
    assert limits_version_at_start(None, None, spec) == (1, True)
    assert limits_version_at_start(3, stored, spec) == (3, False)
    moved = CharacteristicSpec(id=1, ucl=12.5, lcl=8.0)
    assert limits_version_at_start(3, stored, moved) == (4, True)
    centred = CharacteristicSpec(id=1, ucl=12.0, lcl=8.0, center_line=10.5)
    assert limits_version_at_start(3, stored, centred) == (4, True)


def test_fixed_limits_replacing_a_baseline_make_a_new_version() -> None:
    spec = CharacteristicSpec(id=1, ucl=12.0, lcl=8.0)
    from_baseline = fixed_limits(spec)
    baseline = replace(from_baseline, method=Method.MOVING_RANGE)
    assert limits_version_at_start(2, baseline, spec) == (3, True)


def test_without_fixed_limits_the_stored_version_stays() -> None:
    spec = CharacteristicSpec(id=1)
    assert limits_version_at_start(None, None, spec) == (None, False)
    assert limits_version_at_start(2, None, spec) == (2, False)
