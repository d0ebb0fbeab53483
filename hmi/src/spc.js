// What the page knows about SPC: the one place for it (docs/hmi.md "What the page knows").
// Pure: no DOM.
//
// Read from the bridge's retained messages (docs/topics.md), never copied here:
// - the chart family: `meta.chart` (imr (or i_mr), xbar_r, xbar_s; the bridge decides the n
//   split; p, np, c, u, ewma, cusum), else `control_limits.chart`,
// - the families' parameters: `control_limits.parameters` (inspected, units, lambda, L, k, h),
// - each point of the chart families' own limits: the sample's `ucl` / `lcl`, its plotted
//   point `statistic`, CUSUM's `cusum_upper` / `cusum_lower`,
// - the causes and actions an acknowledgement may name: `meta.cause_codes` (or its older name
//   `reason_codes`) and `meta.action_codes`, with docs/topics.md's defaults only where a meta
//   names none,
// - the limits each point was judged by: `sample.limits_version` and the `control_limits` of
//   that `version` (kept as they come),
// - rule names: each `violation`'s `rule_name` (and `meta.rules`),
// - limits, sigma and how they were made: `control_limits` (`method`, `sigma`, `range`).
// Still known here, because no message says it yet:
// - the labels of each chart family (CHART_LABELS),
// - the zone edges: +/- 1, 2 sigma of the plotted statistic and the limits, sigma being
//   `sigma / sqrt(n)` for computed limits and, for fixed limits (`method` "fixed"), a third of
//   the distance from the centre line to each limit (uneven when the centre is off the middle),
//   as engine/_limits.py zone_boundaries does,
// - the names of the zones (ZONE_LABELS).
import { decimalsFor, decimalsForScale, isNum } from "./format.js";

// [primary chart, secondary chart, secondary short name, primary short name]; the chart
// families of docs/spc.md have no secondary chart.
const CHART_LABELS = {
  imr: ["Individuals (X)", "Moving range (MR)", "MR", "X"],
  i_mr: ["Individuals (X)", "Moving range (MR)", "MR", "X"],
  xbar_r: ["Subgroup mean (X\u0304)", "Range (R)", "R", "X\u0304"],
  xbar_s: ["Subgroup mean (X\u0304)", "Std. deviation (S)", "S", "X\u0304"],
  p: ["Proportion defective (p)", null, null, "p"],
  np: ["Number defective (np)", null, null, "np"],
  c: ["Defects (c)", null, null, "c"],
  u: ["Defects per unit (u)", null, null, "u"],
  ewma: ["EWMA (z)", null, null, "EWMA"],
  cusum: ["CUSUM (C\u207a up, C\u207b down)", null, null, "CUSUM"],
};

// What kind of chart a family is: how its points, limits and key figures are drawn.
const KIND_OF = {
  imr: "shewhart",
  i_mr: "shewhart",
  xbar_r: "shewhart",
  xbar_s: "shewhart",
  p: "attribute",
  np: "attribute",
  c: "attribute",
  u: "attribute",
  ewma: "ewma",
  cusum: "cusum",
};
const UNKNOWN_CHART = ["Statistic", "Secondary", "2nd", "X"];

export const ZONE_LABELS = {
  beyond_ucl: "beyond UCL",
  zone_a_upper: "zone A upper",
  zone_b_upper: "zone B upper",
  zone_c_upper: "zone C upper",
  zone_c_lower: "zone C lower",
  zone_b_lower: "zone B lower",
  zone_a_lower: "zone A lower",
  beyond_lcl: "beyond LCL",
};

// The chart family's name: `meta.chart`, else `control_limits.chart` (`i_mr`, as the bridge
// spelled it before the chart families, is `imr`); null when neither says.
export function chartName(meta, limits) {
  const name = (meta && meta.chart) || (limits && limits.chart) || null;
  if (typeof name !== "string") return null;
  return name === "i_mr" ? "imr" : name;
}

// "shewhart" (also an unknown family), "attribute", "ewma" or "cusum".
export function chartKind(meta, limits) {
  return KIND_OF[chartName(meta, limits)] || "shewhart";
}

// The chart family's labels, by `meta.chart` (else `control_limits.chart`); an individuals
// chart until either is known. The secondary names are null for families without one.
export function chartLabels(meta, limits) {
  const name = chartName(meta, limits);
  if (!name) return CHART_LABELS.imr;
  return CHART_LABELS[name] || UNKNOWN_CHART;
}

// Whether the family has a secondary (MR / R / S) chart.
export function hasSecondary(meta, limits) {
  return chartKind(meta, limits) === "shewhart";
}

// A number of `control_limits.parameters`, or null.
export function parameter(limits, key) {
  const p = limits && limits.parameters;
  return p && typeof p === "object" && isNum(p[key]) ? p[key] : null;
}

export function zoneLabel(zone) {
  return ZONE_LABELS[zone] || zone;
}

// The causes an acknowledgement may name: the characteristic's `meta.cause_codes` (or
// `reason_codes`, their older name), else the defaults of docs/topics.md (an alarm whose
// characteristic's meta has not arrived yet can still be handled).
export const DEFAULT_CAUSES = [
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
];
export const DEFAULT_ACTIONS = [
  "Adjusted Process",
  "Replaced Tool",
  "Recalibrated Gauge",
  "Quarantined Parts",
  "Notified Maintenance",
  "No Action Needed",
  "Other",
];

function codes(list) {
  return Array.isArray(list) ? list.filter((x) => typeof x === "string" && x) : null;
}

export function causeCodes(meta) {
  const own = meta ? codes(meta.cause_codes) || codes(meta.reason_codes) : null;
  return own && own.length ? own : DEFAULT_CAUSES;
}
export const reasonCodes = causeCodes; // the older name

export function actionCodes(meta) {
  const own = meta ? codes(meta.action_codes) : null;
  return own && own.length ? own : DEFAULT_ACTIONS;
}

// Whether an acknowledgement must name an action (`meta.require_action`).
export function actionRequired(meta) {
  return !!(meta && meta.require_action === true);
}

// The zone edges of the primary chart: {cl, upper: [1s, 2s, 3s], lower: [1s, 2s, 3s]} or null.
export function zoneEdges(limits, meta) {
  if (!limits || !isNum(limits.center_line)) return null;
  const cl = limits.center_line;
  const n = meta && isNum(meta.subgroup_size) && meta.subgroup_size > 0 ? meta.subgroup_size : 1;
  let up = null;
  let down = null;
  if (limits.method === "fixed" && isNum(limits.ucl) && isNum(limits.lcl)) {
    up = (limits.ucl - cl) / 3;
    down = (cl - limits.lcl) / 3;
  } else if (isNum(limits.sigma) && limits.sigma > 0) {
    up = down = limits.sigma / Math.sqrt(n);
  } else if (isNum(limits.ucl) && isNum(limits.lcl)) {
    up = down = (limits.ucl - limits.lcl) / 6;
  }
  if (!(up > 0) || !(down > 0)) return null;
  // the outer edges are the limits themselves, as in the engine
  return {
    cl,
    upper: [cl + up, cl + 2 * up, isNum(limits.ucl) ? limits.ucl : cl + 3 * up],
    lower: [cl - down, cl - 2 * down, isNum(limits.lcl) ? limits.lcl : cl - 3 * down],
  };
}

// What a chart of characteristic `ch` draws: "x" (the primary) or "r" (the secondary), all
// derived from the messages held (the samples and `control_limits`), never from copies:
// - `samples`; `ys` (the line, one value or null per sample) and `ys2` (CUSUM's lower sum);
// - `points`: the dots, `{i, y, rules, hollow}` (several per sample for CUSUM);
// - `cl`, `ucl`, `lcl`: the lines and their labels (`names`), flat; `uclSteps` / `lclSteps`
//   (one value or null per sample) when the samples carry their own limits: the limits are
//   then drawn as steps through each point's own, labelled with the newest;
// - `zones`: the shaded 1 and 2 sigma zones (Shewhart charts only, docs/hmi.md);
// - `shown`: false for the secondary chart of a family that has none;
// - `decimals`: the digits of the chart's numbers.
export function chartView(ch, kind) {
  const samples = ch ? ch.samples : [];
  const l = ch && ch.limits;
  const meta = ch && ch.meta;
  const family = chartKind(meta, l);
  const view = {
    ch,
    family,
    kind,
    shown: true,
    samples,
    ys: [],
    ys2: null,
    points: [],
    cl: null,
    ucl: null,
    lcl: null,
    names: ["UCL", "CL", "LCL"],
    uclSteps: null,
    lclSteps: null,
    clSteps: null, // the centre line of each point's own limits version (Shewhart charts)
    versionChanges: [], // where the limits version changes: [{i, version}]
    zones: null,
    spec: null, // {usl, lsl} drawn on the X chart of the Shewhart families
    outOfSpec: [], // indices of the samples with a reading beyond a spec limit
    decimals: chartDecimals(ch),
  };
  // a family this page does not know whose samples carry their plotted `statistic`: drawn
  // as the families are (the statistic against each point's own limits), not as a Shewhart
  // chart of `value`
  const name = chartName(meta, l);
  const unknown = name !== null && !(name in KIND_OF);
  if (unknown && samples.some((s) => isNum(s.statistic))) {
    view.family = "other";
  } else if (family === "shewhart") {
    return shewhartView(view, kind, l, meta);
  }
  if (kind !== "x") {
    view.shown = false;
    view.samples = [];
    return view;
  }
  if (family === "cusum") return cusumView(view, l);
  return familyView(view, l);
}

function shewhartView(view, kind, l, meta) {
  if (kind === "x") {
    if (l) {
      view.cl = l.center_line;
      view.ucl = l.ucl;
      view.lcl = l.lcl;
      view.zones = zoneEdges(l, meta);
    }
    versionSteps(view, l, (lim) => lim);
    const usl = meta && isNum(meta.usl) ? meta.usl : null;
    const lsl = meta && isNum(meta.lsl) ? meta.lsl : null;
    if (usl !== null || lsl !== null) {
      view.spec = { usl, lsl };
      view.samples.forEach((s, i) => {
        if (outOfSpec(s, usl, lsl)) view.outOfSpec.push(i);
      });
    }
  } else if (l && l.range) {
    view.cl = l.range.center_line;
    view.ucl = l.range.ucl;
    view.lcl = l.range.lcl;
    versionSteps(view, l, (lim) => lim.range || null);
  }
  view.samples.forEach((s, i) => {
    const y = plotted(kind, s);
    view.ys.push(y);
    // an excluded sample (history's `excluded`) is drawn hollow: kept out of the limits
    if (y !== null) view.points.push({ i, y, rules: failedRules(kind, s), hollow: s.excluded === true });
  });
  return view;
}

// The limits of each point as it was judged (`sample.limits_version` -> the `control_limits`
// of that version, kept by state.js): when the points on a chart were judged by more than one
// version, the limits and the centre line are drawn as steps through each point's own, a
// vertical mark shows where the limits changed (`versionChanges`: [{i, version}]), and the
// zones are left out (they would be one version's). A point whose version the page never saw
// gets no step (a gap) rather than another version's limits.
function versionSteps(view, current, pick) {
  const ch = view.ch;
  const known = ch && ch.limitsByVersion;
  if (!known || !known.size) return;
  const versions = view.samples.map((s) => (isNum(s.limits_version) ? s.limits_version : null));
  const seen = new Set(versions.filter((v) => v !== null));
  if (seen.size < 2 && !(seen.size === 1 && current && isNum(current.version) && !seen.has(current.version))) return;
  const of = (v, key) => {
    const lim = v === null ? null : known.get(v);
    const part = lim ? pick(lim) : null;
    return part && isNum(part[key]) ? part[key] : null;
  };
  view.uclSteps = versions.map((v) => of(v, "ucl"));
  view.lclSteps = versions.map((v) => of(v, "lcl"));
  view.clSteps = versions.map((v) => of(v, "center_line"));
  view.zones = null;
  view.versionChanges = [];
  let previous = null;
  versions.forEach((v, i) => {
    if (v !== null && previous !== null && v !== previous) view.versionChanges.push({ i, version: v });
    if (v !== null) previous = v;
  });
}

// The steps of per-point limits, or null when no sample carries any.
function steps(samples, key, sign = 1) {
  let any = false;
  const out = samples.map((s) => {
    if (!isNum(s[key])) return null;
    any = true;
    return sign * s[key];
  });
  return any ? out : null;
}

function lastNum(arr) {
  for (let i = arr.length - 1; i >= 0; i--) if (isNum(arr[i])) return arr[i];
  return null;
}

// p, np, c, u and EWMA: the statistic against each point's own limits. An EWMA baseline
// sample (statistic null) is drawn hollow at its measured value, off the line.
function familyView(view, l) {
  if (l) {
    view.cl = l.center_line;
    view.ucl = l.ucl;
    view.lcl = l.lcl;
  }
  view.uclSteps = steps(view.samples, "ucl");
  view.lclSteps = steps(view.samples, "lcl");
  if (view.uclSteps) view.ucl = lastNum(view.uclSteps);
  if (view.lclSteps) view.lcl = lastNum(view.lclSteps);
  view.samples.forEach((s, i) => {
    const y = isNum(s.statistic) ? s.statistic : null;
    view.ys.push(y);
    if (y !== null) {
      view.points.push({ i, y, rules: failedRules("x", s), hollow: s.excluded === true });
    } else if (view.family === "ewma" && isNum(s.value)) {
      view.points.push({ i, y: s.value, rules: [], hollow: true });
    }
  });
  return view;
}

// CUSUM, as Minitab draws it: the upper sum C+ upwards, the lower sum C- mirrored downwards
// (plotted as -C-), against +H and -H (H = h sigma, the sample's `ucl`) around 0. Baseline
// samples (no sums yet) are not drawn.
function cusumView(view, l) {
  view.cl = 0;
  view.names = ["H", "", "\u2212H"];
  if (l && isNum(l.ucl)) {
    view.ucl = l.ucl;
    view.lcl = -l.ucl;
  }
  view.uclSteps = steps(view.samples, "ucl");
  view.lclSteps = steps(view.samples, "ucl", -1);
  if (view.uclSteps) {
    view.ucl = lastNum(view.uclSteps);
    view.lcl = -view.ucl;
  }
  view.ys2 = [];
  view.samples.forEach((s, i) => {
    const up = isNum(s.cusum_upper) ? s.cusum_upper : null;
    const down = isNum(s.cusum_lower) ? 0 - s.cusum_lower || 0 : null; // never -0
    view.ys.push(up);
    view.ys2.push(down);
    const rules = failedRules("x", s);
    const h = isNum(s.ucl) ? s.ucl : view.ucl;
    // the red dot on the sum that crossed H (on the larger one if neither says)
    let markUp = rules.length > 0 && up !== null && isNum(h) && up > h;
    let markDown = rules.length > 0 && down !== null && isNum(h) && -down > h;
    if (rules.length && !markUp && !markDown) {
      if (up !== null && (down === null || up >= -down)) markUp = true;
      else markDown = down !== null;
    }
    if (up !== null) view.points.push({ i, y: up, rules: markUp ? rules : [], hollow: false });
    if (down !== null) view.points.push({ i, y: down, rules: markDown ? rules : [], hollow: false });
  });
  return view;
}

// The digits of a chart's numbers (docs/hmi.md "Numbers"); for CUSUM from sigma_xbar = H / h.
export function chartDecimals(ch) {
  const l = ch && ch.limits;
  if (l && chartKind(ch.meta, l) === "cusum") {
    const h = parameter(l, "h");
    if (isNum(l.ucl) && l.ucl > 0 && h) return decimalsForScale(l.ucl / h);
  }
  return decimalsFor(ch);
}

// Whether a sample has a reading beyond a spec limit: its own `out_of_spec` when the bridge
// says (the alarm workflow's field), else any of its `values` (or its `value`).
export function outOfSpec(s, usl, lsl) {
  if (typeof s.out_of_spec === "boolean") return s.out_of_spec;
  const readings = Array.isArray(s.values) && s.values.length ? s.values : [s.value];
  return readings.some((x) => isNum(x) && ((usl !== null && x > usl) || (lsl !== null && x < lsl)));
}

// The spec limits that the y range takes in: those no further from the centre line than twice
// the control limits (a capable process's spec far outside would squash the points flat;
// such a limit is labelled at the chart's edge instead).
export function specInRange(view) {
  const out = [];
  if (!view.spec) return out;
  const half = isNum(view.ucl) && isNum(view.cl) ? Math.abs(view.ucl - view.cl) : null;
  for (const x of [view.spec.usl, view.spec.lsl]) {
    if (isNum(x) && (half === null || Math.abs(x - view.cl) <= 2 * half)) out.push(x);
  }
  return out;
}

// Everything a view draws outside its line series, for the y range.
export function viewExtent(view) {
  let lo = Infinity;
  let hi = -Infinity;
  const take = (x) => {
    if (isNum(x)) {
      if (x < lo) lo = x;
      if (x > hi) hi = x;
    }
  };
  for (const arr of [view.uclSteps, view.lclSteps, view.clSteps, view.ys, view.ys2]) if (arr) arr.forEach(take);
  view.points.forEach((p) => take(p.y));
  [view.ucl, view.lcl, view.cl].forEach(take);
  specInRange(view).forEach(take);
  return lo <= hi ? [lo, hi] : null;
}

export function plotted(kind, s) {
  const v = kind === "x" ? s.value : s.range;
  return isNum(v) ? v : null;
}

export function failedRules(kind, s) {
  const r = kind === "x" ? s.failed_rules : s.range_failed_rules;
  return Array.isArray(r) ? r : [];
}

// in_control / out_of_control / no_limits (baseline or not judged) / no_data
export function sampleState(s) {
  if (!s) return "no_data";
  if (s.in_control === true) return "in_control";
  if (s.in_control === false) return "out_of_control";
  return "no_limits";
}

// The sparkline of an overview tile: the last `max` plotted points (the statistic of the
// chart families that have one, else the measured value / subgroup mean), which of them
// failed a rule, and the flat limits when the chart has them (Shewhart only: the families'
// limits vary by point). `{ys, failed, ucl, lcl}`; null for no value (a baseline EWMA point).
export function sparkline(ch, max = 50) {
  const kind = chartKind(ch && ch.meta, ch && ch.limits);
  const samples = (ch && ch.samples ? ch.samples : []).slice(-max);
  const useStat = kind === "attribute" || kind === "ewma";
  const ys = samples.map((s) => {
    const v = useStat ? s.statistic : s.value;
    return isNum(v) ? v : null;
  });
  const failed = [];
  samples.forEach((s, i) => {
    if (s.in_control === false && ys[i] !== null) failed.push(i);
  });
  const l = ch && ch.limits;
  const flat = kind === "shewhart" && l && isNum(l.ucl) && isNum(l.lcl);
  return { ys, failed, ucl: flat ? l.ucl : null, lcl: flat ? l.lcl : null };
}

// The histogram of the readings held (every reading of every sample, oldest first, the
// excluded ones left out when the samples say so): `bins` equal bins over the readings and
// the spec limits, the normal curve's mean (of the readings) and sigma (the limits' within
// sigma, else the readings' standard deviation), and the capability the bridge computed
// (`control_limits.capability`: the page computes none). null without readings.
export function histogram(ch, bins = 20) {
  const readings = [];
  for (const s of (ch && ch.samples) || []) {
    if (s.excluded === true) continue;
    const vals = Array.isArray(s.values) && s.values.length ? s.values : [s.value];
    for (const v of vals) if (isNum(v)) readings.push(v);
  }
  if (!readings.length) return null;
  const meta = (ch && ch.meta) || {};
  const l = (ch && ch.limits) || {};
  const usl = isNum(meta.usl) ? meta.usl : null;
  const lsl = isNum(meta.lsl) ? meta.lsl : null;
  const target = isNum(meta.target) ? meta.target : null;
  const mean = readings.reduce((a, b) => a + b, 0) / readings.length;
  const sd =
    readings.length > 1
      ? Math.sqrt(readings.reduce((a, b) => a + (b - mean) * (b - mean), 0) / (readings.length - 1))
      : 0;
  const sigma = isNum(l.sigma) && l.sigma > 0 ? l.sigma : sd;
  let lo = Math.min(...readings);
  let hi = Math.max(...readings);
  for (const x of [usl, lsl]) {
    if (x !== null) {
      lo = Math.min(lo, x);
      hi = Math.max(hi, x);
    }
  }
  if (sigma > 0) {
    lo = Math.min(lo, mean - 3 * sigma);
    hi = Math.max(hi, mean + 3 * sigma);
  }
  if (hi === lo) {
    hi += 1;
    lo -= 1;
  }
  const width = (hi - lo) / bins;
  const counts = new Array(bins).fill(0);
  for (const v of readings) counts[Math.min(bins - 1, Math.floor((v - lo) / width))] += 1;
  const cap = l.capability && typeof l.capability === "object" ? l.capability : null;
  return { readings: readings.length, lo, hi, width, counts, mean, sigma, usl, lsl, target, cap };
}

// The capability line under the histogram: "Cp 1.10 · Cpk 0.95 · Pp 1.00 · Ppk 0.90" (a dash
// for an index the bridge left null, e.g. Cp with one spec limit).
export function capabilityText(cap) {
  if (!cap) return "no capability (no spec limits or no limits yet)";
  const f = (v) => (isNum(v) ? v.toFixed(2) : "\u2014");
  return ["cp", "cpk", "pp", "ppk"]
    .map((k) => k.charAt(0).toUpperCase() + k.slice(1) + " " + f(cap[k]))
    .join(" \u00b7 ");
}

// ---- the key figures panel ------------------------------------------------------------------

const BAR = "\u0304"; // combining macron: p̄, c̄, ū
const CENTRE_NAME = { p: "p" + BAR, np: "n p" + BAR, c: "c" + BAR, u: "u" + BAR };
const SIZE_NAME = { p: ["n" + BAR, "inspected"], np: ["n", "inspected"], u: ["units" + BAR, "units"] };

// The last sample as the big number shows it: `{label, value, decimals, note}`: the plotted
// statistic of p, np, c, u and EWMA (np and c as whole counts), CUSUM's and the Shewhart
// charts' measured value; `note` adds what else the point says (the count, the sums).
export function lastFigure(ch) {
  const s = ch && ch.last;
  const name = chartName(ch && ch.meta, ch && ch.limits);
  const kind = chartKind(ch && ch.meta, ch && ch.limits);
  const names = chartLabels(ch && ch.meta, ch && ch.limits);
  const d = chartDecimals(ch);
  const label = kind === "ewma" ? "z" : kind === "cusum" ? "x" : names[3];
  const out = { label: "Last " + label, value: s && isNum(s.value) ? s.value : null, decimals: d, note: "" };
  if (!s) return out;
  if (kind === "attribute") {
    out.value = isNum(s.statistic) ? s.statistic : null;
    if (name === "np" || name === "c") out.decimals = 0;
    else if (isNum(s.value) && name === "u") {
      out.note = s.value + " defects" + (isNum(s.units) ? " in " + s.units + " units" : "");
    } else if (isNum(s.value)) {
      out.note = s.value + (isNum(s.inspected) ? " of " + s.inspected : "") + " defective";
    }
  } else if (kind === "ewma") {
    out.value = isNum(s.statistic) ? s.statistic : null;
    if (isNum(s.value)) out.note = "x " + s.value.toFixed(d);
    if (out.value === null) out.label = "Last x";
  } else if (kind === "cusum" && isNum(s.cusum_upper) && isNum(s.cusum_lower)) {
    out.note = "C\u207a " + s.cusum_upper.toFixed(d) + " \u00b7 C\u207b " + s.cusum_lower.toFixed(d);
  }
  return out;
}

const dash = "\u2014";
// a family's parameter: control_limits' (as the limits were made), else meta's (known before
// the limits are)
const famParam = (meta, l, key) => {
  const v = parameter(l, key);
  return v !== null ? v : parameter(meta, key);
};
const num = (v, d) => (isNum(v) ? v.toFixed(d) : dash);
// a parameter as configured: as few digits as it has (0.2, 3, 0.5), at most 4
const param = (v) => (isNum(v) ? String(Number(v.toFixed(4))) : dash);

// The key figures of characteristic `ch` as the panel shows them: `rows` (three of
// [label, text, label, text]: the left column the limits, the right the spec or the
// family's size), and the line under them, `cap` = {label, text, cpk, extra}: Cpk for the
// variables charts (Shewhart, EWMA, CUSUM), the centre for attribute charts (no capability),
// and the family's parameters (lambda and L, k and h) from `control_limits.parameters`.
export function keyFigures(ch) {
  const meta = (ch && ch.meta) || {};
  const l = (ch && ch.limits) || {};
  const name = chartName(meta, l);
  const kind = chartKind(meta, l);
  const d = chartDecimals(ch);
  const cap = l.capability || {};
  const spec = [
    ["USL", num(meta.usl, d)],
    ["T", num(meta.target, d)],
    ["LSL", num(meta.lsl, d)],
  ];
  const cpk = { label: "Cpk", text: num(cap.cpk, 2), cpk: isNum(cap.cpk) ? cap.cpk : null, extra: "" };
  if (isNum(cap.cp) || isNum(cap.ppk)) cpk.extra = "\u00b7 Cp " + num(cap.cp, 2) + " \u00b7 Ppk " + num(cap.ppk, 2);
  if (kind === "attribute") {
    const size = SIZE_NAME[name];
    const sizeValue = size ? famParam(meta, l, size[1]) : null;
    const left = [
      ["UCL", num(l.ucl, d)],
      [CENTRE_NAME[name] || "CL", num(l.center_line, d)],
      ["LCL", num(l.lcl, d)],
    ];
    const right = [size ? [size[0], isNum(sizeValue) ? param(sizeValue) : dash] : ["", ""], ["", ""], ["", ""]];
    return {
      rows: left.map((x, i) => [...x, ...right[i]]),
      cap: {
        label: CENTRE_NAME[name] || "CL",
        text: num(l.center_line, d),
        cpk: null,
        extra: size ? "\u00b7 limits per point" : "",
      },
    };
  }
  if (kind === "ewma") {
    const left = [
      ["UCL", num(l.ucl, d)],
      ["CL", num(l.center_line, d)],
      ["LCL", num(l.lcl, d)],
    ];
    const extra = "\u00b7 L " + param(famParam(meta, l, "L")) + (cpk.cpk !== null ? " \u00b7 Cpk " + cpk.text : "");
    return {
      rows: left.map((x, i) => [...x, ...spec[i]]),
      cap: { label: "\u03bb", text: param(famParam(meta, l, "lambda")), cpk: null, extra },
    };
  }
  if (kind === "cusum") {
    const left = [
      ["H", num(l.ucl, d)],
      ["CL", num(l.center_line, d)],
      ["\u2212H", isNum(l.ucl) ? num(-l.ucl, d) : dash],
    ];
    const extra = "\u00b7 h " + param(famParam(meta, l, "h")) + (cpk.cpk !== null ? " \u00b7 Cpk " + cpk.text : "");
    return {
      rows: left.map((x, i) => [...x, ...spec[i]]),
      cap: { label: "k", text: param(famParam(meta, l, "k")), cpk: null, extra },
    };
  }
  const left = [
    ["UCL", num(l.ucl, d)],
    ["CL", num(l.center_line, d)],
    ["LCL", num(l.lcl, d)],
  ];
  return { rows: left.map((x, i) => [...x, ...spec[i]]), cap: cpk };
}

// ---- a point explained (the chart's tooltip and side panel) ----------------------------------

const CONTEXT_ORDER = ["part", "lot", "shift", "operator"];

// What a sample says, as the tooltip lists it: `[[label, text, key]]` (`key` a stable name
// for tests: time, sample, readings, statistic, secondary, zone, rules, spec, context.<key>,
// excluded, limits). Everything from the sample and the limits held; nothing computed anew.
export function pointDetail(ch, s) {
  if (!s) return [];
  const meta = (ch && ch.meta) || {};
  const l = ch && ch.limits;
  const names = chartLabels(meta, l);
  const kind = chartKind(meta, l);
  const d = chartDecimals(ch);
  const unit = meta.unit ? " " + meta.unit : "";
  const f = (v) => (isNum(v) ? v.toFixed(d) : "—");
  const rows = [];
  rows.push(["Time", fmtFull(s.timestamp), "time"]);
  rows.push(["Sample", "#" + s.sample_id, "sample"]);
  if (kind === "attribute") {
    const counts = [];
    if (isNum(s.value)) counts.push(String(s.value));
    if (isNum(s.inspected)) counts.push("of " + s.inspected + " inspected");
    if (isNum(s.units)) counts.push("in " + s.units + " units");
    rows.push(["Count", counts.join(" ") || "—", "readings"]);
  } else {
    const vals = Array.isArray(s.values) && s.values.length ? s.values : [s.value];
    // as the gauge sent them (its digits), not rounded to the chart's
    rows.push(["Readings", vals.map((v) => (isNum(v) ? String(v) : "\u2014")).join(", ") + unit, "readings"]);
  }
  if (kind === "shewhart") {
    rows.push([names[3], f(s.value) + unit, "statistic"]);
    if (isNum(s.range)) rows.push([names[2], f(s.range), "secondary"]);
  } else if (kind === "cusum") {
    rows.push(["C⁺ / C⁻", f(s.cusum_upper) + " / " + f(s.cusum_lower), "statistic"]);
  } else {
    rows.push([names[3], isNum(s.statistic) ? s.statistic.toFixed(kind === "attribute" ? Math.max(d, 3) : d) : "— (baseline)", "statistic"]);
  }
  rows.push(["Zone", s.zone ? zoneLabel(s.zone) : "not judged", "zone"]);
  const rules = [];
  if (Array.isArray(s.failed_rules) && s.failed_rules.length) rules.push(names[3] + " rule " + s.failed_rules.join(", "));
  if (Array.isArray(s.range_failed_rules) && s.range_failed_rules.length) rules.push(names[2] + " rule " + s.range_failed_rules.join(", "));
  rows.push(["Rules failed", rules.length ? rules.join("; ") : "none", "rules"]);
  if (typeof s.out_of_spec === "boolean" || isNum(meta.usl) || isNum(meta.lsl)) {
    const out = outOfSpec(s, isNum(meta.usl) ? meta.usl : null, isNum(meta.lsl) ? meta.lsl : null);
    rows.push(["Spec", out ? "OUT OF SPEC" : "within spec", "spec"]);
  }
  const ctx = s.context && typeof s.context === "object" ? s.context : {};
  const keys = CONTEXT_ORDER.filter((k) => k in ctx).concat(Object.keys(ctx).filter((k) => !CONTEXT_ORDER.includes(k)).sort());
  for (const k of keys) rows.push([k.charAt(0).toUpperCase() + k.slice(1), String(ctx[k]), "context." + k]);
  if (!keys.length) rows.push(["Context", "none given", "context"]);
  rows.push(["Excluded", s.excluded === true ? "yes (not in limit calculations)" : "no", "excluded"]);
  if (isNum(s.limits_version)) {
    const own = ch && ch.limitsByVersion ? ch.limitsByVersion.get(s.limits_version) : null;
    const text = own && isNum(own.ucl) ? " (LCL " + f(own.lcl) + " · UCL " + f(own.ucl) + ")" : "";
    rows.push(["Limits", "version " + s.limits_version + text, "limits"]);
  } else if (isNum(s.ucl) || isNum(s.lcl)) {
    rows.push(["Limits", "LCL " + f(s.lcl) + " · UCL " + f(s.ucl), "limits"]);
  }
  return rows;
}

// The full time of a point, in the browser's time zone, with the date.
function fmtFull(iso) {
  const t = new Date(iso);
  if (isNaN(t.getTime())) return String(iso || "—");
  return t.toLocaleString([], {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
}
