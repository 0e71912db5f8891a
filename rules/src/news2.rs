//! NEWS2 scoring exactly as the Royal College of Physicians chart (National
//! Early Warning Score 2, RCP London, December 2017, "Chart 1: The NEWS
//! scoring system"). Pure functions; the engine decides freshness.
//!
//! The chart's bands are written for whole numbers (temperature: one decimal).
//! Measured values are first rounded to that resolution (half away from zero),
//! so 20.4 /min scores like 20 and 35.05 °C like 35.1.

// One arm per band of the chart, in chart order, even where two bands score
// alike: the code reads as the chart does.
#![allow(clippy::match_same_arms)]

use wardgate_model::{Metric, Spo2Scale};

/// The metrics NEWS2 reads, in the order the engine keeps their slots:
/// respiration rate, SpO2, oxygen flow, systolic pressure, heart rate and
/// pulse rate (pulse is the more recent of the two), consciousness,
/// temperature. The ruleset gives each a slot whether or not a rule reads it.
pub(crate) const NEWS2_INPUTS: [Metric; 8] = [
    Metric::RespRate,
    Metric::Spo2,
    Metric::O2Flow,
    Metric::BpSystolic,
    Metric::HeartRate,
    Metric::PulseRate,
    Metric::Consciousness,
    Metric::BodyTemp,
];

/// The seven NEWS2 parameters as measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct News2Inputs {
    pub resp_rate: f64,
    pub spo2: f64,
    /// `true` when supplemental oxygen is given (`o2_flow` > 0).
    pub on_oxygen: bool,
    pub bp_systolic: f64,
    /// Pulse (heart_rate or pulse_rate, whichever is more recent).
    pub pulse: f64,
    /// ACVPU: 0 = Alert, 1 = new Confusion, 2 = Voice, 3 = Pain, 4 = Unresponsive.
    pub consciousness: f64,
    pub temperature: f64,
}

/// One score per parameter and the aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct News2Score {
    pub resp_rate: u8,
    pub spo2: u8,
    pub air_or_oxygen: u8,
    pub bp_systolic: u8,
    pub pulse: u8,
    pub consciousness: u8,
    pub temperature: u8,
}

impl News2Score {
    pub fn aggregate(&self) -> u8 {
        self.resp_rate
            + self.spo2
            + self.air_or_oxygen
            + self.bp_systolic
            + self.pulse
            + self.consciousness
            + self.temperature
    }

    /// The highest single-parameter score (3 = a "red score").
    pub fn max_single(&self) -> u8 {
        [
            self.resp_rate,
            self.spo2,
            self.air_or_oxygen,
            self.bp_systolic,
            self.pulse,
            self.consciousness,
            self.temperature,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
}

fn whole(v: f64) -> i64 {
    v.round() as i64
}

/// Respiration rate (per minute): ≤8 → 3, 9–11 → 1, 12–20 → 0, 21–24 → 2, ≥25 → 3.
pub fn score_resp_rate(v: f64) -> u8 {
    match whole(v) {
        ..=8 => 3,
        9..=11 => 1,
        12..=20 => 0,
        21..=24 => 2,
        25.. => 3,
    }
}

/// SpO2 scale 1 (%): ≤91 → 3, 92–93 → 2, 94–95 → 1, ≥96 → 0.
pub fn score_spo2_scale1(v: f64) -> u8 {
    match whole(v) {
        ..=91 => 3,
        92..=93 => 2,
        94..=95 => 1,
        96.. => 0,
    }
}

/// SpO2 scale 2 (%), for a prescribed 88–92 % target: ≤83 → 3, 84–85 → 2,
/// 86–87 → 1, 88–92 → 0, ≥93 on air → 0; on oxygen 93–94 → 1, 95–96 → 2, ≥97 → 3.
pub fn score_spo2_scale2(v: f64, on_oxygen: bool) -> u8 {
    match (whole(v), on_oxygen) {
        (..=83, _) => 3,
        (84..=85, _) => 2,
        (86..=87, _) => 1,
        (88..=92, _) | (93.., false) => 0,
        (93..=94, true) => 1,
        (95..=96, true) => 2,
        (97.., true) => 3,
    }
}

/// Air → 0, oxygen → 2.
pub fn score_air_or_oxygen(on_oxygen: bool) -> u8 {
    if on_oxygen { 2 } else { 0 }
}

/// Systolic BP (mmHg): ≤90 → 3, 91–100 → 2, 101–110 → 1, 111–219 → 0, ≥220 → 3.
pub fn score_bp_systolic(v: f64) -> u8 {
    match whole(v) {
        ..=90 => 3,
        91..=100 => 2,
        101..=110 => 1,
        111..=219 => 0,
        220.. => 3,
    }
}

/// Pulse (per minute): ≤40 → 3, 41–50 → 1, 51–90 → 0, 91–110 → 1, 111–130 → 2, ≥131 → 3.
pub fn score_pulse(v: f64) -> u8 {
    match whole(v) {
        ..=40 => 3,
        41..=50 => 1,
        51..=90 => 0,
        91..=110 => 1,
        111..=130 => 2,
        131.. => 3,
    }
}

/// Consciousness: Alert → 0; new Confusion, Voice, Pain, Unresponsive → 3.
pub fn score_consciousness(acvpu: f64) -> u8 {
    if whole(acvpu) <= 0 { 0 } else { 3 }
}

/// Temperature (°C): ≤35.0 → 3, 35.1–36.0 → 1, 36.1–38.0 → 0, 38.1–39.0 → 1, ≥39.1 → 2.
pub fn score_temperature(v: f64) -> u8 {
    match (v * 10.0).round() as i64 {
        ..=350 => 3,
        351..=360 => 1,
        361..=380 => 0,
        381..=390 => 1,
        391.. => 2,
    }
}

/// Scores every parameter on the chart; `scale` picks the SpO2 row.
pub fn score(inputs: &News2Inputs, scale: Spo2Scale) -> News2Score {
    News2Score {
        resp_rate: score_resp_rate(inputs.resp_rate),
        spo2: match scale {
            Spo2Scale::Scale1 => score_spo2_scale1(inputs.spo2),
            Spo2Scale::Scale2 => score_spo2_scale2(inputs.spo2, inputs.on_oxygen),
        },
        air_or_oxygen: score_air_or_oxygen(inputs.on_oxygen),
        bp_systolic: score_bp_systolic(inputs.bp_systolic),
        pulse: score_pulse(inputs.pulse),
        consciousness: score_consciousness(inputs.consciousness),
        temperature: score_temperature(inputs.temperature),
    }
}

#[cfg(test)]
mod tests {
    //! Every expected value below is read off the RCP 2017 chart, one row per
    //! parameter, testing both sides of every band edge.
    use super::*;

    fn check(f: fn(f64) -> u8, cases: &[(f64, u8)]) {
        for &(v, want) in cases {
            assert_eq!(f(v), want, "value {v}");
        }
    }

    #[test]
    fn respiration_rate_bands() {
        check(
            score_resp_rate,
            &[
                (0.0, 3),
                (8.0, 3),
                (9.0, 1),
                (11.0, 1),
                (12.0, 0),
                (20.0, 0),
                (21.0, 2),
                (24.0, 2),
                (25.0, 3),
                (60.0, 3),
                // rounding to the chart's whole numbers
                (8.4, 3),
                (8.5, 1),
                (20.4, 0),
                (20.5, 2),
            ],
        );
    }

    #[test]
    fn spo2_scale1_bands() {
        check(
            score_spo2_scale1,
            &[
                (50.0, 3),
                (91.0, 3),
                (92.0, 2),
                (93.0, 2),
                (94.0, 1),
                (95.0, 1),
                (96.0, 0),
                (100.0, 0),
            ],
        );
    }

    #[test]
    fn spo2_scale2_bands_on_air_and_oxygen() {
        // Rows shared by air and oxygen.
        for o2 in [false, true] {
            for (v, want) in [
                (70.0, 3),
                (83.0, 3),
                (84.0, 2),
                (85.0, 2),
                (86.0, 1),
                (87.0, 1),
                (88.0, 0),
                (92.0, 0),
            ] {
                assert_eq!(score_spo2_scale2(v, o2), want, "{v} oxygen={o2}");
            }
        }
        // ≥93 on air scores 0.
        for v in [93.0, 94.0, 95.0, 96.0, 97.0, 100.0] {
            assert_eq!(score_spo2_scale2(v, false), 0, "{v} on air");
        }
        // On oxygen: 93–94 → 1, 95–96 → 2, ≥97 → 3.
        for (v, want) in [
            (93.0, 1),
            (94.0, 1),
            (95.0, 2),
            (96.0, 2),
            (97.0, 3),
            (100.0, 3),
        ] {
            assert_eq!(score_spo2_scale2(v, true), want, "{v} on oxygen");
        }
    }

    #[test]
    fn air_or_oxygen() {
        assert_eq!(score_air_or_oxygen(false), 0);
        assert_eq!(score_air_or_oxygen(true), 2);
    }

    #[test]
    fn systolic_bands() {
        check(
            score_bp_systolic,
            &[
                (60.0, 3),
                (90.0, 3),
                (91.0, 2),
                (100.0, 2),
                (101.0, 1),
                (110.0, 1),
                (111.0, 0),
                (219.0, 0),
                (220.0, 3),
                (260.0, 3),
            ],
        );
    }

    #[test]
    fn pulse_bands() {
        check(
            score_pulse,
            &[
                (30.0, 3),
                (40.0, 3),
                (41.0, 1),
                (50.0, 1),
                (51.0, 0),
                (90.0, 0),
                (91.0, 1),
                (110.0, 1),
                (111.0, 2),
                (130.0, 2),
                (131.0, 3),
                (200.0, 3),
            ],
        );
    }

    #[test]
    fn consciousness_acvpu() {
        check(
            score_consciousness,
            &[(0.0, 0), (1.0, 3), (2.0, 3), (3.0, 3), (4.0, 3)],
        );
    }

    #[test]
    fn temperature_bands() {
        check(
            score_temperature,
            &[
                (33.0, 3),
                (35.0, 3),
                (35.1, 1),
                (36.0, 1),
                (36.1, 0),
                (38.0, 0),
                (38.1, 1),
                (39.0, 1),
                (39.1, 2),
                (41.0, 2),
                // one-decimal rounding
                (35.04, 3),
                (35.05, 1),
            ],
        );
    }

    #[test]
    fn aggregate_and_red_score() {
        // RR 22 (2) + SpO2 93 scale 1 (2) + oxygen (2) + sys 105 (1)
        // + pulse 115 (2) + alert (0) + 38.5 °C (1) = 10; highest single 2.
        let s = score(
            &News2Inputs {
                resp_rate: 22.0,
                spo2: 93.0,
                on_oxygen: true,
                bp_systolic: 105.0,
                pulse: 115.0,
                consciousness: 0.0,
                temperature: 38.5,
            },
            Spo2Scale::Scale1,
        );
        assert_eq!(s.aggregate(), 10);
        assert_eq!(s.max_single(), 2);
        // Same patient on scale 2: SpO2 93 on oxygen scores 1 → 9.
        let s2 = score(
            &News2Inputs {
                resp_rate: 22.0,
                spo2: 93.0,
                on_oxygen: true,
                bp_systolic: 105.0,
                pulse: 115.0,
                consciousness: 0.0,
                temperature: 38.5,
            },
            Spo2Scale::Scale2,
        );
        assert_eq!(s2.aggregate(), 9);
    }
}
