"""Input from outside, checked where it enters (docs/security.md): topics and
their ids, response topics, text fields, commands; and the figures that go out."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bridge._ack_workflow import checked_request
from bridge.errors import CommandRejected, InvalidCommand
from bridge.messages import (
    ERROR_REASON_CHARS,
    dumps,
    error_payload,
    parse_ack,
    parse_recalculate,
    reply_payload,
    sample_payload,
)
from bridge.readings import InvalidReading, check_text, parse_reading, text_fault
from bridge.sparkplug._values import DataType, ValueField, decode_value
from bridge.topics import Topics, parse_id
from engine import SampleProcessed, Zone, figure, plotted_value
from engine.alarms import Acknowledgement, AckPolicy, ViolationIds

T = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
TOPICS = Topics("openspc")


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("1", 1),
        ("0", 0),
        ("42", 42),
        ("999999999999", 999_999_999_999),
        ("02", None),  # a leading zero
        ("00", None),
        ("\u0662", None),  # an Arabic-Indic two
        ("+1", None),
        (" 1", None),
        ("1 ", None),
        ("-1", None),
        ("1_0", None),
        ("", None),
        ("1e3", None),
        ("1000000000000", None),  # 13 digits
        ("\uff11", None),  # a fullwidth one
    ],
)
def test_ids_in_topics_are_ascii_digits_without_leading_zeros(
    level: str, expected: int | None
) -> None:
    assert parse_id(level) == expected


def test_reading_and_command_topics_are_parsed_in_one_place() -> None:
    assert TOPICS.reading_key("openspc/char/02/reading") == "02"
    assert TOPICS.reading_key("openspc/char/1/2/reading") is None
    assert TOPICS.reading_key("openspc/char/1/sample") is None
    ack = TOPICS.command("openspc/cmd/ack/alice")
    assert ack is not None
    assert (ack.kind, ack.user) == ("ack", "alice")
    recalc = TOPICS.command("openspc/cmd/char/07/recalculate")
    assert recalc is not None
    assert (recalc.kind, recalc.key, recalc.characteristic_id) == ("recalculate", "07", None)
    recalc = TOPICS.command("openspc/cmd/char/7/recalculate")
    assert recalc is not None
    assert recalc.characteristic_id == 7
    assert TOPICS.command("openspc/char/7/reading") is None


@pytest.mark.parametrize(
    "topic",
    [
        "openspc/reply/alice",
        "openspc/reply/alice/hmi-12ab",
        "openspc/reply/alice/a/b/c",
    ],
)
def test_a_response_topic_in_the_senders_own_tree_is_answered(topic: str) -> None:
    assert TOPICS.reply_fault(topic, "alice") is None


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("openspc/#", "wildcard"),
        ("openspc/reply/alice/+", "wildcard"),
        ("openspc/reply/#", "wildcard"),
        ("openspc/bridge/status", "not in the reply tree"),
        ("openspc/char/1/limits", "not in the reply tree"),
        ("spBv1.0/Plant1/NCMD/Line3", "not in the reply tree"),
        ("spBv1.0/STATE/openspc", "not in the reply tree"),
        ("openspc/cmd/ack/bob", "not in the reply tree"),
        ("openspc/cmd/char/2/recalculate", "not in the reply tree"),
        ("openspc/reply/bob/x", "not in alice's reply tree"),
        ("openspc/reply/alice2/x", "not in alice's reply tree"),
        ("openspc/reply//x", "empty level"),
        ("openspc/reply/alice//x", "empty level"),
        ("openspc/reply/alice/", "empty level"),
        ("openspc/reply/", "empty level"),
        ("openspc/reply/alice/a\x00b", "NUL"),
        ("openspc/reply/alice/" + "x" * 300, "longer than"),
        ("other/reply/alice/x", "not in the reply tree"),
    ],
)
def test_any_other_response_topic_is_refused(topic: str, why: str) -> None:
    fault = TOPICS.reply_fault(topic, "alice")
    assert fault is not None
    assert why in fault
    assert len(fault) < 200  # a long topic is not echoed whole


def test_a_recalculate_may_name_any_one_users_tree() -> None:
    assert TOPICS.reply_fault("openspc/reply/eng/r1", None) is None
    assert TOPICS.reply_fault("openspc/reply/bob/x/y", None) is None
    assert TOPICS.reply_fault("openspc/bridge/status", None) is not None
    assert TOPICS.reply_fault("openspc/reply/+/x", None) is not None
    assert TOPICS.reply_fault("openspc/reply//x", None) is not None


def test_the_reply_tree_follows_the_prefix() -> None:
    plant = Topics("plant7/spc")
    assert plant.reply_fault("plant7/spc/reply/alice/x", "alice") is None
    assert plant.reply_fault("openspc/reply/alice/x", "alice") is not None


# --- text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("\ud800", "lone surrogate"),
        ("ok\udfffok", "lone surrogate"),
        ("a\x00b", "NUL"),
        ("x" * 201, "too long: 201 characters"),
    ],
)
def test_text_that_cannot_be_stored_is_named(text: str, why: str) -> None:
    fault = text_fault(text, "batch")
    assert fault is not None
    assert why in fault
    assert fault.startswith("batch")
    with pytest.raises(InvalidReading, match=why):
        check_text(text, "batch")


@pytest.mark.parametrize("text", ["", "B7", "Schicht Früh", "\u6279\u6b21-7", "x" * 200, "😀"])
def test_ordinary_text_passes(text: str) -> None:
    assert text_fault(text, "batch") is None
    assert check_text(text, "batch") is text


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"value": 1.5, "batch": "\ud800"}, "batch is not valid UTF-8"),
        ({"value": 1.5, "operator": "a\u0000b"}, "operator contains a NUL"),
        ({"value": 1.5, "operator": "k" * 5000}, "operator is too long"),
        ({"values": [1.0], "batch": "\udc00"}, "batch is not valid UTF-8"),
    ],
)
def test_a_reading_with_bad_text_is_refused_whole(body: dict[str, object], why: str) -> None:
    payload = json.dumps(body).encode()  # \ud800 travels as a JSON escape: valid UTF-8
    with pytest.raises(InvalidReading, match=why):
        parse_reading(payload, subgroup_size=1, received_at=T)


def test_a_value_path_reading_checks_its_text_too() -> None:
    payload = json.dumps({"data": {"od": 1.0}, "batch": "\ud800"}).encode()
    with pytest.raises(InvalidReading, match="batch"):
        parse_reading(payload, subgroup_size=1, value_path="data.od", received_at=T)


def test_sparkplug_string_metrics_go_through_the_same_check() -> None:
    assert decode_value(DataType.String, ValueField.STRING, "Line 3") == "Line 3"
    with pytest.raises(ValueError, match="NUL"):
        decode_value(DataType.String, ValueField.STRING, "a\x00b")
    with pytest.raises(ValueError, match="lone surrogate"):
        decode_value(DataType.Text, ValueField.STRING, "\ud800")


# --- commands --------------------------------------------------------------------------


def _acknowledgement(payload: bytes) -> Acknowledgement:
    """An acknowledgement as the bridge reads it: the JSON at the edge, then its fields
    against the configured codes in its handler (bridge/_ack_workflow.py)."""
    return checked_request(parse_ack("openspc/cmd/ack/alice", "alice", payload), AckPolicy())


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"violation_id": {"a": {"b": [1]}}, "reason": "Other"}', "must be an integer"),
        (b'{"violation_id": 9223372036854775808, "reason": "Other"}', "must be an integer"),
        (b'{"violation_id": 10.0, "reason": "Other"}', "must be an integer"),
        (b'{"violation_id": true, "reason": "Other"}', "must be an integer"),
        (b'{"violation_id": 0, "reason": "Other"}', "must be an integer"),
        (b'{"violation_ids": [1, 0], "cause": "Other"}', "must be an integer"),
        (b'{"violation_id": 1, "reason": "\\ud800"}', "not one of the configured cause_codes"),
        (b'{"violation_id": 1, "reason": "a\\u0000b"}', "not one of the configured cause_codes"),
        (b'{"violation_id": 1, "reason": {"x": [1, 2]}}', "not one of the configured"),
        (b'{"violation_id": 1, "cause": "Other", "comment": "a\\u0000b"}', "contains a NUL"),
        (b'{"violation_id": 1, "cause": "Other", "comment": "\\ud800"}', "not valid UTF-8"),
        (b"\xff", "not JSON"),
    ],
)
def test_bad_acknowledgements_are_refused_clearly(payload: bytes, why: str) -> None:
    with pytest.raises((InvalidCommand, CommandRejected), match=why) as caught:
        _acknowledgement(payload)
    assert len(str(caught.value)) < 200


def test_the_largest_id_is_accepted() -> None:
    body = b'{"violation_id": 9223372036854775807, "reason": "Other"}'
    assert _acknowledgement(body).target == ViolationIds((2**63 - 1,))


def test_a_huge_reason_never_comes_back_huge() -> None:
    huge = "x" * 5_000_000
    with pytest.raises(CommandRejected) as caught:
        _acknowledgement(json.dumps({"violation_id": 1, "reason": huge}).encode())
    assert len(str(caught.value)) < 200
    with pytest.raises(CommandRejected) as caught:
        _acknowledgement(json.dumps({"violation_id": [huge], "reason": "x"}).encode())
    assert len(str(caught.value)) < 200
    with pytest.raises(CommandRejected) as caught:
        _acknowledgement(
            json.dumps({"violation_ids": [1], "cause": "Other", "comment": huge}).encode()
        )
    assert len(str(caught.value)) < 200
    with pytest.raises(InvalidCommand) as caught:
        parse_recalculate("t", 1, json.dumps({huge: 1}).encode())
    assert len(str(caught.value)) < 200
    # whatever reason reaches the edge, what goes out is cut
    assert len(dumps(reply_payload(huge))) < ERROR_REASON_CHARS + 50
    error = error_payload("t/" * 1_000_000, huge.encode(), huge, T)
    assert len(dumps(error)) < 1200
    assert error["reason"].endswith("...")


def test_error_payloads_are_always_valid_text() -> None:
    error = error_payload("a/\udcff", b"\x00\xff", "r\ud800\x00", T)
    text = dumps(error).decode("utf-8")
    assert "\\u0000" not in text
    json.loads(text)


# --- figures ---------------------------------------------------------------------------


def test_computed_figures_carry_no_binary_noise_and_readings_keep_their_digits() -> None:
    assert figure(0.028300000000001546) == 0.0283
    assert figure(None) is None
    assert figure(1.0) == 1.0
    assert figure(123456.78901234) == 123456.789
    # a reading as the gauge gave it, even with more than 10 digits
    assert plotted_value(0.12345678901234, 1) == 0.12345678901234
    assert plotted_value(0.1 + 0.2, 3) == 0.3


def test_a_sample_payload_spells_its_figures_once() -> None:
    mean = (0.1 + 0.2 + 0.4) / 3
    sample = SampleProcessed(
        1, 1, T, mean, (0.1, 0.2, 0.4), 0.4 - 0.1, Zone.ZONE_C_UPPER, True, (), ()
    )
    payload = sample_payload(5, sample)
    assert payload["value"] == 0.2333333333
    assert payload["range"] == 0.3  # 0.30000000000000004 computed
    assert payload["values"] == [0.1, 0.2, 0.4]
    single = SampleProcessed(
        1, 2, T, 0.12345678901234, (0.12345678901234,), 0.3 - 0.2, None, None, (), ()
    )
    payload = sample_payload(6, single)
    assert payload["value"] == 0.12345678901234
    assert payload["range"] == 0.1  # 0.09999999999999998 computed
