//! Silences: a nurse holds back the alerts of a subject or of a rule for a
//! while. Each is audited as an event — when it started (who, what, until
//! when) and when it ended — in the alert lane, so every sink, the API and
//! the page carry the record, not only a log line.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Actor, RuleId, SubjectId, Timestamp};

/// What a silence applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceTarget {
    /// Every rule for one subject.
    Subject(SubjectId),
    /// One rule for every subject.
    Rule(RuleId),
}

/// Where a silence is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceState {
    Active,
    Ended,
}

crate::wire::wire_names!(SilenceState {
    Active => "active",
    Ended => "ended",
});

/// One silence, as recorded when it starts and when it ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// When this record happened: the start, or the end.
    pub at: Timestamp,
    /// The silenced subject, or `*` for a rule silenced for every subject.
    pub subject: SubjectId,
    pub target: SilenceTarget,
    pub from: Timestamp,
    pub until: Timestamp,
    /// Who silenced (the name given and the token's name).
    pub by: Arc<str>,
    /// The channel and credential ([`crate::Actor::via`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Arc<str>>,
    pub state: SilenceState,
}

impl Silence {
    /// A silence starting at `from`.
    pub fn new(target: SilenceTarget, from: Timestamp, until: Timestamp, who: &Actor) -> Silence {
        let subject = match &target {
            SilenceTarget::Subject(s) => s.clone(),
            SilenceTarget::Rule(_) => SubjectId::from("*"),
        };
        Silence {
            at: from,
            subject,
            target,
            from,
            until,
            by: who.by.clone(),
            via: who.via.clone(),
            state: SilenceState::Active,
        }
    }

    /// The record of its end at `at`.
    #[must_use]
    pub fn ended(&self, at: Timestamp) -> Silence {
        Silence {
            at,
            state: SilenceState::Ended,
            ..self.clone()
        }
    }
}
