//! Replay of recorded series for every built-in rule, with every pack active;
//! each test looks at the transitions of the rule under test. Expected
//! transitions follow from the rule definitions in config/rules/ (thresholds,
//! `for`, `clear`, the `clear_for` hold time, priority bands, latching,
//! escalate_after), worked out by hand in comments. Where a rule has a hold
//! time, its test also shows the condition returning within the hold: the
//! same episode goes on.

use chrono::TimeDelta;
use serde_json::json;
use wardgate_model::{AlertState as S, Event, Priority as P, Transition as X};
use wardgate_rules::EngineOptions;

use crate::helpers::*;

fn check(lines: &[String], rule: &str, want: Vec<T>) {
    let events = run(lines);
    assert_eq!(
        transitions(&events, Some(rule)),
        sorted(want),
        "rule {rule}"
    );
}

// ------------------------------------------------------------ chronic

#[test]
fn hypertensive_crisis_with_hysteresis_diastolic_path_and_hold_time() {
    let r = "hypertensive_crisis";
    let lines = [
        reading(0, "p", "bp_systolic", 150.0),
        reading(0, "p", "bp_diastolic", 90.0),
        reading(60, "p", "bp_systolic", 185.0), // > 180: raised
        reading(120, "p", "bp_systolic", 175.0), // not ≤ 170: no clearing yet
        reading(180, "p", "bp_systolic", 170.0), // ≤ 170 and 90 ≤ 110: clearing from 180
        // > 120 within the 30-minute hold: the same episode goes on.
        reading(300, "p", "bp_diastolic", 125.0),
        ack(400, "p", r),
        reading(1000, "p", "bp_diastolic", 100.0), // clearing from 1000
        // 175 is neither above 180 nor at or below 170: the hold starts over.
        reading(1500, "p", "bp_systolic", 175.0),
        reading(1600, "p", "bp_systolic", 168.0), // clearing from 1600
        reading(2500, "p", "bp_systolic", 165.0),
        reading(2500, "p", "bp_diastolic", 95.0),
        // 1600 + 30 min = 3400: cleared by the tick, without a reading.
        reading(3600, "p", "bp_systolic", 190.0), // a new episode
    ];
    let events = run(&lines);
    assert_eq!(
        transitions(&events, Some(r)),
        vec![
            tr(60, "p", r, X::Raised, S::Active),
            tr(400, "p", r, X::Acknowledged, S::Acknowledged),
            tr(3400, "p", r, X::Cleared, S::Cleared),
            tr(3600, "p", r, X::Raised, S::Active),
        ]
    );
    let raised: Vec<_> = details(&events, r)
        .into_iter()
        .filter(|d| d.2 == X::Raised)
        .map(|d| d.5)
        .collect();
    assert_eq!(
        raised,
        [
            "Hypertensive crisis: BP 185/90 mm Hg",
            "Hypertensive crisis: BP 190/95 mm Hg"
        ]
    );
}

#[test]
fn hypoglycaemia_is_one_episode_whose_priority_follows_the_level_and_latches() {
    let r = "hypoglycaemia";
    let lines = [
        reading(0, "p", "glucose", 100.0),
        reading(60, "p", "glucose", 65.0),  // < 70: level 1, medium
        reading(120, "p", "glucose", 50.0), // < 54: level 2, high at once
        reading(180, "p", "glucose", 80.0), // ≥ 70: the 15-minute hold starts
        // < 70 again within the hold: the same episode (level 1 now, but
        // the priority stays high until that has held for 15 minutes).
        reading(300, "p", "glucose", 68.0),
        reading(360, "p", "glucose", 90.0), // the hold starts over: ends at 1260
        ack(1300, "p", r),
    ];
    let events = run(&lines);
    let l1 = "Hypoglycaemia level 1: glucose 65 mg/dL";
    let l2 = "Hypoglycaemia level 2: glucose 50 mg/dL";
    assert_eq!(
        details(&events, r),
        vec![
            dt(60, "p", X::Raised, S::Active, P::Medium, l1),
            dt(120, "p", X::PriorityChanged, S::Active, P::High, l2),
            // No escalation while glucose is back in range (the hold): the
            // patient has recovered; the 5-minute escalation would be due at
            // 420 s, but from 180 s the condition resolves.
            // latching: after 15 minutes at or above 70 it waits for a nurse
            dt(1260, "p", X::Latched, S::Latched, P::High, l2),
            dt(1300, "p", X::Acknowledged, S::Acknowledged, P::High, l2),
            dt(1300, "p", X::Cleared, S::Cleared, P::High, l2),
        ]
    );
}

#[test]
fn cgm_hypoglycaemia_needs_15_minutes_below_and_15_minutes_back() {
    let r = "cgm_hypoglycaemia";
    // A CGM reading every 5 minutes.
    let cgm = [
        (0, 100.0),
        (300, 68.0), // < 70 from 300 s: raised at 300 + 15 min = 1200 (tick)
        (600, 66.0),
        (900, 64.0),
        (1200, 62.0),
        (1500, 52.0),
        (1800, 50.0),
        (2100, 48.0),
        // Below 54 since 1500 s: level 2 once that has held 15 minutes.
        (2400, 50.0),
        (2700, 60.0), // ≥ 54: level 2 ends in 15 minutes if it stays so
        (3000, 75.0), // ≥ 70: the hold starts
        (3300, 68.0), // < 70 again within the hold: the same episode
        // 15 minutes at or above 54 since 2700: down to level 1 at 3600
        (3600, 72.0), // the hold starts over: ends at 4500
        (3900, 74.0),
        (4200, 76.0),
        (4500, 78.0),
        (5000, 65.0), // 5 minutes below 70: no event
        (5300, 72.0),
        (5600, 80.0),
    ];
    let mut lines: Vec<String> = cgm
        .iter()
        .map(|&(s, v)| reading(s, "p", "glucose_cgm", v))
        .collect();
    lines.extend([ack(1300, "p", r), ack(2450, "p", r)]);
    let events = run(&lines);
    let l1 = |g| format!("Hypoglycaemia level 1 on CGM: glucose {g} mg/dL for 15 minutes");
    let l2 = "Hypoglycaemia level 2 on CGM: glucose 48 mg/dL, below 54 mg/dL for 15 minutes";
    assert_eq!(
        details(&events, r),
        vec![
            dt(1200, "p", X::Raised, S::Active, P::Medium, &l1(64)),
            dt(
                1300,
                "p",
                X::Acknowledged,
                S::Acknowledged,
                P::Medium,
                &l1(64)
            ),
            // rising sounds again, even though acknowledged
            dt(2400, "p", X::PriorityChanged, S::Active, P::High, l2),
            dt(2450, "p", X::Acknowledged, S::Acknowledged, P::High, l2),
            dt(
                3600,
                "p",
                X::PriorityChanged,
                S::Acknowledged,
                P::Medium,
                &l1(68)
            ),
            // acknowledged, so it ends rather than latches
            dt(4500, "p", X::Cleared, S::Cleared, P::Medium, &l1(68)),
        ]
    );
    // The meter's rule does not read the CGM.
    assert_eq!(transitions(&events, Some("hypoglycaemia")), vec![]);
}

#[test]
fn cgm_hyperglycaemia_needs_15_minutes_above_and_15_minutes_back() {
    let r = "cgm_hyperglycaemia";
    let cgm = [
        (0, 240.0),
        (300, 255.0), // > 250 from 300 s: raised at 1200
        (600, 262.0),
        (900, 270.0),
        (1200, 268.0),
        (1500, 245.0), // the hold starts
        (1800, 252.0), // > 250 within the hold: the same episode
        (2100, 240.0), // the hold starts over: cleared at 3000
        (2400, 230.0),
        (2700, 220.0),
        (3000, 210.0),
    ];
    let lines: Vec<String> = cgm
        .iter()
        .map(|&(s, v)| reading(s, "p", "glucose_cgm", v))
        .collect();
    let events = run(&lines);
    let m = "Hyperglycaemia on CGM: glucose 270 mg/dL for 15 minutes";
    assert_eq!(
        details(&events, r),
        vec![
            dt(1200, "p", X::Raised, S::Active, P::Medium, m),
            dt(3000, "p", X::Cleared, S::Cleared, P::Medium, m),
        ]
    );
    assert_eq!(transitions(&events, Some("hyperglycaemia")), vec![]);
}

#[test]
fn hyperglycaemia_clears_20_below_after_an_hour() {
    let r = "hyperglycaemia";
    check(
        &[
            reading(0, "p", "glucose", 260.0),    // > 250
            reading(60, "p", "glucose", 240.0),   // not ≤ 230
            reading(120, "p", "glucose", 230.0),  // the hold starts
            reading(1200, "p", "glucose", 255.0), // within the hold: same episode
            reading(1260, "p", "glucose", 220.0), // the hold starts over
            reading(3000, "p", "glucose", 215.0),
            reading(5000, "p", "glucose", 200.0),
        ],
        r,
        vec![
            tr(0, "p", r, X::Raised, S::Active),
            tr(1260 + 3600, "p", r, X::Cleared, S::Cleared),
        ],
    );
}

#[test]
fn heart_failure_weight_gain_over_three_days() {
    let day = 86_400;
    let hour = 3_600;
    let mut lines = vec![profile("hf", &json!({"conditions": ["heart_failure"]}))];
    for subject in ["hf", "other"] {
        lines.extend([
            reading(0, subject, "body_weight", 80.0),
            reading(day, subject, "body_weight", 80.8),
            reading(2 * day, subject, "body_weight", 81.5),
            // 3 days minus an hour after the first: 82.3 − 80.0 = 2.3 > 2
            reading(3 * day - hour, subject, "body_weight", 82.3),
            // Within the 36-hour hold that started when the 80.0 kg sample
            // left the window: 83.0 − 80.8 = 2.2 > 2, the same episode.
            reading(3 * day + 12 * hour, subject, "body_weight", 83.0),
            reading(5 * day + 2 * hour, subject, "body_weight", 82.8),
            reading(6 * day + 2 * hour, subject, "body_weight", 82.9),
        ]);
    }
    lines.push(ack(6 * day + 3 * hour, "hf", "hf_weight_gain"));
    // Ticks every minute. The window is 3 days and 8 hours (80 h). The
    // 80.0 kg sample leaves it at the first tick past 3 d 8 h: rise 1.5 kg,
    // the hold starts; the 83.0 at 3 d 12 h breaks it (the same episode goes
    // on). The 80.8 kg sample leaves at 4 d 8 h + 60 s: rise 83.0 − 81.5 =
    // 1.5, the hold starts again and the latching alert latches 36 hours
    // later, until acknowledged.
    let mut engine = engine(EngineOptions {
        tick_interval: TimeDelta::minutes(1),
        ..EngineOptions::default()
    });
    let (events, _) = run_with(&lines, &mut engine);
    let r = "hf_weight_gain";
    assert_eq!(
        transitions(&events, Some(r)),
        sorted(vec![
            tr(3 * day - hour, "hf", r, X::Raised, S::Active),
            tr(5 * day + 20 * hour + 60, "hf", r, X::Latched, S::Latched),
            tr(
                6 * day + 3 * hour,
                "hf",
                r,
                X::Acknowledged,
                S::Acknowledged
            ),
            tr(6 * day + 3 * hour, "hf", r, X::Cleared, S::Cleared),
        ])
    );
}

#[test]
fn copd_spo2_low_must_last_five_minutes() {
    let r = "copd_spo2_low";
    let mut lines = vec![profile(
        "copd",
        &json!({"conditions": ["copd"], "spo2_scale": 2}),
    )];
    for subject in ["copd", "other"] {
        lines.extend([
            reading(0, subject, "spo2", 90.0),
            reading(60, subject, "spo2", 87.0), // below 88 from 60 s
            reading(120, subject, "spo2", 86.0),
            reading(240, subject, "spo2", 87.0),
            // raised at 60 + 300 = 360 by the tick
            reading(400, subject, "spo2", 88.0), // not ≥ 89: no hold yet
            reading(460, subject, "spo2", 89.0), // the 5-minute hold starts
            reading(600, subject, "spo2", 87.0), // within the hold: same episode
            reading(700, subject, "spo2", 92.0), // the hold starts over
            // cleared at 700 + 300 = 1000 by the tick
            reading(1100, subject, "spo2", 93.0),
            reading(1200, subject, "spo2", 87.0), // a blip of 50 s: nothing
            reading(1250, subject, "spo2", 92.0),
            reading(1400, subject, "spo2", 93.0),
        ]);
    }
    let events = run(&lines);
    assert_eq!(
        transitions(&events, Some(r)),
        vec![
            tr(360, "copd", r, X::Raised, S::Active),
            tr(1000, "copd", r, X::Cleared, S::Cleared),
        ]
    );
    assert_eq!(
        details(&events, r)[0].5,
        "SpO2 87 % below the COPD target of 88 %"
    );
}

#[test]
fn tachycardia_and_bradycardia_from_heart_or_pulse_rate() {
    let lines = [
        reading(0, "a", "heart_rate", 135.0), // ≥ 131 from 0 s
        reading(60, "a", "heart_rate", 140.0),
        // raised at 120 (for 2m)
        reading(180, "a", "heart_rate", 100.0), // the 2-minute hold starts
        reading(240, "a", "heart_rate", 133.0), // within the hold: same episode
        reading(260, "a", "heart_rate", 100.0), // cleared at 260 + 120
        reading(400, "a", "heart_rate", 95.0),
        reading(0, "b", "pulse_rate", 38.0), // ≤ 40 from 0 s; raised at 60 (for 1m)
        reading(90, "b", "pulse_rate", 45.0), // cleared at 90 + 60
        reading(200, "b", "pulse_rate", 50.0),
    ];
    let events = run(&lines);
    assert_eq!(
        transitions(&events, Some("tachycardia")),
        vec![
            tr(120, "a", "tachycardia", X::Raised, S::Active),
            tr(380, "a", "tachycardia", X::Cleared, S::Cleared)
        ]
    );
    assert_eq!(
        transitions(&events, Some("bradycardia")),
        vec![
            tr(60, "b", "bradycardia", X::Raised, S::Active),
            tr(150, "b", "bradycardia", X::Cleared, S::Cleared)
        ]
    );
    // message filled with the pulse at the time of raising
    assert_eq!(
        details(&events, "tachycardia")[0].5,
        "Tachycardia: pulse 140 /min"
    );
    assert_eq!(
        details(&events, "bradycardia")[0].5,
        "Bradycardia: pulse 38 /min"
    );
}

#[test]
fn fever_clears_below_38_0_after_an_hour() {
    let r = "fever";
    check(
        &[
            reading(0, "p", "body_temp", 38.3),
            reading(60, "p", "body_temp", 38.1),  // not < 38.0
            reading(120, "p", "body_temp", 37.9), // the 1-hour hold starts
            // the antipyretic wears off within the hold: the same episode
            reading(1800, "p", "body_temp", 38.4),
            reading(1900, "p", "body_temp", 37.8), // the hold starts over
            reading(3600, "p", "body_temp", 37.5),
            reading(6000, "p", "body_temp", 37.2),
        ],
        r,
        vec![
            tr(0, "p", r, X::Raised, S::Active),
            tr(1900 + 3600, "p", r, X::Cleared, S::Cleared),
        ],
    );
}

// ------------------------------------------------------------ infusion

#[test]
fn occlusion_latches_escalates_and_clears_on_acknowledgement() {
    let r = "pump_occlusion";
    let lines = [
        device_event(0, "p", "pump-1", "occlusion_downstream"),
        alarm_end(30, "p", "pump-1", "occlusion_downstream"), // latched
        // escalate_after 2m: level 1 at 120 s
        ack(150, "p", r),
    ];
    let events = run(&lines);
    assert_eq!(
        transitions(&events, Some(r)),
        sorted(vec![
            tr(0, "p", r, X::Raised, S::Active),
            tr(30, "p", r, X::Latched, S::Latched),
            tr(120, "p", r, X::Escalated, S::Latched),
            tr(150, "p", r, X::Acknowledged, S::Acknowledged),
            tr(150, "p", r, X::Cleared, S::Cleared),
        ])
    );
    let Event::Alert(first) = &events[0] else {
        panic!()
    };
    assert_eq!(first.device.as_ref().unwrap().id.as_str(), "pump-1");
    assert_eq!(&*first.message, "Pump pump-1: occlusion");
    assert_eq!(first.priority, wardgate_model::Priority::High);
    assert_eq!(first.id.0.as_ref(), "p/pump_occlusion/2026-11-27T10:00:00Z");
    let escalated = events.iter().find_map(|e| match e {
        Event::Alert(a) if a.transition == X::Escalated => Some(a),
        _ => None,
    });
    assert_eq!(escalated.unwrap().escalation_level, 1);
}

#[test]
fn air_in_line_acknowledged_while_active_then_cleared() {
    let r = "pump_air_in_line";
    check(
        &[
            device_event(0, "p", "pump-1", "air_in_line"),
            ack(10, "p", r),
            alarm_end(20, "p", "pump-1", "air_in_line"),
        ],
        r,
        vec![
            tr(0, "p", r, X::Raised, S::Active),
            tr(10, "p", r, X::Acknowledged, S::Acknowledged),
            tr(20, "p", r, X::Cleared, S::Cleared),
        ],
    );
}

#[test]
fn door_open_battery_and_fault() {
    let lines = [
        device_event(0, "p", "pump-1", "door_open"),
        alarm_end(30, "p", "pump-1", "door_open"),
        device_event(0, "q", "pump-2", "low_battery"),
        alarm_end(40, "q", "pump-2", "low_battery"), // the 10-minute hold starts
        // Back off the charger within the hold: the same episode.
        device_event(300, "q", "pump-2", "low_battery"),
        alarm_end(360, "q", "pump-2", "low_battery"), // cleared at 360 + 600
        reading(1000, "q", "infusion_rate", 100.0),
        device_event(0, "r", "pump-3", "battery_depleted"),
        alarm_end(130, "r", "pump-3", "battery_depleted"), // escalated at 120 first
        device_event(0, "s", "pump-4", "pump_fault"),
        alarm_end(10, "s", "pump-4", "pump_fault"), // latching
        ack(20, "s", "pump_fault"),
        // A BLE low battery is not a pump battery alarm.
        ble_alarm(0, "t", "band-1", "low_battery", "start"),
    ];
    let events = run(&lines);
    let t = |rule| transitions(&events, Some(rule));
    assert_eq!(
        t("pump_door_open"),
        vec![
            tr(0, "p", "pump_door_open", X::Raised, S::Active),
            tr(30, "p", "pump_door_open", X::Cleared, S::Cleared)
        ]
    );
    assert_eq!(
        t("pump_battery_low"),
        vec![
            tr(0, "q", "pump_battery_low", X::Raised, S::Active),
            tr(960, "q", "pump_battery_low", X::Cleared, S::Cleared)
        ]
    );
    let d = "pump_battery_depleted";
    assert_eq!(
        t(d),
        vec![
            tr(0, "r", d, X::Raised, S::Active),
            tr(120, "r", d, X::Escalated, S::Active),
            tr(130, "r", d, X::Cleared, S::Cleared)
        ]
    );
    let f = "pump_fault";
    assert_eq!(
        t(f),
        sorted(vec![
            tr(0, "s", f, X::Raised, S::Active),
            tr(10, "s", f, X::Latched, S::Latched),
            tr(20, "s", f, X::Acknowledged, S::Acknowledged),
            tr(20, "s", f, X::Cleared, S::Cleared),
        ])
    );
}

#[test]
fn near_end_of_infusion_from_volume_and_rate_or_alarm() {
    let r = "near_end_of_infusion";
    let lines = [
        reading(0, "p", "infusion_rate", 100.0),
        reading(0, "p", "vtbi_remaining", 50.0), // 50 / 100 × 60 = 30 min
        reading(60, "p", "vtbi_remaining", 25.0), // 15 min ≤ 15: raised
        reading(120, "p", "infusion_rate", 50.0), // 30 min: the 5-minute hold starts
        reading(180, "p", "infusion_rate", 100.0), // 15 min within the hold: same episode
        reading(240, "p", "vtbi_remaining", 0.0), // nothing left: cleared at 540
        device_event(200, "q", "pump-2", "near_end_of_infusion"),
        alarm_end(210, "q", "pump-2", "near_end_of_infusion"), // cleared at 510
        reading(600, "p", "infusion_rate", 100.0),
    ];
    let events = run(&lines);
    assert_eq!(
        transitions(&events, Some(r)),
        vec![
            tr(60, "p", r, X::Raised, S::Active),
            tr(200, "q", r, X::Raised, S::Active),
            tr(510, "q", r, X::Cleared, S::Cleared),
            tr(540, "p", r, X::Cleared, S::Cleared),
        ]
    );
    let messages: Vec<_> = details(&events, r)
        .into_iter()
        .filter(|d| d.2 == X::Raised)
        .map(|d| d.5)
        .collect();
    // A pump that announces the near end itself sends no volume or rate:
    // the message says so in words.
    assert_eq!(
        messages,
        [
            "Infusion near end: 25 mL left at 100 mL/h",
            "Infusion near end: (VTBI remaining not measured) mL left at (Infusion rate not measured) mL/h",
        ]
    );
}

#[test]
fn infusion_complete_and_kvo() {
    let r = "infusion_complete";
    check(
        &[
            device_event(0, "p", "pump-1", "infusion_complete"),
            alarm_end(30, "p", "pump-1", "infusion_complete"),
            device_event(60, "p", "pump-1", "kvo"),
            alarm_end(90, "p", "pump-1", "kvo"),
        ],
        r,
        vec![
            tr(0, "p", r, X::Raised, S::Active),
            tr(30, "p", r, X::Cleared, S::Cleared),
            tr(60, "p", r, X::Raised, S::Active),
            tr(90, "p", r, X::Cleared, S::Cleared),
        ],
    );
}

#[test]
fn rate_mismatch_only_where_a_prescription_is_configured() {
    let r = "infusion_rate_mismatch";
    check(
        &[
            json!({"subject": "p", "params": {"prescribed_rate": 100.0}}).to_string(),
            reading(0, "p", "infusion_rate", 100.0),
            reading(60, "p", "infusion_rate", 125.0), // |25| > 10 from 60 s; raised at 90 (for 30s)
            reading(120, "p", "infusion_rate", 105.0), // |5| ≤ 10: the 30 s hold starts
            reading(130, "p", "infusion_rate", 120.0), // |20| within the hold: same episode
            reading(140, "p", "infusion_rate", 100.0), // cleared at 140 + 30
            reading(200, "p", "infusion_rate", 100.0),
            reading(0, "q", "infusion_rate", 50.0), // no prescription: never
        ],
        r,
        vec![
            tr(90, "p", r, X::Raised, S::Active),
            tr(170, "p", r, X::Cleared, S::Cleared),
        ],
    );
}

// ------------------------------------------------------------ technical

#[test]
fn device_offline_after_30_seconds() {
    let r = "device_offline";
    let lines = [
        device_event(0, "p", "band-1", "offline"), // raised at 30 s
        device_event(100, "p", "band-1", "online"), // the 30 s hold starts
        device_event(110, "p", "band-1", "offline"), // within the hold: same episode
        device_event(115, "p", "band-1", "online"), // cleared at 145 by the tick
        device_event(200, "p", "band-1", "offline"), // a 10 s blip: nothing
        device_event(210, "p", "band-1", "online"),
    ];
    let events = run(&lines);
    assert_eq!(
        transitions(&events, Some(r)),
        vec![
            tr(30, "p", r, X::Raised, S::Active),
            tr(145, "p", r, X::Cleared, S::Cleared)
        ]
    );
    let Event::Alert(a) = &events[0] else {
        panic!()
    };
    assert_eq!(&*a.message, "Device band-1 offline: communication lost");
}

#[test]
fn data_stale_after_five_minutes_without_readings() {
    let r = "data_stale";
    let mut lines = vec![reading(0, "p", "heart_rate", 70.0)];
    // More than 300 s without data: raised at the first 1 s tick after 300 s.
    // Data again from 400 s, once a minute: the 10-minute hold (longer than
    // stale_after_s, so a gap in the data cannot end it) ends at 1000 s.
    lines.extend(
        (400..=1000)
            .step_by(60)
            .map(|s| reading(s, "p", "heart_rate", 72.0)),
    );
    let events = run(&lines);
    assert_eq!(
        details(&events, r),
        vec![
            dt(
                301,
                "p",
                X::Raised,
                S::Active,
                P::Medium,
                "No data for more than 300 s"
            ),
            dt(
                1000,
                "p",
                X::Cleared,
                S::Cleared,
                P::Medium,
                "No data for more than 300 s"
            ),
        ]
    );
}

#[test]
fn battery_low_from_level_or_ble_alarm() {
    let r = "battery_low";
    let events = run(&[
        reading(0, "p", "battery_level", 30.0),
        reading(60, "p", "battery_level", 15.0),  // < 20
        reading(120, "p", "battery_level", 25.0), // the 10-minute hold starts
        reading(300, "p", "battery_level", 19.0), // within the hold: same episode
        reading(360, "p", "battery_level", 21.0), // cleared at 360 + 600
        reading(1000, "p", "battery_level", 22.0),
        ble_alarm(200, "q", "band-2", "low_battery", "start"),
        ble_alarm(260, "q", "band-2", "low_battery", "end"), // cleared at 860
    ]);
    // A level read without a device reference names none: said in words.
    let (p, q) = ("Battery low on an unknown device", "Battery low on band-2");
    assert_eq!(
        details(&events, r),
        vec![
            dt(60, "p", X::Raised, S::Active, P::Low, p),
            dt(200, "q", X::Raised, S::Active, P::Low, q),
            dt(860, "q", X::Cleared, S::Cleared, P::Low, q),
            dt(960, "p", X::Cleared, S::Cleared, P::Low, p),
        ]
    );
}

#[test]
fn sensor_contact_lost_after_10_seconds_and_malfunction() {
    let lines = [
        ble_alarm(0, "p", "ox-1", "sensor_contact_lost", "start"), // raised at 10 s
        ble_alarm(20, "p", "ox-1", "sensor_contact_lost", "end"),  // the 10 s hold starts
        ble_alarm(25, "p", "ox-1", "sensor_contact_lost", "start"), // same episode
        ble_alarm(28, "p", "ox-1", "sensor_contact_lost", "end"),  // cleared at 38 s
        ble_alarm(60, "p", "ox-1", "sensor_contact_lost", "start"), // 5 s: nothing
        ble_alarm(65, "p", "ox-1", "sensor_contact_lost", "end"),
        ble_alarm(0, "q", "cuff-1", "sensor_malfunction", "start"),
        ble_alarm(5, "q", "cuff-1", "sensor_malfunction", "end"),
    ];
    let events = run(&lines);
    let c = "sensor_contact_lost";
    assert_eq!(
        transitions(&events, Some(c)),
        vec![
            tr(10, "p", c, X::Raised, S::Active),
            tr(38, "p", c, X::Cleared, S::Cleared)
        ]
    );
    let m = "sensor_malfunction";
    assert_eq!(
        transitions(&events, Some(m)),
        vec![
            tr(0, "q", m, X::Raised, S::Active),
            tr(5, "q", m, X::Cleared, S::Cleared)
        ]
    );
}

#[test]
fn device_exceptions_from_a_modbus_device_only() {
    let r = "device_exceptions";
    let modbus = |s: i64, subject: &str, phase: &str, kind: &str| {
        json!({"at": at(s), "subject": subject, "device": "plc-1", "event": "modbus_exceptions", "phase": phase, "kind": kind}).to_string()
    };
    let events = run(&[
        modbus(0, "p", "start", "modbus"),
        // escalate_after 15m: level 1 at 900 s
        modbus(1000, "p", "end", "modbus"), // the driver ends it: cleared at once
        // The same code from another kind of device is not this rule's.
        modbus(0, "q", "start", "pump"),
    ]);
    let m = "Device plc-1 answers every request with an error: no readings";
    assert_eq!(
        details(&events, r),
        vec![
            dt(0, "p", X::Raised, S::Active, P::Medium, m),
            dt(900, "p", X::Escalated, S::Active, P::Medium, m),
            dt(1000, "p", X::Cleared, S::Cleared, P::Medium, m),
        ]
    );
}

#[test]
fn driver_restarting_from_the_gateways_supervisor() {
    let r = "driver_restarting";
    let alarm = |s: i64, phase: &str| {
        json!({"at": at(s), "subject": "p", "device": "band-1", "event": "driver_restarting", "phase": phase, "kind": "ble"}).to_string()
    };
    let events = run(&[alarm(0, "start"), alarm(600, "end")]);
    let m = "The gateway's driver for band-1 keeps crashing and restarting: its readings are unreliable";
    assert_eq!(
        details(&events, r),
        vec![
            dt(0, "p", X::Raised, S::Active, P::Medium, m),
            dt(600, "p", X::Cleared, S::Cleared, P::Medium, m),
        ]
    );
}

#[test]
fn storage_reset_latches_until_acknowledged_and_says_what_was_set_aside() {
    let r = "storage_reset";
    let alarm = |s: i64, phase: &str| {
        json!({"at": at(s), "subject": "gw-1", "device": "spool", "kind": "gateway", "event": "storage_reset", "phase": phase, "reason": "spool.redb was set aside as spool.redb.corrupt-x"}).to_string()
    };
    let events = run(&[alarm(0, "start"), alarm(0, "end"), ack(600, "gw-1", r)]);
    let m = "The gateway's storage was unreadable and was replaced by an empty one; undelivered readings and alerts may be missing: spool.redb was set aside as spool.redb.corrupt-x";
    assert_eq!(
        details(&events, r),
        vec![
            dt(0, "gw-1", X::Raised, S::Active, P::High, m),
            dt(0, "gw-1", X::Latched, S::Latched, P::High, m),
            dt(600, "gw-1", X::Acknowledged, S::Acknowledged, P::High, m),
            dt(600, "gw-1", X::Cleared, S::Cleared, P::High, m),
        ]
    );
}

#[test]
fn storage_failed_latches_until_acknowledged_and_says_how_long_and_why() {
    let r = "storage_failed";
    let reason = "spool.redb could not be written for 3 s (File too large); it was reopened and takes writes again, nothing was lost";
    let alarm = |s: i64, phase: &str| {
        json!({"at": at(s), "subject": "gw-1", "device": "spool", "kind": "gateway", "event": "storage_failed", "phase": phase, "reason": reason}).to_string()
    };
    let events = run(&[alarm(0, "start"), alarm(0, "end"), ack(300, "gw-1", r)]);
    let m = format!("The gateway's storage failed and recovered; check its disk: {reason}");
    let m = m.as_str();
    assert_eq!(
        details(&events, r),
        vec![
            dt(0, "gw-1", X::Raised, S::Active, P::Medium, m),
            dt(0, "gw-1", X::Latched, S::Latched, P::Medium, m),
            dt(300, "gw-1", X::Acknowledged, S::Acknowledged, P::Medium, m),
            dt(300, "gw-1", X::Cleared, S::Cleared, P::Medium, m),
        ]
    );
}

#[test]
fn sink_failing_while_the_gateway_restarts_the_sink() {
    let r = "sink_failing";
    let alarm = |s: i64, phase: &str| {
        json!({"at": at(s), "subject": "gw-1", "device": "sink:ward_file", "kind": "gateway", "event": "sink_failing", "phase": phase, "reason": "No space left on device (os error 28)"}).to_string()
    };
    let events = run(&[alarm(0, "start"), alarm(900, "end")]);
    let m = "The gateway's output sink:ward_file is failing and being restarted; data waits in the spool: No space left on device (os error 28)";
    assert_eq!(
        details(&events, r),
        vec![
            dt(0, "gw-1", X::Raised, S::Active, P::High, m),
            dt(600, "gw-1", X::Escalated, S::Active, P::High, m),
            dt(900, "gw-1", X::Cleared, S::Cleared, P::High, m),
        ]
    );
}

#[test]
fn sink_stalled_and_spool_filling_from_the_gateways_monitor() {
    let alarm = |s: i64, device: &str, event: &str, phase: &str, detail: &str| {
        json!({"at": at(s), "subject": "gw-1", "device": device, "kind": "gateway", "event": event, "phase": phase, "reason": detail}).to_string()
    };
    let events = run(&[
        alarm(
            0,
            "sink:mqtt",
            "sink_stalled",
            "start",
            "120 records waiting, the oldest for 301 s",
        ),
        alarm(
            0,
            "spool",
            "spool_filling",
            "start",
            "81 % of 1000000 bytes",
        ),
        alarm(600, "sink:mqtt", "sink_stalled", "end", ""),
        alarm(700, "spool", "spool_filling", "end", ""),
    ]);
    assert_eq!(
        details(&events, "sink_stalled"),
        vec![
            dt(
                0,
                "gw-1",
                X::Raised,
                S::Active,
                P::High,
                "The gateway's output sink:mqtt is not delivering: 120 records waiting, the oldest for 301 s"
            ),
            dt(
                600,
                "gw-1",
                X::Cleared,
                S::Cleared,
                P::High,
                "The gateway's output sink:mqtt is not delivering: 120 records waiting, the oldest for 301 s"
            ),
        ]
    );
    let m = "The gateway's spool is filling up (81 % of 1000000 bytes); past its bound the oldest telemetry is evicted";
    assert_eq!(
        details(&events, "spool_filling"),
        vec![
            dt(0, "gw-1", X::Raised, S::Active, P::Medium, m),
            dt(700, "gw-1", X::Cleared, S::Cleared, P::Medium, m),
        ]
    );
}

#[test]
fn rules_behind_from_the_gateways_monitor() {
    let r = "rules_behind";
    let alarm = |s: i64, phase: &str| {
        json!({"at": at(s), "subject": "gw-1", "device": "rules", "kind": "gateway", "event": "rules_behind", "phase": phase, "reason": "3100 of 4096 events waiting for the rules stage"}).to_string()
    };
    let events = run(&[alarm(0, "start"), alarm(30, "end")]);
    let m = "The gateway is falling behind its devices; alerts may come late: 3100 of 4096 events waiting for the rules stage";
    assert_eq!(
        details(&events, r),
        vec![
            dt(0, "gw-1", X::Raised, S::Active, P::High, m),
            dt(30, "gw-1", X::Cleared, S::Cleared, P::High, m),
        ]
    );
}

#[test]
fn data_quarantined_latches_however_often_the_sink_raises_it() {
    let r = "data_quarantined";
    let reason = "1 of 500 records refused with 400: partial write: field type conflict";
    let alarm = |s: i64, phase: &str| {
        json!({"at": at(s), "subject": "gw-1", "device": "sink:influxdb", "kind": "gateway", "event": "data_quarantined", "phase": phase, "reason": reason}).to_string()
    };
    // Raised and ended at once, again a minute later: one episode, latched
    // until acknowledged.
    let events = run(&[
        alarm(0, "start"),
        alarm(0, "end"),
        alarm(60, "start"),
        alarm(60, "end"),
        ack(300, "gw-1", r),
    ]);
    let m = format!(
        "InfluxDB refused data from the gateway's output sink:influxdb: it is not in the TSDB but kept in the quarantine file: {reason}"
    );
    let m = m.as_str();
    assert_eq!(
        details(&events, r),
        vec![
            dt(0, "gw-1", X::Raised, S::Active, P::Low, m),
            dt(0, "gw-1", X::Latched, S::Latched, P::Low, m),
            dt(300, "gw-1", X::Acknowledged, S::Acknowledged, P::Low, m),
            dt(300, "gw-1", X::Cleared, S::Cleared, P::Low, m),
        ]
    );
}

#[test]
fn quarantine_full_latches_after_the_file_has_room_again() {
    let r = "quarantine_full";
    let reason = "/var/lib/wardgate/influxdb.quarantine.jsonl reached its bound of 67108864 bytes; 12 records dropped";
    let alarm = |s: i64, phase: &str| {
        json!({"at": at(s), "subject": "gw-1", "device": "sink:influxdb", "kind": "gateway", "event": "quarantine_full", "phase": phase, "reason": reason}).to_string()
    };
    let events = run(&[alarm(0, "start"), alarm(900, "end"), ack(1000, "gw-1", r)]);
    let m = format!(
        "The quarantine file of the gateway's output sink:influxdb is full; data InfluxDB refuses is now dropped: {reason}"
    );
    let m = m.as_str();
    assert_eq!(
        details(&events, r),
        vec![
            dt(0, "gw-1", X::Raised, S::Active, P::Medium, m),
            dt(900, "gw-1", X::Latched, S::Latched, P::Medium, m),
            dt(1000, "gw-1", X::Acknowledged, S::Acknowledged, P::Medium, m),
            dt(1000, "gw-1", X::Cleared, S::Cleared, P::Medium, m),
        ]
    );
}

#[test]
fn every_built_in_rule_has_a_replay_test_here() {
    // Keeps this file honest when a rule is added to a pack: every built-in
    // rule is named in a test above (news2 in tests/it/news2.rs), and the
    // list below is the whole set, so a new rule fails here until tested.
    let this_file = include_str!("packs.rs");
    let tests = &this_file[..this_file
        .find("fn every_built_in_rule_has_a_replay_test_here")
        .unwrap()];
    let tested = format!("{tests}{}", include_str!("news2.rs"));
    let mut ids: Vec<String> = wardgate_rules::packs::builtin_rule_set()
        .unwrap()
        .rules()
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    for id in &ids {
        assert!(
            tested.contains(&format!("\"{id}\"")),
            "no replay test for {id}"
        );
    }
    ids.sort();
    assert_eq!(
        ids,
        [
            "battery_low",
            "bradycardia",
            "cgm_hyperglycaemia",
            "cgm_hypoglycaemia",
            "copd_spo2_low",
            "data_quarantined",
            "data_stale",
            "device_exceptions",
            "device_offline",
            "driver_restarting",
            "fever",
            "hf_weight_gain",
            "hyperglycaemia",
            "hypertensive_crisis",
            "hypoglycaemia",
            "infusion_complete",
            "infusion_rate_mismatch",
            "near_end_of_infusion",
            "news2",
            "pump_air_in_line",
            "pump_battery_depleted",
            "pump_battery_low",
            "pump_door_open",
            "pump_fault",
            "pump_occlusion",
            "quarantine_full",
            "rules_behind",
            "sensor_contact_lost",
            "sensor_malfunction",
            "sink_failing",
            "sink_stalled",
            "spool_filling",
            "storage_failed",
            "storage_reset",
            "tachycardia",
        ]
    );
}
