//! Time: `poll_tick` advances `for` durations, staleness, NEWS2 freshness,
//! hold times, escalations and silence expiry; `poll_timeout` says when it is
//! next needed.

use wardgate_model::{AlertState, Event, Silence, Timestamp, Transition};

use super::{AuditEntry, Engine, lower};

impl Engine {
    /// Advances time: `for` durations, staleness, NEWS2 freshness,
    /// escalation and silence expiry. Call it at [`Engine::poll_timeout`].
    pub fn poll_tick(&mut self, now: Timestamp) -> Vec<Event> {
        let mut out = Vec::new();
        self.last_tick = Some(now);
        self.next_deadline = None;
        // Silences that have run out end, on the record.
        let (over, still): (Vec<Silence>, Vec<Silence>) = std::mem::take(&mut self.silences)
            .into_iter()
            .partition(|s| s.until <= now);
        self.silences = still;
        for s in over {
            let ended = s.ended(s.until);
            self.push_audit(AuditEntry::Silenced(ended.clone()));
            out.push(Event::Silence(ended));
        }
        for si in 0..self.subjects.len() {
            for k in 0..self.time_rules.len() {
                let ri = self.time_rules[k] as usize;
                self.evaluate(now, si, ri, &mut out);
            }
            for ri in 0..self.rules.rules.len() {
                let st = &self.subjects[si].rules[ri];
                if let Some(since) = st.pending_since
                    && !self.rules.rules[ri].deps.time
                {
                    if since + self.rules.rules[ri].for_ <= now {
                        self.evaluate(now, si, ri, &mut out);
                    } else {
                        lower(&mut self.next_deadline, since + self.rules.rules[ri].for_);
                    }
                }
                // A hold time (`clear_for`) running out ends the episode or
                // lowers its priority without new data.
                let hold = self.subjects[si].rules[ri].episode.as_ref().and_then(|ep| {
                    let clear_for = self.rules.rules[ri].clear_for;
                    ep.clearing_since
                        .into_iter()
                        .chain(ep.lower_since.iter().flatten().copied())
                        .map(|since| since + clear_for)
                        .chain(self.band_due(si, ri))
                        .min()
                });
                if let Some(due) = hold
                    && !self.rules.rules[ri].deps.time
                {
                    if due <= now {
                        self.evaluate(now, si, ri, &mut out);
                    } else {
                        lower(&mut self.next_deadline, due);
                    }
                }
                self.escalate(now, si, ri, &mut out);
            }
            // NEWS2 changes with time alone only when a parameter goes stale.
            if self.subjects[si].news2_last.is_some()
                && self.news2_inputs(si, self.ns(now)).is_none()
            {
                self.subjects[si].news2_last = None;
                for k in 0..self.news2_rules.len() {
                    let ri = self.news2_rules[k] as usize;
                    self.evaluate(now, si, ri, &mut out);
                }
            }
        }
        for s in &self.silences {
            lower(&mut self.next_deadline, s.until);
        }
        out
    }

    pub(super) fn escalate(&mut self, now: Timestamp, si: usize, ri: usize, out: &mut Vec<Event>) {
        let Some(ep) = &self.subjects[si].rules[ri].episode else {
            return;
        };
        let Some(due) = ep.next_escalation else {
            return;
        };
        if !matches!(ep.state, AlertState::Active | AlertState::Latched) {
            return;
        }
        // The condition is resolving: no re-notification for a patient who
        // has recovered (if it comes back, the escalation is due at once).
        if ep.clearing_since.is_some() {
            return;
        }
        if due > now {
            lower(&mut self.next_deadline, due);
            return;
        }
        if self.silenced(si, ri, now) {
            return;
        }
        let every = self
            .escalate_after_of(ri, ep.band)
            .unwrap_or(self.opts.tick_interval);
        let max = self.opts.max_escalations;
        if let Some(ep) = &mut self.subjects[si].rules[ri].episode {
            if max.is_some_and(|max| ep.escalation_level >= max) {
                // The end of the chain: nobody new to hand it to.
                ep.next_escalation = None;
                return;
            }
            ep.escalation_level = ep.escalation_level.saturating_add(1);
            let last = max.is_some_and(|max| ep.escalation_level >= max);
            ep.next_escalation = (!last).then_some(now + every);
        }
        lower(&mut self.next_deadline, now + every);
        self.emit(now, si, ri, Transition::Escalated, out);
    }

    /// When [`Engine::poll_tick`] should next be called; `None` when nothing
    /// can happen without new input.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let periodic = ((!self.time_rules.is_empty() || !self.news2_rules.is_empty())
            && !self.subjects.is_empty())
        .then(|| self.last_tick.map(|t| t + self.opts.tick_interval))
        .flatten();
        match (periodic, self.next_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
