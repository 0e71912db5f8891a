//! NEWS2 through the engine: derived scores, the three alert bands, scale 2,
//! freshness. Expected scores are added up by hand from the RCP 2017 chart.

use chrono::TimeDelta;
use serde_json::json;
use wardgate_model::{AlertState as S, Transition as X};
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

#[test]
fn bands_raise_and_clear_the_right_alerts() {
    let mut lines = normal(0, "bed-1");
    lines.extend([
        // RR 25 scores 3 → aggregate 3 with a red score: low alert.
        reading(60, "bed-1", "resp_rate", 25.0),
        // pulse 115 scores 2 → 5: medium; the single-red alert clears (aggregate ≥ 5).
        reading(120, "bed-1", "heart_rate", 115.0),
        // oxygen scores 2 → 7: high; medium clears.
        reading(180, "bed-1", "o2_flow", 2.0),
        ack(240, "bed-1", "news2_high"),
        // RR 16 (0) → 4: high clears (already acknowledged).
        reading(300, "bed-1", "resp_rate", 16.0),
        // pulse 70 → 2, air → 0.
        reading(300, "bed-1", "heart_rate", 70.0),
        reading(300, "bed-1", "o2_flow", 0.0),
    ]);
    let events = run(&lines);
    let news2_rules: Vec<_> = transitions(&events, None)
        .into_iter()
        .filter(|t| t.2.starts_with("news2"))
        .collect();
    assert_eq!(
        news2_rules,
        sorted(vec![
            tr(60, "bed-1", "news2_single_red", X::Raised, S::Active),
            tr(120, "bed-1", "news2_single_red", X::Cleared, S::Cleared),
            tr(120, "bed-1", "news2_medium", X::Raised, S::Active),
            tr(180, "bed-1", "news2_medium", X::Cleared, S::Cleared),
            tr(180, "bed-1", "news2_high", X::Raised, S::Active),
            tr(240, "bed-1", "news2_high", X::Acknowledged, S::Acknowledged),
            tr(300, "bed-1", "news2_high", X::Cleared, S::Cleared),
        ])
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
            (300, 0.0)
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
        transitions(&events, Some("news2_medium")),
        vec![tr(0, "copd-1", "news2_medium", X::Raised, S::Active)]
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
    let high: Vec<_> = transitions(&events, Some("news2_high"));
    // Raised at 1 s, escalated every 5 minutes while nobody acknowledges it,
    // never cleared by missing data.
    assert_eq!(
        high,
        vec![
            tr(1, "bed-1", "news2_high", X::Raised, S::Active),
            tr(301, "bed-1", "news2_high", X::Escalated, S::Active),
            tr(601, "bed-1", "news2_high", X::Escalated, S::Active),
        ]
    );
}
