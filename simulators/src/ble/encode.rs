//! GATT health payloads written from the Bluetooth SIG specs (HRS, BLS, HTS,
//! GLS, PLXS, WSS, BCS, BAS) — the simulator's own encoder, independent of
//! the drivers' decoders, so that a misreading of a spec shows up as a test
//! failure instead of agreeing with itself.

use chrono::{Datelike, NaiveDateTime, Timelike};

/// IEEE 11073 SFLOAT NaN (exponent 0, mantissa 0x7FF).
pub const SFLOAT_NAN: u16 = 0x07FF;

/// IEEE 11073 SFLOAT: `value` rounded to `10^exponent`, mantissa clamped to
/// the 12-bit range that is not a special value (−2046..=2045).
pub fn sfloat(value: f64, exponent: i8) -> u16 {
    let mantissa = (value / 10f64.powi(i32::from(exponent))).round();
    let mantissa = mantissa.clamp(-2046.0, 2045.0) as i16;
    ((exponent as u16 & 0x000F) << 12) | (mantissa as u16 & 0x0FFF)
}

/// IEEE 11073 FLOAT: 8-bit exponent, 24-bit mantissa.
pub fn float(value: f64, exponent: i8) -> u32 {
    let mantissa = (value / 10f64.powi(i32::from(exponent))).round();
    let mantissa = mantissa.clamp(-8_388_606.0, 8_388_605.0) as i32;
    (u32::from(exponent as u8) << 24) | (mantissa as u32 & 0x00FF_FFFF)
}

/// Date Time (0x2A08): year (u16 LE), month, day, hours, minutes, seconds.
pub fn date_time(t: NaiveDateTime) -> [u8; 7] {
    let [y0, y1] = (t.year() as u16).to_le_bytes();
    [
        y0,
        y1,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    ]
}

/// Sensor contact as the Heart Rate Measurement flags tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contact {
    NotSupported,
    Detected,
    NotDetected,
}

/// Heart Rate Measurement (0x2A37). RR intervals in ms, sent in 1/1024 s.
pub fn heart_rate(rate: u16, contact: Contact, energy_kj: Option<u16>, rr_ms: &[f64]) -> Vec<u8> {
    let mut flags = 0u8;
    let mut body = Vec::new();
    if rate > 255 {
        flags |= 0x01;
        body.extend_from_slice(&rate.to_le_bytes());
    } else {
        body.push(rate as u8);
    }
    flags |= match contact {
        Contact::NotSupported => 0,
        Contact::NotDetected => 0x04,
        Contact::Detected => 0x06,
    };
    if let Some(kj) = energy_kj {
        flags |= 0x08;
        body.extend_from_slice(&kj.to_le_bytes());
    }
    if !rr_ms.is_empty() {
        flags |= 0x10;
        for ms in rr_ms {
            let ticks = (ms * 1024.0 / 1000.0).round() as u16;
            body.extend_from_slice(&ticks.to_le_bytes());
        }
    }
    let mut out = vec![flags];
    out.extend(body);
    out
}

/// One blood-pressure reading as a cuff reports it.
#[derive(Clone, Debug, Default)]
pub struct BloodPressure {
    /// Values in the unit below; for Intermediate Cuff Pressure only `systolic`
    /// (the current cuff pressure) is used.
    pub systolic: f64,
    pub diastolic: f64,
    pub mean: f64,
    pub kpa: bool,
    pub time: Option<NaiveDateTime>,
    pub pulse: Option<f64>,
    pub user: Option<u8>,
    /// Measurement Status bits (body movement 0, cuff loose 1, irregular pulse 2,
    /// pulse range 3–4, improper position 5).
    pub status: Option<u16>,
}

fn pressure(v: f64, kpa: bool) -> u16 {
    // mmHg as integers; kPa with one decimal.
    if kpa { sfloat(v, -1) } else { sfloat(v, 0) }
}

/// Blood Pressure Measurement (0x2A35).
pub fn blood_pressure(bp: &BloodPressure) -> Vec<u8> {
    bp_payload(bp, false)
}

/// Intermediate Cuff Pressure (0x2A36): diastolic and mean are NaN.
pub fn intermediate_cuff_pressure(bp: &BloodPressure) -> Vec<u8> {
    bp_payload(bp, true)
}

fn bp_payload(bp: &BloodPressure, intermediate: bool) -> Vec<u8> {
    let mut flags = u8::from(bp.kpa);
    let mut out = vec![0];
    out.extend_from_slice(&pressure(bp.systolic, bp.kpa).to_le_bytes());
    if intermediate {
        out.extend_from_slice(&SFLOAT_NAN.to_le_bytes());
        out.extend_from_slice(&SFLOAT_NAN.to_le_bytes());
    } else {
        out.extend_from_slice(&pressure(bp.diastolic, bp.kpa).to_le_bytes());
        out.extend_from_slice(&pressure(bp.mean, bp.kpa).to_le_bytes());
    }
    if let Some(t) = bp.time {
        flags |= 0x02;
        out.extend_from_slice(&date_time(t));
    }
    if let Some(p) = bp.pulse {
        flags |= 0x04;
        out.extend_from_slice(&sfloat(p, 0).to_le_bytes());
    }
    if let Some(u) = bp.user {
        flags |= 0x08;
        out.push(u);
    }
    if let Some(s) = bp.status {
        flags |= 0x10;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out[0] = flags;
    out
}

/// Temperature Measurement (0x2A1C) in °C (or °F), FLOAT with 2 decimals.
pub fn temperature(
    value: f64,
    fahrenheit: bool,
    time: Option<NaiveDateTime>,
    kind: Option<u8>,
) -> Vec<u8> {
    let mut flags = u8::from(fahrenheit);
    let mut out = vec![0];
    out.extend_from_slice(&float(value, -2).to_le_bytes());
    if let Some(t) = time {
        flags |= 0x02;
        out.extend_from_slice(&date_time(t));
    }
    if let Some(k) = kind {
        flags |= 0x04;
        out.push(k);
    }
    out[0] = flags;
    out
}

/// Glucose concentration units as a meter sends them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlucoseUnit {
    /// kg/L: mg/dL × 10⁻⁵, so the mantissa is the mg/dL value at exponent −5.
    KgPerL,
    /// mol/L: mmol/L × 10⁻³ (mg/dL ÷ 18.016), one decimal of mmol/L.
    MolPerL,
}

/// Glucose Measurement (0x2A18): capillary whole blood from a finger.
pub fn glucose(
    seq: u16,
    base_time: NaiveDateTime,
    offset_min: Option<i16>,
    mg_dl: f64,
    unit: GlucoseUnit,
    status: Option<u16>,
) -> Vec<u8> {
    let mut flags = 0x02;
    let mut out = vec![0];
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&date_time(base_time));
    if let Some(o) = offset_min {
        flags |= 0x01;
        out.extend_from_slice(&o.to_le_bytes());
    }
    let concentration = match unit {
        GlucoseUnit::KgPerL => sfloat(mg_dl, 0) & 0x0FFF | 0xB000, // exponent −5
        GlucoseUnit::MolPerL => {
            flags |= 0x04;
            // mmol/L with one decimal = mol/L at exponent −4.
            sfloat(mg_dl / 18.016 / 1000.0, -4)
        }
    };
    out.extend_from_slice(&concentration.to_le_bytes());
    out.push(0x11); // type 1 capillary whole blood (low nibble), location 1 finger (high nibble)
    if let Some(s) = status {
        flags |= 0x08;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out[0] = flags;
    out
}

/// PLX Spot-Check Measurement (0x2A5E).
pub fn plx_spot_check(
    spo2: f64,
    pulse: f64,
    time: Option<NaiveDateTime>,
    device_status: Option<u32>,
) -> Vec<u8> {
    let mut flags = 0u8;
    let mut out = vec![0];
    out.extend_from_slice(&sfloat(spo2, 0).to_le_bytes());
    out.extend_from_slice(&sfloat(pulse, 0).to_le_bytes());
    if let Some(t) = time {
        flags |= 0x01;
        out.extend_from_slice(&date_time(t));
    }
    if let Some(s) = device_status {
        flags |= 0x04;
        out.extend_from_slice(&s.to_le_bytes()[..3]);
    }
    out[0] = flags;
    out
}

/// PLX Continuous Measurement (0x2A5F): normal SpO2/PR, device and sensor
/// status when given, pulse amplitude index when given.
pub fn plx_continuous(
    spo2: f64,
    pulse: f64,
    device_status: Option<u32>,
    pai: Option<f64>,
) -> Vec<u8> {
    let mut flags = 0u8;
    let mut out = vec![0];
    out.extend_from_slice(&sfloat(spo2, 0).to_le_bytes());
    out.extend_from_slice(&sfloat(pulse, 0).to_le_bytes());
    if let Some(s) = device_status {
        flags |= 0x08;
        out.extend_from_slice(&s.to_le_bytes()[..3]);
    }
    if let Some(p) = pai {
        flags |= 0x10;
        out.extend_from_slice(&sfloat(p, -1).to_le_bytes());
    }
    out[0] = flags;
    out
}

/// Weight Measurement (0x2A9D), SI: 0.005 kg; BMI 0.1; height 0.001 m.
pub fn weight(
    kg: f64,
    time: Option<NaiveDateTime>,
    user: Option<u8>,
    bmi_height: Option<(f64, f64)>,
) -> Vec<u8> {
    let mut flags = 0u8;
    let mut out = vec![0];
    out.extend_from_slice(&((kg / 0.005).round() as u16).to_le_bytes());
    if let Some(t) = time {
        flags |= 0x02;
        out.extend_from_slice(&date_time(t));
    }
    if let Some(u) = user {
        flags |= 0x04;
        out.push(u);
    }
    if let Some((bmi, height_m)) = bmi_height {
        flags |= 0x08;
        out.extend_from_slice(&((bmi * 10.0).round() as u16).to_le_bytes());
        out.extend_from_slice(&((height_m * 1000.0).round() as u16).to_le_bytes());
    }
    out[0] = flags;
    out
}

/// Body Composition Measurement (0x2A9C), SI: body fat %, time stamp, user,
/// body water mass and, when given, weight (a scale that also sends Weight
/// Measurement leaves it out).
pub fn body_composition(
    fat_percent: f64,
    time: NaiveDateTime,
    user: u8,
    water_kg: f64,
    weight_kg: Option<f64>,
) -> Vec<u8> {
    // flags: time stamp (1), user id (2), body water mass (8), weight (10)
    let mut flags: u16 = (1 << 1) | (1 << 2) | (1 << 8);
    if weight_kg.is_some() {
        flags |= 1 << 10;
    }
    let mut out = flags.to_le_bytes().to_vec();
    out.extend_from_slice(&((fat_percent * 10.0).round() as u16).to_le_bytes());
    out.extend_from_slice(&date_time(time));
    out.push(user);
    out.extend_from_slice(&((water_kg / 0.005).round() as u16).to_le_bytes());
    if let Some(kg) = weight_kg {
        out.extend_from_slice(&((kg / 0.005).round() as u16).to_le_bytes());
    }
    out
}

/// Battery Level (0x2A19).
pub fn battery(percent: u8) -> Vec<u8> {
    vec![percent.min(100)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> NaiveDateTime {
        "2026-11-27T09:30:15".parse().unwrap()
    }

    #[test]
    fn sfloat_and_float_from_the_spec() {
        assert_eq!(sfloat(36.5, -1), 0xF16D); // exponent −1 (0xF), mantissa 365 (0x16D)
        assert_eq!(sfloat(120.0, 0), 0x0078);
        assert_eq!(sfloat(-1.0, 0), 0x0FFF);
        assert_eq!(float(36.5, -2), 0xFE00_0E42); // exponent −2, mantissa 3650
    }

    #[test]
    fn heart_rate_layout() {
        // flags 0x16: u8 rate, contact detected, RR; 72; RR 1000 ms = 1024 ticks
        assert_eq!(
            heart_rate(72, Contact::Detected, None, &[1000.0]),
            [0x16, 72, 0x00, 0x04]
        );
        // flags 0x0D: u16 rate, contact not detected, energy
        assert_eq!(
            heart_rate(300, Contact::NotDetected, Some(5), &[]),
            [0x0D, 0x2C, 0x01, 5, 0]
        );
    }

    #[test]
    fn blood_pressure_layout() {
        let bp = BloodPressure {
            systolic: 121.0,
            diastolic: 81.0,
            mean: 106.0,
            time: Some(t()),
            pulse: Some(72.0),
            user: Some(3),
            status: Some(0x0026),
            ..BloodPressure::default()
        };
        assert_eq!(
            blood_pressure(&bp),
            [
                0x1E, 0x79, 0x00, 0x51, 0x00, 0x6A, 0x00, 0xEA, 0x07, 11, 27, 9, 30, 15, 0x48,
                0x00, 0x03, 0x26, 0x00
            ]
        );
        let icp = BloodPressure {
            systolic: 140.0,
            ..BloodPressure::default()
        };
        assert_eq!(
            intermediate_cuff_pressure(&icp),
            [0x00, 0x8C, 0x00, 0xFF, 0x07, 0xFF, 0x07]
        );
    }

    #[test]
    fn glucose_layout() {
        // flags 0x02; seq 42; base time; 0xB05A = 90 × 10^-5 kg/L; 0x11
        assert_eq!(
            glucose(42, t(), None, 90.0, GlucoseUnit::KgPerL, None),
            [0x02, 42, 0, 0xEA, 0x07, 11, 27, 9, 30, 15, 0x5A, 0xB0, 0x11]
        );
        // 54.048 mg/dL = 3.0 mmol/L = 30 × 10^-4 mol/L → 0xC01E; flags 0x06
        assert_eq!(
            glucose(1, t(), None, 54.048, GlucoseUnit::MolPerL, None)[10..13],
            [0x1E, 0xC0, 0x11]
        );
    }

    #[test]
    fn scale_layout() {
        // 69.6 kg = 13920 × 0.005 = 0x3660
        assert_eq!(weight(69.6, None, None, None), [0x00, 0x60, 0x36]);
        assert_eq!(battery(150), [100]);
        // flags 0x0506 (time, user, water, weight) LE; fat 280 = 0x0118;
        // time; user 1; water 40 kg = 8000 = 0x1F40; weight 80 kg = 16000 = 0x3E80
        assert_eq!(
            body_composition(28.0, t(), 1, 40.0, Some(80.0)),
            [
                0x06, 0x05, 0x18, 0x01, 0xEA, 0x07, 11, 27, 9, 30, 15, 1, 0x40, 0x1F, 0x80, 0x3E
            ]
        );
        assert_eq!(
            body_composition(28.0, t(), 1, 40.0, None)[..2],
            [0x06, 0x01]
        );
    }
}
