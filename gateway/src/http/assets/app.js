// The nurse-station page: reads the JSON API, refreshes when the SSE stream
// says something changed, acknowledges with the token the nurse entered
// (kept in sessionStorage only: never in the page or the URL). The token
// goes with every request, reads included (a gateway may require it for
// reads: `[http] reads_need_token`), so the event stream is read with
// fetch, which can send it, not EventSource, which cannot. Sound,
// notifications and the connection-lost banner are alerting.js's: this file
// tells it the state, the stream's health and each alert event.
"use strict";

const TOKEN_KEY = "wardgate-token";
const PRIO = {
  high: { label: "▲▲▲ HIGH", rank: 3 },
  medium: { label: "▲▲ MEDIUM", rank: 2 },
  low: { label: "▲ LOW", rank: 1 },
};
const BAND_TEXT = { high: "HIGH", medium: "MEDIUM", low: "LOW", zero: "0" };
const VITALS = [
  ["heart_rate", "HR", "/min", 0],
  ["spo2", "SpO₂", "%", 0],
  ["resp_rate", "RR", "/min", 0],
  ["bp", "BP", "mmHg", 0],
  ["body_temp", "Temp", "°C", 1],
  ["infusion_rate", "Pump", "mL/h", 1],
  ["room_temp", "Room", "°C", 1],
  ["humidity", "Humidity", "%", 0],
  ["fridge_temp", "Fridge", "°C", 1],
];
const SPARK = ["news2_score", "spo2", "fridge_temp", "room_temp"];

let state = { subjects: [], devices: [], alerts: [], silences: [], staff: [] };
// The layout (`ward` or `home`) and each rule's advice, read once: on a
// home hub the page shows, for each open alert, what to do in plain words.
let page = { layout: "ward", rules: [] };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function elapsed(since) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }
function auth() { const t = token(); return t ? { "Authorization": "Bearer " + t } : {}; }
function needToken() {
  $("ack-error").textContent = "This gateway needs a token to show the ward: enter the station token.";
  $("ack-error").hidden = false;
}

function renderToken() {
  const has = !!token();
  $("token-form").hidden = has;
  $("signed-in").hidden = !has;
}

// Rows are rebuilt only when the alerts change, so a button is never swapped
// under a nurse's finger; elapsed times are updated in place.
let alertsKey = null;
function renderAlerts() {
  const key = JSON.stringify(state.alerts) + "|" + !!token() + "|" + state.subjects.length + "|" + page.layout;
  if (key === alertsKey) {
    for (const e of document.querySelectorAll("#alerts .ago")) e.textContent = elapsed(e.dataset.since);
    return;
  }
  alertsKey = key;
  const list = $("alerts");
  list.replaceChildren();
  const names = Object.fromEntries(state.subjects.map((s) => [s.id, s.name || s.id]));
  for (const a of state.alerts) {
    const p = PRIO[a.priority] || { label: a.priority.toUpperCase() };
    const acked = a.state === "acknowledged";
    const button = el("button", { class: "ack", type: "button", textContent: acked ? "Acknowledged" : "Acknowledge", disabled: acked || !token(), "data-alert-id": a.id });
    button.addEventListener("click", () => acknowledge(a.id, button));
    const stateText = acked ? "ACKNOWLEDGED" + (a.acknowledged ? " by " + a.acknowledged.by : "") : a.state.toUpperCase();
    list.append(el("li", { class: `alert ${a.priority} ${a.state}`, "data-alert-id": a.id },
      el("span", { class: `prio ${a.priority}`, textContent: p.label }),
      el("span", { class: "what" }, el("span", { class: "who", textContent: names[a.subject] || a.subject }), " — ", a.message),
      button,
      el("span", { class: "meta" },
        el("span", { class: "state", textContent: stateText }),
        " · ", el("span", { class: "ago", textContent: elapsed(a.raised_at), "data-since": a.raised_at }),
        ` ago · escalation level ${a.escalation_level} · ${a.rule}`,
        el("span", { class: "recipient", textContent: recipientText(a.recipient) })),
      page.layout === "home" && adviceOf(a.rule) ? el("p", { class: "advice", textContent: adviceOf(a.rule) }) : null));
  }
  $("no-alerts").hidden = state.alerts.length > 0;
  $("alert-count").textContent = state.alerts.length ? `(${state.alerts.length})` : "";
}

function sparkline(points) {
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 100 30");
  svg.setAttribute("preserveAspectRatio", "none");
  if (points.length < 2) return svg;
  // The last hour, or less while there is less history (at least 5 minutes).
  const now = Date.now(), t0 = Math.max(now - 3600 * 1000, Math.min(points[0][0], now - 300 * 1000));
  const span = (now - t0) / 100;
  const vs = points.map((p) => p[1]);
  let lo = Math.min(...vs), hi = Math.max(...vs);
  if (hi - lo < 1) { hi += 0.5; lo -= 0.5; }
  const line = document.createElementNS(svgNS, "polyline");
  line.setAttribute("points", points.map(([t, v]) =>
    `${(Math.max(0, t - t0) / span).toFixed(2)},${(28 - ((v - lo) / (hi - lo)) * 26).toFixed(2)}`).join(" "));
  svg.append(line);
  return svg;
}

function fmt(v, d) { return v == null ? "—" : Number(v).toFixed(d); }

function renderBeds() {
  const grid = $("beds");
  grid.replaceChildren();
  const byDevice = {};
  for (const d of state.devices) (byDevice[d.subject] ||= []).push(d);
  for (const s of state.subjects) {
    const v = s.vitals || {};
    const band = s.news2 ? s.news2.band : null;
    const head = el("h3", {}, el("span", { textContent: s.name || s.id }));
    if (s.news2) head.append(el("span", { class: `news2 ${band}`, textContent: `NEWS2 ${s.news2.score} ${band === "zero" ? "" : BAND_TEXT[band]}`.trim() }));
    const dl = el("dl", { class: "vitals" });
    for (const [key, label, unit, d] of VITALS) {
      let text;
      if (key === "bp") {
        if (!v.bp_systolic) continue;
        text = `${fmt(v.bp_systolic.value, 0)}/${fmt(v.bp_diastolic && v.bp_diastolic.value, 0)}`;
      } else {
        if (!v[key]) continue;
        text = fmt(v[key].value, d);
      }
      dl.append(el("dt", { textContent: label }), el("dd", { textContent: `${text} ${unit}` }));
    }
    const card = el("article", { class: `bed ${band ? "band-" + band : ""}`, "data-subject": s.id }, head, dl);
    const sparkKey = SPARK.find((k) => s.history && s.history[k] && s.history[k].length > 1);
    if (sparkKey) {
      card.append(sparkline(s.history[sparkKey]), el("span", { class: "spark-label", textContent: `${sparkKey === "news2_score" ? "NEWS2" : sparkKey.replace("_", " ")}, last hour` }));
    }
    const badges = el("div", { class: "badges" });
    for (const d of byDevice[s.id] || []) {
      if (d.state === "offline") badges.append(el("span", { class: "badge offline", textContent: `✖ ${d.id} OFFLINE` }));
      if (d.battery_low) badges.append(el("span", { class: "badge battery", textContent: `▼ ${d.id} battery ${fmt(d.battery, 0)} %` }));
      for (const alarm of d.alarms) badges.append(el("span", { class: "badge", textContent: `${d.id}: ${alarm.replaceAll("_", " ")}` }));
    }
    if (badges.childElementCount) card.append(badges);
    grid.append(card);
  }
}

function renderDevices() {
  const list = $("devices");
  list.replaceChildren();
  const attention = state.devices.filter((d) => d.state === "offline" || d.battery_low || d.alarms.length);
  for (const d of attention) {
    const why = [];
    if (d.state === "offline") why.push("✖ OFFLINE" + (d.reason ? ` (${d.reason})` : ""));
    if (d.battery_low) why.push(`▼ battery ${fmt(d.battery, 0)} %`);
    if (d.alarms.length) why.push("alarms: " + d.alarms.join(", "));
    const seen = d.last_seen ? ` · last seen ${elapsed(d.last_seen)} ago` : " · never seen";
    list.append(el("li", { "data-device": d.id }, el("strong", { textContent: d.id }), ` (${d.subject}) — ${why.join(" · ")}${seen}`));
  }
  $("no-devices").hidden = attention.length > 0;
}

// Silences in force, in words: who held back which alerts until when.
function renderSilences() {
  const list = $("silences");
  list.replaceChildren(...(state.silences || []).map((s) => {
    const what = s.target.subject ? "all alerts of " + s.target.subject : "rule " + s.target.rule + " for everyone";
    const until = new Date(s.until).toLocaleTimeString();
    return el("li", { class: "silence", textContent: `Silenced: ${what} until ${until}, by ${s.by}` });
  }));
}

// "My beds": a member of staff picks their name (kept on this device) and
// the page shows the beds they cover and the alerts they have now — those
// of their beds, and any handed to them or to everyone. A charge nurse, or
// nobody picked, sees the whole ward.
const ME_KEY = "wardgate-me";
function me() { return state.staff.find((m) => m.id === localStorage.getItem(ME_KEY)) || null; }
function mine(view) {
  const m = me();
  if (!m || m.role === "charge_nurse") return view;
  const beds = new Set(m.subjects);
  const hasIt = (a) => beds.has(a.subject) || (a.recipient &&
    (a.recipient.to === "everyone" || (a.recipient.staff || []).some((s) => s.id === m.id)));
  return { ...view, subjects: view.subjects.filter((s) => beds.has(s.id)), alerts: view.alerts.filter(hasIt) };
}
function renderMe() {
  const select = $("me");
  $("me-form").hidden = state.staff.length === 0;
  const want = ["", ...state.staff.map((m) => m.id)].join("|");
  if (select.dataset.options !== want) {
    select.replaceChildren(el("option", { value: "", textContent: "every bed" }),
      ...state.staff.map((m) => el("option", { value: m.id, textContent: m.role === "charge_nurse" ? `${m.name} (charge: every bed)` : `my beds: ${m.name}` })));
    select.dataset.options = want;
  }
  select.value = me() ? me().id : "";
}
$("me").addEventListener("change", (e) => {
  if (e.target.value) localStorage.setItem(ME_KEY, e.target.value); else localStorage.removeItem(ME_KEY);
  alertsKey = null;
  render();
});

// Who has an alert now, in words.
function recipientText(r) {
  if (!r) return "";
  if (r.to === "everyone") return " · with everyone";
  const names = (r.staff || []).map((s) => s.name).join(", ");
  return r.to === "charge" ? ` · with the charge nurse: ${names}` : ` · with ${names}`;
}

function render() {
  const full = state;
  state = mine(full);
  try {
    renderMe(); renderToken(); renderAlerts(); renderSilences(); renderBeds(); renderDevices();
    WardgateAlerting.update(state);
  } finally {
    state = full;
  }
}

async function refresh() {
  try {
    const [s, d, a, q, t] = await Promise.all(["subjects", "devices", "alerts", "silences", "staff"].map((p) =>
      fetch("/api/" + p, { cache: "no-store", headers: auth() }).then((r) => {
        if (r.status === 401) { needToken(); throw new Error("token needed"); }
        return r.json();
      })));
    state = { subjects: s.subjects, devices: d.devices, alerts: a.alerts, silences: q.silences, staff: t.staff, loaded: true };
    render();
  } catch (e) {
    $("live").textContent = "connection lost";
    $("live").className = "live off";
  }
}

let pending = null;
function scheduleRefresh(delay) {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh(); }, delay);
}

async function acknowledge(id, button) {
  const t = token();
  if (!t) return;
  button.disabled = true;
  const r = await fetch(`/api/alerts/${encodeURIComponent(id)}/ack`, {
    method: "POST",
    headers: { ...auth(), "Content-Type": "application/json" },
    body: "{}",
  });
  const err = $("ack-error");
  if (r.ok) {
    err.hidden = true;
  } else {
    const body = await r.json().catch(() => ({}));
    err.textContent = r.status === 401 ? "Token not accepted: enter the station token again." : `Not acknowledged: ${body.error || r.status}`;
    err.hidden = false;
    if (r.status === 401) { sessionStorage.removeItem(TOKEN_KEY); }
  }
  refresh();
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const v = $("token").value.trim();
  if (v) sessionStorage.setItem(TOKEN_KEY, v);
  $("token").value = "";
  $("ack-error").hidden = true;
  render();
  loadPage();
  refresh();
  if (stream) stream.abort();
});
$("forget-token").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); render(); });

// What each kind of event on the stream makes the page do: an alert at
// once (and a notification when it is new), anything else within a second.
function onEvent(kind, block) {
  if (kind === "alert") WardgateAlerting.onAlertEvent(block);
  scheduleRefresh(kind === "alert" ? 100 : 1000);
}

// The gateway sends a keep-alive comment every 15 s: a stream silent for
// longer is dead (a phone's network changed, a proxy held it) and is opened
// again.
const STREAM_SILENT_MS = 30000;

let stream = null;
async function connect() {
  for (;;) {
    stream = new AbortController();
    try {
      const r = await fetch("/api/events", { cache: "no-store", headers: auth(), signal: stream.signal });
      if (r.status === 401) needToken();
      if (!r.ok) throw new Error("stream refused: " + r.status);
      $("live").textContent = "● LIVE"; $("live").className = "live on";
      WardgateAlerting.linkUp();
      refresh();
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = "";
      for (;;) {
        const silent = setTimeout(() => stream.abort(), STREAM_SILENT_MS);
        const { value, done } = await reader.read().finally(() => clearTimeout(silent));
        if (done) break;
        buffered += value;
        let end;
        while ((end = buffered.indexOf("\n\n")) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const kind = /^event: ?(.*)$/m.exec(block);
          if (kind) onEvent(kind[1], block);
        }
      }
    } catch (e) { /* reconnect below */ }
    WardgateAlerting.linkDown();
    $("live").textContent = "reconnecting…"; $("live").className = "live off";
    await new Promise((done) => setTimeout(done, 2000));
  }
}

async function loadPage() {
  try {
    const r = await fetch("/api/page", { cache: "no-store", headers: auth() });
    if (!r.ok) return;
    page = await r.json();
    document.body.classList.toggle("home", page.layout === "home");
    alertsKey = null;
    render();
  } catch (e) { /* the next refresh shows the connection state */ }
}
function adviceOf(rule) {
  const r = page.rules.find((x) => x.id === rule);
  return r ? r.advice : null;
}

setInterval(() => { renderAlerts(); renderDevices(); }, 10000);
loadPage();
refresh();
connect();
