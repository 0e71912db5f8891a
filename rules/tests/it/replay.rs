//! The `wardgate replay` contract (DESIGN.md): JSONL in, JSONL out.

use std::fmt::Write as _;

use serde_json::Value;
use wardgate_rules::{EngineOptions, ReplayError, replay};

use crate::helpers::engine;

fn replay_str(input: &str) -> Result<(Vec<Value>, wardgate_rules::ReplayStats), ReplayError> {
    let mut out = Vec::new();
    let stats = replay(
        input.as_bytes(),
        &mut out,
        &mut engine(EngineOptions::default()),
    )?;
    let lines = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Ok((lines, stats))
}

#[test]
fn design_contract_lines_in_alert_and_derived_reading_out() {
    let input = r#"{"subject": "p1", "profile": {"spo2_scale": 2, "conditions": ["copd"]}}
{"at": "2026-11-27T10:00:00Z", "subject": "bed-1", "metric": "glucose", "value": 50}
{"at": "2026-11-27T10:00:01Z", "subject": "bed-1", "device": "pump-1", "event": "occlusion"}

{"at": "2026-11-27T10:00:02Z", "subject": "bed-1", "metric": "glucose", "value": 49.5}
"#;
    let (out, stats) = replay_str(input).unwrap();
    assert_eq!(out.len(), 2, "{out:#?}");
    // Field by field, as a consumer reads it.
    let a = &out[0];
    assert_eq!(a["type"], "alert");
    assert_eq!(a["id"], "bed-1/hypoglycaemia/2026-11-27T10:00:00Z");
    assert_eq!(a["rule"], "hypoglycaemia");
    assert_eq!(a["subject"], "bed-1");
    assert_eq!(a["priority"], "high");
    assert_eq!(a["kind"], "physiological");
    assert_eq!(a["state"], "active");
    assert_eq!(a["transition"], "raised");
    assert_eq!(a["at"], "2026-11-27T10:00:00Z");
    assert_eq!(a["message"], "Hypoglycaemia level 2: glucose 50 mg/dL");
    let o = &out[1];
    assert_eq!(o["rule"], "pump_occlusion");
    assert_eq!(o["device"]["id"], "pump-1");
    assert_eq!(o["device"]["kind"], "pump");
    assert_eq!(
        (
            stats.lines,
            stats.readings,
            stats.device_events,
            stats.profiles,
            stats.alerts
        ),
        (5, 2, 1, 1, 2)
    );
}

#[test]
fn news2_score_is_written_as_a_reading() {
    let mut input = String::new();
    for (m, v) in [
        ("resp_rate", 22),    // 2
        ("spo2", 95),         // 1
        ("o2_flow", 0),       // air 0
        ("bp_systolic", 120), // 0
        ("heart_rate", 95),   // 1
        ("consciousness", 0), // 0
        ("body_temp", 37),    // 0 → 4
    ] {
        writeln!(
            input,
            r#"{{"at": "2026-11-27T10:00:00Z", "subject": "bed-2", "metric": "{m}", "value": {v}}}"#
        )
        .unwrap();
    }
    let (out, stats) = replay_str(&input).unwrap();
    assert_eq!(stats.derived, 1);
    let r = &out[0];
    assert_eq!(r["type"], "reading");
    assert_eq!(r["metric"], "news2_score");
    assert_eq!(r["value"], 4.0);
    assert_eq!(r["unit"], "{score}");
    assert_eq!(r["subject"], "bed-2");
}

#[test]
fn bad_lines_are_reported_with_their_number() {
    let input = "{\"at\": \"2026-11-27T10:00:00Z\", \"subject\": \"b\", \"metric\": \"spo2\", \"value\": 97}\nnot json\n";
    let err = replay_str(input).unwrap_err();
    assert!(err.to_string().starts_with("line 2: not JSON"), "{err}");
    let err = replay_str("{\"subject\": \"b\"}\n").unwrap_err();
    assert!(
        err.to_string().starts_with("line 1: not a reading"),
        "{err}"
    );
    let err = replay_str("{\"at\": \"2026-11-27T10:00:00Z\", \"subject\": \"b\", \"metric\": \"spo2\", \"value\": 97, \"unit\": \"mmHg\"}\n")
        .unwrap_err();
    assert!(err.to_string().contains("canonical unit"), "{err}");
    let err = replay_str("{\"at\": \"2026-11-27T10:00:00Z\", \"subject\": \"b\", \"device\": \"d\", \"event\": \"Door Open\"}\n").unwrap_err();
    assert!(err.to_string().contains("snake_case"), "{err}");
}

#[test]
fn late_lines_are_handled_at_the_latest_time_and_counted() {
    let input = r#"{"at": "2026-11-27T10:00:10Z", "subject": "b", "metric": "glucose", "value": 100}
{"at": "2026-11-27T10:00:05Z", "subject": "b", "metric": "glucose", "value": 260}
{"at": "2026-11-27T10:00:06Z", "subject": "b", "metric": "body_temp", "value": 38.5}
"#;
    let (out, stats) = replay_str(input).unwrap();
    assert_eq!(stats.out_of_order, 2);
    // The late glucose is older than the latest one: it does not replace it,
    // so no hyperglycaemia; the late temperature is the latest of its metric.
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["rule"], "fever");
    assert_eq!(out[0]["at"], "2026-11-27T10:00:10Z");
}

#[test]
fn model_events_and_actions_are_accepted() {
    let input = r#"{"type": "device_status", "at": "2026-11-27T10:00:00Z", "subject": "b", "device": {"id": "band-1", "kind": "ble"}, "state": "offline"}
{"at": "2026-11-27T10:01:00Z", "action": "ack", "subject": "b", "rule": "device_offline", "by": "nurse-a"}
{"at": "2026-11-27T10:02:00Z", "action": "silence", "rule": "device_offline", "until": "2026-11-27T10:30:00Z", "by": "nurse-a"}
{"at": "2026-11-27T10:03:00Z", "action": "ack", "subject": "b", "rule": "device_offline", "by": "nurse-a"}
"#;
    let err = replay_str(input).unwrap_err();
    // offline at 0 → raised at 30 s; acknowledged at 60 s; the second ack fails.
    assert_eq!(
        err.to_string(),
        "line 4: alert b/device_offline/2026-11-27T10:00:30Z is already acknowledged"
    );
    let (out, stats) = replay_str(&input.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
    assert_eq!(stats.actions, 2);
    let t: Vec<_> = out
        .iter()
        .filter(|e| e["type"] == "alert")
        .map(|a| (a["transition"].as_str().unwrap(), a["at"].as_str().unwrap()))
        .collect();
    // The silence is on the record too: who, what, until when.
    let silence = out.iter().find(|e| e["type"] == "silence").unwrap();
    assert_eq!(
        (
            silence["target"]["rule"].as_str(),
            silence["by"].as_str(),
            silence["state"].as_str(),
            silence["until"].as_str()
        ),
        (
            Some("device_offline"),
            Some("nurse-a"),
            Some("active"),
            Some("2026-11-27T10:30:00Z")
        )
    );
    assert_eq!(
        t,
        vec![
            ("raised", "2026-11-27T10:00:30Z"),
            ("acknowledged", "2026-11-27T10:01:00Z")
        ]
    );
}
