/* OpenSPC HMI: a static page served by Mosquitto's http_dir that reads the bridge's topics
 * (docs/topics.md) over MQTT 5 on the same websocket port, and draws Shewhart charts with uPlot.
 *
 * Classic script (no ES modules: Mosquitto sends no Content-Type). Globals used: `mqtt`
 * (vendor/mqtt.min.js) and `uPlot` (vendor/uPlot.iife.min.js). See docs/hmi.md.
 */
(function () {
  "use strict";

  // ---- settings -----------------------------------------------------------------------
  var params = new URLSearchParams(window.location.search);
  var PREFIX = (params.get("prefix") || "openspc").replace(/\/+$/, "");
  var BROKER_URL =
    params.get("broker") ||
    (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host;
  var DEFAULT_HISTORY = 100; // points kept per chart until a larger history is seen
  var MAX_ALARMS_PER_CHAR = 500; // open alarms kept per characteristic (oldest dropped)
  var MAX_ALARM_ROWS = 100; // rows drawn in the alarm panel
  var MAX_ACKED_MEMORY = 2000; // acknowledged ids remembered against late messages
  var ACK_TIMEOUT_MS = 10000;
  var RECONNECT_MS = 2000;
  var DEFAULT_REASONS = [
    "Tool Change", "Raw Material Change", "Setup Adjustment", "Measurement Error",
    "Process Adjustment", "Environmental Factor", "Operator Error", "Equipment Malfunction",
    "False Alarm", "Under Investigation", "Other",
  ];
  var CHART_NAMES = {
    i_mr: ["Individuals (X)", "Moving range (MR)", "MR", "X"],
    xbar_r: ["Subgroup mean (X\u0304)", "Range (R)", "R", "X\u0304"],
    xbar_s: ["Subgroup mean (X\u0304)", "Std. deviation (S)", "S", "X\u0304"],
  };
  var ZONE_NAMES = {
    beyond_ucl: "beyond UCL", zone_a_upper: "zone A upper", zone_b_upper: "zone B upper",
    zone_c_upper: "zone C upper", zone_c_lower: "zone C lower", zone_b_lower: "zone B lower",
    zone_a_lower: "zone A lower", beyond_lcl: "beyond LCL",
  };
  var COLORS = {
    line: "#4fc3f7", point: "#e8f4fb", bad: "#ff2d2d", cl: "#2ecc71", limit: "#ff6b6b",
    zone2: "rgba(255, 176, 32, 0.20)", zone1: "rgba(255, 176, 32, 0.08)",
    axis: "#c3ccd5", grid: "#2c343d", text: "#ffffff",
  };

  // ---- state --------------------------------------------------------------------------
  var chars = new Map(); // id (string, from the topic) -> characteristic state
  var selectedId = null;
  var userChoseChar = false;
  var wantedChar = params.get("char") || safeStorageGet("openspc-hmi-char");
  var client = null;
  var clientId = "";
  var replyTopic = "";
  var user = null; // named HMI user, or null when anonymous
  var connected = false;
  var freshAlarms = new Set(); // raised while we watch, until their row is drawn
  var bridge = { known: false, online: false, timestamp: null };
  var acked = new Set();
  var pendingRequests = new Map(); // correlation -> {done, timer}
  var dirty = { list: false, alarms: false, charts: false, header: false, status: false };
  var renderScheduled = false;
  var decoder = new TextDecoder();
  var $ = function (id) { return document.getElementById(id); };

  function charState(id) {
    var ch = chars.get(id);
    if (!ch) {
      // alarmsBeyond: open alarms we know of but do not hold (the bridge's retained list
      // holds only its newest 1,000, with `open_count`; we keep at most MAX_ALARMS_PER_CHAR)
      ch = { id: id, meta: null, limits: null, last: null, alarms: new Map(), alarmsBeyond: 0,
             alarmsSynced: false, samples: [], cap: DEFAULT_HISTORY };
      chars.set(id, ch);
    }
    return ch;
  }

  function safeStorageGet(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }
  function safeStorageSet(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { /* private mode: ignore */ }
  }

  // ---- formatting ---------------------------------------------------------------------
  function isNum(v) { return typeof v === "number" && isFinite(v); }

  function decimalsFor(ch) {
    var l = ch && ch.limits;
    var scale = null;
    if (l && isNum(l.ucl) && isNum(l.center_line) && l.ucl > l.center_line) {
      scale = (l.ucl - l.center_line) / 3;
    } else if (ch && ch.meta && isNum(ch.meta.usl) && isNum(ch.meta.lsl) && ch.meta.usl > ch.meta.lsl) {
      scale = (ch.meta.usl - ch.meta.lsl) / 6;
    }
    // Enough digits to resolve about a fifth of a sigma, no more (10^-0.7 = 0.2).
    if (scale && scale > 0) return Math.max(0, Math.min(6, Math.ceil(-Math.log10(scale) + 0.7)));
    return 3;
  }

  function fmt(v, decimals) {
    return isNum(v) ? v.toFixed(decimals) : "\u2014";
  }

  function fmtTime(iso, withSeconds) {
    if (!iso) return "";
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    var time = d.toLocaleTimeString([], {
      hour: "2-digit", minute: "2-digit", second: withSeconds === false ? undefined : "2-digit",
      hourCycle: "h23",
    });
    var now = new Date();
    if (d.toDateString() === now.toDateString()) return time;
    return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
  }

  function chartNames(ch) {
    var kind = ch && ch.meta && ch.meta.chart;
    if (!CHART_NAMES[kind]) {
      var n = ch && ch.meta ? ch.meta.subgroup_size : 1;
      kind = n > 10 ? "xbar_s" : n > 1 ? "xbar_r" : "i_mr";
    }
    return CHART_NAMES[kind];
  }

  function charName(ch) {
    return ch.meta && ch.meta.name ? ch.meta.name : "Characteristic " + ch.id;
  }

  // ---- MQTT ---------------------------------------------------------------------------
  function randomId() {
    return Math.random().toString(36).slice(2, 10) + Date.now().toString(36).slice(-4);
  }

  function connect(credentials) {
    if (client) {
      var old = client;
      old.removeAllListeners();
      old.on("error", function () { /* the old connection is being dropped */ });
      old.end(true);
    }
    clientId = "openspc-hmi-" + randomId();
    replyTopic = PREFIX + "/hmi/reply/" + clientId;
    var options = {
      protocolVersion: 5,
      clientId: clientId,
      clean: true,
      keepalive: 30,
      reconnectPeriod: RECONNECT_MS,
      connectTimeout: 5000,
      resubscribe: false, // we subscribe on every connect, and receive the retained state again
    };
    if (credentials) {
      options.username = credentials.user;
      options.password = credentials.password;
    }
    setConnection("connecting");
    var c = mqtt.connect(BROKER_URL, options);
    client = c;
    c.on("connect", function () {
      if (credentials) {
        user = credentials.user;
        credentials.confirmed = true;
        showLogin();
      }
      setConnection("connected");
      subscribeAll();
    });
    c.on("reconnect", function () { setConnection("reconnecting"); });
    c.on("close", function () { if (connected) setConnection("disconnected"); });
    c.on("offline", function () { setConnection("disconnected"); });
    c.on("error", function (err) { onClientError(err, credentials); });
    c.on("message", onMessage);
  }

  function onClientError(err, credentials) {
    var code = err && err.code;
    var refused = code === 4 || code === 5 || code === 134 || code === 135;
    if (!refused) {
      console.warn("OpenSPC HMI: MQTT error:", err && err.message);
      return;
    }
    if (credentials && !credentials.confirmed) {
      // A failed login falls back to the anonymous (read-only) view.
      $("login-error").textContent = "Login refused for '" + credentials.user + "'";
      user = null;
      showLogin();
      connect(null);
    } else if (!credentials) {
      setConnection("refused");
      if (client) client.end(true);
    } else {
      // Our credentials were accepted before and are refused now (password changed).
      $("login-error").textContent = "Session refused for '" + credentials.user + "'";
      user = null;
      showLogin();
      connect(null);
    }
  }

  function subscribeAll() {
    chars.forEach(function (ch) { ch.alarmsSynced = false; }); // the retained lists come again
    var topics = {};
    ["meta", "limits", "sample", "alarms", "violation", "ack"].forEach(function (kind) {
      topics[PREFIX + "/char/+/" + kind] = { qos: 1 };
    });
    topics[PREFIX + "/bridge/status"] = { qos: 1 };
    topics[replyTopic] = { qos: 1 };
    if (selectedId !== null) topics[historyTopic(selectedId)] = { qos: 1 };
    client.subscribe(topics, function (err) {
      if (err) console.warn("OpenSPC HMI: subscribe failed:", err.message);
    });
  }

  function historyTopic(id) { return PREFIX + "/char/" + id + "/history"; }

  function setConnection(s) {
    connected = s === "connected";
    if (!connected) {
      bridge.known = false;
    }
    $("conn-status").dataset.state = s;
    dirty.status = true;
    dirty.alarms = true; // ack buttons depend on the connection
    schedule();
  }

  // ---- incoming messages ----------------------------------------------------------------
  var CHAR_TOPIC = /^char\/([^/]+)\/([a-z_]+)$/;

  function onMessage(topic, buf, packet) {
    if (topic.indexOf(PREFIX + "/") !== 0) return;
    var rest = topic.slice(PREFIX.length + 1);
    var text = decoder.decode(buf);
    if (topic === replyTopic) {
      onReply(text, packet && packet.properties);
      return;
    }
    if (rest === "bridge/status") {
      onBridgeStatus(text);
      return;
    }
    var m = CHAR_TOPIC.exec(rest);
    if (!m) return;
    var id = m[1];
    var kind = m[2];
    if (text.length === 0) {
      onCleared(id, kind);
      return;
    }
    var msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      console.warn("OpenSPC HMI: not JSON on " + topic);
      return;
    }
    if (!msg || typeof msg !== "object" || !msg.payload || typeof msg.payload !== "object") {
      console.warn("OpenSPC HMI: no {type, payload} envelope on " + topic);
      return;
    }
    var p = msg.payload;
    switch (msg.type) {
      case "meta": onMeta(id, p); break;
      case "control_limits": onLimits(id, p); break;
      case "sample": onSample(id, p); break;
      case "history": onHistory(id, p); break;
      case "alarms": onAlarms(id, p); break;
      case "violation": onViolation(id, p); break;
      case "ack_update": onAckUpdate(id, p); break;
      default: break; // types added later are ignored
    }
  }

  function onBridgeStatus(text) {
    var s = null;
    try { s = text ? JSON.parse(text) : null; } catch (e) { s = null; }
    if (s && typeof s.online === "boolean") {
      bridge = { known: true, online: s.online, timestamp: s.timestamp || null };
    } else {
      bridge = { known: false, online: false, timestamp: null };
    }
    dirty.status = true;
    schedule();
  }

  function onCleared(id, kind) {
    var ch = chars.get(id);
    if (!ch) return;
    if (kind === "meta") {
      chars.delete(id);
      if (selectedId === id) {
        selectChar(null, false);
        scheduleAutoSelect();
      }
      dirty.list = dirty.alarms = dirty.header = true;
    } else if (kind === "alarms") {
      ch.alarms.clear();
      dirty.alarms = dirty.list = true;
    } else if (kind === "limits") {
      ch.limits = null;
      dirty.charts = dirty.header = true;
    }
    schedule();
  }

  function onMeta(id, p) {
    var ch = charState(id);
    ch.meta = p;
    dirty.list = dirty.header = dirty.alarms = true;
    if (!userChoseChar && wantedChar === id && selectedId !== id) selectChar(id, false);
    else if (selectedId === null) scheduleAutoSelect();
    schedule();
  }

  // Until someone picks one: the characteristic asked for (?char= or the last one picked
  // here), else the lowest id. Decided once the burst of retained metas is in.
  var autoSelectTimer = null;
  function scheduleAutoSelect() {
    if (autoSelectTimer !== null) return;
    autoSelectTimer = window.setTimeout(function () {
      autoSelectTimer = null;
      if (selectedId !== null) return;
      var list = sortedChars();
      if (list.length) selectChar(list[0].id, false);
    }, 100);
  }

  function onLimits(id, p) {
    var ch = charState(id);
    ch.limits = p;
    if (id === selectedId) dirty.charts = dirty.header = true;
    schedule();
  }

  function onSample(id, p) {
    if (!isNum(p.sample_id)) return;
    var ch = charState(id);
    if (compareSample(p, ch.last) !== 0) ch.last = p;
    // Every characteristic keeps its points (at most the history size), not only the one on
    // screen: the retained history is published at most once a second, so a pick must not
    // rely on it alone for the latest points.
    appendSample(ch, p);
    dirty.list = true;
    if (id === selectedId) dirty.charts = dirty.header = true;
    schedule();
  }

  // 1: p is newer than last; 0: the same or older (a retained copy, or in the history);
  // -1: newer, but its id is lower: the bridge started on a new database, start again.
  function compareSample(p, last) {
    if (!last || p.sample_id > last.sample_id) return 1;
    if (p.sample_id < last.sample_id && Date.parse(p.timestamp) > Date.parse(last.timestamp)) {
      return -1;
    }
    return 0;
  }

  function appendSample(ch, p) {
    var arr = ch.samples;
    var order = compareSample(p, arr[arr.length - 1]);
    if (order === 0) return;
    if (order === -1) arr.length = 0;
    arr.push(p);
    if (arr.length > ch.cap) arr.splice(0, arr.length - ch.cap);
  }

  function onHistory(id, p) {
    if (id !== selectedId) return;
    var ch = charState(id);
    var samples = Array.isArray(p.samples) ? p.samples.filter(function (s) {
      return s && isNum(s.sample_id);
    }) : [];
    ch.cap = Math.max(ch.cap, samples.length);
    var lastId = samples.length ? samples[samples.length - 1].sample_id : -Infinity;
    var newer = ch.samples.filter(function (s) { return s.sample_id > lastId; });
    ch.samples = samples.concat(newer);
    if (ch.samples.length > ch.cap) ch.samples.splice(0, ch.samples.length - ch.cap);
    var newest = ch.samples[ch.samples.length - 1];
    if (newest && compareSample(newest, ch.last) !== 0) ch.last = newest;
    // The retained history is only needed once per (re)connection: from here on the samples
    // keep the chart current, and the bridge's history updates (once a second) are not needed.
    if (client && connected) client.unsubscribe(historyTopic(id));
    dirty.charts = dirty.header = dirty.list = true;
    schedule();
  }

  function addAlarm(ch, v) {
    if (!isNum(v.violation_id) || acked.has(v.violation_id)) return;
    if (ch.alarms.has(v.violation_id)) return;
    ch.alarms.set(v.violation_id, v);
    if (ch.alarms.size > MAX_ALARMS_PER_CHAR) {
      ch.alarms.delete(ch.alarms.keys().next().value);
      ch.alarmsBeyond += 1;
    }
  }

  function openCount(ch) { return ch.alarms.size + ch.alarmsBeyond; }

  function onAlarms(id, p) {
    var ch = charState(id);
    var before = ch.alarms;
    if (ch.alarmsSynced) { // an update while we watch: what it adds was raised just now
      (Array.isArray(p.violations) ? p.violations : []).forEach(function (v) {
        if (v && isNum(v.violation_id) && !before.has(v.violation_id)) {
          freshAlarms.add(v.violation_id);
        }
      });
    }
    ch.alarmsSynced = true;
    ch.alarms = new Map();
    ch.alarmsBeyond = 0;
    (Array.isArray(p.violations) ? p.violations : []).forEach(function (v) {
      if (v) addAlarm(ch, v);
    });
    if (isNum(p.open_count)) ch.alarmsBeyond = Math.max(0, p.open_count - ch.alarms.size);
    dirty.alarms = dirty.list = true;
    schedule();
  }

  function onViolation(id, p) {
    if (isNum(p.violation_id) && !acked.has(p.violation_id)) freshAlarms.add(p.violation_id);
    addAlarm(charState(id), p);
    dirty.alarms = dirty.list = true;
    schedule();
  }

  function onAckUpdate(id, p) {
    if (!isNum(p.violation_id) || p.acknowledged === false) return;
    if (acked.has(p.violation_id)) return; // already handled (our reply, then the broadcast)
    acked.add(p.violation_id);
    if (acked.size > MAX_ACKED_MEMORY) acked.delete(acked.values().next().value);
    var held = false;
    chars.forEach(function (ch) { held = ch.alarms.delete(p.violation_id) || held; });
    var owner = chars.get(String(id !== null ? id : p.characteristic_id));
    if (!held && owner && owner.alarmsBeyond > 0) owner.alarmsBeyond -= 1; // one we did not hold
    dirty.alarms = dirty.list = true;
    schedule();
  }

  // ---- commands (MQTT 5 request/reply) ------------------------------------------------
  // Publish `payload` to `topic` with our response topic and a fresh correlation; `done(error)`
  // is called once: with null on {"ok": true}, else with the bridge's or the broker's reason.
  function request(topic, payload, done) {
    var correlation = "req-" + randomId();
    var entry = { done: done, timer: null };
    pendingRequests.set(correlation, entry);
    entry.timer = window.setTimeout(function () {
      finishRequest(correlation, "no reply from the bridge within " + ACK_TIMEOUT_MS / 1000 + " s");
    }, ACK_TIMEOUT_MS);
    client.publish(topic, JSON.stringify(payload), {
      qos: 1,
      properties: {
        responseTopic: replyTopic,
        correlationData: correlation,
        contentType: "application/json",
      },
    }, function (err) {
      if (err) finishRequest(correlation, err.message || String(err));
    });
  }

  function onReply(text, props) {
    var cd = props && props.correlationData;
    var correlation = cd == null ? "" : typeof cd === "string" ? cd : decoder.decode(cd);
    if (!pendingRequests.has(correlation)) return;
    var reply = null;
    try { reply = JSON.parse(text); } catch (e) { reply = null; }
    if (reply && reply.ok === true) {
      finishRequest(correlation, null);
    } else {
      finishRequest(correlation, (reply && reply.error) || "the bridge refused the command");
    }
  }

  function finishRequest(correlation, error) {
    var entry = pendingRequests.get(correlation);
    if (!entry) return;
    pendingRequests.delete(correlation);
    window.clearTimeout(entry.timer);
    entry.done(error);
  }

  function acknowledge(violationId, reason, exclude) {
    if (!user || !connected) return;
    setRowBusy(violationId, true);
    var payload = { violation_id: violationId, reason: reason, exclude_sample: !!exclude };
    request(PREFIX + "/cmd/ack/" + user, payload, function (error) {
      setRowBusy(violationId, false);
      var box = $("ack-error");
      if (error) {
        box.textContent = "Acknowledge of alarm #" + violationId + " failed: " + error;
        box.hidden = false;
      } else {
        box.textContent = "";
        box.hidden = true;
        onAckUpdate(null, { violation_id: violationId, acknowledged: true });
      }
    });
  }

  // Recalculating limits is an engineer's command: two clicks (the first arms the button for
  // 5 s), and the broker's ACL decides who may; its or the bridge's answer is shown beside it.
  var recalcArmed = null;

  function disarmRecalc() {
    if (recalcArmed) window.clearTimeout(recalcArmed);
    recalcArmed = null;
    $("recalc").textContent = "Recalculate limits";
    $("recalc").classList.remove("armed");
  }

  function setRecalcStatus(text, bad) {
    var el = $("recalc-status");
    el.textContent = text;
    el.className = "recalc-status" + (bad ? " bad" : "");
    el.dataset.state = bad ? "error" : text ? "ok" : "";
    el.title = text;
    el.parentNode.parentNode.classList.toggle("has-status", !!text);
  }

  $("recalc").addEventListener("click", function () {
    if (!user || !connected || selectedId === null) return;
    if (!recalcArmed) {
      $("recalc").textContent = "Click again to recalculate";
      $("recalc").classList.add("armed");
      recalcArmed = window.setTimeout(disarmRecalc, 5000);
      return;
    }
    disarmRecalc();
    var id = selectedId;
    setRecalcStatus("sending\u2026", false);
    request(PREFIX + "/cmd/char/" + id + "/recalculate", {}, function (error) {
      if (error) setRecalcStatus("Recalculate failed: " + error, true);
      else {
        setRecalcStatus("Limits recalculated", false);
        window.setTimeout(function () {
          if ($("recalc-status").textContent === "Limits recalculated") setRecalcStatus("", false);
        }, 10000);
      }
    });
  });

  function setRowBusy(violationId, busy) {
    var row = alarmRows.get(violationId);
    if (!row) return;
    row.dataset.busy = busy ? "true" : "false";
    var btn = row.querySelector(".ack-button");
    btn.textContent = busy ? "Sending\u2026" : "Acknowledge";
    updateAckButton(row);
  }

  // ---- selection ----------------------------------------------------------------------
  function selectChar(id, byUser) {
    if (byUser) userChoseChar = true;
    if (id === selectedId) return;
    disarmRecalc();
    setRecalcStatus("", false);
    var old = selectedId;
    selectedId = id;
    if (client && connected) {
      if (old !== null) client.unsubscribe(historyTopic(old));
      if (id !== null) client.subscribe(historyTopic(id), { qos: 1 });
    }
    if (id !== null) {
      if (byUser) {
        safeStorageSet("openspc-hmi-char", id);
        var url = new URL(window.location.href);
        url.searchParams.set("char", id);
        window.history.replaceState(null, "", url.toString());
      }
    }
    dirty.list = dirty.charts = dirty.header = dirty.alarms = true;
    schedule();
  }

  // ---- rendering ----------------------------------------------------------------------
  function schedule() {
    if (renderScheduled) return;
    renderScheduled = true;
    if (document.hidden) window.setTimeout(flush, 250);
    else window.requestAnimationFrame(flush);
  }

  function flush() {
    renderScheduled = false;
    if (dirty.status) { dirty.status = false; renderStatus(); }
    if (dirty.list) { dirty.list = false; renderCharList(); }
    if (dirty.header) { dirty.header = false; renderHeader(); }
    if (dirty.charts) { dirty.charts = false; renderCharts(); }
    if (dirty.alarms) { dirty.alarms = false; renderAlarms(); }
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) schedule();
  });

  function setPill(el, text, cls) {
    el.textContent = text;
    el.className = "pill " + cls;
  }

  function renderStatus() {
    var s = $("conn-status").dataset.state;
    var labels = {
      connected: ["BROKER: CONNECTED", "pill-good"],
      connecting: ["BROKER: CONNECTING", "pill-unknown"],
      reconnecting: ["BROKER: RECONNECTING", "pill-bad"],
      disconnected: ["BROKER: DISCONNECTED", "pill-bad"],
      refused: ["BROKER: LOGIN REQUIRED", "pill-bad"],
    };
    var l = labels[s] || labels.connecting;
    setPill($("conn-status"), l[0], l[1]);
    $("conn-status").title = BROKER_URL + " (prefix " + PREFIX + ")";
    var b = $("bridge-status");
    if (!connected || !bridge.known) {
      b.dataset.state = "unknown";
      setPill(b, "BRIDGE: UNKNOWN", "pill-unknown");
      b.title = connected ? "no status published yet" : "not connected to the broker";
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
    var banner = $("stale-banner");
    var stale = "";
    if (!connected && s !== "connecting") {
      stale = "NO CONNECTION TO THE BROKER \u2013 values shown may be out of date";
    } else if (bridge.known && !bridge.online) {
      stale = "BRIDGE OFFLINE" + (bridge.timestamp ? " since " + fmtTime(bridge.timestamp) : "") +
        " \u2013 no new samples";
    }
    banner.textContent = stale;
    banner.hidden = !stale;
    document.body.classList.toggle("stale", !!stale);
  }

  function sortedChars() {
    return Array.from(chars.values()).filter(function (c) { return c.meta; }).sort(function (a, b) {
      var na = Number(a.id), nb = Number(b.id);
      if (isFinite(na) && isFinite(nb) && na !== nb) return na - nb;
      return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    });
  }

  function sampleState(s) {
    if (!s) return "no_data";
    if (s.in_control === true) return "in_control";
    if (s.in_control === false) return "out_of_control";
    return "no_limits";
  }

  // Rows are kept per characteristic and updated in place (never rebuilt on each sample), so a
  // click or the keyboard focus is never lost to a redraw.
  var charRows = new Map(); // id -> {li, name, info, badge}

  function makeCharRow(id) {
    var li = document.createElement("li");
    li.setAttribute("data-testid", "char-item");
    li.dataset.charId = id;
    li.tabIndex = 0;
    var dot = document.createElement("span");
    dot.className = "char-dot";
    var text = document.createElement("div");
    text.className = "char-text";
    var name = document.createElement("div");
    name.className = "char-name";
    var info = document.createElement("div");
    info.className = "char-info";
    var badge = document.createElement("span");
    badge.className = "char-badge";
    badge.setAttribute("data-testid", "char-alarm-count");
    text.appendChild(name);
    text.appendChild(info);
    li.appendChild(dot);
    li.appendChild(text);
    li.appendChild(badge);
    return { li: li, name: name, info: info, badge: badge };
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function renderCharList() {
    var list = $("char-list");
    var items = sortedChars();
    $("char-empty").hidden = items.length > 0;
    var keep = new Set();
    items.forEach(function (ch, i) {
      keep.add(ch.id);
      var row = charRows.get(ch.id);
      if (!row) {
        row = makeCharRow(ch.id);
        charRows.set(ch.id, row);
      }
      var cls = "char-item" + (ch.id === selectedId ? " selected" : "");
      if (row.li.className !== cls) row.li.className = cls;
      row.li.dataset.state = sampleState(ch.last);
      setText(row.name, charName(ch));
      var bits = [];
      if (ch.last) bits.push(fmt(ch.last.value, decimalsFor(ch)) + (ch.meta.unit ? " " + ch.meta.unit : ""));
      else if (ch.meta.unit) bits.push(ch.meta.unit);
      if (ch.meta.online === false) bits.push("SOURCE OFFLINE");
      setText(row.info, bits.join(" \u00b7 "));
      var open = openCount(ch);
      row.badge.hidden = open === 0;
      setText(row.badge, String(open));
      row.badge.title = open + " open alarm(s)";
      if (list.children[i] !== row.li) list.insertBefore(row.li, list.children[i] || null);
    });
    charRows.forEach(function (row, id) {
      if (!keep.has(id)) {
        row.li.remove();
        charRows.delete(id);
      }
    });
  }

  $("char-list").addEventListener("click", function (ev) {
    var li = ev.target.closest(".char-item");
    if (li) selectChar(li.dataset.charId, true);
  });
  $("char-list").addEventListener("keydown", function (ev) {
    var li = ev.target.closest(".char-item");
    if (li && (ev.key === "Enter" || ev.key === " ")) {
      ev.preventDefault();
      selectChar(li.dataset.charId, true);
    }
  });

  function renderHeader() {
    var ch = selectedId !== null ? chars.get(selectedId) : null;
    var names = chartNames(ch);
    $("x-title").textContent = names[0] + " chart";
    $("r-title").textContent = names[1] + " chart";
    $("value-label").textContent = "Last " + names[3];
    if (!ch) {
      $("char-title").textContent = "No characteristic";
      $("char-subtitle").textContent = "";
      document.title = "OpenSPC HMI";
      ["last-value", "kpi-ucl", "kpi-cl", "kpi-lcl", "kpi-usl", "kpi-lsl", "kpi-target", "kpi-cpk"]
        .forEach(function (k) { $(k).textContent = "\u2014"; });
      $("last-unit").textContent = "";
      $("last-time").textContent = "\u00a0";
      $("last-rules").textContent = "\u00a0";
      $("kpi-cp").textContent = "";
      setState("unknown", "NO DATA");
      return;
    }
    var meta = ch.meta || {};
    var d = decimalsFor(ch);
    $("char-title").textContent = charName(ch);
    document.title = charName(ch) + " \u2013 OpenSPC HMI";
    var sub = ["#" + ch.id];
    if (isNum(meta.subgroup_size)) sub.push("n = " + meta.subgroup_size);
    sub.push(names[3] + "/" + names[2] + " chart");
    if (meta.online === false) sub.push("SOURCE OFFLINE");
    $("char-subtitle").textContent = sub.join(" \u00b7 ");
    var s = ch.last;
    $("last-value").textContent = s ? fmt(s.value, d) : "\u2014";
    $("last-unit").textContent = meta.unit || "";
    $("last-time").textContent = s
      ? fmtTime(s.timestamp) + age(s.timestamp) + " \u00b7 sample #" + s.sample_id : "\u00a0";
    var st = sampleState(s);
    if (st === "in_control") setState("in_control", "IN CONTROL");
    else if (st === "out_of_control") setState("out_of_control", "OUT OF CONTROL");
    else if (st === "no_limits") setState("no_limits", ch.limits ? "NOT JUDGED" : "BASELINE");
    else setState("unknown", "NO DATA");
    var rules = [];
    if (s && Array.isArray(s.failed_rules) && s.failed_rules.length) {
      rules.push(names[3] + " rule " + s.failed_rules.join(", "));
    }
    if (s && Array.isArray(s.range_failed_rules) && s.range_failed_rules.length) {
      rules.push(names[2] + " rule " + s.range_failed_rules.join(", "));
    }
    var note = rules.length ? "Failed: " + rules.join("; ")
      : s && s.zone ? ZONE_NAMES[s.zone] || s.zone
      : s && !ch.limits && isNum(meta.baseline)
        ? "limits after " + Math.min(ch.samples.length, meta.baseline) + " of " + meta.baseline +
          " subgroups"
      : "\u00a0";
    $("last-rules").textContent = note;
    var l = ch.limits || {};
    $("kpi-ucl").textContent = fmt(l.ucl, d);
    $("kpi-cl").textContent = fmt(l.center_line, d);
    $("kpi-lcl").textContent = fmt(l.lcl, d);
    $("kpi-usl").textContent = fmt(meta.usl, d);
    $("kpi-lsl").textContent = fmt(meta.lsl, d);
    $("kpi-target").textContent = fmt(meta.target, d);
    var cap = l.capability || {};
    $("kpi-cpk").textContent = fmt(cap.cpk, 2);
    var cpk = $("kpi-cpk");
    cpk.className = isNum(cap.cpk) ? (cap.cpk < 1 ? "cap-bad" : cap.cpk < 1.33 ? "cap-warn" : "cap-good") : "";
    $("kpi-cp").textContent = isNum(cap.cp) || isNum(cap.ppk)
      ? "\u00b7 Cp " + fmt(cap.cp, 2) + " \u00b7 Ppk " + fmt(cap.ppk, 2) : "";
  }

  // "(12 min ago)" once the last sample is a minute old: a stopped line is visible at a glance.
  function age(iso) {
    var seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (!(seconds >= 60)) return "";
    if (seconds < 3600) return " (" + Math.floor(seconds / 60) + " min ago)";
    if (seconds < 172800) return " (" + Math.floor(seconds / 3600) + " h ago)";
    return " (" + Math.floor(seconds / 86400) + " days ago)";
  }

  window.setInterval(function () {
    dirty.header = true;
    schedule();
  }, 15000);

  function setState(state, text) {
    var el = $("process-state");
    el.dataset.state = state;
    el.textContent = text;
    el.className = "state " + (state === "in_control" ? "state-good"
      : state === "out_of_control" ? "state-bad" : "state-unknown");
  }

  // ---- charts -------------------------------------------------------------------------
  var charts = { x: null, r: null };

  function chartView(kind) {
    var ch = selectedId !== null ? chars.get(selectedId) : null;
    var samples = ch ? ch.samples : [];
    var l = ch && ch.limits;
    var view = { ch: ch, samples: samples, cl: null, ucl: null, lcl: null, zone: null };
    if (kind === "x") {
      if (l) {
        view.cl = l.center_line; view.ucl = l.ucl; view.lcl = l.lcl;
        var n = ch.meta && isNum(ch.meta.subgroup_size) ? ch.meta.subgroup_size : 1;
        if (isNum(l.sigma) && l.sigma > 0) view.zone = l.sigma / Math.sqrt(n);
        else if (isNum(l.ucl) && isNum(l.lcl)) view.zone = (l.ucl - l.lcl) / 6;
      }
    } else if (l && l.range) {
      view.cl = l.range.center_line; view.ucl = l.range.ucl; view.lcl = l.range.lcl;
    }
    return view;
  }

  function yValue(kind, s) {
    var v = kind === "x" ? s.value : s.range;
    return isNum(v) ? v : null;
  }

  function failedRules(kind, s) {
    var r = kind === "x" ? s.failed_rules : s.range_failed_rules;
    return Array.isArray(r) ? r : [];
  }

  // Everything on the charts scales with the page's root font size, which grows on big
  // screens (style.css): a wall-mounted 1080p or 4K panel stays readable from a distance.
  var scale = 1;
  function currentScale() {
    return (parseFloat(window.getComputedStyle(document.documentElement).fontSize) || 16) / 16;
  }

  function makeChart(kind) {
    var el = $(kind === "x" ? "x-chart" : "r-chart");
    var font = Math.round(13 * scale) + "px DejaVu Sans, Arial, sans-serif";
    var opts = {
      width: Math.max(200, el.clientWidth),
      height: Math.max(100, el.clientHeight),
      legend: { show: false },
      // room above for rule numbers, right for the limit labels
      padding: [Math.round(18 * scale), Math.round(96 * scale), 0, 0],
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      scales: {
        x: { time: false, range: function (u) {
          var n = chartView(kind).samples.length;
          return [-0.5, Math.max(n, 25) - 0.5];
        } },
        y: { range: function (u, min, max) { return yRange(kind, min, max); } },
      },
      axes: [
        {
          stroke: COLORS.axis, font: font, size: Math.round(34 * scale),
          space: Math.round(90 * scale),
          grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.grid, width: 1 },
          incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000],
          values: function (u, splits) {
            var samples = chartView(kind).samples;
            var previous = null;
            var labelled = [];
            var labels = splits.map(function (i) {
              var s = samples[Math.round(i)];
              var label = s ? fmtTime(s.timestamp) : "";
              if (label === previous) return ""; // several samples in one second: label it once
              previous = label;
              if (s) labelled.push(s.sample_id);
              return label;
            });
            el.dataset.labelledSamples = labelled.join(" "); // which samples the axis names
            return labels;
          },
        },
        {
          stroke: COLORS.axis, font: font, size: Math.round(72 * scale),
          space: Math.round(36 * scale),
          grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.grid, width: 1 },
          values: function (u, splits) {
            var d = decimalsFor(chartView(kind).ch);
            return splits.map(function (v) { return v.toFixed(d); });
          },
        },
      ],
      series: [{}, {
        stroke: COLORS.line, width: 2 * scale, points: { show: false }, spanGaps: false,
      }],
      hooks: {
        drawClear: [function (u) { drawZones(u, kind); }],
        drawAxes: [function (u) { drawLimits(u, kind); }],
        draw: [function (u) { drawPoints(u, kind); }],
      },
    };
    var u = new uPlot(opts, [[], []], el);
    var observer = null;
    if (window.ResizeObserver) {
      observer = new ResizeObserver(function () {
        var w = Math.max(200, el.clientWidth), h = Math.max(100, el.clientHeight);
        if (w !== u.width || h !== u.height) u.setSize({ width: w, height: h });
      });
      observer.observe(el);
    }
    return { u: u, observer: observer };
  }

  function dropChart(kind) {
    if (!charts[kind]) return;
    if (charts[kind].observer) charts[kind].observer.disconnect();
    charts[kind].u.destroy();
    charts[kind] = null;
  }

  window.addEventListener("resize", function () {
    if (currentScale() !== scale) {
      dirty.charts = true;
      schedule();
    }
  });

  function yRange(kind, min, max) {
    var v = chartView(kind);
    var lo = min, hi = max;
    [v.ucl, v.lcl, v.cl].forEach(function (x) {
      if (isNum(x)) {
        lo = lo == null || !isFinite(lo) ? x : Math.min(lo, x);
        hi = hi == null || !isFinite(hi) ? x : Math.max(hi, x);
      }
    });
    if (lo == null || hi == null || !isFinite(lo) || !isFinite(hi)) return [0, 1];
    var span = hi - lo;
    if (span <= 0) span = Math.abs(hi) * 0.02 || 1;
    return [lo - span * 0.12, hi + span * 0.12];
  }

  function clipToPlot(u, ctx) {
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
  }

  function drawZones(u, kind) {
    var v = chartView(kind);
    if (kind !== "x" || !isNum(v.cl) || !isNum(v.zone) || v.zone <= 0) return;
    var ctx = u.ctx;
    clipToPlot(u, ctx);
    var left = u.bbox.left, width = u.bbox.width;
    var y = function (val) { return u.valToPos(val, "y", true); };
    // Zone B (1..2 sigma) lighter, zone A (2..3 sigma) darker, both sides of the centre line.
    [[1, 2, COLORS.zone1], [2, 3, COLORS.zone2]].forEach(function (z) {
      ctx.fillStyle = z[2];
      var a = y(v.cl + z[0] * v.zone), b = y(v.cl + z[1] * v.zone);
      ctx.fillRect(left, b, width, a - b);
      a = y(v.cl - z[0] * v.zone); b = y(v.cl - z[1] * v.zone);
      ctx.fillRect(left, a, width, b - a);
    });
    ctx.restore();
  }

  function drawLimits(u, kind) {
    var v = chartView(kind);
    var ctx = u.ctx;
    var px = uPlot.pxRatio * scale;
    var d = decimalsFor(v.ch);
    var lines = [
      ["UCL", v.ucl, COLORS.limit, [8 * px, 5 * px]],
      ["CL", v.cl, COLORS.cl, []],
      ["LCL", v.lcl, COLORS.limit, [8 * px, 5 * px]],
    ];
    ctx.save();
    ctx.font = "bold " + Math.round(12 * px) + "px DejaVu Sans, Arial, sans-serif";
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    var labelled = [];
    lines.forEach(function (line) {
      if (!isNum(line[1])) return;
      var y = Math.round(u.valToPos(line[1], "y", true)) + 0.5;
      if (y < u.bbox.top - 1 || y > u.bbox.top + u.bbox.height + 1) return;
      ctx.strokeStyle = line[2];
      ctx.lineWidth = 2 * px;
      ctx.setLineDash(line[3]);
      ctx.beginPath();
      ctx.moveTo(u.bbox.left, y);
      ctx.lineTo(u.bbox.left + u.bbox.width, y);
      ctx.stroke();
      ctx.setLineDash([]);
      // Labels in the right margin, nudged apart when the lines are close together.
      var ly = y;
      labelled.forEach(function (other) {
        if (Math.abs(ly - other) < 13 * px) ly = other + (line[0] === "LCL" ? 13 : -13) * px;
      });
      labelled.push(ly);
      ctx.fillStyle = line[2];
      ctx.fillText(line[0] + " " + line[1].toFixed(d), u.bbox.left + u.bbox.width + 6 * px, ly);
    });
    ctx.restore();
  }

  function drawPoints(u, kind) {
    var v = chartView(kind);
    var ctx = u.ctx;
    var px = uPlot.pxRatio * scale;
    var marks = [];
    ctx.save();
    ctx.beginPath(); // the plot, plus the top margin where rule numbers go
    ctx.rect(u.bbox.left - 8 * px, 0, u.bbox.width + 16 * px, u.bbox.top + u.bbox.height);
    ctx.clip();
    ctx.font = "bold " + Math.round(13 * px) + "px DejaVu Sans, Arial, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    var drawn = 0;
    var labels = []; // boxes of the rule labels drawn so far
    v.samples.forEach(function (s, i) {
      var val = yValue(kind, s);
      if (val === null) return;
      drawn += 1;
      var x = u.valToPos(i, "x", true), y = u.valToPos(val, "y", true);
      var rules = failedRules(kind, s);
      ctx.beginPath();
      if (rules.length) {
        ctx.arc(x, y, 6 * px, 0, 2 * Math.PI);
        ctx.fillStyle = COLORS.bad;
        ctx.fill();
        ctx.lineWidth = 1.5 * px;
        ctx.strokeStyle = "#ffffff";
        ctx.stroke();
        // The rule numbers above the point, unless they would overprint the previous label.
        var label = rules.join(",");
        var half = ctx.measureText(label).width / 2;
        var lx = Math.min(Math.max(x, u.bbox.left + half), u.bbox.left + u.bbox.width - half);
        var ly = y - 8 * px;
        var box = { left: lx - half - 2 * px, right: lx + half + 2 * px, top: ly - 14 * px, bottom: ly };
        var free = labels.every(function (b) {
          return b.right < box.left || b.left > box.right || b.bottom < box.top || b.top > box.bottom;
        });
        if (free) {
          ctx.fillStyle = COLORS.text;
          ctx.fillText(label, lx, ly);
          labels.push(box);
          if (labels.length > 12) labels.shift(); // only recent labels can be near
        }
        marks.push(s.sample_id + ":" + label);
      } else {
        ctx.arc(x, y, 3.5 * px, 0, 2 * Math.PI);
        ctx.fillStyle = COLORS.point;
        ctx.fill();
      }
    });
    ctx.restore();
    // What was drawn, for tests and for anyone inspecting the page.
    var el = u.root.parentNode;
    el.dataset.points = String(drawn);
    el.dataset.failedPoints = String(marks.length);
    el.dataset.marks = marks.join(" ");
    var last = v.samples[v.samples.length - 1];
    el.dataset.lastSampleId = last ? String(last.sample_id) : "";
  }

  function renderCharts() {
    var now = currentScale();
    if (now !== scale) { // a breakpoint was crossed: rebuild the charts with the new sizes
      scale = now;
      dropChart("x");
      dropChart("r");
    }
    if (!charts.x) charts.x = makeChart("x");
    if (!charts.r) charts.r = makeChart("r");
    ["x", "r"].forEach(function (kind) {
      var v = chartView(kind);
      var xs = new Array(v.samples.length), ys = new Array(v.samples.length);
      for (var i = 0; i < v.samples.length; i++) {
        xs[i] = i;
        ys[i] = yValue(kind, v.samples[i]);
      }
      var u = charts[kind].u;
      // The x range stays [0, 100) once the chart is full, and uPlot recomputes axis labels
      // only when a range changes: ask for them explicitly, in the same single redraw.
      u.batch(function () {
        u.setData([xs, ys]);
        u.redraw(false, true);
      });
    });
  }

  // ---- alarms -------------------------------------------------------------------------
  var alarmRows = new Map(); // violation_id -> <li>

  function openAlarms() {
    var all = [];
    chars.forEach(function (ch) { ch.alarms.forEach(function (v) { all.push(v); }); });
    all.sort(function (a, b) {
      var ta = Date.parse(a.timestamp) || 0, tb = Date.parse(b.timestamp) || 0;
      return tb - ta || b.violation_id - a.violation_id;
    });
    return all;
  }

  function reasonsFor(charId) {
    var ch = chars.get(String(charId));
    var r = ch && ch.meta && Array.isArray(ch.meta.reason_codes) ? ch.meta.reason_codes : null;
    return r && r.length ? r : DEFAULT_REASONS;
  }

  function makeAlarmRow(v) {
    var li = document.createElement("li");
    li.setAttribute("data-testid", "alarm-row");
    li.dataset.violationId = String(v.violation_id);
    li.dataset.characteristicId = String(v.characteristic_id);
    li.dataset.busy = "false";
    var sev = v.severity === "CRITICAL" ? "CRITICAL" : "WARNING";
    li.className = "alarm sev-" + sev;
    var top = document.createElement("div");
    top.className = "alarm-top";
    var badge = document.createElement("span");
    badge.className = "sev";
    badge.textContent = sev;
    var time = document.createElement("span");
    time.className = "alarm-time";
    time.setAttribute("data-testid", "alarm-time");
    time.textContent = fmtTime(v.timestamp);
    top.appendChild(badge);
    top.appendChild(time);
    var rule = document.createElement("div");
    rule.className = "alarm-rule";
    rule.setAttribute("data-testid", "alarm-rule");
    rule.textContent = "Rule " + v.rule_id + ": " + (v.rule_name || "");
    var meta = document.createElement("div");
    meta.className = "alarm-meta";
    meta.setAttribute("data-testid", "alarm-meta");
    var actions = document.createElement("div");
    actions.className = "alarm-actions";
    var select = document.createElement("select");
    select.className = "ack-reason";
    select.setAttribute("data-testid", "ack-reason");
    select.setAttribute("aria-label", "reason");
    reasonsFor(v.characteristic_id).forEach(function (r) {
      var o = document.createElement("option");
      o.value = r;
      o.textContent = r;
      select.appendChild(o);
    });
    var label = document.createElement("label");
    var exclude = document.createElement("input");
    exclude.type = "checkbox";
    exclude.className = "ack-exclude";
    exclude.setAttribute("data-testid", "ack-exclude");
    label.appendChild(exclude);
    label.appendChild(document.createTextNode(" exclude"));
    label.title = "exclude the sample from future limit calculations";
    var btn = document.createElement("button");
    btn.type = "button";
    btn.className = "ack-button";
    btn.setAttribute("data-testid", "ack-button");
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

  function updateAlarmRow(li, v) {
    var ch = chars.get(String(v.characteristic_id));
    var names = chartNames(ch);
    var chartName = v.chart === "range" ? names[2] : names[3];
    li.querySelector(".alarm-meta").textContent =
      (ch ? charName(ch) : "Characteristic " + v.characteristic_id) + " \u00b7 " + chartName +
      " chart \u00b7 sample #" + v.sample_id;
    li.classList.toggle("current", String(v.characteristic_id) === selectedId);
    updateAckButton(li);
  }

  function updateAckButton(li) {
    var btn = li.querySelector(".ack-button");
    btn.disabled = !user || !connected || li.dataset.busy === "true";
    btn.title = !user ? "log in to acknowledge" : !connected ? "not connected" : "";
  }

  function renderAlarms() {
    var list = $("alarm-list");
    var all = openAlarms();
    var total = all.length;
    chars.forEach(function (ch) { total += ch.alarmsBeyond; });
    var shown = all.slice(0, MAX_ALARM_ROWS);
    var keep = new Set();
    shown.forEach(function (v, i) {
      keep.add(v.violation_id);
      var li = alarmRows.get(v.violation_id);
      if (!li) {
        li = makeAlarmRow(v);
        // An alarm raised while we watch (a `violation`) pulses a few times; the ones that
        // were already open (the retained `alarms`) do not.
        if (freshAlarms.has(v.violation_id)) li.classList.add("new");
        alarmRows.set(v.violation_id, li);
      }
      updateAlarmRow(li, v);
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    });
    freshAlarms.clear();
    alarmRows.forEach(function (li, id) {
      if (!keep.has(id)) {
        li.remove();
        alarmRows.delete(id);
      }
    });
    var more = $("alarm-more");
    if (total > shown.length) {
      if (!more) {
        more = document.createElement("p");
        more.id = "alarm-more";
        more.setAttribute("data-testid", "alarm-more");
        more.className = "alarm-more";
        list.after(more);
      }
      more.textContent = "+ " + (total - shown.length) + " older open alarm(s)";
    } else if (more) {
      more.remove();
    }
    var count = $("alarm-count");
    count.textContent = String(total);
    count.classList.toggle("nonzero", total > 0);
    $("alarm-empty").hidden = total > 0;
    $("ack-hint").textContent = user ? "Acknowledging as " + user + "." : "Log in to acknowledge.";
  }

  $("ack-error").addEventListener("click", function () {
    $("ack-error").hidden = true;
  });

  $("alarm-list").addEventListener("click", function (ev) {
    var btn = ev.target.closest(".ack-button");
    if (!btn || btn.disabled) return;
    var li = btn.closest(".alarm");
    acknowledge(Number(li.dataset.violationId), li.querySelector(".ack-reason").value,
      li.querySelector(".ack-exclude").checked);
  });

  // ---- login --------------------------------------------------------------------------
  function showLogin() {
    $("recalc").hidden = !user;
    if (!user) setRecalcStatus("", false);
    $("login-form").hidden = !!user;
    $("session").hidden = !user;
    $("current-user").textContent = user ? "\u25cf " + user : "";
    dirty.alarms = true;
    schedule();
  }

  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var name = $("login-user").value.trim();
    var password = $("login-password").value;
    $("login-error").textContent = "";
    if (!name) {
      $("login-error").textContent = "Enter a user name";
      return;
    }
    if (/[/+#\u0000]/.test(name)) {
      $("login-error").textContent = "A user name may not contain / + #";
      return;
    }
    $("login-password").value = "";
    user = null;
    showLogin();
    connect({ user: name, password: password, confirmed: false });
  });

  $("logout").addEventListener("click", function () {
    user = null;
    $("login-user").value = "";
    showLogin();
    connect(null);
  });

  // ---- start --------------------------------------------------------------------------
  showLogin();
  renderStatus();
  renderHeader();
  renderAlarms();
  if (typeof mqtt === "undefined" || typeof uPlot === "undefined") {
    setConnection("disconnected");
    $("login-error").textContent = "vendor scripts missing: run scripts/build-hmi";
    return;
  }
  renderCharts();
  connect(null);
})();
