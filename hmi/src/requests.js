// Commands with MQTT 5 request/response (docs/topics.md "Commands in"): each command gets a
// fresh correlation; its `done(error, result)` is called exactly once, with null on
// {"ok": true} (or a query's `query_result`, whose payload is `result`), else with the
// bridge's or the broker's reason, or a timeout. Timers are passed in, so this is
// tested with `node --test` without waiting (hmi/test/requests.test.js).

export function createRequests({ timeoutMs, setTimer, clearTimer, newId }) {
  const pending = new Map(); // correlation -> {done, timer}

  function finish(correlation, error, result = null) {
    const entry = pending.get(correlation);
    if (!entry) return false;
    pending.delete(correlation);
    clearTimer(entry.timer);
    entry.done(error, result);
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
      const result = queryResult(text);
      return result ? finish(correlation, null, result) : finish(correlation, replyError(text));
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

// The payload of a query command's answer (`{"type": "query_result", "payload": {...}}`,
// docs/topics.md "query"), or null for any other reply.
export function queryResult(text) {
  let reply = null;
  try {
    reply = JSON.parse(text);
  } catch (e) {
    return null;
  }
  if (!reply || reply.type !== "query_result" || !reply.payload || typeof reply.payload !== "object") return null;
  return Array.isArray(reply.payload.samples) ? reply.payload : null;
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

// The one acknowledgement command of a card, or of all the open alarms of a characteristic
// (docs/topics.md "Commands in"): `{"violation_ids": [...]}` or `{"characteristic_id": 3,
// "all_open": true}`, with the cause (required), the action (when chosen) and the comment
// (when written, at most 500 characters) and `exclude_sample`. All or nothing at the bridge:
// one reply for the whole command. null when something required is missing.
export const COMMENT_MAX = 500;
export function ackCommand({ violationIds, characteristicId, cause, action, comment, exclude }) {
  if (!cause) return null;
  const cmd = {};
  if (Array.isArray(violationIds)) {
    if (!violationIds.length) return null;
    cmd.violation_ids = violationIds.slice();
  } else if (characteristicId !== undefined && characteristicId !== null && characteristicId !== "") {
    const id = Number(characteristicId);
    cmd.characteristic_id = Number.isInteger(id) ? id : characteristicId;
    cmd.all_open = true;
  } else {
    return null;
  }
  cmd.cause = cause;
  if (action) cmd.action = action;
  const text = typeof comment === "string" ? comment.trim() : "";
  if (text) cmd.comment = text.slice(0, COMMENT_MAX);
  cmd.exclude_sample = !!exclude;
  return cmd;
}

// A query command (docs/topics.md "query"): the newest samples (`before` absent), those older
// than sample `before`, or those of a time range; `limit` at most 1000 (the bridge's bound).
export const QUERY_LIMIT = 500;
export function queryCommand({ characteristicId, before, from, to, limit = QUERY_LIMIT }) {
  const id = Number(characteristicId);
  const cmd = { characteristic_id: Number.isInteger(id) ? id : characteristicId };
  if (from || to) {
    if (from) cmd.from = from;
    if (to) cmd.to = to;
  } else if (before !== undefined && before !== null) {
    cmd.before_sample_id = before;
  }
  cmd.limit = Math.max(1, Math.min(1000, limit));
  return cmd;
}

// A command's refusal in plain words. The broker's ACL refuses what a user's role may not do
// (MQTT 5 "Not authorized"); without the bridge's role message (docs/hmi.md "Roles") the page
// offers every control, and says what a refusal means instead of the protocol's words.
export function plainRefusal(command, error) {
  const text = String(error || "");
  if (!/not authori[sz]ed/i.test(text)) return text;
  if (command === "recalculate") return "Only engineers may recalculate limits";
  if (command === "ack") return "your account may not acknowledge alarms (" + text + ")";
  if (command === "query") return "your account may not load older data (" + text + ")";
  return "not allowed for your account (" + text + ")";
}
