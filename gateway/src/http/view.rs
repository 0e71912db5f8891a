//! What the nurse-station page and the JSON API show, kept from the events
//! the pipeline committed: latest vitals per subject with an hour of history
//! for sparklines, NEWS2, devices with status, battery and last seen, the
//! open alerts, and counters for `/metrics`.
//!
//! Pure state: it is given events (and their own timestamps), never reads
//! the clock and does no I/O.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use wardgate_model::{
    AlarmPhase, Alert, AlertId, AlertState, DeviceState, Event, Metric, Silence, SilenceState,
    Subject, SubjectKind, Timestamp,
};

use crate::config::DeviceConfig;

/// How far back sparklines go.
const HISTORY: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// One history point per this interval at most (the last value in it wins),
/// so an hour is at most 240 points per metric.
const HISTORY_STEP: chrono::TimeDelta = chrono::TimeDelta::seconds(15);
/// Metrics with a sparkline.
const HISTORY_METRICS: &[Metric] = &[
    Metric::News2Score,
    Metric::Spo2,
    Metric::HeartRate,
    Metric::RespRate,
    Metric::BpSystolic,
    Metric::BodyTemp,
    Metric::FridgeTemp,
    Metric::RoomTemp,
];
/// Below this battery level (%) a device shows "battery low".
pub const BATTERY_LOW_PCT: f64 = 20.0;

#[derive(Debug, Clone, Serialize)]
pub struct Latest {
    pub value: f64,
    pub unit: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubjectView {
    pub id: String,
    pub name: Option<String>,
    pub kind: SubjectKind,
    /// Latest value per metric name.
    pub vitals: BTreeMap<String, Latest>,
    pub news2: Option<News2View>,
    /// `[[unix_ms, value], ...]` over the last hour per metric with a sparkline.
    pub history: BTreeMap<String, VecDeque<(i64, f64)>>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct News2View {
    pub score: f64,
    /// `zero`, `low`, `medium`, `high` (Royal College of Physicians NEWS2
    /// clinical risk: aggregate 0, 1–4, 5–6, 7 or more).
    pub band: &'static str,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub kind: &'static str,
    pub subject: String,
    /// `online`, `offline`, or `unknown` before its first status.
    pub state: &'static str,
    pub reason: Option<String>,
    pub battery: Option<f64>,
    pub battery_low: bool,
    pub last_seen: Option<Timestamp>,
    pub readings: u64,
    /// Device alarms that started and have not ended.
    pub alarms: Vec<String>,
}

/// Counters for `/metrics` (low-cardinality labels only, plus per device).
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub events: BTreeMap<&'static str, u64>,
    pub transitions: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default)]
pub struct View {
    subjects: BTreeMap<String, SubjectView>,
    devices: BTreeMap<String, DeviceView>,
    alerts: BTreeMap<AlertId, Alert>,
    /// Silences in force, by (subject or `*`, start).
    silences: BTreeMap<(String, i64), Silence>,
    pub counters: Counters,
}

pub fn news2_band(score: f64) -> &'static str {
    if score >= 7.0 {
        "high"
    } else if score >= 5.0 {
        "medium"
    } else if score >= 1.0 {
        "low"
    } else {
        "zero"
    }
}

impl View {
    /// A view of the configured subjects and devices, before any event.
    pub fn new(subjects: &[Subject], devices: &[DeviceConfig]) -> Self {
        let mut v = View::default();
        for s in subjects {
            v.subject_mut(s.id.as_str(), s.kind).name = s.name.as_deref().map(str::to_owned);
        }
        for d in devices {
            v.devices.insert(
                d.device.id.as_str().to_owned(),
                DeviceView {
                    id: d.device.id.as_str().to_owned(),
                    kind: d.device.kind.as_str(),
                    subject: d.subject.as_str().to_owned(),
                    state: "unknown",
                    reason: None,
                    battery: None,
                    battery_low: false,
                    last_seen: None,
                    readings: 0,
                    alarms: Vec::new(),
                },
            );
        }
        v
    }

    fn subject_mut(&mut self, id: &str, kind: SubjectKind) -> &mut SubjectView {
        self.subjects
            .entry(id.to_owned())
            .or_insert_with(|| SubjectView {
                id: id.to_owned(),
                name: None,
                kind,
                vitals: BTreeMap::new(),
                news2: None,
                history: BTreeMap::new(),
            })
    }

    fn device_mut(&mut self, device: &wardgate_model::DeviceRef, subject: &str) -> &mut DeviceView {
        self.devices
            .entry(device.id.as_str().to_owned())
            .or_insert_with(|| DeviceView {
                id: device.id.as_str().to_owned(),
                kind: device.kind.as_str(),
                subject: subject.to_owned(),
                state: "unknown",
                reason: None,
                battery: None,
                battery_low: false,
                last_seen: None,
                readings: 0,
                alarms: Vec::new(),
            })
    }

    pub fn has_subject(&self, id: &str) -> bool {
        self.subjects.contains_key(id)
    }

    /// Applies one committed event.
    /// The open alerts replaced by `alerts` (after missed updates).
    pub fn replace_alerts(&mut self, alerts: impl IntoIterator<Item = Alert>) {
        self.alerts.clear();
        self.seed_alerts(alerts);
    }

    /// Alerts already open when the view starts (restored after a restart),
    /// shown as they are without counting as transitions.
    pub fn seed_alerts(&mut self, alerts: impl IntoIterator<Item = Alert>) {
        for a in alerts {
            if a.state != AlertState::Cleared {
                self.alerts.insert(a.id.clone(), a);
            }
        }
    }

    pub fn handle_event(&mut self, event: &Event) {
        *self.counters.events.entry(event.type_name()).or_default() += 1;
        match event {
            Event::Reading(r) => {
                if let Some(d) = &r.device {
                    let dv = self.device_mut(d, r.subject.as_str());
                    dv.readings += 1;
                    dv.last_seen = Some(dv.last_seen.map_or(r.at, |t| t.max(r.at)));
                    if dv.state == "unknown" {
                        dv.state = "online";
                    }
                    if r.metric == Metric::BatteryLevel {
                        dv.battery = Some(r.value);
                        dv.battery_low = r.value < BATTERY_LOW_PCT;
                    }
                }
                let s = self.subject_mut(r.subject.as_str(), SubjectKind::Bed);
                let name = r.metric.name().to_owned();
                s.vitals.insert(
                    name.clone(),
                    Latest {
                        value: r.value,
                        unit: r.metric.unit().to_owned(),
                        at: r.at,
                    },
                );
                if r.metric == Metric::News2Score {
                    s.news2 = Some(News2View {
                        score: r.value,
                        band: news2_band(r.value),
                        at: r.at,
                    });
                }
                if HISTORY_METRICS.contains(&r.metric) {
                    push_history(s.history.entry(name).or_default(), r.at, r.value);
                }
            }
            Event::DeviceStatus(st) => {
                let dv = self.device_mut(&st.device, st.subject.as_str());
                dv.state = st.state.as_str();
                dv.reason = st.reason.as_deref().map(str::to_owned);
                if st.state == DeviceState::Online {
                    dv.last_seen = Some(dv.last_seen.map_or(st.at, |t| t.max(st.at)));
                }
            }
            Event::DeviceAlarm(a) => {
                let dv = self.device_mut(&a.device, a.subject.as_str());
                dv.last_seen = Some(dv.last_seen.map_or(a.at, |t| t.max(a.at)));
                let name = a.alarm.to_string();
                match a.phase {
                    AlarmPhase::Start if !dv.alarms.contains(&name) => dv.alarms.push(name),
                    AlarmPhase::Start => {}
                    AlarmPhase::End => dv.alarms.retain(|x| *x != name),
                }
            }
            Event::Alert(a) => {
                *self
                    .counters
                    .transitions
                    .entry(a.transition.as_str())
                    .or_default() += 1;
                if a.state == AlertState::Cleared {
                    self.alerts.remove(&a.id);
                } else {
                    self.alerts.insert(a.id.clone(), a.clone());
                }
            }
            Event::Silence(s) => {
                let key = (
                    format!("{}:{:?}", s.subject, s.target),
                    s.from.timestamp_nanos_opt().unwrap_or_default(),
                );
                match s.state {
                    SilenceState::Active => {
                        self.silences.insert(key, s.clone());
                    }
                    SilenceState::Ended => {
                        self.silences.remove(&key);
                    }
                }
            }
        }
    }

    /// Silences in force, the oldest first.
    pub fn silences(&self) -> Vec<&Silence> {
        let mut v: Vec<&Silence> = self.silences.values().collect();
        v.sort_by_key(|s| s.from);
        v
    }

    pub fn subjects(&self) -> Vec<&SubjectView> {
        self.subjects.values().collect()
    }

    pub fn devices(&self) -> Vec<&DeviceView> {
        self.devices.values().collect()
    }

    /// Open alerts, highest priority first, then oldest first.
    pub fn alerts(&self) -> Vec<&Alert> {
        let mut v: Vec<&Alert> = self.alerts.values().collect();
        v.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.raised_at.cmp(&b.raised_at))
                .then(a.id.cmp(&b.id))
        });
        v
    }

    pub fn alert_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for a in self.alerts.values() {
            *m.entry(a.state.as_str()).or_default() += 1;
        }
        m
    }
}

fn push_history(h: &mut VecDeque<(i64, f64)>, at: Timestamp, value: f64) {
    let ms = at.timestamp_millis();
    match h.back_mut() {
        Some(last) if ms < last.0 => {} // out of order: sparklines only move forward
        Some(last) if ms - last.0 < HISTORY_STEP.num_milliseconds() => {
            *last = (last.0, value);
        }
        _ => h.push_back((ms, value)),
    }
    let oldest = ms - HISTORY.num_milliseconds();
    while h.front().is_some_and(|p| p.0 < oldest) {
        h.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn history_keeps_one_point_per_step_for_one_hour() {
        let mut h = VecDeque::new();
        push_history(&mut h, t(0), 1.0);
        // 10 s later: same 15 s step, the newer value replaces the older.
        push_history(&mut h, t(10), 2.0);
        // 20 s after the first point: a new point.
        push_history(&mut h, t(20), 3.0);
        // Out of order: ignored.
        push_history(&mut h, t(5), 9.0);
        let base = t(0).timestamp_millis();
        assert_eq!(
            h.iter().copied().collect::<Vec<_>>(),
            vec![(base, 2.0), (base + 20_000, 3.0)]
        );
        // One hour and 10 s after the first point, the first has aged out
        // (older than an hour), the second (59 min 50 s old) stays.
        push_history(&mut h, t(3610), 4.0);
        assert_eq!(
            h.iter().copied().collect::<Vec<_>>(),
            vec![(base + 20_000, 3.0), (base + 3_610_000, 4.0)]
        );
    }

    #[test]
    fn news2_bands_follow_the_rcp_thresholds() {
        // RCP NEWS2 (2017) clinical risk: 0, 1–4 low, 5–6 medium, 7+ high.
        for (score, band) in [
            (0.0, "zero"),
            (1.0, "low"),
            (4.0, "low"),
            (5.0, "medium"),
            (6.0, "medium"),
            (7.0, "high"),
            (20.0, "high"),
        ] {
            assert_eq!(news2_band(score), band, "{score}");
        }
    }
}
