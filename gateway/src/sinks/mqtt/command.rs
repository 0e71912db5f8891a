//! Acknowledgement commands arriving on `{base}/commands/ack/{account}`.
//! Untrusted input: validated, and a bad payload is an error value, never a
//! panic. The topic's last level names the broker account that published
//! it; the shipped broker ACL (config/mosquitto/wardgate.acl) lets each
//! account publish only on its own level, so the record can say who sent
//! it (`mqtt:{account}`) — a payload can claim any name, a topic level
//! cannot.

use serde::Deserialize;
use wardgate_model::{Actor, AlertId};

use crate::commands::{Channel, attribute, safe_name};

/// `{"alert_id": "...", "by": "nurse-jones"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckPayload {
    alert_id: String,
    by: String,
}

/// An acknowledgement from MQTT, attributed to its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckCommand {
    pub alert: AlertId,
    pub who: Actor,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("payload is not the expected JSON object {{\"alert_id\", \"by\"}}: {0}")]
    Json(String),
    #[error("alert_id must be 1 to 128 printable characters")]
    AlertId,
    #[error(transparent)]
    By(#[from] crate::commands::BadName),
    #[error("the topic's last level must name the publishing account (letters, digits, . - _)")]
    Account,
}

/// Parses a payload published on the command topic of `account`.
pub fn parse_ack(account: &str, payload: &[u8]) -> Result<AckCommand, CommandError> {
    if account.is_empty() || account.contains([' ', '\'']) || !safe_name(account) {
        return Err(CommandError::Account);
    }
    let p: AckPayload =
        serde_json::from_slice(payload).map_err(|e| CommandError::Json(e.to_string()))?;
    let id = &p.alert_id;
    if id.is_empty() || id.chars().count() > 128 || id.chars().any(char::is_control) {
        return Err(CommandError::AlertId);
    }
    // Over MQTT the nurse's name is required: the account is an alert
    // manager acting for someone, and the record must say for whom.
    if p.by.trim().is_empty() {
        return Err(CommandError::By(crate::commands::BadName));
    }
    Ok(AckCommand {
        alert: AlertId(id.as_str().into()),
        who: attribute(Some(&p.by), account, Channel::Mqtt)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_and_invalid_payloads() {
        assert_eq!(
            parse_ack(
                "alert-manager",
                br#"{"alert_id":"bed-1/spo2_low/1","by":"nurse-1"}"#
            ),
            Ok(AckCommand {
                alert: AlertId("bed-1/spo2_low/1".into()),
                who: Actor::new("nurse-1@alert-manager", "mqtt:alert-manager"),
            })
        );
        let ack = |payload: &[u8]| parse_ack("am", payload);
        assert!(matches!(ack(b"ack it"), Err(CommandError::Json(_))));
        assert!(matches!(
            ack(br#"{"alert_id":"x","by":"n","extra":1}"#),
            Err(CommandError::Json(_))
        ));
        assert_eq!(
            ack(br#"{"alert_id":"","by":"n"}"#),
            Err(CommandError::AlertId)
        );
        assert_eq!(
            ack(br#"{"alert_id":"x","by":"a\nb"}"#),
            Err(CommandError::By(crate::commands::BadName))
        );
        // A name that would read as another account's, or display reversed;
        // or none at all (found by the fuzz target: `["*", ""]`, a JSON
        // array, is a payload serde accepts for the struct too).
        assert_eq!(
            ack(br#"["*", ""]"#),
            Err(CommandError::By(crate::commands::BadName))
        );
        for by in ["nurse@station-2", "nurse\u{202e}2-noitats", "", "  "] {
            let payload = serde_json::json!({"alert_id": "x", "by": by}).to_string();
            assert_eq!(
                ack(payload.as_bytes()),
                Err(CommandError::By(crate::commands::BadName)),
                "{by}"
            );
        }
        for account in ["", "a b", "o'brien", "x@y"] {
            assert_eq!(
                parse_ack(account, br#"{"alert_id":"x","by":"n"}"#),
                Err(CommandError::Account),
                "{account:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(account in ".{0,80}", bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_ack(&account, &bytes);
        }
    }
}
