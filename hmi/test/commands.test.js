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

test("one acknowledgement of several alarms answers once, with every failure", async () => {
  const { gatherReplies } = await import("../src/requests.js");
  const calls = [];
  const answer = gatherReplies([7, 8, 9], (failures) => calls.push(failures));
  answer(7)(null);
  answer(9)("already acknowledged");
  assert.deepEqual(calls, []); // 8 has not answered yet
  answer(8)(null);
  assert.deepEqual(calls, [[[9, "already acknowledged"]]]);
  const none = [];
  gatherReplies([], (f) => none.push(f));
  assert.deepEqual(none, [[]]);
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
