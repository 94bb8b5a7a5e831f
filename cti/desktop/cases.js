// Cases from the pop and callbacks of callers who gave up. Plain JS, no build step.
// Listens to app.js's events: `cti:call` (detail: {id, call, state} of the call on screen, or
// null), `cti:callback` (a task of the agent's queues changed: detail is the task) and
// `cti:link` ({up}: the WebSocket connected or was lost); works over the REST API
// (/api/cases…, /api/callbacks…) with the desk's token.
"use strict";

(() => {
  const panel = {
    callId: null,
    customerId: null,
    key: "",
    cases: [],
    reasons: [],
    tiers: [],
    callbacks: [],
    pollMs: 10000,
    poller: null,
    started: false,
    casesOff: false,
    callbacksOff: false,
  };
  const byId = (id) => document.getElementById(id);
  const token = () => sessionStorage.getItem("cti-token") || "";

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function button(text, label, onClick) {
    const b = el("button", text, "small");
    b.type = "button";
    if (label) b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }

  async function api(method, path, body) {
    const resp = await fetch(path, {
      method,
      headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.error || resp.statusText);
    return data;
  }

  function say(text, good) {
    const box = byId("case-feedback");
    box.textContent = text;
    box.className = "feedback " + (good ? "good" : "bad");
  }

  // "3 h 12 min left", "overdue by 2 h 5 min": the SLA clock of one case, now.
  function slaText(deadline) {
    const left = Math.round((new Date(deadline).getTime() - Date.now()) / 1000);
    const abs = Math.abs(left);
    const days = Math.floor(abs / 86400);
    const hours = Math.floor((abs % 86400) / 3600);
    const minutes = Math.floor((abs % 3600) / 60);
    const span = days ? `${days} d ${hours} h` : hours ? `${hours} h ${minutes} min` : `${minutes} min`;
    return { overdue: left < 0, text: left < 0 ? `overdue by ${span}` : `${span} left` };
  }

  function tickClocks() {
    for (const node of document.querySelectorAll("#case-list .sla[data-deadline]")) {
      const sla = slaText(node.dataset.deadline);
      node.textContent = sla.text;
      node.classList.toggle("overdue", sla.overdue);
    }
  }

  function build() {
    const host = byId("cases-panel");
    if (!host || panel.started) return;
    panel.started = true;
    host.innerHTML = `
      <section id="case-work" class="card" aria-labelledby="case-work-title">
        <h3 id="case-work-title">Cases of this caller</h3>
        <p id="case-none" class="muted">No call on screen.</p>
        <ul id="case-list" class="case-list" aria-label="Open cases with their SLA"></ul>
        <form id="case-open-form" hidden>
          <label for="case-reason">Open a case for</label>
          <select id="case-reason" required></select>
          <label for="case-subject">Subject (optional)</label>
          <input id="case-subject" maxlength="200">
          <button type="submit">Open case</button>
        </form>
        <form id="case-escalate-form" hidden>
          <label for="case-esc-case">Escalate a case with the call</label>
          <select id="case-esc-case"></select>
          <label for="case-esc-tier">Tier for the case and call</label>
          <select id="case-esc-tier"></select>
          <label for="case-esc-reason">Why</label>
          <input id="case-esc-reason" maxlength="200" required>
          <button type="submit">Move case with the call</button>
        </form>
        <p id="case-feedback" class="feedback" role="status" aria-live="polite"></p>
      </section>
      <section id="callbacks-card" class="card" aria-labelledby="callbacks-title">
        <h3 id="callbacks-title">Callers who gave up</h3>
        <ul id="callback-list" class="callback-list" aria-label="Callers to call back"></ul>
        <p id="callback-news" class="sr-only" role="status" aria-live="polite"></p>
      </section>`;
    byId("case-open-form").addEventListener("submit", (e) => { e.preventDefault(); openCase(); });
    byId("case-escalate-form").addEventListener("submit", (e) => { e.preventDefault(); escalate(); });
    setInterval(tickClocks, 1000);
    setInterval(tickGaveUp, 1000);
  }

  async function loadSetup() {
    try {
      const [reasons, login] = await Promise.all([
        api("GET", "/api/cases/reasons"),
        api("POST", "/api/login", { token: token() }),
      ]);
      panel.reasons = reasons.reasons || [];
      panel.tiers = login.tiers || [];
      panel.casesOff = reasons.enabled === false;
    } catch (err) {
      return;
    }
    byId("case-work").hidden = panel.casesOff;
    byId("case-reason").replaceChildren(...panel.reasons.map((r) => {
      const o = el("option", `${r.label} (${r.tier}, ${r.sla_hours} h)`);
      o.value = r.name;
      return o;
    }));
    byId("case-esc-tier").replaceChildren(...panel.tiers.map((t) => {
      const o = el("option", t.label || t.name);
      o.value = t.name;
      return o;
    }));
  }

  function customerOf(call) {
    if (!call || call.customer_id === null || call.customer_id === undefined) return null;
    return call.status === "match" || call.confirmed_by ? call.customer_id : null;
  }

  async function onCall(detail) {
    const callId = detail ? detail.id : null;
    const customerId = detail ? customerOf(detail.call) : null;
    const key = `${callId}|${customerId}`;
    if (key === panel.key) return;
    panel.key = key;
    panel.callId = callId;
    panel.customerId = customerId;
    panel.cases = [];
    await refreshCases();
  }

  async function refreshCases() {
    if (panel.casesOff) return;
    const known = panel.callId && panel.customerId !== null;
    byId("case-open-form").hidden = !known;
    if (known) {
      try {
        const data = await api("GET", `/api/cases?customer_id=${panel.customerId}`);
        panel.cases = data.cases || [];
      } catch (err) {
        say(err.message, false);
      }
    }
    renderCases();
  }

  function renderCases() {
    const none = byId("case-none");
    none.hidden = Boolean(panel.callId && panel.customerId !== null && panel.cases.length);
    none.textContent = !panel.callId ? "No call on screen."
      : panel.customerId === null ? "No customer identified on this call: confirm or find the caller first."
      : "No open case.";
    byId("case-list").replaceChildren(...panel.cases.map((c) => {
      const li = el("li", null, "case");
      li.dataset.case = c.case_id;
      li.append(el("strong", `#${c.case_id} ${c.subject}`), ` · ${c.tier || "no tier"} · ${c.status} · `);
      if (c.sla_deadline) {
        const sla = slaText(c.sla_deadline);
        const clock = el("span", sla.text, "sla" + (sla.overdue ? " overdue" : ""));
        clock.dataset.deadline = c.sla_deadline;
        li.append(clock);
      } else {
        li.append(el("span", "no SLA", "sla"));
      }
      const calls = c.calls || [];
      li.append(` · ${calls.length} call${calls.length === 1 ? "" : "s"}`);
      if (calls.length) li.title = "Calls: " + calls.map((k) => k.call_id).join(", ");
      const linked = calls.some((k) => k.call_id === panel.callId);
      if (!linked) li.append(" ", button("Add this call", `Add this call to case ${c.case_id}`, () => addCall(c)));
      li.append(" ", button("Close", `Close case ${c.case_id}`, () => closeCase(c)));
      return li;
    }));
    const escalate = byId("case-escalate-form");
    escalate.hidden = !panel.cases.length;
    byId("case-esc-case").replaceChildren(...panel.cases.map((c) => {
      const o = el("option", `#${c.case_id} ${c.subject}`);
      o.value = c.case_id;
      return o;
    }));
  }

  async function openCase() {
    if (!panel.callId) return;
    const body = { reason: byId("case-reason").value };
    const subject = byId("case-subject").value.trim();
    if (subject) body.subject = subject;
    try {
      const data = await api("POST", `/api/calls/${encodeURIComponent(panel.callId)}/cases`, body);
      byId("case-subject").value = "";
      say(`Case #${data.case.case_id} opened`, true);
    } catch (err) {
      say(err.message, false);
    }
    await refreshCases();
  }

  async function addCall(c) {
    try {
      await api("POST", `/api/cases/${c.case_id}/calls`, { call_id: panel.callId });
      say(`This call is on case #${c.case_id}`, true);
    } catch (err) {
      say(err.message, false);
    }
    await refreshCases();
  }

  async function closeCase(c) {
    try {
      await api("POST", `/api/cases/${c.case_id}/close`, {});
      say(`Case #${c.case_id} closed`, true);
    } catch (err) {
      say(err.message, false);
    }
    await refreshCases();
  }

  async function escalate() {
    const caseId = Number(byId("case-esc-case").value);
    const body = { tier: byId("case-esc-tier").value, reason: byId("case-esc-reason").value.trim(), case_id: caseId };
    try {
      await api("POST", `/api/calls/${encodeURIComponent(panel.callId)}/escalate`, body);
      say(`Case #${caseId} escalated with the call to ${body.tier}`, true);
    } catch (err) {
      say(err.message, false);
    }
    await refreshCases();
  }

  // ---- callbacks -------------------------------------------------------------------------

  function ago(seconds) {
    const s = Math.max(0, Math.round(seconds));
    return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  // The list as the daemon last said it: read whole on (re)connecting, then kept up to date
  // by the `callback` messages of the WebSocket (app.js's `cti:callback` event), one task at a
  // time. While the link is down the list is read every poll_s instead.
  async function refreshCallbacks() {
    if (!token()) return;
    // The list is read as it was when the daemon answered: a task pushed meanwhile (opened,
    // dialled, closed) is newer, and would be lost under it until the next reconnect.
    const pushed = [];
    panel.pushedWhileReading = pushed;
    try {
      const data = await api("GET", "/api/callbacks");
      const now = Date.now();
      panel.callbacks = (data.callbacks || []).map((t) => ({ ...t, receivedAt: now }));
      for (const task of pushed) applyTask(task);
      panel.callbacksOff = data.enabled === false;
      // The daemon's pace applies from now on: the wait already scheduled (the default's,
      // set at page load, before sign-in) would otherwise come first.
      const pollMs = data.poll_s ? data.poll_s * 1000 : panel.pollMs;
      if (pollMs !== panel.pollMs) {
        panel.pollMs = pollMs;
        poll();
      }
    } catch (err) {
      panel.callbacks = [];
      for (const task of pushed) applyTask(task);
    } finally {
      if (panel.pushedWhileReading === pushed) panel.pushedWhileReading = null;
    }
    renderCallbacks();
  }

  const OPEN = new Set(["open", "dialling"]);

  // "gave up 2 min ago", counted on from when the daemon said how long ago it was.
  function gaveUp(t) {
    const since = (t.since_s || 0) + (Date.now() - (t.receivedAt || Date.now())) / 1000;
    return `gave up ${ago(since)} ago`;
  }

  function tickGaveUp() {
    for (const node of document.querySelectorAll("#callback-list .gave-up")) {
      const t = panel.callbacks.find((x) => String(x.task_id) === node.dataset.task);
      if (t) node.textContent = gaveUp(t);
    }
  }

  // Callers who give up together are said together: a polite status line whose text is
  // replaced is read once, with the last text only. The line starts afresh after a pause.
  const NEWS_MS = 5000;

  function sayNews(text) {
    panel.news = [...(panel.news || []), text];
    byId("callback-news").textContent = panel.news.join(" ");
    clearTimeout(panel.newsTimer);
    panel.newsTimer = setTimeout(() => { panel.news = []; }, NEWS_MS);
  }

  // The task in the list as it now is; true when the list did not have it.
  function applyTask(task) {
    const rest = panel.callbacks.filter((t) => t.task_id !== task.task_id);
    const fresh = rest.length === panel.callbacks.length;
    if (OPEN.has(task.status)) {
      rest.push(task);
      rest.sort((a, b) => a.created_at - b.created_at || a.task_id - b.task_id);
    }
    panel.callbacks = rest;
    return fresh;
  }

  function taskChanged(task) {
    if (!task || task.task_id === undefined) return;
    task.receivedAt = Date.now();
    // Newer than the list being read (if one is): applied again over it when it comes.
    if (panel.pushedWhileReading) panel.pushedWhileReading.push(task);
    if (applyTask(task) && task.status === "open") {
      // Screen readers hear of a caller to call back as sighted agents see the list grow.
      sayNews(`${task.customer_name || task.number} gave up in ${task.queue}: to call back.`);
    }
    renderCallbacks();
  }

  function renderCallbacks() {
    build();
    byId("callbacks-card").hidden = Boolean(panel.callbacksOff);
    const list = byId("callback-list");
    list.replaceChildren(...panel.callbacks.map((t) => {
      const li = el("li", null, "callback");
      li.dataset.task = t.task_id;
      li.append(el("strong", t.customer_name || "Unknown caller"), ` ${t.number} · ${t.queue}`);
      li.append(` · waited ${ago(t.wait_s || 0)} · `);
      const since = el("span", gaveUp(t), "gave-up");
      since.dataset.task = t.task_id;
      li.append(since);
      if (t.attempts > 1) li.append(` · ${t.attempts} attempts`);
      if (t.status === "dialling") {
        li.append(el("span", ` · ${t.dialled_by} is calling`, "muted"));
      } else {
        const name = t.customer_name || t.number;
        li.append(" ", button("Call back", `Call back ${name}`, () => dial(t)));
      }
      return li;
    }));
    if (!panel.callbacks.length) list.replaceChildren(el("li", "nobody to call back", "muted empty"));
  }

  async function dial(t) {
    try {
      const data = await api("POST", `/api/callbacks/${t.task_id}/dial`, {});
      say(`Calling ${t.customer_name || t.number} back`, true);
      if (data.task) taskChanged({ ...data.task, since_s: (t.since_s || 0) + (Date.now() - t.receivedAt) / 1000 });
    } catch (err) {
      say(err.message, false);
    }
  }

  // Polling only while the WebSocket is down (no pushed changes then).
  function linkChanged(up) {
    clearTimeout(panel.poller);
    panel.poller = null;
    if (up) { refreshCallbacks(); return; }
    const again = () => {
      if (panel.callbacksOff) return;
      panel.poller = setTimeout(async () => { await refreshCallbacks(); again(); }, panel.pollMs);
    };
    again();
  }

  window.addEventListener("cti:call", (event) => {
    build();
    if (!panel.reasons.length) loadSetup();
    onCall(event.detail);
  });
  window.addEventListener("cti:callback", (event) => taskChanged(event.detail));
  window.addEventListener("cti:link", (event) => linkChanged(event.detail.up));
  document.addEventListener("DOMContentLoaded", () => {
    build();
    if (token()) loadSetup();
  });
})();
