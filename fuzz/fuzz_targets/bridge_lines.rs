#![no_main]
//! The bridge's line check (`bridge::lines::check`), which decides, line by
//! line, whether telemetry from a topic is written to InfluxDB or refused.
//!
//! Two inputs from one run: arbitrary bytes as a payload, and events built
//! from arbitrary values the way the gateway encodes them for MQTT
//! (`lineproto::encode`): any finite value, any timestamp, ids as the
//! configuration allows them (ASCII letters, digits, `-_.`), custom metric
//! names and units as `[[metrics]]` allows them, and free text where the
//! devices and the gateway write words (alarm text, status reasons).
//!
//! The first campaign found a custom unit with a tab (then accepted by the
//! configuration) breaking every line of its metric; see
//! `units_that_would_break_line_protocol_are_refused` in gateway/src/config.
//!
//! Asserts, beyond "no panic":
//! - every line of an accepted payload is either good or refused, and there
//!   are no more of them than line breaks plus one;
//! - every line the gateway encodes, published on its own topic with its
//!   custom metrics declared, passes the bridge's check, one line per event,
//!   with the event's own timestamp as the oldest.

use std::sync::Arc;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use wardgate::bridge::lines::{Schema, check};
use wardgate::lineproto::{Identity, encode};
use wardgate_model::{
    AlarmPhase, AlertKind, DeviceAlarm, DeviceId, DeviceKind, DeviceRef, DeviceState, DeviceStatus,
    Event, Metric, Reading, SubjectId, TimeSource,
};

/// An id as `id_problem` in gateway/src/config accepts it: 1 to 64 of
/// ASCII letters, digits, `-`, `_`, `.`.
fn id(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";
    let len = u.int_in_range(1..=64)?;
    (0..len)
        .map(|_| Ok(char::from(*u.choose(ALPHABET)?)))
        .collect()
}

/// A custom metric name as `name_problem` accepts it: snake_case.
fn metric_name(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
    let len = u.int_in_range(0..=32)?;
    let mut s = String::from(char::from(u.int_in_range(b'a'..=b'z')?));
    for _ in 0..len {
        s.push(char::from(*u.choose(ALPHABET)?));
    }
    Ok(s)
}

fn events(u: &mut Unstructured<'_>) -> arbitrary::Result<(Identity, Vec<Event>)> {
    let identity = Identity {
        site: id(u)?,
        ward: id(u)?,
        gateway: id(u)?,
    };
    let subject = SubjectId::from(id(u)?.as_str());
    let kind = *u.choose(&[
        DeviceKind::Ble,
        DeviceKind::Pump,
        DeviceKind::Modbus,
        DeviceKind::Synthetic,
    ])?;
    let device = DeviceRef::new(DeviceId::from(id(u)?.as_str()), kind);
    let at = chrono::DateTime::from_timestamp_nanos(u.arbitrary()?);
    let metric = if u.arbitrary()? {
        u.choose(Metric::BUILTIN)?.clone()
    } else {
        // As `[[metrics]]` accepts a unit: printable ASCII without spaces
        // or backslashes (`unit_problem` in gateway/src/config).
        let unit: String = u
            .arbitrary::<String>()?
            .chars()
            .filter(|&c| c.is_ascii_graphic() && c != '\\')
            .collect();
        if unit.is_empty() {
            return Err(arbitrary::Error::IncorrectFormat);
        }
        let name = metric_name(u)?;
        // The configuration refuses a custom metric named as a built-in one.
        if Metric::BUILTIN.iter().any(|m| m.name() == name) {
            return Err(arbitrary::Error::IncorrectFormat);
        }
        Metric::custom(&name, &unit, None)
    };
    let value: f64 = u.arbitrary()?;
    if !value.is_finite() {
        return Err(arbitrary::Error::IncorrectFormat);
    }
    let reading = Reading::new(
        at,
        TimeSource::Device,
        subject.clone(),
        Some(device.clone()),
        metric,
        value,
    )
    .expect("finite value, canonical unit");
    let raw: Option<String> = u.arbitrary()?;
    let alarm = DeviceAlarm {
        at,
        subject: subject.clone(),
        device: device.clone(),
        alarm: Arc::from(metric_name(u)?),
        phase: AlarmPhase::Start,
        kind: AlertKind::Technical,
        raw: raw.map(Arc::from),
    };
    let reason: Option<String> = u.arbitrary()?;
    let status = DeviceStatus {
        at,
        subject,
        device,
        state: DeviceState::Offline,
        reason: reason.map(Arc::from),
    };
    Ok((
        identity,
        vec![
            Event::Reading(reading),
            Event::DeviceAlarm(alarm),
            Event::DeviceStatus(status),
        ],
    ))
}

fuzz_target!(|data: &[u8]| {
    let topic = "wardgate/site/ward/gw/telemetry";
    if let Ok(checked) = check(topic, data, &Schema::new("wardgate", ["co2".to_owned()])) {
        let breaks = data.iter().filter(|&&b| b == b'\n').count();
        let lines = checked.good.len() + checked.refused.len();
        assert!(lines >= 1 && lines <= breaks + 1, "{checked:?}");
    }

    let mut u = Unstructured::new(data);
    let Ok((identity, events)) = events(&mut u) else {
        return;
    };
    let topic = format!(
        "wardgate/{}/{}/{}/telemetry",
        identity.site, identity.ward, identity.gateway
    );
    for event in &events {
        let declared = match event {
            Event::Reading(r) => vec![r.metric.name().to_owned()],
            _ => Vec::new(),
        };
        let schema = Schema::new("wardgate", declared);
        let mut line = String::new();
        encode(event, &identity, &mut line);
        let at = event.at().timestamp_nanos_opt().unwrap();
        match check(&topic, line.as_bytes(), &schema) {
            Ok(c) => {
                assert_eq!(
                    c.refused,
                    [],
                    "the bridge refuses what the gateway sent: {line:?}"
                );
                assert_eq!((c.good.len(), c.oldest_ns), (1, at), "{line:?}");
            }
            Err(e) => panic!("the bridge refuses what the gateway sent: {e}\n{line:?}"),
        }
    }
});
