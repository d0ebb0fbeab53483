// What the page knows about SPC: the one place for it (docs/hmi.md "What the page knows").
// Pure: no DOM.
//
// Read from the bridge's retained messages (docs/topics.md), never copied here:
// - the chart family: `meta.chart` (i_mr, xbar_r, xbar_s; the bridge decides the n split),
// - the reason codes an acknowledgement may name: `meta.reason_codes`,
// - rule names: each `violation`'s `rule_name` (and `meta.rules`),
// - limits, sigma and how they were made: `control_limits` (`method`, `sigma`, `range`).
// Still known here, because no message says it yet:
// - the labels of each chart family (CHART_LABELS),
// - the zone edges: +/- 1, 2 sigma of the plotted statistic and the limits, sigma being
//   `sigma / sqrt(n)` for computed limits and, for fixed limits (`method` "fixed"), a third of
//   the distance from the centre line to each limit (uneven when the centre is off the middle),
//   as engine/_limits.py zone_boundaries does,
// - the names of the zones (ZONE_LABELS).
import { isNum } from "./format.js";

// [primary chart, secondary chart, secondary short name, primary short name]
const CHART_LABELS = {
  i_mr: ["Individuals (X)", "Moving range (MR)", "MR", "X"],
  imr: ["Individuals (X)", "Moving range (MR)", "MR", "X"], // meta.chart since the chart families
  xbar_r: ["Subgroup mean (X\u0304)", "Range (R)", "R", "X\u0304"],
  xbar_s: ["Subgroup mean (X\u0304)", "Std. deviation (S)", "S", "X\u0304"],
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

// The chart family's labels, by `meta.chart`; an individuals chart until a meta is known.
export function chartLabels(meta) {
  if (!meta) return CHART_LABELS.i_mr;
  return CHART_LABELS[meta.chart] || UNKNOWN_CHART;
}

export function zoneLabel(zone) {
  return ZONE_LABELS[zone] || zone;
}

// The reason codes of a characteristic's acknowledgements, as its meta lists them ([] until
// a meta with them has arrived: the page then offers none and cannot acknowledge).
export function reasonCodes(meta) {
  const r = meta && Array.isArray(meta.reason_codes) ? meta.reason_codes : null;
  return r ? r.filter((x) => typeof x === "string" && x) : [];
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

// What a chart of characteristic `ch` draws: "x" (the primary) or "r" (the secondary).
export function chartView(ch, kind) {
  const samples = ch ? ch.samples : [];
  const l = ch && ch.limits;
  const view = { ch, samples, cl: null, ucl: null, lcl: null, zones: null };
  if (kind === "x") {
    if (l) {
      view.cl = l.center_line;
      view.ucl = l.ucl;
      view.lcl = l.lcl;
      view.zones = zoneEdges(l, ch.meta);
    }
  } else if (l && l.range) {
    view.cl = l.range.center_line;
    view.ucl = l.range.ucl;
    view.lcl = l.range.lcl;
  }
  return view;
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
