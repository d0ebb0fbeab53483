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
import { plainRefusal, refusalAction } from "./requests.js";
import * as model from "./state.js";
import { createTopics, userNameProblem } from "./topics.js";
import { createTransport } from "./transport.js";

const ACK_TIMEOUT_MS = 10000;
const RECONNECT_MS = 2000;
const AUTO_SELECT_MS = 100; // the burst of retained metas after a (re)connection
const RECALC_ARMED_MS = 5000;
const STORAGE_KEY = "openspc-hmi-char";

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
        transport.subscribe(topics.subscriptions(state.selectedId, transport.replyTopic));
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
    schedule("list", "charts", "header", "alarms");
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
  // One card is one sample's alarms: acknowledged together, with one cause.
  function acknowledge(key, violationIds, reason, exclude) {
    if (!session.user || !session.connected || !reason || !violationIds.length) return;
    render.setCardBusy(key, true, session);
    transport.acknowledge(session.user, violationIds, reason, exclude, (failures) => {
      render.setCardBusy(key, false, session);
      const failed = new Set(failures.map((f) => f[0]));
      for (const id of violationIds) {
        if (!failed.has(id)) apply(model.onAckUpdate(state, null, { violation_id: id, acknowledged: true }));
      }
      if (!failures.length) {
        render.showAckError("");
        return;
      }
      const which = failures.map((f) => "#" + f[0]).join(", ");
      render.showAckError(
        "Acknowledge of alarm" +
          (failures.length > 1 ? "s " : " ") +
          which +
          " failed: " +
          plainRefusal("ack", failures[0][1]),
      );
    });
  }

  $("ack-error").addEventListener("click", () => render.showAckError(""));
  $("alarm-list").addEventListener("click", (ev) => {
    const btn = ev.target.closest(".ack-button");
    if (!btn || btn.disabled) return;
    const li = btn.closest(".alarm");
    acknowledge(
      li.dataset.key,
      li.dataset.violationIds.split(" ").filter(Boolean).map(Number),
      li.querySelector(".ack-reason").value,
      li.querySelector(".ack-exclude").checked,
    );
  });
  // a chosen cause enables the card's button
  $("alarm-list").addEventListener("change", (ev) => {
    const li = ev.target.closest(".alarm");
    if (li && ev.target.classList.contains("ack-reason")) render.updateAckButton(li, session);
  });
  for (const id of ["alarm-filter-char", "alarm-filter-severity"]) {
    $(id).addEventListener("change", () => schedule("alarms"));
  }

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
  if (typeof window.mqtt === "undefined" || typeof window.uPlot === "undefined") {
    setConnection("disconnected");
    render.setLoginError("vendor scripts missing: run scripts/build-hmi");
    return;
  }
  charts = createCharts({ x: $("x-chart"), r: $("r-chart") }, () =>
    state.selectedId !== null ? state.chars.get(state.selectedId) || null : null,
  );
  charts.render();
  transport.connect(null);
}

start();
