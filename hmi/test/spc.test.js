// What the page reads from meta/control_limits, and the zone edges it still derives.
// (tests/unit/test_hmi_modules.py also checks zoneEdges against engine/_limits.py.)
import assert from "node:assert/strict";
import { test } from "node:test";

import { chartLabels, chartView, reasonCodes, sampleState, sparkline, zoneEdges, zoneLabel } from "../src/spc.js";

const close = (a, b) => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);

test("the chart family's labels come from meta.chart, not from the subgroup size", () => {
  assert.equal(chartLabels({ chart: "xbar_s", subgroup_size: 5 })[2], "S");
  assert.equal(chartLabels({ chart: "xbar_r", subgroup_size: 12 })[2], "R");
  assert.equal(chartLabels({ chart: "i_mr" })[0], "Individuals (X)");
  assert.equal(chartLabels(null)[2], "MR", "an individuals chart until a meta is known");
  assert.equal(chartLabels({ chart: "imr" })[0], "Individuals (X)");
  assert.equal(chartLabels({ chart: "g_chart" })[0], "Statistic", "a family this page does not know");
});

test("reason codes are the meta's, and none without it", () => {
  assert.deepEqual(reasonCodes({ reason_codes: ["Tool Change", "", 3, "Other"] }), ["Tool Change", "Other"]);
  assert.deepEqual(reasonCodes({}), []);
  assert.deepEqual(reasonCodes(null), []);
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
