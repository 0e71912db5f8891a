//! The gateway's live figures for `/metrics` (docs/metrics.md): one
//! prometheus-client registry with the `wardgate` prefix, created by the
//! pipeline and handed out as handles — the drivers' per-device counters
//! ([`DriverMetrics`]), the sinks' ([`SinkMetrics`]), the rules stage's and
//! the spool's commits. Figures that are a state rather than a count (open
//! alerts, backlogs, spool size) are read at each scrape by the HTTP layer.
//!
//! Labels are bounded: device, sink and rule ids come from the
//! configuration; priority, transition, trigger and kind are fixed
//! vocabularies. Never a subject, an alert id or a value as a label.
//!
//! Invariant: counting never blocks and never fails; the rules engine is
//! not instrumented inside — its figures are derived from what it returns.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use wardgate_drivers::DriverMetrics;
use wardgate_drivers::metrics::LabelValue;
use wardgate_model::Event;

use crate::sinks::metrics::{SinkMetricFamilies, SinkMetrics};

/// The prefix of every series.
pub const PREFIX: &str = "wardgate";

/// `{version, rustc_profile}` of `wardgate_build_info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    rustc_profile: &'static str,
}

/// `{trigger}`: what made the rules engine run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TriggerLabels {
    trigger: &'static str,
}

/// `{rule, priority, transition}` of an alert transition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransitionLabels {
    rule: LabelValue,
    priority: &'static str,
    transition: &'static str,
}

/// What made the rules engine run (the `trigger` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A driver's event on its own.
    Event,
    /// The events of one measurement, evaluated together.
    Measurement,
    /// The engine's timer (`for`, staleness, escalation).
    Tick,
    /// A nurse's acknowledgement or silence.
    Command,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Event => "event",
            Trigger::Measurement => "measurement",
            Trigger::Tick => "tick",
            Trigger::Command => "command",
        }
    }
}

/// Every live figure of one gateway run; share it in an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub drivers: DriverMetrics,
    sinks: SinkMetricFamilies,
    evaluations: Family<TriggerLabels, Counter>,
    transitions: Family<TransitionLabels, Counter>,
    commits: Counter,
    commit_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "build",
            "The running build: always 1, its labels say which",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                rustc_profile: if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                },
            }),
        );
        let started = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        started.set(unix_seconds(std::time::SystemTime::now()));
        registry.register_with_unit(
            "process_start_time",
            "When the gateway started, in seconds since the Unix epoch",
            Unit::Seconds,
            started,
        );
        let drivers = DriverMetrics::register(&mut registry);
        let sinks = SinkMetricFamilies::register(&mut registry);
        let evaluations = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "rules_evaluations",
            "Runs of the rules engine, by trigger (event, measurement, tick, command); each evaluates the rules its input concerns",
            evaluations.clone(),
        );
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "rule_alert_transitions",
            "Alert transitions committed, by rule, priority and transition (raised, escalated, acknowledged, cleared, ...)",
            transitions.clone(),
        );
        let commits = Counter::default();
        registry.register(
            "spool_commits",
            "Transactions committed to the spool (one fsync each)",
            commits.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.000_25, 2.0, 14));
        registry.register_with_unit(
            "spool_commit_duration",
            "Time one spool commit took, retries included",
            Unit::Seconds,
            commit_seconds.clone(),
        );
        Self {
            registry,
            drivers,
            sinks,
            evaluations,
            transitions,
            commits,
            commit_seconds,
        }
    }

    /// The live registry, for the HTTP layer to encode.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sink `name`'s counters (its series appear at once, at zero).
    pub fn sink(&self, name: &str) -> SinkMetrics {
        self.sinks.sink(name)
    }

    /// The rules engine ran once for `trigger`.
    pub fn evaluated(&self, trigger: Trigger) {
        self.evaluations
            .get_or_create(&TriggerLabels {
                trigger: trigger.as_str(),
            })
            .inc();
    }

    /// One spool commit of `events` took `took`: counts it and the alert
    /// transitions it carried.
    pub fn committed(&self, events: &[Event], took: Duration) {
        self.commits.inc();
        self.commit_seconds.observe(took.as_secs_f64());
        for e in events {
            if let Event::Alert(a) = e {
                self.transitions
                    .get_or_create(&TransitionLabels {
                        rule: LabelValue::from(a.rule.as_str()),
                        priority: a.priority.as_str(),
                        transition: a.transition.as_str(),
                    })
                    .inc();
            }
        }
    }
}

/// Seconds since the Unix epoch.
fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
