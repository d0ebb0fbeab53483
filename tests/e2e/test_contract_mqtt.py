"""From outside: topics, readings, rejections, commands, restart (docs/topics.md).

One ``openspc run`` subprocess per module, five characteristics, a configured (non-default)
topic prefix; gauges publish with MQTT 3.1.1, the HMI side uses MQTT 5. The tests run in
file order and build on each other's readings, as a shift on the shop floor would.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge._mosquitto import MosquittoProcess

from . import reference as ref
from .conftest import Client, Msg, Plant, now_utc, parse_iso_z, unique_prefix

pytestmark = [pytest.mark.e2e, pytest.mark.mosquitto]

DEFAULT_REASONS = [
    "Tool Change",
    "Raw Material Change",
    "Setup Adjustment",
    "Measurement Error",
    "Process Adjustment",
    "Environmental Factor",
    "Operator Error",
    "Equipment Malfunction",
    "False Alarm",
    "Under Investigation",
    "Other",
]
HISTORY = 10


@dataclass
class Shop:
    plant: Plant
    hmi: Client  # MQTT 5, subscribed to the prefix
    gauge: Client  # MQTT 3.1.1
    vendor_topic: str
    rng: random.Random
    sent: dict[int, list[list[float]]] = field(default_factory=dict)  # stored subgroups

    @property
    def prefix(self) -> str:
        return self.plant.prefix

    def t(self, leaf: str) -> str:
        return f"{self.prefix}/{leaf}"

    def samples(self, cid: int) -> list[dict[str, Any]]:
        """Distinct samples in order (a restart republishes the last one, retained)."""
        out: dict[int, dict[str, Any]] = {}
        for m in self.hmi.matching(self.t(f"char/{cid}/sample")):
            p = m.json()["payload"]
            out.setdefault(p["sample_id"], p)
        return list(out.values())

    def next_sample(self, cid: int, publish: Any) -> dict[str, Any]:
        """Run ``publish()`` and return the one new sample of ``cid`` it causes."""
        known = {p["sample_id"] for p in self.samples(cid)}
        publish()
        [msg] = self.hmi.wait_msgs(
            self.t(f"char/{cid}/sample"), lambda d: d["payload"]["sample_id"] not in known
        )
        data: dict[str, Any] = msg.json()["payload"]
        return data

    def subgroup(self, cid: int, values: list[float], ts_ms: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"values": values}
        if ts_ms is not None:
            body["ts"] = ts_ms
        sample = self.next_sample(
            cid, lambda: self.gauge.publish(self.t(f"char/{cid}/reading"), json.dumps(body))
        )
        self.sent.setdefault(cid, []).append(values)
        return sample

    def errors_after(self, count: int) -> list[dict[str, Any]]:
        return [m.json() for m in self.hmi.matching(self.t("bridge/errors"))][count:]


@pytest.fixture(scope="module")
def shop(mosquitto: MosquittoProcess, module_tmp: Path) -> Iterator[Shop]:
    prefix = unique_prefix()
    vendor = f"plant-{uuid.uuid4().hex[:8]}/line3/gauge7/od"
    chars: list[dict[str, Any]] = [
        {"id": 1, "name": "Bore", "unit": "mm", "baseline": 5, "usl": 10.1, "lsl": 9.9},
        {
            "id": 2,
            "name": "Shaft OD",
            "unit": "mm",
            "topic": vendor,
            "value_path": "data.od",
            "subgroup_size": 5,
            "baseline": 3,
            "usl": 10.05,
            "lsl": 9.95,
            "rules": "nelson",
        },
        {"id": 3, "name": "Wall", "subgroup_size": 5, "baseline": 3},
        {"id": 4, "name": "Length", "unit": "mm", "subgroup_size": 5, "usl": 10.1, "lsl": 9.9},
        {
            "id": 5,
            "name": "Weight",
            "unit": "g",
            "topic": vendor + "/weight",  # its own topic, standard forms (no value_path)
            "subgroup_size": 3,
            "rules": [1, 2],
        },
    ]
    plant = Plant(
        mosquitto,
        prefix,
        module_tmp,
        chars,
        {"history_size": HISTORY, "metrics_interval": 0.5},
    )
    with Client(mosquitto.port) as hmi, Client(mosquitto.port, v5=False) as gauge:
        hmi.subscribe(f"{prefix}/#", vendor)
        plant.start(hmi)
        try:
            yield Shop(plant, hmi, gauge, vendor, random.Random(0xE2E))
        finally:
            proc = plant.proc.process if plant.proc else None
            if proc is not None and proc.poll() is None:
                plant.stop()


def gauss(shop: Shop, n: int, mu: float = 10.0, sd: float = 0.01) -> list[float]:
    return [round(shop.rng.gauss(mu, sd), 6) for _ in range(n)]


# --- readings (docs/topics.md) ---------------------------------------------------------


def test_every_accepted_reading_form_makes_samples(shop: Shop) -> None:
    t0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
    # bare numbers and {"value"} with batch and operator, one subgroup of 5
    g = gauss(shop, 5)

    def five() -> None:
        shop.gauge.publish(shop.t("char/3/reading"), f"  {g[0]!r}\n")
        shop.gauge.publish(shop.t("char/3/reading"), json.dumps({"value": g[1]}))
        shop.gauge.publish(
            shop.t("char/3/reading"),
            json.dumps({"value": g[2], "batch": "L-7", "operator": "kim"}),
        )
        shop.gauge.publish(shop.t("char/3/reading"), "\ufeff".encode() + repr(g[3]).encode())
        ts = (t0 + timedelta(seconds=4)).isoformat()
        shop.gauge.publish(shop.t("char/3/reading"), json.dumps({"value": g[4], "ts": ts}))

    sample = shop.next_sample(3, five)
    assert sample["values"] == g
    assert parse_iso_z(sample["timestamp"]) == t0 + timedelta(seconds=4)
    shop.sent.setdefault(3, []).append(g)

    # any epoch milliseconds, even small ones, are the sample's time
    small = shop.subgroup(3, gauss(shop, 5), ts_ms=1500)
    assert small["timestamp"] == "1970-01-01T00:00:01.500Z"

    # a whole subgroup at once, and the vendor's JSON on the characteristic's own topic
    for k in range(2):
        s = shop.subgroup(3, gauss(shop, 5), ts_ms=int((t0.timestamp() + 10 + k) * 1000))
        assert parse_iso_z(s["timestamp"]) == t0 + timedelta(seconds=10 + k)
    vendor_values = gauss(shop, 5)

    def vendor() -> None:
        for j, x in enumerate(vendor_values):
            body = {"data": {"od": x, "id": 6.02}, "ts": int(t0.timestamp() * 1000) + j}
            shop.gauge.publish(shop.vendor_topic, json.dumps(body))

    sample = shop.next_sample(2, vendor)
    assert sample["values"] == vendor_values
    assert sample["characteristic_id"] == 2
    assert parse_iso_z(sample["timestamp"]) == t0 + timedelta(milliseconds=4)


def test_without_ts_the_sample_time_is_the_arrival(shop: Shop) -> None:
    before = now_utc()
    g = gauss(shop, 3)
    sample = shop.next_sample(
        5, lambda: shop.gauge.publish(shop.t("char/5/reading"), json.dumps({"values": g}))
    )
    after = now_utc()
    t = parse_iso_z(sample["timestamp"])
    assert before - timedelta(milliseconds=2) <= t <= after

    # the same forms on the characteristic's own topic, mixed with its standard topic
    own = shop.vendor_topic + "/weight"
    g = gauss(shop, 3)

    def mixed() -> None:
        shop.gauge.publish(own, repr(g[0]))
        shop.gauge.publish(shop.t("char/5/reading"), json.dumps({"value": g[1]}))
        shop.gauge.publish(own, json.dumps({"value": g[2], "ts": 1_780_000_000_123}))

    sample = shop.next_sample(5, mixed)
    assert sample["values"] == g
    assert sample["timestamp"] == "2026-05-28T20:26:40.123Z"
    g = gauss(shop, 3)
    sample = shop.next_sample(5, lambda: shop.gauge.publish(own, json.dumps({"values": g})))
    assert sample["values"] == g


REJECTS: list[tuple[str, str | bytes, str]] = [
    ("char/3/reading", "abc", "not a number"),
    ("char/3/reading", "NaN", "nan"),
    ("char/3/reading", "nan", "nan"),
    ("char/3/reading", "-Infinity", "inf"),
    ("char/3/reading", "inf", "inf"),
    ("char/3/reading", '{"value": NaN}', "nan"),
    ("char/3/reading", '{"value": 1e999}', ""),
    ("char/3/reading", '{"value": "10.5"}', ""),
    ("char/3/reading", '{"value": true}', ""),
    ("char/3/reading", "10,5", ""),
    ("char/3/reading", '{"vaule": 10.5}', ""),
    ("char/3/reading", "[10.5]", ""),
    ("char/3/reading", '{"values": [10.0, 10.1, 10.2]}', "count"),
    ("char/3/reading", '{"values": [10.0, 10.1, 10.2, 10.3, 10.4, 10.5]}', "count"),
    ("char/3/reading", '{"values": [10.0, 10.1, NaN, 10.3, 10.4]}', ""),
    ("char/3/reading", b"\xff\xfe10.5", ""),
    ("char/3/reading", '{"value": 10.5, "ts": "2026-04-01T08:00:00"}', ""),
    ("char/3/reading", "", ""),
    ("char/999/reading", "10.5", "unknown characteristic"),
    ("char/abc/reading", "10.5", ""),
    ("VENDOR", '{"data": {"id": 6.02}}', ""),
    ("VENDOR", '{"data": {"od": "10.5"}}', ""),
    ("char/3/reading", '{"value": 10.5, "pad": "' + "x" * 70_000 + '"}', ""),
]


def where(shop: Shop, leaf: str) -> str:
    return shop.vendor_topic if leaf == "VENDOR" else shop.t(leaf)


def test_rejections_go_to_errors_are_counted_never_stored_and_the_bridge_goes_on(
    shop: Shop,
) -> None:
    errors_before = len(shop.hmi.matching(shop.t("bridge/errors")))
    samples_before = len(shop.samples(3))
    metrics_before = [m.json() for m in shop.hmi.matching(shop.t("bridge/metrics"))]
    rejected_before = metrics_before[-1]["readings_rejected"] if metrics_before else 0
    for leaf, payload, _ in REJECTS:
        shop.gauge.publish(where(shop, leaf), payload)
    shop.hmi.wait_msgs(shop.t("bridge/errors"), count=errors_before + len(REJECTS))
    good = gauss(shop, 5)
    sample = shop.subgroup(3, good)
    # no rejected value entered a subgroup, and none made a sample
    assert sample["values"] == good
    assert len(shop.samples(3)) == samples_before + 1

    errors = shop.errors_after(errors_before)
    assert len(errors) == len(REJECTS)
    for err, (leaf, payload, why) in zip(errors, REJECTS, strict=True):
        assert err["topic"] == where(shop, leaf)
        assert isinstance(err["reason"], str)
        assert err["reason"], err
        assert why.lower() in err["reason"].lower(), (err["reason"], why)
        text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
        assert isinstance(err["payload"], str)
        assert len(err["payload"]) <= 210, "payload is truncated"
        assert text.startswith(err["payload"].removesuffix("..."))
        parse_iso_z(err["timestamp"])
    for m in shop.hmi.matching(shop.t("bridge/errors"))[errors_before:]:
        assert m.qos == 1

    metrics = shop.hmi.wait_for(
        shop.t("bridge/metrics"),
        lambda d: d.get("readings_rejected", -1) >= rejected_before + len(REJECTS),
    )
    assert metrics


# --- commands (docs/topics.md, docs/bridge.md) -------------------------------------------


def raise_alarms(shop: Shop, count: int) -> list[dict[str, Any]]:
    """Individuals on characteristic 1: a calm baseline, then outliers with calm points between."""
    if not shop.samples(1):
        for x in [10.0, 10.01, 9.99, 10.02, 9.98, 10.0]:
            shop.next_sample(1, lambda x=x: shop.gauge.publish(shop.t("char/1/reading"), repr(x)))
    outliers = set()
    for _ in range(count):
        out = shop.next_sample(1, lambda: shop.gauge.publish(shop.t("char/1/reading"), "10.5"))
        assert 1 in out["failed_rules"]
        outliers.add(out["sample_id"])
        back = shop.next_sample(1, lambda: shop.gauge.publish(shop.t("char/1/reading"), "10.0"))
        assert 1 not in back["failed_rules"]  # re-armed

    def x_rule1(d: dict[str, Any]) -> bool:
        p = d["payload"]
        return bool(p["chart"] == "x" and p["rule_id"] == 1 and p["sample_id"] in outliers)

    got = shop.hmi.wait_for(shop.t("char/1/violation"), x_rule1, count=count)
    shop.hmi.marker(shop.prefix)
    assert (
        len([m for m in shop.hmi.matching(shop.t("char/1/violation")) if x_rule1(m.json())])
        == count
    )
    return [d["payload"] for d in got]


def test_acknowledgements_with_every_default_reason_broadcast_and_update_alarms(
    shop: Shop, listener_factory: Callable[..., Client]
) -> None:
    raised = raise_alarms(shop, len(DEFAULT_REASONS))
    assert len(raised) == len(DEFAULT_REASONS)
    shop.hmi.wait_for(
        shop.t("char/1/alarms"),
        lambda d: (
            {v["violation_id"] for v in raised}
            <= {v["violation_id"] for v in d["payload"]["violations"]}
        ),
    )
    acks_before = len(shop.hmi.matching(shop.t("char/1/ack")))
    other_hmi = listener_factory(shop.t("char/+/ack"), v5=False)  # a second panel
    for k, (v, reason) in enumerate(zip(raised, DEFAULT_REASONS, strict=True)):
        user = f"op{k}"
        body = {"violation_id": v["violation_id"], "reason": reason, "exclude_sample": False}
        shop.gauge.publish(shop.t(f"cmd/ack/{user}"), json.dumps(body))  # MQTT 3.1.1
        vid: int = v["violation_id"]
        [upd] = shop.hmi.wait_for(
            shop.t("char/+/ack"),
            lambda d, vid=vid: bool(d["payload"]["violation_id"] == vid),  # type: ignore[misc]
        )
        assert upd["type"] == "ack_update"
        p = upd["payload"]
        assert p["characteristic_id"] == 1
        assert p["acknowledged"] is True
        assert (p["user"], p["reason"]) == (user, reason)
        parse_iso_z(p["timestamp"])
    acks = shop.hmi.matching(shop.t("char/1/ack"))[acks_before:]
    assert len(acks) == len(DEFAULT_REASONS)
    assert all(m.qos == 1 for m in acks)
    # broadcast: every HMI subscribed to char/+/ack hears every update
    seen = other_hmi.wait_msgs(shop.t("char/+/ack"), count=len(DEFAULT_REASONS))
    assert [m.payload for m in seen] == [m.payload for m in acks]
    acked = {v["violation_id"] for v in raised}
    [alarms] = shop.hmi.wait_for(
        shop.t("char/1/alarms"),
        lambda d: not acked & {v["violation_id"] for v in d["payload"]["violations"]},
    )
    assert alarms["payload"]["characteristic_id"] == 1


def test_mqtt5_commands_get_answers_and_refusals_change_nothing(shop: Shop) -> None:
    [first, second] = raise_alarms(shop, 2)
    tag = uuid.uuid4().hex[:6]

    def ask(user: str, body: dict[str, Any]) -> tuple[dict[str, Any], Msg]:
        reply = shop.t(f"reply/{user}/{tag}")  # the sender's own reply tree
        corr = uuid.uuid4().bytes
        before = len(shop.hmi.matching(reply))
        shop.hmi.request(shop.t(f"cmd/ack/{user}"), body, reply, corr)
        msgs = shop.hmi.wait_msgs(reply, count=before + 1)
        msg = msgs[before]
        assert msg.properties is not None
        assert msg.properties.CorrelationData == corr
        answer: dict[str, Any] = msg.json()
        return answer, msg

    acks_before = len(shop.hmi.matching(shop.t("char/+/ack")))
    ok, _ = ask("alice", {"violation_id": first["violation_id"], "reason": "Tool Change"})
    assert ok == {"ok": True}
    [upd] = shop.hmi.wait_for(
        shop.t("char/1/ack"), lambda d: d["payload"]["violation_id"] == first["violation_id"]
    )
    assert upd["payload"]["user"] == "alice"

    refusals = [
        ("bob", {"violation_id": first["violation_id"], "reason": "Other"}),  # second ack
        ("bob", {"violation_id": 987_654_321, "reason": "Other"}),  # unknown violation
        ("bob", {"violation_id": second["violation_id"], "reason": "Coffee Break"}),
        ("bob", {"violation_id": second["violation_id"]}),
    ]
    for user, body in refusals:
        answer, _ = ask(user, body)
        assert answer["ok"] is False, body
        assert isinstance(answer["error"], str)
        assert answer["error"], body
    shop.hmi.marker(shop.prefix)
    # nothing changed: no ack_update beyond alice's, the second violation still open
    assert len(shop.hmi.matching(shop.t("char/+/ack"))) == acks_before + 1
    last_alarms = shop.hmi.matching(shop.t("char/1/alarms"))[-1].json()["payload"]
    open_ids = {v["violation_id"] for v in last_alarms["violations"]}
    assert second["violation_id"] in open_ids
    assert first["violation_id"] not in open_ids


def test_alarms_list_exactly_the_open_violations_of_both_charts(shop: Shop) -> None:
    def distinct(leaf: str) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for m in shop.hmi.matching(shop.t(f"char/1/{leaf}")):
            p = m.json()["payload"]
            out.setdefault(p["violation_id"], p)
        return out

    raised = distinct("violation")
    acked = set(distinct("ack"))
    open_range = [v for vid, v in raised.items() if v["chart"] == "range" and vid not in acked]
    assert open_range, "the outliers raised range-chart violations too"
    vid = open_range[0]["violation_id"]
    shop.hmi.publish(shop.t("cmd/ack/erin"), json.dumps({"violation_id": vid, "reason": "Other"}))
    shop.hmi.wait_for(shop.t("char/1/ack"), lambda d: d["payload"]["violation_id"] == vid)
    acked.add(vid)
    want = sorted(set(raised) - acked)
    [alarms] = shop.hmi.wait_for(
        shop.t("char/1/alarms"),
        lambda d: sorted(v["violation_id"] for v in d["payload"]["violations"]) == want,
    )
    for v in alarms["payload"]["violations"]:
        assert v.items() >= raised[v["violation_id"]].items()


def recalc_expected(subgroups: list[list[float]], n: int, lim_payload: dict[str, Any]) -> None:
    want = ref.compute_limits(subgroups, n, 10.1, 9.9)
    assert lim_payload["sample_count"] == len(subgroups)
    for key, value in (("center_line", want.center_line),):
        assert ref.rel_close(lim_payload[key], value), (key, lim_payload[key], value)
    assert ref.rel_close(lim_payload["range"]["center_line"], want.r_center)
    half = 3 * lim_payload["sigma"] / math.sqrt(n)
    assert ref.rel_close(lim_payload["ucl"], lim_payload["center_line"] + half)
    assert abs(lim_payload["sigma"] - want.sigma) <= 6e-4 * want.sigma
    cap = lim_payload["capability"]
    assert want.capability is not None
    assert ref.rel_close(cap["pp"], want.capability["pp"])
    assert ref.rel_close(cap["ppk"], want.capability["ppk"])


def test_recalculate_all_and_last_n_excluding_acknowledged_samples(shop: Shop) -> None:
    n = 5
    # baseline of 25 (the default), then 10 live subgroups, one of them wild
    for _ in range(25):
        shop.subgroup(4, gauss(shop, n))
    [baseline_lim] = shop.hmi.wait_for(shop.t("char/4/limits"))
    assert baseline_lim["payload"]["sample_count"] == 25
    live: list[list[float]] = []
    wild_index = 6
    for i in range(10):
        g = gauss(shop, n, mu=10.2 if i == wild_index else 10.0)
        s = shop.subgroup(4, g)
        live.append(g)
        if i == wild_index:
            wild_sample = s
    [wild_v] = shop.hmi.wait_for(
        shop.t("char/4/violation"),
        lambda d: (
            d["payload"]["sample_id"] == wild_sample["sample_id"]
            and d["payload"]["rule_id"] == 1
            and d["payload"]["chart"] == "x"
        ),
    )
    body = {
        "violation_id": wild_v["payload"]["violation_id"],
        "reason": "Measurement Error",
        "exclude_sample": True,
    }
    shop.gauge.publish(shop.t("cmd/ack/carol"), json.dumps(body))
    shop.hmi.wait_for(
        shop.t("char/4/ack"),
        lambda d: d["payload"]["violation_id"] == wild_v["payload"]["violation_id"],
    )

    everything = shop.sent[4]
    usable = [g for g in everything if g is not live[wild_index]]
    reply = shop.t("reply/engineer/recalc")

    def recalc(body: dict[str, Any]) -> dict[str, Any]:
        before = len(shop.hmi.matching(shop.t("char/4/limits")))
        replies = len(shop.hmi.matching(reply))
        corr = uuid.uuid4().bytes
        shop.hmi.request(shop.t("cmd/char/4/recalculate"), body, reply, corr)
        answer = shop.hmi.wait_msgs(reply, count=replies + 1)[replies]
        assert answer.properties.CorrelationData == corr
        assert answer.json() == {"ok": True}
        msgs = shop.hmi.wait_msgs(shop.t("char/4/limits"), count=before + 1)
        data: dict[str, Any] = msgs[before].json()
        assert data["type"] == "control_limits"
        payload: dict[str, Any] = data["payload"]
        return payload

    lim = recalc({"last": 7})
    recalc_expected(usable[-7:], n, lim)
    lim = recalc({})
    recalc_expected(usable[-25:], n, lim)

    # the limits hold until the next recalculation: every later point is judged against
    # them, its rules looking back over earlier points (this reference classifies the whole
    # window against the limits in force, and alarm episodes carry on across a recalculation)
    first_after = len(shop.sent[4])
    for k in range(16):
        shop.subgroup(4, gauss(shop, n, mu=10.011 if 3 <= k < 13 else 10.0))
    shop.hmi.marker(shop.prefix)
    samples = shop.samples(4)
    assert len(samples) == len(shop.sent[4])
    points = ref.make_points(shop.sent[4])
    schedule = [
        (25, ref.limits_from_payload(baseline_lim["payload"], n)),
        (first_after, ref.limits_from_payload(lim, n)),
    ]
    want_v = ref.stream(points, schedule, dict(ref.NELSON))
    for p, body in zip(points[25:], samples[25:], strict=True):
        got = (body["zone"], body["failed_rules"], body["range_failed_rules"])
        assert got == (p.zone, p.failed_rules, p.range_failed_rules), p.index
    assert {r for p in points[first_after:] for r in p.failed_rules} >= {2, 5, 6}
    index = {b["sample_id"]: i for i, b in enumerate(samples)}
    got_v: dict[int, tuple[int, int, str]] = {}
    for m in shop.hmi.matching(shop.t("char/4/violation")):
        v = m.json()["payload"]
        if v["kind"] != "rule":  # the run rules' alarms (spec alarms: test_contract_alarms.py)
            continue
        got_v[v["violation_id"]] = (index[v["sample_id"]], v["rule_id"], v["chart"])
    assert sorted(got_v.values()) == sorted((v.index, v.rule_id, v.chart) for v in want_v)


def test_recalculate_refusals_answer_with_an_error(shop: Shop) -> None:
    reply = shop.t("reply/engineer/recalc-bad")
    cases: list[tuple[int, dict[str, Any]]] = [
        (4, {"last": 0}),
        (4, {"last": "many"}),
        (999, {}),
    ]
    for cid, body in cases:
        corr = uuid.uuid4().bytes
        before = len(shop.hmi.matching(reply))
        shop.hmi.request(shop.t(f"cmd/char/{cid}/recalculate"), body, reply, corr)
        msg = shop.hmi.wait_msgs(reply, count=before + 1)[before]
        assert msg.properties.CorrelationData == corr
        answer = msg.json()
        assert answer["ok"] is False, body
        assert answer["error"], body


# --- topics, QoS, retained, envelope, types (docs/topics.md) ------------------------------

QOS = {
    "sample": 1,
    "violation": 1,
    "ack": 1,
    "limits": 1,
    "meta": 1,
    "history": 1,
    "causes": 1,  # the Pareto of causes (CONTRACT section 8)
    "alarms": 1,
}
TYPES = {
    "sample": "sample",
    "violation": "violation",
    "ack": "ack_update",
    "limits": "control_limits",
    "causes": "causes",
}


def walk_times_and_numbers(value: Any, key: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            walk_times_and_numbers(v, k)
    elif isinstance(value, list):
        for v in value:
            walk_times_and_numbers(v, key)
    elif key == "timestamp":
        parse_iso_z(value)
    elif isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return
        if key not in ("name", "unit", "payload", "user", "reason", "client_id", "version"):
            raise AssertionError(f"a number sent as a string: {key} = {value!r}")


def no_constants(name: str) -> Any:
    raise AssertionError(f"{name} is not a JSON number")


def test_every_topic_qos_envelope_times_and_numbers(shop: Shop) -> None:
    seen: dict[str, int] = {}
    for m in shop.hmi.matching(shop.t("#")):
        rest = m.topic[len(shop.prefix) + 1 :]
        if not rest.startswith(("char/", "bridge/")) or rest.endswith("/reading"):
            continue  # readings, commands and replies: ours
        data = json.loads(m.payload, parse_constant=no_constants)
        if rest.startswith("char/"):
            leaf = rest.split("/")[2]
            assert m.qos == QOS[leaf], (m.topic, m.qos)
            assert set(data) == {"type", "payload"}, m.topic
            assert isinstance(data["payload"], dict)
            if leaf in TYPES:
                assert data["type"] == TYPES[leaf], m.topic
            seen[leaf] = seen.get(leaf, 0) + 1
            walk_times_and_numbers(data)
        elif rest.startswith("bridge/"):
            leaf = rest.split("/")[1]
            assert m.qos == (0 if leaf == "metrics" else 1), (m.topic, m.qos)
            seen[leaf] = seen.get(leaf, 0) + 1
            walk_times_and_numbers(data)
    assert set(seen) >= set(QOS) | {"status", "errors", "metrics"}

    meta = [m.json() for m in shop.hmi.matching(shop.t("char/2/meta"))][-1]["payload"]
    assert meta["name"] == "Shaft OD"
    assert meta["unit"] == "mm"
    assert meta["subgroup_size"] == 5
    assert (meta["usl"], meta["lsl"]) == (10.05, 9.95)
    assert [r["rule_id"] for r in meta["rules"]] == list(range(1, 9))
    status = [m.json() for m in shop.hmi.matching(shop.t("bridge/status"))][-1]
    assert status["online"] is True
    parse_iso_z(status["timestamp"])
    for m in shop.hmi.matching(shop.t("char/+/sample")):
        p = m.json()["payload"]
        assert p["in_control"] is (
            None if p["zone"] is None else not (p["failed_rules"] or p["range_failed_rules"])
        )
        assert p["failed_rules"] == sorted(p["failed_rules"])


def test_a_late_subscriber_sees_exactly_the_retained_topics(shop: Shop) -> None:
    # history is coalesced (at most once a second): wait until it has caught up with samples
    for cid in (1, 3, 4):
        last_id: int = shop.samples(cid)[-1]["sample_id"]
        shop.hmi.wait_for(
            shop.t(f"char/{cid}/history"),
            lambda d, last_id=last_id: (  # type: ignore[misc]
                bool(d["payload"]["samples"])
                and d["payload"]["samples"][-1]["sample_id"] == last_id
            ),
        )
    late = Client(shop.plant.broker.port, v5=False)
    with late:
        late.subscribe(shop.t("#"))
        late.marker(shop.prefix)
        got = late.matching(shop.t("#"))
    retained = {m.topic[len(shop.prefix) + 1 :] for m in got if m.retain}
    not_retained = {m.topic[len(shop.prefix) + 1 :] for m in got if not m.retain}
    assert not_retained == {"e2e-marker"}
    for cid in (1, 2, 3, 4, 5):
        for leaf in ("sample", "limits", "meta", "history", "alarms"):
            if leaf == "limits" and cid in (2, 5):
                continue  # still in their baseline: no limits yet
            assert f"char/{cid}/{leaf}" in retained, (cid, leaf)
    assert {"bridge/status", "bridge/metrics"} <= retained
    assert not any(t.endswith(("/violation", "/ack")) or t == "bridge/errors" for t in retained)

    by_topic = {m.topic: m.json() for m in got}
    for cid in (1, 3, 4):
        samples = shop.samples(cid)
        hist = by_topic[shop.t(f"char/{cid}/history")]["payload"]["samples"]
        assert hist == samples[-HISTORY:], cid  # the last N, oldest first
        assert by_topic[shop.t(f"char/{cid}/sample")]["payload"] == samples[-1]


def test_a_new_hmi_right_after_a_burst_gets_a_history_ending_at_the_last_sample(
    shop: Shop,
) -> None:
    known = {p["sample_id"] for p in shop.samples(3)}
    for _ in range(5):
        shop.gauge.publish(shop.t("char/3/reading"), json.dumps({"values": gauss(shop, 5)}))
    msgs = shop.hmi.wait_msgs(
        shop.t("char/3/sample"), lambda d: d["payload"]["sample_id"] not in known, count=5
    )
    last = msgs[-1].json()["payload"]
    # history goes out at most once a second per characteristic (docs/bridge.md): the
    # burst's last sample is in the retained history within that second (3 s: a loaded CI)
    shop.hmi.wait_for(
        shop.t("char/3/history"),
        lambda d: (
            bool(d["payload"]["samples"])
            and d["payload"]["samples"][-1]["sample_id"] == last["sample_id"]
        ),
        within=3.0,
    )
    with Client(shop.plant.broker.port, v5=False) as late:
        late.subscribe(shop.t("char/3/history"), shop.t("char/3/sample"), shop.t("e2e-marker"))
        late.marker(shop.prefix)
        retained = {
            m.topic.rsplit("/", 1)[1]: m.json()["payload"] for m in late.messages if m.retain
        }
    assert retained["sample"]["sample_id"] == last["sample_id"]
    history = retained["history"]["samples"]
    assert [p["sample_id"] for p in history[-1:]] == [last["sample_id"]]


def test_a_partial_subgroup_survives_a_clean_restart_and_a_kill(shop: Shop) -> None:
    # an alarm episode open on characteristic 1 when the bridge stops
    before = shop.next_sample(1, lambda: shop.gauge.publish(shop.t("char/1/reading"), "10.6"))
    assert 1 in before["failed_rules"]
    g = gauss(shop, 5)
    for x in g[:2]:
        shop.gauge.publish(shop.t("char/3/reading"), repr(x))
    shop.plant.stop()
    [offline] = shop.hmi.wait_for(shop.t("bridge/status"), lambda d: d["online"] is False)
    parse_iso_z(offline["timestamp"])
    shop.gauge.publish(shop.t("char/3/reading"), repr(g[2]))  # queued while it is down
    with Client(shop.plant.broker.port, v5=False) as late:  # what a new HMI sees now
        late.subscribe(shop.t("bridge/status"), shop.t("e2e-marker"))
        late.marker(shop.prefix)
        [retained] = [m.json() for m in late.matching(shop.t("bridge/status")) if m.retain]
    assert retained == offline  # the time of stopping, not the Last Will's
    # QoS 1 readings sent while the bridge is down wait in its persistent session
    known = {p["sample_id"] for p in shop.samples(4)}
    queued = [gauss(shop, 5) for _ in range(40)]
    for q in queued:
        shop.gauge.publish(shop.t("char/4/reading"), json.dumps({"values": q}), wait=False)
    shop.plant.start(shop.hmi)
    caught_up = shop.hmi.wait_for(
        shop.t("char/4/sample"), lambda d: d["payload"]["sample_id"] not in known, count=40
    )
    assert [d["payload"]["values"] for d in caught_up] == queued
    after = shop.next_sample(1, lambda: shop.gauge.publish(shop.t("char/1/reading"), "10.7"))
    assert 1 in after["failed_rules"]
    assert after["sample_id"] > before["sample_id"]
    shop.gauge.publish(shop.t("char/3/reading"), repr(g[3]))
    # g[3] is stored and acknowledged once a later reading's sample is out (batches commit,
    # ack and publish in order); a kill inside that window would redeliver it (at least once)
    shop.next_sample(1, lambda: shop.gauge.publish(shop.t("char/1/reading"), "10.0"))
    # a kill -9 in the middle of the subgroup: the Last Will says offline
    status = shop.t("bridge/status")
    shop.hmi.marker(shop.prefix)
    said = [m.json() for m in shop.hmi.matching(status)]
    # one offline at the clean stop, no Last Will after it (it carries the start time)
    assert [(d["online"]) for d in said] == [True, False, True], said
    assert shop.plant.proc is not None
    shop.plant.proc.kill()
    [will] = shop.hmi.wait_for(status, lambda d: d["online"] is False, count=2, within=60)[1:]
    assert set(will) == {"online", "timestamp"}  # the client id is nobody's business
    shop.plant.start(shop.hmi)
    sample = shop.next_sample(3, lambda: shop.gauge.publish(shop.t("char/3/reading"), repr(g[4])))
    assert sample["values"] == g
    # the episode went on across the restart: no second rule 1 alarm for the X chart
    shop.hmi.marker(shop.prefix)
    x1 = [
        m.json()["payload"]
        for m in shop.hmi.matching(shop.t("char/1/violation"))
        if m.json()["payload"]["sample_id"] in (before["sample_id"], after["sample_id"])
        and m.json()["payload"]["chart"] == "x"
        and m.json()["payload"]["rule_id"] == 1
    ]
    assert [v["sample_id"] for v in x1] == [before["sample_id"]]
