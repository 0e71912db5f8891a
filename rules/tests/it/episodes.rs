//! Episodes at their edges: a score that goes stale, a priority stepping
//! down two bands, a latched alert coming back worse, and a device clock
//! running ahead.

use chrono::TimeDelta;
use wardgate_model::{
    AlertState as S, DeviceKind, DeviceRef, Event, Metric, Priority as P, Reading, SubjectProfile,
    TimeSource, Transition as X,
};
use wardgate_rules::EngineOptions;

use crate::helpers::{ack, base, details, dt, engine, reading, run};

/// The seven NEWS2 parameters of `subject` at second `s`.
fn news2_set(s: i64, subject: &str, rr: f64, hr: f64) -> Vec<String> {
    [
        ("resp_rate", rr),
        ("spo2", 97.0),
        ("o2_flow", 0.0),
        ("bp_systolic", 120.0),
        ("heart_rate", hr),
        ("consciousness", 0.0),
        ("body_temp", 37.0),
    ]
    .into_iter()
    .map(|(m, v)| reading(s, subject, m, v))
    .collect()
}

#[test]
fn a_stale_score_leaves_the_priority_and_the_escalation_as_they_are() {
    // RR 25 scores 3 and HR 135 scores 3, everything else 0: NEWS2 6, medium.
    let mut lines = news2_set(0, "b", 25.0, 135.0);
    // One parameter re-measured two hours later: the others are stale by
    // then (news2_freshness 1 h), so there is no score from 3600 s on.
    lines.push(reading(9000, "b", "spo2", 97.0));
    let events = run(&lines);
    let got = details(&events, "news2");
    // Raised medium; escalations every 15 minutes go on through the stale
    // period; never a priority change, never "NEWS2 not available".
    assert_eq!(got[0].2, X::Raised);
    assert_eq!(got[0].4, P::Medium);
    assert!(got.iter().all(|d| d.4 == P::Medium), "{got:#?}");
    assert!(
        got.iter()
            .all(|d| d.2 != X::PriorityChanged && d.2 != X::Cleared),
        "{got:#?}"
    );
    let escalations = got.iter().filter(|d| d.2 == X::Escalated).count();
    assert_eq!(escalations, 9000 / 900, "{got:#?}");
}

#[test]
fn stepping_down_two_bands_takes_the_hold_at_each() {
    // Scores from RR (≥ 25: 3) and HR (111–130: 2, ≥ 131: 3), all else 0.
    let mut lines = news2_set(0, "b", 25.0, 135.0); // 6: medium
    lines.extend(news2_set(10, "b", 25.0, 135.0)); // unchanged
    lines.push(reading(20, "b", "resp_rate", 25.0));
    lines.push(reading(20, "b", "bp_systolic", 95.0)); // + 2 (91–100): 8, high
    lines.push(ack(30, "b", "news2"));
    lines.push(reading(600, "b", "bp_systolic", 120.0)); // 6: medium from 600
    lines.push(reading(3000, "b", "heart_rate", 80.0)); // 3 (RR): low from 3000
    // Keep every parameter fresh.
    for s in [3500, 5000, 6500, 8000] {
        lines.extend(news2_set(s, "b", 25.0, 80.0));
    }
    let events = run(&lines);
    let got: Vec<(i64, X, P)> = details(&events, "news2")
        .into_iter()
        .filter(|d| matches!(d.2, X::Raised | X::PriorityChanged))
        .map(|d| (d.0, d.2, d.4))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, X::Raised, P::Medium),
            (20, X::PriorityChanged, P::High),
            // medium since 600: an hour later
            (4200, X::PriorityChanged, P::Medium),
            // low since 3000: an hour later, not at 4200 with the medium
            (6600, X::PriorityChanged, P::Low),
        ]
    );
}

#[test]
fn a_latched_alert_that_comes_back_worse_rises_at_once() {
    let r = "hypoglycaemia";
    let lines = [
        reading(0, "p", "glucose", 65.0),    // level 1: medium
        reading(60, "p", "glucose", 80.0),   // back: latched 15 minutes later
        reading(1200, "p", "glucose", 45.0), // level 2 while latched
    ];
    let events = run(&lines);
    let l1 = "Hypoglycaemia level 1: glucose 65 mg/dL";
    let l2 = "Hypoglycaemia level 2: glucose 45 mg/dL";
    assert_eq!(
        details(&events, r)
            .into_iter()
            .filter(|d| d.2 != X::Escalated)
            .collect::<Vec<_>>(),
        vec![
            dt(0, "p", X::Raised, S::Active, P::Medium, l1),
            dt(960, "p", X::Latched, S::Latched, P::Medium, l1),
            dt(1200, "p", X::PriorityChanged, S::Latched, P::High, l2),
        ]
    );
}

#[test]
fn a_device_clock_far_ahead_neither_masks_newer_values_nor_looks_fresh() {
    let device = DeviceRef::new("ox-9".into(), DeviceKind::Ble);
    let stamped = |subject: &str, at_s: i64, metric: Metric, value: f64| {
        Event::Reading(
            Reading::new(
                base() + TimeDelta::seconds(at_s),
                TimeSource::Device,
                subject.into(),
                Some(device.clone()),
                metric,
                value,
            )
            .unwrap(),
        )
    };
    let mut e = engine(EngineOptions::default());
    let now = |s: i64| base() + TimeDelta::seconds(s);
    let _ = e.set_profile(
        now(0),
        &"copd".into(),
        SubjectProfile {
            conditions: vec![wardgate_model::Condition::Copd],
            ..SubjectProfile::default()
        },
    );
    let mut out = Vec::new();
    let twenty_hours = 20 * 3600;
    // Both subjects: one reading stamped 20 h ahead of the engine's clock.
    for subject in ["copd", "quiet"] {
        e.handle_events_into(
            now(0),
            &[stamped(subject, twenty_hours, Metric::Spo2, 95.0)],
            &mut out,
        );
    }
    // The COPD patient's SpO2 then falls, stamped correctly, once a minute.
    let mut s = 0;
    while s < 900 {
        s += 1;
        out.extend(e.poll_tick(now(s)));
        if s % 60 == 0 {
            e.handle_events_into(now(s), &[stamped("copd", s, Metric::Spo2, 84.0)], &mut out);
        }
    }
    let raised = |subject: &str, rule: &str| {
        out.iter().find_map(|ev| match ev {
            Event::Alert(a)
                if a.subject.as_str() == subject
                    && a.rule.as_str() == rule
                    && a.transition == X::Raised =>
            {
                Some((a.at - base()).num_seconds())
            }
            _ => None,
        })
    };
    // The later low SpO2 counts (5 minutes below 88 % from the first at 60 s) ...
    assert_eq!(raised("copd", "copd_spo2_low"), Some(360));
    // ... and a subject whose only reading was stamped in the future is
    // "no data" 300 s after it arrived, not 20 hours later.
    assert_eq!(raised("quiet", "data_stale"), Some(301));
}

#[test]
fn open_alerts_are_restored_with_their_state_and_unknown_ones_end_explicitly() {
    let glucose = |s: i64, v: f64| {
        Event::Reading(
            Reading::new(
                base() + TimeDelta::seconds(s),
                TimeSource::Device,
                "p".into(),
                None,
                Metric::Glucose,
                v,
            )
            .unwrap(),
        )
    };
    let now = |s: i64| base() + TimeDelta::seconds(s);
    let mut before = engine(EngineOptions::default());
    let raised: Vec<wardgate_model::Alert> = before
        .handle_event(now(0), &glucose(0, 50.0))
        .into_iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(raised.len(), 1);
    let mut gone = raised[0].clone();
    gone.rule = "a_rule_removed_since".into();
    gone.id = wardgate_model::AlertId("p/a_rule_removed_since/x".into());

    // A new process: the same alert is open again, the other ends explicitly.
    let mut after = engine(EngineOptions::default());
    let ended = after.restore(now(60), &[raised[0].clone(), gone]);
    let Some(Event::Alert(end)) = ended.first() else {
        panic!("{ended:?}")
    };
    assert_eq!((end.transition, end.state), (X::Cleared, S::Cleared));
    assert!(
        end.message
            .ends_with("not restored after a restart: its rule is no longer configured"),
        "{}",
        end.message
    );
    assert_eq!(ended.len(), 1);
    let open = after.open_alerts();
    assert_eq!(open.len(), 1);
    assert_eq!((&open[0].0, open[0].3), (&raised[0].id, S::Active));
    // It goes on as the same episode: glucose back up, latched 15 minutes later.
    let mut out = Vec::new();
    after.handle_events_into(now(120), &[glucose(120, 90.0)], &mut out);
    let mut s = 120;
    while s < 120 + 16 * 60 {
        s += 1;
        out.extend(after.poll_tick(now(s)));
    }
    let latched: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) if a.transition == X::Latched => Some((a.id.clone(), a.priority)),
            _ => None,
        })
        .collect();
    assert_eq!(latched, vec![(raised[0].id.clone(), P::High)]);
    // ... and no second hypoglycaemia alert.
    assert!(!out.iter().any(
        |e| matches!(e, Event::Alert(a) if a.rule.as_str() == "hypoglycaemia" && a.transition == X::Raised)
    ));
}
