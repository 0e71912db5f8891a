//! Scripted scenarios: which device is simulated (its services and
//! characteristics) and what it sends when, on a virtual clock that the
//! server may compress.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};

use super::encode::{self, BloodPressure, Contact, GlucoseUnit};

/// What a scenario simulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A vital-signs patch (heart rate, SpO2, temperature, battery), all in range.
    Normal,
    /// A pulse oximeter: SpO2 falls from 97 % to 85 % and recovers.
    Desaturation,
    /// A chest strap: heart rate climbs from 85 to 155 /min.
    Tachycardia,
    /// A blood-pressure cuff: inflation/deflation, then 182/112 mmHg; then one in kPa.
    Hypertensive,
    /// A glucometer with stored records; falls to 45 mg/dL; some records taken
    /// while disconnected (fetched through the RACP on reconnect).
    Hypoglycaemia,
    /// A scale: +3.1 kg over a week, one weighing a day (time-compressed).
    WeightGain,
    /// A chest strap that loses skin contact for 20 s.
    ContactLoss,
    /// A chest strap whose battery drains from 30 % to 10 %.
    BatteryDrain,
    /// A chest strap that drops the link for 20 s and comes back.
    DisconnectReconnect,
}

/// What happens at one point of the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A notification/indication (dropped when nobody is subscribed).
    Notify {
        characteristic: u16,
        payload: Vec<u8>,
    },
    /// A glucose record is stored on the meter (and notified if connected).
    Store { seq: u16, payload: Vec<u8> },
    /// The device drops the link.
    Disconnect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Virtual time since the script started.
    pub at: Duration,
    pub action: Action,
}

/// A device and its script.
#[derive(Clone, Debug)]
pub struct Script {
    pub services: Vec<u16>,
    pub characteristics: Vec<u16>,
    /// Glucose records already on the meter when the script starts.
    pub stored: Vec<(u16, Vec<u8>)>,
    pub steps: Vec<Step>,
    /// Virtual seconds per real second unless the user says otherwise.
    pub default_speed: f64,
}

pub const HRM: u16 = 0x2A37;
pub const BPM: u16 = 0x2A35;
pub const ICP: u16 = 0x2A36;
pub const TEMP: u16 = 0x2A1C;
pub const GLUCOSE: u16 = 0x2A18;
pub const RACP: u16 = 0x2A52;
pub const PLX_SPOT: u16 = 0x2A5E;
pub const PLX_CONT: u16 = 0x2A5F;
pub const WEIGHT: u16 = 0x2A9D;
pub const BODY: u16 = 0x2A9C;
pub const BATTERY: u16 = 0x2A19;

/// The hypoglycaemia meter's records: (sequence number, mg/dL, unit, minutes
/// after script start at which it is taken; negative = stored before).
pub const GLUCOSE_RECORDS: [(u16, f64, GlucoseUnit, i64); 7] = [
    (1, 118.0, GlucoseUnit::KgPerL, -180),
    (2, 96.0, GlucoseUnit::KgPerL, -120),
    (3, 74.0, GlucoseUnit::KgPerL, -60),
    (4, 61.0, GlucoseUnit::KgPerL, 5),
    (5, 48.0, GlucoseUnit::KgPerL, 10),
    // 2.5 mmol/L: 0.0025 mol/L × 18016 = 45.04 mg/dL; taken while disconnected
    (6, 45.04, GlucoseUnit::MolPerL, 20),
    (7, 70.0, GlucoseUnit::KgPerL, 30),
];

/// The weight-gain scale's daily weights (kg), one a day for 8 days.
pub const DAILY_WEIGHTS: [f64; 8] = [78.0, 78.1, 78.3, 78.2, 78.9, 79.6, 80.4, 81.1];

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn at(start: NaiveDateTime, s: f64) -> NaiveDateTime {
    start + TimeDelta::milliseconds((s * 1000.0) as i64)
}

fn notify(t: f64, characteristic: u16, payload: Vec<u8>) -> Step {
    Step {
        at: secs(t),
        action: Action::Notify {
            characteristic,
            payload,
        },
    }
}

/// Linear interpolation through `(t, value)` points.
fn ramp(points: &[(f64, f64)], t: f64) -> f64 {
    let mut prev = points[0];
    for &p in points {
        if t <= p.0 {
            if p.0 == prev.0 {
                return p.1;
            }
            return prev.1 + (p.1 - prev.1) * (t - prev.0) / (p.0 - prev.0);
        }
        prev = p;
    }
    prev.1
}

fn heart_beats(
    steps: &mut Vec<Step>,
    from: f64,
    to: f64,
    rate: impl Fn(f64) -> f64,
    contact: impl Fn(f64) -> Contact,
) {
    let mut t = from;
    while t < to {
        let hr = rate(t).round();
        let rr = if hr > 0.0 {
            vec![60_000.0 / hr]
        } else {
            vec![]
        };
        steps.push(notify(
            t,
            HRM,
            encode::heart_rate(hr as u16, contact(t), None, &rr),
        ));
        t += 1.0;
    }
}

impl Scenario {
    /// The script, with device clocks reading `start` when it begins.
    pub fn script(self, start: NaiveDateTime) -> Script {
        let strap = (vec![0x180D, 0x180F], vec![HRM, BATTERY]);
        let mut steps = Vec::new();
        let mut stored = Vec::new();
        let mut default_speed = 1.0;
        let (services, characteristics) = match self {
            Scenario::Normal => {
                steps.push(notify(0.0, BATTERY, encode::battery(85)));
                for i in 0..120 {
                    let t = f64::from(i);
                    let hr = (72.0 + 3.0 * (t / 10.0).sin()).round();
                    steps.push(notify(
                        t,
                        HRM,
                        encode::heart_rate(hr as u16, Contact::Detected, None, &[60_000.0 / hr]),
                    ));
                    steps.push(notify(
                        t,
                        PLX_CONT,
                        encode::plx_continuous(97.0, hr, None, Some(5.0)),
                    ));
                    if i % 30 == 0 {
                        steps.push(notify(
                            t,
                            TEMP,
                            encode::temperature(36.8, false, Some(at(start, t)), Some(2)),
                        ));
                    }
                }
                (
                    vec![0x180D, 0x1822, 0x1809, 0x180F],
                    vec![HRM, PLX_CONT, TEMP, BATTERY],
                )
            }
            Scenario::Desaturation => {
                steps.push(notify(0.0, BATTERY, encode::battery(70)));
                let spo2 = [
                    (0.0, 97.0),
                    (30.0, 97.0),
                    (90.0, 85.0),
                    (120.0, 85.0),
                    (180.0, 96.0),
                ];
                let pr = [
                    (0.0, 78.0),
                    (30.0, 78.0),
                    (90.0, 112.0),
                    (120.0, 110.0),
                    (180.0, 82.0),
                ];
                for i in 0..180 {
                    let t = f64::from(i);
                    steps.push(notify(
                        t,
                        PLX_CONT,
                        encode::plx_continuous(
                            ramp(&spo2, t).round(),
                            ramp(&pr, t).round(),
                            None,
                            None,
                        ),
                    ));
                    if i == 100 {
                        steps.push(notify(
                            t,
                            PLX_SPOT,
                            encode::plx_spot_check(85.0, 110.0, Some(at(start, t)), None),
                        ));
                    }
                }
                (vec![0x1822, 0x180F], vec![PLX_CONT, PLX_SPOT, BATTERY])
            }
            Scenario::Tachycardia => {
                steps.push(notify(0.0, BATTERY, encode::battery(90)));
                heart_beats(
                    &mut steps,
                    0.0,
                    180.0,
                    |t| ramp(&[(0.0, 85.0), (60.0, 155.0)], t),
                    |_| Contact::Detected,
                );
                strap
            }
            Scenario::Hypertensive => {
                steps.push(notify(0.0, BATTERY, encode::battery(60)));
                for (round, base, kpa) in [(0, 0.0, false), (1, 60.0, true)] {
                    for k in 0..12 {
                        // cuff pressure deflating from 190 to 80 mmHg
                        let mmhg = 190.0 - 10.0 * f64::from(k);
                        let bp = if kpa {
                            BloodPressure {
                                systolic: (mmhg / 7.500_62 * 10.0).round() / 10.0,
                                kpa,
                                ..BloodPressure::default()
                            }
                        } else {
                            BloodPressure {
                                systolic: mmhg,
                                ..BloodPressure::default()
                            }
                        };
                        steps.push(notify(
                            base + f64::from(k),
                            ICP,
                            encode::intermediate_cuff_pressure(&bp),
                        ));
                    }
                    let t = base + 12.0;
                    let bp = if round == 0 {
                        BloodPressure {
                            systolic: 182.0,
                            diastolic: 112.0,
                            mean: 135.0,
                            kpa: false,
                            time: Some(at(start, t)),
                            pulse: Some(88.0),
                            user: Some(1),
                            status: Some(0),
                        }
                    } else {
                        // 24.3 / 15.1 / 18.1 kPa ≈ 182 / 113 / 136 mmHg, irregular pulse
                        BloodPressure {
                            systolic: 24.3,
                            diastolic: 15.1,
                            mean: 18.1,
                            kpa: true,
                            time: Some(at(start, t)),
                            pulse: Some(90.0),
                            user: Some(1),
                            status: Some(0x0004),
                        }
                    };
                    steps.push(notify(t, BPM, encode::blood_pressure(&bp)));
                }
                (vec![0x1810, 0x180F], vec![BPM, ICP, BATTERY])
            }
            Scenario::Hypoglycaemia => {
                steps.push(notify(0.0, BATTERY, encode::battery(55)));
                for (seq, mg_dl, unit, minute) in GLUCOSE_RECORDS {
                    let base = start + TimeDelta::minutes(minute);
                    let payload = encode::glucose(seq, base, None, mg_dl, unit, None);
                    if minute < 0 {
                        stored.push((seq, payload));
                    } else {
                        // Script seconds stand for the minutes of the record times.
                        steps.push(Step {
                            at: secs(minute as f64),
                            action: Action::Store { seq, payload },
                        });
                    }
                }
                steps.push(Step {
                    at: secs(15.0),
                    action: Action::Disconnect,
                });
                steps.sort_by_key(|s| s.at);
                (vec![0x1808, 0x180F], vec![GLUCOSE, RACP, BATTERY])
            }
            Scenario::WeightGain => {
                // One weighing a day, ending at `start`: a day passes every 2 s by default.
                default_speed = 43_200.0;
                let first = start - TimeDelta::days(DAILY_WEIGHTS.len() as i64 - 1);
                for (day, kg) in DAILY_WEIGHTS.iter().enumerate() {
                    let t = day as f64 * 86_400.0;
                    let when = first + TimeDelta::days(day as i64);
                    let bmi = kg / (1.75 * 1.75);
                    steps.push(notify(
                        t,
                        WEIGHT,
                        encode::weight(
                            *kg,
                            Some(when),
                            Some(1),
                            Some(((bmi * 10.0).round() / 10.0, 1.75)),
                        ),
                    ));
                    steps.push(notify(
                        t,
                        BODY,
                        encode::body_composition(28.0, when, 1, kg * 0.5, None),
                    ));
                }
                steps.push(notify(0.0, BATTERY, encode::battery(95)));
                steps.sort_by_key(|s| s.at);
                (vec![0x181D, 0x181B, 0x180F], vec![WEIGHT, BODY, BATTERY])
            }
            Scenario::ContactLoss => {
                steps.push(notify(0.0, BATTERY, encode::battery(80)));
                heart_beats(
                    &mut steps,
                    0.0,
                    70.0,
                    |t| if (30.0..50.0).contains(&t) { 0.0 } else { 70.0 },
                    |t| {
                        if (30.0..50.0).contains(&t) {
                            Contact::NotDetected
                        } else {
                            Contact::Detected
                        }
                    },
                );
                strap
            }
            Scenario::BatteryDrain => {
                heart_beats(&mut steps, 0.0, 100.0, |_| 68.0, |_| Contact::Detected);
                for k in 0..=20 {
                    steps.push(notify(
                        f64::from(k) * 5.0,
                        BATTERY,
                        encode::battery(30 - k as u8),
                    ));
                }
                steps.sort_by_key(|s| s.at);
                strap
            }
            Scenario::DisconnectReconnect => {
                steps.push(notify(0.0, BATTERY, encode::battery(75)));
                heart_beats(&mut steps, 0.0, 20.0, |_| 74.0, |_| Contact::Detected);
                steps.push(Step {
                    at: secs(20.0),
                    action: Action::Disconnect,
                });
                heart_beats(&mut steps, 21.0, 60.0, |_| 76.0, |_| Contact::Detected);
                strap
            }
        };
        Script {
            services,
            characteristics,
            stored,
            steps,
            default_speed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_has_a_time_ordered_script() {
        let start = "2026-11-27T10:00:00".parse().unwrap();
        for s in <Scenario as clap::ValueEnum>::value_variants() {
            let script = s.script(start);
            assert!(!script.steps.is_empty(), "{s:?}");
            assert!(script.steps.windows(2).all(|w| w[0].at <= w[1].at), "{s:?}");
            for step in &script.steps {
                if let Action::Notify { characteristic, .. } = step.action {
                    assert!(script.characteristics.contains(&characteristic), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn ramp_interpolates() {
        let r = [(0.0, 97.0), (30.0, 97.0), (90.0, 85.0)];
        assert_eq!(ramp(&r, 60.0), 91.0);
        assert_eq!(ramp(&r, 200.0), 85.0);
    }
}
