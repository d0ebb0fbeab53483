// What the page reads from meta/control_limits, and the zone edges it still derives.
// (tests/unit/test_hmi_modules.py also checks zoneEdges against engine/_limits.py.)
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  DEFAULT_ACTIONS,
  DEFAULT_CAUSES,
  actionCodes,
  actionRequired,
  causeCodes,
  chartLabels,
  chartView,
  pointDetail,
  reasonCodes,
  sampleState,
  sparkline,
  zoneEdges,
  zoneLabel,
} from "../src/spc.js";

const close = (a, b) => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);

test("the chart family's labels come from meta.chart, not from the subgroup size", () => {
  assert.equal(chartLabels({ chart: "xbar_s", subgroup_size: 5 })[2], "S");
  assert.equal(chartLabels({ chart: "xbar_r", subgroup_size: 12 })[2], "R");
  assert.equal(chartLabels({ chart: "i_mr" })[0], "Individuals (X)");
  assert.equal(chartLabels(null)[2], "MR", "an individuals chart until a meta is known");
  assert.equal(chartLabels({ chart: "imr" })[0], "Individuals (X)");
  assert.equal(chartLabels({ chart: "g_chart" })[0], "Statistic", "a family this page does not know");
});

test("causes and actions are the meta's, else the defaults of docs/topics.md", () => {
  assert.deepEqual(reasonCodes({ reason_codes: ["Tool Change", "", 3, "Other"] }), ["Tool Change", "Other"]);
  assert.deepEqual(causeCodes({ cause_codes: ["Chip"], reason_codes: ["Old"] }), ["Chip"]);
  assert.deepEqual(causeCodes({}), DEFAULT_CAUSES);
  assert.deepEqual(causeCodes(null), DEFAULT_CAUSES);
  assert.equal(DEFAULT_CAUSES.length, 11);
  assert.deepEqual(actionCodes({ action_codes: ["Reground"] }), ["Reground"]);
  assert.deepEqual(actionCodes({}), DEFAULT_ACTIONS);
  assert.equal(actionRequired({ require_action: true }), true);
  assert.equal(actionRequired({}), false);
});

const IMR = { chart: "imr", unit: "mm", usl: 10.2, lsl: 9.8, subgroup_size: 1 };
const lim = (version, cl, sigma) => ({
  characteristic_id: 1,
  version,
  center_line: cl,
  ucl: cl + 3 * sigma,
  lcl: cl - 3 * sigma,
  sigma,
  method: "moving_range",
  range: { center_line: 1.128 * sigma, ucl: 3.686 * sigma, lcl: 0 },
});
const pt = (id, value, version, extra = {}) => ({
  sample_id: id,
  timestamp: "2026-12-07T10:00:0" + (id % 10) + "Z",
  value,
  values: [value],
  range: 0.01,
  zone: "zone_c_upper",
  in_control: true,
  failed_rules: [],
  range_failed_rules: [],
  limits_version: version,
  ...extra,
});

test("each point is drawn against the limits of its own version, and the change is marked", () => {
  const v1 = lim(1, 10, 0.02);
  const v2 = lim(2, 10.01, 0.03);
  const ch = {
    meta: IMR,
    limits: v2,
    limitsByVersion: new Map([
      [1, v1],
      [2, v2],
    ]),
    samples: [pt(1, 10, null), pt(2, 10.01, 1), pt(3, 10.02, 1), pt(4, 10.0, 2), pt(5, 10.03, 2)],
  };
  const v = chartView(ch, "x");
  assert.deepEqual(v.uclSteps, [null, v1.ucl, v1.ucl, v2.ucl, v2.ucl]);
  assert.deepEqual(v.clSteps, [null, 10, 10, 10.01, 10.01]);
  assert.deepEqual(v.versionChanges, [{ i: 3, version: 2 }]);
  assert.equal(v.zones, null, "zones of one version would judge the others' points wrongly");
  const r = chartView(ch, "r");
  assert.deepEqual(r.uclSteps, [null, v1.range.ucl, v1.range.ucl, v2.range.ucl, v2.range.ucl]);
  // one version only, the current one: flat limits and zones, as before
  const flat = chartView({ ...ch, samples: ch.samples.slice(3) }, "x");
  assert.equal(flat.uclSteps, null);
  assert.ok(flat.zones);
  // all judged by version 1, the limits since recalculated: their own (v1) limits
  const old = chartView({ ...ch, samples: ch.samples.slice(1, 3) }, "x");
  assert.deepEqual(old.uclSteps, [v1.ucl, v1.ucl]);
});

test("an excluded point is drawn hollow", () => {
  const ch = { meta: IMR, limits: lim(1, 10, 0.02), limitsByVersion: new Map(), samples: [pt(1, 10, 1), pt(2, 10.1, 1, { excluded: true })] };
  const v = chartView(ch, "x");
  assert.deepEqual(
    v.points.map((p) => p.hollow),
    [false, true],
  );
});

test("a point explained: readings, statistic, zone, rules, spec, context, excluded, limits", () => {
  const v1 = lim(1, 10, 0.02);
  const ch = { meta: IMR, limits: v1, limitsByVersion: new Map([[1, v1]]) };
  const s = pt(7, 10.25, 1, {
    values: [10.25],
    zone: "beyond_ucl",
    in_control: false,
    failed_rules: [1, 5],
    range_failed_rules: [1],
    out_of_spec: true,
    context: { operator: "kim", part: "A-113", lot: "L42", shift: "B", fixture: "F2" },
    excluded: false,
  });
  const rows = Object.fromEntries(pointDetail(ch, s).map(([label, textValue, key]) => [key, [label, textValue]]));
  assert.deepEqual(rows.sample, ["Sample", "#7"]);
  assert.deepEqual(rows.readings, ["Readings", "10.25 mm"]);
  assert.deepEqual(rows.statistic, ["X", "10.250 mm"]);
  assert.deepEqual(rows.zone, ["Zone", "beyond UCL"]);
  assert.deepEqual(rows.rules, ["Rules failed", "X rule 1, 5; MR rule 1"]);
  assert.deepEqual(rows.spec, ["Spec", "OUT OF SPEC"]);
  assert.deepEqual(rows["context.part"], ["Part", "A-113"]);
  assert.deepEqual(rows["context.fixture"], ["Fixture", "F2"]);
  assert.deepEqual(rows.excluded, ["Excluded", "no"]);
  assert.equal(rows.limits[1], "version 1 (LCL 9.940 \u00b7 UCL 10.060)");
  // the context keys in the order an operator reads them
  const keys = pointDetail(ch, s).map((r) => r[2]).filter((k) => k.startsWith("context."));
  assert.deepEqual(keys, ["context.part", "context.lot", "context.shift", "context.operator", "context.fixture"]);
  // no context given: said so
  assert.ok(pointDetail(ch, pt(8, 10, 1)).some((r) => r[2] === "context" && r[1] === "none given"));
});

test("computed limits: zones sigma/sqrt(n) wide on both sides", () => {
  const z = zoneEdges({ center_line: 10, ucl: 10.3, lcl: 9.7, sigma: 0.2, method: "r_bar_d2" }, { subgroup_size: 4 });
  close(z.upper[0], 10.1);
  close(z.upper[2], 10.3);
  close(z.lower[1], 9.8);
});

test("fixed limits off the midpoint: uneven zones, a third of each side", () => {
  const z = zoneEdges({ center_line: 500, ucl: 503, lcl: 494, sigma: 3, method: "fixed" }, { subgroup_size: 5 });
  assert.deepEqual(z.upper, [501, 502, 503]);
  assert.deepEqual(z.lower, [498, 496, 494]);
});

test("no sigma: a sixth of the limits' span; nothing to shade without limits", () => {
  const z = zoneEdges({ center_line: 0, ucl: 6, lcl: -6, sigma: null, method: "moving_range" }, null);
  assert.deepEqual(z.upper, [2, 4, 6]);
  assert.equal(zoneEdges(null, null), null);
  assert.equal(zoneEdges({ center_line: 1, ucl: 1, lcl: 1, sigma: 0 }, null), null);
});

test("the secondary chart draws the limits' range, and no zones", () => {
  const ch = {
    samples: [],
    meta: { subgroup_size: 1 },
    limits: { center_line: 1, ucl: 2, lcl: 0, sigma: 1 / 3, method: "moving_range", range: { center_line: 0.4, ucl: 1.3, lcl: 0 } },
  };
  const r = chartView(ch, "r");
  assert.deepEqual([r.cl, r.ucl, r.lcl, r.zones], [0.4, 1.3, 0, null]);
  assert.equal(chartView(ch, "x").zones.cl, 1);
  assert.deepEqual(chartView(null, "x").samples, []);
});

test("zone names and sample states", () => {
  assert.equal(zoneLabel("zone_b_lower"), "zone B lower");
  assert.equal(zoneLabel("somewhere_new"), "somewhere_new");
  assert.equal(sampleState(null), "no_data");
  assert.equal(sampleState({ in_control: true }), "in_control");
  assert.equal(sampleState({ in_control: false }), "out_of_control");
  assert.equal(sampleState({ in_control: null }), "no_limits");
});

test("an overview tile's sparkline: the plotted values, the failed points, flat limits only", () => {
  const samples = [
    { sample_id: 1, value: 10.0, in_control: true },
    { sample_id: 2, value: 10.5, in_control: false },
    { sample_id: 3, value: 9.9, in_control: true },
  ];
  const shewhart = { meta: { chart: "i_mr" }, limits: { ucl: 10.3, lcl: 9.7 }, samples };
  assert.deepEqual(sparkline(shewhart), { ys: [10.0, 10.5, 9.9], failed: [1], ucl: 10.3, lcl: 9.7 });
  assert.deepEqual(sparkline(shewhart, 2).ys, [10.5, 9.9]);
  // EWMA: z, and no value for a baseline point; limits vary by point, so none drawn flat
  const ewma = {
    meta: { chart: "ewma" },
    limits: { ucl: 1, lcl: 0 },
    samples: [
      { sample_id: 1, value: 4, statistic: null, in_control: null },
      { sample_id: 2, value: 5, statistic: 4.2, in_control: false },
    ],
  };
  assert.deepEqual(sparkline(ewma), { ys: [null, 4.2], failed: [1], ucl: null, lcl: null });
  assert.deepEqual(sparkline(null), { ys: [], failed: [], ucl: null, lcl: null });
});

test("spec limits on the X chart: drawn, in range when near, out-of-spec points found", async () => {
  const { specInRange } = await import("../src/spc.js");
  const ch = {
    meta: { chart: "xbar_r", usl: 10.1, lsl: 9.5 },
    limits: { center_line: 10.0, ucl: 10.05, lcl: 9.95, sigma: 0.0375, range: { center_line: 0.1, ucl: 0.2, lcl: 0 } },
    samples: [
      { sample_id: 1, value: 10.0, values: [10.0, 10.0] },
      { sample_id: 2, value: 10.05, values: [10.0, 10.11] }, // one reading beyond USL, mean inside
      { sample_id: 3, value: 10.0, values: [10.0, 10.0], out_of_spec: true }, // the bridge says so
    ],
  };
  const v = chartView(ch, "x");
  assert.deepEqual(v.spec, { usl: 10.1, lsl: 9.5 });
  assert.deepEqual(v.outOfSpec, [1, 2]);
  assert.deepEqual(specInRange(v), [10.1]); // LSL is 10 half-spans away: labelled at the edge
  assert.equal(chartView(ch, "r").spec, null);
  assert.equal(chartView({ ...ch, meta: { chart: "p", usl: 1 } }, "x").spec, null);
});

test("the histogram bins every reading over the spec limits and carries the bridge's capability", async () => {
  const { histogram, capabilityText } = await import("../src/spc.js");
  const ch = {
    meta: { chart: "xbar_r", usl: 10.3, lsl: 9.7, target: 10 },
    limits: { sigma: 0.1, capability: { cp: 1.0, cpk: 0.9, pp: null, ppk: 0.8 } },
    samples: [
      { sample_id: 1, values: [10.0, 10.1] },
      { sample_id: 2, values: [9.9, 10.0], excluded: true },
      { sample_id: 3, value: 10.2 },
    ],
  };
  const h = histogram(ch, 6);
  assert.equal(h.readings, 3); // the excluded sample left out
  assert.equal(h.counts.reduce((a, b) => a + b, 0), 3);
  assert.equal(h.lo, 9.7);
  assert.ok(Math.abs(h.hi - 10.4) < 1e-9); // mean + 3 sigma beyond USL
  assert.equal(h.sigma, 0.1);
  assert.ok(Math.abs(h.mean - 10.1) < 1e-9);
  assert.equal(capabilityText(h.cap), "Cp 1.00 \u00b7 Cpk 0.90 \u00b7 Pp \u2014 \u00b7 Ppk 0.80");
  assert.equal(histogram({ samples: [] }), null);
});
