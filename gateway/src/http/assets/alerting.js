// What reaches the nurse beyond the screen: which alarm signal sounds (the
// loudest open alert that is neither acknowledged nor silenced; the link to
// the gateway lost), system notifications for new and escalated alerts, the
// "connection lost" banner, and the service worker that makes the page
// installable. app.js tells it the state (`update`), the stream's health
// (`linkUp`, `linkDown`) and each alert event (`onAlertEvent`).
"use strict";

window.WardgateAlerting = (() => {
  const RANK = { high: 3, medium: 2, low: 1 };
  // The link counts as lost once the event stream has been down this long
  // (the page tries again every 2 s meanwhile).
  const LINK_LOST_AFTER_MS = 5000;
  const NOTIFY_KEY = "wardgate-notifications";
  const $ = (id) => document.getElementById(id);

  let alerts = [], silences = [], names = {};
  // Alert id → { priority, level } last seen, from the stream or a refresh:
  // whichever brings news of an alert first notifies, so an event the
  // stream missed (a reconnect, a lagging client) is still notified when
  // the next refresh shows the alert.
  const known = new Map();
  let primed = false; // alerts open when the page opened are not news
  let linkDownSince = Date.now(); // not connected yet
  let linkLost = false;
  const notified = [];
  window.__wardgateNotifications = notified;

  function silenced(a, now) {
    return silences.some((s) => Date.parse(s.from) <= now && now < Date.parse(s.until)
      && (s.target.subject === a.subject || s.target.rule === a.rule));
  }

  // The signal: the loudest alert still calling (active or latched, not
  // silenced); a lost link sounds the medium-priority signal, unless an
  // alert it last knew of is louder (the page cannot know whether it has
  // been dealt with meanwhile).
  function decide() {
    const now = Date.now();
    let loudest = null;
    for (const a of alerts) {
      if ((a.state === "active" || a.state === "latched") && !silenced(a, now)
        && RANK[a.priority] && (!loudest || RANK[a.priority] > RANK[loudest.priority])) loudest = a;
    }
    let signal = loudest && { priority: loudest.priority, reason: "alert", alert: loudest.id };
    if (linkLost && (!signal || RANK[signal.priority] <= RANK.medium)) {
      signal = { priority: "medium", reason: "connection" };
    }
    WardgateSignals.play(signal);
  }

  function update(state) {
    alerts = state.alerts || [];
    silences = state.silences || [];
    names = Object.fromEntries((state.subjects || []).map((s) => [s.id, s.name || s.id]));
    for (const a of alerts) {
      if (primed && (a.state === "active" || a.state === "latched")) {
        const news = newsOf(a, known.get(a.id));
        if (news) notify(a, news);
      }
      remember(a);
    }
    // Primed by the first state read from the gateway (a render before it
    // has nothing in it).
    if (state.loaded) primed = true;
    decide();
  }

  // What is new about `a` since `k` (what was known of it), if anything to
  // notify: raised, escalated, or a rise in priority.
  function newsOf(a, k) {
    if (!k) return "raised";
    if ((a.escalation_level || 0) > k.level) return "escalated";
    if (RANK[a.priority] > (RANK[k.priority] || 0)) return "priority_changed";
    return null;
  }
  function remember(a) { known.set(a.id, { priority: a.priority, level: a.escalation_level || 0 }); }

  // --- the link -----------------------------------------------------------

  function checkLink() {
    const lost = linkDownSince !== null && Date.now() - linkDownSince >= LINK_LOST_AFTER_MS;
    if (lost === linkLost) return;
    linkLost = lost;
    if (lost) $("link-lost-since").textContent = new Date(linkDownSince).toLocaleTimeString();
    $("link-lost").hidden = !lost;
    decide();
  }
  function linkUp() { linkDownSince = null; checkLink(); }
  function linkDown() { if (linkDownSince === null) linkDownSince = Date.now(); checkLink(); }
  setInterval(checkLink, 500);

  // --- notifications ------------------------------------------------------

  const canNotify = () => "Notification" in window;
  const notifying = () => canNotify() && Notification.permission === "granted"
    && localStorage.getItem(NOTIFY_KEY) !== "off";

  async function registration() {
    return "serviceWorker" in navigator ? navigator.serviceWorker.getRegistration() : undefined;
  }

  // One notification per alert, tagged by its id: an escalation replaces
  // the earlier one (and alerts again) instead of stacking.
  async function notify(a, transition) {
    if (!notifying()) return;
    const title = `${a.priority.toUpperCase()} alert — ${names[a.subject] || a.subject}`;
    const options = {
      body: a.message, tag: a.id, renotify: true, requireInteraction: a.priority === "high",
      icon: "/icons/icon-192.png", data: { id: a.id },
    };
    try {
      const reg = await registration();
      // Phones show notifications only through the service worker.
      if (reg) await reg.showNotification(title, options);
      else new Notification(title, options);
      notified.push({ tag: a.id, title, transition, at: Date.now() });
    } catch (e) { /* notifications refused by this browser: the page still sounds */ }
  }

  async function withdraw(id) {
    const reg = await registration().catch(() => undefined);
    if (!reg) return;
    for (const n of await reg.getNotifications({ tag: id })) n.close();
  }

  // `block`: one SSE event block (`event: alert` and its `data:` lines).
  function onAlertEvent(block) {
    let a;
    try {
      a = JSON.parse(block.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, "")).join("\n"));
    } catch (e) { return; }
    const t = a.transition;
    if (t === "acknowledged" || t === "cleared") {
      withdraw(a.id);
      if (t === "cleared") known.delete(a.id); else remember(a);
      return;
    }
    const news = newsOf(a, known.get(a.id));
    remember(a);
    if (news) notify(a, t);
  }

  // --- controls -----------------------------------------------------------

  function renderControls() {
    const sound = $("sound");
    if (!WardgateSignals.supported()) {
      sound.disabled = true;
      sound.textContent = "Sound unavailable";
    } else {
      const on = WardgateSignals.enabled();
      sound.textContent = on ? "Sound: ON" : "Sound: OFF";
      sound.title = on ? "Alarm sounds are on: tap to turn them off" : "Alarm sounds are off: tap to turn them on";
      sound.setAttribute("aria-pressed", String(on));
      sound.className = "toggle " + (on ? "on" : "off");
    }
    const bell = $("notify");
    const permission = canNotify() ? Notification.permission : "unavailable";
    const on = notifying();
    bell.disabled = permission === "denied" || permission === "unavailable";
    bell.textContent = permission === "denied" ? "Notifications blocked"
      : permission === "unavailable" ? "Notifications unavailable"
      : on ? "Notifications: ON" : "Notifications: OFF";
    bell.title = permission === "denied" ? "Allow notifications for this page in the browser's settings"
      : permission === "unavailable" ? "This browser gives this page no notifications (they need https or localhost)"
      : on ? "Tap to stop notifications" : "Tap to get a notification for every new alert";
    bell.setAttribute("aria-pressed", String(on));
    bell.className = "toggle " + (on ? "on" : "off");
  }

  $("sound").addEventListener("click", async () => {
    if (WardgateSignals.enabled()) WardgateSignals.disable();
    else await WardgateSignals.enable();
    renderControls();
  });
  $("notify").addEventListener("click", async () => {
    if (notifying()) {
      localStorage.setItem(NOTIFY_KEY, "off");
    } else {
      localStorage.removeItem(NOTIFY_KEY);
      if (Notification.permission === "default") await Notification.requestPermission();
    }
    renderControls();
  });
  renderControls();

  // The page shell works offline and the page installs as an app; the
  // service worker never answers for the API (sw.js).
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js").catch(() => { /* not a secure context */ });
  }

  return { update, linkUp, linkDown, onAlertEvent };
})();
