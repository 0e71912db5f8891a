//! InfluxDB line protocol for every event: the one encoding shared by the MQTT
//! telemetry payloads, the InfluxDB sink and the bridge. Pure functions.
//!
//! Schema (see `docs/influxdb.md`):
//! - a reading → measurement = metric name, field `value` (float), tags
//!   `site`, `ward`, `gateway`, `subject`, `device`, `device_kind`, `unit`,
//!   `time_source`;
//! - a device status → `device_status`, field `online` (1i/0i) and `reason`;
//! - a device alarm → `device_alarm`, tags `alarm`, `kind`, fields `active`
//!   (1i on start, 0i on end) and `raw`;
//! - an alert transition → `alert`, tags `rule`, `priority`, `kind`, fields
//!   `id`, `state`, `transition`, `active` (1i until cleared),
//!   `escalation_level`, `message`.
//!
//! Timestamps are nanoseconds since the Unix epoch (the event's own time), so
//! a re-delivered line overwrites itself: same series, same timestamp.

use std::fmt::Write;

use wardgate_model::{AlarmPhase, AlertState, DeviceRef, DeviceState, Event, Timestamp};

/// The gateway's identity, written as tags on every line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub site: String,
    pub ward: String,
    pub gateway: String,
}

/// The tags and fields lines of one measurement may carry: the schema
/// [`encode`] writes, for checking lines this gateway did not write itself
/// (`wardgate bridge`). A test below encodes every kind of event and checks
/// its line against its shape, so the two cannot drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub tags: &'static [&'static str],
    pub fields: &'static [&'static str],
}

/// The tags naming the gateway that wrote a line, on every line; its MQTT
/// telemetry topic carries the same three values.
pub const IDENTITY_TAGS: [&str; 3] = ["site", "ward", "gateway"];

const READING: Shape = Shape {
    tags: &[
        "site",
        "ward",
        "gateway",
        "subject",
        "device",
        "device_kind",
        "time_source",
        "unit",
    ],
    fields: &["value"],
};
const DEVICE_STATUS: Shape = Shape {
    tags: &[
        "site",
        "ward",
        "gateway",
        "subject",
        "device",
        "device_kind",
    ],
    fields: &["online", "reason"],
};
const DEVICE_ALARM: Shape = Shape {
    tags: &[
        "site",
        "ward",
        "gateway",
        "subject",
        "device",
        "device_kind",
        "alarm",
        "kind",
    ],
    fields: &["active", "raw"],
};
const ALERT: Shape = Shape {
    tags: &[
        "site",
        "ward",
        "gateway",
        "subject",
        "device",
        "device_kind",
        "rule",
        "priority",
        "kind",
    ],
    fields: &[
        "active",
        "escalation_level",
        "id",
        "state",
        "transition",
        "message",
        "acknowledged_by",
        "acknowledged_via",
    ],
};
const SILENCE: Shape = Shape {
    tags: &["site", "ward", "gateway", "subject", "rule"],
    fields: &["active", "by", "via", "until"],
};

/// The shape of lines of `measurement`: one of the event measurements, or a
/// reading when `is_metric` says it names a metric (built-in or declared).
pub fn shape(measurement: &str, is_metric: impl FnOnce(&str) -> bool) -> Option<Shape> {
    match measurement {
        "device_status" => Some(DEVICE_STATUS),
        "device_alarm" => Some(DEVICE_ALARM),
        "alert" => Some(ALERT),
        "silence" => Some(SILENCE),
        m if is_metric(m) => Some(READING),
        _ => None,
    }
}

/// Appends one line (with its `\n`) for `event` to `out`.
pub fn encode(event: &Event, id: &Identity, out: &mut String) {
    match event {
        Event::Reading(r) => {
            measurement(out, r.metric.name());
            common_tags(out, id, r.subject.as_str(), r.device.as_ref());
            tag(out, "time_source", r.time_source.as_str());
            tag(out, "unit", r.metric.unit());
            out.push_str(" value=");
            float(out, r.value);
            finish(out, r.at);
        }
        Event::DeviceStatus(s) => {
            measurement(out, "device_status");
            common_tags(out, id, s.subject.as_str(), Some(&s.device));
            out.push_str(" online=");
            out.push_str(if s.state == DeviceState::Online {
                "1i"
            } else {
                "0i"
            });
            if let Some(reason) = &s.reason {
                string_field(out, "reason", reason);
            }
            finish(out, s.at);
        }
        Event::DeviceAlarm(a) => {
            measurement(out, "device_alarm");
            common_tags(out, id, a.subject.as_str(), Some(&a.device));
            tag(out, "alarm", &a.alarm);
            tag(out, "kind", a.kind.as_str());
            out.push_str(" active=");
            out.push_str(if a.phase == AlarmPhase::Start {
                "1i"
            } else {
                "0i"
            });
            if let Some(raw) = &a.raw {
                string_field(out, "raw", raw);
            }
            finish(out, a.at);
        }
        Event::Alert(a) => {
            measurement(out, "alert");
            common_tags(out, id, a.subject.as_str(), a.device.as_ref());
            tag(out, "rule", a.rule.as_str());
            tag(out, "priority", a.priority.as_str());
            tag(out, "kind", a.kind.as_str());
            out.push_str(" active=");
            out.push_str(if a.state == AlertState::Cleared {
                "0i"
            } else {
                "1i"
            });
            let _ = write!(out, ",escalation_level={}i", a.escalation_level);
            string_field(out, "id", &a.id.0);
            string_field(out, "state", a.state.as_str());
            string_field(out, "transition", a.transition.as_str());
            string_field(out, "message", &a.message);
            if let Some(ack) = &a.acknowledged {
                string_field(out, "acknowledged_by", &ack.by);
                if let Some(via) = &ack.via {
                    string_field(out, "acknowledged_via", via);
                }
            }
            finish(out, a.at);
        }
        Event::Silence(s) => {
            measurement(out, "silence");
            common_tags(out, id, s.subject.as_str(), None);
            if let wardgate_model::SilenceTarget::Rule(r) = &s.target {
                tag(out, "rule", r.as_str());
            }
            out.push_str(" active=");
            out.push_str(if s.state == wardgate_model::SilenceState::Active {
                "1i"
            } else {
                "0i"
            });
            string_field(out, "by", &s.by);
            if let Some(via) = &s.via {
                string_field(out, "via", via);
            }
            let _ = write!(
                out,
                ",until={}i",
                s.until.timestamp_nanos_opt().unwrap_or_default()
            );
            finish(out, s.at);
        }
    }
}

fn common_tags(out: &mut String, id: &Identity, subject: &str, device: Option<&DeviceRef>) {
    tag(out, "site", &id.site);
    tag(out, "ward", &id.ward);
    tag(out, "gateway", &id.gateway);
    tag(out, "subject", subject);
    if let Some(d) = device {
        tag(out, "device", d.id.as_str());
        tag(out, "device_kind", d.kind.as_str());
    }
}

/// Measurement names escape commas and spaces.
fn measurement(out: &mut String, name: &str) {
    escape(out, name, &[',', ' ']);
}

/// Tag keys and values escape commas, equals signs and spaces; an empty tag
/// value is not allowed by the protocol and is left out.
fn tag(out: &mut String, key: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    out.push(',');
    escape(out, key, &[',', '=', ' ']);
    out.push('=');
    escape(out, value, &[',', '=', ' ']);
}

/// String field values are double-quoted; `"` and `\` are escaped.
fn string_field(out: &mut String, key: &str, value: &str) {
    out.push(',');
    escape(out, key, &[',', '=', ' ']);
    out.push_str("=\"");
    escape(out, value, &['"', '\\']);
    out.push('"');
}

/// Floats always carry a decimal point or exponent so InfluxDB never reads
/// them as integers; values are finite by the model's invariant.
fn float(out: &mut String, v: f64) {
    let start = out.len();
    let _ = write!(out, "{v}");
    if !out[start..].contains(['.', 'e', 'E']) {
        out.push_str(".0");
    }
}

fn finish(out: &mut String, at: Timestamp) {
    let _ = writeln!(out, " {}", at.timestamp_nanos_opt().unwrap_or(i64::MAX));
}

fn escape(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        match c {
            // A line break would end the line: never valid inside a line.
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if special.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use wardgate_model::{
        Alert, AlertId, AlertKind, DeviceAlarm, DeviceKind, Metric, Priority, Reading, TimeSource,
        Transition,
    };

    fn id() -> Identity {
        Identity {
            site: "st example".into(),
            ward: "ward-7".into(),
            gateway: "gw-1".into(),
        }
    }

    fn at() -> Timestamp {
        "2026-11-27T10:00:00.000000001Z".parse().unwrap()
    }

    fn check(event: &Event, expected: &str) {
        let mut out = String::new();
        encode(event, &id(), &mut out);
        assert_eq!(out, format!("{expected}\n"));
        fits_its_shape(&out);
    }

    /// Every tag and field of the line is in its measurement's [`Shape`],
    /// and the identity tags are there.
    fn fits_its_shape(line: &str) {
        let parsed = influxdb_line_protocol::parse_lines(line)
            .next()
            .unwrap()
            .unwrap();
        let m = parsed.series.measurement.as_str();
        let shape = shape(m, |m| Metric::builtin(m).is_some()).unwrap();
        let tags: Vec<&str> = parsed
            .series
            .tag_set
            .iter()
            .flatten()
            .map(|(k, _)| k.as_str())
            .collect();
        for t in &tags {
            assert!(shape.tags.contains(t), "tag {t} of {m} not in its shape");
        }
        for t in IDENTITY_TAGS {
            assert!(tags.contains(&t), "{m} without {t}");
        }
        for (f, _) in &parsed.field_set {
            assert!(
                shape.fields.contains(&f.as_str()),
                "field {f} of {m} not in its shape"
            );
        }
    }

    #[test]
    fn device_status_fits_its_shape() {
        let mut out = String::new();
        let status = wardgate_model::DeviceStatus {
            at: at(),
            subject: "bed-1".into(),
            device: DeviceRef::new("ox-1".into(), DeviceKind::Ble),
            state: DeviceState::Offline,
            reason: Some("link lost".into()),
        };
        encode(&Event::DeviceStatus(status), &id(), &mut out);
        fits_its_shape(&out);
        assert_eq!(shape("co2", |_| false), None);
        assert_eq!(shape("co2", |m| m == "co2"), Some(READING));
    }

    #[test]
    fn reading_with_device_and_escaped_site() {
        let r = Reading::new(
            at(),
            TimeSource::Device,
            "bed-1".into(),
            Some(DeviceRef::new("ox-1".into(), DeviceKind::Ble)),
            Metric::Spo2,
            93.0,
        )
        .unwrap();
        // 2026-11-27T10:00:00Z = 1795773600 s since the epoch, plus 1 ns.
        check(
            &Event::Reading(r),
            r"spo2,site=st\ example,ward=ward-7,gateway=gw-1,subject=bed-1,device=ox-1,device_kind=ble,time_source=device,unit=% value=93.0 1795773600000000001",
        );
    }

    #[test]
    fn device_alarm_with_quotes_in_raw_text() {
        let a = DeviceAlarm {
            at: at(),
            subject: "bed-2".into(),
            device: DeviceRef::new("pump-1".into(), DeviceKind::Pump),
            alarm: Arc::from("unknown"),
            phase: AlarmPhase::Start,
            kind: AlertKind::Technical,
            raw: Some(Arc::from(r#"ALM "X\Y""#)),
        };
        check(
            &Event::DeviceAlarm(a),
            r#"device_alarm,site=st\ example,ward=ward-7,gateway=gw-1,subject=bed-2,device=pump-1,device_kind=pump,alarm=unknown,kind=technical active=1i,raw="ALM \"X\\Y\"" 1795773600000000001"#,
        );
    }

    #[test]
    fn alert_transition() {
        let a = Alert {
            id: AlertId("bed-1/spo2_low/1".into()),
            rule: "spo2_low".into(),
            subject: "bed-1".into(),
            device: None,
            priority: Priority::High,
            kind: AlertKind::Physiological,
            state: wardgate_model::AlertState::Acknowledged,
            transition: Transition::Acknowledged,
            at: at(),
            raised_at: at(),
            message: "SpO2 85 %".into(),
            escalation_level: 1,
            acknowledged: Some(wardgate_model::Acknowledgement {
                by: "nurse-7@alert-manager".into(),
                at: at(),
                via: Some("mqtt:alert-manager".into()),
            }),
            cleared_at: None,
            recipient: None,
        };
        check(
            &Event::Alert(a),
            r#"alert,site=st\ example,ward=ward-7,gateway=gw-1,subject=bed-1,rule=spo2_low,priority=high,kind=physiological active=1i,escalation_level=1i,id="bed-1/spo2_low/1",state="acknowledged",transition="acknowledged",message="SpO2 85 %",acknowledged_by="nurse-7@alert-manager",acknowledged_via="mqtt:alert-manager" 1795773600000000001"#,
        );
    }

    #[test]
    fn silence_start_and_end() {
        let s = wardgate_model::Silence::new(
            wardgate_model::SilenceTarget::Rule("news2".into()),
            at(),
            at() + chrono::TimeDelta::minutes(15),
            &wardgate_model::Actor::new("nurse a@station-1", "http:station-1"),
        );
        // 15 minutes after `at`, in nanoseconds.
        let until = 1_795_773_600_000_000_001i64 + 15 * 60 * 1_000_000_000;
        check(
            &Event::Silence(s.clone()),
            &format!(
                r#"silence,site=st\ example,ward=ward-7,gateway=gw-1,subject=*,rule=news2 active=1i,by="nurse a@station-1",via="http:station-1",until={until}i 1795773600000000001"#
            ),
        );
        check(
            &Event::Silence(s.ended(at())),
            &format!(
                r#"silence,site=st\ example,ward=ward-7,gateway=gw-1,subject=*,rule=news2 active=0i,by="nurse a@station-1",via="http:station-1",until={until}i 1795773600000000001"#
            ),
        );
    }

    #[test]
    fn integral_floats_keep_a_decimal_point() {
        let mut out = String::new();
        float(&mut out, 72.0);
        float(&mut out, 1e21);
        // 1e21 prints as a 1 followed by 21 zeros.
        assert_eq!(out, format!("72.01{}.0", "0".repeat(21)));
    }
}
