//! The writes: acknowledging an alert, silencing a subject or a rule,
//! assigning staff. Each needs a token whose role allows it, goes to the
//! rules stage as a command with a reply channel, and the reply becomes
//! the status code. The body parsers are pure, for the fuzz targets.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;
use wardgate_model::{Actor, AlertId, RuleId, SubjectId};
use wardgate_rules::{AckError, SilenceError, SilenceTarget};

use super::api::{MAX_SILENCE_MIN, error};
use super::auth::{authorize, forbidden};
use super::{HttpState, Role};
use crate::commands::{AlertCommand, Channel, CommandRejected, attribute};
use crate::roster::AssignError;

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

pub(super) async fn acknowledge(
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    subjects: Vec<String>,
}

/// `PUT /api/staff/{id}/subjects` (admin): the subjects this member of
/// staff covers from now on, replacing the previous ones (shift change).
pub(super) async fn assign(
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

pub(super) async fn silence(
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
