//! The engine: evaluates compiled rules per subject as events arrive, derives
//! NEWS2, and runs each alert's life (raise, escalate, acknowledge, latch,
//! clear, silence). A sans-IO state machine: inputs are `handle_event(now, ..)`,
//! `acknowledge`, `silence`; time advances only through `poll_tick(now)`, and
//! `poll_timeout()` says when that is next needed. It never reads the clock.
//!
//! Invariants:
//! - at most one episode per (subject, rule) at any time; its `AlertId` is
//!   derived from subject, rule and episode start, so a replay of the same input
//!   yields the same ids;
//! - a reading only evaluates the rules that read its metric (`by_slot`);
//! - every alert transition is returned as an `Event::Alert` *and* appended to
//!   the audit trail, together with silences.
//!
//! The engine's parts, by responsibility: `index` (building the rule indexes
//! and per-subject state, lookups), `derived` (NEWS2 from its inputs),
//! `evaluator` (a rule's expressions over one subject's state), `lifecycle`
//! (episodes: raise, hold times, priority bands, escalation levels,
//! acknowledgement, restore, the audit trail), `silences`, `render` (alert
//! messages) and `timers` (`poll_tick`, `poll_timeout`).

mod derived;
mod evaluator;
mod index;
mod lifecycle;
mod render;
mod silences;
mod timers;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use chrono::TimeDelta;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use wardgate_model::{
    AlarmPhase, Alert, AlertId, DeviceRef, DeviceState, Event, RuleId, SubjectId, Timestamp,
};
pub use wardgate_model::{Silence, SilenceTarget};

use crate::expr::Slot;
use crate::ruleset::RuleSet;
use crate::window::Window;
use derived::News2Slots;
use index::SubjectState;

/// Tunables of an engine; the gateway fills them from [`crate::RulesConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct EngineOptions {
    /// A NEWS2 parameter older than this does not count; no score without all seven.
    pub news2_freshness: TimeDelta,
    /// How often time-dependent rules (`age`, windows, NEWS2 freshness) are re-evaluated.
    pub tick_interval: TimeDelta,
    /// The longest a subject or rule may be silenced.
    pub max_silence: TimeDelta,
    /// Overrides of rule-file parameter defaults for every subject.
    pub params: BTreeMap<String, f64>,
    /// Audit entries kept until drained; the oldest are dropped (and counted) beyond.
    pub audit_capacity: usize,
    /// Onset delays replacing the rules' own `for`, by rule id (a home hub
    /// whose devices sleep between measurements waits a day, not 30 s,
    /// before calling a device offline).
    pub for_: BTreeMap<String, TimeDelta>,
    /// Hold times replacing the rules' own `clear_for`, by rule id (a site
    /// that wants NEWS2 episodes to end sooner or later than the pack says).
    pub clear_for: BTreeMap<String, TimeDelta>,
    /// Escalation times replacing the rules' own and their bands', by rule id.
    pub escalate_after: BTreeMap<String, TimeDelta>,
    /// The last escalation level an alert reaches (`None`: no limit). A
    /// gateway that hands alerts to people stops where its chain ends
    /// (assigned nurse, charge nurse, everyone: 2); beyond it an escalation
    /// would reach no one new.
    pub max_escalations: Option<u8>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            news2_freshness: TimeDelta::hours(1),
            tick_interval: TimeDelta::seconds(1),
            max_silence: TimeDelta::hours(4),
            params: BTreeMap::new(),
            audit_capacity: 100_000,
            for_: BTreeMap::new(),
            clear_for: BTreeMap::new(),
            escalate_after: BTreeMap::new(),
            max_escalations: None,
        }
    }
}

/// Why an engine could not be built or a setting applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("unknown rule parameter '{name}'; declared: {known}")]
    UnknownParam { name: String, known: String },
    #[error("parameter '{name}' must be a finite number")]
    BadParam { name: String },
    #[error("{what} must be longer than zero")]
    NonPositive { what: &'static str },
    #[error("{0} names unknown rule '{1}'")]
    UnknownRule(&'static str, String),
}

/// Why an acknowledgement was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("no open alert with id {0}")]
    UnknownAlert(String),
    #[error("alert {0} is already acknowledged")]
    AlreadyAcknowledged(String),
}

/// Why a silence was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("a silence must end after it starts")]
    EndsInPast,
    #[error("a silence may last at most {max_minutes} minutes")]
    TooLong { max_minutes: i64 },
    #[error("unknown rule '{0}'")]
    UnknownRule(String),
}

/// One entry of the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum AuditEntry {
    /// An alert transition (the same snapshot that was emitted).
    Alert(Alert),
    Silenced(Silence),
}

/// What one group of events touched, evaluated once the group is in:
/// `(subject, a NEWS2 input changed, a reading arrived)` and `(subject, rule)`.
/// Kept in the engine between calls so that feeding an event allocates nothing.
#[derive(Debug, Default)]
struct Pending {
    subjects: Vec<(usize, bool, bool)>,
    rules: Vec<(u32, u16)>,
}

impl Pending {
    /// The entry of a subject, added if new.
    fn touch(&mut self, si: usize) -> usize {
        match self.subjects.iter().position(|e| e.0 == si) {
            Some(i) => i,
            None => {
                self.subjects.push((si, false, false));
                self.subjects.len() - 1
            }
        }
    }
}

/// Unix nanoseconds, saturating far outside 1677..2262.
fn ns(t: Timestamp) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
        i64::MIN / 2
    } else {
        i64::MAX / 2
    })
}

/// The rules engine. See the module documentation.
pub struct Engine {
    rules: RuleSet,
    opts: EngineOptions,
    by_slot: Vec<Vec<u16>>,
    alarm_rules: Vec<u16>,
    status_rules: Vec<u16>,
    any_data_rules: Vec<u16>,
    time_rules: Vec<u16>,
    /// Rules reading news2() without other time dependence.
    news2_rules: Vec<u16>,
    window_span: Vec<Option<TimeDelta>>,
    news2_input: Vec<bool>,
    n2: News2Slots,
    news2_score_slot: Option<Slot>,
    default_params: Vec<f64>,
    subjects: Vec<SubjectState>,
    index: FxHashMap<SubjectId, u32>,
    alerts: FxHashMap<AlertId, (u32, u16)>,
    rule_index: FxHashMap<RuleId, u16>,
    silences: Vec<Silence>,
    last_tick: Option<Timestamp>,
    next_deadline: Option<Timestamp>,
    audit: VecDeque<AuditEntry>,
    audit_dropped: u64,
    /// The last conversion of a `now` to nanoseconds: every rule evaluated for
    /// one event shares it (chrono's date arithmetic is not free).
    ns_memo: std::cell::Cell<(Timestamp, i64)>,
    pending: Pending,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rules.rules.len())
            .field("subjects", &self.subjects.len())
            .field("open_alerts", &self.alerts.len())
            .finish_non_exhaustive()
    }
}

/// Lowers an optional deadline to `b`.
fn lower(deadline: &mut Option<Timestamp>, b: Timestamp) {
    *deadline = Some(deadline.map_or(b, |a| a.min(b)));
}

impl Engine {
    fn ns(&self, t: Timestamp) -> i64 {
        let (memo_t, memo_ns) = self.ns_memo.get();
        if memo_t == t {
            return memo_ns;
        }
        let v = ns(t);
        self.ns_memo.set((t, v));
        v
    }

    /// Feeds one event. Returns derived readings (`news2_score`) and alert
    /// transitions caused by it. `now` is the engine's time (the gateway's clock
    /// live, the event's timestamp in replay); `event.at` is when it was measured.
    pub fn handle_event(&mut self, now: Timestamp, event: &Event) -> Vec<Event> {
        let mut out = Vec::new();
        self.handle_event_into(now, event, &mut out);
        out
    }

    /// As [`Engine::handle_event`], appending to `out` (no allocation when nothing happens).
    pub fn handle_event_into(&mut self, now: Timestamp, event: &Event, out: &mut Vec<Event>) {
        self.handle_events_into(now, std::slice::from_ref(event), out);
    }

    /// Feeds the events of one measurement together — a cuff's systolic,
    /// diastolic and mean pressure; a pump poll's alarms and values — so that
    /// every value is in place before any rule is evaluated: an alert raised
    /// by one of them reads the others, never a value still on its way.
    pub fn handle_events_into(&mut self, now: Timestamp, events: &[Event], out: &mut Vec<Event>) {
        if self.last_tick.is_none() {
            self.last_tick = Some(now);
        }
        let mut p = std::mem::take(&mut self.pending);
        for event in events {
            self.apply(now, event, &mut p);
        }
        for &(si, news2, _) in &p.subjects {
            if news2 {
                self.update_news2(now, si, out);
            }
        }
        p.rules.sort_unstable();
        p.rules.dedup();
        for &(si, ri) in &p.rules {
            self.evaluate(now, si as usize, ri as usize, out);
        }
        for &(si, _, data) in &p.subjects {
            if data {
                self.after_any_data(now, si, out);
            }
        }
        p.subjects.clear();
        p.rules.clear();
        self.pending = p;
    }

    /// Takes one event into the subject's state and notes which rules it
    /// concerns; evaluation comes after the whole group.
    fn apply(&mut self, now: Timestamp, event: &Event, p: &mut Pending) {
        match event {
            Event::Reading(r) => {
                let si = self.subject_index(&r.subject);
                // A device clock ahead of ours: the value counts as measured
                // now, so it neither masks newer values nor looks fresh for
                // longer than it is.
                let at = self.ns(r.at).min(self.ns(now));
                let s = &mut self.subjects[si];
                if s.last_data.is_none_or(|t| at > t) {
                    s.last_data = Some(at);
                }
                let t = p.touch(si);
                p.subjects[t].2 = true;
                let Some(&slot) = self.rules.slots.by_metric.get(&r.metric) else {
                    return;
                };
                self.store(si, slot, at, r.value, r.device.as_ref());
                if self.news2_input[slot as usize] {
                    p.subjects[t].1 = true;
                }
                p.rules.extend(
                    self.by_slot[slot as usize]
                        .iter()
                        .map(|&ri| (si as u32, ri)),
                );
            }
            Event::DeviceAlarm(a) => {
                let si = self.subject_index(&a.subject);
                let s = &mut self.subjects[si];
                let pos = s
                    .alarms
                    .iter()
                    .position(|(d, c, _)| *d == a.device && *c == a.alarm);
                match (a.phase, pos) {
                    (AlarmPhase::Start, None) => {
                        s.alarms
                            .push((a.device.clone(), a.alarm.clone(), a.raw.clone()));
                    }
                    (AlarmPhase::End, Some(p)) => {
                        s.alarms.remove(p);
                    }
                    _ => return,
                }
                p.touch(si);
                p.rules
                    .extend(self.alarm_rules.iter().map(|&ri| (si as u32, ri)));
            }
            Event::DeviceStatus(st) => {
                let si = self.subject_index(&st.subject);
                let s = &mut self.subjects[si];
                let pos = s.offline.iter().position(|d| *d == st.device);
                match (st.state, pos) {
                    (DeviceState::Offline, None) => s.offline.push(st.device.clone()),
                    (DeviceState::Online, Some(p)) => {
                        s.offline.remove(p);
                    }
                    _ => return,
                }
                p.touch(si);
                p.rules
                    .extend(self.status_rules.iter().map(|&ri| (si as u32, ri)));
            }
            Event::Alert(_) | Event::Silence(_) => {}
        }
    }

    fn after_any_data(&mut self, now: Timestamp, si: usize, out: &mut Vec<Event>) {
        for k in 0..self.any_data_rules.len() {
            let ri = self.any_data_rules[k] as usize;
            let st = &self.subjects[si].rules[ri];
            if st.episode.is_some() || st.pending_since.is_some() {
                self.evaluate(now, si, ri, out);
            }
        }
    }

    fn store(&mut self, si: usize, slot: Slot, at: i64, value: f64, device: Option<&DeviceRef>) {
        let s = &mut self.subjects[si];
        if self.news2_input[slot as usize] {
            s.news2_cache.set(None);
        }
        let l = &mut s.latest[slot as usize];
        if l.is_none_or(|(t, _)| at >= t) {
            *l = Some((at, value));
            let d = &mut s.latest_device[slot as usize];
            if d.as_ref() != device {
                *d = device.cloned();
            }
        }
        if let Some(span) = self.window_span[slot as usize] {
            s.windows[slot as usize]
                .get_or_insert_with(|| Window::new(span.num_nanoseconds().unwrap_or(i64::MAX)))
                .push(at, value);
        }
    }
}
