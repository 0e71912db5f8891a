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

/// A deterministic ward: each subject reports eight metrics in turn; each
/// value is a mean-reverting random walk (vital signs are autocorrelated, not
/// white noise), wide enough to raise and clear alerts now and then.
fn ward() -> Vec<Event> {
    let start: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
    let subjects: Vec<SubjectId> = (0..SUBJECTS)
        .map(|i| SubjectId::from(format!("bed-{i}")))
        .collect();
    // (metric, centre, step)
    let metrics = [
        (Metric::HeartRate, 85.0, 3.0),
        (Metric::Spo2, 95.0, 0.7),
        (Metric::RespRate, 17.0, 1.0),
        (Metric::BpSystolic, 135.0, 4.0),
        (Metric::BodyTemp, 37.2, 0.1),
        (Metric::O2Flow, 0.0, 0.0),
        (Metric::Consciousness, 0.0, 0.0),
        (Metric::Glucose, 110.0, 6.0),
    ];
    let mut state: Vec<f64> = (0..SUBJECTS * metrics.len())
        .map(|i| metrics[i % metrics.len()].1)
        .collect();
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut events = Vec::with_capacity(READINGS);
    for i in 0..READINGS {
        // xorshift: reproducible without a dependency
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let subject = i % SUBJECTS;
        let which = (i / SUBJECTS) % metrics.len();
        let (metric, centre, step) = &metrics[which];
        let noise = (rng % 10_000) as f64 / 5_000.0 - 1.0; // -1..1
        let v = &mut state[subject * metrics.len() + which];
        *v = (*v + step * noise + (centre - *v) * 0.02).max(0.0);
        // 800 readings per simulated second across the ward
        let at = start + TimeDelta::microseconds(i as i64 * 1250);
        let r = Reading::new(
            at,
            TimeSource::Device,
            subjects[subject].clone(),
            None,
            metric.clone(),
            *v,
        )
        .unwrap();
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
                black_box((alerts, engine.drain_audit()))
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
