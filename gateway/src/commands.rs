//! Commands nurses send to the alert manager from outside the pipeline (the
//! HTTP API): acknowledge an alert, silence a subject or a rule for a
//! bounded time. Each carries a reply channel so the caller learns whether
//! the rules engine applied it (an unknown alert id is an answer, not a log
//! line). The MQTT sink's `AckCommand` has no reply: MQTT has no caller to
//! answer.

use tokio::sync::oneshot;
use wardgate_model::{AlertId, Timestamp};
use wardgate_rules::{AckError, SilenceError, SilenceTarget};

/// Why a command was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRejected {
    #[error(transparent)]
    Ack(#[from] AckError),
    #[error(transparent)]
    Silence(#[from] SilenceError),
}

/// One command for the alert manager.
#[derive(Debug)]
pub enum AlertCommand {
    Acknowledge {
        alert: AlertId,
        /// Who acknowledged, as recorded in the alert and the audit trail.
        by: String,
        reply: oneshot::Sender<Result<(), CommandRejected>>,
    },
    Silence {
        target: SilenceTarget,
        until: Timestamp,
        by: String,
        reply: oneshot::Sender<Result<(), CommandRejected>>,
    },
}
