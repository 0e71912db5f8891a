//! Decode throughput per characteristic: `cargo bench -p wardgate-drivers --bench ble`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wardgate_drivers::ble::{Characteristic, decode};

/// One representative payload per characteristic, every common field present.
const PAYLOADS: &[(Characteristic, &[u8])] = &[
    // HR 72, contact detected, 4 RR intervals
    (
        Characteristic::HeartRateMeasurement,
        &[0x16, 0x48, 0x54, 0x01, 0xEC, 0x02, 0x00, 0x04, 0x00, 0x02],
    ),
    // 121/81/106 mmHg, time stamp, pulse, user, status
    (
        Characteristic::BloodPressureMeasurement,
        &[
            0x1E, 0x79, 0x00, 0x51, 0x00, 0x6A, 0x00, 0xEA, 0x07, 11, 27, 9, 30, 15, 0x48, 0x00,
            0x03, 0x26, 0x00,
        ],
    ),
    (
        Characteristic::IntermediateCuffPressure,
        &[0x00, 0x8C, 0x00, 0xFF, 0x07, 0xFF, 0x07],
    ),
    (
        Characteristic::TemperatureMeasurement,
        &[
            0x06, 0x6D, 0x01, 0x00, 0xFF, 0xEA, 0x07, 11, 27, 8, 0, 0, 0x02,
        ],
    ),
    (
        Characteristic::GlucoseMeasurement,
        &[
            0x0B, 0x2A, 0x00, 0xEA, 0x07, 11, 27, 7, 0, 0, 0x1E, 0x00, 0x5A, 0xB0, 0x11, 0x00, 0x00,
        ],
    ),
    (
        Characteristic::PlxSpotCheck,
        &[
            0x0F, 0x61, 0x00, 0x3C, 0x00, 0xEA, 0x07, 11, 27, 9, 59, 59, 0x80, 0x00, 0x20, 0x08,
            0x00, 0x2D, 0xF0,
        ],
    ),
    (
        Characteristic::PlxContinuous,
        &[
            0x1F, 0x5F, 0x00, 0x48, 0x00, 0x5E, 0x00, 0x4A, 0x00, 0x60, 0x00, 0x48, 0x00, 0x20,
            0x00, 0x00, 0x00, 0x00, 0x10, 0xF0,
        ],
    ),
    (
        Characteristic::WeightMeasurement,
        &[
            0x0E, 0x60, 0x36, 0xEA, 0x07, 11, 27, 6, 45, 0, 0x01, 0xE3, 0x00, 0xF0, 0x06,
        ],
    ),
    (
        Characteristic::BodyComposition,
        &[
            0x06, 0x04, 0xDC, 0x00, 0xEA, 0x07, 11, 27, 6, 45, 0, 0x02, 0x60, 0x36,
        ],
    ),
    (Characteristic::BatteryLevel, &[0x55]),
];

fn decoders(c: &mut Criterion) {
    let now = "2026-11-27T10:00:00Z".parse().unwrap();
    let mut group = c.benchmark_group("ble_decode");
    group.throughput(Throughput::Elements(1));
    for (ch, payload) in PAYLOADS {
        assert!(decode(*ch, payload, now).is_ok(), "{ch}");
        group.bench_function(ch.short(), |b| {
            b.iter(|| decode(black_box(*ch), black_box(payload), black_box(now)));
        });
    }
    group.finish();
}

criterion_group!(benches, decoders);
criterion_main!(benches);
