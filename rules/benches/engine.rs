//! Throughput of the engine: 100 subjects, every built-in pack, a ward's mix
//! of vital signs, ticking once per simulated second as the gateway does.
//! Run: cargo bench -p wardgate-rules --bench engine

use std::hint::black_box;

use chrono::TimeDelta;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use wardgate_model::{Event, Metric, Reading, SubjectId, TimeSource, Timestamp};
use wardgate_rules::{Engine, EngineOptions, packs};

const SUBJECTS: usize = 100;
const READINGS: usize = 200_000;

/// A deterministic ward: each subject reports eight metrics in turn, values
/// wandering around normal with occasional excursions that raise and clear alerts.
fn ward() -> Vec<Event> {
    let start: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
    let subjects: Vec<SubjectId> = (0..SUBJECTS).map(|i| SubjectId::from(format!("bed-{i}"))).collect();
    let metrics = [
        (Metric::HeartRate, 80.0, 60.0),
        (Metric::Spo2, 95.0, 8.0),
        (Metric::RespRate, 16.0, 12.0),
        (Metric::BpSystolic, 130.0, 70.0),
        (Metric::BodyTemp, 37.0, 2.0),
        (Metric::O2Flow, 0.0, 2.0),
        (Metric::Consciousness, 0.0, 0.0),
        (Metric::Glucose, 120.0, 150.0),
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut events = Vec::with_capacity(READINGS);
    for i in 0..READINGS {
        // xorshift: reproducible without a dependency
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (metric, centre, spread) = &metrics[(i / SUBJECTS) % metrics.len()];
        let u = (x % 10_000) as f64 / 10_000.0 - 0.5;
        let value = (centre + spread * u).max(0.0);
        // 800 readings per simulated second across the ward
        let at = start + TimeDelta::microseconds(i as i64 * 1250);
        let r = Reading::new(at, TimeSource::Device, subjects[i % SUBJECTS].clone(), None, metric.clone(), value).unwrap();
        events.push(Event::Reading(r));
    }
    events
}

fn bench(c: &mut Criterion) {
    let rules = packs::builtin_rule_set().unwrap();
    let events = ward();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(READINGS as u64));
    g.sample_size(10);
    g.bench_function("100_subjects_all_packs", |b| {
        b.iter_batched(
            || Engine::new(rules.clone(), EngineOptions::default()).unwrap(),
            |mut engine| {
                let mut out = Vec::new();
                let mut alerts = 0usize;
                for e in &events {
                    let now = e.at();
                    while let Some(d) = engine.poll_timeout() {
                        if d > now {
                            break;
                        }
                        alerts += engine.poll_tick(d).len();
                    }
                    engine.handle_event_into(now, e, &mut out);
                    alerts += out.len();
                    out.clear();
                }
                black_box(alerts)
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
