//! Commands nurses send to the alert manager from outside the pipeline (the
//! HTTP API, the MQTT command topic): acknowledge an alert, silence a
//! subject or a rule for a bounded time. Each carries a reply channel so
//! the caller learns whether the rules engine applied it (an unknown alert
//! id is an answer, not a log line); MQTT has no caller to answer, so its
//! replies are dropped (the pipeline logs every outcome). Each also carries
//! who sent it and through which channel ([`Actor`]), from the credential
//! the channel checked: a bearer token, or the broker account.

use tokio::sync::oneshot;
use wardgate_model::{Actor, AlertId, Timestamp};
use wardgate_rules::{AckError, SilenceError, SilenceTarget};

/// Why a command was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRejected {
    #[error(transparent)]
    Ack(#[from] AckError),
    #[error(transparent)]
    Silence(#[from] SilenceError),
    #[error(transparent)]
    Assign(#[from] crate::roster::AssignError),
}

/// One command for the alert manager.
#[derive(Debug)]
pub enum AlertCommand {
    Acknowledge {
        alert: AlertId,
        /// Who acknowledged, as recorded in the alert and the audit trail.
        who: Actor,
        reply: oneshot::Sender<Result<(), CommandRejected>>,
    },
    Silence {
        target: SilenceTarget,
        until: Timestamp,
        who: Actor,
        reply: oneshot::Sender<Result<(), CommandRejected>>,
    },
    /// The subjects a member of staff covers from now on (shift change).
    Assign {
        staff: String,
        subjects: Vec<wardgate_model::SubjectId>,
        who: Actor,
        reply: oneshot::Sender<Result<(), CommandRejected>>,
    },
}

/// The channel a command came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The HTTP API; the credential is the bearer token's configured name.
    Http,
    /// The MQTT command topic; the credential is the broker account, the
    /// last level of the topic, which the broker's ACL lets only that
    /// account publish on (config/mosquitto/wardgate.acl).
    Mqtt,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Http => "http",
            Channel::Mqtt => "mqtt",
        }
    }
}

/// A name refused in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "`by` must be at most 64 letters, digits, spaces or . - _ ' (no @, no control or direction characters)"
)]
pub struct BadName;

/// Letters, digits, spaces and `.-_'` only, at most 64: no `@` (it would
/// read as another station) and no control or bidirectional-formatting
/// characters (they could make a record display as someone else's).
pub fn safe_name(name: &str) -> bool {
    name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_' | '\''))
}

/// Who did it: the person's name as given, vouched for by the credential
/// (`nurse-jones@station-1`), or the credential alone when no name was
/// given; and the channel with the credential (`http:station-1`).
pub fn attribute(name: Option<&str>, credential: &str, channel: Channel) -> Result<Actor, BadName> {
    let via = format!("{}:{credential}", channel.as_str());
    match name.map(str::trim) {
        None | Some("") => Ok(Actor::new(credential, &via)),
        Some(name) if safe_name(name) => Ok(Actor::new(&format!("{name}@{credential}"), &via)),
        Some(_) => Err(BadName),
    }
}
