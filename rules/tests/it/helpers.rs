//! Builds replay input lines and reads back the transitions.

use chrono::TimeDelta;
use serde_json::json;
use wardgate_model::{AlertState, Event, Priority, Timestamp, Transition};
use wardgate_rules::{Engine, EngineOptions, ReplayStats, packs, replay};

/// 2026-11-27T10:00:00Z: second 0 of every test.
pub(crate) fn base() -> Timestamp {
    "2026-11-27T10:00:00Z".parse().unwrap()
}

pub(crate) fn at(s: i64) -> String {
    (base() + TimeDelta::seconds(s)).to_rfc3339()
}

pub(crate) fn reading(s: i64, subject: &str, metric: &str, value: f64) -> String {
    json!({"at": at(s), "subject": subject, "metric": metric, "value": value}).to_string()
}

pub(crate) fn device_event(s: i64, subject: &str, device: &str, event: &str) -> String {
    json!({"at": at(s), "subject": subject, "device": device, "event": event}).to_string()
}

pub(crate) fn alarm_end(s: i64, subject: &str, device: &str, event: &str) -> String {
    json!({"at": at(s), "subject": subject, "device": device, "event": event, "phase": "end"})
        .to_string()
}

pub(crate) fn ble_alarm(s: i64, subject: &str, device: &str, event: &str, phase: &str) -> String {
    json!({"at": at(s), "subject": subject, "device": device, "event": event, "phase": phase, "kind": "ble"}).to_string()
}

pub(crate) fn profile(subject: &str, profile: &serde_json::Value) -> String {
    json!({"subject": subject, "profile": profile}).to_string()
}

pub(crate) fn ack(s: i64, subject: &str, rule: &str) -> String {
    json!({"at": at(s), "action": "ack", "subject": subject, "rule": rule, "by": "nurse-a"})
        .to_string()
}

/// Every built-in pack with the given options.
pub(crate) fn engine(opts: EngineOptions) -> Engine {
    Engine::new(packs::builtin_rule_set().unwrap(), opts).unwrap()
}

/// Replays `lines`, stably sorted by their `at` (lines without one first), as
/// a recording would be.
pub(crate) fn run_with(lines: &[String], engine: &mut Engine) -> (Vec<Event>, ReplayStats) {
    let mut lines = lines.to_vec();
    lines.sort_by_key(|l| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["at"]
            .as_str()
            .map(|s| s.parse::<Timestamp>().unwrap())
    });
    let input = lines.join("\n");
    let mut out = Vec::new();
    let stats = replay(input.as_bytes(), &mut out, engine).unwrap();
    let events = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Event>(l).unwrap())
        .collect();
    (events, stats)
}

pub(crate) fn run(lines: &[String]) -> Vec<Event> {
    run_with(lines, &mut engine(EngineOptions::default())).0
}

/// One transition: (second, subject, rule, transition, state), sorted.
pub(crate) type T = (i64, String, String, Transition, AlertState);

pub(crate) fn transitions(events: &[Event], rule: Option<&str>) -> Vec<T> {
    let mut v: Vec<T> = events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) if rule.is_none_or(|r| a.rule.as_str() == r) => Some((
                (a.at - base()).num_seconds(),
                a.subject.to_string(),
                a.rule.to_string(),
                a.transition,
                a.state,
            )),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| (a.0, &a.1, &a.2, a.3 as u8).cmp(&(b.0, &b.1, &b.2, b.3 as u8)));
    v
}

/// Shorthand for an expected transition.
pub(crate) fn tr(s: i64, subject: &str, rule: &str, t: Transition, st: AlertState) -> T {
    (s, subject.to_owned(), rule.to_owned(), t, st)
}

pub(crate) fn sorted(mut v: Vec<T>) -> Vec<T> {
    v.sort_by(|a, b| (a.0, &a.1, &a.2, a.3 as u8).cmp(&(b.0, &b.1, &b.2, b.3 as u8)));
    v
}

/// Derived news2_score readings: (second, value).
pub(crate) fn news2_scores(events: &[Event]) -> Vec<(i64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Reading(r) if r.metric.name() == "news2_score" => {
                Some(((r.at - base()).num_seconds(), r.value))
            }
            _ => None,
        })
        .collect()
}

/// One transition as a nurse sees it: (second, subject, transition, state,
/// priority, message), in the order emitted.
pub(crate) type D = (i64, String, Transition, AlertState, Priority, String);

pub(crate) fn details(events: &[Event], rule: &str) -> Vec<D> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) if a.rule.as_str() == rule => Some((
                (a.at - base()).num_seconds(),
                a.subject.to_string(),
                a.transition,
                a.state,
                a.priority,
                a.message.to_string(),
            )),
            _ => None,
        })
        .collect()
}

/// Shorthand for an expected [`D`].
pub(crate) fn dt(s: i64, subject: &str, t: Transition, st: AlertState, p: Priority, m: &str) -> D {
    (s, subject.to_owned(), t, st, p, m.to_owned())
}
