"""The bridge end to end: readings in over a real Mosquitto, SQLite, results out."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.integration.conftest import BridgeFactory, Probe, char

pytestmark = pytest.mark.mosquitto

FIXED = {"center_line": 10.0, "ucl": 13.0, "lcl": 7.0, "rules": [1]}
"""Fixed limits with sigma 1 (n = 1), only rule 1: a reading of 20 is one violation."""


async def test_a_reading_becomes_a_sample_published_and_stored(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    app = await bridge_factory.start([char(1)])
    await probe.publish(f"{topic_prefix}/char/1/reading", "10.5")
    [sample] = await probe.wait_for(f"{topic_prefix}/char/1/sample")
    assert sample["type"] == "sample"
    payload = sample["payload"]
    assert payload["characteristic_id"] == 1
    assert payload["value"] == 10.5
    assert payload["values"] == [10.5]
    assert payload["range"] is None
    assert payload["zone"] is None
    assert payload["in_control"] is None
    assert payload["failed_rules"] == []
    assert payload["range_failed_rules"] == []
    assert payload["timestamp"].endswith("Z")
    rows = await app.store.rows("samples", 1)
    assert [(r.id, r.value) for r in rows] == [(payload["sample_id"], 10.5)]
    assert await app.store.count("readings", 1) == 1


async def test_every_payload_form_is_accepted_and_the_source_time_kept(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    own = f"{topic_prefix}-plant1/line3/gauge7/od"
    await bridge_factory.start(
        [char(1), char(2, subgroup_size=3), char(3, topic=own, value_path="data.od")]
    )
    reading = f"{topic_prefix}/char/1/reading"
    await probe.publish(reading, "10.5")
    await probe.publish(reading, json.dumps({"value": 10.6, "ts": 1_790_000_000_123}))
    await probe.publish(
        reading, json.dumps({"value": 10.7, "ts": "2026-11-28T07:00:00+01:00", "batch": "B7"})
    )
    await probe.publish(
        f"{topic_prefix}/char/2/reading",
        json.dumps({"values": [1.0, 2.0, 4.0], "ts": "2026-11-28T06:00:00.250Z"}),
    )
    await probe.publish(own, json.dumps({"data": {"od": 9.95}, "ts": 1_790_000_000_000}))
    ones = await probe.wait_for(f"{topic_prefix}/char/1/sample", count=3)
    assert [s["payload"]["value"] for s in ones] == [10.5, 10.6, 10.7]
    assert ones[1]["payload"]["timestamp"] == "2026-09-21T14:13:20.123Z"
    assert ones[2]["payload"]["timestamp"] == "2026-11-28T06:00:00.000Z"
    assert ones[1]["payload"]["range"] == pytest.approx(0.1)
    # without a source ts, the time of arrival
    arrival = datetime.fromisoformat(ones[0]["payload"]["timestamp"])
    assert abs((datetime.now(UTC) - arrival).total_seconds()) < 30
    [two] = await probe.wait_for(f"{topic_prefix}/char/2/sample")
    assert two["payload"]["values"] == [1.0, 2.0, 4.0]
    assert two["payload"]["value"] == pytest.approx(7 / 3)
    assert two["payload"]["range"] == 3.0
    assert two["payload"]["timestamp"] == "2026-11-28T06:00:00.250Z"
    [three] = await probe.wait_for(f"{topic_prefix}/char/3/sample")
    assert three["payload"]["value"] == 9.95
    assert three["payload"]["timestamp"] == "2026-09-21T14:13:20.000Z"


async def test_readings_form_subgroups_in_arrival_order(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    await bridge_factory.start([char(5, subgroup_size=2)])
    for value in ("1", "2", "3", json.dumps({"value": 5})):
        await probe.publish(f"{topic_prefix}/char/5/reading", value)
    samples = await probe.wait_for(f"{topic_prefix}/char/5/sample", count=2)
    assert [s["payload"]["values"] for s in samples] == [[1.0, 2.0], [3.0, 5.0]]
    assert [s["payload"]["range"] for s in samples] == [1.0, 2.0]
    ids = [s["payload"]["sample_id"] for s in samples]
    assert ids[0] < ids[1]


BAD = [
    ("abc", "not a number"),
    ("NaN", "not a finite number"),
    ('{"value": "x"}', "not a number"),
    ('{"values": [1, 2]}', "wrong count"),
    ('{"value": 1, "ts": "yesterday"}', "ISO 8601"),
    ("", "empty"),
    ("[1, 2", ""),
    ("\xff\xfe", ""),
]


async def test_bad_payloads_are_reported_counted_never_stored(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    app = await bridge_factory.start([char(1, subgroup_size=1)], max_payload_bytes=64)
    reading = f"{topic_prefix}/char/1/reading"
    for payload, _ in BAD:
        await probe.publish(reading, payload.encode("latin-1"))
    long = "1" + " " * 200
    await probe.publish(reading, long)
    await probe.publish(f"{topic_prefix}/char/99/reading", "1.0")
    await probe.publish(f"{topic_prefix}/char/abc/reading", "1.0")
    await probe.publish(reading, "10.0")  # still alive afterwards
    errors = await probe.wait_for(f"{topic_prefix}/bridge/errors", count=len(BAD) + 3)
    for (_payload, why), error in zip(BAD, errors, strict=False):
        assert error["topic"] == reading
        assert why in error["reason"]
        assert error["timestamp"].endswith("Z")
    assert errors[0]["payload"] == "abc"
    too_long = errors[len(BAD)]
    assert too_long["payload"].endswith("...")
    assert len(too_long["payload"]) == 203
    assert "unknown characteristic" in errors[-2]["reason"]
    assert errors[-2]["topic"] == f"{topic_prefix}/char/99/reading"
    assert "unknown characteristic" in errors[-1]["reason"]
    [sample] = await probe.wait_for(f"{topic_prefix}/char/1/sample")
    assert sample["payload"]["value"] == 10.0
    assert await app.store.count("samples", 1) == 1
    assert await app.store.count("readings", 1) == 1
    assert app.metrics.readings_rejected == len(BAD) + 3
    # a batch is counted as it is parsed, its samples once stored: wait for both
    metrics = await probe.wait_for(
        f"{topic_prefix}/bridge/metrics",
        lambda m: m["readings_rejected"] == len(BAD) + 3 and m["samples"] == 1,
    )
    assert metrics[0]["readings_received"] == len(BAD) + 4


async def test_baseline_then_limits_then_judged_samples_and_a_violation(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    app = await bridge_factory.start([char(1, baseline=5, rules=[1, 2], usl=20.0, lsl=0.0)])
    for value in (10, 12, 8, 11, 9, 10.5, 30):
        await probe.publish(f"{topic_prefix}/char/1/reading", str(value))
    samples = await probe.wait_for(f"{topic_prefix}/char/1/sample", count=7)
    assert [s["payload"]["zone"] for s in samples[:5]] == [None] * 5
    assert samples[5]["payload"]["zone"] == "zone_c_upper"
    assert samples[5]["payload"]["in_control"] is True
    assert samples[6]["payload"]["zone"] == "beyond_ucl"
    assert samples[6]["payload"]["in_control"] is False
    assert samples[6]["payload"]["failed_rules"] == [1]
    [limits] = await probe.wait_for(f"{topic_prefix}/char/1/limits")
    assert limits["type"] == "control_limits"
    assert limits["payload"]["center_line"] == 10.0
    assert limits["payload"]["method"] == "moving_range"
    assert limits["payload"]["sample_count"] == 5
    assert limits["payload"]["capability"]["cp"] is not None
    # 30 is beyond the X chart's UCL, and its moving range (19.5) beyond the MR chart's;
    # and beyond the usl (20): a spec alarm after the run rules' (docs/topics.md)
    x, mr, spec = await probe.wait_for(f"{topic_prefix}/char/1/violation", count=3)
    assert x["type"] == "violation"
    v = x["payload"]
    assert v["sample_id"] == samples[6]["payload"]["sample_id"]
    assert (v["kind"], v["rule_id"], v["severity"], v["chart"]) == ("rule", 1, "CRITICAL", "x")
    assert set(v) == {
        "violation_id", "sample_id", "characteristic_id", "kind", "rule_id", "rule_name",
        "severity", "chart", "timestamp",
    }  # fmt: skip
    assert (mr["payload"]["rule_id"], mr["payload"]["chart"]) == (1, "range")
    assert samples[6]["payload"]["range_failed_rules"] == [1]
    s = spec["payload"]
    assert (s["kind"], s["rule_id"], s["chart"], s["sample_id"]) == (
        "spec",
        None,
        None,
        samples[6]["payload"]["sample_id"],
    )
    assert [x["payload"]["out_of_spec"] for x in samples] == [False] * 6 + [True]
    alarms = await probe.wait_for(
        f"{topic_prefix}/char/1/alarms", lambda m: len(m["payload"]["violations"]) == 3
    )
    assert alarms[0]["payload"]["violations"] == [v, mr["payload"], s]
    rows = await app.store.rows("violations", 1)
    assert [(r.id, r.kind, r.chart, r.rule_id, r.acknowledged) for r in rows] == [
        (v["violation_id"], "rule", "x", 1, False),
        (mr["payload"]["violation_id"], "rule", "range", 1, False),
        (s["violation_id"], "spec", None, None, False),
    ]


async def ack(probe: Probe, prefix: str, user: str, body: dict[str, object], corr: bytes) -> dict:
    reply_topic = f"{prefix}/reply/{user}/{corr.decode()}"
    await probe.request(f"{prefix}/cmd/ack/{user}", body, reply_topic, corr)
    [reply] = await probe.wait_for(reply_topic)
    [raw] = probe.matching(reply_topic)
    assert raw.properties.CorrelationData == corr
    return dict(reply)


async def test_ack_round_trip_with_mqtt5_replies(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    app = await bridge_factory.start([char(2, **FIXED)])
    await probe.publish(f"{topic_prefix}/char/2/reading", "20")
    [violation] = await probe.wait_for(f"{topic_prefix}/char/2/violation")
    vid = violation["payload"]["violation_id"]
    await probe.wait_for(f"{topic_prefix}/char/2/alarms", lambda m: m["payload"]["violations"])

    bad_reason = await ack(
        probe, topic_prefix, "alice", {"violation_id": vid, "reason": "Nap"}, b"1"
    )
    assert bad_reason["ok"] is False
    assert "reason" in bad_reason["error"]
    unknown = await ack(
        probe, topic_prefix, "alice", {"violation_id": vid + 1000, "reason": "Tool Change"}, b"2"
    )
    assert unknown == {
        "ok": False,
        "error": f"violation {vid + 1000} does not exist; nothing acknowledged",
    }
    good = await ack(
        probe, topic_prefix, "alice", {"violation_id": vid, "reason": "Tool Change"}, b"3"
    )
    assert good == {"ok": True}
    [update] = await probe.wait_for(f"{topic_prefix}/char/2/ack")
    assert update["type"] == "ack_update"
    assert update["payload"] == {
        "violation_id": vid,
        "characteristic_id": 2,
        "acknowledged": True,
        "user": "alice",
        "reason": "Tool Change",
        "cause": "Tool Change",
        "action": None,
        "comment": None,
        "timestamp": update["payload"]["timestamp"],
    }
    await probe.wait_for(
        f"{topic_prefix}/char/2/alarms", lambda m: m["payload"]["violations"] == []
    )
    second = await ack(probe, topic_prefix, "bob", {"violation_id": vid, "reason": "Other"}, b"4")
    assert second == {
        "ok": False,
        "error": f"violation {vid} is already acknowledged; nothing acknowledged",
    }
    malformed = await ack(probe, topic_prefix, "bob", {"reason": "Other"}, b"5")
    assert malformed["ok"] is False
    [row] = await app.store.rows("violations", 2)
    assert (row.acknowledged, row.ack_user, row.ack_reason) == (True, "alice", "Tool Change")
    assert len(probe.matching(f"{topic_prefix}/char/2/ack")) == 1
    errors = await probe.wait_for(f"{topic_prefix}/bridge/errors", count=4)
    assert {e["topic"] for e in errors} == {
        f"{topic_prefix}/cmd/ack/alice",
        f"{topic_prefix}/cmd/ack/bob",
    }


async def test_ack_without_response_topic_still_acknowledges(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    await bridge_factory.start([char(2, **FIXED)])
    await probe.publish(f"{topic_prefix}/char/2/reading", "20")
    [violation] = await probe.wait_for(f"{topic_prefix}/char/2/violation")
    vid = violation["payload"]["violation_id"]
    body = {"violation_id": vid, "reason": "Other", "exclude_sample": False}
    await probe.publish(f"{topic_prefix}/cmd/ack/carol", json.dumps(body))
    [update] = await probe.wait_for(f"{topic_prefix}/char/2/ack")
    assert update["payload"]["user"] == "carol"


async def test_exclude_sample_and_recalculate(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    app = await bridge_factory.start([char(1, baseline=5, rules=[1])])
    for value in (10, 12, 8, 11, 9, 30):
        await probe.publish(f"{topic_prefix}/char/1/reading", str(value))
    [violation] = await probe.wait_for(f"{topic_prefix}/char/1/violation")
    vid, sid = violation["payload"]["violation_id"], violation["payload"]["sample_id"]
    body = {"violation_id": vid, "reason": "Measurement Error", "exclude_sample": True}
    assert await ack(probe, topic_prefix, "eve", body, b"x") == {"ok": True}
    excluded = [r.id for r in await app.store.rows("samples", 1) if r.excluded]
    assert excluded == [sid]

    recalc = f"{topic_prefix}/cmd/char/1/recalculate"
    await probe.request(recalc, {}, f"{topic_prefix}/reply/eng/r1", b"r1")
    assert (await probe.wait_for(f"{topic_prefix}/reply/eng/r1")) == [{"ok": True}]
    limits = await probe.wait_for(f"{topic_prefix}/char/1/limits", count=2)
    # the last 5 non-excluded subgroups are the baseline's: the outlier is left out
    assert limits[1]["payload"]["center_line"] == 10.0
    assert limits[1]["payload"]["sample_count"] == 5

    await probe.request(recalc, {"last": 3}, f"{topic_prefix}/reply/eng/r2", b"r2")
    assert (await probe.wait_for(f"{topic_prefix}/reply/eng/r2")) == [{"ok": True}]
    limits = await probe.wait_for(f"{topic_prefix}/char/1/limits", count=3)
    assert limits[2]["payload"]["center_line"] == pytest.approx(28 / 3)
    assert limits[2]["payload"]["sample_count"] == 3

    await probe.request(recalc, {"last": 0}, f"{topic_prefix}/reply/eng/r3", b"r3")
    [bad] = await probe.wait_for(f"{topic_prefix}/reply/eng/r3")
    assert bad["ok"] is False
    unknown = f"{topic_prefix}/cmd/char/42/recalculate"
    await probe.request(unknown, {}, f"{topic_prefix}/reply/eng/r4", b"r4")
    [bad] = await probe.wait_for(f"{topic_prefix}/reply/eng/r4")
    assert bad == {"ok": False, "error": "unknown characteristic '42'"}
    assert await app.store.count("control_limits", 1) == 3


async def test_a_late_subscriber_sees_the_whole_state_at_once(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    from tests.integration.conftest import open_probe

    await bridge_factory.start([char(2, unit="mm", usl=15.0, lsl=5.0, **FIXED)], history_size=3)
    for value in ("10", "11", "20", "9", "10.5"):
        await probe.publish(f"{topic_prefix}/char/2/reading", value)
    await probe.wait_for(f"{topic_prefix}/char/2/sample", count=5)
    await probe.wait_for(
        f"{topic_prefix}/char/2/history",
        lambda m: [s["value"] for s in m["payload"]["samples"]] == [20.0, 9.0, 10.5],
    )
    async with open_probe(bridge_factory.broker, f"{topic_prefix}/#") as late:
        status, sample, limits, meta, history, alarms = [
            (await late.wait_for(f"{topic_prefix}/{leaf}"))[0]
            for leaf in (
                "bridge/status",
                "char/2/sample",
                "char/2/limits",
                "char/2/meta",
                "char/2/history",
                "char/2/alarms",
            )
        ]
        await late.wait_for(f"{topic_prefix}/bridge/metrics")
        assert all(m.retain for m in late.messages if "/metrics" not in m.topic)
    assert status["online"] is True
    assert bridge_factory.client_id not in status.values()  # nobody learns the id to take
    assert sample["payload"]["value"] == 10.5
    assert limits["payload"]["method"] == "fixed"
    assert (limits["payload"]["ucl"], limits["payload"]["lcl"]) == (13.0, 7.0)
    assert meta["type"] == "meta"
    assert set(meta["payload"]) == {
        "characteristic_id", "name", "unit", "subgroup_size", "usl", "lsl", "target",
        "baseline", "chart", "parameters", "rules", "reason_codes", "source",
        "sample_interval", "overdue_grace", "online", "timestamp",
        "cause_codes", "action_codes", "require_action",
    }  # fmt: skip
    assert set(status) == {"online", "timestamp"}
    assert set(sample["payload"]) == {
        "sample_id", "characteristic_id", "timestamp", "value", "values", "range", "zone",
        "in_control", "failed_rules", "range_failed_rules",
        "context",  # docs/topics.md, "Context"
        "limits_version", "excluded",
        "out_of_spec", "due_at",
    }  # fmt: skip
    assert set(limits["payload"]) == {
        "characteristic_id", "center_line", "ucl", "lcl", "sigma", "method", "sample_count",
        "range", "capability", "chart", "timestamp", "version",
    }  # fmt: skip
    assert meta["payload"]["unit"] == "mm"
    assert meta["payload"]["chart"] == "imr"
    assert meta["payload"]["parameters"] == {}
    assert limits["payload"]["chart"] == "imr"
    assert meta["payload"]["rules"][0]["rule_id"] == 1
    assert "Tool Change" in meta["payload"]["reason_codes"]
    assert meta["payload"]["online"] is True
    assert [s["value"] for s in history["payload"]["samples"]] == [20.0, 9.0, 10.5]
    # 20 after 11 is beyond the X chart's UCL and its moving range beyond the MR chart's,
    # and beyond the usl (15): a spec alarm
    opened = alarms["payload"]["violations"]
    assert [(v["kind"], v["rule_id"], v["chart"]) for v in opened] == [
        ("rule", 1, "x"),
        ("rule", 1, "range"),
        ("spec", None, None),
    ]


async def test_clean_stop_says_offline_and_flushes(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    app = await bridge_factory.start([char(1)])
    await probe.wait_for(f"{topic_prefix}/bridge/status", lambda m: m["online"] is True)
    await probe.publish(f"{topic_prefix}/char/1/reading", "1.5")
    await probe.wait_for(f"{topic_prefix}/char/1/sample")
    await bridge_factory.stop(app)
    [offline] = await probe.wait_for(f"{topic_prefix}/bridge/status", lambda m: not m["online"])
    assert offline["timestamp"].endswith("Z")
    history = await probe.wait_for(
        f"{topic_prefix}/char/1/history", lambda m: len(m["payload"]["samples"]) == 1
    )
    assert history[0]["payload"]["samples"][0]["value"] == 1.5


async def test_restart_restores_partial_subgroup_open_alarms_and_queued_readings(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    from tests.integration.conftest import open_probe

    chars = [char(1), char(2, **FIXED), char(5, subgroup_size=5)]
    app = await bridge_factory.start(chars)
    for value in ("1", "2", "3"):
        await probe.publish(f"{topic_prefix}/char/5/reading", value)
    await probe.publish(f"{topic_prefix}/char/2/reading", "20")
    [violation] = await probe.wait_for(f"{topic_prefix}/char/2/violation")
    await bridge_factory.crash(app)
    [will] = await probe.wait_for(f"{topic_prefix}/bridge/status", lambda m: not m["online"])
    assert will["online"] is False

    # while the bridge is down, readings queue in its persistent session
    await probe.publish(f"{topic_prefix}/char/5/reading", "4")
    await probe.publish(f"{topic_prefix}/char/1/reading", "7")

    app = await bridge_factory.start(chars)
    await probe.publish(f"{topic_prefix}/char/5/reading", "5")
    [sample] = await probe.wait_for(f"{topic_prefix}/char/5/sample")
    assert sample["payload"]["values"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    [queued] = await probe.wait_for(f"{topic_prefix}/char/1/sample")
    assert queued["payload"]["value"] == 7.0
    async with open_probe(bridge_factory.broker, f"{topic_prefix}/char/+/alarms") as late:
        [alarms] = await late.wait_for(f"{topic_prefix}/char/2/alarms")
    assert alarms["payload"]["violations"] == [violation["payload"]]
    assert alarms["payload"]["open_count"] == 1

    vid = violation["payload"]["violation_id"]
    reply = await ack(probe, topic_prefix, "alice", {"violation_id": vid, "reason": "Other"}, b"9")
    assert reply == {"ok": True}
    await probe.publish(f"{topic_prefix}/char/2/reading", "25")
    second = await probe.wait_for(f"{topic_prefix}/char/2/violation", count=2)
    assert second[1]["payload"]["violation_id"] > vid
    # the history was rebuilt from the database: the sample from before the crash is in it
    await probe.wait_for(
        f"{topic_prefix}/char/2/history",
        lambda m: [s["value"] for s in m["payload"]["samples"]] == [20.0, 25.0],
    )
    assert await app.store.count("samples", 5) == 1


async def test_a_retained_reading_is_not_taken_again_on_connect(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    await probe.publish(f"{topic_prefix}/char/1/reading", "5", retain=True)
    await probe.wait_for(f"{topic_prefix}/char/1/reading")
    app = await bridge_factory.start([char(1)])
    await probe.publish(f"{topic_prefix}/char/1/reading", "6")
    [sample] = await probe.wait_for(f"{topic_prefix}/char/1/sample")
    assert sample["payload"]["value"] == 6.0
    assert await app.store.count("readings", 1) == 1


async def test_fixed_limits_edited_in_the_config_are_published_at_start(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    app = await bridge_factory.start([char(2, **FIXED)])
    await probe.wait_for(f"{topic_prefix}/char/2/limits", lambda m: m["payload"]["ucl"] == 13.0)
    await bridge_factory.stop(app)
    wider = {**FIXED, "ucl": 14.0, "lcl": 6.0}
    app = await bridge_factory.start([char(2, **wider)])
    [limits] = await probe.wait_for(
        f"{topic_prefix}/char/2/limits", lambda m: m["payload"]["ucl"] == 14.0
    )
    assert (limits["payload"]["lcl"], limits["payload"]["method"]) == (6.0, "fixed")
    assert await app.store.latest_limits(2) == limits["payload"]
