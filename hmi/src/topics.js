// Every topic the page reads or writes, built and parsed here only (docs/topics.md).
// Pure: no MQTT client.

// What the page subscribes to for each characteristic (the history only for the one on screen).
export const CHAR_KINDS = ["meta", "limits", "sample", "alarms", "violation", "ack", "causes"];

const CHAR_TOPIC = /^char\/([^/]+)\/([a-z_]+)$/;
const ROLE_TOPIC = /^reply\/([^/+#]+)\/role$/;

export function createTopics(prefix) {
  const root = prefix + "/";
  return {
    prefix,
    status: root + "bridge/status",
    history: (id) => root + "char/" + id + "/history",
    // every characteristic's history: only while the overview is on screen, until each
    // characteristic's has arrived (docs/hmi.md "Overview")
    allHistory: root + "char/+/history",
    ack: (user) => root + "cmd/ack/" + user,
    recalculate: (id) => root + "cmd/char/" + id + "/recalculate",
    query: (user) => root + "cmd/query/" + user,
    // what the user's role may do, retained by the bridge in the user's own reply tree
    // (docs/hmi.md "Roles")
    role: (user) => root + "reply/" + user + "/role",
    // The user's private reply tree (only that user may read it; the bridge answers only
    // there): one topic per connection, so two pages of one user never take each other's.
    reply: (user, clientId) => root + "reply/" + user + "/" + clientId,

    // The subscriptions of one connection, all QoS 1: the results of every characteristic,
    // the bridge's status, the history of the one on screen, and our replies when logged in.
    subscriptions(selectedId, replyTopic, user = null) {
      const topics = {};
      for (const kind of CHAR_KINDS) topics[root + "char/+/" + kind] = { qos: 1 };
      topics[root + "bridge/status"] = { qos: 1 };
      if (replyTopic) topics[replyTopic] = { qos: 1 };
      if (user) topics[root + "reply/" + user + "/role"] = { qos: 1 };
      if (selectedId !== null) topics[root + "char/" + selectedId + "/history"] = { qos: 1 };
      return topics;
    },

    // {what: "status"} | {what: "char", id, kind} | {what: "role", user} | null for a topic
    // that is not ours.
    parse(topic) {
      if (topic.indexOf(root) !== 0) return null;
      const rest = topic.slice(root.length);
      if (rest === "bridge/status") return { what: "status" };
      const m = CHAR_TOPIC.exec(rest);
      if (m) return { what: "char", id: m[1], kind: m[2] };
      const r = ROLE_TOPIC.exec(rest);
      return r ? { what: "role", user: r[1] } : null;
    },
  };
}

// A user name that can be a topic level: MQTT wildcards, "/" and NUL cannot.
export function userNameProblem(name) {
  if (!name) return "Enter a user name";
  if (/[/+#\u0000]/.test(name)) return "A user name may not contain / + #";
  return null;
}
