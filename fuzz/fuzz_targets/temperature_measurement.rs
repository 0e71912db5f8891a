#![no_main]
//! Any bytes as TemperatureMeasurement: a value or a typed error, never a panic, and every
//! reading finite.

use libfuzzer_sys::fuzz_target;
use wardgate_drivers::ble::{Characteristic, decode};

fuzz_target!(|data: &[u8]| {
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    if let Ok(d) = decode(Characteristic::TemperatureMeasurement, data, now) {
        assert!(d.measurements.iter().all(|m| m.value.is_finite()));
    }
});
