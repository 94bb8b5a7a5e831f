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

const $ = (id) => document.getElementById(id);
const desk = {
  token: sessionStorage.getItem("cti-token") || "",
  agent: null,
  tiers: [],
  seen: new Set(),
  callId: null,
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

function fill(list, items, render) {
  list.replaceChildren(...items.map(render));
  if (!items.length) {
    const empty = list.tagName === "TBODY" ? row("none") : el("li", "none", "muted empty");
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
  $("esc-tier").replaceChildren(...desk.tiers.map((t) => {
    const o = el("option", t.label);
    o.value = t.name;
    return o;
  }));
  const mine = desk.agent.tiers.length ? desk.tiers.filter((t) => desk.agent.tiers.includes(t.name)) : desk.tiers;
  $("queue-name").replaceChildren(...mine.map((t) => {
    const o = el("option", t.queue);
    o.value = t.queue;
    return o;
  }));
  desk.stopped = false;
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
    setTimeout(connect, desk.retry);
    desk.retry = Math.min(desk.retry * 2, 10000);
  };
}

function signOut(message) {
  desk.stopped = true;
  sessionStorage.removeItem("cti-token");
  if (desk.ws) desk.ws.close();
  desk.ws = null;
  $("desk").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("who").textContent = "";
  setLink("signed out");
  $("login-error").textContent = message || "";
}

// ---- messages ---------------------------------------------------------------------------------

function handle(message) {
  if (message.type === "hello") { setLink("connected", "up"); desk.retry = 500; return; }
  if (message.type === "pong" || message.type === "error") return;
  if (message.id) {
    if (desk.seen.has(message.id)) return;
    desk.seen.add(message.id);
  }
  switch (message.type) {
    case "pop":
      show(message);
      break;
    case "update":
      if (message.call_id === desk.callId) show(message);
      break;
    case "answered":
      if (message.call) show(message);
      else if (message.call_id === desk.callId) setState(message);
      break;
    case "withdrawn":
    case "transferred":
    case "ended":
      if (message.call_id === desk.callId) setState(message);
      break;
    case "agent_state":
      if (message.paused !== undefined) showPaused(Boolean(message.paused), message.reason);
      break;
    default:
      break;
  }
}

function setState(message) {
  const pop = $("pop");
  let text = STATE_LABELS[message.type] || message.type;
  if (message.type === "withdrawn") {
    text = message.reason === "answered_elsewhere"
      ? `Answered by ${message.answered_by || "a colleague"}`
      : `${text} – ${message.reason}`;
  }
  if (message.type === "transferred") text += ` to ${message.to_queue || message.to || "another agent"}`;
  if (message.type === "pop" && message.direction === "outbound") text = `Calling ${message.number || ""}`;
  pop.className = "pop " + (message.type === "pop" ? "ringing" : message.type);
  $("call-state").textContent = text;
}

function show(message) {
  const call = message.call || {};
  const view = call.view || null;
  desk.callId = message.call_id;
  if (message.type !== "update") setState(message);
  const name = view ? view.name : (call.candidates && call.candidates.length > 1 ? "Several possible customers" : "Unknown caller");
  $("customer-name").textContent = name;
  const highlights = view ? (view.highlights && view.highlights.length ? view.highlights : view.flags) : [];
  fill($("flags"), highlights || [], (flag) => {
    const li = el("li", FLAG_LABELS[flag] || flag.replaceAll("_", " "), "flag " + (FLAG_LABELS[flag] ? flag : "other"));
    return li;
  });
  if (!highlights || !highlights.length) $("flags").replaceChildren();
  const parts = [call.caller || "withheld number"];
  if (message.queue) parts.push(`queue ${message.queue}`);
  if (message.tier && message.tier !== message.queue) parts.push(message.tier);
  if (message.wait_s !== null && message.wait_s !== undefined) parts.push(`waited ${Math.round(message.wait_s)} s`);
  if (view && view.language) parts.push(`speaks ${view.language}`);
  $("caller-line").textContent = parts.join(" · ");

  const reasonBox = $("reason-box");
  reasonBox.hidden = !message.reason && !message.previous_agent;
  $("reason").textContent = message.reason || "—";
  const esc = message.escalation;
  const handover = $("handover");
  const handoverNote = $("handover-note");
  if (message.previous_agent) {
    handover.hidden = false;
    handover.textContent = esc
      ? `Escalated to ${esc.tier} by ${message.previous_agent}` + (message.routing_reason ? ` (first routed: ${message.routing_reason})` : "")
      : `Transferred from ${message.previous_agent}`;
  } else {
    handover.hidden = true;
  }
  const note = esc && esc.note ? esc.note : lastNote(message.notes, message.previous_agent);
  handoverNote.hidden = !note;
  handoverNote.textContent = note || "";

  fill($("cases").tBodies[0], view ? view.open_cases : [], (c) => {
    const sla = el("td", c.sla_deadline ? when(c.sla_deadline) : "—");
    if (c.sla_deadline && new Date(c.sla_deadline) < new Date()) sla.className = "overdue";
    return row(`#${c.case_id} ${c.subject}`, c.tier, sla, c.status);
  });
  fill($("orders").tBodies[0], view ? view.orders : [], (o) => row(o.reference, o.status, o.delivery_state, o.tracking_ref));
  fill($("products"), view ? view.products : [], (p) => el("li", p));
  fill($("history"), view ? view.interactions : [], (i) => el("li",
    `${when(i.started_at) || "earlier"} – ${i.queue || i.direction}, ${i.agent || "no agent"}: ${i.outcome}` +
    (i.disposition ? ` (${i.disposition})` : "") + (i.notes ? ` – ${i.notes}` : "")));
  renderNotes(message.notes || call.notes || []);
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

function showPaused(paused, reason) {
  desk.paused = paused;
  $("pause-state").textContent = paused ? `paused (${reason || "no reason"})` : "available";
  $("pause-button").textContent = paused ? "Unpause" : "Pause";
}

// ---- actions ----------------------------------------------------------------------------------

function needCall() {
  if (!desk.callId) throw new Error("No call on screen.");
  return encodeURIComponent(desk.callId);
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
  on("note-form", async () => {
    const data = await api("POST", `/api/calls/${needCall()}/notes`, { text: $("note-text").value });
    $("note-text").value = "";
    renderNotes(data.notes);
    return "Note saved.";
  });
  on("disposition-form", async () => {
    await api("POST", `/api/calls/${needCall()}/disposition`, { code: $("disposition").value });
    return "Disposition saved.";
  });
  on("escalate-form", async () => {
    const body = { tier: $("esc-tier").value, reason: $("esc-reason").value, note: $("esc-note").value };
    await api("POST", `/api/calls/${needCall()}/escalate`, body);
    $("esc-reason").value = "";
    $("esc-note").value = "";
    return `Escalated to ${body.tier}.`;
  });
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
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  if (desk.token) signIn(desk.token).catch(() => signOut(""));
});
