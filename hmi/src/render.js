// The page's DOM, drawn from the view state (state.js) and the session (main.js):
// status pills and banner, the characteristic list, the header and key figures, the alarm
// panel. Rows are kept by id and updated in place (never rebuilt on each sample), so a click,
// a chosen reason or the keyboard focus is never lost to a redraw.
import { age, capabilityClass, charName, fmt, fmtTime, isNum } from "./format.js";
import { chartKind, chartLabels, chartView, keyFigures, lastFigure, reasonCodes, sampleState, zoneLabel } from "./spc.js";
import { openAlarms, openCount, sortedChars, totalOpen } from "./state.js";

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
  $("r-title").textContent = names[1] ? names[1] + " chart" : "";
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

const alarmRows = new Map(); // violation_id -> <li>

function el(tag, className, testid) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (testid) e.setAttribute("data-testid", testid);
  return e;
}

function makeAlarmRow(v) {
  const li = el("li", "", "alarm-row");
  li.dataset.violationId = String(v.violation_id);
  li.dataset.characteristicId = String(v.characteristic_id);
  li.dataset.busy = "false";
  const sev = v.severity === "CRITICAL" ? "CRITICAL" : "WARNING";
  li.className = "alarm sev-" + sev;
  const top = el("div", "alarm-top");
  const badge = el("span", "sev");
  badge.textContent = sev;
  const time = el("span", "alarm-time", "alarm-time");
  time.textContent = fmtTime(v.timestamp);
  top.appendChild(badge);
  top.appendChild(time);
  const rule = el("div", "alarm-rule", "alarm-rule");
  rule.textContent = "Rule " + v.rule_id + ": " + (v.rule_name || "");
  const meta = el("div", "alarm-meta", "alarm-meta");
  const actions = el("div", "alarm-actions");
  const select = el("select", "ack-reason", "ack-reason");
  select.setAttribute("aria-label", "reason");
  const label = document.createElement("label");
  const exclude = el("input", "ack-exclude", "ack-exclude");
  exclude.type = "checkbox";
  label.appendChild(exclude);
  label.appendChild(document.createTextNode(" exclude"));
  label.title = "exclude the sample from future limit calculations";
  const btn = el("button", "ack-button", "ack-button");
  btn.type = "button";
  btn.textContent = "Acknowledge";
  actions.appendChild(select);
  actions.appendChild(label);
  actions.appendChild(btn);
  li.appendChild(top);
  li.appendChild(rule);
  li.appendChild(meta);
  li.appendChild(actions);
  return li;
}

// The reasons come from the characteristic's meta; a row drawn before its meta arrived gets
// them once it has.
function fillReasons(select, meta) {
  if (select.options.length) return;
  for (const r of reasonCodes(meta)) {
    const o = document.createElement("option");
    o.value = r;
    o.textContent = r;
    select.appendChild(o);
  }
}

function updateAckButton(li, session) {
  const btn = li.querySelector(".ack-button");
  const noReason = !li.querySelector(".ack-reason").options.length;
  btn.disabled = !session.user || !session.connected || li.dataset.busy === "true" || noReason;
  btn.title = !session.user
    ? "log in to acknowledge"
    : !session.connected
      ? "not connected"
      : noReason
        ? "waiting for the characteristic's reason codes"
        : "";
}

function updateAlarmRow(li, v, session) {
  const { state } = session;
  const ch = state.chars.get(String(v.characteristic_id));
  const names = chartLabels(ch && ch.meta, ch && ch.limits);
  const chartName = v.chart === "range" && names[2] ? names[2] : names[3];
  li.querySelector(".alarm-meta").textContent =
    (ch ? charName(ch) : "Characteristic " + v.characteristic_id) +
    " \u00b7 " + chartName + " chart \u00b7 sample #" + v.sample_id;
  li.classList.toggle("current", String(v.characteristic_id) === state.selectedId);
  fillReasons(li.querySelector(".ack-reason"), ch && ch.meta);
  updateAckButton(li, session);
}

export function setRowBusy(violationId, busy, session) {
  const row = alarmRows.get(violationId);
  if (!row) return;
  row.dataset.busy = busy ? "true" : "false";
  row.querySelector(".ack-button").textContent = busy ? "Sending\u2026" : "Acknowledge";
  updateAckButton(row, session);
}

export function renderAlarms(session) {
  const { state } = session;
  const list = $("alarm-list");
  const total = totalOpen(state);
  const shown = openAlarms(state).slice(0, MAX_ALARM_ROWS);
  const keep = new Set();
  shown.forEach((v, i) => {
    keep.add(v.violation_id);
    let li = alarmRows.get(v.violation_id);
    if (!li) {
      li = makeAlarmRow(v);
      // An alarm raised while we watch (a `violation`) pulses a few times; the ones that
      // were already open (the retained `alarms`) do not.
      if (state.fresh.has(v.violation_id)) li.classList.add("new");
      alarmRows.set(v.violation_id, li);
    }
    updateAlarmRow(li, v, session);
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
  });
  state.fresh.clear();
  alarmRows.forEach((li, id) => {
    if (!keep.has(id)) {
      li.remove();
      alarmRows.delete(id);
    }
  });
  let more = $("alarm-more");
  if (total > shown.length) {
    if (!more) {
      more = el("p", "alarm-more", "alarm-more");
      more.id = "alarm-more";
      list.after(more);
    }
    more.textContent = "+ " + (total - shown.length) + " older open alarm(s)";
  } else if (more) {
    more.remove();
  }
  const count = $("alarm-count");
  count.textContent = String(total);
  count.classList.toggle("nonzero", total > 0);
  $("alarm-empty").hidden = total > 0;
  $("ack-hint").textContent = session.user ? "Acknowledging as " + session.user + "." : "Log in to acknowledge.";
}

export function showAckError(text) {
  const box = $("ack-error");
  box.textContent = text;
  box.hidden = !text;
}

// ---- login and commands -----------------------------------------------------------------

export function renderLogin(session) {
  $("recalc").hidden = !session.user;
  $("login-form").hidden = !!session.user;
  $("session").hidden = !session.user;
  $("current-user").textContent = session.user ? "\u25cf " + session.user : "";
}

export function setLoginError(text) {
  $("login-error").textContent = text;
}

export function setRecalcStatus(text, bad) {
  const e = $("recalc-status");
  e.textContent = text;
  e.className = "recalc-status" + (bad ? " bad" : "");
  e.dataset.state = bad ? "error" : text ? "ok" : "";
  e.title = text;
  e.parentNode.parentNode.classList.toggle("has-status", !!text);
}

export function setRecalcArmed(armed) {
  $("recalc").textContent = armed ? "Click again to recalculate" : "Recalculate limits";
  $("recalc").classList.toggle("armed", armed);
}
