//! The alert lifecycle through the engine's own API (as the gateway drives
//! it): dedup, hysteresis, `for`, latching, escalation, silence,
//! acknowledgement errors, stable ids, audit trail, poll_timeout.

use chrono::TimeDelta;
use wardgate_model::{
    AlarmPhase, AlertId, AlertKind, AlertState as S, DeviceAlarm, DeviceId, DeviceKind, DeviceRef,
    Event, Metric, MetricRegistry, Reading, SilenceState, SubjectId, SubjectProfile, TimeSource,
    Timestamp, Transition as X,
};
use wardgate_rules::{
    AckError, AuditEntry, Engine, EngineOptions, RuleSet, RuleSource, SilenceError, SilenceTarget,
};

use crate::helpers::base;

const RULES: &str = r#"
[params]
low = 90

[[rules]]
id = "spo2_low"
when = 'spo2 < param("low")'
clear = 'spo2 >= param("low") + 2'
priority = "high"
kind = "physiological"
message = "SpO2 {spo2} %"
escalate_after = "2m"

[[rules]]
id = "spo2_sustained"
when = "spo2 < 85"
for = "60s"
priority = "medium"
kind = "physiological"
message = "SpO2 {spo2} % for a minute"

[[rules]]
id = "occlusion"
when = 'alarm("occlusion")'
priority = "high"
kind = "technical"
latching = true
message = "occlusion on {device}"
"#;

fn t(s: i64) -> Timestamp {
    base() + TimeDelta::seconds(s)
}

fn engine() -> Engine {
    let rules = RuleSet::compile(
        &[RuleSource {
            name: "test.toml",
            text: RULES,
        }],
        &MetricRegistry::default(),
    )
    .unwrap();
    Engine::new(rules, EngineOptions::default()).unwrap()
}

fn spo2(s: i64, v: f64) -> Event {
    Event::Reading(
        Reading::new(
            t(s),
            TimeSource::Device,
            SubjectId::from("bed-1"),
            None,
            Metric::Spo2,
            v,
        )
        .unwrap(),
    )
}

fn occlusion(s: i64, phase: AlarmPhase) -> Event {
    Event::DeviceAlarm(DeviceAlarm {
        at: t(s),
        subject: "bed-1".into(),
        device: DeviceRef::new(DeviceId::from("pump-1"), DeviceKind::Pump),
        alarm: "occlusion_downstream".into(),
        phase,
        kind: AlertKind::Technical,
        raw: None,
    })
}

/// Feeds events at their own time, ticking at every deadline in between.
fn drive(engine: &mut Engine, events: &[Event]) -> Vec<(i64, String, X, S, u8)> {
    let mut out = Vec::new();
    for e in events {
        while let Some(d) = engine.poll_timeout() {
            if d > e.at() {
                break;
            }
            out.extend(engine.poll_tick(d));
        }
        out.extend(engine.handle_event(e.at(), e));
    }
    summarize(&out)
}

fn summarize(out: &[Event]) -> Vec<(i64, String, X, S, u8)> {
    out.iter()
        .filter_map(|e| match e {
            Event::Alert(a) => Some((
                (a.at - base()).num_seconds(),
                a.rule.to_string(),
                a.transition,
                a.state,
                a.escalation_level,
            )),
            _ => None,
        })
        .collect()
}

fn r(s: i64, rule: &str, x: X, st: S, level: u8) -> (i64, String, X, S, u8) {
    (s, rule.to_owned(), x, st, level)
}

#[test]
fn one_alert_per_episode_with_hysteresis() {
    let mut e = engine();
    let got = drive(
        &mut e,
        &[
            spo2(0, 89.0),  // < 90: raised
            spo2(10, 88.0), // still low: no duplicate
            spo2(20, 91.0), // not ≥ 92: stays (hysteresis)
            spo2(30, 89.0), // low again, same episode: nothing
            spo2(40, 92.0), // cleared
            spo2(50, 89.0), // a new episode
        ],
    );
    assert_eq!(
        got,
        vec![
            r(0, "spo2_low", X::Raised, S::Active, 0),
            r(40, "spo2_low", X::Cleared, S::Cleared, 0),
            r(50, "spo2_low", X::Raised, S::Active, 0),
        ]
    );
}

#[test]
fn for_needs_the_condition_to_hold_throughout() {
    let mut e = engine();
    let got = drive(
        &mut e,
        &[
            spo2(0, 84.0),  // pending from 0
            spo2(30, 86.0), // broken at 30: pending reset
            spo2(40, 84.0), // pending from 40
            spo2(130, 90.0),
        ],
    );
    let sustained: Vec<_> = got
        .into_iter()
        .filter(|x| x.1 == "spo2_sustained")
        .collect();
    // Raised by the tick at 40 + 60 = 100 s, without any new reading.
    assert_eq!(
        sustained,
        vec![
            r(100, "spo2_sustained", X::Raised, S::Active, 0),
            r(130, "spo2_sustained", X::Cleared, S::Cleared, 0)
        ]
    );
}

#[test]
fn escalates_every_escalate_after_until_acknowledged() {
    let mut e = engine();
    let mut got = drive(&mut e, &[spo2(0, 89.0), spo2(250, 89.0)]);
    let id = e.open_alert(&"bed-1".into(), &"spo2_low".into()).unwrap();
    assert_eq!(id, AlertId("bed-1/spo2_low/2026-11-27T10:00:00Z".into()));
    got.extend(summarize(&e.acknowledge(t(260), &id, "nurse-a").unwrap()));
    got.extend(drive(&mut e, &[spo2(600, 89.0), spo2(700, 95.0)]));
    assert_eq!(
        got,
        vec![
            r(0, "spo2_low", X::Raised, S::Active, 0),
            r(120, "spo2_low", X::Escalated, S::Active, 1),
            r(240, "spo2_low", X::Escalated, S::Active, 2),
            r(260, "spo2_low", X::Acknowledged, S::Acknowledged, 2),
            // no escalation after acknowledgement
            r(700, "spo2_low", X::Cleared, S::Cleared, 2),
        ]
    );
    assert_eq!(
        e.acknowledge(t(800), &id, "nurse-a"),
        Err(AckError::UnknownAlert(id.0.to_string()))
    );
}

#[test]
fn latching_alert_waits_for_acknowledgement() {
    let mut e = engine();
    let mut got = drive(
        &mut e,
        &[
            occlusion(0, AlarmPhase::Start),
            occlusion(10, AlarmPhase::End),
        ],
    );
    let id = e.open_alert(&"bed-1".into(), &"occlusion".into()).unwrap();
    // The condition returns while latched: still the same episode.
    got.extend(drive(&mut e, &[occlusion(20, AlarmPhase::Start)]));
    got.extend(summarize(&e.acknowledge(t(30), &id, "nurse-b").unwrap()));
    assert_eq!(
        e.acknowledge(t(31), &id, "nurse-b"),
        Err(AckError::AlreadyAcknowledged(id.0.to_string()))
    );
    got.extend(drive(&mut e, &[occlusion(40, AlarmPhase::End)]));
    assert_eq!(
        got,
        vec![
            r(0, "occlusion", X::Raised, S::Active, 0),
            r(10, "occlusion", X::Latched, S::Latched, 0),
            // acknowledged while the condition holds again: acknowledged, not cleared
            r(30, "occlusion", X::Acknowledged, S::Acknowledged, 0),
            r(40, "occlusion", X::Cleared, S::Cleared, 0),
        ]
    );
}

#[test]
fn latched_alert_stays_latched_when_its_condition_comes_and_goes_again() {
    let mut e = engine();
    // Raised, latched, the condition returns and goes again: no acknowledgement
    // yet, so the alert must still be latched, not cleared.
    let mut got = drive(
        &mut e,
        &[
            occlusion(0, AlarmPhase::Start),
            occlusion(10, AlarmPhase::End),
            occlusion(20, AlarmPhase::Start),
            occlusion(30, AlarmPhase::End),
        ],
    );
    let id = e.open_alert(&"bed-1".into(), &"occlusion".into()).unwrap();
    got.extend(summarize(&e.acknowledge(t(40), &id, "nurse-b").unwrap()));
    assert_eq!(
        got,
        vec![
            r(0, "occlusion", X::Raised, S::Active, 0),
            r(10, "occlusion", X::Latched, S::Latched, 0),
            // the condition is gone at the acknowledgement: acknowledged, then cleared
            r(40, "occlusion", X::Acknowledged, S::Acknowledged, 0),
            r(40, "occlusion", X::Cleared, S::Cleared, 0),
        ]
    );
}

#[test]
fn silence_holds_back_new_alerts_and_defers_escalation() {
    let mut e = engine();
    // Rule silenced from 0 to 300 s: the low SpO2 at 10 s is raised when the silence ends.
    drive(&mut e, &[spo2(0, 95.0)]);
    e.silence(
        t(0),
        SilenceTarget::Rule("spo2_low".into()),
        t(300),
        "nurse-a",
    )
    .unwrap();
    let got = drive(&mut e, &[spo2(10, 89.0), spo2(400, 89.0)]);
    assert_eq!(got, vec![r(300, "spo2_low", X::Raised, S::Active, 0)]);

    // Subject silenced from 400 to 600 s: the escalation due at 420 s comes at 600 s.
    e.silence(
        t(400),
        SilenceTarget::Subject("bed-1".into()),
        t(600),
        "nurse-a",
    )
    .unwrap();
    let got = drive(&mut e, &[spo2(700, 89.0)]);
    assert_eq!(got, vec![r(600, "spo2_low", X::Escalated, S::Active, 1)]);

    assert_eq!(
        e.silence(t(700), SilenceTarget::Subject("bed-1".into()), t(700), "x"),
        Err(SilenceError::EndsInPast)
    );
    assert_eq!(
        e.silence(
            t(700),
            SilenceTarget::Subject("bed-1".into()),
            t(700 + 5 * 3600),
            "x"
        ),
        Err(SilenceError::TooLong { max_minutes: 240 })
    );
    assert_eq!(
        e.silence(t(700), SilenceTarget::Rule("nope".into()), t(800), "x"),
        Err(SilenceError::UnknownRule("nope".into()))
    );

    // Both silences (their start and their end) and every transition are in
    // the audit trail, with who and when.
    let (audit, dropped) = e.drain_audit();
    assert_eq!(dropped, 0);
    let silences: Vec<_> = audit
        .iter()
        .filter_map(|a| match a {
            AuditEntry::Silenced(s) => Some((
                (s.at - base()).num_seconds(),
                s.state,
                (s.from - base()).num_seconds(),
                (s.until - base()).num_seconds(),
                s.by.to_string(),
            )),
            AuditEntry::Alert(_) => None,
        })
        .collect();
    assert_eq!(
        silences,
        vec![
            (0, SilenceState::Active, 0, 300, "nurse-a".to_owned()),
            (300, SilenceState::Ended, 0, 300, "nurse-a".to_owned()),
            (400, SilenceState::Active, 400, 600, "nurse-a".to_owned()),
            (600, SilenceState::Ended, 400, 600, "nurse-a".to_owned()),
        ]
    );
    assert_eq!(
        audit
            .iter()
            .filter(|a| matches!(a, AuditEntry::Alert(_)))
            .count(),
        2
    );
    assert!(e.drain_audit().0.is_empty());
}

#[test]
fn acknowledgement_is_recorded_on_the_alert() {
    let mut e = engine();
    drive(&mut e, &[spo2(0, 89.0)]);
    let id = e.open_alert(&"bed-1".into(), &"spo2_low".into()).unwrap();
    let out = e.acknowledge(t(5), &id, "nurse-c").unwrap();
    let Event::Alert(a) = &out[0] else { panic!() };
    let ack = a.acknowledged.as_ref().unwrap();
    assert_eq!((&*ack.by, ack.at), ("nurse-c", t(5)));
    assert_eq!(a.raised_at, t(0));
    assert_eq!(&*a.message, "SpO2 89 %");
    assert!(matches!(
        e.acknowledge(t(6), &AlertId("nope".into()), "x"),
        Err(AckError::UnknownAlert(_))
    ));
}

#[test]
fn profile_change_clears_alerts_of_rules_that_no_longer_apply() {
    let text = r#"
[[rules]]
id = "copd_only"
when = "spo2 < 88"
priority = "high"
kind = "physiological"
applies_to = ["copd"]
message = "m"
"#;
    let rules = RuleSet::compile(
        &[RuleSource {
            name: "t.toml",
            text,
        }],
        &MetricRegistry::default(),
    )
    .unwrap();
    let mut e = Engine::new(rules, EngineOptions::default()).unwrap();
    let subject = SubjectId::from("bed-1");
    // Without COPD: nothing.
    assert!(drive(&mut e, &[spo2(0, 85.0)]).is_empty());
    let copd = SubjectProfile {
        conditions: vec![wardgate_model::Condition::Copd],
        ..SubjectProfile::default()
    };
    assert!(e.set_profile(t(1), &subject, copd).is_empty());
    assert_eq!(
        drive(&mut e, &[spo2(2, 85.0)]),
        vec![r(2, "copd_only", X::Raised, S::Active, 0)]
    );
    let out = e.set_profile(t(3), &subject, SubjectProfile::default());
    assert_eq!(
        summarize(&out),
        vec![r(3, "copd_only", X::Cleared, S::Cleared, 0)]
    );
}

#[test]
fn poll_timeout_names_the_next_deadline() {
    let mut e = engine();
    assert_eq!(e.poll_timeout(), None); // nothing known yet
    e.handle_event(t(0), &spo2(0, 84.0));
    // spo2_sustained is pending until 60 s; no time-dependent rules in this
    // set, so that is the only deadline.
    assert_eq!(e.poll_timeout(), Some(t(60)));
    let out = e.poll_tick(t(60));
    assert_eq!(
        summarize(&out),
        vec![r(60, "spo2_sustained", X::Raised, S::Active, 0)]
    );
    // Next: spo2_low's escalation 2 minutes after it was raised at 0 s.
    assert_eq!(e.poll_timeout(), Some(t(120)));
}

#[test]
fn replaying_the_same_input_gives_the_same_ids() {
    let events = [
        spo2(0, 89.0),
        spo2(40, 95.0),
        spo2(50, 89.0),
        occlusion(60, AlarmPhase::Start),
    ];
    let ids = |e: &mut Engine| -> Vec<String> {
        let mut out = Vec::new();
        for ev in &events {
            out.extend(e.handle_event(ev.at(), ev));
        }
        out.iter()
            .filter_map(|x| match x {
                Event::Alert(a) => Some(a.id.0.to_string()),
                _ => None,
            })
            .collect()
    };
    let a = ids(&mut engine());
    assert_eq!(a, ids(&mut engine()));
    assert_eq!(
        a,
        vec![
            "bed-1/spo2_low/2026-11-27T10:00:00Z",
            "bed-1/spo2_low/2026-11-27T10:00:00Z",
            "bed-1/spo2_low/2026-11-27T10:00:50Z",
            "bed-1/occlusion/2026-11-27T10:01:00Z",
        ]
    );
}
