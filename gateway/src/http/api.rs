//! Routes, the page's files, the security headers and the reads, which
//! answer from the [`View`](super::View). Writes (`writes.rs`) need
//! `Authorization: Bearer <token>` (`auth.rs`) and go to the rules stage,
//! whose answer becomes the status code; `events.rs` is the SSE stream,
//! `metrics.rs` `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::HttpState;
use super::auth::reader;
use super::events::events;
use super::writes::{acknowledge, assign, silence};
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;

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
                .route("/metrics", get(super::metrics::metrics))
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
