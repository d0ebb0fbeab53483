// The two Shewhart charts, drawn with uPlot (the global from vendor/uPlot.iife.min.js):
// the primary (X / X-bar) with its limits and zones, the secondary (MR / R / S) below it.
// What to draw comes from spc.js (chartView); docs/hmi.md "Charts" says how it looks.
import { decimalsFor, fmtTime, isNum } from "./format.js";
import { chartView, failedRules, plotted } from "./spc.js";

const COLORS = {
  line: "#4fc3f7",
  point: "#e8f4fb",
  bad: "#ff2d2d",
  cl: "#2ecc71",
  limit: "#ff6b6b",
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
  for (const x of [v.ucl, v.lcl, v.cl]) {
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

function drawLimits(u, v, scale) {
  const ctx = u.ctx;
  const px = uPlot.pxRatio * scale;
  const d = decimalsFor(v.ch);
  const lines = [
    ["UCL", v.ucl, COLORS.limit, [8 * px, 5 * px]],
    ["CL", v.cl, COLORS.cl, []],
    ["LCL", v.lcl, COLORS.limit, [8 * px, 5 * px]],
  ];
  ctx.save();
  ctx.font = "bold " + Math.round(12 * px) + FONT;
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  const labelled = [];
  for (const [name, value, color, dash] of lines) {
    if (!isNum(value)) continue;
    const y = Math.round(u.valToPos(value, "y", true)) + 0.5;
    if (y < u.bbox.top - 1 || y > u.bbox.top + u.bbox.height + 1) continue;
    ctx.strokeStyle = color;
    ctx.lineWidth = 2 * px;
    ctx.setLineDash(dash);
    ctx.beginPath();
    ctx.moveTo(u.bbox.left, y);
    ctx.lineTo(u.bbox.left + u.bbox.width, y);
    ctx.stroke();
    ctx.setLineDash([]);
    // Labels in the right margin, nudged apart when the lines are close together.
    let ly = y;
    for (const other of labelled) {
      if (Math.abs(ly - other) < 13 * px) ly = other + (name === "LCL" ? 13 : -13) * px;
    }
    labelled.push(ly);
    ctx.fillStyle = color;
    ctx.fillText(name + " " + value.toFixed(d), u.bbox.left + u.bbox.width + 6 * px, ly);
  }
  ctx.restore();
}

function drawPoints(u, kind, v, scale) {
  const ctx = u.ctx;
  const px = uPlot.pxRatio * scale;
  const marks = [];
  ctx.save();
  ctx.beginPath(); // the plot, plus the top margin where rule numbers go
  ctx.rect(u.bbox.left - 8 * px, 0, u.bbox.width + 16 * px, u.bbox.top + u.bbox.height);
  ctx.clip();
  ctx.font = "bold " + Math.round(13 * px) + FONT;
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  let drawn = 0;
  const labels = []; // boxes of the rule labels drawn so far
  v.samples.forEach((s, i) => {
    const val = plotted(kind, s);
    if (val === null) return;
    drawn += 1;
    const x = u.valToPos(i, "x", true);
    const y = u.valToPos(val, "y", true);
    const rules = failedRules(kind, s);
    ctx.beginPath();
    if (!rules.length) {
      ctx.arc(x, y, 3.5 * px, 0, 2 * Math.PI);
      ctx.fillStyle = COLORS.point;
      ctx.fill();
      return;
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
    marks.push(s.sample_id + ":" + label);
  });
  ctx.restore();
  // What was drawn, for tests and for anyone inspecting the page (docs/hmi.md "Stable hooks").
  const el = u.root.parentNode;
  el.dataset.points = String(drawn);
  el.dataset.failedPoints = String(marks.length);
  el.dataset.marks = marks.join(" ");
  const last = v.samples[v.samples.length - 1];
  el.dataset.lastSampleId = last ? String(last.sample_id) : "";
}

// `elements`: {x, r} (the chart containers); `selected()`: the characteristic on screen or null.
export function createCharts(elements, selected) {
  const charts = { x: null, r: null };
  let scale = 1;
  const view = (kind) => chartView(selected(), kind);

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
            const d = decimalsFor(view(kind).ch);
            return splits.map((v) => v.toFixed(d));
          },
        },
      ],
      series: [{}, { stroke: COLORS.line, width: 2 * scale, points: { show: false }, spanGaps: false }],
      hooks: {
        drawClear: [(u) => kind === "x" && drawZones(u, view(kind))],
        drawAxes: [(u) => drawLimits(u, view(kind), scale)],
        draw: [(u) => drawPoints(u, kind, view(kind), scale)],
      },
    };
    const u = new uPlot(opts, [[], []], el);
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
      const xs = new Array(v.samples.length);
      const ys = new Array(v.samples.length);
      for (let i = 0; i < v.samples.length; i++) {
        xs[i] = i;
        ys[i] = plotted(kind, v.samples[i]);
      }
      const u = charts[kind].u;
      // The x range stays [0, 100) once the chart is full, and uPlot recomputes axis labels
      // only when a range changes: ask for them explicitly, in the same single redraw.
      u.batch(() => {
        u.setData([xs, ys]);
        u.redraw(false, true);
      });
    }
  }

  return {
    render,
    // true when the page's type size changed (a breakpoint): the charts must be redrawn
    scaleChanged: () => currentScale() !== scale,
  };
}
