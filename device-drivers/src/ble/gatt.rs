//! The decoders: one pure function per characteristic, `(&[u8], now) ->
//! Result<Decoded, DecodeError>`. They read every optional field the flags
//! announce, reject payloads shorter than the flags promise and reserved
//! enumeration values, and convert to the canonical units of DESIGN.md.
//!
//! `now` is the gateway's reception time, used when the device sends no
//! timestamp or an unusable one; decoders never read the clock. Bytes after
//! the last announced field are ignored (later spec versions append fields
//! behind new flag bits), except in Heart Rate Measurement where they are RR
//! intervals.

use std::sync::LazyLock;

use wardgate_model::{Metric, TimeSource, Timestamp};

use super::Characteristic;
use super::decoded::{DecodeError, DecodeReason, Decoded, ExtraValue, StatusFlag, TimeFallback};
use super::fields::{
    Out, Reader, Resolution, per, resolve_time, unsigned_or_unsuccessful, user_id,
};
use super::ieee11073::{Decimal, Unavailability};

/// mmHg per kPa (DESIGN.md).
pub const MMHG_PER_KPA: f64 = 7.500_62;
/// kg per lb (exact, by definition).
pub const KG_PER_LB: f64 = 0.453_592_37;
/// m per inch (exact, by definition).
pub const M_PER_INCH: f64 = 0.0254;
/// mg/dL per kg/L.
pub const MGDL_PER_KGL: f64 = 100_000.0;
/// mg/dL per mol/L (glucose molar mass 180.16 g/mol).
pub const MGDL_PER_MOLL: f64 = 18_016.0;

/// Metrics the health profiles carry that are not in the built-in table.
pub mod extra_metrics {
    use super::{LazyLock, Metric};

    macro_rules! custom_metrics {
        ($($(#[$doc:meta])* $fn_name:ident => $name:literal, $unit:literal, $display:literal;)*) => {
            $(
                $(#[$doc])*
                pub fn $fn_name() -> Metric {
                    static M: LazyLock<Metric> =
                        LazyLock::new(|| Metric::custom($name, $unit, Some($display)));
                    M.clone()
                }
            )*
            /// Every custom metric this module can produce.
            pub fn all() -> Vec<Metric> {
                vec![$($fn_name()),*]
            }
        };
    }

    custom_metrics! {
        /// Intermediate Cuff Pressure (0x2A36) while the cuff inflates/deflates.
        cuff_pressure => "cuff_pressure", "mm[Hg]", "Cuff pressure";
        bmi => "bmi", "kg/m2", "Body mass index";
        body_height => "body_height", "m", "Height";
        body_fat_percentage => "body_fat_percentage", "%", "Body fat";
        basal_metabolism => "basal_metabolism", "kJ", "Basal metabolism";
        muscle_percentage => "muscle_percentage", "%", "Muscle percentage";
        muscle_mass => "muscle_mass", "kg", "Muscle mass";
        fat_free_mass => "fat_free_mass", "kg", "Fat-free mass";
        soft_lean_mass => "soft_lean_mass", "kg", "Soft lean mass";
        body_water_mass => "body_water_mass", "kg", "Body water mass";
        impedance => "impedance", "Ohm", "Body impedance";
    }
}

/// Decodes `payload` as `characteristic`.
pub fn decode(
    characteristic: Characteristic,
    payload: &[u8],
    now: Timestamp,
) -> Result<Decoded, DecodeError> {
    match characteristic {
        Characteristic::HeartRateMeasurement => heart_rate_measurement(payload, now),
        Characteristic::BloodPressureMeasurement => blood_pressure_measurement(payload, now),
        Characteristic::IntermediateCuffPressure => intermediate_cuff_pressure(payload, now),
        Characteristic::TemperatureMeasurement => temperature_measurement(payload, now),
        Characteristic::GlucoseMeasurement => glucose_measurement(payload, now),
        Characteristic::PlxSpotCheck => plx_spot_check(payload, now),
        Characteristic::PlxContinuous => plx_continuous(payload, now),
        Characteristic::WeightMeasurement => weight_measurement(payload, now),
        Characteristic::BodyComposition => body_composition(payload, now),
        Characteristic::BatteryLevel => battery_level(payload, now),
        Characteristic::RecordAccessControlPoint => Err(DecodeError {
            characteristic,
            reason: DecodeReason::NotAMeasurement(characteristic.name()),
        }),
    }
}

/// Heart Rate Measurement (HRS 1.0, 0x2A37).
pub fn heart_rate_measurement(payload: &[u8], now: Timestamp) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(Characteristic::HeartRateMeasurement, payload)?;
    let flags = r.u8("flags")?;
    let rate = if flags & 0x01 != 0 {
        r.u16("heart rate (16-bit)")?
    } else {
        u16::from(r.u8("heart rate (8-bit)")?)
    };
    let mut out = Out::new(r.ch, resolve_time(None, 0, now));
    out.push(Metric::HeartRate, f64::from(rate));
    // Bit 2: contact detection supported; bit 1: contact detected.
    let contact = match flags & 0x06 {
        0x06 => "detected",
        0x04 => {
            out.d.flags.insert(StatusFlag::SensorContactLost);
            "not_detected"
        }
        _ => "not_supported",
    };
    out.extra("sensor_contact", ExtraValue::Text(contact));
    if flags & 0x08 != 0 {
        let kj = r.u16("energy expended")?;
        out.push(Metric::EnergyExpended, f64::from(kj));
    }
    if flags & 0x10 != 0 {
        let rest = r.rest();
        if rest.is_empty() {
            return Err(r.err(DecodeReason::Truncated {
                field: "RR-interval",
                start: r.pos,
                end: r.pos + 2,
                len: payload.len(),
            }));
        }
        if rest.len() % 2 != 0 {
            return Err(r.err(DecodeReason::OddRrBytes(rest.len())));
        }
        for pair in rest.chunks_exact(2) {
            let ticks = u16::from_le_bytes([pair[0], pair[1]]);
            // Resolution 1/1024 s.
            out.push(Metric::RrInterval, f64::from(ticks) * 1000.0 / 1024.0);
        }
    }
    Ok(out.d)
}

/// Blood Pressure Measurement (BLS 1.0, 0x2A35).
pub fn blood_pressure_measurement(payload: &[u8], now: Timestamp) -> Result<Decoded, DecodeError> {
    blood_pressure(Characteristic::BloodPressureMeasurement, payload, now)
}

/// Intermediate Cuff Pressure (BLS 1.0, 0x2A36): the systolic field carries
/// the current cuff pressure; diastolic and mean are unused.
pub fn intermediate_cuff_pressure(payload: &[u8], now: Timestamp) -> Result<Decoded, DecodeError> {
    blood_pressure(Characteristic::IntermediateCuffPressure, payload, now)
}

fn blood_pressure(
    ch: Characteristic,
    payload: &[u8],
    now: Timestamp,
) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(ch, payload)?;
    let flags = r.u8("flags")?;
    let (first, second, third) = if ch == Characteristic::IntermediateCuffPressure {
        (
            "current cuff pressure",
            "unused diastolic",
            "unused mean arterial pressure",
        )
    } else {
        ("systolic", "diastolic", "mean arterial pressure")
    };
    let sys = r.sfloat(first)?;
    let dia = r.sfloat(second)?;
    let map = r.sfloat(third)?;
    let stamp = if flags & 0x02 != 0 {
        Some(r.date_time("time stamp")?)
    } else {
        None
    };
    let pulse = if flags & 0x04 != 0 {
        Some(r.sfloat("pulse rate")?)
    } else {
        None
    };
    let user = if flags & 0x08 != 0 {
        Some(r.u8("user id")?)
    } else {
        None
    };
    let status = if flags & 0x10 != 0 {
        Some(r.u16("measurement status")?)
    } else {
        None
    };

    let mut out = Out::new(ch, resolve_time(stamp, 0, now));
    let kpa = flags & 0x01 != 0;
    let to_mmhg = |v: Decimal| {
        if kpa {
            v.times(MMHG_PER_KPA)
        } else {
            v.to_f64()
        }
    };
    if ch == Characteristic::IntermediateCuffPressure {
        out.decimal(extra_metrics::cuff_pressure(), sys, to_mmhg);
    } else {
        out.decimal(Metric::BpSystolic, sys, to_mmhg);
        out.decimal(Metric::BpDiastolic, dia, to_mmhg);
        out.decimal(Metric::BpMean, map, to_mmhg);
    }
    if let Some(pulse) = pulse {
        out.decimal(Metric::PulseRate, pulse, Decimal::to_f64);
    }
    if let Some(id) = user {
        user_id(&mut out, id);
    }
    if let Some(bits) = status {
        let bits = u32::from(bits);
        out.flags(
            bits,
            &[
                (0, StatusFlag::BodyMovement),
                (1, StatusFlag::CuffTooLoose),
                (2, StatusFlag::IrregularPulse),
                (5, StatusFlag::ImproperPosition),
            ],
        );
        match (bits >> 3) & 0b11 {
            0 => {}
            1 => out.d.flags.insert(StatusFlag::PulseRateAboveRange),
            2 => out.d.flags.insert(StatusFlag::PulseRateBelowRange),
            v => {
                return Err(r.err(DecodeReason::Reserved {
                    field: "pulse rate range detection",
                    value: v,
                }));
            }
        }
    }
    Ok(out.d)
}

/// Temperature Measurement (HTS 1.0, 0x2A1C).
pub fn temperature_measurement(payload: &[u8], now: Timestamp) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(Characteristic::TemperatureMeasurement, payload)?;
    let flags = r.u8("flags")?;
    let value = r.float("temperature measurement value")?;
    let stamp = if flags & 0x02 != 0 {
        Some(r.date_time("time stamp")?)
    } else {
        None
    };
    let kind = if flags & 0x04 != 0 {
        let code = r.u8("temperature type")?;
        Some(match code {
            1 => "armpit",
            2 => "body",
            3 => "ear",
            4 => "finger",
            5 => "gastro_intestinal_tract",
            6 => "mouth",
            7 => "rectum",
            8 => "toe",
            9 => "tympanum",
            v => {
                return Err(r.err(DecodeReason::Reserved {
                    field: "temperature type",
                    value: u32::from(v),
                }));
            }
        })
    } else {
        None
    };
    let mut out = Out::new(r.ch, resolve_time(stamp, 0, now));
    let fahrenheit = flags & 0x01 != 0;
    out.decimal(Metric::BodyTemp, value, |v| {
        if fahrenheit {
            v.fahrenheit_to_celsius()
        } else {
            v.to_f64()
        }
    });
    if let Some(kind) = kind {
        out.extra("temperature_type", ExtraValue::Text(kind));
    }
    Ok(out.d)
}

/// Glucose Measurement (GLS 1.0, 0x2A18).
pub fn glucose_measurement(payload: &[u8], now: Timestamp) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(Characteristic::GlucoseMeasurement, payload)?;
    let flags = r.u8("flags")?;
    let sequence = r.u16("sequence number")?;
    let base = r.date_time("base time")?;
    let offset = if flags & 0x01 != 0 {
        r.i16("time offset")?
    } else {
        0
    };
    let concentration = if flags & 0x02 != 0 {
        let value = r.sfloat("glucose concentration")?;
        let type_location = r.u8("type-sample location")?;
        let kind = match type_location & 0x0F {
            1 => "capillary_whole_blood",
            2 => "capillary_plasma",
            3 => "venous_whole_blood",
            4 => "venous_plasma",
            5 => "arterial_whole_blood",
            6 => "arterial_plasma",
            7 => "undetermined_whole_blood",
            8 => "undetermined_plasma",
            9 => "interstitial_fluid",
            10 => "control_solution",
            v => {
                return Err(r.err(DecodeReason::Reserved {
                    field: "glucose type",
                    value: u32::from(v),
                }));
            }
        };
        let location = match type_location >> 4 {
            1 => "finger",
            2 => "alternate_site_test",
            3 => "earlobe",
            4 => "control_solution",
            15 => "not_available",
            v => {
                return Err(r.err(DecodeReason::Reserved {
                    field: "sample location",
                    value: u32::from(v),
                }));
            }
        };
        Some((value, kind, location))
    } else {
        None
    };
    let status = if flags & 0x08 != 0 {
        Some(r.u16("sensor status annunciation")?)
    } else {
        None
    };

    let mut time = resolve_time(Some(base), i64::from(offset), now);
    let mut out_flags = super::decoded::StatusFlags::default();
    if let Some(bits) = status {
        let bits = u32::from(bits);
        for (bit, flag) in [
            (0, StatusFlag::BatteryLow),
            (1, StatusFlag::SensorMalfunction),
            (2, StatusFlag::SampleSizeInsufficient),
            (3, StatusFlag::StripInsertionError),
            (4, StatusFlag::StripTypeIncorrect),
            (5, StatusFlag::ResultAboveRange),
            (6, StatusFlag::ResultBelowRange),
            (7, StatusFlag::TemperatureTooHigh),
            (8, StatusFlag::TemperatureTooLow),
            (9, StatusFlag::ReadInterrupted),
            (10, StatusFlag::GeneralDeviceFault),
            (11, StatusFlag::TimeFault),
        ] {
            out_flags.set_if(bits, bit, flag);
        }
        // The meter says its own clock is wrong: do not trust the base time.
        if out_flags.contains(StatusFlag::TimeFault) && time.1 == TimeSource::Device {
            time = (now, TimeSource::Gateway, Some(TimeFallback::Implausible));
        }
    }
    let mut out = Out::new(r.ch, time);
    out.d.flags = out_flags;
    out.extra("sequence_number", ExtraValue::Int(i64::from(sequence)));
    if let Some((value, kind, location)) = concentration {
        let per_unit = if flags & 0x04 != 0 {
            MGDL_PER_MOLL
        } else {
            MGDL_PER_KGL
        };
        // A control-solution test checks the meter, not the patient.
        let value = if kind == "control_solution" || location == "control_solution" {
            value.and(Err(Unavailability::ControlSolution))
        } else {
            value
        };
        // Interstitial fluid is what a CGM sensor measures: its events follow
        // the CGM definitions, not a meter's spot check.
        let metric = if kind == "interstitial_fluid" {
            Metric::GlucoseCgm
        } else {
            Metric::Glucose
        };
        out.decimal(metric, value, |v| v.times(per_unit));
        out.extra("glucose_type", ExtraValue::Text(kind));
        out.extra("sample_location", ExtraValue::Text(location));
    }
    if flags & 0x10 != 0 {
        out.extra("context_follows", ExtraValue::Int(1));
    }
    Ok(out.d)
}

const PLX_MEASUREMENT_STATUS: [(u32, StatusFlag); 11] = [
    (5, StatusFlag::MeasurementOngoing),
    (6, StatusFlag::EarlyEstimatedData),
    (7, StatusFlag::ValidatedData),
    (8, StatusFlag::FullyQualifiedData),
    (9, StatusFlag::DataFromStorage),
    (10, StatusFlag::DataForDemonstration),
    (11, StatusFlag::DataForTesting),
    (12, StatusFlag::CalibrationOngoing),
    (13, StatusFlag::MeasurementUnavailable),
    (14, StatusFlag::QuestionableMeasurement),
    (15, StatusFlag::InvalidMeasurement),
];

const PLX_DEVICE_SENSOR_STATUS: [(u32, StatusFlag); 16] = [
    (0, StatusFlag::ExtendedDisplayUpdateOngoing),
    (1, StatusFlag::EquipmentMalfunction),
    (2, StatusFlag::SignalProcessingIrregularity),
    (3, StatusFlag::InadequateSignal),
    (4, StatusFlag::PoorSignal),
    (5, StatusFlag::LowPerfusion),
    (6, StatusFlag::ErraticSignal),
    (7, StatusFlag::NonpulsatileSignal),
    (8, StatusFlag::QuestionablePulse),
    (9, StatusFlag::SignalAnalysisOngoing),
    (10, StatusFlag::SensorInterference),
    (11, StatusFlag::SensorUnconnected),
    (12, StatusFlag::UnknownSensorConnected),
    (13, StatusFlag::SensorDisplaced),
    (14, StatusFlag::SensorMalfunctioning),
    (15, StatusFlag::SensorDisconnected),
];

/// The device marked the measurement unavailable or invalid: its numbers are
/// not to be used.
fn plx_flagged(
    value: Result<Decimal, Unavailability>,
    status: Option<u16>,
) -> Result<f64, Unavailability> {
    let value = value.map(Decimal::to_f64);
    match status {
        Some(bits) if bits & (1 << 13 | 1 << 15) != 0 => {
            value.and(Err(Unavailability::FlaggedByDevice))
        }
        _ => value,
    }
}

/// PLX Spot-Check Measurement (PLXS 1.0, 0x2A5E).
pub fn plx_spot_check(payload: &[u8], now: Timestamp) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(Characteristic::PlxSpotCheck, payload)?;
    let flags = r.u8("flags")?;
    let spo2 = r.sfloat("SpO2")?;
    let pr = r.sfloat("pulse rate")?;
    let stamp = if flags & 0x01 != 0 {
        Some(r.date_time("timestamp")?)
    } else {
        None
    };
    let measurement = if flags & 0x02 != 0 {
        Some(r.u16("measurement status")?)
    } else {
        None
    };
    let device = if flags & 0x04 != 0 {
        Some(r.u24("device and sensor status")?)
    } else {
        None
    };
    let pai = if flags & 0x08 != 0 {
        Some(r.sfloat("pulse amplitude index")?)
    } else {
        None
    };
    let clock_not_set = flags & 0x10 != 0;
    let time = if clock_not_set {
        (now, TimeSource::Gateway, Some(TimeFallback::ClockNotSet))
    } else {
        resolve_time(stamp, 0, now)
    };
    let mut out = Out::new(r.ch, time);
    if clock_not_set {
        out.d.flags.insert(StatusFlag::DeviceClockNotSet);
    }
    plx_common(&mut out, spo2, pr, measurement, device, pai);
    Ok(out.d)
}

fn plx_common(
    out: &mut Out,
    spo2: Result<Decimal, Unavailability>,
    pr: Result<Decimal, Unavailability>,
    measurement: Option<u16>,
    device: Option<u32>,
    pai: Option<Result<Decimal, Unavailability>>,
) {
    out.value(Metric::Spo2, plx_flagged(spo2, measurement));
    out.value(Metric::PulseRate, plx_flagged(pr, measurement));
    if let Some(pai) = pai {
        out.value(Metric::PulseAmplitudeIndex, plx_flagged(pai, measurement));
    }
    if let Some(bits) = measurement {
        out.flags(u32::from(bits), &PLX_MEASUREMENT_STATUS);
    }
    if let Some(bits) = device {
        out.flags(bits, &PLX_DEVICE_SENSOR_STATUS);
    }
}

/// PLX Continuous Measurement (PLXS 1.0, 0x2A5F). Carries no timestamp.
pub fn plx_continuous(payload: &[u8], now: Timestamp) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(Characteristic::PlxContinuous, payload)?;
    let flags = r.u8("flags")?;
    let spo2 = r.sfloat("SpO2PR-Normal SpO2")?;
    let pr = r.sfloat("SpO2PR-Normal PR")?;
    let fast = if flags & 0x01 != 0 {
        Some((r.sfloat("SpO2PR-Fast SpO2")?, r.sfloat("SpO2PR-Fast PR")?))
    } else {
        None
    };
    let slow = if flags & 0x02 != 0 {
        Some((r.sfloat("SpO2PR-Slow SpO2")?, r.sfloat("SpO2PR-Slow PR")?))
    } else {
        None
    };
    let measurement = if flags & 0x04 != 0 {
        Some(r.u16("measurement status")?)
    } else {
        None
    };
    let device = if flags & 0x08 != 0 {
        Some(r.u24("device and sensor status")?)
    } else {
        None
    };
    let pai = if flags & 0x10 != 0 {
        Some(r.sfloat("pulse amplitude index")?)
    } else {
        None
    };
    let mut out = Out::new(r.ch, resolve_time(None, 0, now));
    plx_common(&mut out, spo2, pr, measurement, device, pai);
    for (keys, pair) in [
        (("spo2_fast", "pulse_rate_fast"), fast),
        (("spo2_slow", "pulse_rate_slow"), slow),
    ] {
        if let Some((s, p)) = pair {
            for (key, v) in [(keys.0, s), (keys.1, p)] {
                let value = match plx_flagged(v, measurement) {
                    Ok(n) => ExtraValue::Number(n),
                    Err(why) => ExtraValue::Unavailable(why),
                };
                out.extra(key, value);
            }
        }
    }
    Ok(out.d)
}

/// Mass resolution: SI 0.005 kg, imperial 0.01 lb (in kg).
fn mass_resolution(imperial: bool) -> Resolution {
    if imperial {
        Resolution {
            divisor: 100.0,
            factor: KG_PER_LB,
        }
    } else {
        per(200.0)
    }
}

/// Height resolution: SI 0.001 m, imperial 0.1 in (in m).
fn height_resolution(imperial: bool) -> Resolution {
    if imperial {
        Resolution {
            divisor: 10.0,
            factor: M_PER_INCH,
        }
    } else {
        per(1000.0)
    }
}

/// Weight Measurement (WSS 1.0, 0x2A9D).
pub fn weight_measurement(payload: &[u8], now: Timestamp) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(Characteristic::WeightMeasurement, payload)?;
    let flags = r.u8("flags")?;
    let weight = r.u16("weight")?;
    let stamp = if flags & 0x02 != 0 {
        Some(r.date_time("time stamp")?)
    } else {
        None
    };
    let user = if flags & 0x04 != 0 {
        Some(r.u8("user id")?)
    } else {
        None
    };
    let bmi_height = if flags & 0x08 != 0 {
        Some((r.u16("BMI")?, r.u16("height")?))
    } else {
        None
    };
    let imperial = flags & 0x01 != 0;
    let mut out = Out::new(r.ch, resolve_time(stamp, 0, now));
    out.value(
        Metric::BodyWeight,
        unsigned_or_unsuccessful(weight, mass_resolution(imperial)),
    );
    if let Some(id) = user {
        user_id(&mut out, id);
    }
    if let Some((bmi, height)) = bmi_height {
        out.value(
            extra_metrics::bmi(),
            unsigned_or_unsuccessful(bmi, per(10.0)),
        );
        out.value(
            extra_metrics::body_height(),
            unsigned_or_unsuccessful(height, height_resolution(imperial)),
        );
    }
    Ok(out.d)
}

/// (flag bit, field name, metric, resolution in the canonical unit)
type OptionalField = (u16, &'static str, fn() -> Metric, Resolution);

/// Body Composition Measurement (BCS 1.0, 0x2A9C).
pub fn body_composition(payload: &[u8], now: Timestamp) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(Characteristic::BodyComposition, payload)?;
    let flags = r.u16("flags")?;
    let imperial = flags & 0x0001 != 0;
    let body_fat = r.u16("body fat percentage")?;
    let stamp = if flags & 0x0002 != 0 {
        Some(r.date_time("time stamp")?)
    } else {
        None
    };
    let user = if flags & 0x0004 != 0 {
        Some(r.u8("user id")?)
    } else {
        None
    };
    let mass = mass_resolution(imperial);
    let optional: [OptionalField; 9] = [
        (
            3,
            "basal metabolism",
            extra_metrics::basal_metabolism,
            per(1.0),
        ),
        (
            4,
            "muscle percentage",
            extra_metrics::muscle_percentage,
            per(10.0),
        ),
        (5, "muscle mass", extra_metrics::muscle_mass, mass),
        (6, "fat free mass", extra_metrics::fat_free_mass, mass),
        (7, "soft lean mass", extra_metrics::soft_lean_mass, mass),
        (8, "body water mass", extra_metrics::body_water_mass, mass),
        (9, "impedance", extra_metrics::impedance, per(10.0)),
        (10, "weight", || Metric::BodyWeight, mass),
        (
            11,
            "height",
            extra_metrics::body_height,
            height_resolution(imperial),
        ),
    ];
    let mut values = [None; 9];
    for (slot, (bit, field, _, _)) in values.iter_mut().zip(optional.iter()) {
        if flags & (1 << bit) != 0 {
            *slot = Some(r.u16(field)?);
        }
    }
    let mut out = Out::new(r.ch, resolve_time(stamp, 0, now));
    out.value(
        extra_metrics::body_fat_percentage(),
        unsigned_or_unsuccessful(body_fat, per(10.0)),
    );
    if let Some(id) = user {
        user_id(&mut out, id);
    }
    for (raw, (_, _, metric, resolution)) in values.iter().zip(optional.iter()) {
        if let Some(raw) = raw {
            out.value(metric(), unsigned_or_unsuccessful(*raw, *resolution));
        }
    }
    if flags & 0x1000 != 0 {
        out.extra("multiple_packet_measurement", ExtraValue::Int(1));
    }
    Ok(out.d)
}

/// Battery Level (BAS 1.0, 0x2A19): percent, 0..=100.
pub fn battery_level(payload: &[u8], now: Timestamp) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(Characteristic::BatteryLevel, payload)?;
    let level = r.u8("battery level")?;
    if level > 100 {
        return Err(r.err(DecodeReason::OutOfRange {
            field: "battery level",
            value: u32::from(level),
            min: 0,
            max: 100,
        }));
    }
    let mut out = Out::new(r.ch, resolve_time(None, 0, now));
    out.push(Metric::BatteryLevel, f64::from(level));
    Ok(out.d)
}
