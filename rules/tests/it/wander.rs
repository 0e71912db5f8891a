//! Values that wander around every built-in threshold, each at its device's
//! own sampling rate, through the engine with every built-in pack. However
//! often a value crosses its threshold, a rule raises one alert per episode;
//! a priority band goes up at once and down only after the hold time; and an
//! episode ends only once the values have stayed on the safe side for the
//! rule's `clear_for`, then exactly once.
//!
//! Deterministic: a seeded generator picks every value and sampling interval,
//! and the expected times are read off the generated series (the first
//! reading on the alarm side, the first after the last one on it, ...). A
//! nurse acknowledges every alert that sounds a minute later, as on a ward,
//! so escalations do not hide what is under test.

use std::collections::BTreeSet;

use chrono::TimeDelta;
use wardgate_model::{
    AlertId, AlertState as S, Condition, DeviceId, DeviceKind, DeviceRef, Event, Metric,
    Priority as P, Reading, Spo2Scale, SubjectId, SubjectProfile, TimeSource, Timestamp,
    Transition as X,
};
use wardgate_rules::news2::{self, News2Inputs};
use wardgate_rules::{Engine, EngineOptions};

use crate::helpers::{base, details, engine};

/// How long every value wanders around its threshold.
const WANDER: i64 = 30 * 60;
/// Seconds from an alert sounding (raised, risen, escalated) to its acknowledgement.
const NURSE: i64 = 60;

// ------------------------------------------------------------ generating

/// xorshift64*: a fixed seed per test, so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    /// One of `xs`.
    fn pick(&mut self, xs: &[f64]) -> f64 {
        xs[self.next() as usize % xs.len()]
    }
}

/// Sampling times in `from..to`, the first at `from`, each `lo..=hi` seconds
/// after the one before.
fn every(rng: &mut Rng, from: i64, to: i64, lo: i64, hi: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut s = from;
    while s < to {
        out.push(s);
        s += rng.int(lo, hi);
    }
    out
}

/// A value wandering around a threshold: each sample is on the alarm side
/// (a value from `alarm`) or the safe side (from `safe`) at random, the
/// first on the alarm side, never more than `max_run` in a row on one side.
fn wander(
    rng: &mut Rng,
    times: &[i64],
    alarm: &[f64],
    safe: &[f64],
    max_run: usize,
) -> Vec<(i64, f64)> {
    let mut out = Vec::with_capacity(times.len());
    let (mut side, mut run) = (true, 0);
    for (i, &s) in times.iter().enumerate() {
        if i > 0 {
            let next = if run >= max_run {
                !side
            } else {
                rng.next().is_multiple_of(2)
            };
            run = if next == side { run + 1 } else { 1 };
            side = next;
        } else {
            run = 1;
        }
        out.push((s, rng.pick(if side { alarm } else { safe })));
    }
    out
}

/// Steady values: each sample one of `xs`.
fn steady(rng: &mut Rng, times: &[i64], xs: &[f64]) -> Vec<(i64, f64)> {
    times.iter().map(|&s| (s, rng.pick(xs))).collect()
}

/// Steady values sampled as by [`every`].
fn sample(rng: &mut Rng, from: i64, to: i64, lo: i64, hi: i64, xs: &[f64]) -> Vec<(i64, f64)> {
    let times = every(rng, from, to, lo, hi);
    steady(rng, &times, xs)
}

/// `lo..=hi` in steps of 1, as values.
fn range(lo: i64, hi: i64) -> Vec<f64> {
    (lo..=hi).map(|v| v as f64).collect()
}

/// Which side of a threshold a value is on: `true`, the alarm side.
type Alarm = fn(f64) -> bool;

/// How often consecutive samples lie on different sides of `alarm`.
fn crossings(series: &[(i64, f64)], alarm: impl Fn(f64) -> bool) -> usize {
    series
        .windows(2)
        .filter(|w| alarm(w[0].1) != alarm(w[1].1))
        .count()
}

/// The time of the first sample after the last one for which `unsafe_`
/// holds: when the hold time starts for good.
fn safe_from(series: &[(i64, f64)], unsafe_: impl Fn(f64) -> bool) -> i64 {
    let last = series.iter().rposition(|x| unsafe_(x.1)).unwrap();
    series[last + 1].0
}

/// The value of the last sample before second `s`: what a tick at `s` sees
/// (ticks run before the readings of the same second).
fn before(series: &[(i64, f64)], s: i64) -> f64 {
    series.iter().rev().find(|x| x.0 < s).unwrap().1
}

fn ts(s: i64) -> Timestamp {
    base() + TimeDelta::seconds(s)
}

fn device(id: &str) -> DeviceRef {
    DeviceRef::new(DeviceId::from(id), DeviceKind::Ble)
}

/// One measurement: what one device sends at one second, fed together.
type Measurement = (i64, Vec<Event>);

/// The measurements of one device: `series` of metrics sampled together
/// (a cuff's systolic and diastolic), each series with the same times.
fn measurements(subject: &str, dev: &str, series: &[(Metric, &[(i64, f64)])]) -> Vec<Measurement> {
    let d = device(dev);
    (0..series[0].1.len())
        .map(|i| {
            let s = series[0].1[i].0;
            let events = series
                .iter()
                .map(|(metric, values)| {
                    assert_eq!(values[i].0, s, "series of one device share their times");
                    Event::Reading(
                        Reading::new(
                            ts(s),
                            TimeSource::Device,
                            SubjectId::from(subject),
                            Some(d.clone()),
                            metric.clone(),
                            values[i].1,
                        )
                        .unwrap(),
                    )
                })
                .collect();
            (s, events)
        })
        .collect()
}

// ------------------------------------------------------------ the ward

/// One transition of one rule for one subject: (second, transition, state,
/// priority, message).
type A = (i64, X, S, P, String);

fn a(s: i64, x: X, st: S, p: P, m: &str) -> A {
    (s, x, st, p, m.to_owned())
}

/// Drives an engine through measurements in time order, ticking at every
/// deadline in between, with a nurse who acknowledges every alert that
/// sounds [`NURSE`] seconds later.
struct Ward {
    engine: Engine,
    out: Vec<Event>,
    /// Acknowledgements due, in time order.
    acks: Vec<(i64, AlertId)>,
}

impl Ward {
    fn new(tick_interval: TimeDelta) -> Ward {
        Ward {
            engine: engine(EngineOptions {
                tick_interval,
                ..EngineOptions::default()
            }),
            out: Vec::new(),
            acks: Vec::new(),
        }
    }

    fn profile(&mut self, subject: &str, profile: SubjectProfile) {
        self.engine
            .set_profile(ts(0), &SubjectId::from(subject), profile);
    }

    fn params(&mut self, subject: &str, params: &[(&str, f64)]) {
        let p = params.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        self.engine
            .set_params(&SubjectId::from(subject), p)
            .unwrap();
    }

    /// Feeds `measurements` (already in time order) and runs on to `until`.
    fn run(&mut self, measurements: &[Measurement], until: i64) {
        for (s, events) in measurements {
            self.advance_to(*s);
            let from = self.out.len();
            self.engine
                .handle_events_into(ts(*s), events, &mut self.out);
            self.nurse_sees(from);
        }
        self.advance_to(until);
    }

    /// Ticks and acknowledgements due up to second `s`, in time order; a
    /// tick before an acknowledgement of the same instant.
    fn advance_to(&mut self, s: i64) {
        let mut last_tick = None;
        loop {
            let tick = self
                .engine
                .poll_timeout()
                .filter(|&d| d <= ts(s) && Some(d) != last_tick);
            let ack = self.acks.first().map(|x| x.0).filter(|&x| x <= s);
            match (tick, ack) {
                (Some(d), ack) if ack.is_none_or(|x| d <= ts(x)) => {
                    last_tick = Some(d);
                    let from = self.out.len();
                    let out = self.engine.poll_tick(d);
                    self.out.extend(out);
                    self.nurse_sees(from);
                }
                (_, Some(x)) => {
                    let (_, id) = self.acks.remove(0);
                    // The alert may have ended before the nurse came.
                    if let Ok(out) = self.engine.acknowledge(ts(x), &id, "nurse") {
                        self.out.extend(out);
                    }
                }
                _ => break,
            }
        }
    }

    /// Notes an acknowledgement for every alert that sounded since `from`.
    fn nurse_sees(&mut self, from: usize) {
        for e in &self.out[from..] {
            if let Event::Alert(a) = e
                && a.state == S::Active
                && matches!(a.transition, X::Raised | X::PriorityChanged | X::Escalated)
                && !self.acks.iter().any(|x| x.1 == a.id)
            {
                self.acks
                    .push(((a.at - base()).num_seconds() + NURSE, a.id.clone()));
            }
        }
        self.acks.sort_by_key(|x| x.0);
    }

    /// The transitions of `rule` for `subject`, in the order emitted.
    fn alerts(&self, subject: &str, rule: &str) -> Vec<A> {
        details(&self.out, rule)
            .into_iter()
            .filter(|d| d.1 == subject)
            .map(|(s, _, t, st, p, m)| (s, t, st, p, m))
            .collect()
    }

    /// Every rule that raised an alert for `subject`.
    fn raised(&self, subject: &str) -> BTreeSet<String> {
        self.out
            .iter()
            .filter_map(|e| match e {
                Event::Alert(a) if a.subject.as_str() == subject && a.transition == X::Raised => {
                    Some(a.rule.to_string())
                }
                _ => None,
            })
            .collect()
    }
}

fn set(rules: &[&str]) -> BTreeSet<String> {
    rules.iter().map(|r| (*r).to_owned()).collect()
}

/// Merges the measurements of several devices into time order (stable: at
/// one second, devices in the order given).
fn merge(devices: Vec<Vec<Measurement>>) -> Vec<Measurement> {
    let mut all: Vec<Measurement> = devices.into_iter().flatten().collect();
    all.sort_by_key(|m| m.0);
    all
}

// ------------------------------------------------------------ NEWS2 oracle

/// NEWS2 after each measurement of `subject` that touches one of its
/// inputs, scored by the RCP chart functions (tested on their own against
/// the chart): (second, aggregate, highest single score). Every input is
/// re-measured well within the freshness of an hour here, so freshness is
/// not modelled.
fn news2_after_each(
    measurements: &[Measurement],
    subject: &str,
    scale: Spo2Scale,
) -> Vec<(i64, u8, u8)> {
    let mut latest: [Option<f64>; 7] = [None; 7];
    let mut out = Vec::new();
    for (s, events) in measurements {
        let mut touched = false;
        for e in events {
            let Event::Reading(r) = e else { continue };
            if r.subject.as_str() != subject {
                continue;
            }
            let i = match r.metric.name() {
                "resp_rate" => 0,
                "spo2" => 1,
                "o2_flow" => 2,
                "bp_systolic" => 3,
                "heart_rate" | "pulse_rate" => 4,
                "consciousness" => 5,
                "body_temp" => 6,
                _ => continue,
            };
            latest[i] = Some(r.value);
            touched = true;
        }
        if !touched {
            continue;
        }
        if let [
            Some(rr),
            Some(spo2),
            Some(o2),
            Some(sys),
            Some(pulse),
            Some(c),
            Some(t),
        ] = latest
        {
            let score = news2::score(
                &News2Inputs {
                    resp_rate: rr,
                    spo2,
                    on_oxygen: o2 > 0.0,
                    bp_systolic: sys,
                    pulse,
                    consciousness: c,
                    temperature: t,
                },
                scale,
            );
            out.push((*s, score.aggregate(), score.max_single()));
        }
    }
    out
}

const N2_LOW: &str =
    "with a single parameter scoring 3: low-medium clinical risk, urgent ward-based review";
const N2_MEDIUM: &str = "medium clinical risk, urgent review by a clinician";
const N2_HIGH: &str = "high clinical risk, emergency assessment by a critical-care team";

/// The score in force just before second `s` (what a tick at `s` renders).
fn score_before(scores: &[(i64, u8, u8)], s: i64) -> u8 {
    scores.iter().rev().find(|x| x.0 < s).unwrap().1
}

// ------------------------------------------------------------ the tests

#[test]
fn news2_wandering_4_5_then_6_7_is_one_alert_whose_priority_does_not_chatter() {
    let mut rng = Rng(0x4e45_5753);
    let subject = "bed-1";
    // Phases: 0–300 s score 4; A (30 min) 4/5 as the pulse wanders across
    // 110/111 (1/2 points); B (30 min) 6/7 as SpO2 wanders across 93/94
    // (2/1) with pulse 2 and temperature 1; C (75 min) 5/6 as the
    // temperature wanders across 38.0/38.1 (0/1), never 7; D (70 min) 0–2.
    // Scale 1, air, alert, systolic 115–130 (0) throughout; no single
    // parameter ever scores 3, and the temperature stays below the fever
    // rule's 38.3 °C.
    let a0 = 300;
    let b0 = a0 + WANDER;
    let c0 = b0 + WANDER;
    let d0 = c0 + 75 * 60;
    let end = d0 + 70 * 60;

    // Chest patch: heart rate every 1–3 s.
    let mut hr = sample(&mut rng, 0, a0, 1, 3, &range(92, 105));
    let t = every(&mut rng, a0, b0, 1, 3);
    hr.extend(wander(&mut rng, &t, &range(111, 116), &range(105, 110), 4));
    hr.extend(sample(&mut rng, b0, d0, 1, 3, &range(112, 125)));
    hr.extend(sample(&mut rng, d0, end, 1, 3, &range(70, 88)));
    // Respiration from the same patch every 3–5 s: 21–23 (2), then 16–19 (0).
    let mut rr = sample(&mut rng, 0, d0, 3, 5, &range(21, 23));
    rr.extend(sample(&mut rng, d0, end, 3, 5, &range(16, 19)));
    // Oximeter every 2–4 s: 94–95 (1), wandering 92–93 (2) / 94–95 (1) in B,
    // 96–98 (0) in D.
    let mut spo2 = sample(&mut rng, 0, b0, 2, 4, &[94.0, 95.0]);
    let t = every(&mut rng, b0, c0, 2, 4);
    spo2.extend(wander(&mut rng, &t, &[92.0, 93.0], &[94.0, 95.0], 4));
    spo2.extend(sample(&mut rng, c0, d0, 2, 4, &[94.0, 95.0]));
    spo2.extend(sample(&mut rng, d0, end, 2, 4, &range(96, 98)));
    // Temperature patch every minute.
    let minute = |from, to| (from..to).step_by(60).collect::<Vec<i64>>();
    let mut temp = steady(&mut rng, &minute(0, b0), &[37.0, 37.4, 37.8]);
    temp.extend(steady(&mut rng, &minute(b0, c0), &[38.1, 38.2]));
    let t = minute(c0, d0);
    temp.extend(wander(&mut rng, &t, &[38.1, 38.2], &[37.8, 37.9, 38.0], 3));
    temp.extend(steady(&mut rng, &minute(d0, end), &[36.8, 37.1, 37.4]));
    // Cuff every 15 minutes; the nurse's observations every 30.
    let cuff: Vec<i64> = (0..end).step_by(15 * 60).collect();
    let sys = steady(&mut rng, &cuff, &range(115, 130));
    let dia = steady(&mut rng, &cuff, &range(70, 85));
    let obs: Vec<i64> = (0..end).step_by(30 * 60).collect();
    let acvpu = steady(&mut rng, &obs, &[0.0]);
    let o2 = steady(&mut rng, &obs, &[0.0]);

    let input = merge(vec![
        measurements(
            subject,
            "obs",
            &[(Metric::Consciousness, &acvpu), (Metric::O2Flow, &o2)],
        ),
        measurements(
            subject,
            "cuff",
            &[(Metric::BpSystolic, &sys), (Metric::BpDiastolic, &dia)],
        ),
        measurements(subject, "thermo", &[(Metric::BodyTemp, &temp)]),
        measurements(subject, "patch", &[(Metric::HeartRate, &hr)]),
        measurements(subject, "patch-rr", &[(Metric::RespRate, &rr)]),
        measurements(subject, "oximeter", &[(Metric::Spo2, &spo2)]),
    ]);
    let scores = news2_after_each(&input, subject, Spo2Scale::Scale1);
    let in_phase = |from: i64, to: i64| -> Vec<(i64, f64)> {
        scores
            .iter()
            .filter(|x| (from..to).contains(&x.0))
            .map(|x| (x.0, f64::from(x.1)))
            .collect()
    };
    // The score really wanders: hundreds of crossings of each band edge.
    let a_cross = crossings(&in_phase(a0, b0), |v| v >= 5.0);
    let b_cross = crossings(&in_phase(b0, c0), |v| v >= 7.0);
    assert!(a_cross > 200 && b_cross > 200, "{a_cross} {b_cross}");
    assert!(scores.iter().all(|x| x.2 < 3), "a red score");
    // (A minute into C every device has sent a value of C.)
    assert!(
        in_phase(c0 + 60, d0)
            .iter()
            .all(|x| (5.0..7.0).contains(&x.1))
    );

    let mut ward = Ward::new(TimeDelta::seconds(1));
    ward.run(&input, end);

    // Raised (medium) at the first 5; high at the first 7, at once; medium
    // an hour after the first score below 7 that stayed below 7; ended an
    // hour after the first score that stayed below 5.
    let raised = scores.iter().find(|x| x.1 >= 5).unwrap().0;
    let high = scores.iter().find(|x| x.1 >= 7).unwrap().0;
    let lowered = safe_from(&in_phase(0, end), |v| v >= 7.0) + 3600;
    let cleared = safe_from(&in_phase(0, end), |v| v >= 5.0) + 3600;
    assert!(lowered < d0, "the lower band held for the hour within C");
    let medium_then = format!("NEWS2 {}: {N2_MEDIUM}", score_before(&scores, lowered));
    let (m5, h7) = (
        format!("NEWS2 5: {N2_MEDIUM}"),
        format!("NEWS2 7: {N2_HIGH}"),
    );
    let got = ward.alerts(subject, "news2");
    assert_eq!(
        got,
        vec![
            a(raised, X::Raised, S::Active, P::Medium, &m5),
            a(
                raised + NURSE,
                X::Acknowledged,
                S::Acknowledged,
                P::Medium,
                &m5
            ),
            a(high, X::PriorityChanged, S::Active, P::High, &h7),
            a(high + NURSE, X::Acknowledged, S::Acknowledged, P::High, &h7),
            a(
                lowered,
                X::PriorityChanged,
                S::Acknowledged,
                P::Medium,
                &medium_then
            ),
            a(cleared, X::Cleared, S::Cleared, P::Medium, &medium_then),
        ]
    );
    // Hundreds of band-edge crossings, two priority changes: up once, down once.
    let changes = got.iter().filter(|x| x.1 == X::PriorityChanged).count();
    assert_eq!(changes, 2);
    assert_eq!(ward.raised(subject), set(&["news2"]));
}

#[test]
fn spo2_wandering_around_the_copd_target_and_the_news2_red_score() {
    let mut rng = Rng(0x5902);
    // COPD (scale 2): below 88 for 7 minutes (raised after 5), then 30
    // minutes wandering 85–87 / 88–90 (88 is neither low nor clear: the
    // clear needs 89), then 90–94. One oximeter sample every 2–4 s, with
    // the pulse.
    let (t1, t2) = (60, 60 + 7 * 60);
    let t3 = t2 + WANDER;
    let (w0, w1) = (120, 120 + WANDER);
    let end = w1 + 75 * 60;
    let mut copd = sample(&mut rng, 0, t1, 2, 4, &range(90, 93));
    copd.extend(sample(&mut rng, t1, t2, 2, 4, &range(84, 87)));
    let t = every(&mut rng, t2, t3, 2, 4);
    copd.extend(wander(&mut rng, &t, &range(85, 87), &range(88, 90), 15));
    copd.extend(sample(&mut rng, t3, end, 2, 4, &range(90, 94)));
    let copd_pulse = steady(
        &mut rng,
        &copd.iter().map(|x| x.0).collect::<Vec<_>>(),
        &range(70, 80),
    );

    // Scale 1, everything else normal: SpO2 96–98, then 30 minutes
    // wandering 90–91 (3: a red score) / 92–93 (2), then 94–98 for over an
    // hour.
    let mut spo2 = sample(&mut rng, 0, w0, 2, 4, &range(96, 98));
    let t = every(&mut rng, w0, w1, 2, 4);
    spo2.extend(wander(&mut rng, &t, &[90.0, 91.0], &[92.0, 93.0], 15));
    spo2.extend(sample(&mut rng, w1, end, 2, 4, &range(94, 98)));
    let pulse = steady(
        &mut rng,
        &spo2.iter().map(|x| x.0).collect::<Vec<_>>(),
        &range(70, 80),
    );
    let rr = sample(&mut rng, 0, end, 3, 5, &range(14, 18));
    let cuff: Vec<i64> = (0..end).step_by(15 * 60).collect();
    let sys = steady(&mut rng, &cuff, &range(115, 130));
    let dia = steady(&mut rng, &cuff, &range(70, 85));
    let temp = steady(
        &mut rng,
        &(0..end).step_by(60).collect::<Vec<_>>(),
        &[36.8, 37.0, 37.2],
    );
    let obs: Vec<i64> = (0..end).step_by(30 * 60).collect();
    let zero = steady(&mut rng, &obs, &[0.0]);

    let input = merge(vec![
        measurements(
            "copd-1",
            "ox-1",
            &[(Metric::Spo2, &copd), (Metric::PulseRate, &copd_pulse)],
        ),
        measurements(
            "bed-2",
            "obs",
            &[(Metric::Consciousness, &zero), (Metric::O2Flow, &zero)],
        ),
        measurements(
            "bed-2",
            "cuff",
            &[(Metric::BpSystolic, &sys), (Metric::BpDiastolic, &dia)],
        ),
        measurements("bed-2", "thermo", &[(Metric::BodyTemp, &temp)]),
        measurements(
            "bed-2",
            "ox-2",
            &[(Metric::Spo2, &spo2), (Metric::PulseRate, &pulse)],
        ),
        measurements("bed-2", "patch", &[(Metric::RespRate, &rr)]),
    ]);
    assert!(crossings(&copd, |v| v < 88.0) > 200);
    assert!(crossings(&spo2, |v| v <= 91.0) > 200);

    let mut ward = Ward::new(TimeDelta::seconds(1));
    ward.profile(
        "copd-1",
        SubjectProfile {
            spo2_scale: Spo2Scale::Scale2,
            conditions: vec![Condition::Copd],
        },
    );
    ward.run(&input, end);

    // COPD: raised 5 minutes after the first sample below 88 (by the tick);
    // ended 5 minutes after the first sample that stayed at or above 89.
    let r = t1 + 300;
    let m = format!("SpO2 {} % below the COPD target of 88 %", before(&copd, r));
    let cleared = safe_from(&copd, |v| v < 89.0) + 300;
    assert!(cleared > t3);
    assert_eq!(
        ward.alerts("copd-1", "copd_spo2_low"),
        vec![
            a(r, X::Raised, S::Active, P::High, &m),
            a(r + NURSE, X::Acknowledged, S::Acknowledged, P::High, &m),
            a(cleared, X::Cleared, S::Cleared, P::High, &m),
        ]
    );
    assert_eq!(ward.raised("copd-1"), set(&["copd_spo2_low"]));

    // NEWS2: SpO2 90–91 scores 3 on scale 1, a red score with an aggregate
    // of 3: raised low at once; ended an hour after the last red score.
    let scores = news2_after_each(&input, "bed-2", Spo2Scale::Scale1);
    let red: Vec<(i64, f64)> = scores.iter().map(|x| (x.0, f64::from(x.2))).collect();
    let raised = red.iter().find(|x| x.1 >= 3.0).unwrap().0;
    assert_eq!(raised, w0);
    let cleared = safe_from(&red, |v| v >= 3.0) + 3600;
    let m = format!("NEWS2 3 {N2_LOW}");
    assert_eq!(
        ward.alerts("bed-2", "news2"),
        vec![
            a(raised, X::Raised, S::Active, P::Low, &m),
            a(raised + NURSE, X::Acknowledged, S::Acknowledged, P::Low, &m),
            a(cleared, X::Cleared, S::Cleared, P::Low, &m),
        ]
    );
    assert_eq!(ward.raised("bed-2"), set(&["news2"]));
}

#[test]
fn heart_rate_wandering_around_131_and_40_raises_one_alert_each() {
    let mut rng = Rng(0x4852);
    // A chest patch, a sample every 1–3 s. Tachycardia: 95–110 for a
    // minute, 132–140 for 3 minutes (raised after 2), 30 minutes wandering
    // 131–134 / 127–130, then 95–120. Bradycardia likewise around 40/41.
    let (t1, t2) = (60, 60 + 180);
    let t3 = t2 + WANDER;
    let end = t3 + 10 * 60;
    let mut fast = sample(&mut rng, 0, t1, 1, 3, &range(95, 110));
    fast.extend(sample(&mut rng, t1, t2, 1, 3, &range(132, 140)));
    let t = every(&mut rng, t2, t3, 1, 3);
    fast.extend(wander(&mut rng, &t, &range(131, 134), &range(127, 130), 5));
    fast.extend(sample(&mut rng, t3, end, 1, 3, &range(95, 120)));
    let mut slow = sample(&mut rng, 0, t1, 1, 3, &range(55, 65));
    slow.extend(sample(&mut rng, t1, t2, 1, 3, &range(36, 40)));
    let t = every(&mut rng, t2, t3, 1, 3);
    slow.extend(wander(&mut rng, &t, &range(38, 40), &range(41, 43), 5));
    slow.extend(sample(&mut rng, t3, end, 1, 3, &range(55, 70)));
    assert!(crossings(&fast, |v| v >= 131.0) > 300);
    assert!(crossings(&slow, |v| v <= 40.0) > 300);

    let input = merge(vec![
        measurements("fast", "patch-1", &[(Metric::HeartRate, &fast)]),
        measurements("slow", "patch-2", &[(Metric::HeartRate, &slow)]),
    ]);
    let mut ward = Ward::new(TimeDelta::seconds(1));
    ward.run(&input, end);

    // Raised `for` after the first sample on the alarm side (by the tick);
    // ended `clear_for` after the first sample that stayed on the safe side.
    let (tachy, brady): (Alarm, Alarm) = (|v| v >= 131.0, |v| v <= 40.0);
    for (subject, rule, name, series, (for_, clear_for), priority, alarm) in [
        (
            "fast",
            "tachycardia",
            "Tachycardia",
            &fast,
            (120, 120),
            P::Medium,
            tachy,
        ),
        (
            "slow",
            "bradycardia",
            "Bradycardia",
            &slow,
            (60, 60),
            P::High,
            brady,
        ),
    ] {
        let r = t1 + for_;
        let m = format!("{name}: pulse {} /min", before(series, r));
        let cleared = safe_from(series, alarm) + clear_for;
        assert!(cleared > t3);
        assert_eq!(
            ward.alerts(subject, rule),
            vec![
                a(r, X::Raised, S::Active, priority, &m),
                a(r + NURSE, X::Acknowledged, S::Acknowledged, priority, &m),
                a(cleared, X::Cleared, S::Cleared, priority, &m),
            ],
            "{rule}"
        );
        assert_eq!(ward.raised(subject), set(&[rule]));
    }
}

#[test]
fn temperature_wandering_around_38_3_then_38_0_is_one_fever() {
    let mut rng = Rng(0x7e3b);
    // A temperature patch every minute: 37.0–37.4 for 10 minutes, 30
    // minutes wandering 38.3–38.5 / 38.0–38.2 (between the threshold and
    // the clear: the episode simply goes on), 30 minutes wandering around
    // the clear (37.7–37.9 clear, 38.0–38.2 not), then 36.8–37.5.
    let minute = |from, to| (from..to).step_by(60).collect::<Vec<i64>>();
    let (t1, t2) = (600, 600 + WANDER);
    let t3 = t2 + WANDER;
    let end = t3 + 90 * 60;
    let mut temp = steady(&mut rng, &minute(0, t1), &[37.0, 37.2, 37.4]);
    temp.extend(wander(
        &mut rng,
        &minute(t1, t2),
        &[38.3, 38.4, 38.5],
        &[38.0, 38.1, 38.2],
        4,
    ));
    temp.extend(wander(
        &mut rng,
        &minute(t2, t3),
        &[38.0, 38.1, 38.2],
        &[37.7, 37.8, 37.9],
        20,
    ));
    temp.extend(steady(&mut rng, &minute(t3, end), &[36.8, 37.1, 37.5]));
    assert!(crossings(&temp, |v| v >= 38.3) > 10 && crossings(&temp, |v| v < 38.0) > 10);

    let input = measurements("p", "thermo", &[(Metric::BodyTemp, &temp)]);
    let mut ward = Ward::new(TimeDelta::seconds(1));
    ward.params("p", &[("stale_after_s", 600.0)]);
    ward.run(&input, end);

    let m = format!("Fever: {} °C", temp.iter().find(|x| x.0 == t1).unwrap().1);
    let cleared = safe_from(&temp, |v| v >= 38.0) + 3600;
    assert!(cleared > t3);
    assert_eq!(
        ward.alerts("p", "fever"),
        vec![
            a(t1, X::Raised, S::Active, P::Low, &m),
            a(t1 + NURSE, X::Acknowledged, S::Acknowledged, P::Low, &m),
            a(cleared, X::Cleared, S::Cleared, P::Low, &m),
        ]
    );
    assert_eq!(ward.raised("p"), set(&["fever"]));
}

#[test]
fn glucose_meter_wandering_around_70_then_54_is_one_hypoglycaemia() {
    let mut rng = Rng(0x6c75);
    // Spot readings every 4–7 minutes while a hypoglycaemia is treated
    // (never two in a row on the safe side, so never 15 minutes there):
    // A, 30 minutes around 70 (64–69 / 70–75); B, 30 minutes around 54
    // (48–53 / 55–62); C, 25 minutes at level 1 (58–68); D, every 5
    // minutes at 72–90.
    let (a0, b0) = (600, 600 + WANDER);
    let c0 = b0 + WANDER;
    let d0 = c0 + 25 * 60;
    let end = d0 + 30 * 60;
    let mut g = vec![(0, 95.0)];
    let t = every(&mut rng, a0, b0, 240, 420);
    g.extend(wander(&mut rng, &t, &range(64, 69), &range(70, 75), 1));
    let t = every(&mut rng, b0, c0, 240, 420);
    g.extend(wander(&mut rng, &t, &range(48, 53), &range(55, 62), 1));
    g.extend(sample(&mut rng, c0, d0, 240, 420, &range(58, 68)));
    g.extend(sample(&mut rng, d0, end, 300, 300, &range(72, 90)));
    assert!(crossings(&g, |v| v < 70.0) > 4 && crossings(&g, |v| v < 54.0) > 4);

    let input = measurements("p", "meter", &[(Metric::Glucose, &g)]);
    let mut ward = Ward::new(TimeDelta::seconds(1));
    // A meter at home: no "no data" alarm between spot readings.
    ward.params("p", &[("stale_after_s", 86_400.0)]);
    ward.run(&input, end);

    let at = |s: i64| g.iter().find(|x| x.0 == s).unwrap().1;
    let l1 = |v: f64| format!("Hypoglycaemia level 1: glucose {v} mg/dL");
    let l2 = format!("Hypoglycaemia level 2: glucose {} mg/dL", at(b0));
    // Level 2 ends 15 minutes after the first reading that stayed at or
    // above 54 (by the tick); the episode 15 minutes after the first that
    // stayed at or above 70.
    let lowered = safe_from(&g, |v| v < 54.0) + 900;
    let cleared = safe_from(&g, |v| v < 70.0) + 900;
    assert!(lowered < d0 && cleared == d0 + 900);
    let l1_then = l1(before(&g, lowered));
    assert_eq!(
        ward.alerts("p", "hypoglycaemia"),
        vec![
            a(a0, X::Raised, S::Active, P::Medium, &l1(at(a0))),
            a(
                a0 + NURSE,
                X::Acknowledged,
                S::Acknowledged,
                P::Medium,
                &l1(at(a0))
            ),
            a(b0, X::PriorityChanged, S::Active, P::High, &l2),
            a(b0 + NURSE, X::Acknowledged, S::Acknowledged, P::High, &l2),
            a(
                lowered,
                X::PriorityChanged,
                S::Acknowledged,
                P::Medium,
                &l1_then
            ),
            // latching, but acknowledged: it ends rather than latches
            a(cleared, X::Cleared, S::Cleared, P::Medium, &l1_then),
        ]
    );
    assert_eq!(ward.raised("p"), set(&["hypoglycaemia"]));
}

#[test]
fn cgm_alternating_69_71_raises_nothing_and_65_69_raises_once() {
    let mut rng = Rng(0xc6a1);
    let five = |from, to| (from..to).step_by(300).collect::<Vec<i64>>();
    // 69 and 71 in turn every 5 minutes for 2 hours: never 15 consecutive
    // minutes below 70, so no CGM event; likewise 249 and 252.
    let flat: Vec<(i64, f64)> = five(0, 7200)
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, if i % 2 == 0 { 69.0 } else { 71.0 }))
        .collect();
    let flat_high: Vec<(i64, f64)> = five(0, 7200)
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, if i % 2 == 0 { 249.0 } else { 252.0 }))
        .collect();
    // Low: 30 minutes at 65–69 (raised after 15), 30 minutes around 70
    // (66–69 / 70–73 in turn: never 15 minutes at or above), then 72–85.
    let (t1, t2) = (1800, 1800 + WANDER);
    let t3 = t2 + WANDER;
    let end = t3 + WANDER;
    let mut low = steady(&mut rng, &five(0, t1), &range(90, 110));
    low.extend(steady(&mut rng, &five(t1, t2), &range(65, 69)));
    low.extend(wander(
        &mut rng,
        &five(t2, t3),
        &range(66, 69),
        &range(70, 73),
        1,
    ));
    low.extend(steady(&mut rng, &five(t3, end), &range(72, 85)));
    // High: the same around 250.
    let mut high = steady(&mut rng, &five(0, t1), &range(200, 240));
    high.extend(steady(&mut rng, &five(t1, t2), &range(252, 262)));
    high.extend(wander(
        &mut rng,
        &five(t2, t3),
        &range(251, 254),
        &range(246, 250),
        1,
    ));
    high.extend(steady(&mut rng, &five(t3, end), &range(200, 240)));

    let input = merge(vec![
        measurements("flat", "cgm-1", &[(Metric::GlucoseCgm, &flat)]),
        measurements("flat-high", "cgm-2", &[(Metric::GlucoseCgm, &flat_high)]),
        measurements("low", "cgm-3", &[(Metric::GlucoseCgm, &low)]),
        measurements("high", "cgm-4", &[(Metric::GlucoseCgm, &high)]),
    ]);
    let mut ward = Ward::new(TimeDelta::seconds(1));
    for s in ["flat", "flat-high", "low", "high"] {
        // A CGM receiver reports signal loss after 20 minutes.
        ward.params(s, &[("stale_after_s", 1200.0)]);
    }
    ward.run(&input, end);

    for s in ["flat", "flat-high"] {
        assert_eq!(ward.raised(s), set(&[]), "{s}");
        assert!(
            ward.out
                .iter()
                .all(|e| !matches!(e, Event::Alert(a) if a.subject.as_str() == s))
        );
    }
    // Raised 15 minutes after the first value below 70 (above 250), by the
    // tick; ended 15 minutes after the first value that stayed at or above
    // 70 (at or below 250).
    let r = t1 + 900;
    let m = format!(
        "Hypoglycaemia level 1 on CGM: glucose {} mg/dL for 15 minutes",
        before(&low, r)
    );
    let cleared = safe_from(&low, |v| v < 70.0) + 900;
    assert!(cleared > t3);
    assert_eq!(
        ward.alerts("low", "cgm_hypoglycaemia"),
        vec![
            a(r, X::Raised, S::Active, P::Medium, &m),
            a(r + NURSE, X::Acknowledged, S::Acknowledged, P::Medium, &m),
            a(cleared, X::Cleared, S::Cleared, P::Medium, &m),
        ]
    );
    assert_eq!(ward.raised("low"), set(&["cgm_hypoglycaemia"]));
    let m = format!(
        "Hyperglycaemia on CGM: glucose {} mg/dL for 15 minutes",
        before(&high, r)
    );
    let cleared = safe_from(&high, |v| v > 250.0) + 900;
    assert!(cleared > t3);
    assert_eq!(
        ward.alerts("high", "cgm_hyperglycaemia"),
        vec![
            a(r, X::Raised, S::Active, P::Medium, &m),
            a(r + NURSE, X::Acknowledged, S::Acknowledged, P::Medium, &m),
            a(cleared, X::Cleared, S::Cleared, P::Medium, &m),
        ]
    );
    assert_eq!(ward.raised("high"), set(&["cgm_hyperglycaemia"]));
}

#[test]
fn blood_pressure_wandering_around_180_then_170_is_one_crisis() {
    let mut rng = Rng(0xb9);
    // A cuff every 5–15 minutes: systolic, diastolic and pulse fed as one
    // measurement. A, 30 minutes at 178–184 around 180 (178–180 is not yet
    // the clear, ≤ 170); B, 30 minutes around the clear (166–170 / 171–175
    // in turn: never 30 minutes at or below 170); C, 140–165.
    let (a0, b0) = (600, 600 + WANDER);
    let c0 = b0 + WANDER;
    let end = c0 + 60 * 60;
    let mut sys = vec![(0, 150.0)];
    let t = every(&mut rng, a0, b0, 300, 900);
    sys.extend(wander(&mut rng, &t, &range(181, 184), &range(178, 180), 3));
    let t = every(&mut rng, b0, c0, 300, 900);
    sys.extend(wander(&mut rng, &t, &range(171, 175), &range(166, 170), 1));
    sys.extend(sample(&mut rng, c0, end, 300, 900, &range(140, 165)));
    let times: Vec<i64> = sys.iter().map(|x| x.0).collect();
    let dia = steady(&mut rng, &times, &range(91, 105));
    let pulse = steady(&mut rng, &times, &range(70, 85));
    assert!(crossings(&sys, |v| v > 180.0) > 1 && crossings(&sys, |v| v > 170.0) > 1);

    let input = measurements(
        "p",
        "cuff",
        &[
            (Metric::BpSystolic, &sys),
            (Metric::BpDiastolic, &dia),
            (Metric::PulseRate, &pulse),
        ],
    );
    let mut ward = Ward::new(TimeDelta::seconds(1));
    ward.params("p", &[("stale_after_s", 86_400.0)]);
    ward.run(&input, end);

    // The message of the measurement that raised it: its own systolic and
    // diastolic, fed together (not the diastolic of the cuff cycle before).
    let i = times.iter().position(|&s| s == a0).unwrap();
    let m = format!("Hypertensive crisis: BP {}/{} mm Hg", sys[i].1, dia[i].1);
    let cleared = safe_from(&sys, |v| v > 170.0) + 1800;
    assert!(cleared > c0);
    assert_eq!(
        ward.alerts("p", "hypertensive_crisis"),
        vec![
            a(a0, X::Raised, S::Active, P::High, &m),
            a(a0 + NURSE, X::Acknowledged, S::Acknowledged, P::High, &m),
            a(cleared, X::Cleared, S::Cleared, P::High, &m),
        ]
    );
    assert_eq!(ward.raised("p"), set(&["hypertensive_crisis"]));
}

#[test]
fn daily_weights_of_a_steady_gain_are_one_heart_failure_episode() {
    let mut rng = Rng(0x4f);
    let day = 86_400;
    let hour = 3_600;
    // Weighed every morning around 07:30, give or take two hours: a person,
    // not a timer.
    let at: Vec<i64> = (0..14)
        .map(|d| d * day + 7 * hour + 1800 + rng.int(-2 * hour, 2 * hour))
        .collect();
    // 80 kg for three days, then a gain of 0.72 kg a day for eight days
    // (fluid retained), then diuresis. Against the weighing of three days
    // before the gain is 2.16 ± 0.1 kg, above 2; against the one of two days
    // before 1.44 ± 0.1 kg. The pack's 80-hour window keeps the weighing of
    // three days before whatever the hour of both, so between weighings the
    // rise drops to 1.44 kg (when that one leaves) and is back above 2 kg at
    // the next weighing: the condition crosses 2 kg twice a day for days.
    let mut w: Vec<f64> = Vec::new();
    for d in 0..14 {
        let noise = rng.int(-5, 5) as f64 / 100.0;
        let trend = match d {
            0..=2 => 80.0,
            3..=10 => 80.0 + 0.72 * (d - 2) as f64,
            _ => 80.0 + 0.72 * 8.0 - 0.5 * (d - 10) as f64,
        };
        w.push(((trend + noise) * 100.0).round() / 100.0);
    }
    for d in 5..=10 {
        assert!(w[d] - w[d - 3] > 2.0 && w[d] - w[d - 2] <= 2.0, "day {d}");
    }
    let weights: Vec<(i64, f64)> = (0..14).map(|d| (at[d], w[d])).collect();
    let input = measurements("hf", "scale", &[(Metric::BodyWeight, &weights)]);

    let mut ward = Ward::new(TimeDelta::minutes(1));
    ward.profile(
        "hf",
        SubjectProfile {
            conditions: vec![Condition::HeartFailure],
            ..SubjectProfile::default()
        },
    );
    // A home scale: no "no data" alarm between daily weighings.
    ward.params("hf", &[("stale_after_s", 2.0 * day as f64)]);
    ward.run(&input, at[13] + hour);

    // Raised at the first weighing more than 2 kg above the lowest of the
    // last 80 hours (day 5), acknowledged, and ended once: 36 hours after
    // the rise last fell to 2 kg or less. That fall comes after day 10's
    // weighing (the last one above) — when day 7's leaves the window — and
    // before day 11's.
    let m = format!(
        "Weight gain in heart failure: {} kg, more than 2 kg in 3 days",
        (w[5] * 10.0).round() / 10.0
    );
    let alerts = ward.alerts("hf", "hf_weight_gain");
    assert_eq!(alerts.len(), 3, "{alerts:#?}");
    assert_eq!(alerts[0], a(at[5], X::Raised, S::Active, P::Medium, &m));
    assert_eq!(
        alerts[1],
        a(
            at[5] + NURSE,
            X::Acknowledged,
            S::Acknowledged,
            P::Medium,
            &m
        )
    );
    let cleared = alerts[2].0;
    assert_eq!(alerts[2], a(cleared, X::Cleared, S::Cleared, P::Medium, &m));
    let fell = cleared - 36 * hour;
    assert!(fell > at[10] && fell < at[11], "{fell} vs {at:?}");
    assert!(
        fell >= at[7] + 80 * hour,
        "{fell}: day 7's weighing still counts"
    );
    assert_eq!(ward.raised("hf"), set(&["hf_weight_gain"]));
}
