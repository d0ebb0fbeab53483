// Commands with MQTT 5 request/response (docs/topics.md "Commands in"): each command gets a
// fresh correlation; its `done(error)` is called exactly once, with null on {"ok": true}, else
// with the bridge's or the broker's reason, or a timeout. Timers are passed in, so this is
// tested with `node --test` without waiting (hmi/test/requests.test.js).

export function createRequests({ timeoutMs, setTimer, clearTimer, newId }) {
  const pending = new Map(); // correlation -> {done, timer}

  function finish(correlation, error) {
    const entry = pending.get(correlation);
    if (!entry) return false;
    pending.delete(correlation);
    clearTimer(entry.timer);
    entry.done(error);
    return true;
  }

  return {
    // A new pending request: its correlation string (to send as correlation data).
    start(done) {
      const correlation = "req-" + newId();
      const entry = { done, timer: null };
      pending.set(correlation, entry);
      entry.timer = setTimer(() => {
        finish(correlation, "no reply from the bridge within " + timeoutMs / 1000 + " s");
      }, timeoutMs);
      return correlation;
    },
    // A reply arrived on our reply topic; false when it answers nothing we asked.
    reply(correlation, text) {
      return finish(correlation, replyError(text));
    },
    // The broker refused the publish (e.g. MQTT 5 "Not authorized").
    fail(correlation, error) {
      return finish(correlation, error);
    },
    get size() {
      return pending.size;
    },
  };
}

// null for {"ok": true}; else the reason the bridge gave, or a generic one.
export function replyError(text) {
  let reply = null;
  try {
    reply = JSON.parse(text);
  } catch (e) {
    reply = null;
  }
  if (reply && reply.ok === true) return null;
  return (reply && typeof reply.error === "string" && reply.error) || "the bridge refused the command";
}

// The correlation data of a reply as a string (mqtt.js gives a Buffer/Uint8Array).
export function correlationOf(properties, decode) {
  const cd = properties && properties.correlationData;
  if (cd == null) return "";
  return typeof cd === "string" ? cd : decode(cd);
}

// What a connection error means for the session (mqtt.js `error` events):
// "ignore" (a transient error: mqtt.js reconnects), "login-refused" (new credentials refused:
// back to the anonymous view), "session-refused" (credentials that worked are refused now,
// e.g. a changed password: back to anonymous), "anonymous-refused" (the broker wants a login).
export function refusalAction(err, credentials) {
  const code = err && err.code;
  const refused = code === 4 || code === 5 || code === 134 || code === 135;
  if (!refused) return "ignore";
  if (!credentials) return "anonymous-refused";
  return credentials.confirmed ? "session-refused" : "login-refused";
}

// One acknowledgement sent as several commands (one per violation, until the bridge takes
// one bulk command: docs/hmi.md "Alarms"): `done(failures)` is called once, when every
// answer is in, with [[violationId, error], ...] (empty when all succeeded). Returns the
// callback for the answer about violation `id`.
export function gatherReplies(ids, done) {
  let waiting = ids.length;
  const failures = [];
  if (waiting === 0) done(failures);
  return (id) => (error) => {
    if (error) failures.push([id, error]);
    waiting -= 1;
    if (waiting === 0) done(failures);
  };
}

// A command's refusal in plain words. The broker's ACL refuses what a user's role may not do
// (MQTT 5 "Not authorized"); the page cannot know the role beforehand (no message says it:
// docs/hmi.md "Roles"), so it says what the refusal means instead of the protocol's words.
export function plainRefusal(command, error) {
  const text = String(error || "");
  if (!/not authori[sz]ed/i.test(text)) return text;
  if (command === "recalculate") return "Only engineers may recalculate limits";
  if (command === "ack") return "your account may not acknowledge alarms (" + text + ")";
  return "not allowed for your account (" + text + ")";
}
