// nodes.js: the Nodes page's script (GET /nodes.js), embedded at build time like nodes.html.
// A file of its own, not inline, so the page's CSP allows scripts from this node only
// (script-src 'self'): an injected inline script would not run.
"use strict";
const KEY = "shoal.apiKey";   // sessionStorage: gone when the browser session ends
const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);
const rows = new Map();       // node Id -> {tr, its cells and controls, node, busy}
let timer = null, loading = false;
let perms = null;             // the key's effective permission names (a Set), once known

// One call to the API: JSON in and out. Throws an Error whose message is for people, with
// .status (0 when the node could not be reached).
async function api(method, path, body) {
  const headers = {"X-Octopus-ApiKey": sessionStorage.getItem(KEY) || ""};
  if (body) headers["Content-Type"] = "application/json";
  let res, text;
  try {
    res = await fetch(path, {method, headers, cache: "no-store",
                             body: body ? JSON.stringify(body) : undefined});
    text = await res.text();
  } catch (e) {
    throw Object.assign(new Error("cannot reach the node"), {status: 0});
  }
  const node = res.headers.get("Octopus-Node");
  $("who").textContent = node ? "served by " + node : "";
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON: use the status */ }
  if (res.ok) return data;
  const why = (data && data.ErrorMessage) || res.status + " " + res.statusText;
  throw Object.assign(new Error(why), {status: res.status});
}

// Two lines of words: #msg says how the last refresh went, #act how the last change went.
function say(id, text, error) {
  $(id).textContent = text;
  $(id).className = error ? "msg error" : "msg";
}

// An error, in words: a refused key brings the key form back with the server's reason; a
// permission the key lacks is said where it happened (the key stays).
function fail(id, e, what) {
  if (e.status === 401 || (e.status === 403 && !/permission/i.test(e.message)))
    return askKey("API key refused: " + e.message);
  say(id, (what ? what + ": " : "") + e.message, true);
}

const may = (p) => !perms || perms.has(p);   // unknown yet: the server decides

// Who the key belongs to, and what it may do: the user and its effective permissions.
async function whoAmI() {
  const me = await api("GET", "/api/users/me");
  const p = await api("GET", me.Links.Permissions);
  perms = new Set([...(p.SystemPermissions || []), ...Object.keys(p.SpacePermissions || {})]);
  $("me").textContent = me.Username + (me.Role ? " (" + me.Role + ")" : "");
  $("me").title = [...perms].sort().join(", ") || "no permissions";
  for (const r of rows.values()) update(r, r.node);
}

function askKey(why) {
  clearInterval(timer);
  timer = null;
  sessionStorage.removeItem(KEY);
  $("main").hidden = $("change-key").hidden = true;
  $("key-form").hidden = false;
  $("key-msg").textContent = why;
  $("key").focus();
}

function start() {
  $("key-form").hidden = true;
  $("main").hidden = $("change-key").hidden = false;
  say("act", "");
  perms = null;
  whoAmI().catch((e) => fail("msg", e)).finally(refresh);
  timer = setInterval(refresh, REFRESH_MS);
}

// "3s ago", "5m ago", ... from an ISO time; the exact time goes in the cell's title.
function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}

function el(tag, props) {
  return Object.assign(document.createElement(tag), props);
}

function cell(tr, child) {
  const td = tr.insertCell();
  if (child) td.append(child);
  return td;
}

// PUTs the node's writeable part with one change; the answer is the node after it.
async function save(r, change, what) {
  const n = r.node;
  const body = Object.assign({Id: n.Id, Name: n.Name, MaxConcurrentTasks: n.MaxConcurrentTasks,
                              IsInMaintenanceMode: n.IsInMaintenanceMode}, change);
  r.busy = true;
  try {
    const after = await api("PUT", "/api/octopusservernodes/" + encodeURIComponent(n.Id), body);
    r.busy = false;
    update(r, after);
    say("act", what + ": saved");
  } catch (e) {
    r.busy = false;
    update(r, n);   // back to what the server last said
    fail("act", e, what);
  }
}

function newRow(n) {
  const r = {tr: el("tr"), status: el("span"), busy: false,
             cap: el("input", {type: "number", min: 0, max: 10000, className: "cap"}),
             tasks: el("a", {href: "#tasks=" + encodeURIComponent(n.Name),
                             title: "active tasks on " + n.Name}),
             drain: el("input", {type: "checkbox"})};
  r.tr.dataset.name = n.Name;
  r.name = cell(r.tr);
  cell(r.tr, r.status);
  r.seen = cell(r.tr);
  cell(r.tr, r.cap);
  cell(r.tr, r.tasks).className = "num";
  cell(r.tr, r.drain);
  r.cap.setAttribute("aria-label", "task cap of " + n.Name);
  r.drain.setAttribute("aria-label", "drain " + n.Name);
  r.cap.addEventListener("change", () => {
    const what = "Task cap of " + r.node.Name, v = r.cap.value.trim();
    if (/^\d+$/.test(v)) return save(r, {MaxConcurrentTasks: Number(v)}, what);
    update(r, r.node);
    say("act", what + ": expected a whole number from 0 to 10000", true);
  });
  r.drain.addEventListener("change", () =>
    save(r, {IsInMaintenanceMode: r.drain.checked}, "Drain of " + r.node.Name));
  return r;
}

// Shows n in its row; leaves the controls alone while a PUT is out or the cap is being edited.
function update(r, n) {
  r.node = n;
  r.name.textContent = n.Name;
  r.status.textContent = n.Status;
  r.status.className = "status " + n.Status;
  r.tr.classList.toggle("offline", n.IsOffline);
  r.seen.textContent = ago(n.LastSeen);
  r.seen.title = n.LastSeen || "";
  r.tasks.textContent = n.RunningTaskCount;
  const admin = may("AdministerSystem");
  r.cap.disabled = r.drain.disabled = !admin;
  r.cap.title = r.drain.title = admin ? "" : "needs the AdministerSystem permission";
  if (r.busy) return;
  if (document.activeElement !== r.cap) r.cap.value = n.MaxConcurrentTasks;
  r.drain.checked = n.IsInMaintenanceMode;
}

// The ten newest events, for a key with EventView.
async function showEvents() {
  const section = $("events");
  section.hidden = !(perms && perms.has("EventView"));
  if (section.hidden) return;
  const page = await api("GET", "/api/events?take=10");
  const body = section.querySelector("tbody");
  body.replaceChildren();
  for (const ev of page.Items) {
    const tr = body.insertRow();
    cell(tr).textContent = ago(ev.Occurred);
    tr.lastChild.title = ev.Occurred || "";
    cell(tr).textContent = ev.Username || "";
    cell(tr).textContent = ev.Message || "";
  }
  if (!page.Items.length) Object.assign(cell(body.insertRow()), {colSpan: 3,
                                                                 textContent: "No events yet."});
}

async function refresh() {
  if (loading || !sessionStorage.getItem(KEY)) return;   // no key: the form is up, wait for it
  loading = true;
  try {
    const nodes = await api("GET", "/api/octopusservernodes/all");
    const body = document.querySelector("#nodes tbody"), seen = new Set();
    for (const n of nodes) {
      let r = rows.get(n.Id);
      if (!r) rows.set(n.Id, r = newRow(n));
      update(r, n);
      body.append(r.tr);   // in the server's order
      seen.add(n.Id);
    }
    for (const [id, r] of rows) if (!seen.has(id)) { r.tr.remove(); rows.delete(id); }
    say("msg", nodes.length ? "Updated " + new Date().toLocaleTimeString()
                            : "No nodes registered.");
    await showTasks();
    await showEvents();
  } catch (e) {
    fail("msg", e);
  } finally {
    loading = false;
  }
}

// The second view: #tasks=<name> lists that node's executing and cancelling tasks.
async function showTasks() {
  const m = /^#tasks=(.+)$/.exec(location.hash), section = $("tasks");
  section.hidden = !m;
  if (!m) return;
  const name = decodeURIComponent(m[1]);
  const page = await api("GET", "/api/tasks?node=" + encodeURIComponent(name) +
                         "&states=Executing,Cancelling&take=100");
  $("tasks-node").textContent = name;
  const body = section.querySelector("tbody");
  body.replaceChildren();
  for (const t of page.Items) {
    const tr = body.insertRow();
    for (const v of [t.Id, t.State, t.Type, t.Queue, ago(t.StartTime)]) cell(tr).textContent = v;
    tr.lastChild.title = t.StartTime || "";
  }
  if (!page.Items.length) Object.assign(cell(body.insertRow()), {colSpan: 5,
                                                                 textContent: "No active tasks."});
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $("key").value);
  $("key").value = "";
  start();
});
$("change-key").addEventListener("click", () => askKey(""));
window.addEventListener("hashchange", () => showTasks().catch((e) => fail("msg", e)));
if (sessionStorage.getItem(KEY)) start(); else askKey("");
