//! Routes and handlers. Reads answer from the [`View`](super::View); writes
//! need `Authorization: Bearer <token>` and go to the rules stage, whose
//! answer becomes the status code.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_stream::wrappers::BroadcastStream;
use wardgate_model::{Actor, AlertId, RuleId, SubjectId};
use wardgate_rules::{AckError, SilenceError, SilenceTarget};

use super::{ClientAddr, Grant, HttpState, Role};
use crate::commands::{AlertCommand, Channel, CommandRejected, attribute};
use crate::roster::AssignError;

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
const MAX_SILENCE_MIN: u32 = 24 * 60;
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

/// The token presented (`Authorization: Bearer <token>`, the scheme in any
/// case), compared in constant time with every configured one.
fn authenticate<'a>(state: &'a HttpState, headers: &HeaderMap) -> Option<&'a Grant> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, presented) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let presented = presented.trim().as_bytes();
    let mut found = None;
    for grant in state.tokens.iter() {
        if constant_time_eq(grant.secret.expose().as_bytes(), presented) {
            found = Some(grant);
        }
    }
    found
}

/// The token's name when it may do what `role` may; the refusal otherwise
/// (401 without a valid token, 403 with one whose role falls short).
fn authorize(
    state: &HttpState,
    headers: &HeaderMap,
    role: Role,
    what: &str,
) -> Result<(String, Role), Box<Response>> {
    let Some(grant) = authenticate(state, headers) else {
        return Err(Box::new(unauthorized(state)));
    };
    if grant.role < role {
        return Err(Box::new(forbidden(
            state,
            &grant.name,
            grant.role,
            role,
            what,
        )));
    }
    Ok((grant.name.clone(), grant.role))
}

fn forbidden(state: &HttpState, name: &str, has: Role, needs: Role, what: &str) -> Response {
    state.rejected_writes.fetch_add(1, Ordering::Relaxed);
    error(
        StatusCode::FORBIDDEN,
        format!(
            "token `{name}` has the {} role; {what} needs {}",
            has.as_str(),
            needs.as_str()
        ),
    )
}

/// Reads need a token of any role when `[http] reads_need_token` is set.
async fn reader(
    State(state): State<HttpState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.reads_need_token && authenticate(&state, request.headers()).is_none() {
        return unauthorized(&state);
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(state: &HttpState) -> Response {
    state.rejected_writes.fetch_add(1, Ordering::Relaxed);
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "a valid `Authorization: Bearer <token>` header is required",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"wardgate\""),
    );
    r
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    by: Option<String>,
}

/// Who acknowledges, from the body of `POST /api/alerts/{id}/ack` (empty,
/// or `{"by": "..."}`) and the name of the token presented: `by@token`, or
/// the token's name alone, via `http:token`. `Err` is the message of the
/// 400 answer. Pure, so the fuzz targets (`fuzz/`) can run it on untrusted
/// bytes.
#[doc(hidden)]
pub fn ack_request(token_name: &str, body: &[u8]) -> Result<Actor, String> {
    let body: AckBody = if body.iter().all(u8::is_ascii_whitespace) {
        AckBody::default()
    } else {
        serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?
    };
    attribute(body.by.as_deref(), token_name, Channel::Http).map_err(|e| e.to_string())
}

async fn acknowledge(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let token = match authorize(&state, &headers, Role::Nurse, "acknowledging") {
        Ok((name, _)) => name,
        Err(refused) => return *refused,
    };
    let who = match ack_request(&token, &body) {
        Ok(who) => who,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let by = who.by.clone();
    let (reply, answer) = oneshot::channel();
    let cmd = AlertCommand::Acknowledge {
        alert: AlertId(id.as_str().into()),
        who,
        reply,
    };
    match send(&state, cmd, answer).await {
        Ok(()) => Json(json!({ "acknowledged": id, "by": by })).into_response(),
        Err(r) => r,
    }
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    subjects: Vec<String>,
}

/// `PUT /api/staff/{id}/subjects` (admin): the subjects this member of
/// staff covers from now on, replacing the previous ones (shift change).
async fn assign(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let token = match authorize(&state, &headers, Role::Admin, "changing assignments") {
        Ok((name, _)) => name,
        Err(refused) => return *refused,
    };
    let body: AssignBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    let subjects: Vec<SubjectId> = body
        .subjects
        .iter()
        .map(|s| SubjectId::from(s.as_str()))
        .collect();
    let who = match attribute(None, &token, Channel::Http) {
        Ok(who) => who,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let (reply, answer) = oneshot::channel();
    let cmd = AlertCommand::Assign {
        staff: id.clone(),
        subjects: subjects.clone(),
        who,
        reply,
    };
    if let Err(r) = send(&state, cmd, answer).await {
        return r;
    }
    let mut staff = state
        .staff
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(member) = staff.iter_mut().find(|m| m.id.as_ref() == id) {
        member.subjects = subjects;
    }
    Json(json!({ "staff": id, "subjects": body.subjects })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    subject: Option<String>,
    rule: Option<String>,
    minutes: u32,
    by: Option<String>,
}

/// What a `POST /api/silence` body asks for, checked as far as it can be
/// without the gateway's state (whether the subject exists is the handler's
/// question).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceRequest {
    pub target: SilenceTarget,
    /// 1 to 24 h.
    pub minutes: u32,
    /// `by@token`, or the token's name alone, via `http:token`.
    pub who: Actor,
}

/// Parses and checks the body of `POST /api/silence` for the token named
/// `token_name`; `Err` is the message of the 400 answer. Pure, so the fuzz
/// targets (`fuzz/`) can run it on untrusted bytes.
#[doc(hidden)]
pub fn silence_request(token_name: &str, body: &[u8]) -> Result<SilenceRequest, String> {
    let body: SilenceBody = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
    let who =
        attribute(body.by.as_deref(), token_name, Channel::Http).map_err(|e| e.to_string())?;
    if body.minutes == 0 || body.minutes > MAX_SILENCE_MIN {
        return Err(format!("`minutes` must be 1 to {MAX_SILENCE_MIN}"));
    }
    let target = match (body.subject, body.rule) {
        (Some(s), None) => SilenceTarget::Subject(SubjectId::from(s.as_str())),
        (None, Some(r)) => SilenceTarget::Rule(RuleId::from(r.as_str())),
        _ => return Err("give exactly one of `subject` and `rule`".to_owned()),
    };
    Ok(SilenceRequest {
        target,
        minutes: body.minutes,
        who,
    })
}

async fn silence(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (token, role) = match authorize(&state, &headers, Role::Nurse, "silencing") {
        Ok(granted) => granted,
        Err(refused) => return *refused,
    };
    let SilenceRequest {
        target,
        minutes,
        who,
    } = match silence_request(&token, &body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match &target {
        SilenceTarget::Subject(s) => {
            let known = state
                .view
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .has_subject(s.as_str());
            if !known {
                return error(StatusCode::NOT_FOUND, format!("unknown subject `{s}`"));
            }
        }
        SilenceTarget::Rule(_) if role < Role::Admin => {
            return forbidden(
                &state,
                &token,
                role,
                Role::Admin,
                "silencing a rule for every subject",
            );
        }
        SilenceTarget::Rule(_) => {}
    }
    let until = chrono::Utc::now() + chrono::TimeDelta::minutes(i64::from(minutes));
    let (reply, answer) = oneshot::channel();
    let by = who.by.clone();
    let cmd = AlertCommand::Silence {
        target,
        until,
        who,
        reply,
    };
    match send(&state, cmd, answer).await {
        Ok(()) => Json(json!({ "silenced_until": until, "by": by })).into_response(),
        Err(r) => r,
    }
}

async fn send(
    state: &HttpState,
    cmd: AlertCommand,
    answer: oneshot::Receiver<Result<(), CommandRejected>>,
) -> Result<(), Response> {
    let stopped = || error(StatusCode::SERVICE_UNAVAILABLE, "the gateway is stopping");
    state.commands.send(cmd).await.map_err(|_| stopped())?;
    match answer.await.map_err(|_| stopped())? {
        Ok(()) => Ok(()),
        Err(e) => {
            let status = match &e {
                CommandRejected::Ack(AckError::UnknownAlert(_))
                | CommandRejected::Silence(SilenceError::UnknownRule(_))
                | CommandRejected::Assign(AssignError::UnknownStaff(_)) => StatusCode::NOT_FOUND,
                CommandRejected::Ack(AckError::AlreadyAcknowledged(_)) => StatusCode::CONFLICT,
                CommandRejected::Silence(_)
                | CommandRejected::Assign(AssignError::UnknownSubject(_)) => {
                    StatusCode::BAD_REQUEST
                }
            };
            Err(error(status, e.to_string()))
        }
    }
}

/// `text/event-stream`: one SSE event per committed event, named by its
/// type (`reading`, `device_status`, `device_alarm`, `alert`), the data
/// being the event's JSON; `lagged` when this client fell behind. At most
/// [`MAX_EVENT_STREAMS`](super::MAX_EVENT_STREAMS) at once; beyond that 503
/// with `Retry-After` (the page tries again after a pause).
async fn events(
    State(state): State<HttpState>,
    client: Option<axum::Extension<ClientAddr>>,
) -> Response {
    // Per client first: a greedy client is refused before it can take the
    // last global places.
    let mine = match client {
        Some(axum::Extension(ClientAddr(peer))) => match state.client_streams.take(peer.ip()) {
            Some(slot) => Some(slot),
            None => {
                return streams_refused(
                    &state,
                    format!(
                        "this client has {} event streams open already; close one",
                        super::MAX_EVENT_STREAMS_PER_CLIENT
                    ),
                );
            }
        },
        None => None,
    };
    let Ok(permit) = Arc::clone(&state.streams).try_acquire_owned() else {
        if !state.streams_full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = super::MAX_EVENT_STREAMS,
                "event streams refused: as many are open as the gateway serves (counted in wardgate_http_streams_refused_total)"
            );
        }
        return streams_refused(
            &state,
            format!(
                "too many event streams open (at most {}); try again shortly",
                super::MAX_EVENT_STREAMS
            ),
        );
    };
    state.streams_full.store(false, Ordering::Relaxed);
    let permit = (permit, mine);
    let lagged = state.lagged.clone();
    let stream = BroadcastStream::new(state.events.subscribe()).flat_map(move |batch| {
        // The permit lives as long as the stream: dropped when the client goes.
        let _held = &permit;
        let out: Vec<Result<SseEvent, Infallible>> = match batch {
            Ok(batch) => batch
                .iter()
                .filter_map(|e| SseEvent::default().event(e.type_name()).json_data(e).ok())
                .map(Ok)
                .collect(),
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                lagged.fetch_add(n, Ordering::Relaxed);
                vec![Ok(SseEvent::default().event("lagged").data(n.to_string()))]
            }
        };
        futures_util::stream::iter(out)
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// 503 with `Retry-After`, counted.
fn streams_refused(state: &HttpState, why: String) -> Response {
    state.refused_streams.fetch_add(1, Ordering::Relaxed);
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}
