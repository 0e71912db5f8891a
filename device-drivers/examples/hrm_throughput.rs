//! Decodes one Heart Rate Measurement with 4 RR intervals 20 million times,
//! for a CPU-time measurement that a busy machine's wall clock cannot give:
//!
//! ```console
//! $ cargo build --release -p wardgate-drivers --example hrm_throughput
//! $ /usr/bin/time -f "%U s user" target/release/examples/hrm_throughput
//! ```

use std::hint::black_box;

use wardgate_drivers::ble::{Characteristic, decode};

const N: u64 = 20_000_000;

fn main() {
    let now = "2026-11-27T10:00:00Z".parse().expect("a valid time");
    // flags 0x16 (u8 rate, contact detected, RR), 72 /min, 4 RR intervals
    let payload: &[u8] = &[0x16, 0x48, 0x54, 0x01, 0xEC, 0x02, 0x00, 0x04, 0x00, 0x02];
    let mut readings = 0usize;
    for _ in 0..N {
        let d = decode(
            black_box(Characteristic::HeartRateMeasurement),
            black_box(payload),
            black_box(now),
        )
        .expect("a valid payload");
        readings += d.measurements.len();
    }
    println!("{N} decodes, {readings} readings");
}
