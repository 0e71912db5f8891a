//! Acknowledgement commands arriving on `{base}/commands/ack`. Untrusted
//! input: validated, and a bad payload is an error value, never a panic.

use serde::Deserialize;

/// `{"alert_id": "...", "by": "nurse-jones"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckCommand {
    pub alert_id: String,
    pub by: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("payload is not the expected JSON object {{\"alert_id\", \"by\"}}: {0}")]
    Json(String),
    #[error("{0} must be 1 to 128 printable characters")]
    Field(&'static str),
}

pub fn parse_ack(payload: &[u8]) -> Result<AckCommand, CommandError> {
    let cmd: AckCommand =
        serde_json::from_slice(payload).map_err(|e| CommandError::Json(e.to_string()))?;
    for (name, v) in [("alert_id", &cmd.alert_id), ("by", &cmd.by)] {
        if v.is_empty() || v.chars().count() > 128 || v.chars().any(char::is_control) {
            return Err(CommandError::Field(name));
        }
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_and_invalid_payloads() {
        assert_eq!(
            parse_ack(br#"{"alert_id":"bed-1/spo2_low/1","by":"nurse-1"}"#),
            Ok(AckCommand {
                alert_id: "bed-1/spo2_low/1".into(),
                by: "nurse-1".into()
            })
        );
        assert!(matches!(parse_ack(b"ack it"), Err(CommandError::Json(_))));
        assert!(matches!(
            parse_ack(br#"{"alert_id":"x","by":"n","extra":1}"#),
            Err(CommandError::Json(_))
        ));
        assert_eq!(
            parse_ack(br#"{"alert_id":"","by":"n"}"#),
            Err(CommandError::Field("alert_id"))
        );
        assert_eq!(
            parse_ack(br#"{"alert_id":"x","by":"a\nb"}"#),
            Err(CommandError::Field("by"))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_ack(&bytes);
        }
    }
}
