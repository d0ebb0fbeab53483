// The page's view state and the pure functions that change it from MQTT messages
// (docs/topics.md). No DOM, no MQTT client, no timers: each handler returns what changed
// (`dirty` parts of the page, and what the caller must do about it), so the whole of it is
// tested with `node --test` (hmi/test/state.test.js).
import { isNum } from "./format.js";

export const DEFAULTS = {
  history: 100, // points kept per chart until a larger history is seen
  maxAlarmsPerChar: 500, // open alarms kept per characteristic (oldest dropped)
  maxAckedMemory: 2000, // acknowledged ids remembered against late messages
};

export function createState(options = {}) {
  return {
    options: { ...DEFAULTS, ...options },
    chars: new Map(), // id (string, from the topic) -> characteristic state
    selectedId: null,
    bridge: { known: false, online: false, timestamp: null },
    acked: new Set(), // violation ids known to be acknowledged
    fresh: new Set(), // alarms raised while we watch, until their row is drawn
    role: null, // the logged-in user's role message: {user, role, may: Set} (docs/hmi.md "Roles")
  };
}

export function charState(state, id) {
  let ch = state.chars.get(id);
  if (!ch) {
    // alarmsBeyond: open alarms we know of but do not hold (the bridge's retained list holds
    // only its newest 1,000, with `open_count`; we keep at most maxAlarmsPerChar)
    ch = {
      id,
      meta: null,
      limits: null,
      last: null,
      alarms: new Map(),
      alarmsBeyond: 0,
      alarmsSynced: false,
      historyLoaded: false,
      samples: [],
      cap: state.options.history,
      limitsByVersion: new Map(), // every `control_limits` version seen: each point's own limits
      causes: null, // the retained Pareto of causes (`causes`)
    };
    state.chars.set(id, ch);
  }
  return ch;
}

// What a handler changed. `dirty` names the parts of the page to redraw; the rest are
// requests to the caller: `metaArrived` (a characteristic appeared or changed),
// `removed` (it disappeared), `historyLoaded` (the retained history of the one on screen
// arrived: the caller unsubscribes from it), `warning` (a malformed message, for the console).
function change(...parts) {
  return { dirty: new Set(parts) };
}

// Decode `{type, payload}`: the envelope, or a `warning` saying why not.
export function decodeEnvelope(text, topic) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch (e) {
    return { warning: "not JSON on " + topic };
  }
  if (!msg || typeof msg !== "object" || !msg.payload || typeof msg.payload !== "object") {
    return { warning: "no {type, payload} envelope on " + topic };
  }
  return { type: msg.type, payload: msg.payload };
}

// One message of a characteristic's topic (`kind` is the topic's last level).
export function handleCharMessage(state, id, kind, text, topic) {
  if (text.length === 0) return onCleared(state, id, kind);
  const msg = decodeEnvelope(text, topic);
  if (msg.warning) return { dirty: new Set(), warning: msg.warning };
  const p = msg.payload;
  switch (msg.type) {
    case "meta":
      return onMeta(state, id, p);
    case "control_limits":
      return onLimits(state, id, p);
    case "sample":
      return onSample(state, id, p);
    case "history":
      return onHistory(state, id, p);
    case "alarms":
      return onAlarms(state, id, p);
    case "violation":
      return onViolation(state, id, p);
    case "ack_update":
      return onAckUpdate(state, id, p);
    case "causes":
      return onCauses(state, id, p);
    default:
      return change(); // types added later are ignored
  }
}

export function onBridgeStatus(state, text) {
  let s = null;
  try {
    s = text ? JSON.parse(text) : null;
  } catch (e) {
    s = null;
  }
  if (s && typeof s.online === "boolean") {
    state.bridge = { known: true, online: s.online, timestamp: s.timestamp || null };
  } else {
    state.bridge = { known: false, online: false, timestamp: null };
  }
  return change("status");
}

// An empty retained message clears what it stood for.
export function onCleared(state, id, kind) {
  const ch = state.chars.get(id);
  if (!ch) return change();
  if (kind === "meta") {
    state.chars.delete(id);
    const c = change("list", "alarms", "header");
    c.removed = id;
    return c;
  }
  if (kind === "alarms") {
    ch.alarms.clear();
    return change("alarms", "list");
  }
  if (kind === "limits") {
    ch.limits = null;
    return change("charts", "header");
  }
  if (kind === "causes") {
    ch.causes = null;
    return change("causes");
  }
  return change();
}

export function onMeta(state, id, p) {
  const ch = charState(state, id);
  ch.meta = p;
  const c = change("list", "header", "alarms");
  c.metaArrived = id;
  return c;
}

export function onLimits(state, id, p) {
  const ch = charState(state, id);
  ch.limits = p;
  // kept by version, so that a point is drawn against the limits it was judged by
  // (`sample.limits_version`), however many recalculations later
  if (isNum(p.version)) {
    ch.limitsByVersion.set(p.version, p);
    if (ch.limitsByVersion.size > 50) ch.limitsByVersion.delete(Math.min(...ch.limitsByVersion.keys()));
  }
  return id === state.selectedId ? change("charts", "header") : change();
}

// 1: p is newer than last; 0: the same or older (a retained copy, or in the history);
// -1: newer, but its id is lower: the bridge started on a new database, start again.
export function compareSample(p, last) {
  if (!last || p.sample_id > last.sample_id) return 1;
  if (p.sample_id < last.sample_id && Date.parse(p.timestamp) > Date.parse(last.timestamp)) {
    return -1;
  }
  return 0;
}

function appendSample(ch, p) {
  const arr = ch.samples;
  const order = compareSample(p, arr[arr.length - 1]);
  if (order === 0) return;
  if (order === -1) arr.length = 0;
  arr.push(p);
  if (arr.length > ch.cap) arr.splice(0, arr.length - ch.cap);
}

export function onSample(state, id, p) {
  if (!isNum(p.sample_id)) return change();
  const ch = charState(state, id);
  if (compareSample(p, ch.last) !== 0) ch.last = p;
  // Every characteristic keeps its points (at most the history size), not only the one on
  // screen: the retained history may lag the samples, so a pick must not rely on it alone.
  appendSample(ch, p);
  return id === state.selectedId ? change("list", "charts", "header") : change("list");
}

// The retained history of the characteristic on screen, or (for the overview's sparklines)
// of any other one.
export function onHistory(state, id, p) {
  const ch = charState(state, id);
  ch.historyLoaded = true;
  const samples = Array.isArray(p.samples) ? p.samples.filter((s) => s && isNum(s.sample_id)) : [];
  ch.cap = Math.max(ch.cap, samples.length);
  const lastId = samples.length ? samples[samples.length - 1].sample_id : -Infinity;
  const newer = ch.samples.filter((s) => s.sample_id > lastId);
  ch.samples = samples.concat(newer);
  if (ch.samples.length > ch.cap) ch.samples.splice(0, ch.samples.length - ch.cap);
  const newest = ch.samples[ch.samples.length - 1];
  if (newest && compareSample(newest, ch.last) !== 0) ch.last = newest;
  // The retained history is only needed once per (re)connection: from here on the samples
  // keep the chart current.
  const c = id === state.selectedId ? change("charts", "header", "list") : change("list");
  c.historyLoaded = id;
  return c;
}

function addAlarm(state, ch, v) {
  if (!isNum(v.violation_id) || state.acked.has(v.violation_id)) return;
  if (ch.alarms.has(v.violation_id)) return;
  ch.alarms.set(v.violation_id, v);
  if (ch.alarms.size > state.options.maxAlarmsPerChar) {
    ch.alarms.delete(ch.alarms.keys().next().value);
    ch.alarmsBeyond += 1;
  }
}

export function openCount(ch) {
  return ch.alarms.size + ch.alarmsBeyond;
}

export function onAlarms(state, id, p) {
  const ch = charState(state, id);
  const before = ch.alarms;
  const list = Array.isArray(p.violations) ? p.violations : [];
  if (ch.alarmsSynced) {
    // an update while we watch: what it adds was raised just now
    for (const v of list) {
      if (v && isNum(v.violation_id) && !before.has(v.violation_id)) state.fresh.add(v.violation_id);
    }
  }
  ch.alarmsSynced = true;
  ch.alarms = new Map();
  ch.alarmsBeyond = 0;
  for (const v of list) if (v) addAlarm(state, ch, v);
  if (isNum(p.open_count)) ch.alarmsBeyond = Math.max(0, p.open_count - ch.alarms.size);
  return change("alarms", "list");
}

export function onViolation(state, id, p) {
  if (isNum(p.violation_id) && !state.acked.has(p.violation_id)) state.fresh.add(p.violation_id);
  addAlarm(state, charState(state, id), p);
  return change("alarms", "list");
}

// An acknowledgement, from the bridge's broadcast (`id` from the topic) or from our own
// command's reply (`id` null).
export function onAckUpdate(state, id, p) {
  if (!isNum(p.violation_id) || p.acknowledged === false) return change();
  if (state.acked.has(p.violation_id)) return change(); // our reply, then the broadcast
  state.acked.add(p.violation_id);
  if (state.acked.size > state.options.maxAckedMemory) {
    state.acked.delete(state.acked.values().next().value);
  }
  let held = false;
  state.chars.forEach((ch) => {
    held = ch.alarms.delete(p.violation_id) || held;
  });
  const owner = state.chars.get(String(id !== null ? id : p.characteristic_id));
  if (!held && owner && owner.alarmsBeyond > 0) owner.alarmsBeyond -= 1; // one we did not hold
  return change("alarms", "list");
}

// The retained Pareto of causes: {characteristic_id, days, counts: [{cause, count}]}.
export function onCauses(state, id, p) {
  const ch = charState(state, id);
  const counts = Array.isArray(p.counts)
    ? p.counts.filter((c) => c && typeof c.cause === "string" && isNum(c.count) && c.count > 0)
    : [];
  counts.sort((a, b) => b.count - a.count || (a.cause < b.cause ? -1 : 1));
  ch.causes = { days: isNum(p.days) ? p.days : null, counts };
  return change("causes");
}

// The Pareto of a characteristic's causes: each cause's count, share and cumulative share
// (percent, rounded), most frequent first; {days, total, rows}.
export function paretoRows(ch) {
  const causes = ch && ch.causes;
  if (!causes) return { days: null, total: 0, rows: [] };
  const total = causes.counts.reduce((sum, c) => sum + c.count, 0);
  let running = 0;
  const rows = causes.counts.map((c) => {
    running += c.count;
    return {
      cause: c.cause,
      count: c.count,
      share: Math.round((100 * c.count) / total),
      cumulative: Math.round((100 * running) / total),
    };
  });
  return { days: causes.days, total, rows };
}

// The user's role message (retained at `reply/<user>/role`): what the page offers. Only the
// logged-in user's counts; an empty message (the user was removed) forgets it.
export function onRole(state, user, currentUser, text) {
  if (user !== currentUser) return change();
  if (!text) {
    state.role = null;
    return change("roles", "alarms");
  }
  const msg = decodeEnvelope(text, "role");
  const p = msg.payload;
  if (msg.warning || msg.type !== "role" || !Array.isArray(p.may)) {
    return { dirty: new Set(), warning: msg.warning || "a role message without 'may'" };
  }
  state.role = { user: p.user, role: typeof p.role === "string" ? p.role : "", may: new Set(p.may) };
  return change("roles", "alarms");
}

// Whether the page offers `what` ("acknowledge", "recalculate", "query"): what the role
// message's `may` lists, or everything without one (the broker still decides).
export function may(state, what) {
  return !state.role || state.role.may.has(what);
}

// Every (re)connection brings the retained lists again: they are not news.
export function onResubscribe(state) {
  state.chars.forEach((ch) => {
    ch.alarmsSynced = false;
    ch.historyLoaded = false; // the overview asks for every history again
  });
}

// Whether every characteristic known has had its retained history (the overview then needs
// no more of them: the live samples keep its sparklines current).
export function allHistoriesLoaded(state) {
  return sortedChars(state).every((ch) => ch.historyLoaded);
}

// ---- derived views ------------------------------------------------------------------------

// Characteristics with a meta, by id (numerically when both are numbers).
export function sortedChars(state) {
  return Array.from(state.chars.values())
    .filter((c) => c.meta)
    .sort((a, b) => {
      const na = Number(a.id);
      const nb = Number(b.id);
      if (isFinite(na) && isFinite(nb) && na !== nb) return na - nb;
      return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    });
}

// The open alarms of every characteristic, newest first.
export function openAlarms(state) {
  const all = [];
  state.chars.forEach((ch) => ch.alarms.forEach((v) => all.push(v)));
  all.sort((a, b) => {
    const ta = Date.parse(a.timestamp) || 0;
    const tb = Date.parse(b.timestamp) || 0;
    return tb - ta || b.violation_id - a.violation_id;
  });
  return all;
}

// The open alarms as an operator handles them: one group per sample (every rule and chart it
// failed, and the alarm kinds to come: `kind` "spec" / "overdue" keep their own group when
// they carry no sample), newest first. `filter`: {char: id or "", severity: "" / "CRITICAL" /
// "WARNING"}; a group's severity is its worst. Each group: {key, characteristicId, sampleId,
// timestamp (the newest of its alarms), severity, violations (X before the secondary chart,
// then by rule)}.
export function alarmGroups(state, filter = {}) {
  const groups = new Map();
  for (const v of openAlarms(state)) {
    const sampleKey = isNum(v.sample_id) ? "s" + v.sample_id : "v" + v.violation_id;
    const key = String(v.characteristic_id) + ":" + sampleKey;
    let g = groups.get(key);
    if (!g) {
      g = {
        key,
        characteristicId: String(v.characteristic_id),
        sampleId: isNum(v.sample_id) ? v.sample_id : null,
        timestamp: v.timestamp,
        severity: "WARNING",
        violations: [],
      };
      groups.set(key, g); // openAlarms is newest first: so are the groups
    }
    g.violations.push(v);
    if (v.severity === "CRITICAL") g.severity = "CRITICAL";
  }
  // the run rules (X before the secondary chart), then spec, then overdue
  const chartOrder = (v) => (v.kind === "overdue" ? 3 : v.kind === "spec" ? 2 : v.chart === "range" ? 1 : 0);
  const out = [];
  groups.forEach((g) => {
    if (filter.char && g.characteristicId !== String(filter.char)) return;
    if (filter.severity && g.severity !== filter.severity) return;
    g.violations.sort(
      (a, b) => chartOrder(a) - chartOrder(b) || (a.rule_id || 0) - (b.rule_id || 0) || a.violation_id - b.violation_id,
    );
    out.push(g);
  });
  return out;
}

// How many alarms are open in all (those held, and those known only by count).
export function totalOpen(state) {
  let total = 0;
  state.chars.forEach((ch) => {
    total += openCount(ch);
  });
  return total;
}

// Which characteristic to show when one's meta arrives: "select" it (the one asked for by
// ?char= or the last pick, unless someone already picked another), "auto" (none is shown
// yet: pick one once the burst of retained metas is in), or null.
export function selectionOnMeta(state, id, wanted, userChose) {
  if (!userChose && wanted === id && state.selectedId !== id) return "select";
  if (state.selectedId === null) return "auto";
  return null;
}
