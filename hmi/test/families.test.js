// The chart families of docs/spc.md (p, np, c, u, EWMA, CUSUM) as the page draws them,
// from payloads shaped as the bridge publishes them (docs/topics.md, docs/spc.md).
import assert from "node:assert/strict";
import { test } from "node:test";

import { chartKind, chartLabels, chartView, hasSecondary, keyFigures, lastFigure, viewExtent } from "../src/spc.js";

const round = (x) => Number(x.toPrecision(10));

// A p chart: p-bar 0.05 at n-bar 50 from its baseline, then points of 40, 50 and 400
// inspected, each with its own limits (lower floored at 0 for the small ones); the last,
// of 400, beyond its UCL.
function pChart() {
  const pbar = 0.05;
  const own = (n) => {
    const se = Math.sqrt((pbar * (1 - pbar)) / n);
    return { ucl: round(pbar + 3 * se), lcl: Math.max(0, round(pbar - 3 * se)) };
  };
  const point = (id, d, n, extra = {}) => ({
    sample_id: id,
    characteristic_id: 7,
    timestamp: "2026-12-07T06:00:0" + (id % 10) + ".000Z",
    value: d,
    values: [d],
    range: null,
    zone: null,
    in_control: true,
    failed_rules: [],
    range_failed_rules: [],
    statistic: d / n,
    ...own(n),
    ...extra,
  });
  const samples = [
    // a baseline sample: statistic, limits not yet known
    { ...point(1, 2, 50), ucl: null, lcl: null, in_control: null },
    point(2, 3, 40),
    point(3, 1, 50),
    point(4, 40, 400, { in_control: false, failed_rules: [1] }),
  ];
  return {
    id: "7",
    meta: { chart: "p", subgroup_size: 1, unit: "", baseline: 25 },
    limits: {
      center_line: pbar,
      ...own(50),
      sigma: round(Math.sqrt((pbar * (1 - pbar)) / 50)),
      method: "p_bar",
      sample_count: 25,
      range: null,
      capability: null,
      chart: "p",
      parameters: { inspected: 50 },
    },
    samples,
    last: samples[samples.length - 1],
  };
}

test("a p chart: the statistic against stepped limits through each point's own", () => {
  const ch = pChart();
  const v = chartView(ch, "x");
  assert.equal(v.family, "attribute");
  assert.deepEqual(v.ys, [0.04, 0.075, 0.02, 0.1]);
  // the baseline point has no limits (a gap in the steps); the others their own, by n
  assert.equal(v.uclSteps[0], null);
  assert.ok(v.uclSteps[1] > v.uclSteps[2] && v.uclSteps[2] > v.uclSteps[3], "a bigger n, a narrower limit");
  assert.equal(v.uclSteps[2], ch.limits.ucl, "at n-bar the point's limit is control_limits'");
  assert.deepEqual(v.lclSteps, ch.samples.map((s) => s.lcl));
  assert.deepEqual(v.lclSteps.slice(1, 3), [0, 0], "floored");
  assert.ok(v.lclSteps[3] > 0.017 && v.lclSteps[3] < 0.018, "of 400 inspected: above zero");
  // the labels name the newest limits; the centre line is p-bar
  assert.equal(v.ucl, v.uclSteps[3]);
  assert.equal(v.lcl, v.lclSteps[3]);
  assert.equal(v.cl, 0.05);
  assert.equal(v.zones, null, "no zones on the chart families (docs/hmi.md)");
  assert.deepEqual(
    v.points.map((p) => [p.i, p.rules.join(","), p.hollow]),
    [[0, "", false], [1, "", false], [2, "", false], [3, "1", false]],
  );
  const [lo, hi] = viewExtent(v);
  assert.equal(lo, 0);
  assert.equal(hi, v.uclSteps[1], "the widest limit (of the smallest sample) is in view");
});

test("a p chart has no secondary chart, and its key figures are p-bar and n-bar, no Cpk", () => {
  const ch = pChart();
  assert.equal(hasSecondary(ch.meta, ch.limits), false);
  const r = chartView(ch, "r");
  assert.equal(r.shown, false);
  assert.deepEqual(r.samples, []);
  assert.equal(chartLabels(ch.meta)[0], "Proportion defective (p)");
  const k = keyFigures(ch);
  assert.deepEqual(k.rows[0], ["UCL", "0.142", "n\u0304", "50"]);
  assert.deepEqual(k.rows[1], ["p\u0304", "0.050", "", ""]);
  assert.deepEqual(k.rows[2], ["LCL", "0.000", "", ""]);
  assert.equal(k.cap.label, "p\u0304");
  assert.equal(k.cap.cpk, null);
  assert.ok(!/Cp/.test(k.cap.extra), k.cap.extra);
  assert.equal(k.cap.extra, "\u00b7 limits per point", "the limits shown are at n-bar");
  const last = lastFigure(ch);
  assert.deepEqual([last.label, last.value.toFixed(last.decimals), last.note], ["Last p", "0.100", "40 defective"]);
});

test("np and c charts show whole counts; u shows u-bar and the average units", () => {
  const c = { meta: { chart: "c" }, limits: { center_line: 4, ucl: 10, lcl: 0, chart: "c", parameters: {} } };
  c.last = { sample_id: 3, value: 5, statistic: 5, ucl: 10, lcl: 0 };
  assert.equal(lastFigure(c).decimals, 0);
  assert.equal(keyFigures(c).rows[1][0], "c\u0304");
  assert.deepEqual(keyFigures(c).rows[0].slice(2), ["", ""], "a c chart has no sample size");
  const u = { meta: { chart: "u" }, limits: { center_line: 1.4, ucl: 3.0, lcl: 0, chart: "u", parameters: { units: 5 } } };
  assert.deepEqual(keyFigures(u).rows[0].slice(2), ["units\u0304", "5"]);
  assert.equal(keyFigures(u).cap.label, "u\u0304");
  const np = { meta: { chart: "np" }, limits: { center_line: 2.5, ucl: 7.12, lcl: 0, chart: "np", parameters: { inspected: 50 } } };
  assert.deepEqual(keyFigures(np).rows[0].slice(2), ["n", "50"]);
  assert.equal(chartKind(np.meta, np.limits), "attribute");
});

// An EWMA chart (lambda 0.2, L 3, sigma_xbar 0.02 around 10.0): two baseline samples
// (statistic null), then z with limits widening towards the asymptotic ones.
function ewmaChart() {
  const cl = 10;
  const sx = 0.02;
  const lam = 0.2;
  const L = 3;
  const width = (i) => L * sx * Math.sqrt((lam / (2 - lam)) * (1 - (1 - lam) ** (2 * i)));
  const xs = [10.01, 9.99, 10.02, 10.03, 10.05];
  let z = cl;
  const samples = xs.map((x, k) => {
    const base = { sample_id: 100 + k, characteristic_id: 3, timestamp: "2026-12-07T06:00:00.000Z", value: x, values: [x], range: null, zone: null, failed_rules: [], range_failed_rules: [] };
    if (k < 2) return { ...base, statistic: null, ucl: null, lcl: null, in_control: null };
    const i = k - 1;
    z = lam * x + (1 - lam) * z;
    const out = z > cl + width(i);
    return { ...base, statistic: round(z), ucl: round(cl + width(i)), lcl: round(cl - width(i)), in_control: !out, failed_rules: out ? [1] : [] };
  });
  const asym = L * sx * Math.sqrt(lam / (2 - lam));
  return {
    id: "3",
    meta: { chart: "ewma", subgroup_size: 1, unit: "mm", usl: 10.1, lsl: 9.9, target: 10 },
    limits: { center_line: cl, ucl: round(cl + asym), lcl: round(cl - asym), sigma: sx, method: "moving_range", sample_count: 25, range: null, capability: { cp: 1.6, cpk: 1.5, pp: null, ppk: null }, chart: "ewma", parameters: { lambda: lam, L } },
    samples,
    last: samples[samples.length - 1],
  };
}

test("EWMA: z against its widening limits; baseline samples hollow at their value", () => {
  const ch = ewmaChart();
  const v = chartView(ch, "x");
  assert.equal(v.family, "ewma");
  assert.deepEqual(v.ys.slice(0, 2), [null, null]);
  assert.equal(v.ys[2], 10.004);
  const widths = v.uclSteps.slice(2).map((u) => u - 10);
  assert.ok(widths[0] < widths[1] && widths[1] < widths[2], "the limits widen");
  assert.ok(widths[2] < ch.limits.ucl - 10, "towards the asymptotic ones");
  assert.ok(Math.abs(v.uclSteps[2] - 10 - (10 - v.lclSteps[2])) < 1e-9, "symmetric");
  const hollow = v.points.filter((p) => p.hollow);
  assert.deepEqual(hollow.map((p) => [p.i, p.y]), [[0, 10.01], [1, 9.99]]);
  assert.deepEqual(v.points.filter((p) => p.rules.length).map((p) => p.i), [4]);
  assert.equal(v.ucl, v.uclSteps[4], "labelled with the newest limit");
  assert.equal(chartView(ch, "r").shown, false);
});

test("EWMA key figures: the asymptotic limits, the spec, lambda and L, and Cpk", () => {
  const ch = ewmaChart();
  const k = keyFigures(ch);
  assert.deepEqual(k.rows[0], ["UCL", "10.020", "USL", "10.100"]);
  assert.deepEqual(k.rows[1], ["CL", "10.000", "T", "10.000"]);
  assert.deepEqual([k.cap.label, k.cap.text, k.cap.extra], ["\u03bb", "0.2", "\u00b7 L 3 \u00b7 Cpk 1.50"]);
  const last = lastFigure(ch);
  assert.equal(last.label, "Last z");
  assert.equal(last.value, ch.last.statistic);
  assert.equal(last.note, "x 10.050");
});

// A tabular CUSUM (k 0.5, h 5, sigma_xbar 0.02: H = 0.1) drifting upwards.
function cusumChart() {
  const cl = 10;
  const sx = 0.02;
  const H = 5 * sx;
  const K = 0.5 * sx;
  const xs = [10.0, 9.97, 9.98, 10.04, 10.05, 10.06];
  let up = 0;
  let down = 0;
  const samples = xs.map((x, k) => {
    const base = { sample_id: 200 + k, characteristic_id: 4, timestamp: "2026-12-07T06:00:00.000Z", value: x, values: [x], range: null, zone: null, range_failed_rules: [] };
    if (k < 1) return { ...base, statistic: null, ucl: null, lcl: null, cusum_upper: null, cusum_lower: null, in_control: null, failed_rules: [] };
    up = Math.max(0, x - (cl + K) + up);
    down = Math.max(0, cl - K - x + down);
    const out = up > H || down > H;
    return { ...base, statistic: round(Math.max(up, down)), ucl: H, lcl: 0, cusum_upper: round(up), cusum_lower: round(down), in_control: !out, failed_rules: out ? [1] : [] };
  });
  return {
    id: "4",
    meta: { chart: "cusum", subgroup_size: 1, unit: "mm" },
    limits: { center_line: cl, ucl: H, lcl: 0, sigma: sx, method: "moving_range", sample_count: 25, range: null, capability: null, chart: "cusum", parameters: { k: 0.5, h: 5 } },
    samples,
    last: samples[samples.length - 1],
  };
}

test("CUSUM: C+ upwards, C- mirrored downwards, against +H and -H around 0", () => {
  const ch = cusumChart();
  const v = chartView(ch, "x");
  assert.equal(v.family, "cusum");
  assert.equal(v.cl, 0);
  assert.deepEqual(v.names, ["H", "", "\u2212H"]);
  assert.deepEqual(v.ys, [null, 0, 0, 0.03, 0.07, 0.12]);
  assert.deepEqual(v.ys2, [null, -0.02, -0.03, 0, 0, 0]);
  assert.deepEqual(v.uclSteps, [null, 0.1, 0.1, 0.1, 0.1, 0.1]);
  assert.deepEqual(v.lclSteps, [null, -0.1, -0.1, -0.1, -0.1, -0.1]);
  assert.equal(v.ucl, 0.1);
  assert.equal(v.lcl, -0.1);
  // two dots a sample, none for the baseline one; the red one on the sum that crossed H
  assert.equal(v.points.length, 10);
  const failed = v.points.filter((p) => p.rules.length);
  assert.deepEqual(failed.map((p) => [p.i, p.y]), [[5, 0.12]]);
  assert.deepEqual(viewExtent(v), [-0.1, 0.12]);
});

test("CUSUM key figures: H, the centre, k and h; the last value with both sums", () => {
  const ch = cusumChart();
  const k = keyFigures(ch);
  assert.deepEqual(k.rows.map((r) => r.slice(0, 2)), [["H", "0.100"], ["CL", "10.000"], ["\u2212H", "-0.100"]]);
  assert.deepEqual([k.cap.label, k.cap.text, k.cap.extra], ["k", "0.5", "\u00b7 h 5"]);
  const last = lastFigure(ch);
  assert.equal(last.label, "Last x");
  assert.equal(last.value.toFixed(last.decimals), "10.060");
  assert.equal(last.note, "C\u207a 0.120 \u00b7 C\u207b 0.000");
});

test("the family from control_limits when meta does not say; i_mr is imr", () => {
  assert.equal(chartKind({}, { chart: "ewma" }), "ewma");
  assert.equal(chartKind({ chart: "i_mr" }, null), "shewhart");
  assert.equal(chartLabels({ chart: "i_mr" })[2], "MR");
});

test("Shewhart charts draw as before: flat limits, zones, the value, the secondary chart", () => {
  const samples = [
    { sample_id: 1, value: 10.01, range: null, failed_rules: [], range_failed_rules: [] },
    { sample_id: 2, value: 10.09, range: 0.08, failed_rules: [1], range_failed_rules: [1] },
  ];
  const ch = {
    meta: { chart: "i_mr", subgroup_size: 1 },
    limits: { center_line: 10, ucl: 10.06, lcl: 9.94, sigma: 0.02, method: "moving_range", range: { center_line: 0.0226, ucl: 0.0738, lcl: 0 } },
    samples,
  };
  const x = chartView(ch, "x");
  assert.deepEqual([x.ucl, x.cl, x.lcl, x.uclSteps, x.lclSteps], [10.06, 10, 9.94, null, null]);
  assert.ok(x.zones);
  assert.deepEqual(x.ys, [10.01, 10.09]);
  assert.deepEqual(x.points.map((p) => p.rules), [[], [1]]);
  const r = chartView(ch, "r");
  assert.equal(r.shown, true);
  assert.deepEqual(r.ys, [null, 0.08]);
  assert.deepEqual(r.points.map((p) => [p.i, p.rules]), [[1, [1]]]);
  assert.deepEqual([r.ucl, r.cl], [0.0738, 0.0226]);
  const k = keyFigures(ch);
  assert.deepEqual(k.rows[0], ["UCL", "10.060", "USL", "\u2014"]);
  assert.equal(k.cap.label, "Cpk");
});

test("a family this page does not know, whose samples carry a statistic and limits: steps", () => {
  const samples = [
    { sample_id: 1, value: 4, statistic: 0.4, ucl: 0.9, lcl: 0, failed_rules: [] },
    { sample_id: 2, value: 9, statistic: 0.95, ucl: 0.8, lcl: 0.1, failed_rules: [1] },
  ];
  const ch = { meta: { chart: "g" }, limits: { center_line: 0.4, ucl: 0.85, lcl: 0.05, chart: "g" }, samples };
  const v = chartView(ch, "x");
  assert.equal(v.family, "other");
  assert.deepEqual(v.ys, [0.4, 0.95]);
  assert.deepEqual([v.uclSteps, v.lclSteps], [[0.9, 0.8], [0, 0.1]]);
  assert.deepEqual(v.points.map((p) => p.rules), [[], [1]]);
  assert.equal(chartView(ch, "r").shown, false);
  // without a statistic it is drawn as before: the value against flat limits
  const plain = { ...ch, samples: samples.map(({ statistic, ucl, lcl, ...s }) => s) };
  assert.deepEqual(chartView(plain, "x").ys, [4, 9]);
  assert.equal(chartView(plain, "x").uclSteps, null);
});

test("the count with its size when the sample carries it; parameters from meta before limits", () => {
  const p = { meta: { chart: "p" }, limits: null, last: { sample_id: 5, value: 3, statistic: 0.06, inspected: 50, ucl: null, lcl: null } };
  assert.equal(lastFigure(p).note, "3 of 50 defective");
  const u = { meta: { chart: "u" }, limits: null, last: { sample_id: 5, value: 7, statistic: 1.4, units: 5, ucl: null, lcl: null } };
  assert.equal(lastFigure(u).note, "7 defects in 5 units");
  const e = { meta: { chart: "ewma", parameters: { lambda: 0.1, L: 2.7 } }, limits: null };
  assert.deepEqual([keyFigures(e).cap.text, keyFigures(e).cap.extra], ["0.1", "\u00b7 L 2.7"]);
  const both = { meta: { chart: "cusum", parameters: { k: 1, h: 4 } }, limits: { chart: "cusum", ucl: 0.1, parameters: { k: 0.5, h: 5 } } };
  assert.equal(keyFigures(both).cap.text, "0.5", "the limits' own, as they were made");
});
