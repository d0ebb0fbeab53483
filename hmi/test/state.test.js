// The view state from sequences of MQTT messages, as the bridge sends them (docs/topics.md).
import assert from "node:assert/strict";
import { test } from "node:test";

import * as model from "../src/state.js";

const T0 = Date.parse("2026-12-07T06:00:00Z");
const iso = (s) => new Date(T0 + s * 1000).toISOString();
const text = (type, payload) => JSON.stringify({ type, payload });
const sample = (id, value, extra = {}) => ({
  sample_id: id,
  characteristic_id: 1,
  timestamp: iso(id),
  value,
  values: [value],
  range: null,
  zone: null,
  in_control: null,
  failed_rules: [],
  range_failed_rules: [],
  ...extra,
});
const violation = (id, sampleId, charId = 1) => ({
  violation_id: id,
  sample_id: sampleId,
  characteristic_id: charId,
  rule_id: 1,
  rule_name: "Beyond 3 sigma",
  severity: "CRITICAL",
  chart: "x",
  timestamp: iso(sampleId),
});

function feed(state, id, kind, type, payload) {
  return model.handleCharMessage(state, id, kind, text(type, payload), "p/char/" + id + "/" + kind);
}

test("a meta makes a characteristic, listed by numeric id", () => {
  const state = model.createState();
  for (const id of ["10", "2", "1"]) {
    const change = feed(state, id, "meta", "meta", { characteristic_id: Number(id), name: "c" + id });
    assert.equal(change.metaArrived, id);
    assert.deepEqual([...change.dirty].sort(), ["alarms", "header", "list"]);
  }
  assert.deepEqual(model.sortedChars(state).map((c) => c.id), ["1", "2", "10"]);
});

test("samples keep the newest history size, in order, duplicates ignored", () => {
  const state = model.createState({ history: 3 });
  for (const id of [1, 2, 3, 3, 2, 4, 5]) feed(state, "1", "sample", "sample", sample(id, id / 10));
  const ch = state.chars.get("1");
  assert.deepEqual(ch.samples.map((s) => s.sample_id), [3, 4, 5]);
  assert.equal(ch.last.sample_id, 5);
});

test("a lower sample id with a later time starts the chart again (a new database)", () => {
  const state = model.createState();
  feed(state, "1", "sample", "sample", sample(40, 1));
  feed(state, "1", "sample", "sample", sample(41, 1));
  feed(state, "1", "sample", "sample", { ...sample(1, 2), timestamp: iso(100) });
  const ch = state.chars.get("1");
  assert.deepEqual(ch.samples.map((s) => s.sample_id), [1]);
  assert.equal(ch.last.sample_id, 1);
});

test("the retained history draws the chart on screen, keeps newer live samples, then is dropped", () => {
  const state = model.createState({ history: 100 });
  state.selectedId = "1";
  feed(state, "1", "sample", "sample", sample(31, 3.1)); // live, newer than the retained history
  const history = Array.from({ length: 30 }, (_, i) => sample(i + 1, i));
  const change = feed(state, "1", "history", "history", { characteristic_id: 1, samples: history });
  assert.equal(change.historyLoaded, "1");
  const ch = state.chars.get("1");
  assert.deepEqual(ch.samples.map((s) => s.sample_id), [...Array(31).keys()].map((i) => i + 1));
  assert.equal(ch.last.sample_id, 31);
});

test("a history larger than the default raises the cap; another characteristic's feeds the overview", () => {
  const state = model.createState({ history: 5 });
  state.selectedId = "1";
  feed(state, "1", "meta", "meta", { name: "one" });
  feed(state, "2", "meta", "meta", { name: "two" });
  const history = Array.from({ length: 8 }, (_, i) => sample(i + 1, i));
  feed(state, "1", "history", "history", { samples: history });
  assert.equal(state.chars.get("1").cap, 8);
  assert.equal(model.allHistoriesLoaded(state), false);
  const other = feed(state, "2", "history", "history", { samples: history });
  assert.equal(other.historyLoaded, "2");
  assert.deepEqual([...other.dirty], ["list"]); // not the chart on screen
  assert.equal(state.chars.get("2").samples.length, 8);
  assert.equal(state.chars.get("2").last.sample_id, 8);
  assert.equal(model.allHistoriesLoaded(state), true);
});

test("limits redraw only the characteristic on screen", () => {
  const state = model.createState();
  state.selectedId = "1";
  assert.deepEqual([...feed(state, "1", "limits", "control_limits", { center_line: 1 }).dirty].sort(), ["charts", "header"]);
  assert.equal(feed(state, "2", "limits", "control_limits", { center_line: 2 }).dirty.size, 0);
  assert.equal(state.chars.get("2").limits.center_line, 2);
});

test("retained alarms count what the bridge holds beyond its list; live ones are fresh", () => {
  const state = model.createState();
  feed(state, "1", "alarms", "alarms", { violations: [violation(7, 3), violation(8, 4)], open_count: 1502 });
  const ch = state.chars.get("1");
  assert.equal(model.openCount(ch), 1502);
  assert.equal(state.fresh.size, 0, "already open when we connected: not news");
  feed(state, "1", "violation", "violation", violation(9, 5));
  feed(state, "1", "alarms", "alarms", { violations: [violation(7, 3), violation(8, 4), violation(9, 5), violation(10, 6)], open_count: 1504 });
  assert.deepEqual([...state.fresh].sort((a, b) => a - b), [9, 10]);
  assert.deepEqual(model.openAlarms(state).map((v) => v.violation_id), [10, 9, 8, 7]);
  assert.equal(model.totalOpen(state), 1504);
});

test("after a reconnection the retained alarms are not news again", () => {
  const state = model.createState();
  feed(state, "1", "alarms", "alarms", { violations: [violation(7, 3)], open_count: 1 });
  model.onResubscribe(state);
  feed(state, "1", "alarms", "alarms", { violations: [violation(7, 3), violation(8, 4)], open_count: 2 });
  assert.equal(state.fresh.size, 0);
});

test("an acknowledgement closes the alarm everywhere, once; a late violation stays closed", () => {
  const state = model.createState();
  feed(state, "1", "alarms", "alarms", { violations: [violation(7, 3), violation(8, 4)], open_count: 3 });
  const first = feed(state, "1", "ack", "ack_update", { violation_id: 7, characteristic_id: 1, acknowledged: true });
  assert.deepEqual([...first.dirty].sort(), ["alarms", "list"]);
  assert.equal(model.totalOpen(state), 2);
  assert.equal(feed(state, "1", "ack", "ack_update", { violation_id: 7, acknowledged: true }).dirty.size, 0);
  feed(state, "1", "violation", "violation", violation(7, 3));
  assert.deepEqual(model.openAlarms(state).map((v) => v.violation_id), [8]);
  // one we never held (beyond the retained list): only the count drops
  feed(state, "1", "ack", "ack_update", { violation_id: 2, characteristic_id: 1, acknowledged: true });
  assert.equal(model.totalOpen(state), 1);
});

test("our own reply closes the alarm before the broadcast arrives", () => {
  const state = model.createState();
  feed(state, "3", "violation", "violation", violation(5, 1, 3));
  model.onAckUpdate(state, null, { violation_id: 5, acknowledged: true });
  assert.equal(model.totalOpen(state), 0);
  assert.equal(feed(state, "3", "ack", "ack_update", { violation_id: 5, characteristic_id: 3, acknowledged: true }).dirty.size, 0);
});

test("at most maxAlarmsPerChar alarms are held; the rest are counted", () => {
  const state = model.createState({ maxAlarmsPerChar: 2 });
  for (const id of [1, 2, 3]) feed(state, "1", "violation", "violation", violation(id, id));
  const ch = state.chars.get("1");
  assert.deepEqual([...ch.alarms.keys()], [2, 3]);
  assert.equal(model.openCount(ch), 3);
});

test("empty retained messages clear what they stood for", () => {
  const state = model.createState();
  state.selectedId = "1";
  feed(state, "1", "meta", "meta", { name: "a" });
  feed(state, "1", "limits", "control_limits", { center_line: 1 });
  feed(state, "1", "violation", "violation", violation(4, 1));
  model.handleCharMessage(state, "1", "limits", "", "p/char/1/limits");
  assert.equal(state.chars.get("1").limits, null);
  model.handleCharMessage(state, "1", "alarms", "", "p/char/1/alarms");
  assert.equal(model.totalOpen(state), 0);
  const change = model.handleCharMessage(state, "1", "meta", "", "p/char/1/meta");
  assert.equal(change.removed, "1");
  assert.equal(state.chars.has("1"), false);
});

test("malformed messages are skipped with a warning; unknown types are ignored", () => {
  const state = model.createState();
  const bad = model.handleCharMessage(state, "1", "sample", "{nope", "p/char/1/sample");
  assert.match(bad.warning, /not JSON on p\/char\/1\/sample/);
  const noEnvelope = model.handleCharMessage(state, "1", "sample", "12.5", "p/char/1/sample");
  assert.match(noEnvelope.warning, /no \{type, payload\} envelope/);
  const later = model.handleCharMessage(state, "1", "weather", text("weather", { sunny: true }), "p/char/1/weather");
  assert.equal(later.warning, undefined);
  assert.equal(later.dirty.size, 0);
  assert.equal(feed(state, "1", "sample", "sample", { value: 1 }).dirty.size, 0, "no sample_id");
  assert.equal(state.chars.has("1"), false);
});

test("the bridge status: online, offline with its time, or unknown", () => {
  const state = model.createState();
  model.onBridgeStatus(state, JSON.stringify({ online: true, timestamp: iso(0) }));
  assert.deepEqual(state.bridge, { known: true, online: true, timestamp: iso(0) });
  model.onBridgeStatus(state, JSON.stringify({ online: false, timestamp: iso(9) }));
  assert.deepEqual(state.bridge, { known: true, online: false, timestamp: iso(9) });
  model.onBridgeStatus(state, "");
  assert.equal(state.bridge.known, false);
});

test("which characteristic to show when a meta arrives", () => {
  const state = model.createState();
  assert.equal(model.selectionOnMeta(state, "2", "2", false), "select");
  assert.equal(model.selectionOnMeta(state, "1", "2", false), "auto");
  state.selectedId = "1";
  assert.equal(model.selectionOnMeta(state, "2", "2", true), null, "someone picked already");
  assert.equal(model.selectionOnMeta(state, "3", "2", false), null);
});

test("open alarms are grouped by sample, worst severity, filtered by characteristic and severity", () => {
  const state = model.createState();
  const v = (id, char, sampleId, rule, chart, severity, ts) => ({
    violation_id: id,
    characteristic_id: char,
    sample_id: sampleId,
    rule_id: rule,
    rule_name: "r" + rule,
    chart,
    severity,
    timestamp: ts,
  });
  const t0 = "2026-11-28T06:00:00.000Z";
  const t1 = "2026-11-28T06:00:01.000Z";
  const t2 = "2026-11-28T06:00:02.000Z";
  feed(state, "1", "violation", "violation", v(11, 1, 100, 5, "x", "WARNING", t1));
  feed(state, "1", "violation", "violation", v(10, 1, 100, 1, "x", "CRITICAL", t1));
  feed(state, "1", "violation", "violation", v(12, 1, 100, 1, "range", "CRITICAL", t1));
  feed(state, "2", "violation", "violation", v(20, 2, 200, 2, "x", "WARNING", t2));
  // an alarm kind without a sample (the workflow's "overdue") keeps a group of its own
  feed(state, "2", "violation", "violation", { ...v(21, 2, null, null, "x", "WARNING", t0), kind: "overdue" });
  const groups = model.alarmGroups(state);
  assert.deepEqual(
    groups.map((g) => [g.key, g.severity, g.violations.map((x) => x.violation_id)]),
    [
      ["2:s200", "WARNING", [20]],
      ["1:s100", "CRITICAL", [10, 11, 12]], // X rule 1, X rule 5, then the range chart
      ["2:v21", "WARNING", [21]],
    ],
  );
  assert.deepEqual(model.alarmGroups(state, { char: "1" }).map((g) => g.key), ["1:s100"]);
  assert.deepEqual(model.alarmGroups(state, { severity: "CRITICAL" }).map((g) => g.key), ["1:s100"]);
  assert.deepEqual(model.alarmGroups(state, { char: "2", severity: "WARNING" }).map((g) => g.key), ["2:s200", "2:v21"]);
});

test("limits are kept by version; the Pareto of causes is sorted, with cumulative shares", () => {
  const state = model.createState();
  feed(state, "1", "limits", "control_limits", { characteristic_id: 1, version: 1, center_line: 10, ucl: 11, lcl: 9 });
  feed(state, "1", "limits", "control_limits", { characteristic_id: 1, version: 2, center_line: 10, ucl: 12, lcl: 8 });
  const ch = state.chars.get("1");
  assert.deepEqual([...ch.limitsByVersion.keys()], [1, 2]);
  assert.equal(ch.limits.version, 2);
  const c = feed(state, "1", "causes", "causes", {
    characteristic_id: 1,
    days: 30,
    counts: [
      { cause: "Other", count: 1 },
      { cause: "Tool Change", count: 7 },
      { cause: "Measurement Error", count: 2 },
      { cause: "bad", count: "x" },
    ],
  });
  assert.ok(c.dirty.has("causes"));
  const p = model.paretoRows(ch);
  assert.equal(p.days, 30);
  assert.equal(p.total, 10);
  assert.deepEqual(
    p.rows.map((r) => [r.cause, r.count, r.share, r.cumulative]),
    [
      ["Tool Change", 7, 70, 70],
      ["Measurement Error", 2, 20, 90],
      ["Other", 1, 10, 100],
    ],
  );
  model.handleCharMessage(state, "1", "causes", "", "p/char/1/causes");
  assert.deepEqual(model.paretoRows(ch).rows, []);
});

test("the role message says what the page offers; without one, everything", () => {
  const state = model.createState();
  assert.equal(model.may(state, "recalculate"), true);
  const role = text("role", { user: "alice", role: "hmi", may: ["acknowledge", "query"] });
  // another user's retained role is not ours
  model.onRole(state, "bob", "alice", role);
  assert.equal(state.role, null);
  const c = model.onRole(state, "alice", "alice", role);
  assert.ok(c.dirty.has("roles"));
  assert.equal(model.may(state, "recalculate"), false);
  assert.equal(model.may(state, "acknowledge"), true);
  assert.equal(model.may(state, "query"), true);
  model.onRole(state, "alice", "alice", text("role", { user: "alice", role: "gauge", may: [] }));
  assert.equal(model.may(state, "acknowledge"), false);
  assert.match(model.onRole(state, "alice", "alice", "{nonsense").warning, /not JSON/);
  model.onRole(state, "alice", "alice", "");
  assert.equal(model.may(state, "recalculate"), true);
});
