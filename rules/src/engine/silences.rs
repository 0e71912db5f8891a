//! Silences: a subject or a rule silenced for a while holds back new alerts
//! and defers escalations; each silence and its end are on the record.

use wardgate_model::{Actor, Event, Silence, SilenceTarget, Timestamp};

use super::{AuditEntry, Engine, SilenceError, lower};

impl Engine {
    pub(super) fn silenced(&self, si: usize, ri: usize, now: Timestamp) -> bool {
        let subject = &self.subjects[si].id;
        let rule = &self.rules.rules[ri].id;
        self.silences.iter().any(|s| {
            s.from <= now
                && now < s.until
                && match &s.target {
                    SilenceTarget::Subject(x) => x == subject,
                    SilenceTarget::Rule(x) => x == rule,
                }
        })
    }

    /// Silences a subject or a rule until `until` (at most `max_silence` from
    /// now). While silenced, new alerts are held back and escalations deferred;
    /// a condition still holding when the silence ends raises its alert then.
    /// Returns the silence's record (`Event::Silence`, state active) for the
    /// alert lane; its end is returned by the tick at `until`.
    pub fn silence(
        &mut self,
        now: Timestamp,
        target: SilenceTarget,
        until: Timestamp,
        who: impl Into<Actor>,
    ) -> Result<Event, SilenceError> {
        if until <= now {
            return Err(SilenceError::EndsInPast);
        }
        if until - now > self.opts.max_silence {
            return Err(SilenceError::TooLong {
                max_minutes: self.opts.max_silence.num_minutes(),
            });
        }
        if let SilenceTarget::Rule(r) = &target
            && !self.rule_index.contains_key(r)
        {
            return Err(SilenceError::UnknownRule(r.to_string()));
        }
        let s = Silence::new(target, now, until, &who.into());
        lower(&mut self.next_deadline, until);
        self.push_audit(AuditEntry::Silenced(s.clone()));
        self.silences.push(s.clone());
        Ok(Event::Silence(s))
    }

    /// Puts back the silences that were in force before a restart; those
    /// that ran out meanwhile end now, on the record (returned).
    pub fn restore_silences(&mut self, now: Timestamp, silences: &[Silence]) -> Vec<Event> {
        let mut out = Vec::new();
        for s in silences {
            if s.until <= now {
                let ended = s.ended(now);
                self.push_audit(AuditEntry::Silenced(ended.clone()));
                out.push(Event::Silence(ended));
            } else {
                lower(&mut self.next_deadline, s.until);
                self.silences.push(s.clone());
            }
        }
        out
    }
}
