//! `wardgate rules test FILE`: rule tests in the manner of `promtool test
//! rules`. A test file names the rules under test (built-in packs and/or rule
//! files), then cases: an input series and the exact alert transitions
//! expected. The caller supplies a loader for rule files (this crate does no
//! I/O); paths are passed to it as written in the test file.
//!
//! ```toml
//! packs = ["chronic"]            # built-in packs (default: none if rule_files is set, else all)
//! rule_files = ["local.toml"]    # loaded through the caller's loader
//! [[tests]]
//! name = "hypoglycaemia ends 15 minutes after glucose is back at or above 70"
//! profile = { conditions = ["diabetes"] }
//! run_until = "30m"              # keep time running: hold times end without input
//! input = [
//!   { at = "0s", metric = "glucose", value = 50 },
//!   { at = "2m", ack = "hypoglycaemia", by = "nurse-a" },
//!   { at = "5m", metric = "glucose", every = "5m", values = "60 80" },
//! ]
//! expect = [
//!   { at = "0s", rule = "hypoglycaemia", transition = "raised", priority = "high" },
//!   { at = "2m", rule = "hypoglycaemia", transition = "acknowledged" },
//!   { at = "25m", rule = "hypoglycaemia", transition = "cleared" },
//! ]
//! ```

use std::collections::BTreeMap;
use std::fmt;

use chrono::TimeDelta;
use serde::Deserialize;
use wardgate_model::{
    AlarmPhase, AlertKind, AlertState, DeviceAlarm, DeviceId, DeviceKind, DeviceRef, DeviceState,
    DeviceStatus, Event, Metric, MetricRegistry, Priority, Reading, RuleId, SubjectId,
    SubjectProfile, TimeSource, Timestamp, Transition,
};

use crate::engine::{EngineOptions, SilenceTarget};
use crate::packs::{BUILTIN_PACKS, pack_source};
use crate::replay::{Driver, Input, guess_kind};
use crate::ruleset::{line_col, parse_duration};
use crate::{Engine, EngineError, RuleSet, RuleSource, RulesError};

/// Why a rule test file could not be run at all (a failing case is not an error).
#[derive(Debug, thiserror::Error)]
pub enum RuleTestError {
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: cannot load rule file {path}: {message}")]
    Load {
        file: String,
        path: String,
        message: String,
    },
    #[error("{0}")]
    Rules(#[from] RulesError),
    #[error("{file}: {0}", file = .1)]
    Engine(#[source] EngineError, String),
}

/// The outcome of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    /// What differed, one line each.
    pub failures: Vec<String>,
}

/// The outcome of a test file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestReport {
    pub file: String,
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.passed)
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.cases {
            writeln!(f, "{}  {}", if c.passed { "PASS" } else { "FAIL" }, c.name)?;
            for line in &c.failures {
                writeln!(f, "      {line}")?;
            }
        }
        let failed = self.cases.iter().filter(|c| !c.passed).count();
        write!(
            f,
            "{}: {} tests, {} failed",
            self.file,
            self.cases.len(),
            failed
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    packs: Option<Vec<String>>,
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default = "default_start")]
    start: Timestamp,
    #[serde(default)]
    tick_interval: Option<String>,
    #[serde(default)]
    news2_freshness: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, f64>,
    #[serde(default)]
    tests: Vec<Case>,
}

fn default_start() -> Timestamp {
    Timestamp::from_timestamp(1_767_225_600, 0).unwrap_or_default() // 2026-01-01T00:00:00Z
}

fn default_subject() -> String {
    "subject-1".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default = "default_subject")]
    subject: String,
    #[serde(default)]
    profile: Option<SubjectProfile>,
    #[serde(default)]
    params: BTreeMap<String, f64>,
    /// Keep ticking until this offset after the last input (for `for` and escalation).
    #[serde(default)]
    run_until: Option<String>,
    #[serde(default)]
    input: Vec<Step>,
    #[serde(default)]
    expect: Vec<Expect>,
    #[serde(default)]
    expect_readings: Option<Vec<ExpectReading>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    at: String,
    #[serde(default)]
    subject: Option<String>,
    // reading or series
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    every: Option<String>,
    #[serde(default)]
    values: Option<String>,
    // device alarm / status
    #[serde(default)]
    alarm: Option<String>,
    #[serde(default)]
    phase: Option<AlarmPhase>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    kind: Option<DeviceKind>,
    #[serde(default)]
    offline: Option<String>,
    #[serde(default)]
    online: Option<String>,
    // actions
    #[serde(default)]
    ack: Option<String>,
    #[serde(default)]
    silence_rule: Option<String>,
    #[serde(default)]
    silence_subject: Option<bool>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    at: String,
    rule: String,
    transition: Transition,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    state: Option<AlertState>,
    #[serde(default)]
    priority: Option<Priority>,
    #[serde(default)]
    escalation_level: Option<u8>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectReading {
    at: String,
    metric: String,
    value: f64,
}

/// Expands `"95 94 87x4 90"` into values (`vxN` repeats v N times).
fn expand_series(s: &str) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        let (v, n) = match tok.split_once('x') {
            Some((v, n)) => (
                v,
                n.parse::<usize>()
                    .map_err(|_| format!("bad repeat count in '{tok}'"))?,
            ),
            None => (tok, 1),
        };
        let v: f64 = v.parse().map_err(|_| format!("'{v}' is not a number"))?;
        if !v.is_finite() || n > 100_000 {
            return Err(format!("'{tok}' is out of range"));
        }
        out.extend(std::iter::repeat_n(v, n));
    }
    Ok(out)
}

fn fmt_offset(d: TimeDelta) -> String {
    humantime::format_duration(d.to_std().unwrap_or_default()).to_string()
}

/// Runs a rule test file. `load` reads a rule file named in `rule_files`.
pub fn run_rule_tests(
    file: &str,
    text: &str,
    load: &mut dyn FnMut(&str) -> Result<String, String>,
    registry: &MetricRegistry,
) -> Result<TestReport, RuleTestError> {
    let tf: TestFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
        RuleTestError::Parse {
            file: file.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })?;
    let parse_err = |message: String| RuleTestError::Parse {
        file: file.to_owned(),
        line: 1,
        column: 1,
        message,
    };
    let mut texts = Vec::new();
    for path in &tf.rule_files {
        let t = load(path).map_err(|message| RuleTestError::Load {
            file: file.to_owned(),
            path: path.clone(),
            message,
        })?;
        texts.push((path.clone(), t));
    }
    let packs: Vec<String> = tf.packs.clone().unwrap_or_else(|| {
        if tf.rule_files.is_empty() {
            BUILTIN_PACKS.iter().map(|p| p.0.to_owned()).collect()
        } else {
            Vec::new()
        }
    });
    let mut sources = Vec::new();
    for p in &packs {
        sources
            .push(pack_source(p).ok_or_else(|| parse_err(format!("unknown built-in pack '{p}'")))?);
    }
    sources.extend(texts.iter().map(|(n, t)| RuleSource { name: n, text: t }));
    let rules = RuleSet::compile(&sources, registry)?;
    let mut opts = EngineOptions {
        params: tf.params.clone(),
        ..EngineOptions::default()
    };
    if let Some(t) = &tf.tick_interval {
        opts.tick_interval = parse_duration(t).map_err(parse_err)?;
    }
    if let Some(t) = &tf.news2_freshness {
        opts.news2_freshness = parse_duration(t).map_err(parse_err)?;
    }

    let mut cases = Vec::new();
    for case in &tf.tests {
        let mut engine = Engine::new(rules.clone(), opts.clone())
            .map_err(|e| RuleTestError::Engine(e, file.to_owned()))?;
        let failures = match run_case(&mut engine, tf.start, case, registry) {
            Ok(f) => f,
            Err(msg) => vec![format!("error: {msg}")],
        };
        cases.push(CaseResult {
            name: case.name.clone(),
            passed: failures.is_empty(),
            failures,
        });
    }
    Ok(TestReport {
        file: file.to_owned(),
        cases,
    })
}

fn run_case(
    engine: &mut Engine,
    start: Timestamp,
    case: &Case,
    registry: &MetricRegistry,
) -> Result<Vec<String>, String> {
    let subject = SubjectId::from(case.subject.as_str());
    if let Some(p) = &case.profile {
        engine.set_profile(start, &subject, p.clone());
    }
    if !case.params.is_empty() {
        engine
            .set_params(&subject, case.params.clone())
            .map_err(|e| e.to_string())?;
    }
    let mut timeline: Vec<(TimeDelta, Input)> = Vec::new();
    for (i, step) in case.input.iter().enumerate() {
        step_inputs(step, &subject, start, registry, &mut timeline)
            .map_err(|e| format!("input {}: {e}", i + 1))?;
    }
    timeline.sort_by_key(|(t, _)| *t); // stable: same-time steps keep their order
    let mut driver = Driver {
        engine,
        now: None,
        ticks: 0,
        out_of_order: 0,
    };
    let mut out = Vec::new();
    let mut end = TimeDelta::zero();
    for (off, input) in timeline {
        end = end.max(off);
        driver
            .feed(start + off, input, &mut out)
            .map_err(|e| format!("at {}: {e}", fmt_offset(off)))?;
    }
    if let Some(r) = &case.run_until {
        let until = parse_duration(r)?;
        driver.advance_to(start + until.max(end), &mut out);
    }

    let mut failures = Vec::new();
    let mut alerts: Vec<Option<&wardgate_model::Alert>> = out
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some(Some(a)),
            _ => None,
        })
        .collect();
    for x in &case.expect {
        let at = start + parse_duration(&x.at)?;
        let want_subject = x.subject.as_deref().unwrap_or(&case.subject);
        let found = alerts.iter_mut().find(|a| {
            a.is_some_and(|a| {
                a.at == at
                    && a.rule.as_str() == x.rule
                    && a.transition == x.transition
                    && a.subject.as_str() == want_subject
                    && x.state.is_none_or(|s| s == a.state)
                    && x.priority.is_none_or(|p| p == a.priority)
                    && x.escalation_level.is_none_or(|l| l == a.escalation_level)
                    && x.device
                        .as_deref()
                        .is_none_or(|d| a.device.as_ref().is_some_and(|ad| ad.id.as_str() == d))
                    && x.message.as_deref().is_none_or(|m| &*a.message == m)
            })
        });
        match found {
            Some(slot) => *slot = None,
            None => failures.push(format!(
                "missing: at {} {} {} {:?}",
                x.at, want_subject, x.rule, x.transition
            )),
        }
    }
    for a in alerts.into_iter().flatten() {
        failures.push(format!(
            "unexpected: at {} {} {} {:?} (state {:?}, {}, level {}, \"{}\")",
            fmt_offset(a.at - start),
            a.subject,
            a.rule,
            a.transition,
            a.state,
            a.priority.as_str(),
            a.escalation_level,
            a.message
        ));
    }
    if let Some(want) = &case.expect_readings {
        let got: Vec<&Reading> = out
            .iter()
            .filter_map(|e| match e {
                Event::Reading(r) => Some(r),
                _ => None,
            })
            .collect();
        let mut used = vec![false; got.len()];
        for w in want {
            let at = start + parse_duration(&w.at)?;
            match got.iter().enumerate().position(|(i, r)| {
                !used[i] && r.at == at && r.metric.name() == w.metric && r.value == w.value
            }) {
                Some(i) => used[i] = true,
                None => failures.push(format!(
                    "missing reading: at {} {} = {}",
                    w.at, w.metric, w.value
                )),
            }
        }
        for (r, u) in got.iter().zip(&used) {
            if !u {
                failures.push(format!(
                    "unexpected reading: at {} {} = {}",
                    fmt_offset(r.at - start),
                    r.metric,
                    r.value
                ));
            }
        }
    }
    Ok(failures)
}

fn step_inputs(
    step: &Step,
    default_subject: &SubjectId,
    start: Timestamp,
    registry: &MetricRegistry,
    out: &mut Vec<(TimeDelta, Input)>,
) -> Result<(), String> {
    let at = parse_duration(&step.at)?;
    let subject = step
        .subject
        .as_deref()
        .map_or_else(|| default_subject.clone(), SubjectId::from);
    let by = || step.by.clone().unwrap_or_else(|| "test".into());
    let device =
        |id: &str, kind: DeviceKind| DeviceRef::new(DeviceId::from(id), step.kind.unwrap_or(kind));
    if let Some(m) = &step.metric {
        let metric = registry
            .resolve(m)
            .unwrap_or_else(|| Metric::custom(m, "", None));
        let mut push = |off: TimeDelta, v: f64| -> Result<(), String> {
            let r = Reading::new(
                start + off,
                TimeSource::Gateway,
                subject.clone(),
                step.device
                    .as_deref()
                    .map(|d| device(d, DeviceKind::Synthetic)),
                metric.clone(),
                v,
            )
            .map_err(|e| e.to_string())?;
            out.push((off, Input::Event(Event::Reading(r))));
            Ok(())
        };
        match (step.value, &step.values) {
            (Some(v), None) => push(at, v)?,
            (None, Some(series)) => {
                let every = parse_duration(step.every.as_deref().ok_or("a series needs 'every'")?)?;
                for (i, v) in expand_series(series)?.into_iter().enumerate() {
                    push(at + every * i as i32, v)?;
                }
            }
            _ => return Err("a reading needs either 'value' or 'values' with 'every'".into()),
        }
    } else if let Some(code) = &step.alarm {
        let dev = step.device.as_deref().ok_or("an alarm needs 'device'")?;
        out.push((
            at,
            Input::Event(Event::DeviceAlarm(DeviceAlarm {
                at: start + at,
                subject,
                device: device(dev, guess_kind(code)),
                alarm: code.as_str().into(),
                phase: step.phase.unwrap_or(AlarmPhase::Start),
                kind: AlertKind::Technical,
                raw: None,
            })),
        ));
    } else if let Some(dev) = step.offline.as_ref().or(step.online.as_ref()) {
        out.push((
            at,
            Input::Event(Event::DeviceStatus(DeviceStatus {
                at: start + at,
                subject,
                device: device(dev, DeviceKind::Synthetic),
                state: if step.offline.is_some() {
                    DeviceState::Offline
                } else {
                    DeviceState::Online
                },
                reason: None,
            })),
        ));
    } else if let Some(rule) = &step.ack {
        out.push((
            at,
            Input::Ack {
                subject,
                rule: RuleId::from(rule.as_str()),
                by: by(),
            },
        ));
    } else if step.silence_rule.is_some() || step.silence_subject == Some(true) {
        let until =
            start + parse_duration(step.until.as_deref().ok_or("a silence needs 'until'")?)?;
        let target = match &step.silence_rule {
            Some(r) => SilenceTarget::Rule(RuleId::from(r.as_str())),
            None => SilenceTarget::Subject(subject),
        };
        out.push((
            at,
            Input::Silence {
                target,
                until,
                by: by(),
            },
        ));
    } else {
        return Err("a step needs one of: metric, alarm, offline, online, ack, silence_rule, silence_subject".into());
    }
    Ok(())
}
