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

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use chrono::{SecondsFormat, TimeDelta};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use wardgate_model::{
    Acknowledgement, Actor, AlarmPhase, Alert, AlertId, AlertState, DeviceRef, DeviceState, Event,
    Metric, Priority, Reading, RuleId, SubjectId, SubjectProfile, TimeSource, Timestamp,
    Transition,
};
pub use wardgate_model::{Silence, SilenceTarget};

use crate::expr::{ArOp, CmpOp, Expr, Piece, Slot};
use crate::news2::{self, News2Inputs};
use crate::ruleset::RuleSet;
use crate::window::Window;

/// The metrics NEWS2 reads, in a fixed order (see [`News2Slots`]).
pub(crate) const NEWS2_METRICS: [&str; 8] = [
    "resp_rate",
    "spo2",
    "o2_flow",
    "bp_systolic",
    "heart_rate",
    "pulse_rate",
    "consciousness",
    "body_temp",
];

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

#[derive(Clone, Copy, Debug)]
struct News2Slots {
    rr: Slot,
    spo2: Slot,
    o2: Slot,
    sys: Slot,
    hr: Slot,
    pr: Slot,
    cons: Slot,
    temp: Slot,
}

/// Which priority band holds at one evaluation of an open or pending alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BandNow {
    /// `when` is not positively true (data missing, or between `when` and
    /// `clear`): the priority stays as it is.
    Unknown,
    /// No band: the rule's own priority.
    Own,
    Band(u16),
}

impl BandNow {
    fn band(self) -> Option<u16> {
        match self {
            BandNow::Band(b) => Some(b),
            BandNow::Unknown | BandNow::Own => None,
        }
    }
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

#[derive(Debug)]
struct Episode {
    id: AlertId,
    raised_at: Timestamp,
    state: AlertState,
    /// The rule's priority, or the priority band's that holds.
    priority: Priority,
    /// The band setting `priority` (`None`: the rule's own).
    band: Option<u16>,
    /// The rule's condition still holds (not yet met `clear` for `clear_for`).
    condition: bool,
    /// Since when `clear` has held without a break; the episode ends once
    /// it has held for the rule's `clear_for`.
    clearing_since: Option<Timestamp>,
    /// Per priority (low, medium, high): since when the condition's band has
    /// been at or below it; the priority is lowered to the lowest level that
    /// has held for `clear_for`.
    lower_since: [Option<Timestamp>; 3],
    escalation_level: u8,
    next_escalation: Option<Timestamp>,
    ack: Option<Acknowledgement>,
    /// The device that explains the alert and what it said.
    cause: Cause,
    message: Arc<str>,
}

#[derive(Debug, Default)]
struct RuleState {
    pending_since: Option<Timestamp>,
    /// Boxed: most (subject, rule) pairs never alert, and an inline episode
    /// would multiply the per-subject footprint several times.
    episode: Option<Box<Episode>>,
    /// Start of the last episode, to keep ids unique if two start at one instant.
    last_start: Option<Timestamp>,
    /// The band whose condition holds and since when (while `when` holds,
    /// pending or open): a band with a `for` counts only once it has held
    /// that long.
    band_since: Option<(u16, Timestamp)>,
}

#[derive(Debug)]
struct SubjectState {
    id: SubjectId,
    profile: SubjectProfile,
    overrides: BTreeMap<String, f64>,
    params: Vec<f64>,
    applicable: Vec<bool>,
    /// Latest (Unix nanoseconds, value) per slot.
    latest: Vec<Option<(i64, f64)>>,
    latest_device: Vec<Option<DeviceRef>>,
    windows: Vec<Option<Window>>,
    /// Active device alarms: device, code, and what the device said of it.
    alarms: Vec<(DeviceRef, Arc<str>, Option<Arc<str>>)>,
    offline: Vec<DeviceRef>,
    last_data: Option<i64>,
    rules: Vec<RuleState>,
    news2_last: Option<(News2Inputs, u8)>,
    /// NEWS2 as of (time, inputs unchanged since): computed once per instant
    /// however many rules ask.
    news2_cache: std::cell::Cell<Option<(i64, Option<news2::News2Score>)>>,
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
    /// Builds an engine over compiled rules.
    pub fn new(mut rules: RuleSet, opts: EngineOptions) -> Result<Engine, EngineError> {
        fn named<'r>(
            rules: &'r mut RuleSet,
            setting: &'static str,
            id: &str,
        ) -> Result<&'r mut crate::ruleset::Rule, EngineError> {
            rules
                .rules
                .iter_mut()
                .find(|r| r.id.as_str() == id)
                .ok_or_else(|| EngineError::UnknownRule(setting, id.to_owned()))
        }
        for (id, hold) in &opts.clear_for {
            named(&mut rules, "clear_for", id)?.clear_for = *hold;
        }
        for (id, after) in &opts.escalate_after {
            let rule = named(&mut rules, "escalate_after", id)?;
            rule.escalate_after = Some(*after);
            for band in &mut rule.bands {
                band.escalate_after = Some(*after);
            }
        }
        if opts.tick_interval <= TimeDelta::zero() {
            return Err(EngineError::NonPositive {
                what: "tick_interval",
            });
        }
        if opts.news2_freshness <= TimeDelta::zero() {
            return Err(EngineError::NonPositive {
                what: "news2_freshness",
            });
        }
        let nslots = rules.slots.metrics.len();
        let slot = |name: &str| rules.slot(name).unwrap_or_default();
        let n2 = News2Slots {
            rr: slot("resp_rate"),
            spo2: slot("spo2"),
            o2: slot("o2_flow"),
            sys: slot("bp_systolic"),
            hr: slot("heart_rate"),
            pr: slot("pulse_rate"),
            cons: slot("consciousness"),
            temp: slot("body_temp"),
        };
        let mut news2_input = vec![false; nslots];
        for s in [
            n2.rr, n2.spo2, n2.o2, n2.sys, n2.hr, n2.pr, n2.cons, n2.temp,
        ] {
            news2_input[s as usize] = true;
        }
        let mut by_slot = vec![Vec::new(); nslots];
        let mut window_span: Vec<Option<TimeDelta>> = vec![None; nslots];
        let (
            mut alarm_rules,
            mut status_rules,
            mut any_data_rules,
            mut time_rules,
            mut news2_rules,
        ) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, r) in rules.rules.iter().enumerate() {
            let i = i as u16;
            for &s in &r.deps.slots {
                by_slot[s as usize].push(i);
            }
            if r.deps.news2 {
                for (s, is) in news2_input.iter().enumerate() {
                    if *is && !by_slot[s].contains(&i) {
                        by_slot[s].push(i);
                    }
                }
            }
            for &(s, d) in &r.deps.windows {
                let w = &mut window_span[s as usize];
                *w = Some(w.map_or(d, |w| w.max(d)));
            }
            if r.deps.alarms {
                alarm_rules.push(i);
            }
            if r.deps.status {
                status_rules.push(i);
            }
            if r.deps.time {
                time_rules.push(i);
            } else if r.deps.news2 {
                news2_rules.push(i);
            }
            if uses_data_age(&r.when) || r.clear.as_ref().is_some_and(uses_data_age) {
                any_data_rules.push(i);
            }
        }
        for v in &mut by_slot {
            v.sort_unstable();
        }
        let news2_score_slot = rules.slot("news2_score");
        let mut default_params: Vec<f64> = rules.params.iter().map(|p| p.default).collect();
        for (name, v) in &opts.params {
            let idx = param_index(&rules, name)?;
            if !v.is_finite() {
                return Err(EngineError::BadParam { name: name.clone() });
            }
            default_params[idx] = *v;
        }
        let rule_index = rules
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i as u16))
            .collect();
        Ok(Engine {
            rules,
            opts,
            by_slot,
            alarm_rules,
            status_rules,
            any_data_rules,
            time_rules,
            news2_rules,
            window_span,
            news2_input,
            n2,
            news2_score_slot,
            default_params,
            subjects: Vec::new(),
            index: FxHashMap::default(),
            alerts: FxHashMap::default(),
            rule_index,
            silences: Vec::new(),
            last_tick: None,
            next_deadline: None,
            audit: VecDeque::new(),
            audit_dropped: 0,
            ns_memo: std::cell::Cell::new((Timestamp::UNIX_EPOCH, 0)),
            pending: Pending::default(),
        })
    }

    fn ns(&self, t: Timestamp) -> i64 {
        let (memo_t, memo_ns) = self.ns_memo.get();
        if memo_t == t {
            return memo_ns;
        }
        let v = ns(t);
        self.ns_memo.set((t, v));
        v
    }

    /// The rules this engine runs.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Sets (or replaces) a subject's profile: SpO2 scale and conditions.
    /// Alerts of rules that no longer apply are cleared.
    pub fn set_profile(
        &mut self,
        now: Timestamp,
        subject: &SubjectId,
        profile: SubjectProfile,
    ) -> Vec<Event> {
        let si = self.subject_index(subject);
        self.subjects[si].profile = profile;
        self.subjects[si].news2_cache.set(None);
        self.refresh_applicable(now, si)
    }

    /// Sets a subject's parameter overrides (replacing earlier ones), e.g. a
    /// prescribed infusion rate or a personal systolic threshold.
    pub fn set_params(
        &mut self,
        subject: &SubjectId,
        params: BTreeMap<String, f64>,
    ) -> Result<(), EngineError> {
        for (name, v) in &params {
            param_index(&self.rules, name)?;
            if !v.is_finite() {
                return Err(EngineError::BadParam { name: name.clone() });
            }
        }
        let si = self.subject_index(subject);
        self.subjects[si].overrides = params;
        self.recompute_params(si);
        Ok(())
    }

    fn recompute_params(&mut self, si: usize) {
        let mut p = self.default_params.clone();
        for (name, v) in &self.subjects[si].overrides {
            if let Ok(i) = param_index(&self.rules, name) {
                p[i] = *v;
            }
        }
        self.subjects[si].params = p;
    }

    fn refresh_applicable(&mut self, now: Timestamp, si: usize) -> Vec<Event> {
        let mut out = Vec::new();
        for ri in 0..self.rules.rules.len() {
            let rule = &self.rules.rules[ri];
            let s = &self.subjects[si];
            let ok = rule.applies_to.is_empty()
                || rule
                    .applies_to
                    .iter()
                    .any(|c| s.profile.conditions.contains(c));
            self.subjects[si].applicable[ri] = ok;
            if !ok {
                self.subjects[si].rules[ri].pending_since = None;
                if self.subjects[si].rules[ri].episode.is_some() {
                    self.end_episode(now, si, ri, &mut out);
                }
            }
        }
        out
    }

    fn subject_index(&mut self, id: &SubjectId) -> usize {
        if let Some(&i) = self.index.get(id) {
            return i as usize;
        }
        let nslots = self.rules.slots.metrics.len();
        let nrules = self.rules.rules.len();
        let i = self.subjects.len();
        self.subjects.push(SubjectState {
            id: id.clone(),
            profile: SubjectProfile::default(),
            overrides: BTreeMap::new(),
            params: self.default_params.clone(),
            applicable: self
                .rules
                .rules
                .iter()
                .map(|r| r.applies_to.is_empty())
                .collect(),
            latest: vec![None; nslots],
            latest_device: vec![None; nslots],
            windows: (0..nslots).map(|_| None).collect(),
            alarms: Vec::new(),
            offline: Vec::new(),
            last_data: None,
            rules: (0..nrules).map(|_| RuleState::default()).collect(),
            news2_last: None,
            news2_cache: std::cell::Cell::new(None),
        });
        self.index.insert(id.clone(), i as u32);
        i
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

    fn news2_inputs(&self, si: usize, now: i64) -> Option<News2Inputs> {
        let s = &self.subjects[si];
        let freshness = self
            .opts
            .news2_freshness
            .num_nanoseconds()
            .unwrap_or(i64::MAX);
        let fresh = |slot: Slot| -> Option<(i64, f64)> {
            let (t, v) = s.latest[slot as usize]?;
            (now.saturating_sub(t) <= freshness).then_some((t, v))
        };
        let n = &self.n2;
        let pulse = match (fresh(n.hr), fresh(n.pr)) {
            (Some(h), Some(p)) => Some(if p.0 > h.0 { p.1 } else { h.1 }),
            (h, p) => h.or(p).map(|x| x.1),
        };
        Some(News2Inputs {
            resp_rate: fresh(n.rr)?.1,
            spo2: fresh(n.spo2)?.1,
            on_oxygen: fresh(n.o2)?.1 > 0.0,
            bp_systolic: fresh(n.sys)?.1,
            pulse: pulse?,
            consciousness: fresh(n.cons)?.1,
            temperature: fresh(n.temp)?.1,
        })
    }

    /// Pulse: the more recent of heart_rate and pulse_rate.
    fn pulse(&self, si: usize) -> Option<f64> {
        let s = &self.subjects[si];
        match (s.latest[self.n2.hr as usize], s.latest[self.n2.pr as usize]) {
            (Some(h), Some(p)) => Some(if p.0 > h.0 { p.1 } else { h.1 }),
            (h, p) => h.or(p).map(|x| x.1),
        }
    }

    fn news2_score(&self, si: usize, now: Timestamp) -> Option<news2::News2Score> {
        let now = self.ns(now);
        let cache = &self.subjects[si].news2_cache;
        if let Some((t, score)) = cache.get()
            && t == now
        {
            return score;
        }
        let score = self
            .news2_inputs(si, now)
            .map(|i| news2::score(&i, self.subjects[si].profile.spo2_scale));
        cache.set(Some((now, score)));
        score
    }

    fn update_news2(&mut self, now: Timestamp, si: usize, out: &mut Vec<Event>) {
        let Some(inputs) = self.news2_inputs(si, self.ns(now)) else {
            self.subjects[si].news2_last = None;
            return;
        };
        let full = news2::score(&inputs, self.subjects[si].profile.spo2_scale);
        self.subjects[si]
            .news2_cache
            .set(Some((self.ns(now), Some(full))));
        let score = full.aggregate();
        let s = &mut self.subjects[si];
        if s.news2_last == Some((inputs, score)) {
            return;
        }
        s.news2_last = Some((inputs, score));
        let id = s.id.clone();
        if let Ok(r) = Reading::new(
            now,
            TimeSource::Gateway,
            id,
            None,
            Metric::News2Score,
            f64::from(score),
        ) {
            out.push(Event::Reading(r));
        }
        if let Some(slot) = self.news2_score_slot {
            self.store(si, slot, self.ns(now), f64::from(score), None);
            for k in 0..self.by_slot[slot as usize].len() {
                let ri = self.by_slot[slot as usize][k] as usize;
                self.evaluate(now, si, ri, out);
            }
        }
    }

    fn silenced(&self, si: usize, ri: usize, now: Timestamp) -> bool {
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

    /// Re-evaluates one rule for one subject and steps its alert.
    fn evaluate(&mut self, now: Timestamp, si: usize, ri: usize, out: &mut Vec<Event>) {
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
    fn confirm_band(&mut self, now: Timestamp, si: usize, ri: usize, band: BandNow) -> BandNow {
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
    fn band_due(&self, si: usize, ri: usize) -> Option<Timestamp> {
        let (b, since) = self.subjects[si].rules[ri].band_since?;
        let for_ = self.rules.rules[ri].bands[b as usize].for_;
        (for_ > TimeDelta::zero()).then_some(since + for_)
    }

    /// The priority of an open episode follows its bands: up at once (an
    /// acknowledged alert that rises sounds again), down only after a lower
    /// level has held for the rule's `clear_for` — each level on its own
    /// clock, so stepping down two bands takes the hold time at each — and a
    /// value wandering across a band edge does not make the priority flap.
    fn follow_band(
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
    fn escalate_after_of(&self, ri: usize, band: Option<u16>) -> Option<TimeDelta> {
        let rule = &self.rules.rules[ri];
        band.and_then(|b| rule.bands[b as usize].escalate_after)
            .or(rule.escalate_after)
    }

    /// The message template of a rule in a band.
    fn message_of(&self, ri: usize, band: Option<u16>) -> &[Piece] {
        let rule = &self.rules.rules[ri];
        band.and_then(|b| rule.bands[b as usize].message.as_deref())
            .unwrap_or(&rule.message)
    }

    fn raise(
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

    fn end_episode(&mut self, now: Timestamp, si: usize, ri: usize, out: &mut Vec<Event>) {
        if let Some(ep) = &mut self.subjects[si].rules[ri].episode {
            ep.state = AlertState::Cleared;
            ep.condition = false;
        }
        self.emit(now, si, ri, Transition::Cleared, out);
        if let Some(ep) = self.subjects[si].rules[ri].episode.take() {
            self.alerts.remove(&ep.id);
        }
    }

    fn emit(
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

    fn push_audit(&mut self, e: AuditEntry) {
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

    fn render(&self, si: usize, now: Timestamp, pieces: &[Piece], cause: &Cause) -> String {
        use std::fmt::Write;
        let s = &self.subjects[si];
        let mut out = String::new();
        let num = |out: &mut String, v: Option<f64>, unknown: &dyn Fn(&mut String)| match v {
            Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => {
                let _ = write!(out, "{}", v as i64);
            }
            Some(v) => {
                let _ = write!(out, "{}", (v * 10.0).round() / 10.0);
            }
            None => unknown(out),
        };
        // A value that is truly unknown is said in words, never as `?`.
        for p in pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Metric(slot) => num(&mut out, s.latest[*slot as usize].map(|l| l.1), &|o| {
                    let name = self.rules.slots.metrics[*slot as usize].display_name();
                    let _ = write!(o, "({name} not measured)");
                }),
                Piece::Param(i) => num(
                    &mut out,
                    Some(s.params[*i as usize]).filter(|v| v.is_finite()),
                    &|o| {
                        let _ = write!(o, "({} not set)", self.rules.params[*i as usize].name);
                    },
                ),
                Piece::News2 => num(
                    &mut out,
                    self.news2_score(si, now).map(|n| f64::from(n.aggregate())),
                    &|o| o.push_str("(NEWS2 not available)"),
                ),
                Piece::Pulse => num(&mut out, self.pulse(si), &|o| {
                    o.push_str("(pulse not measured)");
                }),
                Piece::Device => {
                    out.push_str(
                        cause
                            .device
                            .as_ref()
                            .map_or("an unknown device", |d| d.id.as_str()),
                    );
                }
                Piece::Detail => {
                    out.push_str(cause.detail.as_deref().unwrap_or("(no details given)"));
                }
            }
        }
        out
    }

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

    fn escalate(&mut self, now: Timestamp, si: usize, ri: usize, out: &mut Vec<Event>) {
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

    /// Takes the audit trail collected since the last call, and how many
    /// entries were dropped for want of room since then.
    pub fn drain_audit(&mut self) -> (Vec<AuditEntry>, u64) {
        let dropped = std::mem::take(&mut self.audit_dropped);
        (self.audit.drain(..).collect(), dropped)
    }

    /// The open alert (not yet cleared) of a rule for a subject.
    pub fn open_alert(&self, subject: &SubjectId, rule: &RuleId) -> Option<AlertId> {
        let si = *self.index.get(subject)? as usize;
        let ri = *self.rule_index.get(rule)? as usize;
        self.subjects[si].rules[ri]
            .episode
            .as_ref()
            .map(|e| e.id.clone())
    }

    /// Snapshots of every open alert (not yet cleared), for a nurse-station page.
    pub fn open_alerts(&self) -> Vec<(AlertId, SubjectId, RuleId, AlertState)> {
        let mut v: Vec<_> = self
            .alerts
            .iter()
            .filter_map(|(id, &(si, ri))| {
                let s = &self.subjects[si as usize];
                let ep = s.rules[ri as usize].episode.as_ref()?;
                Some((
                    id.clone(),
                    s.id.clone(),
                    self.rules.rules[ri as usize].id.clone(),
                    ep.state,
                ))
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Heap bytes held for subjects (approximate: the engine's own vectors and
    /// windows), for sizing.
    pub fn subject_heap_bytes(&self) -> usize {
        self.subjects
            .iter()
            .map(|s| {
                s.latest.capacity() * std::mem::size_of::<Option<(i64, f64)>>()
                    + s.latest_device.capacity() * std::mem::size_of::<Option<DeviceRef>>()
                    + s.windows.capacity() * std::mem::size_of::<Option<Window>>()
                    + s.windows
                        .iter()
                        .flatten()
                        .map(Window::heap_bytes)
                        .sum::<usize>()
                    + s.rules.capacity() * std::mem::size_of::<RuleState>()
                    + s.applicable.capacity()
                    + s.params.capacity() * 8
            })
            .sum()
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

fn param_index(rules: &RuleSet, name: &str) -> Result<usize, EngineError> {
    rules
        .params
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| EngineError::UnknownParam {
            name: name.to_owned(),
            known: rules
                .params
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn uses_data_age(e: &Expr) -> bool {
    match e {
        Expr::DataAge => true,
        Expr::Neg(a) | Expr::Abs(a) | Expr::Not(a) => uses_data_age(a),
        Expr::Arith(_, a, b) | Expr::Cmp(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
            uses_data_age(a) || uses_data_age(b)
        }
        _ => false,
    }
}

/// Evaluation of one rule for one subject at one instant.
struct Ctx<'a> {
    engine: &'a Engine,
    si: usize,
    now: Timestamp,
    now_ns: i64,
    /// What explains the alert's device: the first metric read, or the alarm
    /// or offline device that made the condition true. Indices, not clones,
    /// to keep evaluation allocation- and refcount-free.
    device: Option<Hint>,
}

#[derive(Clone, Copy, Debug)]
enum Hint {
    Slot(Slot),
    Alarm(usize),
    Offline(usize),
}

impl Hint {
    fn cause(self, s: &SubjectState) -> Cause {
        match self {
            Hint::Slot(slot) => Cause {
                device: s.latest_device[slot as usize].clone(),
                detail: None,
            },
            Hint::Alarm(i) => Cause {
                device: s.alarms.get(i).map(|a| a.0.clone()),
                detail: s.alarms.get(i).and_then(|a| a.2.clone()),
            },
            Hint::Offline(i) => Cause {
                device: s.offline.get(i).cloned(),
                detail: None,
            },
        }
    }
}

/// What explains an alert: the device, and what it said of the condition
/// (a device alarm's detail, for `{detail}` in messages).
#[derive(Clone, Debug, Default)]
struct Cause {
    device: Option<DeviceRef>,
    detail: Option<Arc<str>>,
}

/// Seconds from `then` to `now` (0 when `then` lies ahead: a device clock
/// slightly fast must not make an age negative).
fn secs(now: i64, then: i64) -> f64 {
    now.saturating_sub(then).max(0) as f64 / 1e9
}

impl Ctx<'_> {
    fn subject(&self) -> &SubjectState {
        &self.engine.subjects[self.si]
    }

    fn num(&mut self, e: &Expr) -> Option<f64> {
        let v = match e {
            Expr::Num(n) => *n,
            Expr::Latest(s) => {
                let v = self.subject().latest[*s as usize]?.1;
                if self.device.is_none() {
                    self.device = Some(Hint::Slot(*s));
                }
                v
            }
            Expr::Param(i) => self.subject().params[*i as usize],
            Expr::Neg(a) => -self.num(a)?,
            Expr::Abs(a) => self.num(a)?.abs(),
            Expr::Arith(op, a, b) => {
                let (a, b) = (self.num(a)?, self.num(b)?);
                match op {
                    ArOp::Add => a + b,
                    ArOp::Sub => a - b,
                    ArOp::Mul => a * b,
                    ArOp::Div => a / b,
                }
            }
            Expr::Window(f, s, span) => self.subject().windows[*s as usize].as_ref().map_or(
                if *f == crate::window::WindowFn::Count {
                    Some(0.0)
                } else {
                    None
                },
                |w| w.eval(*f, self.now_ns, *span),
            )?,
            Expr::Age(s) => secs(self.now_ns, self.subject().latest[*s as usize]?.0),
            Expr::DataAge => secs(self.now_ns, self.subject().last_data?),
            Expr::Pulse => self.engine.pulse(self.si)?,
            Expr::News2 => f64::from(self.engine.news2_score(self.si, self.now)?.aggregate()),
            Expr::News2Max => f64::from(self.engine.news2_score(self.si, self.now)?.max_single()),
            _ => return None,
        };
        v.is_finite().then_some(v)
    }

    fn cond(&mut self, e: &Expr) -> bool {
        match e {
            Expr::Cmp(op, a, b) => {
                let (Some(a), Some(b)) = (self.num(a), self.num(b)) else {
                    return false;
                };
                match op {
                    CmpOp::Lt => a < b,
                    CmpOp::Le => a <= b,
                    CmpOp::Gt => a > b,
                    CmpOp::Ge => a >= b,
                    CmpOp::Eq => a == b,
                    CmpOp::Ne => a != b,
                }
            }
            Expr::And(a, b) => self.cond(a) && self.cond(b),
            Expr::Or(a, b) => self.cond(a) || self.cond(b),
            Expr::Not(a) => {
                // Device hints found under a `not` do not explain the alert.
                let saved = self.device.take();
                let v = !self.cond(a);
                self.device = saved;
                v
            }
            Expr::ParamSet(i) => self.subject().params[*i as usize].is_finite(),
            Expr::Alarm { code, kind } => {
                let hit = self.subject().alarms.iter().position(|(dev, c, _)| {
                    kind.is_none_or(|k| dev.kind == k)
                        && (**c == **code
                            || (c.len() > code.len()
                                && c.starts_with(&**code)
                                && c.as_bytes()[code.len()] == b'_'))
                });
                match hit {
                    Some(i) => {
                        self.device = Some(Hint::Alarm(i));
                        true
                    }
                    None => false,
                }
            }
            Expr::DeviceOffline(id) => {
                let hit = self
                    .subject()
                    .offline
                    .iter()
                    .position(|d| id.as_ref().is_none_or(|id| d.id == *id));
                match hit {
                    Some(i) => {
                        self.device = Some(Hint::Offline(i));
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        }
    }
}
