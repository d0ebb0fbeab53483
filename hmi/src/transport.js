// The page's one MQTT 5 connection (mqtt.js, the global from vendor/mqtt.min.js): connect
// anonymously or as a user, subscribe, and send commands with a response topic in the user's
// own reply tree (docs/hmi.md "What it reads and writes"). What the messages mean is
// state.js's business; what the page shows is render.js's.
import { correlationOf, createRequests } from "./requests.js";

export function randomId() {
  return Math.random().toString(36).slice(2, 10) + Date.now().toString(36).slice(-4);
}

// `on`: {state(s), connect(credentials), error(err, credentials), message(topic, text)}
// where s is "connecting", "connected", "reconnecting" or "disconnected".
export function createTransport({ mqtt, brokerUrl, topics, reconnectMs, ackTimeoutMs, on }) {
  const decoder = new TextDecoder();
  const decode = (buf) => decoder.decode(buf);
  const requests = createRequests({
    timeoutMs: ackTimeoutMs,
    setTimer: (f, ms) => window.setTimeout(f, ms),
    clearTimer: (t) => window.clearTimeout(t),
    newId: randomId,
  });
  let client = null;
  let connected = false;
  let replyTopic = null;

  function setState(s) {
    connected = s === "connected";
    on.state(s);
  }

  function connect(credentials) {
    if (client) {
      const old = client;
      old.removeAllListeners();
      old.on("error", () => {}); // the old connection is being dropped
      old.end(true);
    }
    const clientId = "openspc-hmi-" + randomId();
    // Only a named user sends commands, so only a named user has a reply topic.
    replyTopic = credentials ? topics.reply(credentials.user, clientId) : null;
    const options = {
      protocolVersion: 5,
      clientId,
      clean: true,
      keepalive: 30,
      reconnectPeriod: reconnectMs,
      connectTimeout: 5000,
      resubscribe: false, // we subscribe on every connect, and receive the retained state again
    };
    if (credentials) {
      options.username = credentials.user;
      options.password = credentials.password;
    }
    setState("connecting");
    const c = mqtt.connect(brokerUrl, options);
    client = c;
    c.on("connect", () => {
      if (credentials) credentials.confirmed = true;
      setState("connected");
      on.connect(credentials);
    });
    c.on("reconnect", () => setState("reconnecting"));
    c.on("close", () => {
      if (connected) setState("disconnected");
    });
    c.on("offline", () => setState("disconnected"));
    c.on("error", (err) => on.error(err, credentials));
    c.on("message", (topic, buf, packet) => {
      const text = decode(buf);
      if (replyTopic !== null && topic === replyTopic) {
        requests.reply(correlationOf(packet && packet.properties, decode), text);
        return;
      }
      on.message(topic, text);
    });
  }

  function subscribe(topicsOrTopic) {
    if (!client || !connected) return;
    client.subscribe(topicsOrTopic, { qos: 1 }, (err) => {
      if (err) console.warn("OpenSPC HMI: subscribe failed:", err.message);
    });
  }

  function unsubscribe(topic) {
    if (client && connected) client.unsubscribe(topic);
  }

  // Publish `payload` to `topic` with our response topic and a fresh correlation;
  // `done(error, result)` is called once: null on {"ok": true} (or a query's result), else
  // the bridge's or the broker's reason.
  function request(topic, payload, done) {
    if (!client || replyTopic === null) {
      done("log in to send commands");
      return;
    }
    const correlation = requests.start(done);
    client.publish(
      topic,
      JSON.stringify(payload),
      {
        qos: 1,
        properties: {
          responseTopic: replyTopic,
          correlationData: correlation,
          contentType: "application/json",
        },
      },
      (err) => {
        if (err) requests.fail(correlation, err.message || String(err));
      },
    );
  }

  // One acknowledgement command (requests.js ackCommand: a card's alarms, or all the open
  // alarms of a characteristic) to `cmd/ack/<user>`; `done(error)` once.
  function acknowledge(user, command, done) {
    request(topics.ack(user), command, done);
  }

  // One query command (requests.js queryCommand) to `cmd/query/<user>`; `done(error, result)`
  // once, `result` the `query_result` payload.
  function query(user, command, done) {
    request(topics.query(user), command, done);
  }

  // Stop trying (the broker refuses anonymous viewers: only a login can help).
  function end() {
    if (client) client.end(true);
  }

  return {
    connect,
    subscribe,
    unsubscribe,
    request,
    acknowledge,
    query,
    end,
    get connected() {
      return connected;
    },
    get replyTopic() {
      return replyTopic;
    },
  };
}
