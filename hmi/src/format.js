// Numbers and times as the page shows them (docs/hmi.md "Numbers"). Pure: no DOM.

export function isNum(v) {
  return typeof v === "number" && isFinite(v);
}

// Enough digits to resolve about a fifth of a sigma of the chart, no more (10^-0.7 = 0.2):
// the sigma from the limits, else the spec width / 6, else 3 decimals.
export function decimalsFor(ch) {
  const l = ch && ch.limits;
  let scale = null;
  if (l && isNum(l.ucl) && isNum(l.center_line) && l.ucl > l.center_line) {
    scale = (l.ucl - l.center_line) / 3;
  } else if (ch && ch.meta && isNum(ch.meta.usl) && isNum(ch.meta.lsl) && ch.meta.usl > ch.meta.lsl) {
    scale = (ch.meta.usl - ch.meta.lsl) / 6;
  }
  return decimalsForScale(scale);
}

// The digits that resolve a fifth of `scale` (0 to 6; 3 without a scale).
export function decimalsForScale(scale) {
  if (scale && scale > 0) return Math.max(0, Math.min(6, Math.ceil(-Math.log10(scale) + 0.7)));
  return 3;
}

export function fmt(v, decimals) {
  return isNum(v) ? v.toFixed(decimals) : "\u2014";
}

// The browser's local time, HH:MM:SS (HH:MM without seconds), with the date when not today.
export function fmtTime(iso, withSeconds, now = new Date()) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d.getTime())) return String(iso);
  const time = d.toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
    second: withSeconds === false ? undefined : "2-digit",
    hourCycle: "h23",
  });
  if (d.toDateString() === now.toDateString()) return time;
  return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
}

// "(12 min ago)" once a sample is a minute old: a stopped line is visible at a glance.
export function age(iso, nowMs = Date.now()) {
  const seconds = (nowMs - Date.parse(iso)) / 1000;
  if (!(seconds >= 60)) return "";
  if (seconds < 3600) return " (" + Math.floor(seconds / 60) + " min ago)";
  if (seconds < 172800) return " (" + Math.floor(seconds / 3600) + " h ago)";
  return " (" + Math.floor(seconds / 86400) + " days ago)";
}

export function charName(ch) {
  return ch.meta && ch.meta.name ? ch.meta.name : "Characteristic " + ch.id;
}

// Cpk green from 1.33, amber from 1.0, red below (a common plant convention).
export function capabilityClass(cpk) {
  if (!isNum(cpk)) return "";
  return cpk < 1 ? "cap-bad" : cpk < 1.33 ? "cap-warn" : "cap-good";
}
