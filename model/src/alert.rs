//! Alerts as nurses see them: one per episode per (subject, rule), with a life
//! of its own (IEC 60601-1-8 priorities, IHE PCD ACM states).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{DeviceRef, RuleId, SubjectId, Timestamp};

/// Alarm priority. Ordered: `Low < Medium < High`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
}

crate::wire::wire_names!(Priority {
    Low => "low",
    Medium => "medium",
    High => "high",
});

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// About the patient (SpO2 low, NEWS2 high).
    Physiological,
    /// About the equipment (occlusion, battery, communication lost).
    Technical,
    /// Information that needs no immediate action (near end of infusion).
    Advisory,
}

crate::wire::wire_names!(AlertKind {
    Physiological => "physiological",
    Technical => "technical",
    Advisory => "advisory",
});

/// Where an alert is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds and nobody has acknowledged it.
    Active,
    /// The condition has gone but a latching rule keeps it until acknowledged.
    Latched,
    /// A nurse acknowledged it; the condition may still hold.
    Acknowledged,
    /// Over: the condition has gone (and, if latching, it was acknowledged).
    Cleared,
}

crate::wire::wire_names!(AlertState {
    Active => "active",
    Latched => "latched",
    Acknowledged => "acknowledged",
    Cleared => "cleared",
});

/// What just happened to an alert; every transition is published and audited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Raised,
    /// Re-notified: not acknowledged within the rule's `escalate_after`.
    Escalated,
    /// The condition moved to another priority band within the same episode
    /// (NEWS2 medium → high); `priority` and `message` are the new ones.
    PriorityChanged,
    Acknowledged,
    Latched,
    Cleared,
}

crate::wire::wire_names!(Transition {
    Raised => "raised",
    Escalated => "escalated",
    PriorityChanged => "priority_changed",
    Acknowledged => "acknowledged",
    Latched => "latched",
    Cleared => "cleared",
});

/// Who did something, and through which channel: `by` is the person's name
/// and the credential that vouches for it (`nurse-jones@station-1`); `via` is
/// the channel and that credential (`http:station-1` for a bearer token,
/// `mqtt:alert-manager` for the broker account the broker's ACL let publish
/// the command), so two records with the same `by` but different origins
/// are told apart. `via` is absent for records made before it existed and
/// for replayed acknowledgements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub by: Arc<str>,
    pub via: Option<Arc<str>>,
}

impl Actor {
    pub fn new(by: &str, via: &str) -> Actor {
        Actor {
            by: by.into(),
            via: Some(via.into()),
        }
    }
}

impl From<&str> for Actor {
    /// A name alone, with no channel (replays, tests).
    fn from(by: &str) -> Actor {
        Actor {
            by: by.into(),
            via: None,
        }
    }
}

/// A nurse's (or system's) acknowledgement, kept for the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub by: Arc<str>,
    pub at: Timestamp,
    /// The channel and credential ([`Actor::via`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Arc<str>>,
}

/// Identifies one alert episode; stable for its whole life.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AlertId(pub Arc<str>);

/// A snapshot of one alert after a transition. Each transition produces a new
/// snapshot carrying the whole lifecycle state, so a consumer that sees only the
/// latest one (a retained MQTT message) knows everything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: AlertId,
    pub rule: RuleId,
    pub subject: SubjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceRef>,
    pub priority: Priority,
    pub kind: AlertKind,
    pub state: AlertState,
    pub transition: Transition,
    /// When this transition happened.
    pub at: Timestamp,
    /// When the episode began.
    pub raised_at: Timestamp,
    /// The rule's message with its values filled in.
    pub message: Arc<str>,
    /// 0 until the first escalation for want of acknowledgement.
    #[serde(default)]
    pub escalation_level: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledgement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_at: Option<Timestamp>,
    /// Who has the alert now, when the gateway knows its staff: the nurses
    /// assigned to the subject, after an escalation the charge nurses, after
    /// another everyone. Each hand-over is an escalation, so the snapshot
    /// of that transition records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Box<Recipient>>,
}

/// Who an alert goes to now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub to: RecipientGroup,
    /// The people in that group (empty for everyone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub staff: Vec<StaffRef>,
}

/// The step of the chain an alert has reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientGroup {
    /// The nurses assigned to the subject.
    Assigned,
    /// The charge nurses (nobody was assigned, or the assigned nurses did
    /// not acknowledge in time).
    Charge,
    /// Everyone on the ward.
    Everyone,
}

crate::wire::wire_names!(RecipientGroup {
    Assigned => "assigned",
    Charge => "charge",
    Everyone => "everyone",
});

/// One member of staff, as alerts name them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StaffRef {
    pub id: Arc<str>,
    pub name: Arc<str>,
}

#[cfg(test)]
mod tests {
    use super::Transition;

    #[test]
    fn transition_names_are_their_json_names() {
        use Transition::{Acknowledged, Cleared, Escalated, Latched, PriorityChanged, Raised};
        for t in [
            Raised,
            Escalated,
            PriorityChanged,
            Acknowledged,
            Latched,
            Cleared,
        ] {
            assert_eq!(
                serde_json::to_string(&t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
    }
}
