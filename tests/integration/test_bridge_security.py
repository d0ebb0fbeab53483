"""The bridge's side of docs/security.md, against the real Mosquitto and SQLite
(and PostgreSQL): response topics, text from outside, poison messages, ids in topics, the
bounded errors topic, commands that must be refused clearly, the outgoing figures."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest

from bridge.app import Bridge
from tests.integration.conftest import BridgeFactory, Probe, char, open_probe
from tests.integration.reliability import Gauge, report

pytestmark = pytest.mark.mosquitto

FIXED = {"center_line": 10.0, "ucl": 13.0, "lcl": 7.0, "rules": [1]}


async def raise_violation(app: Bridge, probe: Probe, prefix: str, cid: int) -> int:
    await probe.publish(f"{prefix}/char/{cid}/reading", "20")
    [violation] = await probe.wait_for(f"{prefix}/char/{cid}/violation")
    return int(violation["payload"]["violation_id"])


def replies(probe: Probe) -> list[tuple[str, Any]]:
    """Every message that looks like a command's answer, wherever it went."""
    found = []
    for m in probe.messages:
        try:
            data = m.json()
        except ValueError:
            continue
        if isinstance(data, dict) and "ok" in data:
            found.append((m.topic, data))
    return found


async def settled(probe: Probe, prefix: str, marker_cid: int, value: str) -> None:
    """Everything sent before is processed: the pipeline keeps order, so once a reading sent
    last has its sample out, every earlier message has been handled."""
    await probe.publish(f"{prefix}/char/{marker_cid}/reading", value)
    await probe.wait_for(
        f"{prefix}/char/{marker_cid}/sample", lambda m: m["payload"]["values"] == [float(value)]
    )


FOREIGN = [
    "{p}/#",
    "{p}/+/x",
    "{p}/bridge/status",
    "{p}/char/1/limits",
    "spBv1.0/Plant1/NCMD/Line3",
    "spBv1.0/STATE/openspc",
    "{p}/cmd/ack/bob",
    "{p}/cmd/char/2/recalculate",
    "{p}/reply/bob/x",
    "{p}/reply//x",
]


async def test_foreign_and_wildcard_response_topics_while_a_gauge_streams(
    bridge_factory: BridgeFactory, topic_prefix: str, monkeypatch: Any
) -> None:
    """The regression of issue 10 item 3: commands whose response topic is a wildcard (or
    anyone else's topic) arrive while a gauge streams; none is answered or carried out,
    and every reading is stored exactly once."""
    p = topic_prefix
    app = await bridge_factory.start([char(1, **FIXED), char(2), char(3)])
    # everything but the stream itself (a probe that also took the 3,000 readings and their
    # samples would fall behind the broker's queue for it and lose messages)
    watched = [f"{p}/{t}" for t in ("char/1/#", "char/3/#", "bridge/#", "reply/#", "cmd/#")]
    async with open_probe(bridge_factory.broker, *watched, f"{p}/+/x", "spBv1.0/#") as probe:
        await _stream_with_foreign_replies(app, bridge_factory, probe, p, monkeypatch)


async def _stream_with_foreign_replies(
    app: Bridge, bridge_factory: BridgeFactory, probe: Probe, p: str, monkeypatch: Any
) -> None:
    vid = await raise_violation(app, probe, p, 1)
    count = 3000
    gauge = Gauge(bridge_factory.broker.port, f"{p}/char/2/reading", count, 3000.0).start()
    try:
        for i, pattern in enumerate(FOREIGN):
            await asyncio.sleep(0.03)  # spread among the readings
            body = {"violation_id": vid, "reason": "Tool Change"}
            await probe.request(f"{p}/cmd/ack/alice", body, pattern.format(p=p), b"c%d" % i)
        # a reply that fails inside paho (what a wildcard did before it was refused) touches
        # neither the batch nor the command's effect
        real_reply = app.mqtt.reply

        def broken_reply(message: Any, payload: bytes) -> None:
            raise ValueError("Publish topic cannot contain wildcards")

        monkeypatch.setattr(app.mqtt, "reply", broken_reply)
        body = {"violation_id": 999_999, "reason": "Tool Change"}
        await probe.request(f"{p}/cmd/ack/alice", body, f"{p}/reply/alice/broken", b"b")
        await asyncio.to_thread(gauge.wait_done, 30)
    finally:
        gauge.close()
    await settled(probe, p, 3, "1.0")
    monkeypatch.setattr(app.mqtt, "reply", real_reply)

    rows = await app.store.rows("readings", 2)
    assert len(rows) == count  # none lost, none twice
    assert len({r.ts for r in rows}) == count
    assert await app.store.count("samples", 2) == count
    assert app.buffered >= 0
    assert replies(probe) == []  # no answer anywhere: not on the foreign topics, not at all
    [violation] = await app.store.rows("violations", 1)
    assert violation.acknowledged is False  # refused commands change nothing
    errors = await probe.wait_for(
        f"{p}/bridge/errors", lambda e: "response topic" in e["reason"], count=len(FOREIGN)
    )
    assert all(e["topic"] == f"{p}/cmd/ack/alice" for e in errors)
    assert all("not carried out" in e["reason"] for e in errors)
    [wild] = [e for e in errors if f"'{p}/#'" in e["reason"]]
    assert "wildcard" in wild["reason"]
    await probe.wait_for(f"{p}/bridge/errors", lambda e: "reply not sent" in e["reason"])

    # the sender's own tree is answered, and the command carried out
    body = {"violation_id": vid, "reason": "Tool Change"}
    await probe.request(f"{p}/cmd/ack/alice", body, f"{p}/reply/alice/hmi-1", b"ok")
    [answer] = await probe.wait_for(f"{p}/reply/alice/hmi-1")
    assert answer == {"ok": True}
    [violation] = await app.store.rows("violations", 1)
    assert violation.acknowledged is True


async def test_a_recalculate_is_answered_in_any_one_users_tree_only(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    app = await bridge_factory.start([char(1, baseline=3)])
    for value in ("1", "2", "3"):
        await probe.publish(f"{p}/char/1/reading", value)
    await probe.wait_for(f"{p}/char/1/limits")
    await probe.request(f"{p}/cmd/char/1/recalculate", {}, f"{p}/char/1/limits", b"1")
    await probe.request(f"{p}/cmd/char/1/recalculate", {}, f"{p}/reply/+/x", b"2")
    await probe.request(f"{p}/cmd/char/1/recalculate", {}, f"{p}/reply/eng/r", b"3")
    assert await probe.wait_for(f"{p}/reply/eng/r") == [{"ok": True}]
    errors = await probe.wait_for(
        f"{p}/bridge/errors", lambda e: "response topic" in e["reason"], count=2
    )
    assert {e["topic"] for e in errors} == {f"{p}/cmd/char/1/recalculate"}
    assert [t for t, _ in replies(probe)] == [f"{p}/reply/eng/r"]
    assert await app.store.count("control_limits", 1) == 2  # the baseline's, and one more


# --- text from outside and poison messages ---------------------------------------------


async def test_bad_text_in_a_reading_is_refused_at_the_door(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    app = await bridge_factory.start([char(1), char(2)])
    for body in (
        {"value": 1.5, "batch": "\ud800"},
        {"value": 1.5, "operator": "a\u0000b"},
        {"value": 1.5, "batch": "b" * 201},
    ):
        await probe.publish(f"{p}/char/1/reading", json.dumps(body))
    await probe.publish(f"{p}/char/1/reading", json.dumps({"value": 2.5, "batch": "B7"}))
    await settled(probe, p, 2, "1.0")
    errors = await probe.wait_for(f"{p}/bridge/errors", count=3)
    assert [e["reason"] for e in errors] == [
        "batch is not valid UTF-8 text (a lone surrogate at character 0)",
        "operator contains a NUL character",
        "batch is too long: 201 characters, limit is 200",
    ]
    rows = await app.store.rows("readings", 1)
    assert [(r.value, r.batch) for r in rows] == [(2.5, "B7")]
    assert await app.store.dead_letters() == []


async def test_a_poison_message_past_validation_is_dead_lettered_and_the_rest_stored(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str, monkeypatch: Any
) -> None:
    """Issue 10 item 2 with the door left open (the validator patched out): the batch that
    holds the poison fails to write; it is bisected, the poison kept as a dead letter and
    reported, every other reading of the batch stored, and the bridge goes on."""
    p = topic_prefix
    monkeypatch.setattr("bridge.readings.text_fault", lambda *a, **k: None)
    # batch and operator join the reading's context, which checks its text too
    monkeypatch.setattr("engine.alarms._context.text_fault", lambda *a, **k: None)
    app = await bridge_factory.start([char(1), char(2)])
    postgres = app.store.engine.dialect.name == "postgresql"
    await bridge_factory.stop(app)
    # queued in the bridge's session while it is down: they arrive as one batch
    for i in range(5):
        await probe.publish(f"{p}/char/2/reading", str(100 + i))
    poison = [json.dumps({"value": 1.5, "batch": "\ud800"}).encode()]
    if postgres:  # SQLite stores a NUL; PostgreSQL refuses it
        poison.append(json.dumps({"value": 1.6, "operator": "a\u0000b"}).encode())
    for payload in poison:
        await probe.publish(f"{p}/char/1/reading", payload)
    for i in range(3):
        await probe.publish(f"{p}/char/1/reading", str(10 + i))
        await probe.publish(f"{p}/char/2/reading", str(200 + i))
    app = await bridge_factory.start([char(1), char(2)])
    await settled(probe, p, 2, "300")

    letters = await app.store.dead_letters()
    assert [(d["topic"], bytes(d["payload"])) for d in letters] == [
        (f"{p}/char/1/reading", payload) for payload in poison
    ]
    assert "surrogates not allowed" in letters[0]["reason"]
    if postgres:
        assert "0x00" in letters[1]["reason"]
    assert all(d["payload_size"] == len(d["payload"]) for d in letters)
    reports = await probe.wait_for(
        f"{p}/bridge/errors", lambda e: "dead letter" in e["reason"], count=len(poison)
    )
    assert all(r["topic"] == f"{p}/char/1/reading" for r in reports)
    assert [r.value for r in await app.store.rows("readings", 1)] == [10.0, 11.0, 12.0]
    assert [r.value for r in await app.store.rows("samples", 1)] == [10.0, 11.0, 12.0]
    values2 = [r.value for r in await app.store.rows("readings", 2)]
    assert values2 == [100.0, 101.0, 102.0, 103.0, 104.0, 200.0, 201.0, 202.0, 300.0]
    assert app.metrics.dead_letters == len(poison)
    # nothing retried as an outage, nothing stuck: the next reading goes straight in
    assert not [m for m in probe.matching(f"{p}/bridge/errors") if "unavailable" in m.json()]
    await settled(probe, p, 1, "13")
    # and after a restart nothing comes again (the poison was acknowledged)
    await bridge_factory.stop(app)
    app = await bridge_factory.start([char(1), char(2)])
    await settled(probe, p, 1, "14")
    assert len(await app.store.dead_letters()) == len(poison)
    assert await app.store.count("readings", 1) == 5


# --- ids, the errors topic, commands, figures ------------------------------------------


async def test_ids_in_topics_are_plain_ascii_digits(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    app = await bridge_factory.start([char(1), char(2)])
    for key in ("02", "\u0662", " 1", "1 ", "01"):
        await probe.publish(f"{p}/char/{key}/reading", "1.0")
    await settled(probe, p, 2, "5.0")
    errors = await probe.wait_for(f"{p}/bridge/errors", count=5)
    assert all("unknown characteristic" in e["reason"] for e in errors)
    assert await app.store.count("readings", 1) == 0
    assert [r.value for r in await app.store.rows("readings", 2)] == [5.0]


def flood_unknown_ids(port: int, prefix: str, count: int, ids: int) -> None:
    """``count`` QoS 1 readings to ``ids`` different unknown characteristics, round robin,
    as fast as the broker takes them; returns once the broker has acknowledged them all."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    done = threading.Event()
    acked = [0]

    def on_publish(*_: Any) -> None:
        acked[0] += 1
        if acked[0] == count:
            done.set()

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"flood-{prefix[-8:]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for i in range(count):
            client.publish(f"{prefix}/char/{100_000 + i % ids}/reading", "1.0", qos=1)
        assert done.wait(60), f"the broker acknowledged {acked[0]} of {count}"
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.slow
async def test_an_error_flood_is_bounded_and_good_readings_go_on(
    bridge_factory: BridgeFactory, topic_prefix: str
) -> None:
    """20,000 readings to 2,000 unknown ids: at most 61 error messages per 5 s window (10 at
    once, 50 coalesced per topic and reason, one for the rest), their counts adding up,
    while the good readings of a known characteristic go on being stored."""
    p = topic_prefix
    app = await bridge_factory.start([char(1)])
    flood = 20_000
    port = bridge_factory.broker.port
    good = Gauge(port, f"{p}/char/1/reading", 20, 10.0)
    async with open_probe(bridge_factory.broker, f"{p}/bridge/errors") as probe:
        try:
            good.start()
            await asyncio.to_thread(flood_unknown_ids, port, p, flood, 2000)
            await asyncio.to_thread(good.wait_done, 60)
        finally:
            good.close()

        def counted() -> int:
            return sum(m.json()["count"] for m in probe.matching(f"{p}/bridge/errors"))

        await probe.wait_until(lambda: counted() >= flood, within=30)
        errors = [m.json() for m in probe.matching(f"{p}/bridge/errors")]
    assert counted() == flood
    assert all(e["count"] >= 1 for e in errors)
    span = _seconds(errors[-1]["timestamp"]) - _seconds(errors[0]["timestamp"])
    windows = math.floor(span / 5.0) + 2
    assert len(errors) <= 61 * windows, (len(errors), span)
    assert len(errors) < 1000
    rest = [e for e in errors if e["topic"] == ""]
    assert rest  # 2,000 topics: most of them summed up in one message a window
    assert all("more rejected inputs" in e["reason"] for e in rest)
    report(
        f"error flood: {flood} readings to 2,000 unknown ids -> {len(errors)} messages on "
        f"errors over {span:.1f} s ({sum(1 for e in errors if e['summary'])} summaries, "
        f"{sum(e['count'] for e in rest)} rejections in {len(rest)} 'the rest'), counts exact"
    )
    assert await app.store.count("readings", 1) == 20
    assert app.metrics.readings_rejected == flood


def _digits(x: float) -> int:
    """Significant digits of a number as JSON spells it (no exponent here)."""
    return len(repr(abs(x)).replace(".", "").lstrip("0"))


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_bad_commands_are_refused_clearly_never_an_internal_error(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    await bridge_factory.start([char(1, **FIXED)])
    huge = "x" * 900_000  # the test broker takes packets up to 1 MiB (5 MB: tests/unit)
    bodies: list[bytes] = [
        b"[" * 50_000 + b"]" * 50_000,
        json.dumps({"violation_id": {"a": {"b": [[[1]]]}}, "reason": "Other"}).encode(),
        json.dumps({"violation_id": 2**63, "reason": "Other"}).encode(),
        json.dumps({"violation_id": 2**63 - 1, "reason": "Other"}).encode(),
        json.dumps({"violation_id": 10.0, "reason": "Other"}).encode(),
        json.dumps({"violation_id": True, "reason": "Other"}).encode(),
        json.dumps({"violation_id": 1, "reason": huge}).encode(),
    ]
    for i, body in enumerate(bodies):
        await probe.client.publish(
            f"{p}/cmd/ack/alice", body, qos=1, properties=_reply_props(f"{p}/reply/alice/{i}")
        )
    answers = []
    for i in range(len(bodies)):
        [raw] = await probe.wait_for(f"{p}/reply/alice/{i}")
        answers.append(raw)
    assert all(a["ok"] is False for a in answers)
    assert all("internal error" not in a["error"] for a in answers)
    assert "nested too deeply" in answers[0]["error"]
    assert "must be an integer" in answers[1]["error"]
    assert "must be an integer" in answers[2]["error"]
    assert "does not exist" in answers[3]["error"]  # the largest id is a fine id
    assert all("must be an integer" in a["error"] for a in answers[4:6])
    assert "is not one of the configured cause_codes" in answers[6]["error"]
    sizes = [len(m.payload) for m in probe.matching(f"{p}/reply/alice/+")]
    sizes += [len(m.payload) for m in probe.matching(f"{p}/bridge/errors")]
    assert max(sizes) < 2000  # a 900 KB reason comes back as nothing like it
    errors = [m.json() for m in probe.matching(f"{p}/bridge/errors")]
    assert not [e for e in errors if "internal error" in e["reason"]]


def _reply_props(topic: str) -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = topic
    props.CorrelationData = b"x"
    return props


async def test_publish_outstanding_counts_only_qos1_and_is_never_negative(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    app = await bridge_factory.start([char(1)])
    for i in range(50):
        await probe.publish(f"{p}/char/1/reading", str(i))
    await probe.wait_for(f"{p}/char/1/sample", count=50)
    # metrics go out at QoS 0 every 0.5 s: several of them, the last with nothing in flight
    await probe.wait_for(
        f"{p}/bridge/metrics",
        lambda m: m["samples"] == 50 and m["publish_outstanding"] == 0,
        count=3,
    )
    seen = [m.json()["publish_outstanding"] for m in probe.matching(f"{p}/bridge/metrics")]
    assert min(seen) >= 0  # QoS 0 publishes counted as completed made it go negative
    assert app.mqtt.outstanding >= 0


async def test_figures_carry_no_binary_noise_live_and_after_a_restart(
    bridge_factory: BridgeFactory, probe: Probe, topic_prefix: str
) -> None:
    p = topic_prefix
    chars = [char(1, baseline=3), char(2, subgroup_size=3)]
    app = await bridge_factory.start(chars)
    for value in ("0.1", "0.2", "0.3", "0.12345678901234"):
        await probe.publish(f"{p}/char/1/reading", value)
    for value in ("0.1", "0.2", "0.4"):
        await probe.publish(f"{p}/char/2/reading", value)
    ones = await probe.wait_for(f"{p}/char/1/sample", count=4)
    assert [s["payload"]["value"] for s in ones] == [0.1, 0.2, 0.3, 0.12345678901234]
    # 0.3 - 0.2 is 0.09999999999999998 in binary
    assert [s["payload"]["range"] for s in ones] == [None, 0.1, 0.1, 0.1765432110]
    [two] = await probe.wait_for(f"{p}/char/2/sample")
    assert two["payload"]["values"] == [0.1, 0.2, 0.4]
    assert (two["payload"]["value"], two["payload"]["range"]) == (0.2333333333, 0.3)
    [limits] = await probe.wait_for(f"{p}/char/1/limits")
    for key in ("center_line", "ucl", "lcl", "sigma"):
        assert _digits(limits["payload"][key]) <= 10, limits["payload"]
    await bridge_factory.stop(app)
    probe.messages.clear()
    await bridge_factory.start(chars)
    [history] = await probe.wait_for(f"{p}/char/2/history")
    assert history["payload"]["samples"][-1]["value"] == 0.2333333333
    [history] = await probe.wait_for(f"{p}/char/1/history")
    assert [s["range"] for s in history["payload"]["samples"]] == [None, 0.1, 0.1, 0.1765432110]
