// The histogram of the recent readings (spc.js histogram): bars, the spec limits, the
// target, the normal curve (mean of the readings, the limits' sigma) and the capability the
// bridge computed; drawn on a canvas in the secondary chart's box when someone asks for it
// (docs/hmi.md "Histogram"). data-* hooks say what was drawn.
import { fmt, isNum } from "./format.js";
import { capabilityText, chartDecimals, histogram } from "./spc.js";

const COLORS = { bar: "#4fc3f7", spec: "#d69bff", target: "#2ecc71", curve: "#ffb020", axis: "#c3ccd5", grid: "#2c343d" };
const FONT = "px DejaVu Sans, Arial, sans-serif";

export function drawHistogram(box, canvas, ch) {
  const scale = (parseFloat(window.getComputedStyle(document.documentElement).fontSize) || 16) / 16;
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(200, box.clientWidth);
  const h = Math.max(100, box.clientHeight);
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  canvas.style.width = w + "px";
  canvas.style.height = h + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const hist = histogram(ch, 20);
  box.dataset.readings = hist ? String(hist.readings) : "0";
  box.dataset.bins = hist ? hist.counts.join(" ") : "";
  box.dataset.spec = "";
  if (!hist) return hist;
  const d = chartDecimals(ch);
  const pad = { left: 12 * scale, right: 12 * scale, top: 22 * scale, bottom: 26 * scale };
  const pw = w - pad.left - pad.right;
  const ph = h - pad.top - pad.bottom;
  const x = (v) => pad.left + ((v - hist.lo) / (hist.hi - hist.lo)) * pw;
  const maxCount = Math.max(...hist.counts);
  // the normal curve's peak, in readings per bin
  const peak = hist.sigma > 0 ? (hist.readings * hist.width) / (hist.sigma * Math.sqrt(2 * Math.PI)) : 0;
  const top = Math.max(maxCount, peak) * 1.08 || 1;
  const y = (c) => pad.top + ph - (c / top) * ph;
  ctx.font = Math.round(12 * scale) + FONT;
  // bars
  ctx.fillStyle = COLORS.bar;
  hist.counts.forEach((c, i) => {
    if (!c) return;
    const x0 = x(hist.lo + i * hist.width);
    const x1 = x(hist.lo + (i + 1) * hist.width);
    ctx.fillRect(x0 + 1, y(c), Math.max(1, x1 - x0 - 2), pad.top + ph - y(c));
  });
  // axis
  ctx.strokeStyle = COLORS.grid;
  ctx.beginPath();
  ctx.moveTo(pad.left, pad.top + ph + 0.5);
  ctx.lineTo(pad.left + pw, pad.top + ph + 0.5);
  ctx.stroke();
  ctx.fillStyle = COLORS.axis;
  ctx.textBaseline = "top";
  ctx.textAlign = "left";
  ctx.fillText(fmt(hist.lo, d), pad.left, pad.top + ph + 4 * scale);
  ctx.textAlign = "right";
  ctx.fillText(fmt(hist.hi, d), pad.left + pw, pad.top + ph + 4 * scale);
  // the normal curve
  if (hist.sigma > 0) {
    ctx.strokeStyle = COLORS.curve;
    ctx.lineWidth = 2 * scale;
    ctx.beginPath();
    for (let i = 0; i <= 120; i++) {
      const v = hist.lo + ((hist.hi - hist.lo) * i) / 120;
      const z = (v - hist.mean) / hist.sigma;
      const c = peak * Math.exp(-0.5 * z * z);
      if (i === 0) ctx.moveTo(x(v), y(c));
      else ctx.lineTo(x(v), y(c));
    }
    ctx.stroke();
  }
  // spec limits and target
  const marks = [];
  ctx.textBaseline = "bottom";
  for (const [name, value, color] of [
    ["LSL", hist.lsl, COLORS.spec],
    ["T", hist.target, COLORS.target],
    ["USL", hist.usl, COLORS.spec],
  ]) {
    if (!isNum(value)) continue;
    const text = name + " " + fmt(value, d);
    marks.push(text);
    const px = Math.round(x(value)) + 0.5;
    ctx.strokeStyle = color;
    ctx.lineWidth = 2 * scale;
    ctx.setLineDash(name === "T" ? [] : [8 * scale, 4 * scale]);
    ctx.beginPath();
    ctx.moveTo(px, pad.top);
    ctx.lineTo(px, pad.top + ph);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = color;
    ctx.textAlign = name === "LSL" ? "left" : name === "USL" ? "right" : "center";
    ctx.fillText(text, px + (name === "LSL" ? 3 : name === "USL" ? -3 : 0) * scale, pad.top - 2 * scale);
  }
  box.dataset.spec = marks.join(" ");
  box.dataset.mean = String(hist.mean);
  box.dataset.sigma = String(hist.sigma);
  return hist;
}

export { capabilityText };
