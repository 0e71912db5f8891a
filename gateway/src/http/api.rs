//! Routes, the page's files, the security headers and the reads, which
//! answer from the [`View`](super::View). Writes (`writes.rs`) need
//! `Authorization: Bearer <token>` (`auth.rs`) and go to the rules stage,
//! whose answer becomes the status code; `events.rs` is the SSE stream.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;
use wardgate_model::Timestamp;

use super::HttpState;
use super::auth::reader;
use super::events::events;
use super::writes::{acknowledge, assign, silence};
use crate::spool::SinkBacklog;

/// The page shell, compiled in: path, content type, body. Served to anyone
/// (no patient data in them); the service worker (`sw.js`) keeps the same
/// list for offline use — keep the two in step.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "/signals.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/signals.js"),
    ),
    (
        "/alerting.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/alerting.js"),
    ),
    (
        "/sw.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/sw.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/style.css"),
    ),
    (
        "/manifest.webmanifest",
        "application/manifest+json",
        include_bytes!("assets/manifest.webmanifest"),
    ),
    (
        "/icons/icon-192.png",
        "image/png",
        include_bytes!("assets/icons/icon-192.png"),
    ),
    (
        "/icons/icon-512.png",
        "image/png",
        include_bytes!("assets/icons/icon-512.png"),
    ),
];

/// Readiness fails when the spool holds more telemetry than this share of its limit.
const SPOOL_READY_SHARE: f64 = 0.9;
/// Longest silence the API accepts, in minutes (the engine has its own limit too).
pub(super) const MAX_SILENCE_MIN: u32 = 24 * 60;
/// Largest request body: an acknowledgement or a silence is a few hundred
/// bytes; anything larger is refused before it is read (413).
const MAX_BODY: usize = 4 * 1024;

/// Every route of the server.
pub fn router(state: HttpState) -> Router {
    let mut router = Router::new();
    for &(path, content_type, body) in ASSETS {
        router = router.route(path, get(move || async move { asset(body, content_type) }));
    }
    router
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/alerts/{id}/ack", post(acknowledge))
        .route("/api/silence", post(silence))
        .route("/api/staff/{id}/subjects", put(assign))
        .merge(
            Router::new()
                .route("/metrics", get(metrics))
                .route("/api/subjects", get(subjects))
                .route("/api/devices", get(devices))
                .route("/api/alerts", get(alerts))
                .route("/api/silences", get(silences))
                .route("/api/staff", get(staff))
                .route("/api/page", get(page))
                .route("/api/events", get(events))
                .layer(axum::middleware::from_fn_with_state(state.clone(), reader)),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            allowed_host,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

fn asset(body: &'static [u8], content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Every response: a content security policy that allows the page's own
/// script, style, service worker and manifest only (no inline script), no
/// framing, no MIME sniffing, no referrer.
async fn security_headers(response: Response) -> Response {
    let mut response = response;
    let h = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Refuses a request whose `Host` is not one the gateway serves (DNS
/// rebinding: a page that made its own name point at the gateway).
async fn allowed_host(
    State(state): State<HttpState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(hosts) = &state.hosts
        && let Some(host) = request.headers().get(header::HOST)
    {
        let host = host.to_str().unwrap_or_default().to_ascii_lowercase();
        if !hosts.contains(&host) {
            return error(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "host {host} is not served here; allowed: {}",
                    hosts.join(", ")
                ),
            );
        }
    }
    next.run(request).await
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let problems = state.sinks.not_ready();
    if !problems.is_empty() {
        let mut text = String::new();
        for line in &problems {
            let _ = writeln!(text, "{line}");
        }
        return (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    }
    let Some(probe) = state.spool.clone() else {
        return "ready\n".into_response();
    };
    if let Some(why) = probe.spool.failing() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("spool cannot commit: {why}\n"),
        )
            .into_response();
    }
    let stats =
        tokio::task::spawn_blocking(move || probe.spool.stats().map(|s| (s, probe.max_bytes)))
            .await;
    match stats {
        Ok(Ok((s, max))) if (s.telemetry_bytes as f64) < max as f64 * SPOOL_READY_SHARE => {
            "ready\n".into_response()
        }
        Ok(Ok((s, max))) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("spool nearly full: {} of {max} bytes\n", s.telemetry_bytes),
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("spool: {e}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "spool check failed\n").into_response(),
    }
}

async fn subjects(State(state): State<HttpState>) -> Response {
    let view = state
        .view
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(json!({ "subjects": view.subjects() })).into_response()
}

async fn devices(State(state): State<HttpState>) -> Response {
    let view = state
        .view
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(json!({ "devices": view.devices() })).into_response()
}

async fn alerts(State(state): State<HttpState>) -> Response {
    let view = state
        .view
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(json!({ "alerts": view.alerts() })).into_response()
}

async fn silences(State(state): State<HttpState>) -> Response {
    let view = state
        .view
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(json!({ "silences": view.silences() })).into_response()
}

/// `GET /api/page`: the layout and each rule's description and advice.
async fn page(State(state): State<HttpState>) -> Response {
    Json(&*state.page).into_response()
}

/// `GET /api/staff`: who covers which subjects now.
async fn staff(State(state): State<HttpState>) -> Response {
    let staff = state
        .staff
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Json(json!({ "staff": staff })).into_response()
}

/// 503 with `Retry-After`, counted.
pub(super) fn streams_refused(state: &HttpState, why: String) -> Response {
    state.refused_streams.fetch_add(1, Ordering::Relaxed);
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// Prometheus text format 0.0.4.
async fn metrics(State(state): State<HttpState>) -> Response {
    let mut out = String::new();
    {
        let view = state
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(
            out,
            "# HELP wardgate_events_total Events committed to the spool, by type."
        );
        let _ = writeln!(out, "# TYPE wardgate_events_total counter");
        for (k, v) in &view.counters.events {
            let _ = writeln!(out, "wardgate_events_total{{type=\"{k}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP wardgate_alert_transitions_total Alert transitions, by transition."
        );
        let _ = writeln!(out, "# TYPE wardgate_alert_transitions_total counter");
        for (k, v) in &view.counters.transitions {
            let _ = writeln!(
                out,
                "wardgate_alert_transitions_total{{transition=\"{k}\"}} {v}"
            );
        }
        let _ = writeln!(out, "# HELP wardgate_alerts Open alerts, by state.");
        let _ = writeln!(out, "# TYPE wardgate_alerts gauge");
        let counts = view.alert_counts();
        for s in ["active", "latched", "acknowledged"] {
            let _ = writeln!(
                out,
                "wardgate_alerts{{state=\"{s}\"}} {}",
                counts.get(s).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            out,
            "# HELP wardgate_device_readings_total Readings committed, by device."
        );
        let _ = writeln!(out, "# TYPE wardgate_device_readings_total counter");
        for d in view.devices() {
            let _ = writeln!(
                out,
                "wardgate_device_readings_total{{device=\"{}\"}} {}",
                escape(&d.id),
                d.readings
            );
        }
        let _ = writeln!(
            out,
            "# HELP wardgate_device_last_seen_seconds Unix time of the device's last reading, alarm or online status."
        );
        let _ = writeln!(out, "# TYPE wardgate_device_last_seen_seconds gauge");
        for d in view.devices() {
            if let Some(t) = d.last_seen {
                let _ = writeln!(
                    out,
                    "wardgate_device_last_seen_seconds{{device=\"{}\"}} {:.3}",
                    escape(&d.id),
                    t.timestamp_millis() as f64 / 1000.0
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP wardgate_device_online 1 when the device's last status is online."
        );
        let _ = writeln!(out, "# TYPE wardgate_device_online gauge");
        for d in view.devices() {
            let _ = writeln!(
                out,
                "wardgate_device_online{{device=\"{}\"}} {}",
                escape(&d.id),
                u8::from(d.state == "online")
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP wardgate_http_sse_lagged_total Committed batches an SSE client or the page view skipped."
    );
    let _ = writeln!(out, "# TYPE wardgate_http_sse_lagged_total counter");
    let _ = writeln!(
        out,
        "wardgate_http_sse_lagged_total {}",
        state.lagged.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP wardgate_tasks Tasks alive in the gateway's runtime (drivers, sinks, connections): a leak shows as growth."
    );
    let _ = writeln!(out, "# TYPE wardgate_tasks gauge");
    let _ = writeln!(
        out,
        "wardgate_tasks {}",
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    );
    let _ = writeln!(
        out,
        "# HELP wardgate_http_unauthorized_total Requests refused for want of a valid token (401) or of a role that allows them (403)."
    );
    let _ = writeln!(out, "# TYPE wardgate_http_unauthorized_total counter");
    let _ = writeln!(
        out,
        "# HELP wardgate_http_streams_refused_total Event streams refused: the gateway's or the client's limit reached."
    );
    let _ = writeln!(out, "# TYPE wardgate_http_streams_refused_total counter");
    let _ = writeln!(
        out,
        "wardgate_http_streams_refused_total {}",
        state.refused_streams.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "wardgate_http_unauthorized_total {}",
        state.rejected_writes.load(Ordering::Relaxed)
    );
    if let Some(probe) = state.spool.clone() {
        let spool = Arc::clone(&probe.spool);
        if let Ok(Ok(backlog)) = tokio::task::spawn_blocking(move || spool.backlog()).await {
            sink_backlog(&mut out, &backlog, chrono::Utc::now());
        }
        let max = probe.max_bytes;
        if let Ok(Ok(s)) = tokio::task::spawn_blocking(move || probe.spool.stats()).await {
            for (name, help, kind, v) in [
                (
                    "wardgate_spool_alerts",
                    "Alert events waiting in the spool.",
                    "gauge",
                    s.alerts,
                ),
                (
                    "wardgate_spool_telemetry",
                    "Telemetry events waiting in the spool.",
                    "gauge",
                    s.telemetry,
                ),
                (
                    "wardgate_spool_telemetry_bytes",
                    "Bytes of telemetry in the spool.",
                    "gauge",
                    s.telemetry_bytes,
                ),
                (
                    "wardgate_spool_max_bytes",
                    "The spool's telemetry limit in bytes.",
                    "gauge",
                    max,
                ),
                (
                    "wardgate_spool_evicted_total",
                    "Telemetry evicted to stay within the limits.",
                    "counter",
                    s.evicted_total,
                ),
                (
                    "wardgate_spool_corrupt_records_total",
                    "Spool records that could not be read.",
                    "counter",
                    s.corrupt_records,
                ),
            ] {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
                );
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        out,
    )
        .into_response()
}

/// Per sink and lane: records waiting for the peer's confirmation, and how
/// long the oldest has waited — an alert lane that does not drain is the
/// figure to alarm on.
fn sink_backlog(out: &mut String, backlog: &[SinkBacklog], now: Timestamp) {
    let _ = writeln!(
        out,
        "# HELP wardgate_sink_backlog_records Spooled records the sink's peer has not confirmed yet.\n# TYPE wardgate_sink_backlog_records gauge"
    );
    for b in backlog {
        let _ = writeln!(
            out,
            "wardgate_sink_backlog_records{{sink=\"{}\",lane=\"{}\"}} {}",
            escape(&b.sink),
            b.lane.as_str(),
            b.records
        );
    }
    let _ = writeln!(
        out,
        "# HELP wardgate_sink_backlog_age_seconds How long the oldest unconfirmed record has waited (0 when none).\n# TYPE wardgate_sink_backlog_age_seconds gauge"
    );
    for b in backlog {
        let age = b
            .since
            .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        let _ = writeln!(
            out,
            "wardgate_sink_backlog_age_seconds{{sink=\"{}\",lane=\"{}\"}} {age:.3}",
            escape(&b.sink),
            b.lane.as_str(),
        );
    }
}

/// Label values: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
