// Clean data, on the supervisor console: likely duplicates with their score and reasons,
// merge two customers (two clicks: choose, then confirm), divide one (move or share chosen
// numbers, move calls and cases to another customer or a new one), and the audit of both.
// Talks to /api/crm/* (cti/http/customers_admin.py). Plain DOM, text only (no innerHTML).
"use strict";

(() => {
  const dupes = { token: null };
  const byId = (id) => document.getElementById(id);

  function make(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    node.append(...children);
    return node;
  }

  async function call(method, path, body) {
    const resp = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${dupes.token}`, "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
    return data;
  }

  function say(text, bad = false) {
    const out = byId("dupes-feedback");
    out.textContent = text;
    out.classList.toggle("error", bad);
  }

  function movedCount(entry) {
    const moved = entry.detail.moved || {};
    return Object.values(moved).reduce((n, ids) => n + ids.length, 0);
  }

  // ---- duplicates and merge -------------------------------------------------------------

  function pairRow(pair) {
    const tr = make("tr", { "data-pair": `${pair.first_id}-${pair.second_id}` });
    const reasons = make("ul", { class: "reasons" });
    for (const r of pair.reasons) {
      reasons.append(make("li", { text: `${r.points > 0 ? "+" : ""}${r.points} ${r.detail}` }));
    }
    const actions = make("td", { class: "actions" });
    for (const [keep, gone] of [[pair.first_id, pair.second_id], [pair.second_id, pair.first_id]]) {
      const button = make("button", { type: "button", text: `Keep #${keep}` });
      button.addEventListener("click", () => askMerge(actions, keep, gone));
      actions.append(button);
    }
    tr.append(
      make("td", { class: "score num", text: String(pair.score) }),
      make("td", { text: `#${pair.first_id} ${pair.first_name}` }),
      make("td", { text: `#${pair.second_id} ${pair.second_name}` }),
      make("td", {}, reasons),
      actions,
    );
    return tr;
  }

  function askMerge(cell, keep, gone) {
    cell.replaceChildren(
      make("span", { text: `Merge #${gone} into #${keep}? ` }),
      make("button", { type: "button", class: "confirm", text: "Confirm merge",
                       onclick: () => merge(keep, gone) }),
      make("button", { type: "button", text: "Cancel", onclick: findDuplicates }),
    );
  }

  async function merge(keep, gone) {
    try {
      const entry = await call("POST", "/api/crm/merge", { survivor_id: keep, merged_id: gone });
      say(`merged #${gone} into #${keep}: ${movedCount(entry)} records moved, none lost.`);
      await findDuplicates();
      await loadAudit();
    } catch (err) {
      say(`merge: ${err.message}`, true);
    }
  }

  async function findDuplicates() {
    const body = byId("dupes-pairs").tBodies[0];
    try {
      const minScore = byId("dupes-min").value || "50";
      const found = await call("GET", `/api/crm/duplicates?min_score=${encodeURIComponent(minScore)}`);
      body.replaceChildren(...found.pairs.map(pairRow));
      byId("dupes-count").textContent = String(found.pairs.length);
      if (!found.pairs.length) {
        body.append(make("tr", {}, make("td", { colSpan: 5, class: "none",
                                                text: "No likely duplicates." })));
      }
    } catch (err) {
      say(`duplicates: ${err.message}`, true);
    }
  }

  // ---- divide ---------------------------------------------------------------------------

  function choice(name, value, label) {
    const box = make("input", { type: "checkbox", name, value: String(value) });
    return make("label", { class: "choice" }, box, ` ${label}`);
  }

  async function loadRecords(event) {
    event.preventDefault();
    const id = byId("divide-id").value.trim();
    const list = byId("divide-records");
    list.replaceChildren();
    try {
      const held = await call("GET", `/api/crm/customers/${encodeURIComponent(id)}/records`);
      list.append(make("p", { text: `#${held.customer_id} ${held.name}` }));
      for (const p of held.phones) {
        const label = `${p.number} (${p.kind})`;
        list.append(make("div", { class: "phone", "data-phone": String(p.id) },
                         choice("move-phone", p.id, `move ${label}`),
                         choice("share-phone", p.id, "share it")));
      }
      for (const i of held.interactions) {
        list.append(choice("interaction", i.id, `call ${i.started_at || "?"} ${i.caller || ""}`));
      }
      for (const c of held.cases) list.append(choice("case", c.id, `case #${c.id} ${c.subject}`));
      byId("divide-go").hidden = false;
    } catch (err) {
      say(`divide: ${err.message}`, true);
    }
  }

  function checked(name) {
    return [...document.querySelectorAll(`#divide-records input[name="${name}"]:checked`)]
      .map((box) => Number(box.value));
  }

  async function divide(event) {
    event.preventDefault();
    const body = {
      customer_id: Number(byId("divide-id").value.trim()),
      phone_ids: checked("move-phone"),
      shared_phone_ids: checked("share-phone"),
      interaction_ids: checked("interaction"),
      case_ids: checked("case"),
    };
    const target = byId("divide-to").value.trim();
    if (/^[0-9]+$/.test(target)) body.to_customer_id = Number(target);
    else body.new_customer = { name: target };
    try {
      const entry = await call("POST", "/api/crm/divide", body);
      say(`divided #${entry.customer_id}: ${movedCount(entry)} records moved to #${entry.other_id}.`);
      byId("divide-records").replaceChildren();
      byId("divide-go").hidden = true;
      await loadAudit();
    } catch (err) {
      say(`divide: ${err.message}`, true);
    }
  }

  // ---- audit ----------------------------------------------------------------------------

  async function loadAudit() {
    try {
      const found = await call("GET", "/api/crm/audit");
      const list = byId("dupes-audit");
      list.replaceChildren(...found.entries.slice().reverse().map((e) => make("li", {
        "data-audit": String(e.id),
        text: `${new Date(e.at * 1000).toISOString().slice(0, 19)}Z ${e.actor}: ${e.action} ` +
              `#${e.customer_id} / #${e.other_id} (${movedCount(e)} records moved)`,
      })));
    } catch (err) {
      say(`audit: ${err.message}`, true);
    }
  }

  // ---- the section ----------------------------------------------------------------------

  function section() {
    const pairs = make("table", { id: "dupes-pairs" },
      make("thead", {}, make("tr", {}, ...["Score", "Customer", "Customer", "Why", "Merge"]
        .map((h) => make("th", { text: h })))),
      make("tbody"));
    const find = make("form", { id: "dupes-find", class: "filters" },
      make("label", { htmlFor: "dupes-min", text: "Minimum score" }),
      make("input", { id: "dupes-min", type: "number", min: 0, max: 100, value: 50 }),
      make("button", { type: "submit", text: "Find duplicates" }));
    find.addEventListener("submit", (e) => { e.preventDefault(); findDuplicates(); });
    const load = make("form", { id: "divide-load", class: "filters" },
      make("label", { htmlFor: "divide-id", text: "Divide customer" }),
      make("input", { id: "divide-id", inputMode: "numeric", required: true }),
      make("button", { type: "submit", text: "Show records" }));
    load.addEventListener("submit", loadRecords);
    const go = make("form", { id: "divide-go", class: "filters", hidden: true },
      make("label", { htmlFor: "divide-to", text: "To customer id, or a new customer's name" }),
      make("input", { id: "divide-to", required: true, maxLength: 200 }),
      make("button", { type: "submit", text: "Divide" }));
    go.addEventListener("submit", divide);
    return make("section", { id: "dupes", class: "card" },
      make("h3", { id: "dupes-title" }, "Clean data: likely duplicates ",
           make("span", { id: "dupes-count", class: "count", text: "0" })),
      find, pairs,
      make("h3", { text: "Divide a customer" }), load,
      make("div", { id: "divide-records", class: "records" }), go,
      make("p", { id: "dupes-feedback", role: "status" }),
      make("h3", { text: "Merges and divides" }),
      make("ul", { id: "dupes-audit", class: "audit" }));
  }

  document.addEventListener("DOMContentLoaded", () => {
    const consoleDiv = byId("console");
    if (!consoleDiv) return;
    const part = section();
    part.setAttribute("aria-labelledby", "dupes-title");
    consoleDiv.append(part);
    // The console's own sign-in checks the token; the same token calls the clean-data API.
    byId("login-form").addEventListener("submit", () => { dupes.token = byId("token").value.trim(); });
    new MutationObserver(() => {
      if (!consoleDiv.hidden && dupes.token) { findDuplicates(); loadAudit(); }
    }).observe(consoleDiv, { attributes: true, attributeFilter: ["hidden"] });
  });
})();
