//! Who may do what: bearer tokens compared in constant time, roles, and the
//! 401/403 answers (counted). Tokens never appear in logs or answers.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::api::error;
use super::{Grant, HttpState, Role};

/// The token presented (`Authorization: Bearer <token>`, the scheme in any
/// case), compared in constant time with every configured one.
pub(super) fn authenticate<'a>(state: &'a HttpState, headers: &HeaderMap) -> Option<&'a Grant> {
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
pub(super) fn authorize(
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

pub(super) fn forbidden(
    state: &HttpState,
    name: &str,
    has: Role,
    needs: Role,
    what: &str,
) -> Response {
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
pub(super) async fn reader(
    State(state): State<HttpState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.reads_need_token && authenticate(&state, request.headers()).is_none() {
        return unauthorized(&state);
    }
    next.run(request).await
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) fn unauthorized(state: &HttpState) -> Response {
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
