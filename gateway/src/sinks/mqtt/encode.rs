//! What the MQTT sink publishes for a batch of spooled records. Pure.

use wardgate_model::{AlertState, Event};

use super::config::TelemetryFormat;
use crate::lineproto::{self, Identity};
use crate::mqtt::Topics;
use crate::spool::Record;

/// One MQTT publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// The messages for a batch: one telemetry message with every record (so a
/// bridge or Telegraf gets readings, device events and alert transitions
/// alike), then the retained state topics — each device status, and each
/// alert's whole state per (subject, rule). An alert that is cleared and
/// acknowledged is published once more (not retained) and then its retained
/// message is removed with an empty retained payload.
pub fn messages(
    records: &[Record],
    id: &Identity,
    topics: &Topics,
    format: TelemetryFormat,
) -> Vec<Message> {
    let mut out = Vec::new();
    if records.is_empty() {
        return out;
    }
    let payload = match format {
        TelemetryFormat::Line => {
            let mut s = String::with_capacity(records.len() * 160);
            for r in records {
                lineproto::encode(&r.event, id, &mut s);
            }
            s.into_bytes()
        }
        TelemetryFormat::Json => {
            // The array of the records' JSON, stored bytes passed through.
            let mut out = Vec::with_capacity(records.len() * 200);
            out.push(b'[');
            for (i, r) in records.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_into(r, &mut out);
            }
            out.push(b']');
            out
        }
    };
    out.push(Message {
        topic: topics.telemetry(),
        payload,
        retain: false,
    });
    for r in records {
        match &r.event {
            Event::DeviceStatus(s) => out.push(Message {
                topic: topics.device_status(s.device.id.as_str()),
                payload: json(r),
                retain: true,
            }),
            Event::Alert(a) => {
                let topic = topics.alert(a.subject.as_str(), a.rule.as_str());
                let over = a.state == AlertState::Cleared && a.acknowledged.is_some();
                out.push(Message {
                    topic: topic.clone(),
                    payload: json(r),
                    retain: !over,
                });
                if over {
                    out.push(Message {
                        topic,
                        payload: Vec::new(),
                        retain: true,
                    });
                }
            }
            Event::Silence(_) => out.push(Message {
                topic: topics.silences(),
                payload: json(r),
                retain: false,
            }),
            Event::Reading(_) | Event::DeviceAlarm(_) => {}
        }
    }
    out
}

fn json(record: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    json_into(record, &mut out);
    out
}

fn json_into(record: &Record, out: &mut Vec<u8>) {
    if let Err(e) = record.write_json(out) {
        // Model types always serialise; if one ever does not, say so loudly.
        tracing::error!(seq = record.seq, error = %e, "event could not be encoded as JSON");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Lane;
    use std::sync::Arc;
    use wardgate_model::{
        Acknowledgement, Alert, AlertId, AlertKind, DeviceKind, DeviceRef, DeviceState,
        DeviceStatus, Metric, Priority, Reading, TimeSource, Transition,
    };

    fn id() -> Identity {
        Identity {
            site: "s".into(),
            ward: "w".into(),
            gateway: "g".into(),
        }
    }

    fn at() -> wardgate_model::Timestamp {
        "2026-11-27T10:00:00Z".parse().unwrap()
    }

    fn alert(state: AlertState, acked: bool) -> Event {
        Event::Alert(Alert {
            id: AlertId("bed-1/spo2_low/1".into()),
            rule: "spo2_low".into(),
            subject: "bed-1".into(),
            device: None,
            priority: Priority::High,
            kind: AlertKind::Physiological,
            state,
            transition: Transition::Cleared,
            at: at(),
            raised_at: at(),
            message: "m".into(),
            escalation_level: 0,
            acknowledged: acked.then(|| Acknowledgement {
                by: Arc::from("nurse-1"),
                at: at(),
                via: None,
            }),
            cleared_at: None,
            recipient: None,
        })
    }

    fn rec(seq: u64, event: Event) -> Record {
        Record::new(Lane::of(&event), seq, chrono::DateTime::UNIX_EPOCH, event)
    }

    #[test]
    fn telemetry_then_retained_states() {
        let topics = Topics::new("wg", "s", "w", "g");
        let reading = Reading::new(
            at(),
            TimeSource::Gateway,
            "bed-1".into(),
            None,
            Metric::HeartRate,
            70.0,
        )
        .unwrap();
        let status = DeviceStatus {
            at: at(),
            subject: "bed-1".into(),
            device: DeviceRef::new("hr-1".into(), DeviceKind::Ble),
            state: DeviceState::Offline,
            reason: None,
        };
        let msgs = messages(
            &[
                rec(1, Event::Reading(reading)),
                rec(2, Event::DeviceStatus(status)),
            ],
            &id(),
            &topics,
            TelemetryFormat::Line,
        );
        let shape: Vec<(&str, bool, usize)> = msgs
            .iter()
            .map(|m| {
                (
                    m.topic.as_str(),
                    m.retain,
                    String::from_utf8_lossy(&m.payload).lines().count(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("wg/s/w/g/telemetry", false, 2),
                ("wg/s/w/g/devices/hr-1/status", true, 1)
            ]
        );
        assert!(String::from_utf8_lossy(&msgs[1].payload).contains(r#""state":"offline""#));
    }

    #[test]
    fn a_cleared_and_acknowledged_alert_removes_its_retained_message() {
        let topics = Topics::new("wg", "s", "w", "g");
        let active = messages(
            &[rec(1, alert(AlertState::Active, false))],
            &id(),
            &topics,
            TelemetryFormat::Json,
        );
        assert_eq!(active.len(), 2);
        assert!(active[1].retain && !active[1].payload.is_empty());
        let over = messages(
            &[rec(2, alert(AlertState::Cleared, true))],
            &id(),
            &topics,
            TelemetryFormat::Json,
        );
        let tail: Vec<(bool, bool)> = over[1..]
            .iter()
            .map(|m| (m.retain, m.payload.is_empty()))
            .collect();
        assert_eq!(tail, [(false, false), (true, true)]);
        // Cleared without acknowledgement: the retained state stays for the nurses to see.
        let unacked = messages(
            &[rec(3, alert(AlertState::Cleared, false))],
            &id(),
            &topics,
            TelemetryFormat::Json,
        );
        assert_eq!(unacked.len(), 2);
        assert!(unacked[1].retain);
    }
}
