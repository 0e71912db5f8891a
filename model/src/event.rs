//! Everything that flows through the pipeline and reaches the sinks.

use serde::{Deserialize, Serialize};

use crate::{Alert, DeviceAlarm, DeviceStatus, Reading, SubjectId, Timestamp};

/// One thing that happened, as drivers, the rules engine and sinks see it.
/// JSON: an object with a `"type"` of `reading`, `device_status`,
/// `device_alarm` or `alert` beside the variant's own fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Reading(Reading),
    DeviceStatus(DeviceStatus),
    DeviceAlarm(DeviceAlarm),
    Alert(Alert),
}

impl Event {
    pub fn at(&self) -> Timestamp {
        match self {
            Event::Reading(r) => r.at,
            Event::DeviceStatus(s) => s.at,
            Event::DeviceAlarm(a) => a.at,
            Event::Alert(a) => a.at,
        }
    }

    pub fn subject(&self) -> &SubjectId {
        match self {
            Event::Reading(r) => &r.subject,
            Event::DeviceStatus(s) => &s.subject,
            Event::DeviceAlarm(a) => &a.subject,
            Event::Alert(a) => &a.subject,
        }
    }

    /// Alerts travel ahead of telemetry and are never evicted.
    pub fn is_alert(&self) -> bool {
        matches!(self, Event::Alert(_))
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
