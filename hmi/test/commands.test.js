// Topics, and commands with MQTT 5 request/response, without a broker or real timers.
import assert from "node:assert/strict";
import { test } from "node:test";

import { correlationOf, createRequests, refusalAction, replyError } from "../src/requests.js";
import { createTopics, userNameProblem } from "../src/topics.js";

function fakeTimers() {
  const timers = new Map();
  let next = 1;
  return {
    setTimer: (f, ms) => {
      timers.set(next, { f, ms });
      return next++;
    },
    clearTimer: (t) => timers.delete(t),
    fireAll: () => [...timers.values()].forEach((t) => t.f()),
    get pending() {
      return timers.size;
    },
  };
}

function requests(timers) {
  let n = 0;
  return createRequests({ timeoutMs: 10000, ...timers, newId: () => String(++n) });
}

test("replies go to the user's private reply tree, one topic per connection", () => {
  const t = createTopics("plant/openspc");
  assert.equal(t.reply("alice", "openspc-hmi-x1"), "plant/openspc/reply/alice/openspc-hmi-x1");
  assert.equal(t.ack("alice"), "plant/openspc/cmd/ack/alice");
  assert.equal(t.recalculate("3"), "plant/openspc/cmd/char/3/recalculate");
  const anonymous = Object.keys(t.subscriptions(null, null));
  assert.equal(anonymous.some((k) => k.includes("/reply/")), false, "no reply topic without a user");
  assert.equal(anonymous.some((k) => k.endsWith("/history")), false);
  const named = t.subscriptions("3", t.reply("alice", "c1"));
  assert.deepEqual(named["plant/openspc/reply/alice/c1"], { qos: 1 });
  assert.deepEqual(named["plant/openspc/char/3/history"], { qos: 1 });
  assert.deepEqual(named["plant/openspc/char/+/sample"], { qos: 1 });
  assert.deepEqual(named["plant/openspc/bridge/status"], { qos: 1 });
});

test("topics are parsed only under the prefix", () => {
  const t = createTopics("openspc");
  assert.deepEqual(t.parse("openspc/char/12/sample"), { what: "char", id: "12", kind: "sample" });
  assert.deepEqual(t.parse("openspc/bridge/status"), { what: "status" });
  assert.equal(t.parse("openspcx/char/1/sample"), null);
  assert.equal(t.parse("openspc/char/1/2/sample"), null);
  assert.equal(t.parse("other/char/1/sample"), null);
});

test("a user name must be one topic level", () => {
  assert.equal(userNameProblem("alice"), null);
  assert.equal(userNameProblem(""), "Enter a user name");
  for (const bad of ["a/b", "a+", "#", "a\u0000"]) assert.match(userNameProblem(bad), /may not contain/);
});

test("a reply ends its request once: ok, or the bridge's reason", () => {
  const timers = fakeTimers();
  const r = requests(timers);
  const outcomes = [];
  const a = r.start((e) => outcomes.push(["a", e]));
  const b = r.start((e) => outcomes.push(["b", e]));
  assert.notEqual(a, b);
  assert.equal(r.reply(b, '{"ok": false, "error": "violation 99 is unknown"}'), true);
  assert.equal(r.reply(a, '{"ok": true}'), true);
  assert.equal(r.reply(a, '{"ok": true}'), false, "answered already");
  assert.equal(r.reply("req-other", '{"ok": true}'), false, "not ours");
  assert.deepEqual(outcomes, [["b", "violation 99 is unknown"], ["a", null]]);
  assert.equal(timers.pending, 0, "their timers are cleared");
  timers.fireAll();
  assert.equal(outcomes.length, 2);
});

test("no reply within the timeout, or a broker's refusal, ends the request with the reason", () => {
  const timers = fakeTimers();
  const r = requests(timers);
  const outcomes = [];
  r.start((e) => outcomes.push(e));
  const refused = r.start((e) => outcomes.push(e));
  r.fail(refused, "Publish error: Not authorized");
  timers.fireAll();
  assert.deepEqual(outcomes, ["Publish error: Not authorized", "no reply from the bridge within 10 s"]);
  assert.equal(r.size, 0);
});

test("reply payloads and correlation data", () => {
  assert.equal(replyError('{"ok": true}'), null);
  assert.equal(replyError("not json"), "the bridge refused the command");
  assert.equal(replyError('{"ok": false}'), "the bridge refused the command");
  const decode = (b) => new TextDecoder().decode(b);
  assert.equal(correlationOf({ correlationData: new TextEncoder().encode("req-1") }, decode), "req-1");
  assert.equal(correlationOf({ correlationData: "req-2" }, decode), "req-2");
  assert.equal(correlationOf(undefined, decode), "");
});

test("what a refused connection means for the session", () => {
  const notAuthorized = { code: 135 };
  assert.equal(refusalAction({ code: undefined, message: "timeout" }, null), "ignore");
  assert.equal(refusalAction(notAuthorized, null), "anonymous-refused");
  assert.equal(refusalAction({ code: 134 }, { user: "a", confirmed: false }), "login-refused");
  assert.equal(refusalAction({ code: 5 }, { user: "a", confirmed: true }), "session-refused");
});

test("a card's alarms are ONE bulk command, with the cause, action and comment", async () => {
  const { ackCommand, COMMENT_MAX } = await import("../src/requests.js");
  assert.deepEqual(
    ackCommand({ violationIds: [7, 8, 9], cause: "Tool Change", action: "Replaced Tool", comment: "  insert worn ", exclude: true }),
    { violation_ids: [7, 8, 9], cause: "Tool Change", action: "Replaced Tool", comment: "insert worn", exclude_sample: true },
  );
  // no action, no comment: left out; no cause: no command at all
  assert.deepEqual(ackCommand({ violationIds: [7], cause: "Other", action: "", comment: "" }), {
    violation_ids: [7],
    cause: "Other",
    exclude_sample: false,
  });
  assert.equal(ackCommand({ violationIds: [7], cause: "" }), null);
  assert.equal(ackCommand({ violationIds: [], cause: "Other" }), null);
  // every open alarm of a characteristic
  assert.deepEqual(ackCommand({ characteristicId: "3", cause: "Other" }), {
    characteristic_id: 3,
    all_open: true,
    cause: "Other",
    exclude_sample: false,
  });
  const long = ackCommand({ violationIds: [1], cause: "Other", comment: "x".repeat(600) });
  assert.equal(long.comment.length, COMMENT_MAX);
});

test("a query asks for a page before a sample, or for a time range, bounded", async () => {
  const { queryCommand, queryResult } = await import("../src/requests.js");
  assert.deepEqual(queryCommand({ characteristicId: "3" }), { characteristic_id: 3, limit: 500 });
  assert.deepEqual(queryCommand({ characteristicId: "3", before: 1234 }), {
    characteristic_id: 3,
    before_sample_id: 1234,
    limit: 500,
  });
  assert.deepEqual(queryCommand({ characteristicId: 3, from: "2026-12-07T10:00:00Z", to: "2026-12-07T11:00:00Z", limit: 5000 }), {
    characteristic_id: 3,
    from: "2026-12-07T10:00:00Z",
    to: "2026-12-07T11:00:00Z",
    limit: 1000,
  });
  const answer = { type: "query_result", payload: { characteristic_id: 3, samples: [{ sample_id: 1 }], next_before_sample_id: null } };
  assert.deepEqual(queryResult(JSON.stringify(answer)), answer.payload);
  assert.equal(queryResult('{"ok": false, "error": "no such characteristic"}'), null);
  assert.equal(queryResult("not json"), null);
});

test("a query's answer reaches its request with the result", () => {
  const timers = fakeTimers();
  const r = requests(timers);
  const got = [];
  const c = r.start((error, result) => got.push([error, result]));
  r.reply(c, JSON.stringify({ type: "query_result", payload: { samples: [], next_before_sample_id: null } }));
  assert.deepEqual(got, [[null, { samples: [], next_before_sample_id: null }]]);
  const c2 = r.start((error, result) => got.push([error, result]));
  r.reply(c2, '{"ok": false, "error": "limit must be at most 1000"}');
  assert.deepEqual(got[1], ["limit must be at most 1000", null]);
});

test("the role topic lies in the user's reply tree and is parsed", () => {
  const t = createTopics("openspc");
  assert.equal(t.role("kim"), "openspc/reply/kim/role");
  assert.equal(t.query("kim"), "openspc/cmd/query/kim");
  assert.deepEqual(t.parse("openspc/reply/kim/role"), { what: "role", user: "kim" });
  assert.equal(t.parse("openspc/reply/kim/openspc-hmi-x"), null);
  assert.deepEqual(t.subscriptions(null, "openspc/reply/kim/c1", "kim")["openspc/reply/kim/role"], { qos: 1 });
  assert.equal("openspc/reply/kim/role" in t.subscriptions(null, null, null), false);
  assert.deepEqual(t.parse("openspc/char/3/causes"), { what: "char", id: "3", kind: "causes" });
});

test("a refusal by the broker's ACL is said in plain words", async () => {
  const { plainRefusal } = await import("../src/requests.js");
  assert.equal(plainRefusal("recalculate", "Publish error: Not authorized"), "Only engineers may recalculate limits");
  assert.equal(
    plainRefusal("ack", "Publish error: Not authorized"),
    "your account may not acknowledge alarms (Publish error: Not authorized)",
  );
  // the bridge's own reasons are already words: kept as they are
  assert.equal(plainRefusal("recalculate", "characteristic 3 has no samples"), "characteristic 3 has no samples");
});
