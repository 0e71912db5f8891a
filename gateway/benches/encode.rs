//! Criterion baselines for the hot encoders and the spool (issue 9):
//! line protocol for one reading, the MQTT messages for a 500-record batch,
//! a group-commit append of 500 readings to a redb spool on disk, and a FHIR
//! transaction Bundle of 100 Observations.
//! `cargo bench -p wardgate --bench encode`; criterion keeps the last run in
//! target/criterion and reports a regression against it.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use wardgate::lineproto::{self, Identity};
use wardgate::mqtt::Topics;
use wardgate::sinks::mqtt::{TelemetryFormat, messages};
use wardgate::spool::{Lane, Record, Spool, SpoolLimits};
use wardgate_model::{DeviceKind, DeviceRef, Event, Metric, Reading, TimeSource, Timestamp};

const BATCH: usize = 500;

fn at(i: usize) -> Timestamp {
    chrono::DateTime::from_timestamp(1_800_000_000 + i as i64, 0).expect("valid time")
}

fn reading(i: usize) -> Event {
    Event::Reading(
        Reading::new(
            at(i),
            TimeSource::Device,
            format!("bed-{}", i % 50).into(),
            Some(DeviceRef::new(
                format!("ox-{}", i % 50).into(),
                DeviceKind::Ble,
            )),
            Metric::Spo2,
            95.0 + (i % 4) as f64,
        )
        .expect("finite reading"),
    )
}

fn identity() -> Identity {
    Identity {
        site: "site-a".to_owned(),
        ward: "ward-3".to_owned(),
        gateway: "gw-1".to_owned(),
    }
}

fn lineproto_reading(c: &mut Criterion) {
    let id = identity();
    let ev = reading(1);
    let mut out = String::with_capacity(256);
    c.bench_function("lineproto/encode_reading", |b| {
        b.iter(|| {
            out.clear();
            lineproto::encode(black_box(&ev), &id, &mut out);
            black_box(out.len())
        });
    });
}

fn mqtt_batch(c: &mut Criterion) {
    let id = identity();
    let topics = Topics::new("wardgate", "site-a", "ward-3", "gw-1");
    let records: Vec<Record> = (0..BATCH)
        .map(|i| Record::new(Lane::Telemetry, i as u64 + 1, at(0), reading(i)))
        .collect();
    let mut g = c.benchmark_group("mqtt");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("messages_500_readings_line", |b| {
        b.iter(|| messages(black_box(&records), &id, &topics, TelemetryFormat::Line));
    });
    g.bench_function("messages_500_readings_json", |b| {
        b.iter(|| messages(black_box(&records), &id, &topics, TelemetryFormat::Json));
    });
    // As if the spool kept each reading's JSON: passed through, not encoded.
    let stored: Vec<Record> = records
        .iter()
        .map(|r| Record {
            json: Some(serde_json::to_vec(&r.event).expect("json").into()),
            ..r.clone()
        })
        .collect();
    g.bench_function("messages_500_readings_json_stored", |b| {
        b.iter(|| messages(black_box(&stored), &id, &topics, TelemetryFormat::Json));
    });
    g.finish();
}

fn spool_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = SpoolLimits {
        max_bytes: u64::MAX,
        max_age: Duration::from_secs(365 * 24 * 3600),
    };
    let spool = Spool::open(&dir.path().join("bench.redb"), limits, &["mqtt".to_owned()])
        .expect("open spool");
    let events: Vec<Event> = (0..BATCH).map(reading).collect();
    let mut g = c.benchmark_group("spool");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    g.bench_function("append_500_readings_group_commit", |b| {
        b.iter_batched(
            || events.clone(),
            |evs| spool.append(at(0), &evs).expect("append"),
            BatchSize::SmallInput,
        );
    });
    // What a sink does for each batch: read the records back (decode included).
    spool.append(at(0), &events).expect("append");
    g.bench_function("read_500_readings", |b| {
        b.iter(|| spool.read(Lane::Telemetry, 0, BATCH).expect("read"));
    });
    g.finish();
}

/// A FHIR transaction Bundle of 100 Observations (the sink's default
/// `batch_max`), serialised as it is sent.
fn fhir_bundle(c: &mut Criterion) {
    use wardgate::sinks::fhir::encode::{Chart, Naming, Patient, observation, transaction};
    let naming = Naming {
        base: "urn:wardgate:site-a:gw-1".to_owned(),
        gateway: "gw-1".to_owned(),
    };
    let patient = Patient {
        system: "urn:oid:2.16.840.1.113883.19.5",
        mrn: "000101",
    };
    let charts: Vec<Chart> = (0..100)
        .map(|i| match reading(i) {
            Event::Reading(r) => Chart::Single(r),
            _ => unreachable!("reading() makes readings"),
        })
        .collect();
    let mut g = c.benchmark_group("fhir");
    g.throughput(Throughput::Elements(charts.len() as u64));
    g.bench_function("bundle_100_observations", |b| {
        b.iter(|| {
            let observations = charts
                .iter()
                .map(|c| observation(black_box(c), patient, &naming))
                .collect();
            serde_json::to_vec(&transaction(observations)).expect("json")
        });
    });
    g.finish();
}

criterion_group!(
    benches,
    lineproto_reading,
    mqtt_batch,
    spool_append,
    fhir_bundle
);
criterion_main!(benches);
