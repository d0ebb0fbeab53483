"""bridge/wire/: every topic built and parsed in one module, every message encoded once.

The fast paths (``sample`` and ``history`` joined from bytes already encoded) give the very
bytes of the plain encoding, and a stored row gives the very payload its live sample had.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge import messages, topics
from bridge.domain import SampleRecorded, ViolationAcknowledged, ViolationCreated
from bridge.pipeline._unit_of_work import _sample_row
from bridge.store import SampleRow, ViolationRecord, decode_rules, decode_values
from bridge.wire import Topics, payloads
from bridge.wire.payloads import (
    dumps,
    encode,
    encode_ack,
    encode_history,
    encode_sample,
    encode_sample_json,
    encode_violation,
    history_payload,
    sample_payload,
    stored_sample_payload,
    stored_violation_payload,
    violation_payload,
)
from engine import (
    CharacteristicEngine,
    CharacteristicSpec,
    SampleProcessed,
    ViolationRaised,
)

T0 = datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)


def test_every_topic_of_the_tree_from_one_module() -> None:
    t = Topics("plant/a")
    leaves = {
        t.reading(7): "reading",
        t.sample(7): "sample",
        t.violation(7): "violation",
        t.ack(7): "ack",
        t.limits(7): "limits",
        t.history(7): "history",
        t.alarms(7): "alarms",
        t.meta(7): "meta",
        t.causes(7): "causes",
    }
    assert leaves == {f"plant/a/char/7/{leaf}": leaf for leaf in leaves.values()}
    assert t.char(7, "sample") == t.sample(7)
    assert (t.status, t.errors, t.metrics, t.cluster, t.node("n1")) == (
        "plant/a/bridge/status",
        "plant/a/bridge/errors",
        "plant/a/bridge/metrics",
        "plant/a/bridge/cluster",
        "plant/a/bridge/nodes/n1",
    )
    assert t.subscriptions() == [
        "plant/a/char/+/reading",
        "plant/a/cmd/ack/+",
        "plant/a/cmd/char/+/recalculate",
    ]
    assert t.query_filter == "plant/a/cmd/query/+"
    assert (t.ack_command("kim"), t.recalculate_command(3), t.query_command("kim")) == (
        "plant/a/cmd/ack/kim",
        "plant/a/cmd/char/3/recalculate",
        "plant/a/cmd/query/kim",
    )
    assert (t.reply("kim", "ack", "1"), t.reply_tree("kim"), t.role("kim")) == (
        "plant/a/reply/kim/ack/1",
        "plant/a/reply/kim/#",
        "plant/a/reply/kim/role",
    )
    assert (t.tree, t.char_tree, t.bridge_tree, t.char_filter("alarms")) == (
        "plant/a/#",
        "plant/a/char/#",
        "plant/a/bridge/#",
        "plant/a/char/+/alarms",
    )
    assert Topics().sample(1) == "openspc/char/1/sample"
    assert topics.reading_topic("openspc", 4) == Topics().reading(4)
    assert Topics().reading("{cid}").format(cid=9) == "openspc/char/9/reading"


def test_what_the_module_builds_it_parses_back() -> None:
    t = Topics("openspc")
    assert t.reading_key(t.reading(12)) == "12"
    assert t.reading_key(t.sample(12)) is None
    ack = t.command(t.ack_command("kim"))
    assert ack is not None
    assert (ack.kind, ack.user) == ("ack", "kim")
    recalc = t.command(t.recalculate_command(3))
    assert recalc is not None
    assert (recalc.kind, recalc.characteristic_id) == ("recalculate", 3)
    assert t.reply_fault(t.reply("kim", "x"), "kim") is None
    assert t.reply_fault(t.reply("ana", "x"), "kim") is not None


def test_the_former_module_names_are_aliases() -> None:
    from bridge import topics as old_topics

    assert messages.encode_sample is payloads.encode_sample
    assert messages.sample_payload is payloads.sample_payload
    assert messages._text is payloads._text  # names outside __all__ too
    assert set(messages.__all__) == set(payloads.__all__)
    assert old_topics.Topics is Topics
    assert old_topics._ID is topics._ID
    assert set(old_topics.__all__) == set(topics.__all__)


def _samples() -> list[SampleProcessed]:
    """Real engine results: n = 1, n = 5, EWMA and CUSUM, in and out of control."""
    gauge = random.Random(11)
    found: list[SampleProcessed] = []
    specs = [
        CharacteristicSpec(id=1, subgroup_size=1, baseline=5),
        CharacteristicSpec(id=2, subgroup_size=5, baseline=5),
        CharacteristicSpec(id=3, chart="ewma", ucl=13.0, lcl=7.0),
        CharacteristicSpec(id=4, chart="cusum", ucl=13.0, lcl=7.0),
    ]
    for spec in specs:
        engine = CharacteristicEngine(spec)
        for k in range(60):
            drift = 2.5 if k > 40 else 0.0
            value = round(gauge.gauss(10.0 + drift, 1.0), 3)
            events = engine.add_reading(value, T0 + timedelta(seconds=k))
            found += [e for e in events if isinstance(e, SampleProcessed)]
    return found


def _chart(sample: SampleProcessed) -> str:
    return {1: "imr", 2: "xbar_r", 3: "ewma", 4: "cusum"}[sample.characteristic_id]


def _recorded(sample_id: int, sample: SampleProcessed, fast: bool) -> SampleRecorded:
    if not fast:
        return SampleRecorded(sample_id, sample)
    payload = sample_payload(sample_id, sample, _chart(sample))
    return SampleRecorded(sample_id, sample, None, payload, dumps(payload))


def test_the_sample_fast_path_is_the_plain_encoding() -> None:
    samples = _samples()
    assert {s.characteristic_id for s in samples} == {1, 2, 3, 4}
    assert any(s.failed_rules for s in samples)
    for k, sample in enumerate(samples, start=1):
        fast = _recorded(k, sample, fast=True)
        assert encode_sample(fast) == encode("sample", fast.payload)
        assert encode_sample_json(fast) == dumps(fast.payload)
        plain = SampleRecorded(k, sample)  # no payload made by the producer
        assert encode_sample(plain) == encode("sample", sample_payload(k, sample))
        assert json.loads(encode_sample(fast))["payload"]["sample_id"] == k


def test_the_history_join_is_the_plain_encoding() -> None:
    encoded = [encode_sample_json(_recorded(k, s, True)) for k, s in enumerate(_samples(), 1)]
    for chosen in ([], encoded[:1], encoded):
        decoded = [json.loads(s) for s in chosen]
        assert encode_history(42, chosen) == encode("history", history_payload(42, decoded))


def _stored(sample_id: int, sample: SampleProcessed, context: dict[str, str]) -> SampleRow:
    """The row the pipeline writes, read back as the store returns it."""
    row: dict[str, Any] = _sample_row(sample_id, sample, _chart(sample), context)
    return SampleRow(
        row["id"],
        row["characteristic_id"],
        row["ts"],
        row["value"],
        decode_values(row["values"]),
        row["range"],
        row["zone"],
        row["in_control"],
        decode_rules(row["failed_rules"]),
        decode_rules(row["range_failed_rules"]),
        row["chart"],
        row["statistic"],
        row["ucl"],
        row["lcl"],
        row["cusum_upper"],
        row["cusum_lower"],
        row["size"],
        dict(row["context"] or {}),
        bool(row.get("excluded", False)),
        row.get("limits_version"),
        row.get("out_of_spec"),
        row.get("due_at"),
    )


def test_a_stored_row_gives_the_payload_its_live_sample_had() -> None:
    for k, sample in enumerate(_samples(), start=1):
        context = {"part": f"A-{k}", "lot": "L42"} if k % 2 else {}
        live = sample_payload(k, sample, _chart(sample), context)
        assert dumps(stored_sample_payload(_stored(k, sample, context))) == dumps(live)


@pytest.mark.parametrize("severity", ["CRITICAL", "WARNING"])
def test_a_stored_violation_gives_the_payload_its_live_event_had(severity: str) -> None:
    from engine import Chart, Severity

    raised = ViolationRaised(3, 17, 2, "Nine points on one side", Severity(severity), Chart.X, T0)
    record = ViolationRecord(
        id=99,
        sample_id=1234,
        characteristic_id=3,
        rule_id=2,
        rule_name="Nine points on one side",
        severity=severity,
        chart="x",
        ts=T0,
        acknowledged=False,
    )
    assert dumps(stored_violation_payload(record)) == dumps(violation_payload(99, 1234, raised))
    assert encode_violation(ViolationCreated(99, 1234, raised)) == encode(
        "violation", violation_payload(99, 1234, raised)
    )


def test_an_ack_message() -> None:
    event = ViolationAcknowledged(5, 3, "kim", "Tool Change", False, T0)
    assert json.loads(encode_ack(event)) == {
        "type": "ack_update",
        "payload": {
            "violation_id": 5,
            "characteristic_id": 3,
            "acknowledged": True,
            "user": "kim",
            "reason": "Tool Change",
            "cause": "Tool Change",
            "action": None,
            "comment": None,
            "timestamp": "2026-12-07T10:00:00.123Z",
        },
    }
