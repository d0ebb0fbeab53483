// The charts, drawn with uPlot (the global from vendor/uPlot.iife.min.js): the primary
// (X / X-bar, p, np, c, u, EWMA z, CUSUM sums) with its limits (stepped where each point has
// its own) and zones, and for the Shewhart charts the secondary (MR / R / S) below it.
// What to draw comes from spc.js (chartView); docs/hmi.md "Charts" says how it looks.
import { fmtTime, isNum } from "./format.js";
import { chartView, pointDetail, viewExtent } from "./spc.js";

const COLORS = {
  line: "#4fc3f7",
  line2: "#ffb020",
  point: "#e8f4fb",
  bad: "#ff2d2d",
  cl: "#2ecc71",
  limit: "#ff6b6b",
  spec: "#d69bff",
  zone2: "rgba(255, 176, 32, 0.20)",
  zone1: "rgba(255, 176, 32, 0.08)",
  axis: "#c3ccd5",
  grid: "#2c343d",
  text: "#ffffff",
};
const FONT = "px DejaVu Sans, Arial, sans-serif";

// Everything on the charts scales with the page's root font size, which grows on big
// screens (style.css): a wall-mounted 1080p or 4K panel stays readable from a distance.
function currentScale() {
  return (parseFloat(window.getComputedStyle(document.documentElement).fontSize) || 16) / 16;
}

function yRange(v, min, max) {
  let lo = min;
  let hi = max;
  const extent = viewExtent(v); // the limits (steps too) and every point, not only the line
  for (const x of extent || []) {
    if (isNum(x)) {
      lo = lo == null || !isFinite(lo) ? x : Math.min(lo, x);
      hi = hi == null || !isFinite(hi) ? x : Math.max(hi, x);
    }
  }
  if (lo == null || hi == null || !isFinite(lo) || !isFinite(hi)) return [0, 1];
  let span = hi - lo;
  if (span <= 0) span = Math.abs(hi) * 0.02 || 1;
  return [lo - span * 0.12, hi + span * 0.12];
}

function clipToPlot(u, ctx) {
  ctx.save();
  ctx.beginPath();
  ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
  ctx.clip();
}

// Zone B (1..2 sigma) lighter, zone A (2..3 sigma) darker, both sides of the centre line.
function drawZones(u, v) {
  const z = v.zones;
  if (!z) return;
  const ctx = u.ctx;
  clipToPlot(u, ctx);
  const left = u.bbox.left;
  const width = u.bbox.width;
  const y = (val) => u.valToPos(val, "y", true);
  for (const [from, to, color] of [[0, 1, COLORS.zone1], [1, 2, COLORS.zone2]]) {
    ctx.fillStyle = color;
    let a = y(z.upper[from]);
    let b = y(z.upper[to]);
    ctx.fillRect(left, b, width, a - b);
    a = y(z.lower[from]);
    b = y(z.lower[to]);
    ctx.fillRect(left, a, width, b - a);
  }
  ctx.restore();
}

// A limit that each point has its own: a step through every point's value, half a point
// either side of it; a gap where a point has none (baseline).
function drawSteps(u, steps, px) {
  const ctx = u.ctx;
  const x = (i) => u.valToPos(i, "x", true);
  ctx.beginPath();
  let open = false;
  steps.forEach((value, i) => {
    if (!isNum(value)) {
      open = false;
      return;
    }
    const y = Math.round(u.valToPos(value, "y", true)) + 0.5;
    if (open) ctx.lineTo(x(i - 0.5), y);
    else ctx.moveTo(x(i - 0.5), y);
    ctx.lineTo(x(i + 0.5), y);
    open = true;
  });
  ctx.lineWidth = 2 * px;
  ctx.stroke();
}

function drawLimits(u, v, scale) {
  const ctx = u.ctx;
  const px = uPlot.pxRatio * scale;
  const d = v.decimals;
  const lines = [
    [v.names[0], v.ucl, COLORS.limit, [8 * px, 5 * px], v.uclSteps],
    [v.names[1], v.cl, COLORS.cl, [], v.clSteps],
    [v.names[2], v.lcl, COLORS.limit, [8 * px, 5 * px], v.lclSteps],
  ];
  drawVersionChanges(u, v, px);
  ctx.save();
  ctx.font = "bold " + Math.round(12 * px) + FONT;
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  const labelled = [];
  lines.forEach(([name, value, color, dash, steps], index) => {
    if (!isNum(value)) return;
    const y = Math.round(u.valToPos(value, "y", true)) + 0.5;
    if (y < u.bbox.top - 1 || y > u.bbox.top + u.bbox.height + 1) return;
    ctx.strokeStyle = color;
    ctx.lineWidth = 2 * px;
    ctx.setLineDash(dash);
    if (steps) {
      clipToPlot(u, ctx);
      ctx.strokeStyle = color;
      ctx.setLineDash(dash);
      drawSteps(u, steps, px);
      ctx.restore();
    } else {
      ctx.beginPath();
      ctx.moveTo(u.bbox.left, y);
      ctx.lineTo(u.bbox.left + u.bbox.width, y);
      ctx.stroke();
    }
    ctx.setLineDash([]);
    // Labels in the right margin (a stepped limit's newest value), nudged apart when close.
    let ly = y;
    for (const other of labelled) {
      if (Math.abs(ly - other) < 13 * px) ly = other + (index === 2 ? 13 : -13) * px;
    }
    labelled.push(ly);
    ctx.fillStyle = color;
    const text = value.toFixed(d);
    ctx.fillText(name ? name + " " + text : text, u.bbox.left + u.bbox.width + 6 * px, ly);
  });
  ctx.restore();
  drawSpec(u, v, scale);
}

// Where the limits changed (a recalculation): a dotted vertical line before the first point of
// the new version, labelled "limits v2" at the top.
function drawVersionChanges(u, v, px) {
  const el = u.root.parentNode;
  const marks = v.versionChanges || [];
  el.dataset.versionChanges = marks.map((m) => v.samples[m.i].sample_id + ":v" + m.version).join(" ");
  if (!marks.length) return;
  const ctx = u.ctx;
  ctx.save();
  clipToPlot(u, ctx);
  ctx.strokeStyle = COLORS.axis;
  ctx.fillStyle = COLORS.axis;
  ctx.lineWidth = 1.5 * px;
  ctx.setLineDash([2 * px, 4 * px]);
  ctx.font = Math.round(11 * px) + FONT;
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  for (const m of marks) {
    const x = Math.round(u.valToPos(m.i - 0.5, "x", true)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.fillText("limits v" + m.version, x + 3 * px, u.bbox.top + 2 * px);
  }
  ctx.restore();
  ctx.restore();
}

// The spec limits (meta's USL / LSL) on the X chart: violet dash-dot lines labelled on the
// left inside the plot (the right margin is the control limits'); a limit beyond the y range
// is named at the edge with an arrow. Points with a reading out of spec get a violet ring.
function drawSpec(u, v, scale) {
  const el = u.root.parentNode;
  if (!v.spec) {
    if (v.kind === "x") {
      el.dataset.spec = "";
      el.dataset.outOfSpec = "";
    }
    return;
  }
  const ctx = u.ctx;
  const px = uPlot.pxRatio * scale;
  const top = u.bbox.top;
  const bottom = u.bbox.top + u.bbox.height;
  const drawn = [];
  ctx.save();
  ctx.font = "bold " + Math.round(12 * px) + FONT;
  ctx.textAlign = "left";
  ctx.fillStyle = COLORS.spec;
  ctx.strokeStyle = COLORS.spec;
  ctx.lineWidth = 1.5 * px;
  for (const [name, value] of [["USL", v.spec.usl], ["LSL", v.spec.lsl]]) {
    if (!isNum(value)) continue;
    const text = name + " " + value.toFixed(v.decimals);
    drawn.push(text);
    const y = Math.round(u.valToPos(value, "y", true)) + 0.5;
    if (y < top || y > bottom) {
      ctx.textBaseline = y < top ? "top" : "bottom";
      ctx.fillText(text + (y < top ? " \u25b2" : " \u25bc"), u.bbox.left + 6 * px, y < top ? top + 2 * px : bottom - 2 * px);
      continue;
    }
    ctx.setLineDash([10 * px, 4 * px, 2 * px, 4 * px]);
    ctx.beginPath();
    ctx.moveTo(u.bbox.left, y);
    ctx.lineTo(u.bbox.left + u.bbox.width, y);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.textBaseline = name === "USL" ? "bottom" : "top";
    ctx.fillText(text, u.bbox.left + 6 * px, y + (name === "USL" ? -2 : 2) * px);
  }
  ctx.lineWidth = 2 * px;
  const ids = [];
  for (const i of v.outOfSpec) {
    const y = v.ys[i];
    if (!isNum(y)) continue;
    const s = 9 * px;
    const x = u.valToPos(i, "x", true);
    const yy = u.valToPos(y, "y", true);
    ctx.strokeRect(x - s, yy - s, 2 * s, 2 * s);
    ids.push(v.samples[i].sample_id);
  }
  ctx.restore();
  el.dataset.spec = drawn.join(" ");
  el.dataset.outOfSpec = ids.join(" ");
}

function drawPoints(u, v, scale) {
  const ctx = u.ctx;
  const px = uPlot.pxRatio * scale;
  const marks = [];
  const drawnSamples = new Set();
  const markedSamples = new Map();
  ctx.save();
  ctx.beginPath(); // the plot, plus the top margin where rule numbers go
  ctx.rect(u.bbox.left - 8 * px, 0, u.bbox.width + 16 * px, u.bbox.top + u.bbox.height);
  ctx.clip();
  ctx.font = "bold " + Math.round(13 * px) + FONT;
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  const labels = []; // boxes of the rule labels drawn so far
  for (const p of v.points) {
    const s = v.samples[p.i];
    drawnSamples.add(p.i);
    const x = u.valToPos(p.i, "x", true);
    const y = u.valToPos(p.y, "y", true);
    const rules = p.rules;
    ctx.beginPath();
    if (p.hollow) {
      // a baseline point: not judged, no statistic yet
      ctx.arc(x, y, 3.5 * px, 0, 2 * Math.PI);
      ctx.lineWidth = 1.5 * px;
      ctx.strokeStyle = COLORS.point;
      ctx.stroke();
      continue;
    }
    if (!rules.length) {
      ctx.arc(x, y, 3.5 * px, 0, 2 * Math.PI);
      ctx.fillStyle = COLORS.point;
      ctx.fill();
      continue;
    }
    ctx.arc(x, y, 6 * px, 0, 2 * Math.PI);
    ctx.fillStyle = COLORS.bad;
    ctx.fill();
    ctx.lineWidth = 1.5 * px;
    ctx.strokeStyle = "#ffffff";
    ctx.stroke();
    // The rule numbers above the point, unless they would overprint the previous label.
    const label = rules.join(",");
    const half = ctx.measureText(label).width / 2;
    const lx = Math.min(Math.max(x, u.bbox.left + half), u.bbox.left + u.bbox.width - half);
    const ly = y - 8 * px;
    const box = { left: lx - half - 2 * px, right: lx + half + 2 * px, top: ly - 14 * px, bottom: ly };
    const free = labels.every(
      (b) => b.right < box.left || b.left > box.right || b.bottom < box.top || b.top > box.bottom,
    );
    if (free) {
      ctx.fillStyle = COLORS.text;
      ctx.fillText(label, lx, ly);
      labels.push(box);
      if (labels.length > 12) labels.shift(); // only recent labels can be near
    }
    if (!markedSamples.has(p.i)) {
      markedSamples.set(p.i, true);
      marks.push(s.sample_id + ":" + label);
    }
  }
  ctx.restore();
  // What was drawn, for tests and for anyone inspecting the page (docs/hmi.md "Stable hooks").
  const el = u.root.parentNode;
  el.dataset.points = String(drawnSamples.size);
  el.dataset.failedPoints = String(marks.length);
  el.dataset.marks = marks.join(" ");
  const last = v.samples[v.samples.length - 1];
  el.dataset.lastSampleId = last ? String(last.sample_id) : "";
  el.dataset.family = v.family;
  const list = (arr) => (arr ? arr.map((x) => (isNum(x) ? String(x) : "-")).join(" ") : "");
  el.dataset.series = list(v.ys);
  el.dataset.series2 = list(v.ys2);
  el.dataset.uclSteps = list(v.uclSteps);
  el.dataset.lclSteps = list(v.lclSteps);
  el.dataset.clSteps = list(v.clSteps);
  el.dataset.hollowPoints = String(v.points.filter((p) => p.hollow).length);
  el.dataset.hollowSamples = v.points
    .filter((p) => p.hollow)
    .map((p) => v.samples[p.i].sample_id)
    .join(" ");
}

// ---- a point explained: the tooltip, pinned by a click ------------------------------------------

// The tooltip of a chart box: every field of the sample under the cursor (spc.js pointDetail);
// a click pins it (it stays, and follows no more, until another click or Escape).
function makeTip(el) {
  const tip = document.createElement("div");
  tip.className = "point-tip";
  tip.setAttribute("data-testid", "point-tip");
  tip.setAttribute("role", "tooltip");
  tip.hidden = true;
  el.parentNode.appendChild(tip);
  return tip;
}

function showTip(tip, el, ch, s, x, pinned) {
  if (!s) {
    tip.hidden = true;
    tip.dataset.sampleId = "";
    return;
  }
  const key = s.sample_id + "|" + pinned;
  if (tip.dataset.key !== key) {
    tip.dataset.key = key;
    tip.dataset.sampleId = String(s.sample_id);
    tip.dataset.pinned = pinned ? "true" : "false";
    tip.textContent = "";
    for (const [label, text, name] of pointDetail(ch, s)) {
      const row = document.createElement("div");
      row.className = "tip-row";
      row.dataset.key = name;
      const l = document.createElement("span");
      l.textContent = label;
      const t = document.createElement("b");
      t.textContent = text;
      row.appendChild(l);
      row.appendChild(t);
      tip.appendChild(row);
    }
    if (pinned) {
      const hint = document.createElement("div");
      hint.className = "tip-hint";
      hint.textContent = "pinned \u00b7 click the chart or press Esc to close";
      tip.appendChild(hint);
    }
  }
  tip.hidden = false;
  // beside the point, on the side with more room, inside the box
  const box = el.parentNode.getBoundingClientRect();
  const chart = el.getBoundingClientRect();
  const left = chart.left - box.left + x;
  const width = tip.offsetWidth;
  const room = box.width - left;
  tip.style.left = Math.max(0, room > width + 16 ? left + 12 : left - width - 12) + "px";
  tip.style.top = chart.top - box.top + 4 + "px";
}

// `elements`: {x, r} (the chart containers); `selected()`: the characteristic on screen or null.
export function createCharts(elements, selected) {
  const charts = { x: null, r: null };
  let scale = 1;
  const view = (kind) => chartView(selected(), kind);
  const tips = { x: makeTip(elements.x), r: makeTip(elements.r) };
  const pinned = { x: null, r: null }; // sample id pinned per chart
  const hover = { x: null, r: null }; // index under the cursor

  function tipFor(kind, u) {
    const v = view(kind);
    const ch = selected();
    let i = hover[kind];
    if (pinned[kind] !== null) {
      i = v.samples.findIndex((s) => s.sample_id === pinned[kind]);
      if (i < 0) pinned[kind] = null;
    }
    const s = i !== null && i >= 0 ? v.samples[i] : null;
    showTip(tips[kind], elements[kind], ch, s, s ? u.valToPos(i, "x") : 0, pinned[kind] !== null);
  }

  function unpinAll() {
    for (const kind of ["x", "r"]) {
      pinned[kind] = null;
      hover[kind] = null;
      if (charts[kind]) tipFor(kind, charts[kind].u);
    }
  }
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") unpinAll();
  });

  function make(kind) {
    const el = elements[kind];
    const font = Math.round(13 * scale) + FONT;
    const opts = {
      width: Math.max(200, el.clientWidth),
      height: Math.max(100, el.clientHeight),
      legend: { show: false },
      // room above for rule numbers, right for the limit labels
      padding: [Math.round(18 * scale), Math.round(96 * scale), 0, 0],
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      scales: {
        x: { time: false, range: () => [-0.5, Math.max(view(kind).samples.length, 25) - 0.5] },
        y: { range: (u, min, max) => yRange(view(kind), min, max) },
      },
      axes: [
        {
          stroke: COLORS.axis,
          font,
          size: Math.round(34 * scale),
          space: Math.round(90 * scale),
          grid: { stroke: COLORS.grid, width: 1 },
          ticks: { stroke: COLORS.grid, width: 1 },
          incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000],
          values: (u, splits) => {
            const samples = view(kind).samples;
            let previous = null;
            const labelled = [];
            const labels = splits.map((i) => {
              const s = samples[Math.round(i)];
              const label = s ? fmtTime(s.timestamp) : "";
              if (label === previous) return ""; // several samples in one second: label it once
              previous = label;
              if (s) labelled.push(s.sample_id);
              return label;
            });
            el.dataset.labelledSamples = labelled.join(" "); // which samples the axis names
            return labels;
          },
        },
        {
          stroke: COLORS.axis,
          font,
          size: Math.round(72 * scale),
          space: Math.round(36 * scale),
          grid: { stroke: COLORS.grid, width: 1 },
          ticks: { stroke: COLORS.grid, width: 1 },
          values: (u, splits) => {
            const d = view(kind).decimals;
            return splits.map((v) => v.toFixed(d));
          },
        },
      ],
      // the statistic's line; a second line for CUSUM's lower sum (empty otherwise)
      series: [
        {},
        { stroke: COLORS.line, width: 2 * scale, points: { show: false }, spanGaps: false },
        { stroke: COLORS.line2, width: 2 * scale, points: { show: false }, spanGaps: false },
      ],
      hooks: {
        setCursor: [
          (u) => {
            const i = u.cursor.idx;
            hover[kind] = i === null || i === undefined ? null : i;
            tipFor(kind, u);
          },
        ],
        ready: [
          (u) => {
            u.over.addEventListener("click", () => {
              const i = hover[kind];
              const s = i !== null ? view(kind).samples[i] : null;
              pinned[kind] = pinned[kind] === null && s ? s.sample_id : null;
              tipFor(kind, u);
            });
          },
        ],
        drawClear: [(u) => kind === "x" && drawZones(u, view(kind))],
        drawAxes: [(u) => drawLimits(u, view(kind), scale)],
        draw: [(u) => drawPoints(u, view(kind), scale)],
      },
    };
    const u = new uPlot(opts, [[], [], []], el);
    // where sample i is drawn, in CSS pixels from the chart element's left (for tests and
    // anyone scripting the page)
    el.pointX = (i) => u.over.getBoundingClientRect().left - el.getBoundingClientRect().left + u.valToPos(i, "x");
    let observer = null;
    if (window.ResizeObserver) {
      observer = new ResizeObserver(() => {
        const w = Math.max(200, el.clientWidth);
        const h = Math.max(100, el.clientHeight);
        if (w !== u.width || h !== u.height) u.setSize({ width: w, height: h });
      });
      observer.observe(el);
    }
    return { u, observer };
  }

  function drop(kind) {
    if (!charts[kind]) return;
    if (charts[kind].observer) charts[kind].observer.disconnect();
    charts[kind].u.destroy();
    charts[kind] = null;
  }

  function render() {
    const now = currentScale();
    if (now !== scale) {
      // a breakpoint was crossed: rebuild the charts with the new sizes
      scale = now;
      drop("x");
      drop("r");
    }
    if (!charts.x) charts.x = make("x");
    if (!charts.r) charts.r = make("r");
    for (const kind of ["x", "r"]) {
      const v = view(kind);
      // the chart families of docs/spc.md have no secondary chart: its box is hidden
      const box = elements[kind].parentNode;
      const display = v.shown ? "" : "none";
      if (box.style.display !== display) box.style.display = display;
      const n = v.samples.length;
      const xs = new Array(n);
      const ys2 = new Array(n);
      for (let i = 0; i < n; i++) {
        xs[i] = i;
        ys2[i] = v.ys2 ? v.ys2[i] : null;
      }
      const u = charts[kind].u;
      // The x range stays [0, 100) once the chart is full, and uPlot recomputes axis labels
      // only when a range changes: ask for them explicitly, in the same single redraw.
      u.batch(() => {
        u.setData([xs, v.ys, ys2]);
        u.redraw(false, true);
      });
      if (pinned[kind] !== null || hover[kind] !== null) tipFor(kind, u);
    }
  }

  return {
    render,
    // true when the page's type size changed (a breakpoint): the charts must be redrawn
    scaleChanged: () => currentScale() !== scale,
    // another characteristic (or the older data): no tooltip of the old one stays
    forgetPoint: unpinAll,
  };
}
