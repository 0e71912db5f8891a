// The page's service worker. It keeps the page shell — the page, its scripts
// and style, the manifest and the icons — so an installed page opens, and
// says the gateway cannot be reached, while the gateway is down. It never
// answers for anything else: the API, the event stream and /metrics always
// go to the gateway, and nothing they return is stored.
"use strict";

const CACHE = "wardgate-shell-v1";
const SHELL = [
  "/", "/app.js", "/signals.js", "/alerting.js", "/style.css",
  "/manifest.webmanifest", "/icons/icon-192.png", "/icons/icon-512.png",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

// The shell from the network first (the gateway's own page, an upgraded
// gateway's at once), from the cache when the gateway does not answer.
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !SHELL.includes(url.pathname)) {
    return; // not ours: the browser fetches it as if there were no worker
  }
  event.respondWith(fetch(event.request).then((response) => {
    if (response.ok) {
      const copy = response.clone();
      event.waitUntil(caches.open(CACHE).then((c) => c.put(url.pathname, copy)));
    }
    return response;
  }).catch(() => caches.match(url.pathname).then((hit) => hit || Response.error())));
});

// A tap on a notification brings the page forward (or opens it).
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
    const open = windows.find((w) => "focus" in w);
    return open ? open.focus() : self.clients.openWindow("/");
  }));
});
