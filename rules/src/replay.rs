//! `wardgate replay`: runs an [`Engine`] over recorded JSONL and writes the
//! events it derives. The caller opens the files; this module only reads the
//! `BufRead` and writes the `Write` it is given.
//!
//! Time: each input line's `at` is the engine's `now`; before handling a line,
//! replay calls `poll_tick` at every deadline the engine asks for up to that
//! time, so `for`, staleness and escalation fire in replay time. Lines whose
//! `at` is earlier than the last one are handled at the last time (counted).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde::Deserialize;
use serde_json::Value;
use wardgate_model::{
    AlarmPhase, AlertId, AlertKind, DeviceAlarm, DeviceId, DeviceKind, DeviceRef, DeviceState,
    DeviceStatus, Event, Reading, RuleId, SubjectId, SubjectProfile, Timestamp,
};

use crate::engine::{Engine, SilenceTarget};

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Input lines read (including blank ones).
    pub lines: u64,
    pub readings: u64,
    pub device_events: u64,
    pub profiles: u64,
    pub actions: u64,
    /// Alert transitions written.
    pub alerts: u64,
    /// Derived readings (`news2_score`) written.
    pub derived: u64,
    pub ticks: u64,
    /// Lines stamped earlier than the line before (handled at the later time).
    pub out_of_order: u64,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading input: {0}")]
    Read(#[source] std::io::Error),
    #[error("writing output: {0}")]
    Write(#[source] std::io::Error),
    #[error("line {line}: {message}")]
    Line { line: u64, message: String },
}

/// One thing that happens at one time, from a replay line or a rule test.
#[derive(Clone, Debug)]
pub(crate) enum Input {
    Event(Event),
    Profile(SubjectId, SubjectProfile),
    Params(SubjectId, BTreeMap<String, f64>),
    Ack {
        subject: SubjectId,
        rule: RuleId,
        by: String,
    },
    AckId {
        id: AlertId,
        by: String,
    },
    Silence {
        target: SilenceTarget,
        until: Timestamp,
        by: String,
    },
}

/// Drives an engine through time-ordered inputs.
pub(crate) struct Driver<'e> {
    pub(crate) engine: &'e mut Engine,
    pub(crate) now: Option<Timestamp>,
    pub(crate) ticks: u64,
    pub(crate) out_of_order: u64,
}

impl Driver<'_> {
    /// Runs every tick due at or before `t`.
    pub(crate) fn advance_to(&mut self, t: Timestamp, out: &mut Vec<Event>) {
        let mut last = None;
        while let Some(d) = self.engine.poll_timeout() {
            if d > t || Some(d) == last {
                break;
            }
            last = Some(d);
            out.extend(self.engine.poll_tick(d));
            self.ticks += 1;
            self.now = Some(d);
        }
    }

    pub(crate) fn feed(
        &mut self,
        at: Timestamp,
        input: Input,
        out: &mut Vec<Event>,
    ) -> Result<(), String> {
        let now = match self.now {
            Some(n) if at < n => {
                self.out_of_order += 1;
                n
            }
            _ => at,
        };
        self.advance_to(now, out);
        self.now = Some(now);
        match input {
            Input::Event(e) => self.engine.handle_event_into(now, &e, out),
            Input::Profile(s, p) => out.extend(self.engine.set_profile(now, &s, p)),
            Input::Params(s, p) => self.engine.set_params(&s, p).map_err(|e| e.to_string())?,
            Input::Ack { subject, rule, by } => {
                let id = self.engine.open_alert(&subject, &rule).ok_or_else(|| {
                    format!("no open alert of rule {rule} for {subject} to acknowledge")
                })?;
                out.extend(
                    self.engine
                        .acknowledge(now, &id, by.as_str())
                        .map_err(|e| e.to_string())?,
                );
            }
            Input::AckId { id, by } => out.extend(
                self.engine
                    .acknowledge(now, &id, by.as_str())
                    .map_err(|e| e.to_string())?,
            ),
            Input::Silence { target, until, by } => out.push(
                self.engine
                    .silence(now, target, until, by.as_str())
                    .map_err(|e| e.to_string())?,
            ),
        }
        Ok(())
    }
}

const PUMP_ALARMS: &[&str] = &[
    "occlusion",
    "occlusion_downstream",
    "occlusion_upstream",
    "air_in_line",
    "door_open",
    "near_end_of_infusion",
    "infusion_complete",
    "kvo",
    "low_battery",
    "battery_depleted",
    "pump_fault",
    "not_infusing",
];

const BLE_ALARMS: &[&str] = &[
    "sensor_contact_lost",
    "cuff_too_loose",
    "irregular_pulse",
    "body_movement",
    "improper_position",
    "sensor_malfunction",
];

/// The device kind of a replay device event without an explicit `kind`:
/// guessed from the alarm vocabulary of each driver family.
pub(crate) fn guess_kind(alarm: &str) -> DeviceKind {
    if PUMP_ALARMS.contains(&alarm) {
        DeviceKind::Pump
    } else if BLE_ALARMS.contains(&alarm) {
        DeviceKind::Ble
    } else {
        DeviceKind::Synthetic
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DeviceField {
    Id(String),
    Ref(DeviceRef),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceEventLine {
    at: Timestamp,
    subject: SubjectId,
    device: DeviceField,
    event: String,
    #[serde(default)]
    phase: Option<AlarmPhase>,
    #[serde(default)]
    kind: Option<DeviceKind>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectLine {
    #[serde(default)]
    at: Option<Timestamp>,
    subject: SubjectId,
    #[serde(default)]
    profile: Option<SubjectProfile>,
    #[serde(default)]
    params: Option<BTreeMap<String, f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionLine {
    at: Timestamp,
    action: String,
    by: String,
    #[serde(default)]
    subject: Option<SubjectId>,
    #[serde(default)]
    rule: Option<RuleId>,
    #[serde(default)]
    id: Option<AlertId>,
    #[serde(default)]
    until: Option<Timestamp>,
}

fn parse_line(v: Value) -> Result<(Option<Timestamp>, Vec<Input>), String> {
    let has = |k: &str| v.get(k).is_some();
    if has("type") {
        let e: Event = serde_json::from_value(v).map_err(|e| e.to_string())?;
        return Ok((Some(e.at()), vec![Input::Event(e)]));
    }
    if has("metric") {
        let r: Reading = serde_json::from_value(v).map_err(|e| format!("reading: {e}"))?;
        return Ok((Some(r.at), vec![Input::Event(Event::Reading(r))]));
    }
    if has("event") {
        let d: DeviceEventLine =
            serde_json::from_value(v).map_err(|e| format!("device event: {e}"))?;
        let device = match d.device {
            DeviceField::Ref(r) => r,
            DeviceField::Id(id) => DeviceRef::new(
                DeviceId::from(id),
                d.kind.unwrap_or_else(|| guess_kind(&d.event)),
            ),
        };
        let ev = match d.event.parse::<DeviceState>() {
            Ok(state) => Event::DeviceStatus(DeviceStatus {
                at: d.at,
                subject: d.subject,
                device,
                state,
                reason: d.reason.map(Into::into),
            }),
            Err(_) => {
                let code = d.event.as_str();
                if code.is_empty()
                    || !code
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    return Err(format!(
                        "device event '{code}' must be a snake_case alarm code, \"offline\" or \"online\""
                    ));
                }
                Event::DeviceAlarm(DeviceAlarm {
                    at: d.at,
                    subject: d.subject,
                    device,
                    alarm: code.into(),
                    phase: d.phase.unwrap_or(AlarmPhase::Start),
                    kind: AlertKind::Technical,
                    raw: d.reason.map(Into::into),
                })
            }
        };
        return Ok((Some(d.at), vec![Input::Event(ev)]));
    }
    if has("action") {
        let a: ActionLine = serde_json::from_value(v).map_err(|e| format!("action: {e}"))?;
        let input = match a.action.as_str() {
            "ack" => match (a.id, a.subject, a.rule) {
                (Some(id), _, _) => Input::AckId { id, by: a.by },
                (None, Some(subject), Some(rule)) => Input::Ack {
                    subject,
                    rule,
                    by: a.by,
                },
                _ => return Err("an ack needs \"id\", or \"subject\" and \"rule\"".into()),
            },
            "silence" => {
                let until = a.until.ok_or("a silence needs \"until\"")?;
                let target = match (a.subject, a.rule) {
                    (Some(s), None) => SilenceTarget::Subject(s),
                    (None, Some(r)) => SilenceTarget::Rule(r),
                    _ => return Err("a silence needs either \"subject\" or \"rule\"".into()),
                };
                Input::Silence {
                    target,
                    until,
                    by: a.by,
                }
            }
            other => return Err(format!("unknown action '{other}'; allowed: ack, silence")),
        };
        return Ok((Some(a.at), vec![input]));
    }
    if has("profile") || has("params") {
        let s: SubjectLine = serde_json::from_value(v).map_err(|e| format!("subject line: {e}"))?;
        let mut inputs = Vec::new();
        if let Some(p) = s.profile {
            inputs.push(Input::Profile(s.subject.clone(), p));
        }
        if let Some(p) = s.params {
            inputs.push(Input::Params(s.subject, p));
        }
        return Ok((s.at, inputs));
    }
    Err("not a reading (metric, value), device event (event), subject profile (profile), or action (action)".into())
}

/// Replays JSONL `input` through `engine`, writing every derived event (alert
/// transitions, `news2_score` readings) to `output` as JSONL.
///
/// Input lines (blank lines are skipped):
/// - reading: `{"at": "<RFC 3339>", "subject": "bed-1", "metric": "spo2", "value": 93}`
/// - device event: `{"at", "subject", "device": "pump-1", "event": "occlusion"}`
///   (`"phase": "end"` ends an alarm; `"event": "offline"` / `"online"` is a
///   device status; optional `"kind"`: ble, pump, modbus, synthetic, gateway)
/// - subject: `{"subject": "p1", "profile": {"spo2_scale": 2, "conditions": ["copd"]}}`
///   and/or `"params": {"prescribed_rate": 100}`
/// - action: `{"at", "action": "ack", "subject", "rule", "by"}` (or `"id"`),
///   `{"at", "action": "silence", "subject" | "rule", "until", "by"}`
/// - any model `Event` with its `"type"` tag.
pub fn replay(
    input: impl BufRead,
    mut output: impl Write,
    engine: &mut Engine,
) -> Result<ReplayStats, ReplayError> {
    let mut stats = ReplayStats::default();
    let mut driver = Driver {
        engine,
        now: None,
        ticks: 0,
        out_of_order: 0,
    };
    let mut out = Vec::new();
    for line in input.lines() {
        let line = line.map_err(ReplayError::Read)?;
        stats.lines += 1;
        let n = stats.lines;
        let err = |message: String| ReplayError::Line { line: n, message };
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| err(format!("not JSON: {e}")))?;
        let (at, inputs) = parse_line(v).map_err(err)?;
        for input in inputs {
            match &input {
                Input::Event(Event::Reading(_)) => stats.readings += 1,
                Input::Event(_) => stats.device_events += 1,
                Input::Profile(..) | Input::Params(..) => stats.profiles += 1,
                _ => stats.actions += 1,
            }
            let at = at.or(driver.now);
            match at {
                Some(at) => driver.feed(at, input, &mut out).map_err(err)?,
                // A profile before any timed line applies from the start.
                None => match input {
                    Input::Profile(s, p) => {
                        driver.engine.set_profile(Timestamp::UNIX_EPOCH, &s, p);
                    }
                    Input::Params(s, p) => driver
                        .engine
                        .set_params(&s, p)
                        .map_err(|e| err(e.to_string()))?,
                    _ => {}
                },
            }
        }
        for e in out.drain(..) {
            match e {
                Event::Alert(_) => stats.alerts += 1,
                _ => stats.derived += 1,
            }
            serde_json::to_writer(&mut output, &e).map_err(|e| ReplayError::Write(e.into()))?;
            output.write_all(b"\n").map_err(ReplayError::Write)?;
        }
    }
    output.flush().map_err(ReplayError::Write)?;
    stats.ticks = driver.ticks;
    stats.out_of_order = driver.out_of_order;
    Ok(stats)
}
