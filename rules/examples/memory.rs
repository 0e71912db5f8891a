//! Measures the engine's memory per subject: resident set size before and
//! after 10 000 subjects each report every vital sign NEWS2 needs, glucose,
//! BP, battery, and a week of daily weights (the only windowed metric of the
//! built-in packs), with every built-in pack active.
//! Run: cargo run --release -p wardgate-rules --example memory
//! (Linux: reads /proc/self/statm.)

use chrono::TimeDelta;
use wardgate_model::{Event, Metric, Reading, SubjectId, TimeSource, Timestamp};
use wardgate_rules::{Engine, EngineOptions, packs};

const SUBJECTS: usize = 10_000;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm");
    pages * 4096
}

fn main() {
    let mut engine = Engine::new(
        packs::builtin_rule_set().expect("built-in packs"),
        EngineOptions::default(),
    )
    .expect("engine");
    let start: Timestamp = "2026-11-27T10:00:00Z".parse().expect("time");
    let ids: Vec<SubjectId> = (0..SUBJECTS)
        .map(|i| SubjectId::from(format!("bed-{i:05}")))
        .collect();
    let before = rss_bytes();
    let vitals = [
        (Metric::HeartRate, 80.0),
        (Metric::Spo2, 96.0),
        (Metric::RespRate, 16.0),
        (Metric::BpSystolic, 125.0),
        (Metric::BpDiastolic, 80.0),
        (Metric::BodyTemp, 37.0),
        (Metric::O2Flow, 0.0),
        (Metric::Consciousness, 0.0),
        (Metric::Glucose, 110.0),
        (Metric::BatteryLevel, 80.0),
    ];
    for day in 0..7 {
        let at = start + TimeDelta::days(day);
        for id in &ids {
            let mut feed = |metric: &Metric, value: f64| {
                let r = Reading::new(
                    at,
                    TimeSource::Device,
                    id.clone(),
                    None,
                    metric.clone(),
                    value,
                )
                .expect("reading");
                engine.handle_event(at, &Event::Reading(r));
            };
            feed(&Metric::BodyWeight, 80.0 + day as f64 * 0.1);
            for (m, v) in &vitals {
                feed(m, *v);
            }
        }
    }
    let after = rss_bytes();
    println!(
        "{SUBJECTS} subjects, {} rules: RSS grew by {} bytes = {} bytes per subject \
         (engine's own estimate of subject heap: {} bytes per subject)",
        engine.rules().rules().len(),
        after - before,
        (after - before) / SUBJECTS,
        engine.subject_heap_bytes() / SUBJECTS,
    );
}
