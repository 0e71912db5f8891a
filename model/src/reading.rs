//! One value of one metric for one subject at one instant.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{DeviceRef, Metric, SubjectId, Timestamp};

/// Which clock stamped a reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// The device's own timestamp, judged plausible by the decoder.
    Device,
    /// The gateway's clock at reception (the device sent none, or an implausible one).
    Gateway,
}

crate::wire::wire_names!(TimeSource {
    Device => "device",
    Gateway => "gateway",
});

/// A measured or derived value in the metric's canonical unit.
///
/// Invariant: `value` is finite. IEEE 11073 special values (NaN, NRes, ±INF) are
/// "measurement unavailable" and never become a `Reading`; [`Reading::new`]
/// enforces this.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub at: Timestamp,
    pub time_source: TimeSource,
    pub subject: SubjectId,
    /// The device that measured it; `None` for derived readings (`news2_score`).
    pub device: Option<DeviceRef>,
    pub metric: Metric,
    pub value: f64,
}

/// Why a reading could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadingError {
    #[error("{metric}: value {value} is not a finite number")]
    NotFinite { metric: String, value: f64 },
    #[error("{metric}: unit {got:?} given, the canonical unit is {expected:?}")]
    WrongUnit {
        metric: String,
        got: String,
        expected: &'static str,
    },
}

impl Reading {
    pub fn new(
        at: Timestamp,
        time_source: TimeSource,
        subject: SubjectId,
        device: Option<DeviceRef>,
        metric: Metric,
        value: f64,
    ) -> Result<Self, ReadingError> {
        if !value.is_finite() {
            return Err(ReadingError::NotFinite {
                metric: metric.name().to_owned(),
                value,
            });
        }
        Ok(Self {
            at,
            time_source,
            subject,
            device,
            metric,
            value,
        })
    }
}

/// The JSON shape: `{"at", "time_source", "subject", "device", "metric", "value", "unit"}`.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    at: Timestamp,
    #[serde(default = "gateway")]
    time_source: TimeSource,
    subject: SubjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device: Option<DeviceRef>,
    #[serde(borrow)]
    metric: std::borrow::Cow<'a, str>,
    value: f64,
    #[serde(borrow, default)]
    unit: Option<std::borrow::Cow<'a, str>>,
}

fn gateway() -> TimeSource {
    TimeSource::Gateway
}

impl Serialize for Reading {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            at: self.at,
            time_source: self.time_source,
            subject: self.subject.clone(),
            device: self.device.clone(),
            metric: self.metric.name().into(),
            value: self.value,
            unit: Some(self.metric.unit().into()),
        }
        .serialize(s)
    }
}

/// A built-in metric must come with its canonical unit (or none); any other
/// metric becomes a custom metric with the unit given.
impl<'de> Deserialize<'de> for Reading {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = Wire::deserialize(d)?;
        let metric = match Metric::builtin(&w.metric) {
            Some(m) => {
                let expected = m.unit();
                if let Some(got) = w.unit.as_deref()
                    && got != expected
                {
                    return Err(D::Error::custom(ReadingError::WrongUnit {
                        metric: w.metric.into_owned(),
                        got: got.to_owned(),
                        expected: m.info().map_or("", |i| i.unit),
                    }));
                }
                m
            }
            None => Metric::custom(&w.metric, w.unit.as_deref().unwrap_or(""), None),
        };
        Reading::new(w.at, w.time_source, w.subject, w.device, metric, w.value)
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceId, DeviceKind};

    fn at() -> Timestamp {
        "2026-11-27T10:15:30.123456789Z".parse().unwrap()
    }

    #[test]
    fn json_round_trip_keeps_nanoseconds_and_unit() {
        let r = Reading::new(
            at(),
            TimeSource::Device,
            "bed-1".into(),
            Some(DeviceRef::new(DeviceId::from("ox-1"), DeviceKind::Ble)),
            Metric::Spo2,
            93.0,
        )
        .unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"at":"2026-11-27T10:15:30.123456789Z","time_source":"device","subject":"bed-1","device":{"id":"ox-1","kind":"ble"},"metric":"spo2","value":93.0,"unit":"%"}"#
        );
        let back: Reading = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn rejects_non_finite_and_wrong_units() {
        assert!(
            Reading::new(
                at(),
                TimeSource::Gateway,
                "b".into(),
                None,
                Metric::Spo2,
                f64::NAN
            )
            .is_err()
        );
        let wrong = r#"{"at":"2026-11-27T10:15:30Z","subject":"b","metric":"spo2","value":93,"unit":"mmHg"}"#;
        let err = serde_json::from_str::<Reading>(wrong)
            .unwrap_err()
            .to_string();
        assert!(err.contains("canonical unit is \"%\""), "{err}");
    }

    #[test]
    fn minimal_replay_line_parses_with_gateway_time() {
        let r: Reading = serde_json::from_str(
            r#"{"at":"2026-11-27T10:15:30Z","subject":"bed-1","metric":"bed_load","value":71.5,"unit":"kg"}"#,
        )
        .unwrap();
        assert_eq!(r.time_source, TimeSource::Gateway);
        assert_eq!(r.metric.unit(), "kg");
        assert!(r.device.is_none());
    }
}
