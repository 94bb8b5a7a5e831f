// cti agent desktop: sign in with a token, receive pops over /ws, act on the call over REST.
// Plain JS, no build step. Every message has an id: one already seen is ignored.
"use strict";

const FLAG_LABELS = {
  vip: "VIP",
  hearing_impaired: "Hearing impaired",
  payment_arrears: "Payment arrears",
  do_not_call: "Do not call",
  wheelchair_user: "Wheelchair user",
};
const STATE_LABELS = {
  pop: "Ringing",
  answered: "On call",
  withdrawn: "Withdrawn",
  transferred: "Transferred",
  ended: "Ended",
};
// A call that left the agent stays on the desk for its wrap-up.
const WRAP_UP = new Set(["ended", "transferred"]);
const GRACE_CHECK_MS = 15000;
const SEARCH_DELAY_MS = 250;
// Resolution statuses whose number says nothing about anyone: nothing to remember.
const NO_NUMBER = new Set(["anonymous", "internal"]);
const HOW = { search: "found by search", created: "created from this call", ivr: "identified by the IVR" };

const $ = (id) => document.getElementById(id);
const desk = {
  token: sessionStorage.getItem("cti-token") || "",
  agent: null,
  tiers: [],
  seen: new Set(),
  calls: new Map(),  // call id -> { id, info, state, notes, drafts }
  callId: null,  // the call on screen
  ws: null,
  retry: 500,
  stopped: false,
};

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fill(list, items, render, emptyText = "none") {
  list.replaceChildren(...items.map(render));
  if (!items.length) {
    const empty = list.tagName === "TBODY" ? row(emptyText) : el("li", emptyText, "muted empty");
    list.replaceChildren(empty);
  }
}

function row(...cells) {
  const tr = el("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell ?? "—"));
  return tr;
}

function when(value) {
  if (!value) return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return isNaN(date) ? String(value) : date.toLocaleString();
}

function feedback(text, good) {
  const box = $("feedback");
  box.textContent = text;
  box.className = "feedback " + (good ? "good" : "bad");
}

async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: { "Authorization": "Bearer " + desk.token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.error || resp.statusText);
  return data;
}

// ---- sign in and the WebSocket --------------------------------------------------------------

async function signIn(token) {
  const resp = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.error || "sign-in failed");
  desk.token = token;
  desk.agent = data.agent;
  desk.tiers = data.tiers || [];
  sessionStorage.setItem("cti-token", token);
  $("who").textContent = `${data.agent.name} (${data.agent.role})`;
  $("login").hidden = true;
  $("desk").hidden = false;
  $("logout").hidden = false;
  // The desk follows only the supervisor's own calls; the console is where every call is.
  $("to-console").hidden = data.agent.role !== "supervisor";
  $("esc-tier").replaceChildren(...desk.tiers.map((t) => {
    const o = el("option", t.label);
    o.value = t.name;
    return o;
  }));
  // Queue log-in and pause act on the user's phone: none configured (a supervisor), no buttons.
  const phone = Boolean(desk.agent.interface);
  for (const id of ["pause-form", "queue-form", "pause-line"]) $(id).hidden = !phone;
  $("no-phone").hidden = phone;
  const mine = desk.agent.tiers.length ? desk.tiers.filter((t) => desk.agent.tiers.includes(t.name)) : desk.tiers;
  $("queue-name").replaceChildren(...mine.map((t) => {
    const o = el("option", t.queue);
    o.value = t.queue;
    return o;
  }));
  desk.stopped = false;
  render();
  connect();
}

function setLink(text, cls) {
  const link = $("link");
  link.textContent = text;
  link.className = "link " + (cls || "");
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/ws`);
  desk.ws = ws;
  setLink("connecting…");
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: desk.token }));
  ws.onmessage = (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { return; }
    handle(message);
  };
  ws.onclose = (event) => {
    if (desk.ws !== ws) return;
    if (event.code === 4401) { signOut("Your token was refused: sign in again."); return; }
    if (desk.stopped) return;
    setLink("reconnecting…", "down");
    window.dispatchEvent(new CustomEvent("cti:link", { detail: { up: false } }));
    setTimeout(connect, desk.retry);
    desk.retry = Math.min(desk.retry * 2, 10000);
  };
}

function signOut(message) {
  desk.stopped = true;
  sessionStorage.removeItem("cti-token");
  if (desk.ws) desk.ws.close();
  desk.ws = null;
  desk.calls.clear();
  desk.callId = null;
  $("desk").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("who").textContent = "";
  setLink("signed out");
  $("login-error").textContent = message || "";
}

// ---- messages ---------------------------------------------------------------------------------
//
// Every call the agent has on the desk is kept in desk.calls: the one ringing or talking, and the
// ended (or transferred-away) ones until their wrap-up is saved or the daemon forgets them (its
// grace period). Each call keeps its own message, notes and form drafts; the forms always show
// the drafts of the call on screen and carry its id, so Save writes to the call it was typed for.

function handle(message) {
  if (message.type === "hello") {
    setLink("connected", "up");
    desk.retry = 500;
    window.dispatchEvent(new CustomEvent("cti:link", { detail: { up: true } }));
    return;
  }
  if (message.type === "pong" || message.type === "error") return;
  if (message.id) {
    if (desk.seen.has(message.id)) return;
    desk.seen.add(message.id);
  }
  switch (message.type) {
    case "pop":
      remember(message);
      select(message.call_id);
      break;
    case "update":
      if (desk.calls.has(message.call_id)) remember(message);
      break;
    case "answered":
      remember(message);
      select(message.call_id);
      break;
    case "withdrawn":
    case "transferred":
    case "ended":
      if (desk.calls.has(message.call_id)) remember(message);
      break;
    case "callback":  // a task of the agent's queues changed (cases.js keeps the list)
      window.dispatchEvent(new CustomEvent("cti:callback", { detail: message.task }));
      return;
    case "agent_state":
      if (message.paused !== undefined) showPaused(Boolean(message.paused), message.reason);
      break;
    default:
      break;
  }
  render();
}

function remember(message) {
  let entry = desk.calls.get(message.call_id);
  if (!entry) {
    entry = { id: message.call_id, info: null, state: null, notes: null, drafts: {} };
    desk.calls.set(message.call_id, entry);
  }
  if (message.call || !entry.info) entry.info = message;
  if (message.call && message.call.notes) entry.notes = message.call.notes;
  else if (message.notes) entry.notes = message.notes;
  if (message.type !== "update") entry.state = message;
}

function stage(entry) {
  return entry.state ? entry.state.type : "pop";
}

function inWrapUp(entry) {
  return WRAP_UP.has(stage(entry));
}

function select(callId) {
  desk.callId = callId;
}

function forget(callId) {
  desk.calls.delete(callId);
  if (desk.callId !== callId) return;
  // The latest call still on the desk, if any.
  const rest = [...desk.calls.keys()];
  desk.callId = rest.length ? rest[rest.length - 1] : null;
}

function tierLabel(target) {
  const tier = desk.tiers.find((t) => target && (t.name === target || t.queue === target || t.exten === target));
  return tier ? tier.label : target;
}

function stateText(message) {
  let text = STATE_LABELS[message.type] || message.type;
  if (message.type === "withdrawn") {
    text = message.reason === "answered_elsewhere"
      ? `Answered by ${message.answered_by || "a colleague"}`
      : `${text} – ${message.reason}`;
  }
  if (message.type === "transferred") text += ` to ${tierLabel(message.to_queue || message.to) || "another agent"}`;
  if (message.type === "pop" && message.direction === "outbound") text = `Calling ${message.number || ""}`;
  return text;
}

// Several customers share the number and no one has said yet which one is calling.
function candidatesOf(call) {
  return call && call.status === "ambiguous" && !call.confirmed_by && call.candidates && call.candidates.length > 1 ? call.candidates : null;
}

function callerName(entry) {
  const call = (entry.info && entry.info.call) || {};
  const several = candidatesOf(call);
  if (several) return `One of ${several.length} possible customers`;
  if (call.view) return call.view.name;
  return call.caller && call.status !== "anonymous" ? "Unknown caller" : "Withheld number";
}

function render() {
  renderCalls();
  const entry = desk.calls.get(desk.callId);
  if (entry) show(entry);
  else idle();
  // For panels in other files (cases.js): the call on screen ({id, call, state}) or null.
  window.dispatchEvent(new CustomEvent("cti:call", { detail: entry ? { id: entry.id, call: (entry.info && entry.info.call) || {}, state: (entry.state || { type: "pop" }).type } : null }));
}

function renderCalls() {
  const nav = $("calls");
  // Withdrawn pops leave the list once another call is on screen: nothing is left to do on them.
  for (const [id, entry] of desk.calls) {
    if (stage(entry) === "withdrawn" && id !== desk.callId) desk.calls.delete(id);
  }
  nav.hidden = desk.calls.size === 0;
  $("call-list").replaceChildren(...[...desk.calls.values()].map((entry) => {
    const label = inWrapUp(entry) ? `${stateText(entry.state)} – wrap-up` : stateText(entry.state || { type: "pop" });
    const button = el("button", `${callerName(entry)} · ${label}`, "call-tab" + (inWrapUp(entry) ? " wrapup" : ""));
    button.type = "button";
    button.dataset.call = entry.id;
    button.setAttribute("aria-current", entry.id === desk.callId ? "true" : "false");
    button.addEventListener("click", () => { select(entry.id); render(); });
    const li = el("li");
    li.append(button);
    return li;
  }));
}

function idle() {
  const pop = $("pop");
  pop.className = "pop idle";
  $("call-state").textContent = "No call";
  $("customer-name").textContent = "Waiting for calls…";
  $("flags").replaceChildren();
  $("caller-line").textContent = "";
  $("candidates-box").hidden = true;
  $("identify-box").hidden = true;
  $("add-number-box").hidden = true;
  $("reason-box").hidden = true;
  for (const id of ["cases", "orders"]) $(id).tBodies[0].replaceChildren();
  for (const id of ["products", "history", "notes"]) $(id).replaceChildren();
  bindForms(null);
}

function show(entry) {
  const message = entry.info || {};
  const call = message.call || {};
  const several = candidatesOf(call);
  // A number shared by several customers is not a match: no one's record is shown as the caller's.
  const view = several ? null : call.view || null;
  const state = entry.state || { type: "pop" };
  $("pop").className = "pop " + (state.type === "pop" ? "ringing" : state.type);
  $("call-state").textContent = stateText(state);
  $("customer-name").textContent = callerName(entry);
  const highlights = view ? (view.highlights && view.highlights.length ? view.highlights : view.flags) : [];
  fill($("flags"), highlights || [], (flag) => {
    const li = el("li", flagLabel(flag), "flag " + (FLAG_LABELS[flag] ? flag : "other"));
    li.setAttribute("aria-label", `Customer flag: ${flagLabel(flag)}`);
    return li;
  });
  if (!highlights || !highlights.length) $("flags").replaceChildren();
  announce(entry, state, highlights || []);
  const parts = [call.caller || "withheld number"];
  if (message.queue) parts.push(`queue ${message.queue}`);
  if (message.tier && message.tier !== message.queue) parts.push(message.tier);
  if (message.wait_s !== null && message.wait_s !== undefined) parts.push(`waited ${Math.round(message.wait_s)} s`);
  if (view && view.language) parts.push(`speaks ${view.language}`);
  if (call.confirmed_by) {
    const how = call.confirmed_method && call.confirmed_method !== "candidate"
      ? `${HOW[call.confirmed_method] || call.confirmed_method}, confirmed by ${call.confirmed_by}`
      : `confirmed by ${call.confirmed_by} among ${(call.candidates || []).length} customers on this number`;
    parts.push(how);
  }
  $("caller-line").textContent = parts.join(" · ");

  $("candidates-box").hidden = !several;
  fill($("candidates"), several || [], (c) => {
    const li = el("li");
    li.append(el("strong", c.name));
    if (c.external_id) li.append(` (${c.external_id})`);
    li.append(" – " + (c.rank_reason || "no reason to rank it first") + " ");
    const confirm = el("button", "This is the caller", "confirm");
    confirm.type = "button";
    confirm.setAttribute("aria-label", `${c.name} is the caller`);
    confirm.addEventListener("click", () => confirmCaller(entry, c));
    li.append(confirm);
    return li;
  });

  const reasonBox = $("reason-box");
  reasonBox.hidden = !message.reason && !message.previous_agent;
  $("reason").textContent = message.reason || "—";
  const esc = message.escalation;
  const handover = $("handover");
  const handoverNote = $("handover-note");
  if (message.previous_agent) {
    handover.hidden = false;
    handover.textContent = esc
      ? `Escalated to ${tierLabel(esc.tier)} by ${message.previous_agent}` + (message.routing_reason ? ` (first routed: ${message.routing_reason})` : "")
      : `Transferred from ${message.previous_agent}`;
  } else {
    handover.hidden = true;
  }
  const note = esc && esc.note ? esc.note : lastNote(message.notes, message.previous_agent);
  handoverNote.hidden = !note;
  handoverNote.textContent = note || "";

  const unknown = several ? "not known until the caller says who they are" : "no customer identified";
  fill($("cases").tBodies[0], view ? view.open_cases : [], (c) => {
    const sla = el("td", c.sla_deadline ? when(c.sla_deadline) : "—");
    if (c.sla_deadline && new Date(c.sla_deadline) < new Date()) sla.className = "overdue";
    return row(`#${c.case_id} ${c.subject}`, c.tier, sla, c.status);
  }, view ? "none" : unknown);
  fill($("orders").tBodies[0], view ? view.orders : [], (o) => row(o.reference, o.status, o.delivery_state, o.tracking_ref), view ? "none" : unknown);
  fill($("products"), view ? view.products : [], (p) => el("li", p), view ? "none" : unknown);
  fill($("history"), view ? view.interactions : [], (i) => el("li",
    `${when(i.started_at) || "earlier"} – ${i.queue || i.direction}, ${i.agent || "no agent"}: ${i.outcome}` +
    (i.disposition ? ` (${i.disposition})` : "") + (i.notes ? ` – ${i.notes}` : "")), view ? "none" : unknown);
  renderNotes(entry.notes || []);
  showIdentify(entry, call, several);
  bindForms(entry);
}

function flagLabel(flag) {
  return FLAG_LABELS[flag] || flag.replaceAll("_", " ");
}

// Screen readers hear who is calling and the customer's flags once per call and stage.
function announce(entry, state, flags) {
  const key = `${entry.id}|${state.type}|${callerName(entry)}|${flags.join(",")}`;
  if (desk.announced === key) return;
  desk.announced = key;
  const what = state.type === "pop" ? "Incoming call" : stateText(state);
  const said = flags.length ? `. Flags: ${flags.map(flagLabel).join(", ")}` : "";
  $("announce").textContent = `${what}: ${callerName(entry)}${said}.`;
}

// ---- identifying the caller -------------------------------------------------------------------

function numberKnown(call) {
  return Boolean(call.caller_e164) && !NO_NUMBER.has(call.status) && call.direction !== "outbound";
}

function showIdentify(entry, call, several) {
  // Nobody is attached (unknown, withheld) or several may be: find or create the caller.
  const open = !call.confirmed_by && (several || (!call.view && call.status !== "internal" && call.direction !== "outbound"));
  $("identify-box").hidden = !open;
  const number = numberKnown(call);
  $("remember-line").hidden = !number;
  $("remember-number").checked = Boolean(entry.remember) && number;
  // Candidates listed have the number already: ticking it means something only for a
  // customer found or created here.
  $("remember-text").textContent = !number ? ""
    : several ? `Remember ${call.caller} for a customer found or created here (the customers listed above have it already)`
    : `Remember ${call.caller} as this customer's number (the next call from it is recognised)`;
  $("new-number").textContent = number
    ? `Caller's number: ${call.caller} (added only if “Remember” is ticked)`
    : "The caller's number is withheld: no number will be added.";
  const found = entry.found || { items: [], status: "" };
  $("search-status").textContent = found.status;
  $("search-results").replaceChildren(...found.items.map((c) => {
    const li = el("li");
    li.append(el("strong", c.name));
    if (c.external_id) li.append(el("span", `account ${c.external_id}`, "muted"));
    if (c.postcode) li.append(el("span", `postcode ${c.postcode}`, "muted"));
    if (c.rank_reason) li.append(el("span", `by ${c.rank_reason}`, "muted"));
    const attach = el("button", "This is the caller", "attach");
    attach.type = "button";
    attach.setAttribute("aria-label", `${c.name} is the caller`);
    attach.addEventListener("click", () => attachFound(entry, c));
    li.append(attach);
    return li;
  }));
  // After attaching a customer found or created here: offer to remember the number.
  const offer = Boolean(call.confirmed_by) && number && !entry.numberAdded && call.confirmed_method !== "candidate";
  $("add-number-box").hidden = !offer;
  if (offer) $("add-number").textContent = `Add ${call.caller} to ${call.view ? call.view.name : "the customer"}'s numbers`;
}

async function searchCustomers(entry, query) {
  const seq = (entry.searchSeq || 0) + 1;
  entry.searchSeq = seq;
  if (query.length < 2) {
    entry.found = { items: [], status: query ? "Type at least 2 characters." : "" };
    render();
    return;
  }
  try {
    const data = await api("GET", `/api/customers?q=${encodeURIComponent(query)}&limit=10`);
    if (entry.searchSeq !== seq) return;  // the agent typed on meanwhile
    const items = data.customers || [];
    entry.found = { items, status: items.length ? `${items.length} found for “${query}”.` : `No customer found for “${query}”.` };
  } catch (err) {
    if (entry.searchSeq !== seq) return;
    entry.found = { items: [], status: err.message };
  }
  if (desk.calls.get(entry.id) === entry) render();
}

// The button just pressed (a search result, a candidate, the offer) is gone once the caller is
// identified: the focus goes to what comes next in the pop (the offer to add the number, else
// the caller's name), not back to the top of the page. Left alone if the agent moved it.
function keepFocusInPop(entry) {
  if (entry.id !== desk.callId) return;
  const at = document.activeElement;
  // Removed, hidden (display: none keeps it active until the browser's focus fix-up) or gone.
  const lost = !at || at === document.body || !at.isConnected || !at.getClientRects().length;
  if (!lost) return;
  ($("add-number-box").hidden ? $("customer-name") : $("add-number")).focus();
}

function identified(entry, data, text) {
  entry.info = { ...entry.info, call: data.call };
  if (data.number_added) entry.numberAdded = true;
  entry.found = null;
  delete entry.drafts["customer-search"];
  render();
  keepFocusInPop(entry);
  feedback(text + (data.number_added ? ` ${data.number_added} is now theirs.` : ""), true);
}

async function attachFound(entry, candidate) {
  try {
    const remember = $("remember-number").checked && !$("remember-line").hidden;
    const data = await callApi(entry, "customer", { customer_id: candidate.customer_id, method: "search", remember_number: remember });
    identified(entry, data, `${candidate.name} attached to the call.`);
  } catch (err) {
    feedback(err.message, false);
  }
}

function lastNote(notes, author) {
  if (!notes || !notes.length) return "";
  const theirs = author ? notes.filter((n) => n.author === author) : notes;
  const last = (theirs.length ? theirs : notes)[(theirs.length ? theirs : notes).length - 1];
  return `${last.author}: ${last.text}`;
}

function renderNotes(notes) {
  fill($("notes"), notes, (n) => el("li", `${n.author}: ${n.text}`));
}

// The call forms show the drafts of the call on screen and carry its id; a field's default is
// what it shows for a call nothing was typed for.
const DRAFTS = {
  "wrapup-form": ["note-text", "disposition"],
  "escalate-form": ["esc-tier", "esc-reason", "esc-note"],
  "search-form": ["customer-search"],
  "create-form": ["new-name", "new-email", "new-address"],
};

function bindForms(entry) {
  for (const [formId, fields] of Object.entries(DRAFTS)) {
    const form = $(formId);
    form.dataset.call = entry ? entry.id : "";
    for (const id of fields) {
      const field = $(id);
      const draft = entry ? entry.drafts[id] : undefined;
      const value = draft !== undefined ? draft : (field.tagName === "SELECT" && id === "esc-tier" && field.options.length ? field.options[0].value : "");
      if (field.value !== value) field.value = value;  // (re-setting moves the caret)
    }
  }
  // Escalation moves a caller who is still there; the wrap-up works on ended calls too.
  $("esc-fields").disabled = !entry || inWrapUp(entry) || stage(entry) === "withdrawn";
}

function keepDraft(event) {
  const form = event.target.form;
  const entry = form && desk.calls.get(form.dataset.call);
  if (entry) entry.drafts[event.target.id] = event.target.value;
}

function clearDrafts(entry, formId) {
  for (const id of DRAFTS[formId]) delete entry.drafts[id];
  if (desk.callId === entry.id) bindForms(entry);
}

function showPaused(paused, reason) {
  desk.paused = paused;
  $("pause-state").textContent = paused ? `paused (${reason || "no reason"})` : "available";
  $("pause-button").textContent = paused ? "Unpause" : "Pause";
}

// The daemon keeps an ended call for a grace period: once it is gone, so is its wrap-up.
async function dropExpired() {
  for (const entry of [...desk.calls.values()]) {
    if (!inWrapUp(entry)) continue;
    const resp = await fetch(`/api/calls/${encodeURIComponent(entry.id)}`, {
      headers: { "Authorization": "Bearer " + desk.token },
    }).catch(() => null);
    if (resp && resp.status === 404) forget(entry.id);
  }
  render();
}

// ---- actions ----------------------------------------------------------------------------------

async function confirmCaller(entry, candidate) {
  try {
    const data = await callApi(entry, "customer", { customer_id: candidate.customer_id, method: "candidate" });
    entry.info = { ...entry.info, call: data.call };
    render();
    keepFocusInPop(entry);
    feedback(`${candidate.name} confirmed as the caller.`, true);
  } catch (err) {
    feedback(err.message, false);
  }
}

function boundCall(form) {
  const entry = desk.calls.get(form.dataset.call);
  if (!entry) throw new Error("No call on screen.");
  return entry;
}

function on(id, handler) {
  $(id).addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const text = await handler(event);
      feedback(text, true);
    } catch (err) {
      feedback(err.message, false);
    }
  });
}

async function callApi(entry, action, body) {
  try {
    return await api("POST", `/api/calls/${encodeURIComponent(entry.id)}/${action}`, body);
  } catch (err) {
    if (/^call_id: no live call/.test(err.message)) {
      forget(entry.id);
      render();
      throw new Error(`The call from ${callerName(entry)} is over and its wrap-up time has passed.`);
    }
    throw err;
  }
}

function wire() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      await signIn($("token").value.trim());
      $("token").value = "";
    } catch (err) {
      $("login-error").textContent = err.message;
    }
  });
  $("logout").addEventListener("click", () => signOut(""));
  for (const formId of Object.keys(DRAFTS)) {
    $(formId).addEventListener("input", keepDraft);
    $(formId).addEventListener("change", keepDraft);
  }
  on("wrapup-form", async (event) => {
    const entry = boundCall(event.target);
    // Read the form now: another call may pop while the requests are under way.
    const text = $("note-text").value.trim();
    const code = $("disposition").value;
    if (!text && !code) throw new Error("Write a note or choose a disposition.");
    const saved = [];
    if (text) {
      const data = await callApi(entry, "notes", { text });
      entry.notes = data.notes;
      saved.push("note");
    }
    if (code) {
      await callApi(entry, "disposition", { code });
      saved.push("disposition");
    }
    clearDrafts(entry, "wrapup-form");
    const who = callerName(entry);
    if (code && inWrapUp(entry)) forget(entry.id);  // wrapped up: off the desk
    render();
    return `Saved ${saved.join(" and ")} for ${who}.`;
  });
  on("escalate-form", async (event) => {
    const entry = boundCall(event.target);
    const body = { tier: $("esc-tier").value, reason: $("esc-reason").value, note: $("esc-note").value };
    const data = await callApi(entry, "escalate", body);
    if (data.call && data.call.notes) entry.notes = data.call.notes;
    clearDrafts(entry, "escalate-form");
    render();
    return `Escalated to ${body.tier}.`;
  });
  $("search-form").addEventListener("submit", (event) => event.preventDefault());
  $("customer-search").addEventListener("input", () => {
    const entry = desk.calls.get($("search-form").dataset.call);
    if (!entry) return;
    clearTimeout(entry.searchTimer);
    const query = $("customer-search").value.trim();
    entry.searchTimer = setTimeout(() => searchCustomers(entry, query), SEARCH_DELAY_MS);
  });
  $("remember-number").addEventListener("change", () => {
    const entry = desk.calls.get(desk.callId);
    if (entry) entry.remember = $("remember-number").checked;
  });
  on("create-form", async (event) => {
    const entry = boundCall(event.target);
    const body = { name: $("new-name").value, remember_number: $("remember-number").checked && !$("remember-line").hidden };
    if ($("new-email").value.trim()) body.email = $("new-email").value.trim();
    if ($("new-address").value.trim()) body.address = $("new-address").value.trim();
    const data = await callApi(entry, "customer/new", body);
    clearDrafts(entry, "create-form");
    $("create-box").open = false;
    identified(entry, data, `${body.name} created and attached to the call.`);
    return $("feedback").textContent;
  });
  $("add-number").addEventListener("click", async () => {
    const entry = desk.calls.get(desk.callId);
    if (!entry) return;
    try {
      const data = await callApi(entry, "number", {});
      entry.numberAdded = true;
      render();
      keepFocusInPop(entry);
      feedback(`${data.number_added} added: the next call from it is recognised.`, true);
    } catch (err) {
      feedback(err.message, false);
    }
  });
  document.addEventListener("keydown", shortcut);
  on("pause-form", async () => {
    const paused = !desk.paused;
    const reason = $("pause-reason").value;
    await api("POST", "/api/agent/pause", { paused, reason: paused ? reason : "" });
    showPaused(paused, reason);
    return paused ? "Paused." : "Available.";
  });
  on("queue-form", async (event) => {
    const action = event.submitter ? event.submitter.dataset.action : "login";
    const queue = $("queue-name").value;
    await api("POST", "/api/agent/queues", { queue, action });
    return action === "login" ? `Logged in to ${queue}.` : `Logged out of ${queue}.`;
  });
  setInterval(() => { if (desk.token && !desk.stopped) dropExpired(); }, GRACE_CHECK_MS);
}

// ---- the keyboard ------------------------------------------------------------------------------
//
// One key per answer-side action, never while typing in a field (Esc leaves the field).

const SHORTCUTS = {
  n: () => focusField("note-text", "Notes"),
  d: () => focusField("disposition", "Disposition"),
  e: () => focusField($("esc-fields").disabled ? null : "esc-reason", "Escalation is not available for this call."),
  "/": () => focusField($("identify-box").hidden ? null : "customer-search", "The caller is identified: there is nobody to search for."),
};

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function focusField(id, otherwise) {
  if (!id) { feedback(otherwise, false); return; }
  const field = $(id);
  field.scrollIntoView({ block: "center" });
  field.focus();
}

function shortcut(event) {
  if (event.key === "Escape" && typing(event.target)) { event.target.blur(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
  if ($("desk").hidden) return;
  const action = SHORTCUTS[event.key];
  if (!action) return;
  event.preventDefault();  // "/" must not be typed into the field it opens
  action();
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  if (desk.token) signIn(desk.token).catch(() => signOut(""));
});
