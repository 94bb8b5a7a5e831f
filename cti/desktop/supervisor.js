// The supervisor console: a snapshot, then rows pushed over /ws/supervisor (see
// cti/supervisor/service.py for the messages). Plain DOM, text only (no innerHTML).
"use strict";

const state = {
  token: null,
  ws: null,
  calls: new Map(),
  callRows: new Map(), // call id -> its <tr> on screen (found without searching 500 rows)
  agents: new Map(),
  agentRows: new Map(), // agent name -> its <tr>
  queues: new Map(),
  hours: [],
  alerts: new Map(),
  offset: 0, // server time - local time, seconds
  retry: 500,
  tiers: [],
  openCall: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function now() {
  return Date.now() / 1000 + state.offset;
}

function secs(value) {
  if (value === null || value === undefined) return "";
  const s = Math.max(0, Math.round(value));
  return s >= 60 ? `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

function since(ts) {
  return ts === null || ts === undefined ? "" : secs(now() - ts);
}

// A cell whose text is a time elapsed since ``ts``, kept ticking by tick().
function ticking(ts, cls, prefix = "", suffix = "") {
  const td = el("td", ts === null || ts === undefined ? "" : prefix + since(ts) + suffix, cls);
  if (ts !== null && ts !== undefined) {
    td.dataset.since = String(ts);
    td.dataset.prefix = prefix;
    td.dataset.suffix = suffix;
  }
  return td;
}

function tick() {
  for (const td of document.querySelectorAll("[data-since]")) {
    const text = td.dataset.prefix + since(Number(td.dataset.since)) + td.dataset.suffix;
    if (td.textContent !== text) td.textContent = text; // an unchanged cell is not laid out again
  }
}

function percent(level) {
  return level === null || level === undefined ? "–" : `${(level * 100).toFixed(1)}%`;
}

async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
  return data;
}

// ---- rendering ------------------------------------------------------------------------------

function renderQueues() {
  const body = $("queues").tBodies[0];
  body.replaceChildren();
  for (const q of state.queues.values()) {
    const tr = el("tr");
    tr.dataset.queue = q.queue;
    tr.className = q.breached ? "breached" : q.service_level === null ? "" : "ok";
    const cells = [
      [q.queue], [q.tier], [q.waiting, "num waiting"], [secs(q.longest_wait_s), "num longest"],
      [q.agents_available, "num available"], [q.agents_logged_in, "num logged-in"],
      [q.offered, "num offered"], [q.answered, "num answered"],
      [q.abandoned + q.short_abandoned, "num abandoned"], [percent(q.service_level), "num sl"],
      [percent(q.target), "num target"],
    ];
    for (const [text, cls] of cells) tr.append(el("td", text, cls));
    body.append(tr);
  }
  fillFilter("filter-queue", [...state.queues.keys()]);
  fillFilter("filter-tier", [...new Set([...state.queues.values()].map((q) => q.tier))]);
}

function fillFilter(id, values) {
  const select = $(id);
  const current = select.value;
  const known = [...select.options].map((o) => o.value);
  for (const v of values) if (v && !known.includes(v)) select.append(new Option(v, v));
  select.value = current;
}

function shownCall(c) {
  const queue = $("filter-queue").value;
  const tier = $("filter-tier").value;
  return !((queue && c.queue !== queue) || (tier && c.tier !== tier));
}

function renderCalls() {
  const body = $("calls").tBodies[0];
  const rows = [];
  state.callRows.clear();
  for (const c of state.calls.values()) {
    if (!shownCall(c)) continue;
    const tr = callRow(c);
    state.callRows.set(c.call_id, tr);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  $("call-count").textContent = String(state.callRows.size);
}

// One call changed (or went): only its row is touched, found by its id (no search, no other
// row rebuilt), so a change costs the same with 5 calls or 500.
function updateCall(id) {
  const old = state.callRows.get(id);
  const c = state.calls.get(id);
  const row = c && shownCall(c) ? callRow(c) : null;
  if (row) state.callRows.set(id, row);
  else state.callRows.delete(id);
  if (old && row) old.replaceWith(row);
  else if (old) old.remove();
  else if (row) $("calls").tBodies[0].append(row);
  $("call-count").textContent = String(state.callRows.size);
}

function callRow(c) {
  const tr = el("tr");
  tr.dataset.call = c.call_id;
  tr.addEventListener("click", () => openCall(c.call_id));
  const flags = el("td");
  const list = el("ul", null, "flags");
  for (const f of c.flags || []) list.append(el("li", f.replace(/_/g, " ")));
  flags.append(list);
  const bridged = c.state === "talking" || c.state === "on hold";
  const wait = c.waiting_since || (!bridged ? c.offered_at : null);
  tr.append(
    el("td", c.caller || "withheld"),
    el("td", c.customer || (c.status === "ambiguous" ? "ambiguous caller" : "unknown")),
    flags,
    c.state === "on hold" && c.on_hold_since
      ? ticking(c.on_hold_since, "state", `${c.detail} for `)
      : el("td", c.detail || c.state, "state"),
    el("td", c.queue || ""),
    el("td", c.tier || ""),
    ticking(bridged ? null : wait, "num wait"),
    ticking(bridged ? c.answered_at : null, "num talk"),
    el("td", c.reason || ""),
  );
  return tr;
}

function agentButtons(a) {
  const td = el("td");
  const pause = el("button", a.state === "paused" ? "Unpause" : "Pause");
  pause.type = "button";
  pause.addEventListener("click", () =>
    act({ agent: a.name, action: a.state === "paused" ? "unpause" : "pause",
          reason: a.state === "paused" ? "" : "supervisor" }));
  td.append(pause);
  const select = el("select");
  select.setAttribute("aria-label", `Queue for ${a.name}`);
  for (const q of state.queues.keys()) select.append(new Option(q, q));
  const login = el("button", "Log in");
  login.type = "button";
  login.addEventListener("click", () => act({ agent: a.name, action: "login", queue: select.value }));
  const logout = el("button", "Log out");
  logout.type = "button";
  logout.addEventListener("click", () => act({ agent: a.name, action: "logout", queue: select.value }));
  td.append(select, login, logout);
  return td;
}

function renderAgents() {
  const rows = [];
  state.agentRows.clear();
  for (const a of state.agents.values()) {
    const tr = agentRow(a);
    state.agentRows.set(a.name, tr);
    rows.push(tr);
  }
  $("agents").tBodies[0].replaceChildren(...rows);
}

// One agent changed: only their row is rebuilt.
function updateAgent(name) {
  const a = state.agents.get(name);
  const old = state.agentRows.get(name);
  const tr = agentRow(a);
  state.agentRows.set(name, tr);
  if (old) old.replaceWith(tr);
  else $("agents").tBodies[0].append(tr);
}

function agentRow(a) {
  const tr = el("tr");
  tr.dataset.agent = a.name;
  const text = a.state.replace(/_/g, " ");
  const stateCell = a.state === "paused"
    ? ticking(a.paused_since, `state state-${a.state}`, `${text} (${a.reason || "no reason"}, `, ")")
    : el("td", text, `state state-${a.state}`);
  tr.append(
    el("td", a.name),
    stateCell,
    el("td", a.call_id || ""),
    el("td", a.calls_today, "num calls-today"),
    el("td", percent(a.occupancy), "num occupancy"),
    el("td", secs(a.pause_today_s), "num pause-today"),
    el("td", (a.queues || []).join(", ")),
    agentButtons(a),
  );
  return tr;
}

function renderChart() {
  const chart = $("chart");
  chart.replaceChildren();
  const top = Math.max(1, ...state.hours.map((h) => h.offered));
  for (const h of state.hours) {
    const col = el("div", null, "hour");
    col.dataset.hour = h.hour;
    col.title = `${h.hour}: ${h.offered} offered, ${h.answered} answered, ${h.abandoned} abandoned`;
    col.append(el("span", h.offered, "offered"));
    const bar = el("div", null, "bar-offered");
    bar.style.height = `${(h.offered - h.abandoned) / top * 8}rem`;
    const lost = el("div", null, "bar-abandoned");
    lost.style.height = `${h.abandoned / top * 8}rem`;
    col.append(lost, bar, el("span", h.hour.slice(11, 16)), el("span", percent(h.service_level), "sl"));
    chart.append(col);
  }
}

function renderAlerts() {
  const list = $("alerts");
  list.replaceChildren();
  if (!state.alerts.size) list.append(el("li", "No alerts", "none"));
  for (const a of state.alerts.values()) {
    const what = {
      service_level: `service level ${percent(a.value)} below ${percent(a.limit)}`,
      longest_wait: `a caller has waited ${secs(a.value)} (limit ${secs(a.limit)})`,
      long_pause: `paused for ${secs(a.value)} (limit ${secs(a.limit)})`,
    }[a.kind] || a.kind;
    const li = el("li", `${a.subject}: ${what}`);
    li.dataset.alert = `${a.kind}:${a.subject}`;
    list.append(li);
  }
}

function renderAll() {
  renderQueues();
  renderCalls();
  renderAgents();
  renderChart();
  renderAlerts();
}

// ---- actions and the call's pop ------------------------------------------------------------

async function act(body) {
  const feedback = $("feedback");
  try {
    await api("POST", "/api/supervisor/agent", body);
    feedback.textContent = `${body.action} ${body.agent}${body.queue ? " " + body.queue : ""}: done.`;
  } catch (err) {
    feedback.textContent = `${body.action} ${body.agent}: ${err.message}`;
  }
}

// Listen, whisper and barge: offered on a call an agent is talking on (on hold too).
function showSpy(row) {
  $("pop-spy").hidden = !row || !(row.state === "talking" || row.state === "on hold");
}

async function spy(mode) {
  const id = state.openCall;
  const feedback = $("spy-feedback");
  if (!id) return;
  feedback.textContent = `${mode}: calling your phone…`;
  try {
    const done = await api("POST", `/api/calls/${encodeURIComponent(id)}/spy`, { mode });
    feedback.textContent = `${mode}: on ${done.agent || "the agent"}'s call.`;
  } catch (err) {
    feedback.textContent = `${mode}: ${err.message}`;
  }
}

async function openCall(id) {
  state.openCall = id;
  $("pop").hidden = false;
  $("pop-call").textContent = id;
  $("spy-feedback").textContent = "";
  showSpy(state.calls.get(id));
  try {
    const data = await api("GET", `/api/calls/${encodeURIComponent(id)}`);
    const call = data.call || data;
    const view = call.view || {};
    $("pop-name").textContent = view.name || call.caller || "unknown caller";
    const flags = $("pop-flags");
    flags.replaceChildren(...(view.highlights || []).map((f) => el("li", f.replace(/_/g, " "))));
    const routing = call.routing || {};
    $("pop-reason").textContent = routing.reason ? `Reason: ${routing.reason}` : "";
    const detail = $("pop-detail");
    detail.replaceChildren();
    for (const c of view.open_cases || []) detail.append(el("p", `Case: ${c.subject} (${c.status})`));
    for (const o of view.orders || []) detail.append(el("p", `Order ${o.reference}: ${o.delivery_state || o.status}`));
  } catch (err) {
    $("pop-name").textContent = err.message;
  }
}

// ---- the socket ---------------------------------------------------------------------------

function apply(msg) {
  switch (msg.type) {
    case "hello":
      $("who").textContent = msg.agent.name;
      break;
    case "snapshot": {
      const b = msg.board;
      state.offset = b.at - Date.now() / 1000;
      state.calls = new Map(b.calls.map((c) => [c.call_id, c]));
      state.agents = new Map(b.agents.map((a) => [a.name, a]));
      state.queues = new Map(b.queues.map((q) => [q.queue, q]));
      state.hours = b.hours;
      state.alerts = new Map(msg.alerts.map((a) => [`${a.kind}:${a.subject}`, a]));
      renderAll();
      if (state.openCall) showSpy(state.calls.get(state.openCall));
      break;
    }
    case "call_row":
      state.calls.set(msg.row.call_id, msg.row);
      updateCall(msg.row.call_id);
      if (msg.row.call_id === state.openCall) showSpy(msg.row);
      break;
    case "call_gone":
      state.calls.delete(msg.call_id);
      updateCall(msg.call_id);
      if (msg.call_id === state.openCall) showSpy(null);
      break;
    case "agent_row":
      state.agents.set(msg.row.name, msg.row);
      updateAgent(msg.row.name);
      break;
    case "queue_row":
      state.queues.set(msg.row.queue, msg.row);
      renderQueues();
      break;
    case "hours":
      state.hours = msg.rows;
      renderChart();
      break;
    case "alert":
      if (msg.raised) state.alerts.set(`${msg.kind}:${msg.subject}`, msg);
      else state.alerts.delete(`${msg.kind}:${msg.subject}`);
      renderAlerts();
      break;
    default:
      break; // the desktop's messages (pop, answered...): the rows carry what the console shows
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws/supervisor`);
  state.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: state.token }));
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "hello") {
      $("link").textContent = "connected";
      $("link").className = "link up";
      state.retry = 500;
    }
    if (msg.type === "error") {
      $("login-error").textContent = msg.error;
      return;
    }
    apply(msg);
  };
  ws.onclose = (event) => {
    $("link").textContent = "reconnecting";
    $("link").className = "link down";
    if (event.code === 4401 || event.code === 4403) return;
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 10000);
  };
}

async function signIn(event) {
  event.preventDefault();
  await signInWith($("token").value.trim(), true);
}

// Not `loud`: a token carried from the agent desk (sessionStorage); one that is not a
// supervisor's leaves the sign-in form as it is, with no error.
async function signInWith(token, loud) {
  $("login-error").textContent = "";
  try {
    const resp = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
    });
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
    if (data.agent.role !== "supervisor") throw new Error("this console is for supervisors");
    state.token = token;
    state.tiers = data.tiers;
    sessionStorage.setItem("cti-token", token);
    $("login").hidden = true;
    $("console").hidden = false;
    connect();
  } catch (err) {
    if (loud) $("login-error").textContent = err.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  const carried = sessionStorage.getItem("cti-token");
  if (carried) signInWith(carried, false);
  $("filter-queue").addEventListener("change", renderCalls);
  $("filter-tier").addEventListener("change", renderCalls);
  $("pop-close").addEventListener("click", () => { $("pop").hidden = true; state.openCall = null; });
  for (const button of $("pop-spy").querySelectorAll("button[data-mode]")) {
    button.addEventListener("click", () => spy(button.dataset.mode));
  }
  // Waits, talk and pauses tick on the page between pushes.
  setInterval(tick, 1000);
});
