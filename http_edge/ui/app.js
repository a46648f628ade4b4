// The govbus dashboard: plain DOM, no framework. It reads the edge's own API (relative URLs,
// so it works behind a proxy that mounts the edge under a prefix), updates from the event
// stream, and shows a past moment through /v1/history. The token lives in an HttpOnly cookie
// set by POST /ui/session: this script never sees it, and no URL carries it.
"use strict";

const ROOT = new URL("..", document.baseURI);
const MAX_EVENTS = 200;
const REFRESH_MS = 300; // live data is refetched at most this often while events arrive

const state = {
  session: null,
  selected: null, // the service whose instances are shown
  live: true,
  at: null, // the moment shown (history mode)
  oldest: null, // Date of the oldest recorded moment, or null
  view: null, // what is shown: {services, protection, instances, resources}
  stream: null,
  refreshTimer: null,
  lastRefresh: 0,
};

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function setStatus(text) {
  $("status").textContent = text || "";
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const response = await fetch(new URL(path, ROOT), {
    credentials: "same-origin",
    headers: { Accept: "application/json", ...(options.headers || {}) },
    ...options,
  });
  if (response.status === 401) throw new Unauthorized("signed out");
  return response;
}

async function json(path) {
  const response = await api(path);
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    throw new Error(problem.detail || `${path}: HTTP ${response.status}`);
  }
  return response.json();
}

// -- session ---------------------------------------------------------------------------------

async function loadSession() {
  state.session = await json("ui/session");
  const needsToken = state.session.auth && !state.session.signed_in;
  $("sign-in").hidden = !needsToken;
  $("main").hidden = needsToken;
  $("sign-out").hidden = !state.session.auth || needsToken;
  if (!needsToken) start();
  else $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  // Not `api()`: a refused token (401) is an answer to show here, not a signed-out session.
  const response = await fetch(new URL("ui/session", ROOT), {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ token: $("token").value.trim() }),
  }).catch((error) => ({ ok: false, json: async () => ({ detail: error.message }) }));
  $("token").value = "";
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    $("sign-in-error").textContent = problem.detail || "the token was refused";
    return;
  }
  await loadSession();
}

async function signOut() {
  await api("ui/session", { method: "DELETE" });
  stop();
  await loadSession();
}

function signedOut() {
  stop();
  loadSession().catch((error) => setStatus(error.message));
}

// -- live data -------------------------------------------------------------------------------

async function liveView() {
  const summary = await json("v1/services");
  let instances = [];
  if (state.selected) {
    const response = await api(`v1/services/${encodeURIComponent(state.selected)}`);
    if (response.ok) instances = (await response.json()).instances;
    else if (response.status === 404) instances = [];
    else throw new Error(`v1/services/${state.selected}: HTTP ${response.status}`);
  }
  const resources = [];
  let cursor = null;
  do {
    const query = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const page = await json(`v1/resources?limit=500${query}`);
    resources.push(...page.items);
    cursor = page.next;
  } while (cursor);
  return {
    services: summary.services,
    protection: { on: summary.protection, since: null },
    instances,
    resources,
  };
}

// The registry at a past moment: services are summed up here from its instances.
async function historyView(moment) {
  const past = await json(`v1/history?at=${encodeURIComponent(moment.toISOString())}`);
  const services = new Map();
  for (const instance of past.instances) {
    const row = services.get(instance.service) || {
      service: instance.service, instances: 0, passing: 0, warning: 0, critical: 0, draining: 0,
    };
    row.instances += 1;
    row[instance.status] += 1;
    services.set(instance.service, row);
  }
  return {
    services: [...services.values()].sort((a, b) => a.service.localeCompare(b.service)),
    protection: past.protection,
    instances: past.instances.filter((i) => i.service === state.selected),
    resources: past.resources,
  };
}

async function refresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = null;
  state.lastRefresh = Date.now();
  try {
    state.view = state.live ? await liveView() : await historyView(state.at);
    render();
    setStatus("");
  } catch (error) {
    if (error instanceof Unauthorized) return signedOut();
    setStatus(error.message);
  }
}

function scheduleRefresh() {
  if (!state.live || state.refreshTimer) return;
  const wait = Math.max(0, REFRESH_MS - (Date.now() - state.lastRefresh));
  state.refreshTimer = setTimeout(refresh, wait);
}

// -- rendering -------------------------------------------------------------------------------

function ago(iso) {
  if (!iso) return "—";
  const reference = state.live ? Date.now() : state.at.getTime();
  const seconds = Math.max(0, Math.round((reference - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return new Date(iso).toISOString().replace(".000Z", "Z");
}

function cell(row, text, className) {
  row.appendChild(el("td", text, className));
}

function fill(tableId, rows, emptyId) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...rows);
  if (emptyId) $(emptyId).hidden = rows.length > 0;
}

function renderServices(view) {
  const protection = $("protection");
  const on = view.protection && view.protection.on;
  const since = view.protection && view.protection.since;
  protection.textContent = `expiry protection ${on ? "on" : "off"}${since ? ` since ${since}` : ""}`;
  protection.className = `badge ${on ? "on" : "off"}`;
  const rows = view.services.map((summary) => {
    const row = el("tr");
    row.className = "selectable" + (summary.service === state.selected ? " selected" : "");
    row.dataset.service = summary.service;
    cell(row, summary.service);
    cell(row, summary.instances, "num");
    cell(row, summary.passing, "num status passing");
    cell(row, summary.warning, "num status warning");
    cell(row, summary.critical, "num status critical");
    cell(row, summary.draining, "num status draining");
    row.addEventListener("click", () => {
      state.selected = summary.service;
      refresh();
    });
    return row;
  });
  fill("services", rows, "no-services");
}

function checksText(instance) {
  const checks = instance.checks;
  if (!Array.isArray(checks) || checks.length === 0) return "—";
  return checks
    .map((c) => `${c.check_id || c.id || c.http || c.tcp || "check"}: ${c.status || "?"}`)
    .join(", ");
}

function renderInstances(view) {
  $("selected-service").textContent = state.selected ? `of ${state.selected}` : "";
  const rows = view.instances.map((instance) => {
    const row = el("tr");
    row.dataset.instance = instance.instance_id;
    cell(row, instance.instance_id);
    cell(row, `${instance.address}:${instance.port}`);
    cell(row, instance.status, `status ${instance.status}`);
    cell(row, instance.reason || "—", "reason");
    const beat = el("td", ago(instance.last_heartbeat));
    beat.title = instance.last_heartbeat || "";
    row.appendChild(beat);
    cell(row, checksText(instance));
    return row;
  });
  fill("instances", rows);
  $("no-instances").hidden = rows.length > 0;
  $("no-instances").textContent = state.selected ? "No instances." : "Pick a service.";
}

function renderResources(view) {
  const order = (r) => `${r.kind}\u0000${r.status}\u0000${r.name}`;
  const sorted = [...view.resources].sort((a, b) => order(a).localeCompare(order(b)));
  const counts = new Map();
  for (const r of sorted) {
    const key = `${r.kind} ${r.status}`;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  $("resource-counts").textContent = [...counts].map(([k, n]) => `${n} ${k}`).join(" · ");
  const rows = sorted.map((resource) => {
    const row = el("tr");
    row.dataset.resource = resource.name;
    cell(row, resource.kind);
    cell(row, resource.name);
    cell(row, resource.status, `status ${resource.status}`);
    cell(row, resource.host || "—");
    cell(row, resource.version, "num");
    return row;
  });
  fill("resources", rows, "no-resources");
}

function render() {
  const view = state.view;
  if (!view) return;
  if (!state.selected && view.services.length > 0) {
    state.selected = view.services[0].service;
    refresh();
    return;
  }
  renderServices(view);
  renderInstances(view);
  renderResources(view);
  const mode = $("mode");
  mode.textContent = state.live ? "live" : `history: ${state.at.toISOString()}`;
  mode.className = `mode ${state.live ? "live" : "history"}`;
}

// -- the event stream ------------------------------------------------------------------------

function matches(pattern, type) {
  if (!pattern) return true;
  return pattern.split(",").some((p) => {
    const words = p.trim();
    if (!words) return false;
    const regex = new RegExp(
      "^" + words.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/#/g, ".*") + "$",
    );
    return regex.test(type);
  });
}

function subject(data) {
  if (!data || typeof data !== "object") return "";
  if (data.instance_id) return data.instance_id;
  if (data.instance && data.instance.instance_id) return data.instance.instance_id;
  if (data.resource && data.resource.name) return data.resource.name;
  if (data.host) return data.host;
  return "";
}

const recent = []; // the last MAX_EVENTS events, newest first, whatever the filter

function eventItem(event) {
  const item = el("li");
  item.dataset.type = event.type;
  item.appendChild(el("span", (event.time || "").replace("T", " ").slice(0, 23), "time"));
  item.appendChild(el("span", event.type, "type"));
  const data = event.data || {};
  item.appendChild(el("span", [subject(data), data.status, data.reason].filter(Boolean).join(" ")));
  return item;
}

// The list shows the recent events the filter keeps; changing the filter shows them again.
function renderEvents() {
  const filter = $("event-filter").value.trim();
  $("events").replaceChildren(...recent.filter((e) => matches(filter, e.type)).map(eventItem));
}

function onEvent(message) {
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    return;
  }
  recent.unshift(event);
  if (recent.length > MAX_EVENTS) recent.pop();
  if (matches($("event-filter").value.trim(), event.type)) {
    const list = $("events");
    list.insertBefore(eventItem(event), list.firstChild);
    while (list.childElementCount > MAX_EVENTS) list.lastChild.remove();
  }
  scheduleRefresh();
}

function connect() {
  if (state.stream) state.stream.close();
  const stream = new EventSource(new URL("v1/events", ROOT), { withCredentials: true });
  for (const type of state.session.event_types) stream.addEventListener(type, onEvent);
  stream.onopen = () => {
    setStatus("");
    scheduleRefresh(); // anything missed while (re)connecting
  };
  stream.onerror = () => {
    // The browser reconnects by itself; a refused token shows on the next data call.
    setStatus("event stream interrupted, reconnecting…");
    json("ui/session").then((s) => { if (s.auth && !s.signed_in) signedOut(); }).catch(() => {});
  };
  state.stream = stream;
}

// -- the time slider -------------------------------------------------------------------------

async function findOldest() {
  const range = await json("v1/history/oldest");
  state.oldest = range.oldest ? new Date(range.oldest) : null;
  syncSlider();
}

function syncSlider() {
  const slider = $("slider");
  const now = Date.now();
  const oldest = state.oldest ? state.oldest.getTime() : now;
  slider.min = String(Math.floor(oldest / 1000));
  slider.max = String(Math.ceil(now / 1000));
  slider.disabled = !state.oldest;
  if (state.live) slider.value = slider.max;
  $("moment").textContent = state.live ? "now" : state.at.toISOString();
}

function slide() {
  const slider = $("slider");
  const seconds = Number(slider.value);
  if (seconds >= Number(slider.max)) return goLive();
  state.live = false;
  // The slider moves in whole seconds; the oldest moment itself is reachable at its left end.
  const moment = new Date(seconds * 1000);
  state.at = state.oldest && moment < state.oldest ? state.oldest : moment;
  $("moment").textContent = state.at.toISOString();
  $("go-live").disabled = false;
  refresh();
}

function goLive() {
  state.live = true;
  state.at = null;
  $("go-live").disabled = true;
  syncSlider();
  refresh();
}

// -- start -----------------------------------------------------------------------------------

let ticker = null;

function start() {
  const list = $("event-types");
  list.replaceChildren(...state.session.event_types.map((t) => {
    const option = el("option");
    option.value = t;
    return option;
  }));
  connect();
  refresh();
  findOldest().catch((error) => setStatus(error.message));
  clearInterval(ticker);
  ticker = setInterval(() => {
    if (state.live) {
      syncSlider();
      if (!state.oldest) findOldest().catch(() => {});
      render(); // "n s ago" moves on
    }
  }, 1000);
}

function stop() {
  if (state.stream) state.stream.close();
  state.stream = null;
  clearInterval(ticker);
}

$("sign-in-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", signOut);
$("slider").addEventListener("change", slide);
$("slider").addEventListener("input", () => {
  $("moment").textContent = new Date(Number($("slider").value) * 1000).toISOString();
});
$("go-live").addEventListener("click", goLive);
$("event-filter").addEventListener("input", renderEvents);
loadSession().catch((error) => setStatus(error.message));
