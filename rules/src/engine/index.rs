//! Building the engine: which rules each metric, alarm, status change and
//! clock tick concerns (so a reading evaluates only the rules that read it),
//! the per-subject state, parameters and profiles, and lookups by id.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::TimeDelta;
use rustc_hash::FxHashMap;
use wardgate_model::{
    AlertId, AlertState, DeviceRef, Event, RuleId, SubjectId, SubjectProfile, Timestamp,
};

use super::derived::News2Slots;
use super::lifecycle::Episode;
use super::{Engine, EngineError, EngineOptions, Pending};
use crate::expr::Expr;
use crate::news2::{self, News2Inputs};
use crate::ruleset::RuleSet;
use crate::window::Window;

#[derive(Debug, Default)]
pub(super) struct RuleState {
    pub(super) pending_since: Option<Timestamp>,
    /// Boxed: most (subject, rule) pairs never alert, and an inline episode
    /// would multiply the per-subject footprint several times.
    pub(super) episode: Option<Box<Episode>>,
    /// Start of the last episode, to keep ids unique if two start at one instant.
    pub(super) last_start: Option<Timestamp>,
    /// The band whose condition holds and since when (while `when` holds,
    /// pending or open): a band with a `for` counts only once it has held
    /// that long.
    pub(super) band_since: Option<(u16, Timestamp)>,
}

#[derive(Debug)]
pub(super) struct SubjectState {
    pub(super) id: SubjectId,
    pub(super) profile: SubjectProfile,
    pub(super) overrides: BTreeMap<String, f64>,
    pub(super) params: Vec<f64>,
    pub(super) applicable: Vec<bool>,
    /// Latest (Unix nanoseconds, value) per slot.
    pub(super) latest: Vec<Option<(i64, f64)>>,
    pub(super) latest_device: Vec<Option<DeviceRef>>,
    pub(super) windows: Vec<Option<Window>>,
    /// Active device alarms: device, code, and what the device said of it.
    pub(super) alarms: Vec<(DeviceRef, Arc<str>, Option<Arc<str>>)>,
    pub(super) offline: Vec<DeviceRef>,
    pub(super) last_data: Option<i64>,
    pub(super) rules: Vec<RuleState>,
    pub(super) news2_last: Option<(News2Inputs, u8)>,
    /// NEWS2 as of (time, inputs unchanged since): computed once per instant
    /// however many rules ask.
    pub(super) news2_cache: std::cell::Cell<Option<(i64, Option<news2::News2Score>)>>,
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
        for (id, onset) in &opts.for_ {
            named(&mut rules, "for", id)?.for_ = *onset;
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
        let slots = news2::NEWS2_INPUTS.map(|m| rules.slot(&m).unwrap_or_default());
        let [rr, spo2, o2, sys, hr, pr, cons, temp] = slots;
        let n2 = News2Slots {
            rr,
            spo2,
            o2,
            sys,
            hr,
            pr,
            cons,
            temp,
        };
        let mut news2_input = vec![false; nslots];
        for s in slots {
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
        let news2_score_slot = rules.slot(&wardgate_model::Metric::News2Score);
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

    pub(super) fn recompute_params(&mut self, si: usize) {
        let mut p = self.default_params.clone();
        for (name, v) in &self.subjects[si].overrides {
            if let Ok(i) = param_index(&self.rules, name) {
                p[i] = *v;
            }
        }
        self.subjects[si].params = p;
    }

    pub(super) fn refresh_applicable(&mut self, now: Timestamp, si: usize) -> Vec<Event> {
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

    pub(super) fn subject_index(&mut self, id: &SubjectId) -> usize {
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

pub(super) fn param_index(rules: &RuleSet, name: &str) -> Result<usize, EngineError> {
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
