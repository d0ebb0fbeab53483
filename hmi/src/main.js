// The OpenSPC HMI: a static page served by Mosquitto's http_dir that reads the bridge's
// topics (docs/topics.md) over MQTT 5 on the same websocket port and draws control charts
// (Shewhart, attribute, EWMA, CUSUM).
//
// This file wires the parts together: transport.js (the MQTT connection) feeds messages to
// state.js (pure: message -> view state), and render.js / charts.js draw what changed, at
// most once an animation frame. esbuild bundles it into one classic script,
// mosquitto/hmi/app.js (Mosquitto sends no Content-Type, so ES modules cannot be served);
// see docs/hmi.md.
import { createCharts } from "./charts.js";
import { capabilityText, drawHistogram } from "./histogram.js";
import * as render from "./render.js";
import { ackCommand, plainRefusal, queryCommand, refusalAction } from "./requests.js";
import * as model from "./state.js";
import { createTopics, userNameProblem } from "./topics.js";
import { createTransport } from "./transport.js";

const ACK_TIMEOUT_MS = 10000;
const RECONNECT_MS = 2000;
const AUTO_SELECT_MS = 100; // the burst of retained metas after a (re)connection
const RECALC_ARMED_MS = 5000;
const STORAGE_KEY = "openspc-hmi-char";
const MAX_OLDER = 3000; // older samples held on the charts at once (six pages of 500)

const $ = (id) => document.getElementById(id);

function storageGet(key) {
  try {
    return window.localStorage.getItem(key);
  } catch (e) {
    return null;
  }
}
function storageSet(key, value) {
  try {
    window.localStorage.setItem(key, value);
  } catch (e) {
    /* private mode: ignore */
  }
}

function readSettings(location) {
  const params = new URLSearchParams(location.search);
  return {
    prefix: (params.get("prefix") || "openspc").replace(/\/+$/, ""),
    brokerUrl: params.get("broker") || (location.protocol === "https:" ? "wss://" : "ws://") + location.host,
    wantedChar: params.get("char") || storageGet(STORAGE_KEY),
    view: params.get("view") === "overview" ? "overview" : "chart",
  };
}

function start() {
  const settings = readSettings(window.location);
  const topics = createTopics(settings.prefix);
  const state = model.createState();
  // What render.js draws from: the view state and this page's session.
  const session = {
    state,
    settings,
    user: null,
    connected: false,
    connection: "connecting",
    view: settings.view, // "chart" or "overview"
    histogram: false, // the histogram instead of the secondary chart
    older: null, // the older data on the charts: {charId, samples, next, from, busy}
    bulkChar: "", // the characteristic of the bulk bar (render.js renderBulk)
  };
  let userChoseChar = false;
  const dirty = new Set();
  let renderScheduled = false;
  let charts = null;

  // ---- redrawing, coalesced into one animation frame ------------------------------------
  const painters = [
    ["status", () => render.renderStatus(session)],
    [
      "list",
      () => {
        render.renderCharList(session);
        render.renderOverview(session);
      },
    ],
    ["header", () => render.renderHeader(session)],
    [
      "charts",
      () => {
        if (charts) charts.render();
        paintHistogram();
      },
    ],
    ["alarms", () => render.renderAlarms(session)],
    ["causes", () => render.renderCauses(session)],
    [
      "roles",
      () => {
        render.renderLogin(session);
        render.renderAlarms(session);
      },
    ],
  ];

  function flush() {
    renderScheduled = false;
    for (const [part, paint] of painters) {
      if (dirty.delete(part)) paint();
    }
  }

  function schedule(...parts) {
    for (const p of parts) dirty.add(p);
    if (renderScheduled) return;
    renderScheduled = true;
    if (document.hidden) window.setTimeout(flush, 250);
    else window.requestAnimationFrame(flush);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) schedule();
  });
  window.setInterval(() => schedule("header"), 15000); // "(12 min ago)" keeps counting

  // ---- the histogram, in the secondary chart's box -----------------------------------------
  function paintHistogram() {
    const on = session.histogram;
    $("r-chart").hidden = on;
    $("histogram").hidden = !on;
    $("hist-cap").hidden = !on;
    $("hist-toggle").setAttribute("aria-pressed", on ? "true" : "false");
    $("hist-toggle").textContent = on ? "Back to chart" : "Histogram";
    if (!on) return;
    const ch = state.selectedId !== null ? state.chars.get(state.selectedId) || null : null;
    const hist = drawHistogram($("histogram"), $("hist-canvas"), ch);
    $("hist-cap").textContent = hist ? capabilityText(hist.cap) + " \u00b7 " + hist.readings + " readings" : "";
  }
  $("hist-toggle").addEventListener("click", () => {
    session.histogram = !session.histogram;
    schedule("charts", "header");
  });
  if (window.ResizeObserver) new ResizeObserver(() => session.histogram && paintHistogram()).observe($("histogram"));

  // ---- the connection -------------------------------------------------------------------
  const transport = createTransport({
    mqtt: window.mqtt,
    brokerUrl: settings.brokerUrl,
    topics,
    reconnectMs: RECONNECT_MS,
    ackTimeoutMs: ACK_TIMEOUT_MS,
    on: {
      state: setConnection,
      connect(credentials) {
        if (credentials) {
          session.user = credentials.user;
          showLogin();
        }
        model.onResubscribe(state); // the retained lists come again
        transport.subscribe(topics.subscriptions(state.selectedId, transport.replyTopic, session.user));
        if (session.view === "overview") transport.subscribe(topics.allHistory);
      },
      error: onConnectionError,
      message: onMessage,
    },
  });

  function setConnection(s) {
    session.connection = s;
    session.connected = s === "connected";
    schedule("status", "alarms"); // ack buttons depend on the connection
  }

  function onConnectionError(err, credentials) {
    switch (refusalAction(err, credentials)) {
      case "ignore":
        console.warn("OpenSPC HMI: MQTT error:", err && err.message);
        return;
      case "login-refused": // a failed login falls back to the anonymous (read-only) view
        render.setLoginError("Login refused for '" + credentials.user + "'");
        loggedOut();
        return;
      case "session-refused": // accepted before, refused now (password changed)
        render.setLoginError("Session refused for '" + credentials.user + "'");
        loggedOut();
        return;
      default: // anonymous viewers refused: only a login can help
        setConnection("refused");
        transport.end();
    }
  }

  function onMessage(topic, text) {
    const t = topics.parse(topic);
    if (t === null) return;
    if (t.what === "status") {
      apply(model.onBridgeStatus(state, text));
      return;
    }
    if (t.what === "role") {
      apply(model.onRole(state, t.user, session.user, text));
      return;
    }
    apply(model.handleCharMessage(state, t.id, t.kind, text, topic));
  }

  // Act on what a state handler says changed.
  function apply(change) {
    if (change.warning) console.warn("OpenSPC HMI: " + change.warning);
    if (change.removed !== undefined && change.removed === state.selectedId) {
      selectChar(null, false);
      scheduleAutoSelect();
    }
    if (change.metaArrived !== undefined) {
      const action = model.selectionOnMeta(state, change.metaArrived, settings.wantedChar, userChoseChar);
      if (action === "select") selectChar(change.metaArrived, false);
      else if (action === "auto") scheduleAutoSelect();
    }
    if (change.historyLoaded !== undefined) {
      transport.unsubscribe(topics.history(change.historyLoaded));
      // the overview's sparklines have what they need: the live samples keep them current
      if (model.allHistoriesLoaded(state)) transport.unsubscribe(topics.allHistory);
    }
    schedule(...change.dirty);
  }

  // ---- which characteristic is on screen --------------------------------------------------
  // Until someone picks one: the one asked for (?char= or the last one picked here), else
  // the lowest id, decided once the burst of retained metas is in.
  let autoSelectTimer = null;
  function scheduleAutoSelect() {
    if (autoSelectTimer !== null) return;
    autoSelectTimer = window.setTimeout(() => {
      autoSelectTimer = null;
      if (state.selectedId !== null) return;
      const list = model.sortedChars(state);
      if (list.length) selectChar(list[0].id, false);
    }, AUTO_SELECT_MS);
  }

  function selectChar(id, byUser) {
    if (byUser) userChoseChar = true;
    if (id === state.selectedId) return;
    disarmRecalc();
    leaveOlder();
    render.setRecalcStatus("", false);
    const old = state.selectedId;
    state.selectedId = id;
    if (old !== null) transport.unsubscribe(topics.history(old));
    if (id !== null) transport.subscribe(topics.history(id));
    if (id !== null && byUser) {
      storageSet(STORAGE_KEY, id);
      const url = new URL(window.location.href);
      url.searchParams.set("char", id);
      window.history.replaceState(null, "", url.toString());
    }
    schedule("list", "charts", "header", "alarms", "causes");
  }

  // ---- overview: a tile per characteristic; a click opens its chart ------------------------
  function setView(view) {
    if (session.view === view) return;
    session.view = view;
    const url = new URL(window.location.href);
    if (view === "overview") url.searchParams.set("view", "overview");
    else url.searchParams.delete("view");
    window.history.replaceState(null, "", url.toString());
    if (view === "overview" && !model.allHistoriesLoaded(state)) transport.subscribe(topics.allHistory);
    if (view !== "overview") transport.unsubscribe(topics.allHistory);
    render.renderView(session);
    schedule("list", "charts");
  }

  $("overview-button").addEventListener("click", () => setView(session.view === "overview" ? "chart" : "overview"));
  function openTile(ev) {
    const tile = ev.target.closest(".tile");
    if (!tile) return;
    if (ev.type === "keydown") {
      if (ev.key !== "Enter" && ev.key !== " ") return;
      ev.preventDefault();
    }
    selectChar(tile.dataset.charId, true);
    setView("chart");
  }
  $("tile-list").addEventListener("click", openTile);
  $("tile-list").addEventListener("keydown", openTile);

  $("char-list").addEventListener("click", (ev) => {
    const li = ev.target.closest(".char-item");
    if (!li) return;
    selectChar(li.dataset.charId, true);
    setView("chart");
  });
  $("char-list").addEventListener("keydown", (ev) => {
    const li = ev.target.closest(".char-item");
    if (li && (ev.key === "Enter" || ev.key === " ")) {
      ev.preventDefault();
      selectChar(li.dataset.charId, true);
      setView("chart");
    }
  });

  // ---- acknowledging --------------------------------------------------------------------
  // One card is one sample's alarms, the bulk bar every open alarm of a characteristic: each
  // acknowledged in ONE command (all or nothing at the bridge), with one cause, an action and
  // a comment (requests.js ackCommand).
  function acknowledge(key, command, heldIds, what) {
    if (!session.user || !session.connected || !command) return;
    render.setCardBusy(key, true, session);
    transport.acknowledge(session.user, command, (error) => {
      render.setCardBusy(key, false, session);
      if (!error) {
        if (key === "bulk") $("bulk-ack").dataset.reset = "true";
        // the alarms leave at once; the bridge's ack_updates (one per alarm) say it to all
        for (const id of heldIds) apply(model.onAckUpdate(state, null, { violation_id: id, acknowledged: true }));
        render.showAckError("");
        return;
      }
      render.showAckError("Acknowledge of " + what + " failed: " + plainRefusal("ack", error));
    });
  }

  function alarmWords(ids) {
    return "alarm" + (ids.length > 1 ? "s " : " ") + ids.map((id) => "#" + id).join(", ");
  }

  $("ack-error").addEventListener("click", () => render.showAckError(""));
  $("alarm-list").addEventListener("click", (ev) => {
    const btn = ev.target.closest(".ack-button");
    if (!btn || btn.disabled) return;
    const li = btn.closest(".alarm");
    const ids = li.dataset.violationIds.split(" ").filter(Boolean).map(Number);
    const command = ackCommand({ violationIds: ids, ...render.ackFields(li) });
    acknowledge(li.dataset.key, command, ids, alarmWords(ids));
  });
  $("bulk-ack").addEventListener("click", (ev) => {
    const btn = ev.target.closest(".ack-button");
    const bar = $("bulk-ack");
    if (!btn || btn.disabled) return;
    const id = bar.dataset.characteristicId;
    const ch = state.chars.get(id);
    const held = ch ? Array.from(ch.alarms.keys()) : [];
    const command = ackCommand({ characteristicId: id, ...render.ackFields(bar) });
    acknowledge("bulk", command, held, "all open alarms of " + (ch && ch.meta ? ch.meta.name : "#" + id));
  });
  // a chosen cause (and action) enables the form's button
  for (const id of ["alarm-list", "bulk-ack"]) {
    $(id).addEventListener("change", (ev) => {
      const root = ev.target.closest(".alarm") || ev.target.closest(".bulk-ack");
      if (!root) return;
      if (root.id === "bulk-ack") render.renderBulk(session);
      else render.updateAckButton(root, session);
    });
  }
  for (const id of ["alarm-filter-char", "alarm-filter-severity"]) {
    $(id).addEventListener("change", () => schedule("alarms"));
  }

  // ---- older data: the query command, paged -------------------------------------------------
  // The charts show what the bridge answers (docs/hmi.md "Older data") until "Live".
  function setOlderStatus(text, bad) {
    $("older-status").textContent = text;
    $("older-status").className = "older-status" + (bad ? " bad" : "");
  }

  function leaveOlder() {
    if (!session.older) return;
    session.older = null;
    document.body.classList.remove("older-view");
    $("older-live").hidden = true;
    $("older-more").disabled = true;
    setOlderStatus("", false);
    if (charts) charts.forgetPoint();
    schedule("charts");
  }

  function isoOf(local) {
    if (!local) return null;
    const t = new Date(local);
    return isNaN(t.getTime()) ? null : t.toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  function askOlder(more) {
    const id = state.selectedId;
    if (!session.user || !session.connected || id === null) return;
    const from = isoOf($("older-from").value);
    const to = isoOf($("older-to").value);
    const ch = state.chars.get(id);
    let command;
    if (more && session.older && session.older.next !== null) {
      command = queryCommand({ characteristicId: id, before: session.older.next });
    } else if (from || to) {
      command = queryCommand({ characteristicId: id, from, to });
    } else {
      // no range: the page of samples before the oldest one held
      const oldest = ch && ch.samples.length ? ch.samples[0].sample_id : null;
      command = queryCommand({ characteristicId: id, before: oldest });
    }
    setOlderStatus("loading\u2026", false);
    $("older-load").disabled = true;
    transport.query(session.user, command, (error, result) => {
      $("older-load").disabled = false;
      if (state.selectedId !== id) return;
      if (error) {
        setOlderStatus("Loading failed: " + plainRefusal("query", error), true);
        return;
      }
      showOlder(id, result, more, from);
    });
  }

  function showOlder(id, result, more, from) {
    const fromMs = from ? Date.parse(from) : null;
    let got = result.samples.filter((s) => s && typeof s.sample_id === "number");
    if (fromMs !== null) got = got.filter((s) => Date.parse(s.timestamp) >= fromMs);
    const before = more && session.older ? session.older.samples : [];
    const samples = got.concat(before).slice(0, MAX_OLDER);
    // paged until the range's start, the bridge's end, or what the page keeps
    const reachedStart = fromMs !== null && got.length < result.samples.length;
    const next = reachedStart || samples.length >= MAX_OLDER ? null : result.next_before_sample_id;
    session.older = { charId: id, samples, next: typeof next === "number" ? next : null };
    document.body.classList.add("older-view");
    $("older-live").hidden = false;
    $("older-more").disabled = session.older.next === null;
    const first = samples[0];
    const last = samples[samples.length - 1];
    setOlderStatus(
      samples.length
        ? samples.length + " older samples, #" + first.sample_id + "\u2013#" + last.sample_id + (session.older.next === null ? " (no older)" : "")
        : "no samples in that range",
      false,
    );
    if (charts) charts.forgetPoint();
    schedule("charts");
  }

  $("older").addEventListener("submit", (ev) => {
    ev.preventDefault();
    askOlder(false);
  });
  $("older-more").addEventListener("click", () => askOlder(true));
  $("older-live").addEventListener("click", leaveOlder);

  // ---- recalculating limits ---------------------------------------------------------------
  // An engineer's command: two clicks (the first arms the button for 5 s), and the broker's
  // ACL decides who may; its or the bridge's answer is shown beside it.
  let recalcArmed = null;
  function disarmRecalc() {
    if (recalcArmed) window.clearTimeout(recalcArmed);
    recalcArmed = null;
    render.setRecalcArmed(false);
  }

  $("recalc").addEventListener("click", () => {
    if (!session.user || !session.connected || state.selectedId === null) return;
    if (!recalcArmed) {
      render.setRecalcArmed(true);
      recalcArmed = window.setTimeout(disarmRecalc, RECALC_ARMED_MS);
      return;
    }
    disarmRecalc();
    render.setRecalcStatus("sending\u2026", false);
    transport.request(topics.recalculate(state.selectedId), {}, (error) => {
      if (error) {
        const plain = plainRefusal("recalculate", error);
        render.setRecalcStatus(plain === error ? "Recalculate failed: " + error : plain, true, error);
        return;
      }
      render.setRecalcStatus("Limits recalculated", false);
      window.setTimeout(() => {
        if ($("recalc-status").textContent === "Limits recalculated") render.setRecalcStatus("", false);
      }, 10000);
    });
  });

  // ---- login ------------------------------------------------------------------------------
  function showLogin() {
    render.renderLogin(session);
    if (!session.user) render.setRecalcStatus("", false);
    schedule("alarms");
  }

  function loggedOut() {
    session.user = null;
    state.role = null;
    leaveOlder();
    showLogin();
    transport.connect(null);
  }

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("login-user").value.trim();
    const password = $("login-password").value;
    const problem = userNameProblem(name);
    render.setLoginError(problem || "");
    if (problem) return;
    $("login-password").value = "";
    session.user = null;
    state.role = null;
    showLogin();
    transport.connect({ user: name, password, confirmed: false });
  });

  $("logout").addEventListener("click", () => {
    $("login-user").value = "";
    loggedOut();
  });

  // A breakpoint crossed (the type grows on big screens): the charts are rebuilt.
  window.addEventListener("resize", () => {
    if (charts && charts.scaleChanged()) schedule("charts");
  });

  // ---- start ------------------------------------------------------------------------------
  showLogin();
  render.renderView(session);
  render.renderStatus(session);
  render.renderHeader(session);
  render.renderAlarms(session);
  render.renderCauses(session);
  if (typeof window.mqtt === "undefined" || typeof window.uPlot === "undefined") {
    setConnection("disconnected");
    render.setLoginError("vendor scripts missing: run scripts/build-hmi");
    return;
  }
  // the characteristic on screen, with the older samples instead of the live ones while
  // older data is shown
  charts = createCharts({ x: $("x-chart"), r: $("r-chart") }, () => {
    const ch = state.selectedId !== null ? state.chars.get(state.selectedId) || null : null;
    if (!ch || !session.older || session.older.charId !== ch.id) return ch;
    return { ...ch, samples: session.older.samples };
  });
  charts.render();
  transport.connect(null);
}

start();
