// The page's DOM, drawn from the view state (state.js) and the session (main.js):
// status pills and banner, the characteristic list, the header and key figures, the alarm
// panel. Rows are kept by id and updated in place (never rebuilt on each sample), so a click,
// a chosen reason or the keyboard focus is never lost to a redraw.
import { age, capabilityClass, charName, fmt, fmtTime, isNum } from "./format.js";
import { COMMENT_MAX } from "./requests.js";
import {
  actionCodes,
  actionRequired,
  causeCodes,
  chartKind,
  chartLabels,
  chartView,
  keyFigures,
  lastFigure,
  sampleState,
  sparkline,
  zoneLabel,
} from "./spc.js";
import { alarmGroups, may, openCount, paretoRows, sortedChars, totalOpen } from "./state.js";

const $ = (id) => document.getElementById(id);

export const MAX_ALARM_ROWS = 100; // rows drawn in the alarm panel

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function setPill(el, text, cls) {
  el.textContent = text;
  el.className = "pill " + cls;
}

const CONNECTION_LABELS = {
  connected: ["BROKER: CONNECTED", "pill-good"],
  connecting: ["BROKER: CONNECTING", "pill-unknown"],
  reconnecting: ["BROKER: RECONNECTING", "pill-bad"],
  disconnected: ["BROKER: DISCONNECTED", "pill-bad"],
  refused: ["BROKER: LOGIN REQUIRED", "pill-bad"],
};

// `session`: {state, settings, user, connected, connection} owned by main.js.
export function renderStatus(session) {
  const { state, settings } = session;
  const s = session.connection;
  $("conn-status").dataset.state = s;
  const l = CONNECTION_LABELS[s] || CONNECTION_LABELS.connecting;
  setPill($("conn-status"), l[0], l[1]);
  $("conn-status").title = settings.brokerUrl + " (prefix " + settings.prefix + ")";
  const bridge = session.connected ? state.bridge : { known: false };
  const b = $("bridge-status");
  if (!bridge.known) {
    b.dataset.state = "unknown";
    setPill(b, "BRIDGE: UNKNOWN", "pill-unknown");
    b.title = session.connected ? "no status published yet" : "not connected to the broker";
  } else if (bridge.online) {
    b.dataset.state = "online";
    setPill(b, "BRIDGE: ONLINE", "pill-good");
    b.title = "online since " + fmtTime(bridge.timestamp);
  } else {
    b.dataset.state = "offline";
    setPill(b, "BRIDGE: OFFLINE", "pill-bad");
    b.title = "offline since " + fmtTime(bridge.timestamp);
    if (bridge.timestamp) b.textContent += " " + fmtTime(bridge.timestamp, false);
  }
  // A frozen screen must not look live: say so, and dim the numbers and charts.
  const banner = $("stale-banner");
  let stale = "";
  if (!session.connected && s !== "connecting") {
    stale = "NO CONNECTION TO THE BROKER \u2013 values shown may be out of date";
  } else if (bridge.known && !bridge.online) {
    stale =
      "BRIDGE OFFLINE" +
      (bridge.timestamp ? " since " + fmtTime(bridge.timestamp) : "") +
      " \u2013 no new samples";
  }
  banner.textContent = stale;
  banner.hidden = !stale;
  document.body.classList.toggle("stale", !!stale);
}

// ---- characteristic list ----------------------------------------------------------------

const charRows = new Map(); // id -> {li, name, info, badge}

function makeCharRow(id) {
  const li = document.createElement("li");
  li.setAttribute("data-testid", "char-item");
  li.dataset.charId = id;
  li.tabIndex = 0;
  const dot = document.createElement("span");
  dot.className = "char-dot";
  const text = document.createElement("div");
  text.className = "char-text";
  const name = document.createElement("div");
  name.className = "char-name";
  const info = document.createElement("div");
  info.className = "char-info";
  const badge = document.createElement("span");
  badge.className = "char-badge";
  badge.setAttribute("data-testid", "char-alarm-count");
  text.appendChild(name);
  text.appendChild(info);
  li.appendChild(dot);
  li.appendChild(text);
  li.appendChild(badge);
  return { li, name, info, badge };
}

export function renderCharList(session) {
  const { state } = session;
  const list = $("char-list");
  const items = sortedChars(state);
  $("char-empty").hidden = items.length > 0;
  const keep = new Set();
  items.forEach((ch, i) => {
    keep.add(ch.id);
    let row = charRows.get(ch.id);
    if (!row) {
      row = makeCharRow(ch.id);
      charRows.set(ch.id, row);
    }
    const cls = "char-item" + (ch.id === state.selectedId ? " selected" : "");
    if (row.li.className !== cls) row.li.className = cls;
    row.li.dataset.state = sampleState(ch.last);
    setText(row.name, charName(ch));
    const bits = [];
    const shown = lastFigure(ch);
    if (ch.last) bits.push(fmt(shown.value, shown.decimals) + (ch.meta.unit ? " " + ch.meta.unit : ""));
    else if (ch.meta.unit) bits.push(ch.meta.unit);
    if (ch.meta.online === false) bits.push("SOURCE OFFLINE");
    setText(row.info, bits.join(" \u00b7 "));
    const open = openCount(ch);
    row.badge.hidden = open === 0;
    setText(row.badge, String(open));
    row.badge.title = open + " open alarm(s)";
    if (list.children[i] !== row.li) list.insertBefore(row.li, list.children[i] || null);
  });
  charRows.forEach((row, id) => {
    if (!keep.has(id)) {
      row.li.remove();
      charRows.delete(id);
    }
  });
}

// ---- overview: a tile per characteristic ---------------------------------------------------

const tiles = new Map(); // id -> {li, name, alarms, value, unit, state, info, spark}
const SVG = "http://www.w3.org/2000/svg";
const STATE_TEXT = {
  in_control: ["IN CONTROL", "state-good"],
  out_of_control: ["OUT OF CONTROL", "state-bad"],
  no_limits: ["BASELINE", "state-unknown"],
  no_data: ["NO DATA", "state-unknown"],
};

function makeTile(id) {
  const li = el("li", "tile", "tile");
  li.dataset.charId = id;
  li.tabIndex = 0;
  const name = el("div", "tile-name", "tile-name");
  const alarms = el("span", "char-badge tile-alarms", "tile-alarms");
  const value = el("div", "tile-value");
  const number = el("span", "", "tile-value");
  const unit = el("span", "unit");
  value.appendChild(number);
  value.appendChild(document.createTextNode(" "));
  value.appendChild(unit);
  const state = el("div", "tile-state", "tile-state");
  const spark = document.createElementNS(SVG, "svg");
  spark.setAttribute("class", "tile-spark");
  spark.setAttribute("data-testid", "tile-spark");
  spark.setAttribute("viewBox", "0 0 100 30");
  spark.setAttribute("preserveAspectRatio", "none");
  spark.setAttribute("aria-hidden", "true");
  const info = el("div", "tile-info", "tile-info");
  for (const e of [name, alarms, value, state, spark, info]) li.appendChild(e);
  return { li, name, alarms, number, unit, state, spark, info };
}

// The sparkline (spc.js sparkline) as SVG in a 100 x 30 box: the line, red dots on the
// failed points, dashed limits when flat. data-points / data-failed say what was drawn.
function drawSpark(svg, ch) {
  const sp = sparkline(ch);
  const vals = sp.ys.filter((v) => v !== null);
  for (const v of [sp.ucl, sp.lcl]) if (v !== null) vals.push(v);
  svg.dataset.points = String(sp.ys.filter((v) => v !== null).length);
  svg.dataset.failed = String(sp.failed.length);
  const key = sp.ys.join(",") + "|" + sp.failed.join(",") + "|" + sp.ucl + "|" + sp.lcl;
  if (svg.dataset.key === key) return;
  svg.dataset.key = key;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  if (!vals.length) return;
  let lo = Math.min(...vals);
  let hi = Math.max(...vals);
  if (hi === lo) {
    hi += 1;
    lo -= 1;
  }
  const n = Math.max(1, sp.ys.length - 1);
  const x = (i) => (sp.ys.length === 1 ? 50 : (100 * i) / n);
  const y = (v) => 28 - (26 * (v - lo)) / (hi - lo);
  for (const v of [sp.ucl, sp.lcl]) {
    if (v === null) continue;
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("x1", "0");
    line.setAttribute("x2", "100");
    line.setAttribute("y1", y(v).toFixed(2));
    line.setAttribute("y2", y(v).toFixed(2));
    svg.appendChild(line);
  }
  const pts = [];
  sp.ys.forEach((v, i) => {
    if (v !== null) pts.push(x(i).toFixed(2) + "," + y(v).toFixed(2));
  });
  const poly = document.createElementNS(SVG, "polyline");
  poly.setAttribute("points", pts.join(" "));
  svg.appendChild(poly);
  for (const i of sp.failed) {
    const c = document.createElementNS(SVG, "circle");
    c.setAttribute("cx", x(i).toFixed(2));
    c.setAttribute("cy", y(sp.ys[i]).toFixed(2));
    c.setAttribute("r", "1.8");
    svg.appendChild(c);
  }
}

export function renderOverview(session) {
  const { state } = session;
  if (session.view !== "overview") return;
  const list = $("tile-list");
  const items = sortedChars(state);
  $("tile-empty").hidden = items.length > 0;
  const keep = new Set();
  items.forEach((ch, i) => {
    keep.add(ch.id);
    let t = tiles.get(ch.id);
    if (!t) {
      t = makeTile(ch.id);
      tiles.set(ch.id, t);
    }
    const st = sampleState(ch.last);
    t.li.dataset.state = st;
    t.li.title = "open the chart of " + charName(ch);
    setText(t.name, charName(ch));
    const shown = lastFigure(ch);
    setText(t.number, ch.last ? fmt(shown.value, shown.decimals) : "\u2014");
    setText(t.unit, (ch.meta && ch.meta.unit) || "");
    const [text, cls] = STATE_TEXT[st];
    setText(t.state, st === "no_limits" && ch.limits ? "NOT JUDGED" : text);
    t.state.className = "tile-state " + cls;
    t.state.dataset.state = st;
    const open = openCount(ch);
    t.alarms.hidden = open === 0;
    setText(t.alarms, String(open));
    t.alarms.title = open + " open alarm(s)";
    const names = chartLabels(ch.meta, ch.limits);
    const bits = ["#" + ch.id, names[2] ? names[3] + "/" + names[2] : names[3]];
    if (ch.last) bits.push(fmtTime(ch.last.timestamp) + age(ch.last.timestamp));
    if (ch.meta.online === false) bits.push("SOURCE OFFLINE");
    setText(t.info, bits.join(" \u00b7 "));
    drawSpark(t.spark, ch);
    if (list.children[i] !== t.li) list.insertBefore(t.li, list.children[i] || null);
  });
  tiles.forEach((t, id) => {
    if (!keep.has(id)) {
      t.li.remove();
      tiles.delete(id);
    }
  });
}

// Which of the chart and the overview is on screen.
export function renderView(session) {
  const overview = session.view === "overview";
  $("overview").hidden = !overview;
  $("charts").hidden = overview;
  $("overview-button").setAttribute("aria-pressed", overview ? "true" : "false");
  $("overview-button").textContent = overview ? "Chart" : "Overview";
}

// ---- header and key figures -------------------------------------------------------------

function setProcessState(state, text) {
  const el = $("process-state");
  el.dataset.state = state;
  el.textContent = text;
  el.className =
    "state " +
    (state === "in_control" ? "state-good" : state === "out_of_control" ? "state-bad" : "state-unknown");
}

const KPI_IDS = [
  ["kpi-ucl", "kpi-usl"],
  ["kpi-cl", "kpi-target"],
  ["kpi-lcl", "kpi-lsl"],
];

// The key figures panel from spc.js keyFigures: labels and numbers.
function fillKeyFigures(k) {
  k.rows.forEach((row, i) => {
    const [left, right] = KPI_IDS[i];
    $(left + "-label").textContent = row[0];
    $(left).textContent = row[1];
    $(right + "-label").textContent = row[2];
    $(right).textContent = row[3];
  });
  $("kpi-cap-label").textContent = k.cap.label;
  $("kpi-cpk").textContent = k.cap.text;
}

function clearHeader() {
  $("char-title").textContent = "No characteristic";
  $("char-subtitle").textContent = "";
  document.title = "OpenSPC HMI";
  $("last-value").textContent = "\u2014";
  const k = keyFigures(null); // the Shewhart labels, every figure a dash
  fillKeyFigures(k);
  $("kpi-cpk").className = "";
  $("last-unit").textContent = "";
  $("last-time").textContent = "\u00a0";
  $("last-rules").textContent = "\u00a0";
  $("kpi-cp").textContent = "";
  setProcessState("unknown", "NO DATA");
}

// The line under the state: the rules the last sample failed, else its zone, else how far
// the baseline has come.
function stateNote(ch, s, names) {
  const rules = [];
  if (s && Array.isArray(s.failed_rules) && s.failed_rules.length) {
    rules.push(names[3] + " rule " + s.failed_rules.join(", "));
  }
  if (s && Array.isArray(s.range_failed_rules) && s.range_failed_rules.length) {
    rules.push(names[2] + " rule " + s.range_failed_rules.join(", "));
  }
  if (rules.length) return "Failed: " + rules.join("; ");
  if (s && s.zone) return zoneLabel(s.zone);
  const meta = ch.meta || {};
  if (s && !ch.limits && isNum(meta.baseline)) {
    const what = chartKind(meta, ch.limits) === "attribute" ? " samples" : " subgroups";
    return "limits after " + Math.min(ch.samples.length, meta.baseline) + " of " + meta.baseline + what;
  }
  return "\u00a0";
}

// The legend says what the chart draws: zones on the Shewhart charts only, limits as steps
// where each point has its own.
function renderLegend(ch) {
  const kind = ch ? chartView(ch, "x").family : "shewhart";
  $("legend-zones").hidden = kind !== "shewhart";
  $("legend-limits").textContent =
    kind === "cusum" ? "\u00b1H" : kind === "shewhart" ? "UCL/LCL" : "UCL/LCL (each point's own)";
  $("legend-cl").textContent = kind === "cusum" ? "0" : "CL";
}

export function renderHeader(session) {
  const { state } = session;
  const ch = state.selectedId !== null ? state.chars.get(state.selectedId) : null;
  const names = chartLabels(ch && ch.meta, ch && ch.limits);
  $("x-title").textContent = names[0] + " chart";
  $("r-title").textContent = session.histogram
    ? "Histogram"
    : names[1]
      ? names[1] + " chart"
      : "";
  renderLegend(ch);
  const last = lastFigure(ch);
  $("value-label").textContent = last.label;
  if (!ch) {
    clearHeader();
    return;
  }
  const meta = ch.meta || {};
  $("char-title").textContent = charName(ch);
  document.title = charName(ch) + " \u2013 OpenSPC HMI";
  const sub = ["#" + ch.id];
  // the subgroup size of the variables charts (an attribute chart's n is in its key figures)
  if (isNum(meta.subgroup_size) && chartKind(meta, ch.limits) !== "attribute") sub.push("n = " + meta.subgroup_size);
  sub.push(names[2] ? names[3] + "/" + names[2] + " chart" : names[3] + " chart");
  if (meta.online === false) sub.push("SOURCE OFFLINE");
  $("char-subtitle").textContent = sub.join(" \u00b7 ");
  const s = ch.last;
  $("last-value").textContent = s ? fmt(last.value, last.decimals) : "\u2014";
  $("last-unit").textContent = meta.unit || "";
  // the chart families say what else the point holds (the count, x, the sums) instead of its
  // sample number, which would not fit a 1280x800 panel beside them
  $("last-time").textContent = s
    ? fmtTime(s.timestamp) + age(s.timestamp) + (last.note ? " \u00b7 " + last.note : " \u00b7 sample #" + s.sample_id)
    : "\u00a0";
  const st = sampleState(s);
  if (st === "in_control") setProcessState("in_control", "IN CONTROL");
  else if (st === "out_of_control") setProcessState("out_of_control", "OUT OF CONTROL");
  else if (st === "no_limits") setProcessState("no_limits", ch.limits ? "NOT JUDGED" : "BASELINE");
  else setProcessState("unknown", "NO DATA");
  $("last-rules").textContent = stateNote(ch, s, names);
  // the key figures of the family (spc.js keyFigures): labels and numbers
  const k = keyFigures(ch);
  fillKeyFigures(k);
  $("kpi-cpk").className = capabilityClass(k.cap.cpk);
  $("kpi-cp").textContent = k.cap.extra;
}

// ---- alarms -----------------------------------------------------------------------------

const alarmCards = new Map(); // group key (characteristic:sample) -> <li>
const KIND_LABELS = { spec: "OUT OF SPEC", overdue: "OVERDUE" }; // the workflow's alarm kinds

function el(tag, className, testid) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (testid) e.setAttribute("data-testid", testid);
  return e;
}

// One card per sample: every rule and chart it failed, one cause for all, one button.
function makeAlarmCard(g) {
  const li = el("li", "", "alarm-row");
  li.dataset.key = g.key;
  li.dataset.characteristicId = g.characteristicId;
  li.dataset.sampleId = g.sampleId === null ? "" : String(g.sampleId);
  li.dataset.busy = "false";
  const top = el("div", "alarm-top");
  const badge = el("span", "sev", "alarm-severity");
  const time = el("span", "alarm-time", "alarm-time");
  top.appendChild(badge);
  top.appendChild(time);
  const kinds = el("span", "kind-badges", "alarm-kinds");
  top.appendChild(kinds);
  const meta = el("div", "alarm-meta", "alarm-meta");
  const rules = el("ul", "alarm-rules", "alarm-rules");
  li.appendChild(top);
  li.appendChild(meta);
  li.appendChild(rules);
  li.appendChild(makeAckForm("ack"));
  return li;
}

// The acknowledgement form of a card (prefix "ack") and of the bulk bar ("bulk"): a cause
// (none preselected), an action, a comment (at most 500 characters), "exclude", one button.
function makeAckForm(prefix) {
  const form = el("div", "alarm-actions");
  const select = el("select", "ack-reason", prefix + "-reason");
  select.setAttribute("aria-label", "cause");
  const action = el("select", "ack-action", prefix + "-action");
  action.setAttribute("aria-label", "action");
  const comment = el("input", "ack-comment", prefix + "-comment");
  comment.type = "text";
  comment.maxLength = COMMENT_MAX;
  comment.placeholder = "comment (optional)";
  comment.setAttribute("aria-label", "comment");
  const label = document.createElement("label");
  const exclude = el("input", "ack-exclude", prefix + "-exclude");
  exclude.type = "checkbox";
  label.appendChild(exclude);
  label.appendChild(document.createTextNode(" exclude"));
  label.title = "exclude the sample(s) from future limit calculations";
  const btn = el("button", "ack-button", prefix + "-button");
  btn.type = "button";
  btn.textContent = "Acknowledge";
  for (const e of [select, action, comment, label, btn]) form.appendChild(e);
  return form;
}

// The form's fields, for requests.js ackCommand.
export function ackFields(root) {
  return {
    cause: root.querySelector(".ack-reason").value,
    action: root.querySelector(".ack-action").value,
    comment: root.querySelector(".ack-comment").value,
    exclude: root.querySelector(".ack-exclude").checked,
  };
}

// The causes come from the characteristic's meta (else the defaults, spc.js causeCodes), with
// none chosen: the user must pick one (a preselected cause records a false one when someone
// hurries). The actions likewise, "no action" allowed unless the meta requires one.
function fillOptions(select, values, prompt, promptDisabled) {
  const key = values.join("\u0001") + "|" + prompt;
  if (select.dataset.key === key) return;
  const chosen = select.value;
  select.dataset.key = key;
  select.textContent = "";
  const first = document.createElement("option");
  first.value = "";
  first.textContent = prompt;
  first.disabled = promptDisabled;
  select.appendChild(first);
  for (const r of values) {
    const o = document.createElement("option");
    o.value = r;
    o.textContent = r;
    select.appendChild(o);
  }
  select.value = values.includes(chosen) ? chosen : "";
}

function fillAckForm(root, meta) {
  fillOptions(root.querySelector(".ack-reason"), causeCodes(meta), "Choose a cause\u2026", true);
  const required = actionRequired(meta);
  fillOptions(root.querySelector(".ack-action"), actionCodes(meta), required ? "Choose an action\u2026" : "No action", required);
}

// Why the form's button cannot be pressed ("" when it can).
function ackBlocker(root, session, meta) {
  if (!session.user) return "log in to acknowledge";
  if (!may(session.state, "acknowledge")) return "your role may not acknowledge alarms";
  if (!session.connected) return "not connected";
  if (root.dataset.busy === "true") return "sending\u2026";
  if (!root.querySelector(".ack-reason").value) return "choose a cause first";
  if (actionRequired(meta) && !root.querySelector(".ack-action").value) return "choose an action first";
  return "";
}

// The action and comment open once a cause is chosen: a card waiting for attention stays two
// lines high, so a 1280x800 panel shows several.
function openForm(root) {
  const form = root.querySelector(".alarm-actions");
  form.classList.toggle("chosen", !!root.querySelector(".ack-reason").value);
}

export function updateAckButton(li, session) {
  openForm(li);
  const btn = li.querySelector(".ack-button");
  const ch = session.state.chars.get(li.dataset.characteristicId || session.bulkChar || "");
  const why = ackBlocker(li, session, ch && ch.meta);
  btn.disabled = why !== "";
  btn.title = why;
}

// One line of a card: "X̄ · Rule 5: Two of three beyond 2 sigma" (or the alarm's kind).
function ruleLine(v, names) {
  const chartName = v.chart === "range" && names[2] ? names[2] : names[3];
  const kind = KIND_LABELS[v.kind] || "";
  // a spec or overdue alarm belongs to no chart (`chart` null): its own words only
  if (kind && !v.chart) return v.rule_name || kind;
  const what = isNum(v.rule_id) ? "Rule " + v.rule_id + ": " + (v.rule_name || "") : v.rule_name || kind || "alarm";
  return chartName + " \u00b7 " + (kind && isNum(v.rule_id) ? kind + " \u00b7 " : "") + what;
}

function updateAlarmCard(li, g, session) {
  const { state } = session;
  const ch = state.chars.get(g.characteristicId);
  const names = chartLabels(ch && ch.meta, ch && ch.limits);
  const kinds = [...new Set(g.violations.map((v) => (KIND_LABELS[v.kind] ? v.kind : "rule")))].sort();
  li.className =
    "alarm sev-" +
    g.severity +
    kinds.map((k) => " kind-" + k).join("") +
    (li.classList.contains("new") ? " new" : "");
  li.dataset.kinds = kinds.join(" ");
  const badges = li.querySelector(".kind-badges");
  const badgeText = kinds.filter((k) => KIND_LABELS[k]).map((k) => KIND_LABELS[k]).join(" \u00b7 ");
  setText(badges, badgeText);
  badges.hidden = !badgeText;
  li.classList.toggle("current", g.characteristicId === state.selectedId);
  const ids = g.violations.map((v) => v.violation_id);
  li.dataset.violationIds = ids.join(" ");
  setText(li.querySelector(".sev"), g.severity);
  setText(li.querySelector(".alarm-time"), fmtTime(g.timestamp));
  setText(
    li.querySelector(".alarm-meta"),
    (ch ? charName(ch) : "Characteristic " + g.characteristicId) +
      (g.sampleId !== null ? " \u00b7 sample #" + g.sampleId : ""),
  );
  const rules = li.querySelector(".alarm-rules");
  const key = ids.join(",") + "|" + names.join(",");
  if (rules.dataset.key !== key) {
    rules.dataset.key = key;
    rules.textContent = "";
    for (const v of g.violations) {
      const item = el("li", "alarm-rule sev-line-" + (v.severity === "CRITICAL" ? "CRITICAL" : "WARNING"), "alarm-rule");
      item.dataset.violationId = String(v.violation_id);
      item.dataset.chart = v.chart === "range" ? "range" : "x";
      if (v.kind) item.dataset.kind = String(v.kind);
      item.textContent = ruleLine(v, names);
      rules.appendChild(item);
    }
  }
  li.querySelector(".ack-button").textContent =
    li.dataset.busy === "true" ? "Sending\u2026" : ids.length > 1 ? "Acknowledge all " + ids.length : "Acknowledge";
  fillAckForm(li, ch && ch.meta);
  // the card stays for everyone (an alarm is seen by all); its form only for those who may
  li.querySelector(".alarm-actions").hidden = !may(state, "acknowledge");
  updateAckButton(li, session);
}

export function setCardBusy(key, busy, session) {
  const li = key === "bulk" ? $("bulk-ack") : alarmCards.get(key);
  if (!li) return;
  li.dataset.busy = busy ? "true" : "false";
  if (key === "bulk") {
    renderBulk(session);
    return;
  }
  const n = li.dataset.violationIds.split(" ").filter(Boolean).length;
  li.querySelector(".ack-button").textContent = busy ? "Sending\u2026" : n > 1 ? "Acknowledge all " + n : "Acknowledge";
  updateAckButton(li, session);
}

// The bulk bar: every open alarm of the characteristic the filter picks, in one command
// (`characteristic_id` + `all_open`), with one cause, action and comment.
export function renderBulk(session) {
  const bar = $("bulk-ack");
  const { state } = session;
  const id = $("alarm-filter-char").value;
  const ch = id ? state.chars.get(id) : null;
  const open = ch ? openCount(ch) : 0;
  session.bulkChar = id;
  bar.hidden = !ch || open === 0 || !may(state, "acknowledge");
  if (bar.hidden) return;
  if (!bar.firstChild) {
    const title = el("div", "bulk-title", "bulk-title");
    bar.appendChild(title);
    bar.appendChild(makeAckForm("bulk"));
  }
  if (bar.dataset.characteristicId !== id || bar.dataset.reset === "true") {
    // another characteristic (or the last bulk acknowledgement went through): nothing chosen
    // carries over, no cause is ever preselected
    for (const e of bar.querySelectorAll("select, input[type=text]")) e.value = "";
    bar.querySelector(".ack-exclude").checked = false;
    bar.dataset.reset = "false";
  }
  bar.dataset.characteristicId = id;
  setText(bar.querySelector(".bulk-title"), "All " + open + " open alarm(s) of " + charName(ch));
  fillAckForm(bar, ch.meta);
  bar.querySelector(".ack-button").textContent =
    bar.dataset.busy === "true" ? "Sending\u2026" : "Acknowledge all " + open;
  openForm(bar);
  const why = ackBlocker(bar, session, ch.meta);
  const btn = bar.querySelector(".ack-button");
  btn.disabled = why !== "";
  btn.title = why;
}

// The characteristic filter's choices follow the characteristics known.
function fillCharFilter(state) {
  const select = $("alarm-filter-char");
  const want = [["", "All characteristics"]].concat(sortedChars(state).map((ch) => [ch.id, charName(ch)]));
  const have = Array.from(select.options).map((o) => [o.value, o.textContent]);
  if (JSON.stringify(want) === JSON.stringify(have)) return;
  const chosen = select.value;
  select.textContent = "";
  for (const [value, text] of want) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    select.appendChild(o);
  }
  select.value = want.some((w) => w[0] === chosen) ? chosen : "";
}

export function renderAlarms(session) {
  const { state } = session;
  fillCharFilter(state);
  const filter = { char: $("alarm-filter-char").value, severity: $("alarm-filter-severity").value };
  const list = $("alarm-list");
  const total = totalOpen(state);
  const groups = alarmGroups(state, filter);
  const shown = groups.slice(0, MAX_ALARM_ROWS);
  const keep = new Set();
  let shownAlarms = 0;
  shown.forEach((g, i) => {
    keep.add(g.key);
    shownAlarms += g.violations.length;
    let li = alarmCards.get(g.key);
    if (!li) {
      li = makeAlarmCard(g);
      // An alarm raised while we watch (a `violation`) pulses a few times; the ones that
      // were already open (the retained `alarms`) do not.
      if (g.violations.some((v) => state.fresh.has(v.violation_id))) li.classList.add("new");
      alarmCards.set(g.key, li);
    }
    updateAlarmCard(li, g, session);
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
  });
  state.fresh.clear();
  alarmCards.forEach((li, key) => {
    if (!keep.has(key)) {
      li.remove();
      alarmCards.delete(key);
    }
  });
  const filtered = filter.char || filter.severity;
  let more = $("alarm-more");
  const beyond = filtered ? groups.length - shown.length : total - shownAlarms;
  if (beyond > 0) {
    if (!more) {
      more = el("p", "alarm-more", "alarm-more");
      more.id = "alarm-more";
      list.after(more);
    }
    more.textContent = filtered ? "+ " + beyond + " more sample(s)" : "+ " + beyond + " older open alarm(s)";
  } else if (more) {
    more.remove();
  }
  const count = $("alarm-count");
  count.textContent = String(total);
  count.classList.toggle("nonzero", total > 0);
  $("alarm-empty").hidden = shown.length > 0 || (!filtered && total > 0);
  $("alarm-empty").textContent = filtered && total > 0 ? "No open alarms match the filter." : "No open alarms.";
  $("ack-hint").textContent = !session.user
    ? "Log in to acknowledge."
    : may(state, "acknowledge")
      ? "Acknowledging as " + session.user + "."
      : "Logged in as " + session.user + ": your role may not acknowledge alarms.";
  renderBulk(session);
}

// ---- the Pareto of causes ----------------------------------------------------------------------

// The characteristic on screen's acknowledged alarms by cause (the retained `causes`): a bar
// per cause, its count and the cumulative share.
export function renderCauses(session) {
  const { state } = session;
  const ch = state.selectedId !== null ? state.chars.get(state.selectedId) : null;
  const p = paretoRows(ch);
  const list = $("pareto-list");
  $("pareto-title").textContent =
    "Causes" + (p.days !== null ? ", last " + p.days + " days" : "") + (p.total ? " (" + p.total + ")" : "");
  list.textContent = "";
  const top = p.rows.length ? p.rows[0].count : 1;
  for (const r of p.rows) {
    const li = el("li", "pareto-row", "pareto-row");
    li.dataset.cause = r.cause;
    li.dataset.count = String(r.count);
    const name = el("span", "pareto-cause");
    name.textContent = r.cause;
    const bar = el("span", "pareto-bar");
    const fill = el("i");
    fill.style.width = Math.round((100 * r.count) / top) + "%";
    bar.appendChild(fill);
    const n = el("span", "pareto-count");
    n.textContent = r.count + " \u00b7 " + r.cumulative + "%";
    n.title = r.share + "% of the alarms, " + r.cumulative + "% with the causes above";
    li.appendChild(name);
    li.appendChild(bar);
    li.appendChild(n);
    list.appendChild(li);
  }
  $("pareto-empty").hidden = p.rows.length > 0;
}

export function showAckError(text) {
  const box = $("ack-error");
  box.textContent = text;
  box.hidden = !text;
}

// ---- login and commands -----------------------------------------------------------------

export function renderLogin(session) {
  // offered to a logged-in user whose role may (without a role message: to every one)
  $("recalc").hidden = !session.user || !may(session.state, "recalculate");
  $("older").hidden = !session.user || !may(session.state, "query");
  $("login-form").hidden = !!session.user;
  $("session").hidden = !session.user;
  $("current-user").textContent = session.user ? "\u25cf " + session.user : "";
  const role = session.state.role;
  $("current-user").title = role && role.role ? "role: " + role.role : "";
  $("current-user").dataset.role = role && role.role ? role.role : "";
}

export function setLoginError(text) {
  $("login-error").textContent = text;
}

// `detail`: what the broker or bridge said, when `text` puts it in plain words (a tooltip).
export function setRecalcStatus(text, bad, detail) {
  const e = $("recalc-status");
  e.textContent = text;
  e.className = "recalc-status" + (bad ? " bad" : "");
  e.dataset.state = bad ? "error" : text ? "ok" : "";
  e.title = detail && detail !== text ? text + " (" + detail + ")" : text;
  e.parentNode.parentNode.classList.toggle("has-status", !!text);
}

export function setRecalcArmed(armed) {
  $("recalc").textContent = armed ? "Click again to recalculate" : "Recalculate limits";
  $("recalc").classList.toggle("armed", armed);
}
