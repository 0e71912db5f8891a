//! NEWS2 through the engine: derived scores, one rule whose priority follows
//! three bands, scale 2, freshness. Expected scores are added up by hand from the RCP 2017 chart.

use chrono::TimeDelta;
use serde_json::json;
use wardgate_model::{AlertState as S, Priority as P, Transition as X};
use wardgate_rules::EngineOptions;

use crate::helpers::*;

/// All seven parameters normal at second `s`: RR 16 (0), SpO2 97 (0), air (0),
/// systolic 120 (0), pulse 70 (0), Alert (0), 37.0 °C (0) → 0.
fn normal(s: i64, subject: &str) -> Vec<String> {
    vec![
        reading(s, subject, "resp_rate", 16.0),
        reading(s, subject, "spo2", 97.0),
        reading(s, subject, "o2_flow", 0.0),
        reading(s, subject, "bp_systolic", 120.0),
        reading(s, subject, "heart_rate", 70.0),
        reading(s, subject, "consciousness", 0.0),
        reading(s, subject, "body_temp", 37.0),
    ]
}

const LOW: &str =
    "with a single parameter scoring 3: low-medium clinical risk, urgent ward-based review";
const MEDIUM: &str = "medium clinical risk, urgent review by a clinician";
const HIGH: &str = "high clinical risk, emergency assessment by a critical-care team";

#[test]
fn one_episode_whose_priority_follows_the_bands() {
    let r = "news2";
    let mut lines = normal(0, "bed-1");
    lines.extend([
        // RR 25 scores 3 → aggregate 3 with a red score: raised, low.
        reading(60, "bed-1", "resp_rate", 25.0),
        // pulse 115 scores 2 → 5: medium at once, the same alert.
        reading(120, "bed-1", "heart_rate", 115.0),
        // oxygen scores 2 → 7: high at once.
        reading(180, "bed-1", "o2_flow", 2.0),
        ack(240, "bed-1", r),
    ]);
    // All seven again at 300 s: RR 16 (0) → 4, air → 2, pulse 70 → 0. The
    // score is below 5 without a red score: the 1-hour hold starts.
    lines.extend(normal(300, "bed-1"));
    // RR 25 again at 1800 s, within the hold: the same episode (no new
    // alert), and the hold starts over when it is 16 again at 1860 s.
    lines.push(reading(1800, "bed-1", "resp_rate", 25.0));
    lines.push(reading(1860, "bed-1", "resp_rate", 16.0));
    // The next hourly round keeps the score fresh; the episode ends at
    // 1860 + 3600 = 5460 s without a reading.
    lines.extend(normal(3600, "bed-1"));
    lines.push(reading(6000, "bed-1", "resp_rate", 16.0));
    let events = run(&lines);
    let news2_rules: Vec<_> = transitions(&events, None)
        .into_iter()
        .filter(|t| t.2.starts_with("news2"))
        .collect();
    // One rule, one alert: no other NEWS2 rule exists any more.
    assert!(news2_rules.iter().all(|t| t.2 == r), "{news2_rules:?}");
    let high = format!("NEWS2 7: {HIGH}");
    assert_eq!(
        details(&events, r),
        vec![
            dt(
                60,
                "bed-1",
                X::Raised,
                S::Active,
                P::Low,
                &format!("NEWS2 3 {LOW}")
            ),
            dt(
                120,
                "bed-1",
                X::PriorityChanged,
                S::Active,
                P::Medium,
                &format!("NEWS2 5: {MEDIUM}")
            ),
            dt(180, "bed-1", X::PriorityChanged, S::Active, P::High, &high),
            dt(
                240,
                "bed-1",
                X::Acknowledged,
                S::Acknowledged,
                P::High,
                &high
            ),
            // lowered only by holding a lower band, never by the clear's hold
            dt(5460, "bed-1", X::Cleared, S::Cleared, P::High, &high),
        ]
    );
    assert_eq!(
        news2_scores(&events),
        vec![
            (0, 0.0),
            (60, 3.0),
            (120, 5.0),
            (180, 7.0),
            (300, 4.0),
            (300, 2.0),
            (300, 0.0),
            (1800, 3.0),
            (1860, 0.0),
        ]
    );
}

#[test]
fn priority_goes_down_only_after_the_lower_band_held_for_clear_for() {
    let r = "news2";
    // clear_for 30 minutes instead of the pack's hour, as a site may set it.
    let mut engine = engine(EngineOptions {
        clear_for: [(r.to_owned(), TimeDelta::minutes(30))].into(),
        ..EngineOptions::default()
    });
    let mut lines = normal(0, "bed-1");
    lines.extend([
        // RR 22 (2), then pulse 115 (2): 4; then oxygen (2): 6, raised medium.
        reading(60, "bed-1", "resp_rate", 22.0),
        reading(60, "bed-1", "heart_rate", 115.0),
        reading(60, "bed-1", "o2_flow", 2.0),
        // 37.0 → 38.5 °C (1): 7, high at once.
        reading(120, "bed-1", "body_temp", 38.5),
        ack(130, "bed-1", r),
        // 6 from 600 s: still high until that has held for 30 minutes.
        reading(600, "bed-1", "body_temp", 37.5),
        // 7 again at 1500 s: the 30 minutes start over at 1560 s.
        reading(1500, "bed-1", "body_temp", 38.5),
        reading(1560, "bed-1", "body_temp", 37.5),
        // 6 held from 1560 s: medium at 1560 + 1800 = 3360 s, by the tick
        // (before the observations of 0 s go stale at 3601 s).
        reading(3500, "bed-1", "spo2", 97.0),
    ]);
    let (events, _) = run_with(&lines, &mut engine);
    let (medium, high) = (format!("NEWS2 6: {MEDIUM}"), format!("NEWS2 7: {HIGH}"));
    assert_eq!(
        details(&events, r),
        vec![
            dt(60, "bed-1", X::Raised, S::Active, P::Medium, &medium),
            dt(120, "bed-1", X::PriorityChanged, S::Active, P::High, &high),
            dt(
                130,
                "bed-1",
                X::Acknowledged,
                S::Acknowledged,
                P::High,
                &high
            ),
            dt(
                3360,
                "bed-1",
                X::PriorityChanged,
                S::Acknowledged,
                P::Medium,
                &medium
            ),
        ]
    );
}

#[test]
fn scale_2_scores_high_saturation_on_oxygen() {
    // Same readings for two subjects on oxygen with SpO2 97:
    // scale 1: SpO2 97 (0) + oxygen (2) = 2; scale 2: SpO2 ≥97 on oxygen (3) + oxygen (2) = 5.
    let mut lines = vec![profile(
        "copd-1",
        &json!({"spo2_scale": 2, "conditions": ["copd"]}),
    )];
    for s in ["bed-1", "copd-1"] {
        let mut n = normal(0, s);
        n[2] = reading(0, s, "o2_flow", 2.0);
        lines.extend(n);
    }
    let events = run(&lines);
    let by_subject = |subj: &str| -> Vec<f64> {
        events
            .iter()
            .filter_map(|e| match e {
                wardgate_model::Event::Reading(r) if r.subject.as_str() == subj => Some(r.value),
                _ => None,
            })
            .collect()
    };
    assert_eq!(by_subject("bed-1"), vec![2.0]);
    assert_eq!(by_subject("copd-1"), vec![5.0]);
    assert_eq!(
        details(&events, "news2"),
        vec![dt(
            0,
            "copd-1",
            X::Raised,
            S::Active,
            P::Medium,
            &format!("NEWS2 5: {MEDIUM}")
        )]
    );
}

#[test]
fn pulse_rate_counts_when_heart_rate_is_absent_and_the_newer_one_wins() {
    let mut lines = normal(0, "bed-1");
    lines.remove(4); // no heart_rate
    lines.push(reading(0, "bed-1", "pulse_rate", 70.0)); // 0 → aggregate 0
    lines.push(reading(10, "bed-1", "heart_rate", 135.0)); // newer: pulse 135 → 3
    lines.push(reading(20, "bed-1", "pulse_rate", 95.0)); // newer again: 95 → 1
    assert_eq!(
        news2_scores(&run(&lines)),
        vec![(0, 0.0), (10, 3.0), (20, 1.0)]
    );
}

#[test]
fn stale_parameters_stop_the_score_but_do_not_clear_alerts() {
    let mut lines = normal(0, "bed-1");
    // Aggregate 7 with fresh values: RR 25 (3) + oxygen (2) + pulse 115 (2).
    lines.push(reading(1, "bed-1", "resp_rate", 25.0));
    lines.push(reading(1, "bed-1", "o2_flow", 2.0));
    lines.push(reading(1, "bed-1", "heart_rate", 115.0));
    // 10 minutes later only SpO2 is re-measured: freshness is 5 minutes in
    // this test, so no score and no clearing.
    lines.push(reading(601, "bed-1", "spo2", 99.0));
    let mut engine = engine(EngineOptions {
        news2_freshness: TimeDelta::minutes(5),
        ..EngineOptions::default()
    });
    let (events, _) = run_with(&lines, &mut engine);
    assert_eq!(
        news2_scores(&events),
        vec![(0, 0.0), (1, 3.0), (1, 5.0), (1, 7.0)]
    );
    // Raised at 1 s and up to high with the next two lines of the same
    // second (replay feeds one line at a time), escalated every 5 minutes
    // while nobody acknowledges it, never cleared by missing data.
    let high = format!("NEWS2 7: {HIGH}");
    assert_eq!(
        details(&events, "news2"),
        vec![
            dt(
                1,
                "bed-1",
                X::Raised,
                S::Active,
                P::Low,
                &format!("NEWS2 3 {LOW}")
            ),
            dt(
                1,
                "bed-1",
                X::PriorityChanged,
                S::Active,
                P::Medium,
                &format!("NEWS2 5: {MEDIUM}")
            ),
            dt(1, "bed-1", X::PriorityChanged, S::Active, P::High, &high),
            dt(301, "bed-1", X::Escalated, S::Active, P::High, &high),
            dt(601, "bed-1", X::Escalated, S::Active, P::High, &high),
        ]
    );
}

#[test]
fn a_site_sets_the_escalation_time_of_a_rule_and_its_bands() {
    let r = "news2";
    // One minute instead of the bands' 5 and 15 minutes.
    let mut engine = engine(EngineOptions {
        escalate_after: [(r.to_owned(), TimeDelta::minutes(1))].into(),
        ..EngineOptions::default()
    });
    let mut lines = normal(0, "bed-1");
    lines.extend([
        // RR 22 (2), pulse 115 (2), oxygen (2): 6, raised medium.
        reading(60, "bed-1", "resp_rate", 22.0),
        reading(60, "bed-1", "heart_rate", 115.0),
        reading(60, "bed-1", "o2_flow", 2.0),
        reading(200, "bed-1", "spo2", 97.0),
    ]);
    let (events, _) = run_with(&lines, &mut engine);
    let medium = format!("NEWS2 6: {MEDIUM}");
    assert_eq!(
        details(&events, r),
        vec![
            dt(60, "bed-1", X::Raised, S::Active, P::Medium, &medium),
            dt(120, "bed-1", X::Escalated, S::Active, P::Medium, &medium),
            dt(180, "bed-1", X::Escalated, S::Active, P::Medium, &medium),
        ]
    );
    // A rule that does not exist is refused when the engine is built.
    let refused = wardgate_rules::Engine::new(
        wardgate_rules::RuleSet::compile(&[], &wardgate_model::MetricRegistry::default()).unwrap(),
        EngineOptions {
            escalate_after: [("nope".to_owned(), TimeDelta::minutes(1))].into(),
            ..EngineOptions::default()
        },
    );
    assert_eq!(
        refused.err().map(|e| e.to_string()),
        Some("escalate_after names unknown rule 'nope'".to_owned())
    );
}

#[test]
fn a_site_sets_the_onset_delay_of_a_rule() {
    let r = "device_offline";
    // A cuff drops its link after measuring; the next measurement is a day later.
    let lines = [
        device_event(0, "p-1", "cuff", "offline"),
        reading(120, "p-1", "bp_systolic", 128.0),
        reading(93_660, "p-1", "bp_systolic", 131.0),
    ];
    let raised = |opts: EngineOptions| -> Vec<i64> {
        let (events, _) = run_with(&lines, &mut engine(opts));
        transitions(&events, Some(r))
            .into_iter()
            .filter(|t| t.3 == X::Raised)
            .map(|t| t.0)
            .collect()
    };
    // The pack's 30 s.
    assert_eq!(raised(EngineOptions::default()), vec![30]);
    // A home hub's 26 hours: offline for longer than a day between measurements.
    let day = raised(EngineOptions {
        for_: [(r.to_owned(), TimeDelta::hours(26))].into(),
        ..EngineOptions::default()
    });
    assert_eq!(day, vec![93_600]);
}
