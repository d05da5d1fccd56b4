// mediator operator console: the transaction log, failures by cause, one transaction, rerun.
// Plain JavaScript over the operator API (/api/...); every value is inserted as text, never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function statusBadge(status) {
  return el("span", status, { class: "status s-" + String(status).replaceAll(" ", "-") });
}

async function api(path, options) {
  const resp = await fetch(path, options);
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || ("HTTP " + resp.status));
  return body;
}

function showError(err) {
  const box = $("#error");
  box.textContent = err ? String(err.message || err) : "";
  box.hidden = !err;
}

// A failure's cause: its text without ids, numbers and quoted values, so that alike failures group.
function causeOf(error) {
  return (error || "").replace(/'[^']*'/g, "'…'").replace(/\b[0-9A-Z]{26}\b/g, "…").replace(/\b\d+\b/g, "N").slice(0, 140);
}

async function loadStats() {
  const { statuses } = await api("/api/stats");
  const nav = $("#stats");
  nav.replaceChildren();
  for (const [status, count] of Object.entries(statuses)) {
    const a = el("a", status + " ", { href: "#status=" + encodeURIComponent(status) });
    a.append(el("b", count));
    nav.append(a);
  }
}

let nextUrl = null;

function query() {
  const form = new FormData($("#filters"));
  const params = new URLSearchParams();
  for (const [k, v] of form.entries()) {
    if (!v) continue;
    params.set(k, (k === "since" || k === "until") ? new Date(v).toISOString() : v);
  }
  return params;
}

function addRows(transactions) {
  const body = $("#transactions tbody");
  for (const t of transactions) {
    const tr = el("tr", null, { "data-id": t.id });
    tr.append(el("td", t.received_at));
    const st = el("td"); st.append(statusBadge(t.status)); tr.append(st);
    for (const v of [t.channel, t.message_type, t.control_id, t.error]) tr.append(el("td", v));
    tr.addEventListener("click", () => { location.hash = "tx=" + t.id; });
    body.append(tr);
  }
}

async function loadList() {
  const params = query();
  params.set("limit", "100");
  const data = await api("/api/transactions?" + params);
  $("#transactions tbody").replaceChildren();
  addRows(data.transactions);
  nextUrl = data.next;
  $("#more").hidden = !nextUrl;
  const failed = data.transactions.filter((t) => t.status === "Failed" || t.status === "Completed with errors");
  const groups = new Map();
  for (const t of failed) groups.set(causeOf(t.error), (groups.get(causeOf(t.error)) || 0) + 1);
  const tbody = $("#causes tbody");
  tbody.replaceChildren();
  for (const [cause, count] of [...groups.entries()].sort((a, b) => b[1] - a[1])) {
    const tr = el("tr");
    tr.append(el("td", cause), el("td", count));
    tbody.append(tr);
  }
  $("#causes").hidden = groups.size === 0;
}

async function loadMore() {
  if (!nextUrl) return;
  const data = await api(nextUrl);
  addRows(data.transactions);
  nextUrl = data.next;
  $("#more").hidden = !nextUrl;
}

async function showTransaction(id) {
  const tx = await api("/api/transactions/" + encodeURIComponent(id));
  $("#tx-id").textContent = tx.id;
  const dl = $("#tx-summary");
  dl.replaceChildren();
  for (const key of ["status", "channel", "protocol", "transport", "client", "message_type", "control_id",
                     "received_at", "updated_at", "attempts", "duplicates", "rerun_of", "error"]) {
    if (tx[key] === "" || tx[key] === null || tx[key] === undefined) continue;
    dl.append(el("dt", key));
    const dd = el("dd");
    if (key === "status") dd.append(statusBadge(tx.status)); else dd.textContent = tx[key];
    dl.append(dd);
  }
  const rows = $("#attempts tbody");
  rows.replaceChildren();
  for (const a of tx.routes || []) {
    const tr = el("tr");
    for (const v of [a.route, a.attempt, a.started_at, Math.round(a.duration_ms), a.response_status ?? "—",
                     a.outcome, a.error]) tr.append(el("td", v));
    rows.append(tr);
  }
  const req = tx.request || {};
  $("#tx-request").textContent = (req.body !== undefined ? req.body : "(binary, base64) " + req.body_base64)
    .replaceAll("\r", "\n");
  $("#tx-ack").textContent = (tx.ack || "").replaceAll("\r", "\n");
  $("#tx-result").textContent = tx.result ? JSON.stringify(tx.result, null, 2) : "";
  $("#rerun-result").textContent = "";
  $("#rerun").onclick = async () => {
    try {
      const r = await api("/api/transactions/" + encodeURIComponent(tx.id) + "/rerun", { method: "POST" });
      $("#rerun-result").textContent = "queued as " + r.id;
      const link = el("a", " open", { href: "#tx=" + r.id });
      $("#rerun-result").append(link);
    } catch (err) { showError(err); }
  };
}

async function route() {
  showError(null);
  const hash = new URLSearchParams(location.hash.slice(1));
  const id = hash.get("tx");
  $("#detail-view").hidden = !id;
  $("#list-view").hidden = !!id;
  try {
    await loadStats();
    if (id) {
      await showTransaction(id);
    } else {
      if (hash.get("status")) $("#filters").elements.status.value = hash.get("status");
      await loadList();
    }
  } catch (err) { showError(err); }
  document.body.dataset.ready = "1";
}

$("#filters").addEventListener("submit", (ev) => { ev.preventDefault(); loadList().catch(showError); });
$("#more").addEventListener("click", () => loadMore().catch(showError));
$("#back").addEventListener("click", (ev) => { ev.preventDefault(); location.hash = ""; });
window.addEventListener("hashchange", route);
route();
