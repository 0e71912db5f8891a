//! Cost of the pure parts of the Modbus driver: planning a large register
//! map, and decoding one full 125-register reply.
//! Run: `cargo bench -p wardgate-drivers --bench modbus`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use wardgate_drivers::modbus::plan::{PlanLimits, Span, plan};
use wardgate_drivers::modbus::{ByteOrder, DataType, Decoding, Table};

fn bench(c: &mut Criterion) {
    // 1000 f32 entries spread over both register tables with small gaps.
    let spans: Vec<Span> = (0..1000u16)
        .map(|i| Span {
            table: if i % 2 == 0 {
                Table::InputRegister
            } else {
                Table::HoldingRegister
            },
            address: i * 3,
            len: 2,
        })
        .collect();
    c.bench_function("plan 1000 entries", |b| {
        b.iter(|| plan(black_box(&spans), PlanLimits::default()));
    });

    let words: Vec<u16> = (0..124u16).collect();
    let d = Decoding {
        data_type: DataType::F32,
        order: ByteOrder::Cdab,
        bit: None,
        scale: 0.1,
        offset: 0.0,
    };
    c.bench_function("decode 62 f32 CDAB", |b| {
        b.iter(|| {
            black_box(&words)
                .chunks_exact(2)
                .map(|w| d.decode_words(w).unwrap_or(0.0))
                .sum::<f64>()
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
