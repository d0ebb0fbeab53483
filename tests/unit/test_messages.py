"""Encoding of the bridge's messages and decoding of commands (docs/topics.md)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bridge.domain import AcknowledgeViolation, OverdueAlarm, Recalculate
from bridge.errors import InvalidCommand
from bridge.messages import (
    ack_payload,
    alarms_payload,
    causes_payload,
    dumps,
    envelope,
    error_payload,
    iso_z,
    parse_ack,
    parse_recalculate,
    reply_payload,
    sample_payload,
    status_payload,
    violation_payload,
)
from engine import Chart, SampleProcessed, Severity, ViolationRaised, Zone
from engine.alarms import SpecViolationRaised

T = datetime(2026, 11, 28, 6, 0, 0, 123456, tzinfo=UTC)


def test_times_are_utc_with_z_and_milliseconds() -> None:
    assert iso_z(T) == "2026-11-28T06:00:00.123Z"
    plus_one = T.astimezone(timezone(timedelta(hours=1)))
    assert iso_z(plus_one) == "2026-11-28T06:00:00.123Z"
    assert iso_z(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"
    with pytest.raises(ValueError, match="naive"):
        iso_z(datetime(2026, 1, 1))  # noqa: DTZ001 - a naive datetime is the point of the test


def test_a_sample_payload_and_its_envelope() -> None:
    sample = SampleProcessed(1, 7, T, 10.012, (10.01, 10.02), 0.01, Zone.ZONE_C_UPPER, True, (), ())
    message = json.loads(
        dumps(envelope("sample", sample_payload(1042, sample, None, limits_version=3)))
    )
    assert message == {
        "type": "sample",
        "payload": {
            "sample_id": 1042,
            "characteristic_id": 1,
            "timestamp": "2026-11-28T06:00:00.123Z",
            "value": 10.012,
            "values": [10.01, 10.02],
            "range": 0.01,
            "zone": "zone_c_upper",
            "in_control": True,
            "failed_rules": [],
            "range_failed_rules": [],
            "context": {},  # none given: always an object (docs/topics.md, "Context")
            "limits_version": 3,
            "excluded": False,
            "out_of_spec": None,
            "due_at": None,
        },
    }


def test_a_sample_payload_carries_its_merged_context() -> None:
    sample = SampleProcessed(1, 7, T, 10.0, (10.0,), None, None, None, (), ())
    context = {"part": "A-113", "lot": "L42"}
    payload = sample_payload(1, sample, None, context)
    assert payload["context"] == context
    assert payload["context"] is not context  # a copy: the caller's dict is not shared


def test_before_limits_zone_and_in_control_are_null() -> None:
    sample = SampleProcessed(1, 1, T, 10.0, (10.0,), None, None, None, (), ())
    payload = sample_payload(1, sample)
    assert (payload["zone"], payload["in_control"], payload["range"]) == (None, None, None)


def test_failed_rules_are_ascending() -> None:
    sample = SampleProcessed(1, 1, T, 10.0, (10.0,), 1.0, Zone.BEYOND_UCL, False, (5, 1), (1,))
    assert sample_payload(1, sample)["failed_rules"] == [1, 5]


def test_a_violation_payload() -> None:
    v = ViolationRaised(1, 7, 1, "Beyond 3 sigma", Severity.CRITICAL, Chart.RANGE, T)
    assert violation_payload(77, 1042, v) == {
        "violation_id": 77,
        "sample_id": 1042,
        "characteristic_id": 1,
        "kind": "rule",
        "rule_id": 1,
        "rule_name": "Beyond 3 sigma",
        "severity": "CRITICAL",
        "chart": "range",
        "timestamp": "2026-11-28T06:00:00.123Z",
    }


def test_spec_and_overdue_violations_have_no_rule_and_no_chart() -> None:
    spec = SpecViolationRaised(3, 41, Severity.CRITICAL, T, 12.0, 10.0, 12.5)
    assert violation_payload(78, 1043, spec) == {
        "violation_id": 78,
        "sample_id": 1043,
        "characteristic_id": 3,
        "kind": "spec",
        "rule_id": None,
        "rule_name": "Beyond specification",
        "severity": "CRITICAL",
        "chart": None,
        "timestamp": "2026-11-28T06:00:00.123Z",
    }
    overdue = OverdueAlarm(3, Severity.WARNING, T, T - timedelta(seconds=15))
    assert violation_payload(79, None, overdue) == {
        "violation_id": 79,
        "sample_id": None,
        "characteristic_id": 3,
        "kind": "overdue",
        "rule_id": None,
        "rule_name": "Sample overdue",
        "severity": "WARNING",
        "chart": None,
        "timestamp": "2026-11-28T06:00:00.123Z",
    }


def test_a_sample_carries_out_of_spec_and_due_at() -> None:
    sample = SampleProcessed(1, 7, T, 12.5, (12.5,), None, None, None, (), ())
    payload = sample_payload(1, sample, out_of_spec=True, due_at=T + timedelta(seconds=60))
    assert (payload["out_of_spec"], payload["due_at"]) == (True, "2026-11-28T06:01:00.123Z")


def test_nan_never_leaves_the_bridge() -> None:
    with pytest.raises(ValueError, match="JSON"):
        dumps({"x": float("nan")})


def test_error_payload_cuts_long_and_undecodable_payloads() -> None:
    error = error_payload("a/b", b"x" * 500, "too long", T)
    assert error["payload"] == "x" * 200 + "..."
    assert error_payload("a/b", b"\xff1", "bad", T)["payload"] == "\ufffd1"
    assert error_payload("a/b", b"abc", "not a number", T) == {
        "topic": "a/b",
        "payload": "abc",
        "reason": "not a number",
        "timestamp": "2026-11-28T06:00:00.123Z",
        "count": 1,
        "summary": False,
    }


def test_status_and_reply() -> None:
    assert status_payload(False, T) == {"online": False, "timestamp": "2026-11-28T06:00:00.123Z"}
    assert reply_payload() == {"ok": True}
    assert reply_payload("nope") == {"ok": False, "error": "nope"}


def test_parse_ack_keeps_the_object_for_its_handler() -> None:
    body = b'{"violation_id": 10, "reason": "Tool Change", "exclude_sample": true}'
    assert parse_ack("t", "alice", body) == AcknowledgeViolation(
        "alice", {"violation_id": 10, "reason": "Tool Change", "exclude_sample": True}
    )
    assert parse_ack("t", "bob", b'{"violation_ids": [3, 4], "cause": "Other"}') == (
        AcknowledgeViolation("bob", {"violation_ids": [3, 4], "cause": "Other"})
    )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (b"\xff", "not JSON"),
    ],
)
def test_parse_ack_refuses(body: bytes, why: str) -> None:
    with pytest.raises(InvalidCommand, match=why):
        parse_ack("t", "alice", body)
    with pytest.raises(InvalidCommand, match="user"):
        parse_ack("t", "", b"{}")


def test_parse_recalculate() -> None:
    assert parse_recalculate("t", 3, b"{}") == Recalculate(3, None)
    assert parse_recalculate("t", 3, b"") == Recalculate(3, None)
    assert parse_recalculate("t", 3, b'{"last": 25}') == Recalculate(3, 25)
    for body in (b'{"last": 0}', b'{"last": 2.5}', b'{"first": 2}', b"7"):
        with pytest.raises(InvalidCommand):
            parse_recalculate("t", 3, body)


def test_parse_recalculate_over_a_sample_id_range() -> None:
    body = b'{"from_sample_id": 100, "to_sample_id": 140}'
    assert parse_recalculate("t", 3, body) == Recalculate(3, None, (100, 140))
    one = b'{"from_sample_id": 7, "to_sample_id": 7}'
    assert parse_recalculate("t", 3, one) == Recalculate(3, None, (7, 7))


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"from_sample_id": 100}', "'from_sample_id' needs 'to_sample_id' too"),
        (b'{"to_sample_id": 100}', "'to_sample_id' needs 'from_sample_id' too"),
        (b'{"from_sample_id": 9, "to_sample_id": 8}', "is after 'to_sample_id' 8"),
        (b'{"from_sample_id": 1, "to_sample_id": 8, "last": 5}', "not both"),
        (b'{"from_sample_id": "1", "to_sample_id": 8}', "'from_sample_id' must be an integer"),
        (b'{"from_sample_id": 1, "to_sample_id": 0}', "'to_sample_id' must be an integer"),
    ],
)
def test_parse_recalculate_refuses_a_bad_range(body: bytes, why: str) -> None:
    with pytest.raises(InvalidCommand, match=re.escape(why)):
        parse_recalculate("t", 3, body)


def test_an_ack_update_carries_cause_action_and_comment() -> None:
    assert ack_payload(12, 3, "kim", "Tool Change", T, "Replaced Tool", "insert worn") == {
        "violation_id": 12,
        "characteristic_id": 3,
        "acknowledged": True,
        "user": "kim",
        "reason": "Tool Change",
        "cause": "Tool Change",
        "action": "Replaced Tool",
        "comment": "insert worn",
        "timestamp": "2026-11-28T06:00:00.123Z",
    }
    plain = ack_payload(12, 3, "kim", "Other", T)
    assert (plain["cause"], plain["action"], plain["comment"]) == ("Other", None, None)


def test_the_causes_payload_keeps_the_order_given() -> None:
    assert causes_payload(3, 30, [("Tool Change", 7), ("Other", 2)]) == {
        "characteristic_id": 3,
        "days": 30,
        "counts": [{"cause": "Tool Change", "count": 7}, {"cause": "Other", "count": 2}],
    }


def test_alarms_list_the_newest_open_violations_and_count_them_all() -> None:
    open_ones = [{"violation_id": i} for i in range(1, 6)]
    assert alarms_payload(3, open_ones) == {
        "characteristic_id": 3,
        "violations": open_ones,
        "open_count": 5,
    }
    capped = alarms_payload(3, open_ones, limit=2)
    assert [v["violation_id"] for v in capped["violations"]] == [4, 5]
    assert capped["open_count"] == 5
    assert alarms_payload(3, []) == {"characteristic_id": 3, "violations": [], "open_count": 0}
