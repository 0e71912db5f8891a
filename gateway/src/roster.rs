//! Who has an alert: the ward's staff (`[[staff]]`), which subjects each
//! nurse covers this shift, and the chain an unacknowledged alert follows —
//! the nurses assigned to its subject, then at its first escalation the
//! charge nurses, then at the next everyone. The rules engine counts the
//! escalations (`escalate_after`); the roster turns the count into people.
//! Assignments change at shift change without a restart (`PUT
//! /api/staff/{id}/subjects`, admin role).
//!
//! Deterministic: no I/O, no clock.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wardgate_model::{Event, Recipient, RecipientGroup, StaffRef, SubjectId};

/// Escalations an alert goes through: to the charge nurses, then to
/// everyone. The engine stops there when staff is configured.
pub const CHAIN_STEPS: u8 = 2;

/// What a member of staff does in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    /// Has the alerts of the subjects assigned to them first.
    Nurse,
    /// Has every alert not acknowledged in time, and those of subjects
    /// nobody covers.
    ChargeNurse,
}

/// One member of staff and the subjects they cover now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffMember {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub role: StaffRole,
    #[serde(default)]
    pub subjects: Vec<SubjectId>,
}

impl StaffMember {
    fn as_ref(&self) -> StaffRef {
        StaffRef {
            id: Arc::clone(&self.id),
            name: Arc::clone(&self.name),
        }
    }
}

/// Why an assignment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    #[error("no member of staff has id `{0}`")]
    UnknownStaff(String),
    #[error("no subject has id `{0}`")]
    UnknownSubject(String),
}

/// The staff and their assignments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    staff: Vec<StaffMember>,
    /// Every subject of the gateway (assignments must name one).
    subjects: Vec<SubjectId>,
}

impl Roster {
    pub fn new(staff: Vec<StaffMember>, subjects: Vec<SubjectId>) -> Self {
        Self { staff, subjects }
    }

    pub fn staff(&self) -> &[StaffMember] {
        &self.staff
    }

    /// Who has an alert of `subject` that escalated `level` times; `None`
    /// when no staff is configured (the gateway then names nobody).
    pub fn recipient(&self, subject: &SubjectId, level: u8) -> Option<Recipient> {
        if self.staff.is_empty() {
            return None;
        }
        let of = |pick: &dyn Fn(&StaffMember) -> bool| -> Vec<StaffRef> {
            self.staff
                .iter()
                .filter(|m| pick(m))
                .map(StaffMember::as_ref)
                .collect()
        };
        let assigned = of(&|m| m.role == StaffRole::Nurse && m.subjects.contains(subject));
        let charge = of(&|m| m.role == StaffRole::ChargeNurse);
        // Each step the chain cannot take (nobody there) passes to the next.
        let chain = [
            (RecipientGroup::Assigned, assigned),
            (RecipientGroup::Charge, charge),
        ];
        let step = chain
            .into_iter()
            .filter(|(_, staff)| !staff.is_empty())
            .nth(usize::from(level));
        Some(match step {
            Some((to, staff)) => Recipient { to, staff },
            None => Recipient {
                to: RecipientGroup::Everyone,
                staff: Vec::new(),
            },
        })
    }

    /// Fills in who has each alert among `events` now.
    pub fn address_events(&self, events: &mut [Event]) {
        for e in events {
            if let Event::Alert(a) = e {
                a.recipient = self.recipient(&a.subject, a.escalation_level).map(Box::new);
            }
        }
    }

    /// Replaces the subjects `staff` covers (at shift change).
    pub fn assign(&mut self, staff: &str, subjects: Vec<SubjectId>) -> Result<(), AssignError> {
        if let Some(unknown) = subjects.iter().find(|s| !self.subjects.contains(s)) {
            return Err(AssignError::UnknownSubject(unknown.to_string()));
        }
        let member = self
            .staff
            .iter_mut()
            .find(|m| m.id.as_ref() == staff)
            .ok_or_else(|| AssignError::UnknownStaff(staff.to_owned()))?;
        member.subjects = subjects;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, role: StaffRole, subjects: &[&str]) -> StaffMember {
        StaffMember {
            id: id.into(),
            name: format!("Name of {id}").into(),
            role,
            subjects: subjects.iter().map(|s| SubjectId::from(*s)).collect(),
        }
    }

    fn roster(staff: Vec<StaffMember>) -> Roster {
        Roster::new(
            staff,
            ["bed-1", "bed-2", "bed-3"]
                .into_iter()
                .map(SubjectId::from)
                .collect(),
        )
    }

    /// (group, staff ids) of the recipient at each escalation level 0..=3.
    fn chain(r: &Roster, subject: &str) -> Vec<(RecipientGroup, Vec<String>)> {
        (0..=3)
            .map(|level| {
                let to = r.recipient(&SubjectId::from(subject), level).unwrap();
                (to.to, to.staff.iter().map(|s| s.id.to_string()).collect())
            })
            .collect()
    }

    #[test]
    fn assigned_nurse_then_charge_nurse_then_everyone() {
        use RecipientGroup::{Assigned, Charge, Everyone};
        let r = roster(vec![
            member("ada", StaffRole::Nurse, &["bed-1", "bed-2"]),
            member("ben", StaffRole::Nurse, &["bed-2"]),
            member("grace", StaffRole::ChargeNurse, &[]),
        ]);
        assert_eq!(
            chain(&r, "bed-2"),
            vec![
                (Assigned, vec!["ada".into(), "ben".into()]),
                (Charge, vec!["grace".into()]),
                (Everyone, vec![]),
                (Everyone, vec![]),
            ]
        );
        // Nobody covers bed 3: the charge nurse has it from the start.
        assert_eq!(
            chain(&r, "bed-3"),
            vec![
                (Charge, vec!["grace".into()]),
                (Everyone, vec![]),
                (Everyone, vec![]),
                (Everyone, vec![]),
            ]
        );
        // No charge nurse: from the assigned nurse straight to everyone.
        let r = roster(vec![member("ada", StaffRole::Nurse, &["bed-1"])]);
        assert_eq!(
            chain(&r, "bed-1"),
            vec![
                (Assigned, vec!["ada".into()]),
                (Everyone, vec![]),
                (Everyone, vec![]),
                (Everyone, vec![]),
            ]
        );
        // No staff at all: nobody is named.
        assert_eq!(roster(vec![]).recipient(&"bed-1".into(), 0), None);
    }

    #[test]
    fn a_shift_change_moves_the_subjects() {
        let mut r = roster(vec![
            member("ada", StaffRole::Nurse, &["bed-1"]),
            member("ben", StaffRole::Nurse, &[]),
        ]);
        r.assign("ada", vec![]).unwrap();
        r.assign("ben", vec!["bed-1".into()]).unwrap();
        let to = r.recipient(&"bed-1".into(), 0).unwrap();
        assert_eq!(to.staff[0].id.as_ref(), "ben");
        assert_eq!(
            r.assign("zoe", vec![]),
            Err(AssignError::UnknownStaff("zoe".into()))
        );
        assert_eq!(
            r.assign("ben", vec!["bed-9".into()]),
            Err(AssignError::UnknownSubject("bed-9".into()))
        );
        // A refused assignment changes nothing.
        assert_eq!(r.staff()[1].subjects, vec![SubjectId::from("bed-1")]);
    }
}
