//! Byte-literal vectors for every decoder. Expected values are worked out by
//! hand from the Bluetooth SIG service specs (HRS, BLS, HTS, GLS, PLXS, WSS,
//! BCS, BAS); vectors published by independent decoders are cited.

use wardgate_model::{Metric, TimeSource, Timestamp};

use super::gatt::extra_metrics as em;
use super::*;

fn now() -> Timestamp {
    "2026-11-27T10:00:00Z".parse().unwrap()
}

/// What one payload must decode to.
#[derive(Default)]
struct Expect {
    readings: Vec<(Metric, f64)>,
    /// Device time (RFC 3339) when the device's own timestamp is used.
    device_time: Option<&'static str>,
    fallback: Option<TimeFallback>,
    unavailable: Vec<(Metric, Unavailability)>,
    flags: Vec<StatusFlag>,
    extras: Vec<(&'static str, ExtraValue)>,
}

fn check(ch: Characteristic, input: &[u8], e: &Expect) {
    let d = decode(ch, input, now()).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(d.characteristic, ch);
    let got: Vec<(Metric, f64)> = d
        .measurements
        .iter()
        .map(|m| (m.metric.clone(), m.value))
        .collect();
    assert_eq!(got.len(), e.readings.len(), "readings: {got:?}");
    for ((gm, gv), (em, ev)) in got.iter().zip(&e.readings) {
        assert_eq!(gm, em);
        assert!(
            (gv - ev).abs() <= 1e-12 * ev.abs().max(1.0),
            "{em}: got {gv}, expected {ev}"
        );
    }
    let (at, source) = match e.device_time {
        Some(t) => (t.parse().unwrap(), TimeSource::Device),
        None => (now(), TimeSource::Gateway),
    };
    assert_eq!((d.at, d.time_source), (at, source));
    assert_eq!(d.time_fallback, e.fallback);
    let unavailable: Vec<_> = d
        .unavailable
        .iter()
        .map(|u| (u.metric.clone(), u.reason))
        .collect();
    assert_eq!(unavailable, e.unavailable);
    assert_eq!(d.flags, e.flags.iter().copied().collect::<StatusFlags>());
    let extras: Vec<_> = d.extras.iter().map(|x| (x.key, x.value.clone())).collect();
    assert_eq!(extras, e.extras);
}

fn check_err(ch: Characteristic, input: &[u8], reason: DecodeReason) {
    assert_eq!(
        decode(ch, input, now()),
        Err(DecodeError {
            characteristic: ch,
            reason
        })
    );
}

fn contact(s: &'static str) -> (&'static str, ExtraValue) {
    ("sensor_contact", ExtraValue::Text(s))
}

// ---------------------------------------------------------------- 0x2A37 HRS

#[test]
fn hrm_movisens_vector() {
    // Published by movisens/SmartGattLib (src/test/java/HeartRateMeasurementTest.java):
    // "16485401EC02" → HR 72, sensor worn, RR 0.33203125 s and 0.73046875 s.
    check(
        Characteristic::HeartRateMeasurement,
        &[
            0x16, // flags: u8 rate, contact supported+detected, RR present
            0x48, // heart rate 72
            0x54, 0x01, // RR 0x0154 = 340/1024 s = 332.03125 ms
            0xEC, 0x02, // RR 0x02EC = 748/1024 s = 730.46875 ms
        ],
        &Expect {
            readings: vec![
                (Metric::HeartRate, 72.0),
                (Metric::RrInterval, 332.031_25),
                (Metric::RrInterval, 730.468_75),
            ],
            fallback: Some(TimeFallback::Absent),
            extras: vec![contact("detected")],
            ..Expect::default()
        },
    );
}

#[test]
fn hrm_opentracks_vectors() {
    // Published by OpenTracksApp/OpenTracks (BluetoothConnectionManagerHeartRateTest):
    // {0x02, 0x3C} → 60; {0x01, 0x01, 0x01} → 257.
    check(
        Characteristic::HeartRateMeasurement,
        &[
            0x02, // flags: u8 rate; "detected" bit without "supported" bit → not supported
            0x3C, // 60
        ],
        &Expect {
            readings: vec![(Metric::HeartRate, 60.0)],
            fallback: Some(TimeFallback::Absent),
            extras: vec![contact("not_supported")],
            ..Expect::default()
        },
    );
    check(
        Characteristic::HeartRateMeasurement,
        &[
            0x01, // flags: u16 rate
            0x01, 0x01, // 0x0101 = 257
        ],
        &Expect {
            readings: vec![(Metric::HeartRate, 257.0)],
            fallback: Some(TimeFallback::Absent),
            extras: vec![contact("not_supported")],
            ..Expect::default()
        },
    );
}

#[test]
fn hrm_contact_lost_energy_and_rr() {
    check(
        Characteristic::HeartRateMeasurement,
        &[
            0x1D, // flags: u16 rate, contact supported not detected, energy, RR
            0xB4, 0x00, // heart rate 180
            0x10, 0x27, // energy expended 10000 kJ
            0x00, 0x04, // RR 1024/1024 s = 1000 ms
            0x00, 0x02, // RR 512/1024 s = 500 ms
            0x01, 0x00, // RR 1/1024 s = 0.9765625 ms
        ],
        &Expect {
            readings: vec![
                (Metric::HeartRate, 180.0),
                (Metric::EnergyExpended, 10_000.0),
                (Metric::RrInterval, 1000.0),
                (Metric::RrInterval, 500.0),
                (Metric::RrInterval, 0.976_562_5),
            ],
            fallback: Some(TimeFallback::Absent),
            flags: vec![StatusFlag::SensorContactLost],
            extras: vec![contact("not_detected")],
            ..Expect::default()
        },
    );
}

#[test]
fn hrm_bad_payloads() {
    let ch = Characteristic::HeartRateMeasurement;
    check_err(ch, &[], DecodeReason::Empty);
    // flags: u16 rate, but only one rate byte follows
    check_err(
        ch,
        &[0x01, 0x48],
        DecodeReason::Truncated {
            field: "heart rate (16-bit)",
            start: 1,
            end: 3,
            len: 2,
        },
    );
    // flags: energy expended announced, missing
    check_err(
        ch,
        &[0x08, 0x48],
        DecodeReason::Truncated {
            field: "energy expended",
            start: 2,
            end: 4,
            len: 2,
        },
    );
    // flags: RR announced, none present
    check_err(
        ch,
        &[0x10, 0x48],
        DecodeReason::Truncated {
            field: "RR-interval",
            start: 2,
            end: 4,
            len: 2,
        },
    );
    // flags: RR announced, 3 bytes remain
    check_err(
        ch,
        &[0x10, 0x48, 0x00, 0x04, 0x00],
        DecodeReason::OddRrBytes(3),
    );
}

// ---------------------------------------------------------------- 0x2A35 BLS

#[test]
fn bpm_mmhg_all_fields() {
    check(
        Characteristic::BloodPressureMeasurement,
        &[
            0x1E, // flags: mmHg, time stamp, pulse rate, user id, status
            0x79, 0x00, // systolic SFLOAT 121
            0x51, 0x00, // diastolic 81
            0x6A, 0x00, // MAP 106
            0xEA, 0x07, 11, 27, 9, 30, 15, // 2026-11-27 09:30:15
            0x48, 0x00, // pulse 72
            0x03, // user 3
            0x26, 0x00, // status: bit1 cuff loose, bit2 irregular, bit5 improper position
        ],
        &Expect {
            readings: vec![
                (Metric::BpSystolic, 121.0),
                (Metric::BpDiastolic, 81.0),
                (Metric::BpMean, 106.0),
                (Metric::PulseRate, 72.0),
            ],
            device_time: Some("2026-11-27T09:30:15Z"),
            flags: vec![
                StatusFlag::CuffTooLoose,
                StatusFlag::IrregularPulse,
                StatusFlag::ImproperPosition,
            ],
            extras: vec![("user_id", ExtraValue::Int(3))],
            ..Expect::default()
        },
    );
}

#[test]
fn bpm_kpa_converts_and_flags_pulse_range() {
    check(
        Characteristic::BloodPressureMeasurement,
        &[
            0x15, // flags: kPa, pulse rate, status
            0x00, 0xF1, // systolic: exponent -1, mantissa 0x100 = 256 → 25.6 kPa
            0xA0, 0xF0, // diastolic: exponent -1, mantissa 0x0A0 = 160 → 16.0 kPa
            0xFF, 0x07, // MAP NaN
            0x2C, 0x01, // pulse 300
            0x09, 0x00, // status: bit0 body movement, bits3-4 = 01 pulse above range
        ],
        &Expect {
            readings: vec![
                (Metric::BpSystolic, 25.6 * 7.500_62),  // 192.015872
                (Metric::BpDiastolic, 16.0 * 7.500_62), // 120.00992
                (Metric::PulseRate, 300.0),
            ],
            fallback: Some(TimeFallback::Absent),
            unavailable: vec![(Metric::BpMean, Unavailability::NaN)],
            flags: vec![StatusFlag::BodyMovement, StatusFlag::PulseRateAboveRange],
            ..Expect::default()
        },
    );
}

#[test]
fn bpm_unset_time_unknown_user_and_pulse_below_range() {
    check(
        Characteristic::BloodPressureMeasurement,
        &[
            0x1A, // flags: mmHg, time stamp, user id, status
            0x78, 0x00, // systolic 120
            0x50, 0x00, // diastolic 80
            0x5D, 0x00, // MAP 93
            0x00, 0x00, 0, 0, 0, 0, 0,    // time stamp unset (year 0)
            0xFF, // user id 0xFF = unknown user
            0x10, 0x00, // status bits3-4 = 10: pulse below range
        ],
        &Expect {
            readings: vec![
                (Metric::BpSystolic, 120.0),
                (Metric::BpDiastolic, 80.0),
                (Metric::BpMean, 93.0),
            ],
            fallback: Some(TimeFallback::Unset),
            flags: vec![StatusFlag::PulseRateBelowRange],
            extras: vec![("user_id", ExtraValue::Text("unknown"))],
            ..Expect::default()
        },
    );
}

#[test]
fn bpm_bad_payloads() {
    let ch = Characteristic::BloodPressureMeasurement;
    // only systolic and diastolic
    check_err(
        ch,
        &[0x00, 0x78, 0x00, 0x50, 0x00],
        DecodeReason::Truncated {
            field: "mean arterial pressure",
            start: 5,
            end: 7,
            len: 5,
        },
    );
    // flags: time stamp announced, 3 of 7 bytes present
    check_err(
        ch,
        &[0x02, 0x78, 0x00, 0x50, 0x00, 0x5D, 0x00, 0xEA, 0x07, 11],
        DecodeReason::Truncated {
            field: "time stamp",
            start: 7,
            end: 14,
            len: 10,
        },
    );
    // status bits3-4 = 11: reserved
    check_err(
        ch,
        &[0x10, 0x78, 0x00, 0x50, 0x00, 0x5D, 0x00, 0x18, 0x00],
        DecodeReason::Reserved {
            field: "pulse rate range detection",
            value: 3,
        },
    );
}

#[test]
fn bpm_implausible_time_falls_back() {
    check(
        Characteristic::BloodPressureMeasurement,
        &[
            0x02, // flags: mmHg, time stamp
            0x78, 0x00, // 120
            0x50, 0x00, // 80
            0x5D, 0x00, // 93
            0xEA, 0x07, 2, 30, 8, 0, 0, // 2026-02-30: not a date
        ],
        &Expect {
            readings: vec![
                (Metric::BpSystolic, 120.0),
                (Metric::BpDiastolic, 80.0),
                (Metric::BpMean, 93.0),
            ],
            fallback: Some(TimeFallback::Implausible),
            ..Expect::default()
        },
    );
    check(
        Characteristic::BloodPressureMeasurement,
        &[
            0x02, 0x78, 0x00, 0x50, 0x00, 0x5D, 0x00, //
            0xEA, 0x07, 11, 28, 10, 0, 1, // 2026-11-28 10:00:01: 24 h + 1 s ahead of now
        ],
        &Expect {
            readings: vec![
                (Metric::BpSystolic, 120.0),
                (Metric::BpDiastolic, 80.0),
                (Metric::BpMean, 93.0),
            ],
            fallback: Some(TimeFallback::Implausible),
            ..Expect::default()
        },
    );
}

// ---------------------------------------------------------------- 0x2A36 BLS

#[test]
fn intermediate_cuff_pressure_kpa() {
    check(
        Characteristic::IntermediateCuffPressure,
        &[
            0x01, // flags: kPa
            0x0C, 0xF0, // cuff pressure: exponent -1, mantissa 12 → 1.2 kPa
            0xFF, 0x07, // unused diastolic (NaN)
            0xFF, 0x07, // unused MAP (NaN)
        ],
        &Expect {
            readings: vec![(em::cuff_pressure(), 1.2 * 7.500_62)],
            fallback: Some(TimeFallback::Absent),
            ..Expect::default()
        },
    );
}

// ---------------------------------------------------------------- 0x2A1C HTS

#[test]
fn temperature_celsius_with_time_and_type() {
    check(
        Characteristic::TemperatureMeasurement,
        &[
            0x06, // flags: °C, time stamp, type
            0x6D, 0x01, 0x00, 0xFF, // FLOAT exponent -1, mantissa 365 → 36.5
            0xEA, 0x07, 11, 27, 8, 0, 0,    // 2026-11-27 08:00:00
            0x02, // type 2: body (general)
        ],
        &Expect {
            readings: vec![(Metric::BodyTemp, 36.5)],
            device_time: Some("2026-11-27T08:00:00Z"),
            extras: vec![("temperature_type", ExtraValue::Text("body"))],
            ..Expect::default()
        },
    );
}

#[test]
fn temperature_fahrenheit_converts() {
    check(
        Characteristic::TemperatureMeasurement,
        &[
            0x01, // flags: °F
            0xDA, 0x03, 0x00, 0xFF, // exponent -1, mantissa 986 → 98.6 °F
        ],
        &Expect {
            readings: vec![(Metric::BodyTemp, 37.0)], // (98.6 − 32) × 5/9
            fallback: Some(TimeFallback::Absent),
            ..Expect::default()
        },
    );
}

#[test]
fn temperature_special_and_reserved() {
    check(
        Characteristic::TemperatureMeasurement,
        &[0x00, 0xFE, 0xFF, 0x7F, 0x00], // flags °C; FLOAT 0x007FFFFE = +INF
        &Expect {
            fallback: Some(TimeFallback::Absent),
            unavailable: vec![(Metric::BodyTemp, Unavailability::PositiveInfinity)],
            ..Expect::default()
        },
    );
    check_err(
        Characteristic::TemperatureMeasurement,
        &[0x04, 0x6D, 0x01, 0x00, 0xFF, 0x0A], // type 10: reserved
        DecodeReason::Reserved {
            field: "temperature type",
            value: 10,
        },
    );
    check_err(
        Characteristic::TemperatureMeasurement,
        &[0x00, 0x6D, 0x01, 0x00],
        DecodeReason::Truncated {
            field: "temperature measurement value",
            start: 1,
            end: 5,
            len: 4,
        },
    );
}

// ---------------------------------------------------------------- 0x2A18 GLS

#[test]
fn glucose_kg_per_l_with_offset_and_status() {
    check(
        Characteristic::GlucoseMeasurement,
        &[
            0x0B, // flags: time offset, concentration+type/location, kg/L, status
            0x2A, 0x00, // sequence number 42
            0xEA, 0x07, 11, 27, 7, 0, 0, // base time 2026-11-27 07:00:00
            0x1E, 0x00, // time offset +30 min
            0x5A, 0xB0, // SFLOAT exponent -5, mantissa 90 → 0.00090 kg/L = 90 mg/dL
            0x11, // type 1 capillary whole blood, location 1 finger
            0x01, 0x08, // status: bit0 battery low, bit11 time fault
        ],
        &Expect {
            readings: vec![(Metric::Glucose, 90.0)],
            // time fault: the meter distrusts its own clock
            fallback: Some(TimeFallback::Implausible),
            flags: vec![StatusFlag::BatteryLow, StatusFlag::TimeFault],
            extras: vec![
                ("sequence_number", ExtraValue::Int(42)),
                ("glucose_type", ExtraValue::Text("capillary_whole_blood")),
                ("sample_location", ExtraValue::Text("finger")),
            ],
            ..Expect::default()
        },
    );
}

#[test]
fn glucose_mol_per_l_device_time() {
    check(
        Characteristic::GlucoseMeasurement,
        &[
            0x17, // flags: time offset, concentration, mol/L, context follows
            0x07, 0x01, // sequence number 263
            0xEA, 0x07, 11, 27, 7, 0, 0, // base time 2026-11-27 07:00:00
            0xF6, 0xFF, // time offset −10 min
            0x20, 0xC0, // SFLOAT exponent -4, mantissa 32 → 0.0032 mol/L = 3.2 mmol/L
            0xF2, // type 2 capillary plasma, location 15 not available
        ],
        &Expect {
            readings: vec![(Metric::Glucose, 0.0032 * 18_016.0)], // 57.6512 mg/dL
            device_time: Some("2026-11-27T06:50:00Z"),
            extras: vec![
                ("sequence_number", ExtraValue::Int(263)),
                ("glucose_type", ExtraValue::Text("capillary_plasma")),
                ("sample_location", ExtraValue::Text("not_available")),
                ("context_follows", ExtraValue::Int(1)),
            ],
            ..Expect::default()
        },
    );
}

#[test]
fn glucose_control_solution_is_not_a_patient_reading() {
    check(
        Characteristic::GlucoseMeasurement,
        &[
            0x02, // flags: concentration, kg/L
            0x01, 0x00, // sequence 1
            0xEA, 0x07, 11, 27, 7, 0, 0, // base time
            0x64, 0xB0, // 100 × 10^-5 kg/L
            0x4A, // type 10 control solution, location 4 control solution
        ],
        &Expect {
            device_time: Some("2026-11-27T07:00:00Z"),
            unavailable: vec![(Metric::Glucose, Unavailability::ControlSolution)],
            extras: vec![
                ("sequence_number", ExtraValue::Int(1)),
                ("glucose_type", ExtraValue::Text("control_solution")),
                ("sample_location", ExtraValue::Text("control_solution")),
            ],
            ..Expect::default()
        },
    );
}

#[test]
fn glucose_bad_payloads() {
    let ch = Characteristic::GlucoseMeasurement;
    // base time missing
    check_err(
        ch,
        &[0x00, 0x01, 0x00, 0xEA, 0x07],
        DecodeReason::Truncated {
            field: "base time",
            start: 3,
            end: 10,
            len: 5,
        },
    );
    // type nibble 0: reserved
    check_err(
        ch,
        &[
            0x02, 0x01, 0x00, 0xEA, 0x07, 11, 27, 7, 0, 0, 0x5A, 0xB0, 0x10,
        ],
        DecodeReason::Reserved {
            field: "glucose type",
            value: 0,
        },
    );
    // location nibble 5: reserved
    check_err(
        ch,
        &[
            0x02, 0x01, 0x00, 0xEA, 0x07, 11, 27, 7, 0, 0, 0x5A, 0xB0, 0x51,
        ],
        DecodeReason::Reserved {
            field: "sample location",
            value: 5,
        },
    );
}

// ---------------------------------------------------------------- 0x2A5E PLXS

#[test]
fn plx_spot_check_all_fields() {
    check(
        Characteristic::PlxSpotCheck,
        &[
            0x0F, // flags: timestamp, measurement status, device status, PAI
            0x61, 0x00, // SpO2 97
            0x3C, 0x00, // PR 60
            0xEA, 0x07, 11, 27, 9, 59, 59, // 2026-11-27 09:59:59
            0x80, 0x00, // measurement status bit7: validated data
            0x20, 0x08, 0x00, // device status bit5 low perfusion, bit11 sensor unconnected
            0x2D, 0xF0, // PAI exponent -1, mantissa 45 → 4.5 %
        ],
        &Expect {
            readings: vec![
                (Metric::Spo2, 97.0),
                (Metric::PulseRate, 60.0),
                (Metric::PulseAmplitudeIndex, 4.5),
            ],
            device_time: Some("2026-11-27T09:59:59Z"),
            flags: vec![
                StatusFlag::ValidatedData,
                StatusFlag::LowPerfusion,
                StatusFlag::SensorUnconnected,
            ],
            ..Expect::default()
        },
    );
}

#[test]
fn plx_spot_check_clock_not_set_and_invalid() {
    check(
        Characteristic::PlxSpotCheck,
        &[
            0x13, // flags: timestamp, measurement status, device clock not set
            0x5A, 0x00, // SpO2 90
            0xFF, 0x07, // PR NaN
            0xEA, 0x07, 11, 27, 9, 0, 0, // a timestamp, ignored: clock not set
            0x00, 0x80, // measurement status bit15: invalid measurement
        ],
        &Expect {
            fallback: Some(TimeFallback::ClockNotSet),
            unavailable: vec![
                (Metric::Spo2, Unavailability::FlaggedByDevice),
                (Metric::PulseRate, Unavailability::NaN),
            ],
            flags: vec![
                StatusFlag::InvalidMeasurement,
                StatusFlag::DeviceClockNotSet,
            ],
            ..Expect::default()
        },
    );
}

#[test]
fn plx_spot_check_truncated_device_status() {
    check_err(
        Characteristic::PlxSpotCheck,
        &[0x04, 0x61, 0x00, 0x3C, 0x00, 0x20, 0x08],
        DecodeReason::Truncated {
            field: "device and sensor status",
            start: 5,
            end: 8,
            len: 7,
        },
    );
}

// ---------------------------------------------------------------- 0x2A5F PLXS

#[test]
fn plx_continuous_all_fields() {
    check(
        Characteristic::PlxContinuous,
        &[
            0x1F, // flags: fast, slow, measurement status, device status, PAI
            0x5F, 0x00, // normal SpO2 95
            0x48, 0x00, // normal PR 72
            0x5E, 0x00, // fast SpO2 94
            0x4A, 0x00, // fast PR 74
            0x60, 0x00, // slow SpO2 96
            0xFE, 0x07, // slow PR +INF
            0x20, 0x00, // measurement status bit5: measurement ongoing
            0x00, 0x80, 0x00, // device status bit15: sensor disconnected
            0x10, 0xF0, // PAI 1.6 %
        ],
        &Expect {
            readings: vec![
                (Metric::Spo2, 95.0),
                (Metric::PulseRate, 72.0),
                (Metric::PulseAmplitudeIndex, 1.6),
            ],
            fallback: Some(TimeFallback::Absent),
            flags: vec![
                StatusFlag::MeasurementOngoing,
                StatusFlag::SensorDisconnected,
            ],
            extras: vec![
                ("spo2_fast", ExtraValue::Number(94.0)),
                ("pulse_rate_fast", ExtraValue::Number(74.0)),
                ("spo2_slow", ExtraValue::Number(96.0)),
                (
                    "pulse_rate_slow",
                    ExtraValue::Unavailable(Unavailability::PositiveInfinity),
                ),
            ],
            ..Expect::default()
        },
    );
}

#[test]
fn plx_continuous_minimal_and_nres() {
    check(
        Characteristic::PlxContinuous,
        &[
            0x00, // flags: none
            0x00, 0x08, // SpO2 NRes
            0x02, 0x08, // PR −INF
        ],
        &Expect {
            fallback: Some(TimeFallback::Absent),
            unavailable: vec![
                (Metric::Spo2, Unavailability::NRes),
                (Metric::PulseRate, Unavailability::NegativeInfinity),
            ],
            ..Expect::default()
        },
    );
}

// ---------------------------------------------------------------- 0x2A9D WSS

#[test]
fn weight_si_all_fields() {
    check(
        Characteristic::WeightMeasurement,
        &[
            0x0E, // flags: SI, time stamp, user id, BMI+height
            0x60, 0x36, // 0x3660 = 13920 × 0.005 kg = 69.6 kg
            0xEA, 0x07, 11, 27, 6, 45, 0,    // 2026-11-27 06:45:00
            0x01, // user 1
            0xE3, 0x00, // BMI 227 × 0.1 = 22.7
            0xF0, 0x06, // height 1776 × 0.001 m = 1.776 m
        ],
        &Expect {
            readings: vec![
                (Metric::BodyWeight, 69.6),
                (em::bmi(), 22.7),
                (em::body_height(), 1.776),
            ],
            device_time: Some("2026-11-27T06:45:00Z"),
            extras: vec![("user_id", ExtraValue::Int(1))],
            ..Expect::default()
        },
    );
}

#[test]
fn weight_imperial_converts_and_unsuccessful() {
    check(
        Characteristic::WeightMeasurement,
        &[
            0x09, // flags: imperial, BMI+height
            0x98, 0x3A, // 0x3A98 = 15000 × 0.01 lb = 150 lb = 68.0388555 kg
            0xE3, 0x00, // BMI 22.7
            0xBC, 0x02, // height 700 × 0.1 in = 70 in = 1.778 m
        ],
        &Expect {
            readings: vec![
                (Metric::BodyWeight, 150.0 * 0.453_592_37),
                (em::bmi(), 22.7),
                (em::body_height(), 1.778),
            ],
            fallback: Some(TimeFallback::Absent),
            ..Expect::default()
        },
    );
    check(
        Characteristic::WeightMeasurement,
        &[0x00, 0xFF, 0xFF], // flags SI; weight 0xFFFF = measurement unsuccessful
        &Expect {
            fallback: Some(TimeFallback::Absent),
            unavailable: vec![(Metric::BodyWeight, Unavailability::Unsuccessful)],
            ..Expect::default()
        },
    );
}

// ---------------------------------------------------------------- 0x2A9C BCS

#[test]
fn body_composition_all_fields_si() {
    check(
        Characteristic::BodyComposition,
        &[
            0xFE, 0x1F, // flags: SI, every optional field, multiple packet
            0xDC, 0x00, // body fat 220 × 0.1 = 22.0 %
            0xEA, 0x07, 11, 27, 6, 45, 0,    // 2026-11-27 06:45:00
            0x02, // user 2
            0x40, 0x1F, // basal metabolism 8000 kJ
            0x90, 0x01, // muscle 400 × 0.1 = 40.0 %
            0x70, 0x17, // muscle mass 6000 × 0.005 = 30 kg
            0xA0, 0x28, // fat free mass 10400 × 0.005 = 52 kg
            0x60, 0x22, // soft lean mass 8800 × 0.005 = 44 kg
            0x20, 0x1C, // body water mass 7200 × 0.005 = 36 kg
            0x88, 0x13, // impedance 5000 × 0.1 = 500 Ω
            0x60, 0x36, // weight 13920 × 0.005 = 69.6 kg
            0xF0, 0x06, // height 1.776 m
        ],
        &Expect {
            readings: vec![
                (em::body_fat_percentage(), 22.0),
                (em::basal_metabolism(), 8000.0),
                (em::muscle_percentage(), 40.0),
                (em::muscle_mass(), 30.0),
                (em::fat_free_mass(), 52.0),
                (em::soft_lean_mass(), 44.0),
                (em::body_water_mass(), 36.0),
                (em::impedance(), 500.0),
                (Metric::BodyWeight, 69.6),
                (em::body_height(), 1.776),
            ],
            device_time: Some("2026-11-27T06:45:00Z"),
            extras: vec![
                ("user_id", ExtraValue::Int(2)),
                ("multiple_packet_measurement", ExtraValue::Int(1)),
            ],
            ..Expect::default()
        },
    );
}

#[test]
fn body_composition_imperial_and_truncated() {
    check(
        Characteristic::BodyComposition,
        &[
            0x01, 0x04, // flags: imperial, weight
            0xFF, 0xFF, // body fat: unsuccessful
            0x98, 0x3A, // weight 150 lb
        ],
        &Expect {
            readings: vec![(Metric::BodyWeight, 150.0 * 0.453_592_37)],
            fallback: Some(TimeFallback::Absent),
            unavailable: vec![(em::body_fat_percentage(), Unavailability::Unsuccessful)],
            ..Expect::default()
        },
    );
    check_err(
        Characteristic::BodyComposition,
        &[0x00, 0x08, 0xDC, 0x00, 0x70], // flags: height announced; 1 byte left
        DecodeReason::Truncated {
            field: "height",
            start: 4,
            end: 6,
            len: 5,
        },
    );
    check_err(
        Characteristic::BodyComposition,
        &[0x00],
        DecodeReason::Truncated {
            field: "flags",
            start: 0,
            end: 2,
            len: 1,
        },
    );
}

// ---------------------------------------------------------------- 0x2A19 BAS

#[test]
fn battery_level() {
    check(
        Characteristic::BatteryLevel,
        &[0x55], // 85 %
        &Expect {
            readings: vec![(Metric::BatteryLevel, 85.0)],
            fallback: Some(TimeFallback::Absent),
            ..Expect::default()
        },
    );
    check_err(
        Characteristic::BatteryLevel,
        &[0x65], // 101 %
        DecodeReason::OutOfRange {
            field: "battery level",
            value: 101,
            min: 0,
            max: 100,
        },
    );
    check_err(Characteristic::BatteryLevel, &[], DecodeReason::Empty);
}

#[test]
fn racp_is_not_a_measurement() {
    check_err(
        Characteristic::RecordAccessControlPoint,
        &[0x06, 0x00, 0x01, 0x01],
        DecodeReason::NotAMeasurement("Record Access Control Point"),
    );
}

#[test]
fn error_message_names_characteristic_and_reason() {
    let err = decode(Characteristic::BatteryLevel, &[200], now()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "2a19 Battery Level: battery level is 200, allowed 0..=100"
    );
}

/// Any bytes: a value or a typed error naming this characteristic, never a
/// panic; every reading finite and in a known unit.
fn never_panics(
    ch: Characteristic,
    bytes: &[u8],
) -> Result<(), proptest::test_runner::TestCaseError> {
    match decode(ch, bytes, now()) {
        Ok(d) => {
            for m in &d.measurements {
                proptest::prop_assert!(m.value.is_finite());
                proptest::prop_assert!(!m.metric.unit().is_empty());
            }
        }
        Err(e) => proptest::prop_assert_eq!(e.characteristic, ch),
    }
    Ok(())
}

macro_rules! arbitrary_bytes {
    ($($name:ident => $ch:ident,)*) => {
        proptest::proptest! {
            #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
            $(
                #[test]
                fn $name(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
                    never_panics(Characteristic::$ch, &bytes)?;
                }
            )*
        }
    };
}

arbitrary_bytes! {
    arbitrary_heart_rate => HeartRateMeasurement,
    arbitrary_blood_pressure => BloodPressureMeasurement,
    arbitrary_cuff_pressure => IntermediateCuffPressure,
    arbitrary_temperature => TemperatureMeasurement,
    arbitrary_glucose => GlucoseMeasurement,
    arbitrary_plx_spot_check => PlxSpotCheck,
    arbitrary_plx_continuous => PlxContinuous,
    arbitrary_weight => WeightMeasurement,
    arbitrary_body_composition => BodyComposition,
    arbitrary_battery => BatteryLevel,
    arbitrary_racp => RecordAccessControlPoint,
}
