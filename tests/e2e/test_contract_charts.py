"""CONTRACT.md section 9 end to end: the chart families through the bridge.

One bridge subprocess (SQLite) serves a p chart (varying n), an np chart, a c chart, a u chart
(fractional units), an EWMA chart and a CUSUM chart (subgroups of 4). Seeded counts and
readings go in over MQTT in every payload form of section 9; half way the bridge is stopped
and started again. Every sample and limit that comes out is compared with the naive reference
of ``tests/unit/reference_charts.py`` (written from the formulas, not from the engine) and with
``openspc analyze --chart ... --json`` of the same data: after the baseline they agree
exactly. Bad inputs are refused on ``openspc/bridge/errors``. One p chart runs again on
PostgreSQL with a restart in the middle.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import random
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge._mosquitto import MosquittoProcess
from tests.unit import reference_charts as refc

from . import reference as ref
from .conftest import OPENSPC, Client, Plant, create_database, unique_prefix

pytestmark = [pytest.mark.e2e, pytest.mark.mosquitto]

T0 = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)
BASELINE = 20
TOTAL = 64
RESTART_AT = 36  # samples published before the restart
INSPECTED = 50
RULE_1 = {1: 1}

COMMON_KEYS = {
    "sample_id", "characteristic_id", "timestamp", "value", "values", "range", "zone",
    "in_control", "failed_rules", "range_failed_rules", "statistic", "ucl", "lcl",
    "context",  # docs/topics.md, "Context"
    "limits_version", "excluded",
    "out_of_spec", "due_at",
}  # fmt: skip
KEYS = {
    "p": COMMON_KEYS | {"inspected"},
    "np": COMMON_KEYS | {"inspected"},
    "c": COMMON_KEYS,
    "u": COMMON_KEYS | {"units"},
    "ewma": COMMON_KEYS,
    "cusum": COMMON_KEYS | {"cusum_upper", "cusum_lower"},
}


def poisson(rng: random.Random, mean: float) -> int:
    k, p, limit = 0, rng.random(), math.exp(-mean)
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(1 for _ in range(n) if rng.random() < p)


def epoch_ms(i: int, cid: int) -> int:
    return int((T0 + timedelta(minutes=cid, seconds=10 * i)).timestamp() * 1000)


@dataclass
class Chart:
    cid: int
    chart: str
    n: int = 1
    counts: list[tuple[int, float]] = field(default_factory=list)  # attribute charts
    groups: list[list[float]] = field(default_factory=list)  # EWMA, CUSUM
    payloads: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def attribute(self) -> bool:
        return self.chart in ("p", "np", "c", "u")


def make_charts(rng: random.Random) -> dict[int, Chart]:
    charts = {
        1: Chart(1, "p"),
        2: Chart(2, "np", settings={"inspected": INSPECTED}),
        3: Chart(3, "c"),
        4: Chart(4, "u"),
        5: Chart(5, "ewma", settings={"lambda": 0.2, "L": 3.0}),
        6: Chart(6, "cusum", n=4, settings={"k": 0.5, "h": 4.0}),
    }
    shifted = range(44, 52)  # a shift after the restart: signals, one alarm per episode
    for i in range(TOTAL):
        ts = epoch_ms(i, 1)
        # p: varying n, counts sometimes as JSON 3.0 (taken as 3)
        n = rng.randint(40, 60)
        d = binomial(rng, n, 0.25 if i in shifted else 0.06)
        charts[1].counts.append((d, float(n)))
        shown: Any = float(d) if i % 7 == 3 else d
        charts[1].payloads.append(json.dumps({"defectives": shown, "inspected": n, "ts": ts}))
        # np: inspected always 50, left out now and then (it is the setting)
        d = binomial(rng, INSPECTED, 0.22 if i in shifted else 0.08)
        charts[2].counts.append((d, float(INSPECTED)))
        body: dict[str, Any] = {"defectives": d, "ts": epoch_ms(i, 2)}
        if i % 5:
            body["inspected"] = INSPECTED
        charts[2].payloads.append(json.dumps(body))
        # c: a bare integer or {"defects": k}
        c = poisson(rng, 11.0 if i in shifted else 4.0)
        charts[3].counts.append((c, 1.0))
        charts[3].payloads.append(str(c) if i % 2 else json.dumps({"defects": c}))
        # u: fractional units (square metres of cloth)
        units = rng.choice((2.5, 3.0, 4.5, 5.0, 9.5))
        c = poisson(rng, (3.5 if i in shifted else 1.2) * units)
        charts[4].counts.append((c, units))
        charts[4].payloads.append(json.dumps({"defects": c, "units": units, "ts": epoch_ms(i, 4)}))
        # EWMA (n = 1): a shift of half a sigma after the baseline
        x = round(10.0 + rng.gauss(0.5 if i >= 30 else 0.0, 0.2), 3)
        charts[5].groups.append([x])
        charts[5].payloads.append(json.dumps({"value": x, "ts": epoch_ms(i, 5)}))
        # CUSUM (n = 4): a small shift of the mean
        g = [round(25.0 + rng.gauss(0.12 if i >= 34 else 0.0, 0.3), 3) for _ in range(4)]
        charts[6].groups.append(g)
        charts[6].payloads.append(json.dumps({"values": g, "ts": epoch_ms(i, 6)}))
    return charts


def char_config(c: Chart) -> dict[str, Any]:
    return {
        "id": c.cid,
        "name": f"{c.chart} chart",
        "chart": c.chart,
        "subgroup_size": c.n,
        "baseline": BASELINE,
        **c.settings,
    }


@dataclass
class Run:
    plant: Plant
    listener: Client
    charts: dict[int, Chart]
    tmp: Path
    restart_index: int = 0  # the listener's messages before the restart

    def samples(self, cid: int) -> list[dict[str, Any]]:
        """Each sample once (a restart publishes the last one again, retained)."""
        seen: dict[int, dict[str, Any]] = {}
        for m in self.listener.matching(f"{self.plant.prefix}/char/{cid}/sample"):
            body = m.json()
            assert body["type"] == "sample"
            seen.setdefault(body["payload"]["sample_id"], body["payload"])
        return [seen[k] for k in sorted(seen)]

    def limits(self, cid: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for m in self.listener.matching(f"{self.plant.prefix}/char/{cid}/limits"):
            body = m.json()
            assert body["type"] == "control_limits"
            if body["payload"] not in out:
                out.append(body["payload"])
        return out


def publish(client: Client, prefix: str, charts: dict[int, Chart], lo: int, hi: int) -> None:
    for c in charts.values():
        for payload in c.payloads[lo:hi]:
            client.publish(f"{prefix}/char/{c.cid}/reading", payload, wait=False)


@pytest.fixture(scope="module")
def run(mosquitto: MosquittoProcess, module_tmp: Path) -> Iterator[Run]:
    charts = make_charts(random.Random(0xC4A7))
    prefix = unique_prefix()
    plant = Plant(mosquitto, prefix, module_tmp, [char_config(c) for c in charts.values()])
    with Client(mosquitto.port) as listener, Client(mosquitto.port, v5=False) as gauge:
        listener.subscribe(f"{prefix}/#")
        plant.start(listener)
        try:
            publish(gauge, prefix, charts, 0, RESTART_AT)
            for cid in charts:
                listener.wait_msgs(f"{prefix}/char/{cid}/sample", count=RESTART_AT)
            plant.stop()
            restart_index = len(listener.messages)
            plant.start(listener)  # the same database: everything restored
            publish(gauge, prefix, charts, RESTART_AT, TOTAL)
            for cid in charts:
                # the retained last sample comes again at the restart
                listener.wait_msgs(f"{prefix}/char/{cid}/sample", count=TOTAL + 1)
            listener.marker(prefix)
            yield Run(plant, listener, charts, module_tmp, restart_index)
        finally:
            plant.stop()


def close(got: Any, want: float | None, what: str) -> None:
    assert (got is None) == (want is None), f"{what}: got {got!r}, want {want!r}"
    if want is not None:
        assert type(got) in (int, float), f"{what}: {got!r}"
        assert ref.rel_close(got, want) or abs(got - want) < 1e-12, (
            f"{what}: got {got!r}, want {want!r}"
        )


def reference_points(c: Chart) -> tuple[float, float, list[refc.RefPoint]]:
    """(centre line, sigma, the reference's points: every sample for attribute charts, the
    samples after the baseline for EWMA and CUSUM)."""
    if c.attribute:
        inspected = INSPECTED if c.chart == "np" else None
        cl, points = refc.attribute(c.chart, c.counts, BASELINE, RULE_1, inspected)
        return cl, math.nan, points
    lim = ref.compute_limits(c.groups[:BASELINE], c.n, None, None)
    sigma_xbar = lim.sigma / math.sqrt(c.n)
    means = [math.fsum(g) / c.n for g in c.groups[BASELINE:]]
    if c.chart == "ewma":
        points = refc.ewma(means, lim.center_line, sigma_xbar, 0.2, 3.0)
    else:
        points = refc.cusum(means, lim.center_line, sigma_xbar, 0.5, 4.0)
    return lim.center_line, lim.sigma, points


CIDS = [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("cid", CIDS)
def test_samples_agree_with_the_reference_across_a_restart(run: Run, cid: int) -> None:
    c = run.charts[cid]
    samples = run.samples(cid)
    assert len(samples) == TOTAL
    _, _, points = reference_points(c)
    for i, body in enumerate(samples):
        assert set(body) == KEYS[c.chart], i
        if c.attribute:
            count, size = c.counts[i]
            assert body["value"] == count, i
            assert type(body["value"]) is int, i
            assert body["values"] == [count], i
            if c.chart in ("p", "np"):
                assert body["inspected"] == int(size), i
            elif c.chart == "u":
                assert body["units"] == size, i
            close(body["statistic"], points[i].statistic, f"sample {i} statistic")
        else:
            assert body["values"] == c.groups[i], i
        if i < BASELINE:
            assert (body["ucl"], body["lcl"], body["zone"], body["in_control"]) == (
                None,
                None,
                None,
                None,
            ), i
            if not c.attribute:
                assert body["statistic"] is None, i
            continue
        p = points[i] if c.attribute else points[i - BASELINE]
        close(body["statistic"], p.statistic, f"sample {i} statistic")
        close(body["ucl"], p.ucl, f"sample {i} ucl")
        close(body["lcl"], p.lcl, f"sample {i} lcl")
        assert body["zone"] == p.zone, i
        assert body["failed_rules"] == list(p.failed), i
        assert body["in_control"] is (not p.failed), i
        if c.chart == "cusum":
            close(body["cusum_upper"], p.upper, f"sample {i} C+")
            close(body["cusum_lower"], p.lower, f"sample {i} C-")


@pytest.mark.parametrize("cid", CIDS)
def test_one_violation_per_episode_across_the_restart(run: Run, cid: int) -> None:
    c = run.charts[cid]
    _, _, points = reference_points(c)
    judged = points[BASELINE:] if c.attribute else points
    want = [(BASELINE + i, rule) for i, rule in refc.episodes([p.failed for p in judged])]
    assert want, "the data must raise at least one alarm"
    ids = [s["sample_id"] for s in run.samples(cid)]
    got = [
        (ids.index(m.json()["payload"]["sample_id"]), m.json()["payload"]["rule_id"])
        for m in run.listener.matching(f"{run.plant.prefix}/char/{cid}/violation")
    ]
    assert got == want


@pytest.mark.parametrize("cid", CIDS)
def test_limits_name_the_chart_and_agree_with_the_reference(run: Run, cid: int) -> None:
    c = run.charts[cid]
    limits = run.limits(cid)
    # set once by the baseline; the restart republishes them as they were (same timestamp)
    assert len(limits) == 1, limits
    [lim] = limits
    assert lim["chart"] == c.chart
    assert lim["sample_count"] == BASELINE
    cl, sigma, _ = reference_points(c)
    base = c.counts[:BASELINE]
    if c.attribute:
        size = math.fsum(n for _, n in base) / BASELINE
        if c.chart == "p":
            s = math.sqrt(cl * (1 - cl) / size)
        elif c.chart == "np":
            s = math.sqrt(cl * (1 - cl / INSPECTED))
        elif c.chart == "c":
            s = math.sqrt(cl)
        else:
            s = math.sqrt(cl / size)
        close(lim["center_line"], cl, "center_line")
        close(lim["ucl"], cl + 3 * s, "ucl")
        close(lim["lcl"], max(0.0, cl - 3 * s), "lcl")
        if c.chart in ("p", "u"):
            key = "inspected" if c.chart == "p" else "units"
            close(lim["parameters"][key], size, "average size")
        return
    close(lim["center_line"], cl, "center_line")
    close(lim["sigma"], sigma, "sigma")
    sigma_xbar = sigma / math.sqrt(c.n)
    if c.chart == "ewma":
        width = 3.0 * sigma_xbar * math.sqrt(0.2 / 1.8)
        close(lim["ucl"], cl + width, "ucl")
        close(lim["lcl"], cl - width, "lcl")
        assert lim["parameters"] == {"lambda": 0.2, "L": 3.0}
    else:
        close(lim["ucl"], 4.0 * sigma_xbar, "ucl")
        assert lim["lcl"] == 0
        assert lim["parameters"] == {"k": 0.5, "h": 4.0}


def analyze(run: Run, c: Chart) -> dict[str, Any]:
    path = run.tmp / f"chart{c.cid}.csv"
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        if c.chart in ("p", "np"):
            out.writerow(["defectives", "inspected"])
            out.writerows([[d, int(n)] for d, n in c.counts])
        elif c.chart == "c":
            out.writerow(["defects"])
            out.writerows([[d] for d, _ in c.counts])
        elif c.chart == "u":
            out.writerow(["defects", "units"])
            out.writerows([[d, u] for d, u in c.counts])
        else:
            out.writerow(["value"])
            out.writerows([[repr(x)] for g in c.groups for x in g])
    args = [OPENSPC, "analyze", str(path), "--chart", c.chart, "--baseline", str(BASELINE)]
    if c.chart == "np":
        args += ["--inspected", str(INSPECTED)]
    if c.chart == "ewma":
        args += ["--ewma-lambda", "0.2", "--ewma-l", "3"]
    if c.chart == "cusum":
        args += ["--subgroup-size", "4", "--cusum-k", "0.5", "--cusum-h", "4"]
    done = subprocess.run([*args, "--json"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


@pytest.mark.parametrize("cid", CIDS)
def test_the_bridge_and_analyze_agree_exactly(run: Run, cid: int) -> None:
    c = run.charts[cid]
    doc = analyze(run, c)
    [lim] = run.limits(cid)
    assert lim["version"] == 1  # the bridge's first limits; analyze has no history to count
    drop = {"characteristic_id", "timestamp", "version"}
    assert {k: v for k, v in doc["limits"].items() if k not in drop} == {
        k: v for k, v in lim.items() if k not in drop
    }
    samples = run.samples(cid)
    assert len(doc["points"]) == len(samples)
    fields = ["value", "range", "zone", "failed_rules", "range_failed_rules"]
    fields += ["statistic", "ucl", "lcl"]
    if c.chart == "cusum":
        fields += ["cusum_upper", "cusum_lower"]
    for i, (point, body) in enumerate(zip(doc["points"], samples, strict=True)):
        if i < BASELINE:  # analyze judges the baseline too (Phase I); the bridge does not
            assert point["value"] == body["value"], i
            continue
        assert {k: point[k] for k in fields} == {k: body[k] for k in fields}, i


def test_meta_names_the_chart_and_its_parameters(run: Run) -> None:
    want = {
        1: ("p", {}),
        2: ("np", {"inspected": INSPECTED}),
        3: ("c", {}),
        4: ("u", {}),
        5: ("ewma", {"lambda": 0.2, "L": 3.0}),
        6: ("cusum", {"k": 0.5, "h": 4.0}),
    }
    for cid, (chart, parameters) in want.items():
        meta = run.listener.matching(f"{run.plant.prefix}/char/{cid}/meta")[-1].json()["payload"]
        assert (meta["chart"], meta["parameters"]) == (chart, parameters)
        assert [r["rule_id"] for r in meta["rules"]] == [1]  # the families' default: rule 1


def test_history_after_the_restart_carries_the_points(run: Run) -> None:
    """What the restarted bridge restored from the database is spelt as the live samples."""
    for cid in CIDS:
        live = {s["sample_id"]: s for s in run.samples(cid)}
        topic = f"{run.plant.prefix}/char/{cid}/history"
        after = [m for m in run.listener.messages[run.restart_index :] if m.topic == topic]
        restored = after[0].json()["payload"]["samples"]  # the first: from the database
        assert len(restored) >= RESTART_AT, cid
        for stored in restored:
            want = live[stored["sample_id"]]
            assert {k: stored.get(k) for k in want} == want


BAD = [
    (1, '{"defectives": -1, "inspected": 50}', "defectives -1: must not be negative"),
    (1, '{"defectives": 2.5, "inspected": 50}', "defectives 2.5: must be a whole number"),
    (1, '{"defectives": 51, "inspected": 50}', "defectives 51: more than the 50 inspected"),
    (1, '{"defectives": 1, "inspected": 0}', "inspected 0: must be positive"),
    (1, '{"defectives": 1}', "no 'inspected'"),
    (1, '{"value": 3.2}', "not measured values"),
    (1, "3", "not a measured value"),
    (2, '{"defectives": 3, "inspected": 40}', "this np chart inspects 50 a sample"),
    (3, "2.5", "defects 2.5: must be a whole number"),
    (3, '{"defects": 3, "units": 2}', "'units' does not belong to a c chart"),
    (4, '{"defects": 3, "units": 0}', "units 0: must be positive"),
    (4, '{"defects": true, "units": 1}', "defects true: must be a number"),
    (5, '{"defectives": 3, "inspected": 50}', "a count (defectives, defects) sent to a chart"),
    (6, '{"defects": 4}', "a count (defectives, defects) sent to a chart"),
]


def test_bad_counts_and_the_wrong_kind_are_refused_on_errors(run: Run) -> None:
    prefix = run.plant.prefix
    before = {cid: len(run.samples(cid)) for cid in CIDS}
    with Client(run.plant.broker.port) as gauge:
        for cid, payload, _ in BAD:
            gauge.publish(f"{prefix}/char/{cid}/reading", payload)
    sent = {(f"{prefix}/char/{cid}/reading", payload) for cid, payload, _ in BAD}
    errors = run.listener.wait_msgs(
        f"{prefix}/bridge/errors", lambda d: (d["topic"], d["payload"]) in sent, count=len(BAD)
    )
    got = {(e.json()["topic"], e.json()["payload"]): e.json()["reason"] for e in errors}
    for cid, payload, reason in BAD:
        found = got[(f"{prefix}/char/{cid}/reading", payload)]
        assert reason in found, (payload, found)
    run.listener.marker(prefix)  # everything before the marker has been handled
    assert {cid: len(run.samples(cid)) for cid in CIDS} == before


@pytest.mark.parametrize("cid", [1, 4, 6])
def test_recalculate_takes_the_last_samples_with_their_sizes(run: Run, cid: int) -> None:
    """Last in the module: it changes the limits the tests above compare."""
    c = run.charts[cid]
    prefix = run.plant.prefix
    last = 24  # not BASELINE: the limits of the baseline have sample_count 20
    with Client(run.plant.broker.port) as hmi:
        hmi.publish(f"{prefix}/cmd/char/{cid}/recalculate", json.dumps({"last": last}))
    [msg] = run.listener.wait_msgs(
        f"{prefix}/char/{cid}/limits", lambda d: d["payload"]["sample_count"] == last
    )
    lim = msg.json()["payload"]
    assert lim["chart"] == c.chart
    if c.attribute:  # p and u: the sizes came back from the database with the counts
        recent = c.counts[-last:]
        cl = sum(d for d, _ in recent) / math.fsum(n for _, n in recent)
        close(lim["center_line"], cl, "center_line")
        size = math.fsum(n for _, n in recent) / last
        s = math.sqrt(cl * (1 - cl) / size) if c.chart == "p" else math.sqrt(cl / size)
        close(lim["ucl"], cl + 3 * s, "ucl")
        return
    want = ref.compute_limits(c.groups[-last:], c.n, None, None)
    close(lim["center_line"], want.center_line, "center_line")
    close(lim["ucl"], 4.0 * want.sigma / math.sqrt(c.n), "ucl")


# --- PostgreSQL: a p chart with a restart in the middle -------------------------------------


@pytest.mark.postgres
def test_a_p_chart_on_postgresql_continues_exactly_after_a_restart(
    mosquitto: MosquittoProcess, postgres: Any, tmp_path: Path
) -> None:
    chart = make_charts(random.Random(0xBEEF))[1]
    db = f"e2e_{uuid.uuid4().hex[:10]}"
    asyncio.run(create_database(postgres.port, db))
    prefix = unique_prefix()
    plant = Plant(
        mosquitto,
        prefix,
        tmp_path,
        [char_config(chart)],
        url=f"postgresql://postgres@127.0.0.1:{postgres.port}/{db}",
    )
    with Client(mosquitto.port) as listener, Client(mosquitto.port, v5=False) as gauge:
        listener.subscribe(f"{prefix}/#")
        plant.start(listener)
        try:
            publish(gauge, prefix, {1: chart}, 0, RESTART_AT)
            listener.wait_msgs(f"{prefix}/char/1/sample", count=RESTART_AT)
            plant.stop()
            plant.start(listener)
            publish(gauge, prefix, {1: chart}, RESTART_AT, TOTAL)
            listener.wait_msgs(f"{prefix}/char/1/sample", count=TOTAL + 1)
        finally:
            plant.stop()
        run = Run(plant, listener, {1: chart}, tmp_path)
        samples = run.samples(1)
        _, _, points = reference_points(chart)
        assert len(samples) == TOTAL
        for i, body in enumerate(samples[BASELINE:], start=BASELINE):
            close(body["statistic"], points[i].statistic, f"sample {i} statistic")
            close(body["ucl"], points[i].ucl, f"sample {i} ucl")
            close(body["lcl"], points[i].lcl, f"sample {i} lcl")
            assert (body["zone"], body["failed_rules"]) == (points[i].zone, list(points[i].failed))
        doc = analyze(run, chart)
        for i in range(BASELINE, TOTAL):
            point, body = doc["points"][i], samples[i]
            assert [point[k] for k in ("statistic", "ucl", "lcl", "zone", "failed_rules")] == [
                body[k] for k in ("statistic", "ucl", "lcl", "zone", "failed_rules")
            ], i
