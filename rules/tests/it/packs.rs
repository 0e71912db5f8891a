//! Replay of recorded series for every built-in rule, with every pack active;
//! each test looks at the transitions of the rule under test. Expected
//! transitions follow from the rule definitions in config/rules/ (thresholds,
//! `for`, `clear`, latching, escalate_after), worked out by hand in comments.

use chrono::TimeDelta;
use serde_json::json;
use wardgate_model::{AlertState as S, Event, Transition as X};
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
fn hypertensive_crisis_with_hysteresis_and_diastolic_path() {
    let r = "hypertensive_crisis";
    check(
        &[
            reading(0, "p", "bp_systolic", 150.0),
            reading(0, "p", "bp_diastolic", 90.0),
            reading(60, "p", "bp_systolic", 185.0), // > 180: raised
            reading(120, "p", "bp_systolic", 175.0), // not ≤ 170: stays
            reading(180, "p", "bp_systolic", 170.0), // ≤ 170 and 90 ≤ 110: cleared
            reading(300, "p", "bp_diastolic", 125.0), // > 120: raised
            ack(400, "p", r),
            reading(1000, "p", "bp_diastolic", 100.0), // ≤ 110: cleared
        ],
        r,
        vec![
            tr(60, "p", r, X::Raised, S::Active),
            tr(180, "p", r, X::Cleared, S::Cleared),
            tr(300, "p", r, X::Raised, S::Active),
            tr(400, "p", r, X::Acknowledged, S::Acknowledged),
            tr(1000, "p", r, X::Cleared, S::Cleared),
        ],
    );
}

#[test]
fn hypoglycaemia_levels_hand_over_and_level_2_latches() {
    let lines = [
        reading(0, "p", "glucose", 100.0),
        reading(60, "p", "glucose", 65.0),  // 54 ≤ 65 < 70: level 1
        reading(120, "p", "glucose", 50.0), // < 54: level 2; level 1 clears
        reading(180, "p", "glucose", 80.0), // level 2 latches (nobody acknowledged)
        ack(240, "p", "hypoglycaemia_level_2"),
    ];
    let events = run(&lines);
    assert_eq!(
        transitions(&events, Some("hypoglycaemia_level_1")),
        vec![
            tr(60, "p", "hypoglycaemia_level_1", X::Raised, S::Active),
            tr(120, "p", "hypoglycaemia_level_1", X::Cleared, S::Cleared),
        ]
    );
    let l2 = "hypoglycaemia_level_2";
    assert_eq!(
        transitions(&events, Some(l2)),
        sorted(vec![
            tr(120, "p", l2, X::Raised, S::Active),
            tr(180, "p", l2, X::Latched, S::Latched),
            tr(240, "p", l2, X::Acknowledged, S::Acknowledged),
            tr(240, "p", l2, X::Cleared, S::Cleared),
        ])
    );
}

#[test]
fn hyperglycaemia_clears_20_below() {
    let r = "hyperglycaemia";
    check(
        &[
            reading(0, "p", "glucose", 260.0),  // > 250
            reading(60, "p", "glucose", 240.0), // not ≤ 230
            reading(120, "p", "glucose", 230.0),
        ],
        r,
        vec![
            tr(0, "p", r, X::Raised, S::Active),
            tr(120, "p", r, X::Cleared, S::Cleared),
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
        ]);
    }
    lines.push(ack(3 * day + 2 * hour, "hf", "hf_weight_gain"));
    // Ticks every minute: the 80.0 kg sample leaves the 3-day window after
    // 3 days exactly, at the first tick past it (3 d + 60 s): the gain is 1.5 kg,
    // the latching alert latches until acknowledged.
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
            tr(3 * day + 60, "hf", r, X::Latched, S::Latched),
            tr(
                3 * day + 2 * hour,
                "hf",
                r,
                X::Acknowledged,
                S::Acknowledged
            ),
            tr(3 * day + 2 * hour, "hf", r, X::Cleared, S::Cleared),
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
            reading(400, subject, "spo2", 88.0), // not ≥ 89: stays
            reading(460, subject, "spo2", 89.0), // cleared
            reading(600, subject, "spo2", 87.0), // a blip of 100 s: nothing
            reading(700, subject, "spo2", 92.0),
        ]);
    }
    check(
        &lines,
        r,
        vec![
            tr(360, "copd", r, X::Raised, S::Active),
            tr(460, "copd", r, X::Cleared, S::Cleared),
        ],
    );
}

#[test]
fn tachycardia_and_bradycardia_from_heart_or_pulse_rate() {
    let lines = [
        reading(0, "a", "heart_rate", 135.0), // ≥ 131 from 0 s
        reading(60, "a", "heart_rate", 140.0),
        // raised at 120 (for 2m)
        reading(180, "a", "heart_rate", 100.0),
        reading(0, "b", "pulse_rate", 38.0), // ≤ 40 from 0 s; raised at 60 (for 1m)
        reading(90, "b", "pulse_rate", 45.0),
    ];
    let events = run(&lines);
    assert_eq!(
        transitions(&events, Some("tachycardia")),
        vec![
            tr(120, "a", "tachycardia", X::Raised, S::Active),
            tr(180, "a", "tachycardia", X::Cleared, S::Cleared)
        ]
    );
    assert_eq!(
        transitions(&events, Some("bradycardia")),
        vec![
            tr(60, "b", "bradycardia", X::Raised, S::Active),
            tr(90, "b", "bradycardia", X::Cleared, S::Cleared)
        ]
    );
    let Some(Event::Alert(a)) = events
        .iter()
        .find(|e| matches!(e, Event::Alert(a) if a.rule.as_str() == "tachycardia"))
    else {
        panic!()
    };
    // message filled with the pulse at the time of raising
    assert_eq!(&*a.message, "Tachycardia: pulse 140 /min");
}

#[test]
fn fever_clears_below_38_0() {
    let r = "fever";
    check(
        &[
            reading(0, "p", "body_temp", 38.3),
            reading(60, "p", "body_temp", 38.1), // not < 38.0
            reading(120, "p", "body_temp", 37.9),
        ],
        r,
        vec![
            tr(0, "p", r, X::Raised, S::Active),
            tr(120, "p", r, X::Cleared, S::Cleared),
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
        alarm_end(40, "q", "pump-2", "low_battery"),
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
            tr(40, "q", "pump_battery_low", X::Cleared, S::Cleared)
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
    check(
        &[
            reading(0, "p", "infusion_rate", 100.0),
            reading(0, "p", "vtbi_remaining", 50.0), // 50 / 100 × 60 = 30 min
            reading(60, "p", "vtbi_remaining", 25.0), // 15 min ≤ 15: raised
            reading(120, "p", "vtbi_remaining", 0.0), // nothing left: cleared
            device_event(200, "q", "pump-2", "near_end_of_infusion"),
            alarm_end(210, "q", "pump-2", "near_end_of_infusion"),
        ],
        r,
        vec![
            tr(60, "p", r, X::Raised, S::Active),
            tr(120, "p", r, X::Cleared, S::Cleared),
            tr(200, "q", r, X::Raised, S::Active),
            tr(210, "q", r, X::Cleared, S::Cleared),
        ],
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
            reading(120, "p", "infusion_rate", 105.0), // |5| ≤ 10: cleared
            reading(0, "q", "infusion_rate", 50.0),   // no prescription: never
        ],
        r,
        vec![
            tr(90, "p", r, X::Raised, S::Active),
            tr(120, "p", r, X::Cleared, S::Cleared),
        ],
    );
}

// ------------------------------------------------------------ technical

#[test]
fn device_offline_after_30_seconds() {
    let r = "device_offline";
    let lines = [
        device_event(0, "p", "band-1", "offline"),
        device_event(100, "p", "band-1", "online"),
        device_event(200, "p", "band-1", "offline"), // a 10 s blip: nothing
        device_event(210, "p", "band-1", "online"),
    ];
    let events = run(&lines);
    assert_eq!(
        transitions(&events, Some(r)),
        vec![
            tr(30, "p", r, X::Raised, S::Active),
            tr(100, "p", r, X::Cleared, S::Cleared)
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
    check(
        &[
            reading(0, "p", "heart_rate", 70.0),
            // More than 300 s without data: the first 1 s tick after 300 s.
            reading(400, "p", "heart_rate", 72.0),
        ],
        r,
        vec![
            tr(301, "p", r, X::Raised, S::Active),
            tr(400, "p", r, X::Cleared, S::Cleared),
        ],
    );
}

#[test]
fn battery_low_from_level_or_ble_alarm() {
    let r = "battery_low";
    check(
        &[
            reading(0, "p", "battery_level", 30.0),
            reading(60, "p", "battery_level", 15.0), // < 20
            reading(120, "p", "battery_level", 25.0),
            ble_alarm(200, "q", "band-2", "low_battery", "start"),
            ble_alarm(260, "q", "band-2", "low_battery", "end"),
        ],
        r,
        vec![
            tr(60, "p", r, X::Raised, S::Active),
            tr(120, "p", r, X::Cleared, S::Cleared),
            tr(200, "q", r, X::Raised, S::Active),
            tr(260, "q", r, X::Cleared, S::Cleared),
        ],
    );
}

#[test]
fn sensor_contact_lost_after_10_seconds_and_malfunction() {
    let lines = [
        ble_alarm(0, "p", "ox-1", "sensor_contact_lost", "start"),
        ble_alarm(20, "p", "ox-1", "sensor_contact_lost", "end"),
        ble_alarm(30, "p", "ox-1", "sensor_contact_lost", "start"), // 5 s: nothing
        ble_alarm(35, "p", "ox-1", "sensor_contact_lost", "end"),
        ble_alarm(0, "q", "cuff-1", "sensor_malfunction", "start"),
        ble_alarm(5, "q", "cuff-1", "sensor_malfunction", "end"),
    ];
    let events = run(&lines);
    let c = "sensor_contact_lost";
    assert_eq!(
        transitions(&events, Some(c)),
        vec![
            tr(10, "p", c, X::Raised, S::Active),
            tr(20, "p", c, X::Cleared, S::Cleared)
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
fn every_built_in_rule_has_a_replay_test_here() {
    // Keeps this file honest when a rule is added to a pack.
    let this_file = include_str!("packs.rs");
    for rule in wardgate_rules::packs::builtin_rule_set().unwrap().rules() {
        let id = rule.id.as_str();
        if id.starts_with("news2_") {
            continue; // tests/it/news2.rs
        }
        assert!(
            this_file.contains(&format!("\"{id}\"")),
            "no replay test for {id}"
        );
    }
}
