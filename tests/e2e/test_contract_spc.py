"""Messages out and the SPC conventions (docs/topics.md, docs/spc.md), and `openspc analyze`
(docs/spc.md), point by point.

One bridge subprocess serves four characteristics (n = 1, 5 and 12 with limits from their
baseline, and n = 5 with fixed limits); seeded random readings with shifts, trends,
alternation, calm stretches and wild readings go in; every sample, limit and violation that
comes out is compared with ``reference.py``.
"""

from __future__ import annotations

import csv
import json
import math
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge._mosquitto import MosquittoProcess

from . import reference as ref
from .conftest import OPENSPC, Client, Msg, Plant, now_utc, parse_iso_z, unique_prefix

pytestmark = [pytest.mark.e2e, pytest.mark.mosquitto]

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
MU, SD = 10.0, 0.02


@dataclass
class Series:
    cid: int
    n: int
    baseline: int
    subgroups: list[list[float]]
    rules: dict[int, int]
    usl: float | None
    lsl: float | None
    fixed: tuple[float, float, float] | None = None  # center_line, ucl, lcl
    config_rules: Any = None  # the `rules` setting, when not left out
    critical: frozenset[int] = frozenset({1})


def make_series(rng: random.Random, n: int, baseline: int) -> list[list[float]]:
    """Calm baseline, then stretches that make every rule of both charts fire."""
    s = SD / math.sqrt(n)

    def group(mean_offset: float, noise: float = 1.0) -> list[float]:
        g = [rng.gauss(0.0, SD * noise) for _ in range(n)]
        centre = math.fsum(g) / n
        # the mean is exactly where it is asked to be (in units of s), up to rounding
        return [MU + mean_offset * s + x - centre + rng.gauss(0.0, s * 0.02) for x in g]

    out = [[MU + rng.gauss(0.0, SD) for _ in range(n)] for _ in range(baseline)]
    out += [[MU + rng.gauss(0.0, SD) for _ in range(n)] for _ in range(6)]
    out.append(group(4.5))  # rule 1
    out.append(group(-4.2))  # rule 1 on the next point too: the same episode
    out += [group(0.3 * rng.choice((-1, 1))) for _ in range(3)]
    if n > 1:  # one wild reading: range chart rule 1
        g = group(0.0)
        g[rng.randrange(n)] += 7 * SD
        out.append(g)
    out += [group(-2.4), group(-0.5), group(-2.6)]  # rule 5
    out += [group(rng.uniform(1.2, 1.9)) for _ in range(11)]  # rules 2, 6
    out += [group(-2.5 + 0.75 * k, noise=0.05) for k in range(8)]  # rule 3
    out += [group(0.9 * (-1) ** k, noise=0.05) for k in range(16)]  # rule 4
    out += [group(rng.uniform(-0.6, 0.6), noise=0.2) for _ in range(17)]  # rule 7
    out += [group(1.6 * (-1) ** k + rng.uniform(-0.2, 0.2), noise=0.1) for k in range(9)]  # 8
    out += [[MU + rng.gauss(0.0, SD) for _ in range(n)] for _ in range(4)]
    return out


# points on every zone boundary, on the centre line, equal steps, zero steps, long runs
BOUNDARY_WALK: list[float] = [
    10.0, 11.0, 12.0, 13.0, 13.25, 9.0, 8.0, 7.0, 6.75, 10.0, 10.0, 10.5, 11.0, 11.5, 12.0,
    12.5, 12.5, 12.0, 11.0, 10.0, 9.0, 8.0, 7.5, 9.5, 10.5, 9.5, 10.5, 9.5, 10.5, 9.5, 10.5,
    9.5, 10.5, 9.5, 10.5, 9.5, 10.5, 10.5, 9.5, 10.0, 10.25, 9.75, 10.0, 10.5, 9.25, 10.75,
    9.0, 11.0, 12.25, 12.75, 12.5, 11.25, 12.0, 11.75, 12.25, 12.0, 8.0, 7.75, 8.0, 12.0,
    8.0, 12.0, 8.0, 12.0, 8.0, 12.0, 8.0, 10.0,
]  # fmt: skip


def spread4(mean: float) -> list[float]:
    """Four readings whose mean is exactly ``mean`` (all binary fractions)."""
    return [mean - 0.5, mean + 0.25, mean + 0.5, mean - 0.25]


def ts_of(cid: int, index: int, reading: int = 0) -> datetime:
    return T0 + timedelta(minutes=cid, seconds=10 * index, milliseconds=reading)


def epoch_ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


@dataclass
class Run:
    plant: Plant
    listener: Client
    series: dict[int, Series]
    arrival: dict[int, tuple[datetime, datetime]]  # cid 1 baseline: (before, after)

    def samples(self, cid: int) -> list[dict[str, Any]]:
        return [m.json() for m in self.listener.matching(f"{self.plant.prefix}/char/{cid}/sample")]

    def msgs(self, cid: int, leaf: str) -> list[Msg]:
        return self.listener.matching(f"{self.plant.prefix}/char/{cid}/{leaf}")


def publish_series(client: Client, prefix: str, s: Series) -> None:
    """Every form of reading (docs/topics.md): bare numbers, {"value"}, {"values"}, ts as ms
    and ISO."""
    topic = f"{prefix}/char/{s.cid}/reading"
    qos = 0 if s.cid == 1 else 1  # QoS 0 readings too (not mixed: paho may reorder them)
    for i, g in enumerate(s.subgroups):
        last = ts_of(s.cid, i, len(g) - 1)
        if s.n == 1:
            if i < s.baseline:
                client.publish(topic, repr(g[0]), qos=qos, wait=False)  # bare: arrival time
            elif i % 2:
                body = json.dumps({"value": g[0], "ts": epoch_ms(last)})
                client.publish(topic, body, qos=qos, wait=False)
            else:
                iso = last.astimezone(UTC).isoformat().replace("+00:00", "Z")
                client.publish(topic, json.dumps({"value": g[0], "ts": iso}), qos=qos, wait=False)
        elif i % 3 == 0:  # one reading at a time, each with its own ts
            for j, x in enumerate(g):
                payload = {"value": x, "ts": epoch_ms(ts_of(s.cid, i, j)), "batch": "B7"}
                client.publish(topic, json.dumps(payload), wait=False)
        elif i % 3 == 1:  # a whole subgroup, ts with a zone offset
            offset = last.astimezone(timezone(timedelta(hours=2))).isoformat()
            client.publish(topic, json.dumps({"values": g, "ts": offset}), wait=False)
        else:
            client.publish(topic, json.dumps({"values": g, "ts": epoch_ms(last)}), wait=False)


@pytest.fixture(scope="module")
def run(mosquitto: MosquittoProcess, module_tmp: Path) -> Iterator[Run]:
    rng = random.Random(0x5BC0FFEE)
    series = {
        1: Series(1, 1, 25, [], dict(ref.NELSON), MU + 6 * SD, MU - 5 * SD),
        2: Series(2, 5, 25, [], dict(ref.NELSON), MU + 4 * SD, MU - 4 * SD),
        3: Series(3, 12, 20, [], dict(ref.NELSON), None, None),
        4: Series(4, 5, 0, [], dict(ref.WESTERN_ELECTRIC), MU + 5 * SD, None),
    }
    for s in series.values():
        s.subgroups = make_series(rng, s.n, max(s.baseline, 5))
    s4 = series[4]
    half = 3 * SD / math.sqrt(5) * 1.1
    s4.fixed = (MU + 0.001, MU + 0.001 + half, MU + 0.001 - half)
    s4.config_rules = "western_electric"
    # run lengths and severities configured per characteristic
    s5 = Series(5, 2, 15, [], {1: 1, 2: 7, 3: 4, 4: 10, 7: 12, 8: 5}, None, None)
    s5.subgroups = make_series(rng, 2, 15)
    s5.config_rules = [
        {"id": 1, "severity": "WARNING"},
        {"id": 2, "length": 7, "severity": "CRITICAL"},
        {"id": 3, "length": 4},
        {"id": 4, "length": 10},
        {"id": 7, "length": 12},
        {"id": 8, "length": 5, "severity": "CRITICAL"},
    ]
    s5.critical = frozenset({2, 8})
    series[5] = s5
    # exact boundaries: fixed CL 10, UCL 13, LCL 7, so sigma/sqrt(n) = 1 for n = 1 and n = 4
    series[6] = Series(6, 1, 0, [[x] for x in BOUNDARY_WALK], dict(ref.NELSON), None, None)
    series[6].fixed = (10.0, 13.0, 7.0)
    series[7] = Series(7, 4, 0, [spread4(x) for x in BOUNDARY_WALK], dict(ref.NELSON), None, None)
    series[7].fixed = (10.0, 13.0, 7.0)

    chars: list[dict[str, Any]] = []
    for s in series.values():
        ch: dict[str, Any] = {"id": s.cid, "name": f"Char {s.cid}", "unit": "mm"}
        ch["subgroup_size"] = s.n
        if s.usl is not None:
            ch["usl"] = s.usl
        if s.lsl is not None:
            ch["lsl"] = s.lsl
        if s.config_rules is not None:
            ch["rules"] = s.config_rules
        if s.fixed:
            ch["center_line"], ch["ucl"], ch["lcl"] = s.fixed
        elif s.baseline != 25:
            ch["baseline"] = s.baseline  # 25 is the default, left out for the others
        chars.append(ch)

    prefix = unique_prefix()
    plant = Plant(mosquitto, prefix, module_tmp, chars)
    with Client(mosquitto.port) as listener, Client(mosquitto.port, v5=False) as gauge:
        listener.subscribe(f"{prefix}/#")
        plant.start(listener)
        arrival: dict[int, tuple[datetime, datetime]] = {}
        try:
            for s in series.values():
                if s.cid == 1:
                    before = now_utc()
                    publish_series(gauge, prefix, s)
                    listener.wait_msgs(f"{prefix}/char/1/sample", count=s.baseline)
                    arrival[1] = (before, now_utc())
                else:
                    publish_series(gauge, prefix, s)
            for s in series.values():
                listener.wait_msgs(f"{prefix}/char/{s.cid}/sample", count=len(s.subgroups))
            listener.marker(prefix)
            yield Run(plant, listener, series, arrival)
        finally:
            plant.stop()


def assert_derived(got: Any, want: float, carried: float, what: str) -> None:
    """``want`` is worked out here from payload figures, which carry 10 significant digits
    (docs/bridge.md, telling the truth: each within 5e-10 of itself); ``carried`` is the size of the
    rounded terms that went into it, in ``want``'s unit, so the rounding they carry is
    allowed for, and ``got``'s own rounding too."""
    assert type(got) in (int, float), f"{what}: {got!r}"
    tol = 5e-10 * carried + 1e-9 * abs(want)
    assert abs(got - want) <= tol, f"{what}: got {got!r}, want {want!r} +/- {tol:.3g}"


def assert_close(got: Any, want: float | None, what: str) -> None:
    assert (got is None) == (want is None), f"{what}: got {got!r}, want {want!r}"
    if want is not None:
        assert type(got) in (int, float), f"{what}: {got!r}"
        assert ref.rel_close(got, want), f"{what}: got {got!r}, want {want!r}"


def bridge_limits(run: Run, cid: int) -> list[dict[str, Any]]:
    out = []
    for m in run.msgs(cid, "limits"):
        data = m.json()
        assert data["type"] == "control_limits"
        out.append(data["payload"])
    return out


SAMPLE_KEYS = {
    "sample_id",
    "characteristic_id",
    "timestamp",
    "value",
    "values",
    "range",
    "zone",
    "in_control",
    "failed_rules",
    "range_failed_rules",
}


@pytest.mark.parametrize("cid", [1, 2, 3, 5])
def test_baseline_samples_are_unjudged_then_limits_follow_the_last_one(run: Run, cid: int) -> None:
    s = run.series[cid]
    samples = run.samples(cid)
    assert len(samples) == len(s.subgroups)
    points = ref.make_points(s.subgroups)
    for i, (msg, p) in enumerate(zip(samples, points, strict=True)):
        assert msg["type"] == "sample"
        body = msg["payload"]
        assert set(body) >= SAMPLE_KEYS
        assert body["characteristic_id"] == cid
        assert isinstance(body["sample_id"], int)
        assert body["values"] == p.values, i
        assert_close(body["value"], p.value, f"sample {i} value")
        assert_close(body["range"], p.range, f"sample {i} range")
        if i < s.baseline:
            unjudged = (body["zone"], body["in_control"], body["failed_rules"])
            assert unjudged == (None, None, []), i
            assert body["range_failed_rules"] == [], i
        else:
            assert body["zone"] is not None, i
            assert isinstance(body["in_control"], bool), i
    ids = [m["payload"]["sample_id"] for m in samples]
    assert ids == sorted(set(ids))

    # control_limits follows the sample completing the baseline, before the next sample
    msgs = [
        m
        for m in run.listener.matching(f"{run.plant.prefix}/char/{cid}/+")
        if m.topic.endswith(("/sample", "/limits"))
    ]
    kinds = [m.topic.rsplit("/", 1)[1] for m in msgs]
    assert kinds.count("limits") == 1
    assert kinds.index("limits") == s.baseline


@pytest.mark.parametrize("cid", [1, 2, 3, 5])
def test_limits_agree_with_the_reference(run: Run, cid: int) -> None:
    """What does not depend on the constants' last digits agrees to 1e-9; sigma to the table."""
    s = run.series[cid]
    [lim] = bridge_limits(run, cid)
    want = ref.compute_limits(s.subgroups[: s.baseline], s.n, s.usl, s.lsl)
    assert lim["characteristic_id"] == cid
    assert lim["method"] == want.method
    assert lim["sample_count"] == s.baseline
    parse_iso_z(lim["timestamp"])
    assert_close(lim["center_line"], want.center_line, "center_line")
    assert_close(lim["range"]["center_line"], want.r_center, "range.center_line")
    # the X chart's limits are CL +/- 3 sigma/sqrt(n) of the sigma it states
    half = 3 * lim["sigma"] / math.sqrt(s.n)
    mu = lim["center_line"]
    assert_derived(lim["ucl"], mu + half, abs(mu) + half, "ucl")
    assert_derived(lim["lcl"], mu - half, abs(mu) + half, "lcl")
    tol = 1e-9 if s.n == 1 else 6e-4  # the printed tables' rounding
    assert abs(lim["sigma"] - want.sigma) <= tol * want.sigma, (lim["sigma"], want.sigma)
    assert abs(lim["range"]["ucl"] - want.r_ucl) <= 2e-3 * want.r_ucl
    assert lim["range"]["lcl"] == pytest.approx(want.r_lcl, abs=2e-3 * want.r_center)
    if want.capability is None:
        assert lim["capability"] is None
    else:
        cap = lim["capability"]
        mu, sigma = lim["center_line"], lim["sigma"]
        assert s.usl is not None
        assert s.lsl is not None
        cp = (s.usl - s.lsl) / (6 * sigma)
        assert_derived(cap["cp"], cp, cp, "cp")
        cpk = min(s.usl - mu, mu - s.lsl) / (3 * sigma)
        assert_derived(cap["cpk"], cpk, abs(mu) / (3 * sigma) + abs(cpk), "cpk")
        assert_close(cap["pp"], want.capability["pp"], "pp")
        assert_close(cap["ppk"], want.capability["ppk"], "ppk")


@pytest.mark.parametrize("cid", [2, 3])
def test_limits_equal_the_printed_table_constants_to_1e_9(run: Run, cid: int) -> None:
    s = run.series[cid]
    [lim] = bridge_limits(run, cid)
    want = ref.compute_limits(s.subgroups[: s.baseline], s.n, s.usl, s.lsl)
    assert_close(lim["sigma"], want.sigma, "sigma")
    assert_close(lim["ucl"], want.ucl, "ucl")
    assert_close(lim["range"]["ucl"], want.r_ucl, "range.ucl")


@pytest.mark.parametrize("cid", [1, 2, 3, 4, 5, 6, 7])
def test_every_live_point_and_violation_agrees_with_the_reference(run: Run, cid: int) -> None:
    s = run.series[cid]
    lim_payload = bridge_limits(run, cid)[-1]
    lim = ref.limits_from_payload(lim_payload, s.n)
    points = ref.make_points(s.subgroups)
    violations = ref.stream(points, [(s.baseline, lim)], s.rules)
    samples = [m["payload"] for m in run.samples(cid)]
    for p, body in zip(points, samples, strict=True):
        if p.index < s.baseline:
            continue
        got = (body["zone"], body["failed_rules"], body["range_failed_rules"], body["in_control"])
        want = (p.zone, p.failed_rules, p.range_failed_rules, p.in_control)
        assert got == want, f"point {p.index}"
    fired = {v.rule_id for v in violations if v.chart == "x"}
    assert fired == set(s.rules), "the data should make every configured rule fire"
    if cid != 7:  # every subgroup of 7 has the same range
        assert any(v.chart == "range" for v in violations)

    got_v = []
    got_spec = []
    by_sample = {b["sample_id"]: i for i, b in enumerate(samples)}
    for m in run.msgs(cid, "violation"):
        assert m.qos == 1
        data = m.json()
        assert data["type"] == "violation"
        v = data["payload"]
        assert v["characteristic_id"] == cid
        if v["kind"] == "spec":  # beyond usl/lsl: checked against the episodes below
            assert (v["rule_id"], v["chart"], v["severity"]) == (None, None, "CRITICAL")
            got_spec.append(by_sample[v["sample_id"]])
            continue
        assert v["kind"] == "rule"
        assert isinstance(v["violation_id"], int)
        assert v["severity"] == ("CRITICAL" if v["rule_id"] in s.critical else "WARNING")
        assert isinstance(v["rule_name"], str)
        assert v["rule_name"]
        # the time of the point that raised it
        assert v["timestamp"] == samples[by_sample[v["sample_id"]]]["timestamp"]
        got_v.append((by_sample[v["sample_id"]], v["rule_id"], v["chart"]))
    want_v = [(v.index, v.rule_id, v.chart) for v in violations]
    assert sorted(got_v) == sorted(want_v)
    # spec (docs/topics.md): out_of_spec per sample (a reading on a limit is within), one
    # alarm on the first sample of each run of out-of-spec samples
    has_spec = s.usl is not None or s.lsl is not None
    want_out = [
        any(
            (s.usl is not None and x > s.usl) or (s.lsl is not None and x < s.lsl)
            for x in b["values"]
        )
        if has_spec
        else None
        for b in samples
    ]
    assert [b["out_of_spec"] for b in samples] == want_out
    want_spec = [i for i, out in enumerate(want_out) if out and (i == 0 or not want_out[i - 1])]
    assert sorted(got_spec) == want_spec


def test_fixed_limits_are_announced_first_and_judge_every_sample(run: Run) -> None:
    s = run.series[4]
    assert s.fixed is not None
    # announced at start-up (retained for a late HMI) and, the team's choice, again with the
    # first reading's ts: the same limits each time
    announced = bridge_limits(run, 4)
    assert announced
    for other in announced:
        assert {**other, "timestamp": None} == {**announced[0], "timestamp": None}
    lim = announced[0]
    assert lim["method"] == "fixed"
    assert (lim["center_line"], lim["ucl"], lim["lcl"]) == s.fixed
    assert_close(lim["sigma"], (s.fixed[1] - s.fixed[2]) / 6 * math.sqrt(5), "fixed sigma")
    cap = lim["capability"]
    assert cap["cp"] is None  # usl only
    cpk = (s.usl - s.fixed[0]) / (3 * lim["sigma"])  # type: ignore[operator]
    assert_derived(cap["cpk"], cpk, cpk, "cpk")
    msgs = [
        m.topic.rsplit("/", 1)[1]
        for m in run.listener.matching(f"{run.plant.prefix}/char/4/+")
        if m.topic.endswith(("/sample", "/limits"))
    ]
    assert msgs[0] == "limits"
    assert all(m["payload"]["zone"] is not None for m in run.samples(4))


@pytest.mark.parametrize("cid", [1, 2, 3, 5])
def test_sample_timestamps_are_the_source_ts_or_the_arrival(run: Run, cid: int) -> None:
    s = run.series[cid]
    for i, m in enumerate(run.samples(cid)):
        t = parse_iso_z(m["payload"]["timestamp"])
        if cid == 1 and i < s.baseline:
            before, after = run.arrival[1]
            assert before - timedelta(milliseconds=2) <= t <= after, (i, t)
        else:
            assert t == ts_of(cid, i, s.n - 1), i


@pytest.mark.parametrize("cid", [1, 2, 3])
def test_analyze_agrees_with_the_bridge_after_the_baseline(
    run: Run, cid: int, tmp_path: Path
) -> None:
    s = run.series[cid]
    path = tmp_path / f"char{cid}.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ts", "value"])
        for i, g in enumerate(s.subgroups):
            for j, x in enumerate(g):
                writer.writerow([ts_of(cid, i, j).isoformat(), repr(x)])
    # --baseline defaults to 25, and --rules to nelson (left out where they are the default)
    baseline = [] if s.baseline == 25 else ["--baseline", str(s.baseline)]
    rules = ["--rules", "nelson"] if cid == 3 else []
    out = subprocess.run(
        [OPENSPC, "analyze", str(path), "--subgroup-size", str(s.n), *baseline, *rules, "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    [bridge_lim] = bridge_limits(run, cid)
    lim = result["limits"]
    for key in ("center_line", "ucl", "lcl", "sigma"):
        assert_close(lim[key], bridge_lim[key], key)
    for key in ("center_line", "ucl", "lcl"):
        assert_close(lim["range"][key], bridge_lim["range"][key], f"range.{key}")
    assert lim["method"] == bridge_lim["method"]
    assert lim["sample_count"] == s.baseline

    points = result["points"]
    assert [p["index"] for p in points] == list(range(len(s.subgroups)))
    samples = [m["payload"] for m in run.samples(cid)]
    for p, b in zip(points[s.baseline :], samples[s.baseline :], strict=True):
        assert_close(p["value"], b["value"], f"value {p['index']}")
        assert_close(p["range"], b["range"], f"range {p['index']}")
        assert (p["zone"], p["failed_rules"], p["range_failed_rules"]) == (
            b["zone"],
            b["failed_rules"],
            b["range_failed_rules"],
        ), p["index"]

    # Phase I: the baseline's own points are judged too, against the same limits
    own = ref.limits_from_payload(lim, s.n)
    want = ref.make_points(s.subgroups)
    for i in range(len(want)):
        ref.judge(want, i, own, s.rules)
    for p, w in zip(points, want, strict=True):
        assert (p["zone"], p["failed_rules"], p["range_failed_rules"]) == (
            w.zone,
            w.failed_rules,
            w.range_failed_rules,
        ), p["index"]


def test_the_data_exercise_the_contract(run: Run) -> None:
    """Guard against a vacuous run: baseline points judged in Phase I break some rule too."""
    s = run.series[2]
    _lim, points = ref.phase_one(s.subgroups, s.n, s.baseline, s.rules, s.usl, s.lsl)
    assert any(p.failed_rules for p in points[s.baseline :])


@pytest.mark.parametrize("cid", [6, 7])
def test_points_on_boundaries_belong_to_the_inner_zone(run: Run, cid: int) -> None:
    zones = [m["payload"]["zone"] for m in run.samples(cid)[:9]]
    # 10 (CL), 11 (CL+s), 12 (CL+2s), 13 (UCL), 13.25, 9, 8, 7 (LCL), 6.75
    assert zones == [
        "zone_c_upper",
        "zone_c_upper",
        "zone_b_upper",
        "zone_a_upper",
        "beyond_ucl",
        "zone_c_lower",
        "zone_b_lower",
        "zone_a_lower",
        "beyond_lcl",
    ]
