//! Everything that flows through the pipeline and reaches the sinks.

use serde::{Deserialize, Serialize};

use crate::{Alert, DeviceAlarm, DeviceStatus, Reading, Silence, SubjectId, Timestamp};

/// One thing that happened, as drivers, the rules engine and sinks see it.
/// JSON: an object with a `"type"` of `reading`, `device_status`,
/// `device_alarm`, `alert` or `silence` beside the variant's own fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Reading(Reading),
    DeviceStatus(DeviceStatus),
    DeviceAlarm(DeviceAlarm),
    Alert(Alert),
    /// A silence started or ended (audited with the alerts).
    Silence(Silence),
}

impl Event {
    pub fn at(&self) -> Timestamp {
        match self {
            Event::Reading(r) => r.at,
            Event::DeviceStatus(s) => s.at,
            Event::DeviceAlarm(a) => a.at,
            Event::Alert(a) => a.at,
            Event::Silence(s) => s.at,
        }
    }

    pub fn subject(&self) -> &SubjectId {
        match self {
            Event::Reading(r) => &r.subject,
            Event::DeviceStatus(s) => &s.subject,
            Event::DeviceAlarm(a) => &a.subject,
            Event::Alert(a) => &a.subject,
            Event::Silence(s) => &s.subject,
        }
    }

    /// The `"type"` of its JSON (`reading`, `device_status`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Reading(_) => "reading",
            Event::DeviceStatus(_) => "device_status",
            Event::DeviceAlarm(_) => "device_alarm",
            Event::Alert(_) => "alert",
            Event::Silence(_) => "silence",
        }
    }

    /// Alerts (and the silences of alerts) travel ahead of telemetry and
    /// are never evicted.
    pub fn is_alert(&self) -> bool {
        matches!(self, Event::Alert(_) | Event::Silence(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Metric, TimeSource};

    #[test]
    fn reading_event_is_tagged() {
        let r = Reading::new(
            "2026-11-27T10:00:00Z".parse().unwrap(),
            TimeSource::Gateway,
            "bed-1".into(),
            None,
            Metric::HeartRate,
            72.0,
        )
        .unwrap();
        let json = serde_json::to_string(&Event::Reading(r.clone())).unwrap();
        assert!(
            json.starts_with(r#"{"type":"reading","at":"2026-11-27T10:00:00Z""#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<Event>(&json).unwrap(),
            Event::Reading(r)
        );
    }
}
