#![no_main]
//! Any bytes as the body of the two HTTP write requests: acknowledge
//! (`POST /api/alerts/{id}/ack`) and silence (`POST /api/silence`), parsed
//! and checked by the same functions the handlers call.
//!
//! Asserts, beyond "no panic":
//! - the recorded identity is the token's name, or `name@token` where the
//!   name is 1 to 64 letters, digits, spaces or `.-_'`, trimmed, and the
//!   channel is always `http:token`;
//! - an accepted silence lasts 1 minute to 24 hours;
//! - an accepted request, written back as JSON, is accepted as the same request.

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use wardgate::http::{ack_request, silence_request};
use wardgate_model::SilenceTarget;

const TOKEN: &str = "station-1";

/// The name given in `by`, or `None` when the token's name stands alone.
fn given_name(by: &str) -> Option<&str> {
    if by == TOKEN {
        return None;
    }
    let name = by
        .strip_suffix(TOKEN)
        .and_then(|b| b.strip_suffix('@'))
        .unwrap_or_else(|| panic!("identity {by:?} does not end in @{TOKEN}"));
    assert!(!name.is_empty() && name == name.trim(), "{name:?}");
    assert!(name.chars().count() <= 64, "{name:?}");
    assert!(
        name.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_' | '\'')),
        "{name:?}"
    );
    Some(name)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(who) = ack_request(TOKEN, data) {
        assert_eq!(who.via.as_deref(), Some("http:station-1"));
        let again = match given_name(&who.by) {
            Some(name) => serde_json::to_vec(&json!({ "by": name })).unwrap(),
            None => Vec::new(),
        };
        assert_eq!(ack_request(TOKEN, &again), Ok(who));
    }

    if let Ok(req) = silence_request(TOKEN, data) {
        assert!((1..=24 * 60).contains(&req.minutes), "{req:?}");
        let mut body = json!({ "minutes": req.minutes });
        match &req.target {
            SilenceTarget::Subject(s) => body["subject"] = json!(s.as_str()),
            SilenceTarget::Rule(r) => body["rule"] = json!(r.as_str()),
        }
        assert_eq!(req.who.via.as_deref(), Some("http:station-1"));
        if let Some(name) = given_name(&req.who.by) {
            body["by"] = json!(name);
        }
        let again = serde_json::to_vec(&body).unwrap();
        assert_eq!(silence_request(TOKEN, &again), Ok(req));
    }
});
