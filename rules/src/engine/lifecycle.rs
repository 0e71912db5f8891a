//! The alert lifecycle: an episode per (subject, rule) raised after `for`,
//! its priority following the rule's bands (up at once, down after the hold
//! time), ended or latched after `clear` held for `clear_for`, acknowledged,
//! restored after a restart; every transition emitted and audited.

use std::sync::Arc;

use chrono::{SecondsFormat, TimeDelta};
use wardgate_model::{
    Acknowledgement, Actor, Alert, AlertId, AlertState, Event, Priority, Timestamp, Transition,
};

use super::evaluator::{Cause, Ctx};
use super::{AckError, AuditEntry, Engine, lower};
use crate::expr::Piece;

/// Which priority band holds at one evaluation of an open or pending alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BandNow {
    /// `when` is not positively true (data missing, or between `when` and
    /// `clear`): the priority stays as it is.
    Unknown,
    /// No band: the rule's own priority.
    Own,
    Band(u16),
}

impl BandNow {
    pub(super) fn band(self) -> Option<u16> {
        match self {
            BandNow::Band(b) => Some(b),
            BandNow::Unknown | BandNow::Own => None,
        }
    }
}

#[derive(Debug)]
pub(super) struct Episode {
    pub(super) id: AlertId,
    pub(super) raised_at: Timestamp,
    pub(super) state: AlertState,
    /// The rule's priority, or the priority band's that holds.
    pub(super) priority: Priority,
    /// The band setting `priority` (`None`: the rule's own).
    pub(super) band: Option<u16>,
    /// The rule's condition still holds (not yet met `clear` for `clear_for`).
    pub(super) condition: bool,
    /// Since when `clear` has held without a break; the episode ends once
    /// it has held for the rule's `clear_for`.
    pub(super) clearing_since: Option<Timestamp>,
    /// Per priority (low, medium, high): since when the condition's band has
    /// been at or below it; the priority is lowered to the lowest level that
    /// has held for `clear_for`.
    pub(super) lower_since: [Option<Timestamp>; 3],
    pub(super) escalation_level: u8,
    pub(super) next_escalation: Option<Timestamp>,
    pub(super) ack: Option<Acknowledgement>,
    /// The device that explains the alert and what it said.
    pub(super) cause: Cause,
    pub(super) message: Arc<str>,
}

impl Engine {
    /// Re-evaluates one rule for one subject and steps its alert.
    pub(super) fn evaluate(&mut self, now: Timestamp, si: usize, ri: usize, out: &mut Vec<Event>) {
        if !self.subjects[si].applicable[ri] {
            return;
        }
        let rule = &self.rules.rules[ri];
        let mut ctx = Ctx {
            engine: self,
            si,
            now,
            now_ns: self.ns(now),
            device: None,
        };
        // Only what the alert's state needs: `clear` while the condition
        // holds, `when` otherwise (half the work on the hot path).
        let holding = self.subjects[si].rules[ri]
            .episode
            .as_ref()
            .is_some_and(|e| e.condition);
        let (when, clear, hint) = if holding {
            let clear = match &rule.clear {
                Some(c) => ctx.cond(c),
                None => !ctx.cond(&rule.when),
            };
            (true, clear, None)
        } else {
            let when = ctx.cond(&rule.when);
            (when, false, ctx.device.take())
        };
        // The band matters while the condition holds (or is about to). An
        // open episode's band changes only while `when` itself holds: with
        // data missing (a stale NEWS2) its priority stays as it is.
        let band = if !when || clear || rule.bands.is_empty() {
            BandNow::Own
        } else if holding && !ctx.cond(&rule.when) {
            BandNow::Unknown
        } else {
            rule.bands
                .iter()
                .position(|b| ctx.cond(&b.when))
                .map_or(BandNow::Own, |b| BandNow::Band(b as u16))
        };
        let for_ = rule.for_;
        let clear_for = rule.clear_for;
        let latching = rule.latching;
        let band = self.confirm_band(now, si, ri, band);
        let escalate_after = self.escalate_after_of(
            ri,
            self.subjects[si].rules[ri]
                .episode
                .as_ref()
                .and_then(|e| e.band),
        );
        let st = &mut self.subjects[si].rules[ri];
        match &mut st.episode {
            None => {
                if !when {
                    st.pending_since = None;
                    return;
                }
                let since = *st.pending_since.get_or_insert(now);
                if now - since >= for_ {
                    if self.silenced(si, ri, now) {
                        lower(&mut self.next_deadline, now + self.opts.tick_interval);
                    } else {
                        self.subjects[si].rules[ri].pending_since = None;
                        let cause = hint
                            .map(|h| h.cause(&self.subjects[si]))
                            .unwrap_or_default();
                        self.raise(now, si, ri, band.band(), cause, out);
                    }
                } else {
                    lower(&mut self.next_deadline, since + for_);
                }
            }
            Some(ep) => {
                if ep.condition {
                    if !clear {
                        // `when` holds again within the hold time: the same
                        // episode goes on.
                        if ep.clearing_since.take().is_some()
                            && let Some(t) = ep.next_escalation
                        {
                            // Escalation waited while the condition resolved.
                            lower(&mut self.next_deadline, t.max(now));
                        }
                        if band != BandNow::Unknown {
                            self.follow_band(now, si, ri, band.band(), out);
                        }
                        return;
                    }
                    let since = *ep.clearing_since.get_or_insert(now);
                    if now - since < clear_for {
                        lower(&mut self.next_deadline, since + clear_for);
                        return;
                    }
                    ep.condition = false;
                    ep.clearing_since = None;
                    ep.lower_since = [None; 3];
                    match ep.state {
                        AlertState::Active if latching => {
                            ep.state = AlertState::Latched;
                            // A re-notification that waited during the hold
                            // resumes an interval from now, not at once.
                            if ep.next_escalation.is_some_and(|t| t <= now) {
                                ep.next_escalation = escalate_after.map(|d| now + d);
                            }
                            if let Some(t) = ep.next_escalation {
                                lower(&mut self.next_deadline, t);
                            }
                            self.emit(now, si, ri, Transition::Latched, out);
                        }
                        // Still latched: it waits for an acknowledgement
                        // however often its condition comes and goes.
                        AlertState::Latched => {}
                        _ => self.end_episode(now, si, ri, out),
                    }
                } else if when {
                    // A latched alert whose condition returns: still the same
                    // episode, still waiting for acknowledgement, at the
                    // priority it has now.
                    ep.condition = true;
                    if band != BandNow::Unknown {
                        self.follow_band(now, si, ri, band.band(), out);
                    }
                }
            }
        }
    }

    /// Notes which band holds and returns the one that counts: a band with
    /// a `for` only once it has held that long, until then the rule's own
    /// priority.
    pub(super) fn confirm_band(
        &mut self,
        now: Timestamp,
        si: usize,
        ri: usize,
        band: BandNow,
    ) -> BandNow {
        let st = &mut self.subjects[si].rules[ri];
        let BandNow::Band(b) = band else {
            st.band_since = None;
            return band;
        };
        let since = match st.band_since {
            Some((held, since)) if held == b => since,
            _ => {
                st.band_since = Some((b, now));
                now
            }
        };
        let for_ = self.rules.rules[ri].bands[b as usize].for_;
        if now - since >= for_ {
            BandNow::Band(b)
        } else {
            lower(&mut self.next_deadline, since + for_);
            BandNow::Own
        }
    }

    /// When a band waiting for its `for` is due.
    pub(super) fn band_due(&self, si: usize, ri: usize) -> Option<Timestamp> {
        let (b, since) = self.subjects[si].rules[ri].band_since?;
        let for_ = self.rules.rules[ri].bands[b as usize].for_;
        (for_ > TimeDelta::zero()).then_some(since + for_)
    }

    /// The priority of an open episode follows its bands: up at once (an
    /// acknowledged alert that rises sounds again), down only after a lower
    /// level has held for the rule's `clear_for` — each level on its own
    /// clock, so stepping down two bands takes the hold time at each — and a
    /// value wandering across a band edge does not make the priority flap.
    pub(super) fn follow_band(
        &mut self,
        now: Timestamp,
        si: usize,
        ri: usize,
        band: Option<u16>,
        out: &mut Vec<Event>,
    ) {
        let rule = &self.rules.rules[ri];
        if rule.bands.is_empty() {
            return;
        }
        let level = |b: Option<u16>| b.map_or(rule.priority, |b| rule.bands[b as usize].priority);
        let held = level(band);
        let clear_for = rule.clear_for;
        // The levels this rule can show: its own and its bands'.
        let levels: Vec<(Priority, Option<u16>)> = std::iter::once((rule.priority, None))
            .chain(
                rule.bands
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (b.priority, Some(i as u16))),
            )
            .collect();
        let Some(ep) = self.subjects[si].rules[ri].episode.as_mut() else {
            return;
        };
        let target = if held > ep.priority {
            Some((held, band))
        } else {
            for p in [Priority::Low, Priority::Medium, Priority::High] {
                let slot = &mut ep.lower_since[p as usize];
                if p < ep.priority && held <= p {
                    slot.get_or_insert(now);
                } else {
                    *slot = None;
                }
            }
            // The lowest level that has held long enough.
            let mut target = None;
            for &(p, b) in levels
                .iter()
                .filter(|(p, _)| *p >= held && *p < ep.priority)
            {
                let Some(since) = ep.lower_since[p as usize] else {
                    continue;
                };
                if now - since >= clear_for {
                    if target.is_none_or(|(t, _)| p < t) {
                        target = Some((p, if p == held { band } else { b }));
                    }
                } else {
                    lower(&mut self.next_deadline, since + clear_for);
                }
            }
            target
        };
        let Some((priority, band)) = target else {
            return;
        };
        let escalate_after = self.escalate_after_of(ri, band);
        let Some(ep) = self.subjects[si].rules[ri].episode.as_mut() else {
            return;
        };
        // A new priority restarts the escalation clock at its own interval;
        // an acknowledged alert that rises sounds again, as a new call.
        if priority > ep.priority && ep.state == AlertState::Acknowledged {
            ep.state = AlertState::Active;
            ep.ack = None;
        }
        if matches!(ep.state, AlertState::Active | AlertState::Latched) {
            ep.next_escalation = escalate_after.map(|d| now + d);
            if let Some(t) = ep.next_escalation {
                lower(&mut self.next_deadline, t);
            }
        }
        // Levels below the new one keep their clocks (a second step down
        // is timed from when it began); at or above it there is nothing to
        // time.
        for p in [Priority::Low, Priority::Medium, Priority::High] {
            if p >= priority {
                ep.lower_since[p as usize] = None;
            }
        }
        ep.priority = priority;
        ep.band = band;
        let cause = ep.cause.clone();
        let message = self.render(si, now, self.message_of(ri, band), &cause);
        if let Some(ep) = self.subjects[si].rules[ri].episode.as_mut() {
            ep.message = message.into();
        }
        self.emit(now, si, ri, Transition::PriorityChanged, out);
    }

    /// The escalation interval of a rule in a band.
    pub(super) fn escalate_after_of(&self, ri: usize, band: Option<u16>) -> Option<TimeDelta> {
        let rule = &self.rules.rules[ri];
        band.and_then(|b| rule.bands[b as usize].escalate_after)
            .or(rule.escalate_after)
    }

    /// The message template of a rule in a band.
    pub(super) fn message_of(&self, ri: usize, band: Option<u16>) -> &[Piece] {
        let rule = &self.rules.rules[ri];
        band.and_then(|b| rule.bands[b as usize].message.as_deref())
            .unwrap_or(&rule.message)
    }

    pub(super) fn raise(
        &mut self,
        now: Timestamp,
        si: usize,
        ri: usize,
        band: Option<u16>,
        cause: Cause,
        out: &mut Vec<Event>,
    ) {
        let rule = &self.rules.rules[ri];
        let priority = band.map_or(rule.priority, |b| rule.bands[b as usize].priority);
        let message = self.render(si, now, self.message_of(ri, band), &cause);
        let escalate_after = self.escalate_after_of(ri, band);
        let mut id = format!(
            "{}/{}/{}",
            self.subjects[si].id,
            rule.id,
            now.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        );
        let st = &mut self.subjects[si].rules[ri];
        if st.last_start == Some(now) {
            id.push_str("#2");
        }
        st.last_start = Some(now);
        let id = AlertId(id.into());
        let next_escalation = escalate_after.map(|d| now + d);
        if let Some(t) = next_escalation {
            lower(&mut self.next_deadline, t);
        }
        self.subjects[si].rules[ri].episode = Some(Box::new(Episode {
            id: id.clone(),
            raised_at: now,
            state: AlertState::Active,
            priority,
            band,
            condition: true,
            clearing_since: None,
            lower_since: [None; 3],
            escalation_level: 0,
            next_escalation,
            ack: None,
            cause,
            message: message.into(),
        }));
        self.alerts.insert(id, (si as u32, ri as u16));
        self.emit(now, si, ri, Transition::Raised, out);
    }

    pub(super) fn end_episode(
        &mut self,
        now: Timestamp,
        si: usize,
        ri: usize,
        out: &mut Vec<Event>,
    ) {
        if let Some(ep) = &mut self.subjects[si].rules[ri].episode {
            ep.state = AlertState::Cleared;
            ep.condition = false;
        }
        self.emit(now, si, ri, Transition::Cleared, out);
        if let Some(ep) = self.subjects[si].rules[ri].episode.take() {
            self.alerts.remove(&ep.id);
        }
    }

    pub(super) fn emit(
        &mut self,
        now: Timestamp,
        si: usize,
        ri: usize,
        transition: Transition,
        out: &mut Vec<Event>,
    ) {
        let rule = &self.rules.rules[ri];
        let s = &self.subjects[si];
        let Some(ep) = &s.rules[ri].episode else {
            return;
        };
        let alert = Alert {
            id: ep.id.clone(),
            rule: rule.id.clone(),
            subject: s.id.clone(),
            device: ep.cause.device.clone(),
            priority: ep.priority,
            kind: rule.kind,
            state: ep.state,
            transition,
            at: now,
            raised_at: ep.raised_at,
            message: ep.message.clone(),
            escalation_level: ep.escalation_level,
            acknowledged: ep.ack.clone(),
            cleared_at: (ep.state == AlertState::Cleared).then_some(now),
            // The gateway knows its staff; it fills this in.
            recipient: None,
        };
        self.push_audit(AuditEntry::Alert(alert.clone()));
        out.push(Event::Alert(alert));
    }

    pub(super) fn push_audit(&mut self, e: AuditEntry) {
        if self.opts.audit_capacity == 0 {
            self.audit_dropped += 1;
            return;
        }
        if self.audit.len() >= self.opts.audit_capacity {
            self.audit.pop_front();
            self.audit_dropped += 1;
        }
        self.audit.push_back(e);
    }

    /// A nurse acknowledges an alert: an active alert becomes acknowledged
    /// (escalation stops); a latched one is acknowledged and cleared.
    pub fn acknowledge(
        &mut self,
        now: Timestamp,
        id: &AlertId,
        who: impl Into<Actor>,
    ) -> Result<Vec<Event>, AckError> {
        let who = who.into();
        let &(si, ri) = self
            .alerts
            .get(id)
            .ok_or_else(|| AckError::UnknownAlert(id.0.to_string()))?;
        let (si, ri) = (si as usize, ri as usize);
        let mut out = Vec::new();
        let Some(ep) = &mut self.subjects[si].rules[ri].episode else {
            return Err(AckError::UnknownAlert(id.0.to_string()));
        };
        if ep.state == AlertState::Acknowledged {
            return Err(AckError::AlreadyAcknowledged(id.0.to_string()));
        }
        ep.ack = Some(Acknowledgement {
            by: who.by,
            at: now,
            via: who.via,
        });
        ep.state = AlertState::Acknowledged;
        ep.next_escalation = None;
        let condition = ep.condition;
        self.emit(now, si, ri, Transition::Acknowledged, &mut out);
        if !condition {
            self.end_episode(now, si, ri, &mut out);
        }
        Ok(out)
    }

    /// Limits escalation to `max` levels (see
    /// [`EngineOptions::max_escalations`]).
    pub fn set_max_escalations(&mut self, max: Option<u8>) {
        self.opts.max_escalations = max;
    }

    /// Re-opens the alerts that were open before a restart, from their last
    /// snapshots (the spool keeps them), with their ids, states, priorities,
    /// escalation levels and acknowledgements, so the page, the API and
    /// retained MQTT messages agree before and after. An alert that cannot
    /// be re-opened (its rule is gone from the configuration, or the rule
    /// no longer applies to the subject) is not forgotten silently: it is
    /// returned as an explicit `cleared` transition whose message says why.
    /// Call before the first event.
    pub fn restore(&mut self, now: Timestamp, alerts: &[Alert]) -> Vec<Event> {
        let mut out = Vec::new();
        for a in alerts {
            if a.state == AlertState::Cleared {
                continue;
            }
            let si = self.subject_index(&a.subject);
            let Some(&ri) = self.rule_index.get(&a.rule) else {
                out.push(not_restored(now, a, "its rule is no longer configured"));
                continue;
            };
            let ri = ri as usize;
            if !self.subjects[si].applicable[ri] {
                out.push(not_restored(
                    now,
                    a,
                    "its rule no longer applies to this subject",
                ));
                continue;
            }
            let rule = &self.rules.rules[ri];
            let band = rule
                .bands
                .iter()
                .position(|b| b.priority == a.priority)
                .map(|b| b as u16);
            let escalate_after = self.escalate_after_of(ri, band);
            let next_escalation = matches!(a.state, AlertState::Active | AlertState::Latched)
                .then(|| escalate_after.map(|d| now + d))
                .flatten();
            if let Some(t) = next_escalation {
                lower(&mut self.next_deadline, t);
            }
            let st = &mut self.subjects[si].rules[ri];
            st.last_start = Some(a.raised_at);
            st.episode = Some(Box::new(Episode {
                id: a.id.clone(),
                raised_at: a.raised_at,
                state: a.state,
                priority: a.priority,
                band,
                // Re-evaluated with the next data: a condition gone meanwhile
                // starts its hold time then.
                condition: a.state != AlertState::Latched,
                clearing_since: None,
                lower_since: [None; 3],
                escalation_level: a.escalation_level,
                next_escalation,
                ack: a.acknowledged.clone(),
                cause: Cause {
                    device: a.device.clone(),
                    detail: None,
                },
                message: a.message.clone(),
            }));
            self.alerts.insert(a.id.clone(), (si as u32, ri as u16));
        }
        for e in &out {
            if let Event::Alert(a) = e {
                self.push_audit(AuditEntry::Alert(a.clone()));
            }
        }
        out
    }

    /// Takes the audit trail collected since the last call, and how many
    /// entries were dropped for want of room since then.
    pub fn drain_audit(&mut self) -> (Vec<AuditEntry>, u64) {
        let dropped = std::mem::take(&mut self.audit_dropped);
        (self.audit.drain(..).collect(), dropped)
    }
}

/// The explicit end of an alert that could not be re-opened after a restart.
fn not_restored(now: Timestamp, a: &Alert, why: &str) -> Event {
    Event::Alert(Alert {
        state: AlertState::Cleared,
        transition: Transition::Cleared,
        at: now,
        cleared_at: Some(now),
        message: format!("{} — not restored after a restart: {why}", a.message).into(),
        ..a.clone()
    })
}
