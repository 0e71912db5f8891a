//! Property tests: replay never panics on arbitrary bytes, and the engine
//! keeps its lifecycle invariants on arbitrary event sequences.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use chrono::TimeDelta;
use proptest::prelude::*;
use wardgate_model::{
    AlarmPhase, AlertKind, AlertState, DeviceAlarm, DeviceId, DeviceKind, DeviceRef, DeviceState,
    DeviceStatus, Event, Metric, Reading, SubjectId, TimeSource, Transition,
};
use wardgate_rules::{EngineOptions, replay};

use crate::helpers::{base, engine};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn replay_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut out = Vec::new();
        let _ = replay(&bytes[..], &mut out, &mut engine(EngineOptions::default()));
    }

    #[test]
    fn replay_never_panics_on_plausible_lines(lines in proptest::collection::vec(
        (0i64..1000, 0usize..3, 0usize..6, -1000.0f64..1000.0), 0..40)) {
        let keys = ["metric", "event", "profile", "action", "type", "params"];
        let mut text = String::new();
        for (s, subject, key, v) in lines {
            writeln!(
                text,
                "{{\"at\": \"{}\", \"subject\": \"s{subject}\", \"{}\": \"spo2\", \"value\": {v}, \"device\": \"d\"}}",
                (base() + TimeDelta::seconds(s)).to_rfc3339(), keys[key]).unwrap();
        }
        let mut out = Vec::new();
        let _ = replay(text.as_bytes(), &mut out, &mut engine(EngineOptions::default()));
    }

    #[test]
    fn lifecycle_invariants_hold(steps in proptest::collection::vec((0u8..6, 0usize..3, 0u32..400, 0i64..30), 1..120)) {
        let mut e = engine(EngineOptions::default());
        let metrics = [Metric::Glucose, Metric::Spo2, Metric::HeartRate, Metric::BpSystolic];
        let alarms = ["occlusion_downstream", "air_in_line", "sensor_contact_lost"];
        let mut now = base();
        let mut out = Vec::new();
        for (kind, subject, value, dt) in steps {
            now += TimeDelta::seconds(dt);
            let subject = SubjectId::from(format!("s{subject}"));
            let device = DeviceRef::new(DeviceId::from("dev"), if kind == 4 { DeviceKind::Ble } else { DeviceKind::Pump });
            let ev = match kind {
                0..=2 => Event::Reading(Reading::new(now, TimeSource::Gateway, subject, None,
                    metrics[value as usize % metrics.len()].clone(), f64::from(value)).unwrap()),
                3 | 4 => Event::DeviceAlarm(DeviceAlarm { at: now, subject, device,
                    alarm: alarms[value as usize % alarms.len()].into(),
                    phase: if value % 2 == 0 { AlarmPhase::Start } else { AlarmPhase::End },
                    kind: AlertKind::Technical, raw: None }),
                _ => Event::DeviceStatus(DeviceStatus { at: now, subject, device,
                    state: if value % 2 == 0 { DeviceState::Offline } else { DeviceState::Online }, reason: None }),
            };
            while let Some(d) = e.poll_timeout() {
                if d > now { break; }
                out.extend(e.poll_tick(d));
            }
            out.extend(e.handle_event(now, &ev));
            // Acknowledge some open alerts as a nurse would.
            if value % 7 == 0
                && let Some((id, ..)) = e.open_alerts().into_iter().find(|a| a.3 != AlertState::Acknowledged)
            {
                out.extend(e.acknowledge(now, &id, "n").unwrap());
            }
        }
        // One open episode per (subject, rule); ids unique per episode; every
        // episode starts with `raised` and nothing follows `cleared`.
        let mut open: HashMap<(String, String), String> = HashMap::new();
        let mut seen: HashSet<String> = HashSet::new();
        for ev in &out {
            let Event::Alert(a) = ev else { continue };
            let key = (a.subject.to_string(), a.rule.to_string());
            match a.transition {
                Transition::Raised => {
                    prop_assert!(!open.contains_key(&key), "duplicate alert for {key:?}");
                    prop_assert!(seen.insert(a.id.0.to_string()), "id reused: {}", a.id.0);
                    open.insert(key, a.id.0.to_string());
                }
                Transition::Cleared => {
                    let was = open.remove(&key);
                    prop_assert_eq!(was.as_deref(), Some(&*a.id.0));
                }
                _ => prop_assert_eq!(open.get(&key).map(String::as_str), Some(&*a.id.0)),
            }
        }
        let still: HashSet<String> = e.open_alerts().into_iter().map(|a| a.0.0.to_string()).collect();
        prop_assert_eq!(still, open.into_values().collect::<HashSet<_>>());
    }
}
