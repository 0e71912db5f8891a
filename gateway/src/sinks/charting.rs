//! Which readings a sink that charts into a patient record sends: a nurse's
//! flowsheet holds a value every charting interval (vitals every 15 minutes),
//! not the 1 Hz stream a wearable gives; and every reading that raised an
//! alert, so the record shows what the alert was about.
//!
//! [`Charting`] is a sans-IO state machine over the spooled stream, given
//! alert transitions and readings in spool order (alerts come first from
//! the spool's priority lane, so an alert is seen before the reading that
//! raised it). A reading raised an alert when an alert of its subject was
//! raised or changed priority at the reading's instant: rules evaluate at
//! the time of the reading they are given.
//!
//! After a restart the state is empty and the first reading of each metric
//! is charted again: one more point on the flowsheet, never a duplicate
//! (the sinks make each reading's identity stable).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use serde::Deserialize;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_duration};
use wardgate_model::{Alert, MetricRegistry, Reading, SubjectId, Timestamp, Transition};

/// `[sinks.chart]`: how often each metric is charted.
#[derive(Debug, Clone, Deserialize)]
pub struct ChartConfig {
    /// The charting interval of every metric not named in `metrics`
    /// (`0s`: every reading).
    #[serde(with = "humantime_serde", default = "default_every")]
    pub every: Duration,
    /// Per-metric intervals, e.g. `{ spo2 = "5m", body_weight = "0s" }`.
    #[serde(default)]
    pub metrics: HashMap<String, humantime_serde::Serde<Duration>>,
    /// Chart every reading that raised an alert, whatever the interval.
    #[serde(default = "default_alerts")]
    pub alerts: bool,
}

fn default_every() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_alerts() -> bool {
    true
}

impl Default for ChartConfig {
    fn default() -> Self {
        Self {
            every: default_every(),
            metrics: HashMap::new(),
            alerts: default_alerts(),
        }
    }
}

impl ChartConfig {
    /// Its issues as a sink's `chart` table, added to the sink's.
    pub fn check_within(&self, metrics: &MetricRegistry, issues: &mut Vec<ConfigIssue>) {
        issues.extend(
            self.validate(metrics)
                .into_iter()
                .map(|i| i.within([PathSeg::from("chart")])),
        );
    }
}

const LONGEST: Duration = Duration::from_secs(24 * 3600);

impl Validate for ChartConfig {
    fn validate(&self, metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        check_duration(&mut issues, "every", self.every, Duration::ZERO..=LONGEST);
        let mut names: Vec<&String> = self.metrics.keys().collect();
        names.sort();
        for name in names {
            let at = [PathSeg::from("metrics"), PathSeg::from(name.clone())];
            if metrics.resolve(name).is_none() {
                issues.push(ConfigIssue::new(
                    at,
                    format!(
                        "unknown metric `{name}`; known metrics: {}",
                        metrics.known_names().join(", ")
                    ),
                ));
            } else if *self.metrics[name] > LONGEST {
                issues.push(ConfigIssue::new(
                    at,
                    format!("the charting interval of `{name}` must be at most 24h"),
                ));
            }
        }
        issues
    }
}

/// How many alert instants are remembered: far more than arrive between an
/// alert and its reading, which are committed together.
const MARKS: usize = 4096;

/// The charting state: when each subject's metric was last charted, and the
/// instants at which alerts were raised.
#[derive(Debug)]
pub struct Charting {
    every: Duration,
    per_metric: HashMap<String, Duration>,
    alerts: bool,
    last: HashMap<(SubjectId, String), Timestamp>,
    marks: HashSet<(SubjectId, Timestamp)>,
    order: VecDeque<(SubjectId, Timestamp)>,
}

impl Charting {
    pub fn new(config: &ChartConfig) -> Self {
        Self {
            every: config.every,
            per_metric: config
                .metrics
                .iter()
                .map(|(k, v)| (k.clone(), **v))
                .collect(),
            alerts: config.alerts,
            last: HashMap::new(),
            marks: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// An alert transition in the stream: a raise or a change of priority
    /// marks its subject's readings of that instant.
    pub fn handle_alert(&mut self, alert: &Alert) {
        if !self.alerts
            || !matches!(
                alert.transition,
                Transition::Raised | Transition::PriorityChanged
            )
        {
            return;
        }
        let mark = (alert.subject.clone(), alert.at);
        if self.marks.insert(mark.clone()) {
            self.order.push_back(mark);
            if self.order.len() > MARKS
                && let Some(old) = self.order.pop_front()
            {
                self.marks.remove(&old);
            }
        }
    }

    /// A reading in the stream: `true` when it is to be charted (its
    /// metric's interval has passed since the last one charted, or it
    /// raised an alert).
    pub fn handle_reading(&mut self, r: &Reading) -> bool {
        let interval = self
            .per_metric
            .get(r.metric.name())
            .copied()
            .unwrap_or(self.every);
        let key = (r.subject.clone(), r.metric.name().to_owned());
        let due = match self.last.get(&key) {
            None => true,
            Some(last) => (r.at - *last).to_std().is_ok_and(|since| since >= interval),
        };
        let raised = self.marks.contains(&(r.subject.clone(), r.at));
        if due {
            self.last.insert(key, r.at);
        }
        due || raised
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use wardgate_model::{Metric, TimeSource};

    fn at(s: i64) -> Timestamp {
        chrono::Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn reading(subject: &str, metric: Metric, s: i64) -> Reading {
        Reading::new(
            at(s),
            TimeSource::Gateway,
            subject.into(),
            None,
            metric,
            95.0,
        )
        .unwrap()
    }

    fn config(toml_text: &str) -> ChartConfig {
        toml::from_str(toml_text).unwrap()
    }

    /// Which of `seconds` are charted for one subject's SpO2.
    fn charted(charting: &mut Charting, seconds: &[i64]) -> Vec<i64> {
        seconds
            .iter()
            .copied()
            .filter(|s| charting.handle_reading(&reading("bed-1", Metric::Spo2, *s)))
            .collect()
    }

    #[test]
    fn one_reading_per_interval_from_a_1_hz_stream() {
        let mut c = Charting::new(&config("every = \"15m\""));
        let every_second: Vec<i64> = (0..3600).collect();
        assert_eq!(charted(&mut c, &every_second), [0, 900, 1800, 2700]);
    }

    #[test]
    fn intervals_are_per_subject_and_metric() {
        let mut c = Charting::new(&config(
            "every = \"15m\"\nmetrics = { heart_rate = \"0s\" }",
        ));
        assert!(c.handle_reading(&reading("bed-1", Metric::Spo2, 0)));
        assert!(c.handle_reading(&reading("bed-2", Metric::Spo2, 1)));
        assert!(!c.handle_reading(&reading("bed-1", Metric::Spo2, 2)));
        assert!(c.handle_reading(&reading("bed-1", Metric::HeartRate, 3)));
        assert!(c.handle_reading(&reading("bed-1", Metric::HeartRate, 4)));
    }

    fn alert(subject: &str, s: i64, transition: Transition) -> Alert {
        let mut a: Alert = serde_json::from_value(serde_json::json!({
            "id": "a-1", "rule": "spo2_low", "subject": subject, "priority": "high",
            "kind": "physiological", "state": "active", "transition": "raised",
            "at": at(s), "raised_at": at(s), "message": "SpO2 low",
        }))
        .unwrap();
        a.transition = transition;
        a
    }

    #[test]
    fn a_reading_that_raised_an_alert_is_charted_between_intervals() {
        let mut c = Charting::new(&ChartConfig::default());
        assert_eq!(charted(&mut c, &[0, 10]), [0]);
        c.handle_alert(&alert("bed-1", 20, Transition::Raised));
        c.handle_alert(&alert("bed-1", 30, Transition::Acknowledged));
        c.handle_alert(&alert("bed-2", 40, Transition::Raised));
        c.handle_alert(&alert("bed-1", 50, Transition::PriorityChanged));
        assert_eq!(charted(&mut c, &[20, 30, 40, 50, 60]), [20, 50]);
        // The interval still runs from the last reading charted for it.
        assert_eq!(charted(&mut c, &[899, 900]), [900]);
    }

    #[test]
    fn alerts_can_be_left_to_the_interval() {
        let mut c = Charting::new(&config("alerts = false"));
        c.handle_alert(&alert("bed-1", 20, Transition::Raised));
        assert_eq!(charted(&mut c, &[0, 20]), [0]);
    }

    #[test]
    fn unknown_metrics_and_long_intervals_are_refused() {
        let c = config("every = \"2d\"\nmetrics = { spo3 = \"1m\", spo2 = \"3d\" }");
        let issues: Vec<String> = c
            .validate(&MetricRegistry::default())
            .iter()
            .map(|i| format!("{}: {}", i.dotted_path(), i.message))
            .collect();
        assert_eq!(issues.len(), 3, "{issues:?}");
        assert!(
            issues[0].starts_with("every: every must be between"),
            "{issues:?}"
        );
        assert!(
            issues[1].starts_with("metrics.spo2: the charting interval"),
            "{issues:?}"
        );
        assert!(
            issues[2].starts_with("metrics.spo3: unknown metric `spo3`"),
            "{issues:?}"
        );
    }
}
