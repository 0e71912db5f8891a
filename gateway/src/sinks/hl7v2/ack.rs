//! The peer's acknowledgement (pure): an HL7 v2 `ACK` message's MSA segment
//! says whether the message whose control id it names was accepted.
//!
//! - `AA` (original mode) or `CA` (enhanced mode, commit accept): delivered;
//!   the spool cursor may move.
//! - `AE` / `CE`: the receiver could not process *this* message (its content,
//!   an unknown patient): sending it again gives the same answer, so the
//!   sink quarantines it and goes on ([`Verdict::Refused`]).
//! - `AR` / `CR`: the receiver rejects the interface itself (message type,
//!   version or processing id not supported, or it is unavailable): the
//!   message is kept and sent again with backoff ([`Verdict::Rejected`]).
//!
//! An ACK naming another control id, or that is no ACK, is a protocol error
//! and never a delivery.

/// What an acknowledgement says about the message it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `AA` or `CA`.
    Accepted,
    /// `AE` or `CE`, with the peer's text (MSA-3, ERR-8).
    Refused { code: String, text: String },
    /// `AR` or `CR`, with the peer's text.
    Rejected { code: String, text: String },
}

/// Why bytes from the peer are not an acknowledgement of the message sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("the answer is not an HL7 message (no MSH segment first)")]
    NotHl7,
    #[error("the answer has no MSA segment")]
    NoMsa,
    #[error("MSA-1 is `{0}`, not one of AA, AE, AR, CA, CE, CR")]
    UnknownCode(String),
    #[error("the ACK is for control id `{got}`, the message sent was `{sent}`")]
    OtherMessage { sent: String, got: String },
}

/// Reads the acknowledgement in `message` (one MLLP frame's content) of the
/// message sent with control id `sent`.
pub fn parse(message: &[u8], sent: &str) -> Result<Verdict, AckError> {
    let text = String::from_utf8_lossy(message);
    let mut segments = text.split(['\r', '\n']).filter(|s| !s.is_empty());
    let msh = segments.next().ok_or(AckError::NotHl7)?;
    // MSH-1 is the field separator, MSH-2 the other encoding characters.
    let sep = msh
        .strip_prefix("MSH")
        .and_then(|rest| rest.chars().next())
        .ok_or(AckError::NotHl7)?;
    let component = msh.chars().nth(4).unwrap_or('^');
    let mut msa: Option<Vec<&str>> = None;
    let mut err_text = None;
    for segment in segments {
        let fields: Vec<&str> = segment.split(sep).collect();
        match fields[0] {
            "MSA" if msa.is_none() => msa = Some(fields),
            // ERR-8: the user message (v2.5+); else ERR-1's text.
            "ERR" if err_text.is_none() => {
                err_text = fields
                    .get(8)
                    .filter(|f| !f.is_empty())
                    .or_else(|| fields.get(1))
                    .map(|f| f.replace(component, " "));
            }
            _ => {}
        }
    }
    let msa = msa.ok_or(AckError::NoMsa)?;
    let code = msa.get(1).copied().unwrap_or_default();
    let got = msa.get(2).copied().unwrap_or_default();
    let mut words = msa.get(3).copied().unwrap_or_default().to_owned();
    if let Some(e) = err_text.filter(|e| !e.is_empty()) {
        if !words.is_empty() {
            words.push_str(": ");
        }
        words.push_str(&e);
    }
    let verdict = match code {
        "AA" | "CA" => Verdict::Accepted,
        "AE" | "CE" => Verdict::Refused {
            code: code.to_owned(),
            text: words,
        },
        "AR" | "CR" => Verdict::Rejected {
            code: code.to_owned(),
            text: words,
        },
        other => return Err(AckError::UnknownCode(other.chars().take(20).collect())),
    };
    if got != sent {
        return Err(AckError::OtherMessage {
            sent: sent.to_owned(),
            got: got.chars().take(200).collect(),
        });
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ack(msa: &str) -> String {
        format!("MSH|^~\\&|EMR|HOSP|WARDGATE|gw-1|20261127101531||ACK^R01^ACK|9|P|2.6\r{msa}\r")
    }

    fn check(message: &str, expected: &Result<Verdict, AckError>) {
        assert_eq!(&parse(message.as_bytes(), "T42-1"), expected, "{message:?}");
    }

    #[test]
    fn accepts_are_deliveries_in_both_modes() {
        check(&ack("MSA|AA|T42-1"), &Ok(Verdict::Accepted));
        check(&ack("MSA|CA|T42-1|"), &Ok(Verdict::Accepted));
    }

    #[test]
    fn errors_and_rejects_carry_the_peers_words() {
        check(
            &ack(
                "MSA|AE|T42-1|unknown patient\rERR||PID^1^3|204^Unknown key identifier^HL70357|E||||MRN not on file",
            ),
            &Ok(Verdict::Refused {
                code: "AE".into(),
                text: "unknown patient: MRN not on file".into(),
            }),
        );
        check(
            &ack("MSA|CR|T42-1"),
            &Ok(Verdict::Rejected {
                code: "CR".into(),
                text: String::new(),
            }),
        );
        check(
            &ack("MSA|AR|T42-1|down for maintenance"),
            &Ok(Verdict::Rejected {
                code: "AR".into(),
                text: "down for maintenance".into(),
            }),
        );
    }

    #[test]
    fn an_ack_for_another_message_is_no_delivery() {
        check(
            &ack("MSA|AA|T41-1"),
            &Err(AckError::OtherMessage {
                sent: "T42-1".into(),
                got: "T41-1".into(),
            }),
        );
        check(
            &ack("MSA|AA"),
            &Err(AckError::OtherMessage {
                sent: "T42-1".into(),
                got: String::new(),
            }),
        );
    }

    #[test]
    fn what_is_no_ack_is_an_error() {
        check("", &Err(AckError::NotHl7));
        check("HTTP/1.1 400 Bad Request\r\n", &Err(AckError::NotHl7));
        check("MSH|^~\\&|EMR\rPID|||1\r", &Err(AckError::NoMsa));
        check(
            &ack("MSA|OK|T42-1"),
            &Err(AckError::UnknownCode("OK".into())),
        );
    }

    #[test]
    fn other_separators_are_read_from_msh() {
        check("MSH#^~\\&#EMR\nMSA#AA#T42-1\n", &Ok(Verdict::Accepted));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&bytes, "T42-1");
        }

        #[test]
        fn an_accept_is_read_whatever_the_control_id(id in "[A-Za-z0-9.-]{1,40}") {
            let msg = format!("MSH|^~\\&|EMR\rMSA|AA|{id}\r");
            prop_assert_eq!(parse(msg.as_bytes(), &id), Ok(Verdict::Accepted));
        }
    }
}
