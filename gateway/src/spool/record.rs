//! The spool's record format: what one stored value holds, written by
//! [`encode`] and read back by [`decode`], for every version ever written.
//!
//! Every value starts with the append time (little-endian `i64` nanoseconds
//! since the Unix epoch), so eviction and the backlog read it without
//! decoding anything. The byte after it says the version:
//!
//! - **v1** (before issue 16): that byte is `{`, the first byte of the event
//!   as JSON (the model's serde shape, the JSONL sink's line).
//! - **v2**: `2`, then the record kind (`0` reading, `1` device status, `2`
//!   device alarm, `3` alert, `4` silence), then the event's own time
//!   (`i64` seconds and `u32` nanoseconds, little-endian), then the body.
//!   A reading's body is [postcard](https://docs.rs/postcard) of
//!   [`ReadingBody`] (its time is the header's): about a third of its JSON
//!   and a tenth of the time to write and read. Every other kind is rare (a
//!   state change, an alarm, an alert transition) and its body is its JSON,
//!   which is what the JSONL sink writes and the MQTT sink publishes for it:
//!   those sinks pass the stored bytes through ([`Record::json`]).
//!
//! A version this gateway does not know (written by a newer one) is a typed
//! error ([`RecordError::UnknownVersion`]), never a guess. The body never
//! holds an enum by its position: device kinds and time sources are coded
//! by the table below, tested against every variant, so reordering the
//! model's enums cannot change what old records mean. Pure: no I/O.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wardgate_model::{
    DeviceKind, DeviceRef, Event, Metric, Reading, ReadingError, TimeSource, Timestamp,
};

use super::Lane;

/// The version [`encode`] writes.
pub const VERSION: u8 = 2;
/// Byte 8 of a v1 record: the opening brace of its JSON.
const V1_MARK: u8 = b'{';
/// Append time (8), version (1), kind (1), event time (8 + 4).
const HEADER: usize = 22;

/// One spooled event, decoded once when its batch is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub lane: Lane,
    pub seq: u64,
    /// When it was appended (committed).
    pub committed_at: Timestamp,
    pub event: Event,
    /// The event's JSON as stored (the model's serde shape, the JSONL
    /// sink's line without its newline), when the spool keeps it so.
    pub json: Option<Arc<[u8]>>,
}

impl Record {
    /// A record whose JSON is not at hand (it is encoded when needed).
    pub fn new(lane: Lane, seq: u64, committed_at: Timestamp, event: Event) -> Record {
        Record {
            lane,
            seq,
            committed_at,
            event,
            json: None,
        }
    }

    /// Appends the event as JSON: the stored bytes when the spool kept
    /// them, else encoded now.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        match &self.json {
            Some(json) => {
                out.extend_from_slice(json);
                Ok(())
            }
            None => serde_json::to_writer(&mut *out, &self.event),
        }
    }
}

/// Why a stored value is not a record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the value has {0} bytes, fewer than its header")]
    Truncated(usize),
    #[error(
        "record format version {0} is unknown to this gateway (was it written by a newer one?)"
    )]
    UnknownVersion(u8),
    #[error("record kind {0} is unknown")]
    UnknownKind(u8),
    #[error("the event time is out of range")]
    Time,
    #[error("{what} code {code} is unknown")]
    UnknownCode { what: &'static str, code: u8 },
    #[error("body: {0}")]
    Body(#[from] postcard::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Reading(#[from] ReadingError),
    #[error("the record is a {found}, not a {expected} as its header says")]
    KindMismatch {
        expected: &'static str,
        found: &'static str,
    },
}

impl RecordError {
    /// A low-cardinality name for counting and logging once.
    pub fn class(&self) -> &'static str {
        match self {
            RecordError::UnknownVersion(_) => "unknown_version",
            _ => "damaged",
        }
    }
}

/// A reading without its time (the header holds it).
#[derive(Debug, Serialize, Deserialize)]
struct ReadingBody<'a> {
    time_source: u8,
    #[serde(borrow)]
    subject: &'a str,
    #[serde(borrow)]
    device: Option<(&'a str, u8)>,
    #[serde(borrow)]
    metric: &'a str,
    #[serde(borrow)]
    unit: &'a str,
    value: f64,
}

/// The kind codes of the header, in the order of [`KINDS`].
const KINDS: [&str; 5] = [
    "reading",
    "device_status",
    "device_alarm",
    "alert",
    "silence",
];

fn kind_code(event: &Event) -> u8 {
    match event {
        Event::Reading(_) => 0,
        Event::DeviceStatus(_) => 1,
        Event::DeviceAlarm(_) => 2,
        Event::Alert(_) => 3,
        Event::Silence(_) => 4,
    }
}

fn time_source_code(t: TimeSource) -> u8 {
    match t {
        TimeSource::Device => 0,
        TimeSource::Gateway => 1,
    }
}

fn time_source(code: u8) -> Result<TimeSource, RecordError> {
    match code {
        0 => Ok(TimeSource::Device),
        1 => Ok(TimeSource::Gateway),
        code => Err(RecordError::UnknownCode {
            what: "time source",
            code,
        }),
    }
}

fn device_kind_code(k: DeviceKind) -> u8 {
    match k {
        DeviceKind::Ble => 0,
        DeviceKind::Pump => 1,
        DeviceKind::Modbus => 2,
        DeviceKind::Synthetic => 3,
        DeviceKind::Gateway => 4,
    }
}

fn device_kind(code: u8) -> Result<DeviceKind, RecordError> {
    match code {
        0 => Ok(DeviceKind::Ble),
        1 => Ok(DeviceKind::Pump),
        2 => Ok(DeviceKind::Modbus),
        3 => Ok(DeviceKind::Synthetic),
        4 => Ok(DeviceKind::Gateway),
        code => Err(RecordError::UnknownCode {
            what: "device kind",
            code,
        }),
    }
}

/// Appends the stored value of `event`, appended at `now`, to `out`.
pub fn encode(now: Timestamp, event: &Event, out: &mut Vec<u8>) -> Result<(), RecordError> {
    out.extend_from_slice(&now.timestamp_nanos_opt().unwrap_or(i64::MAX).to_le_bytes());
    out.push(VERSION);
    out.push(kind_code(event));
    let at = event.at();
    out.extend_from_slice(&at.timestamp().to_le_bytes());
    out.extend_from_slice(&at.timestamp_subsec_nanos().to_le_bytes());
    match event {
        Event::Reading(r) => {
            let body = ReadingBody {
                time_source: time_source_code(r.time_source),
                subject: r.subject.as_str(),
                device: r
                    .device
                    .as_ref()
                    .map(|d| (d.id.as_str(), device_kind_code(d.kind))),
                metric: r.metric.name(),
                unit: r.metric.unit(),
                value: r.value,
            };
            *out = postcard::to_extend(&body, std::mem::take(out))?;
        }
        _ => serde_json::to_writer(&mut *out, event)?,
    }
    Ok(())
}

/// The append time of any stored value, read without decoding it.
pub fn appended_at(value: &[u8]) -> Option<i64> {
    value.first_chunk::<8>().map(|t| i64::from_le_bytes(*t))
}

/// The event's JSON inside a stored value, for the alert and silence
/// snapshots: a v1 value, or a v2 value of a kind stored as JSON.
pub fn stored_json(value: &[u8]) -> Option<&[u8]> {
    match value.get(8..)? {
        json @ [V1_MARK, ..] => Some(json),
        [VERSION, kind, ..] if *kind != 0 => value.get(HEADER..),
        _ => None,
    }
}

/// A stored value back as a record of `lane` with sequence number `seq`.
pub fn decode(lane: Lane, seq: u64, value: &[u8]) -> Result<Record, RecordError> {
    let version = *value.get(8).ok_or(RecordError::Truncated(value.len()))?;
    let committed_at =
        chrono::DateTime::from_timestamp_nanos(appended_at(value).unwrap_or_default());
    match version {
        V1_MARK => {
            let json = &value[8..];
            Ok(Record {
                lane,
                seq,
                committed_at,
                event: decode_json(json)?,
                json: Some(json.into()),
            })
        }
        VERSION => {
            let header = value
                .get(..HEADER)
                .ok_or(RecordError::Truncated(value.len()))?;
            let kind = header[9];
            let secs = header[10..18]
                .try_into()
                .map(i64::from_le_bytes)
                .map_err(|_| RecordError::Truncated(value.len()))?;
            let nanos = header[18..22]
                .try_into()
                .map(u32::from_le_bytes)
                .map_err(|_| RecordError::Truncated(value.len()))?;
            let at = chrono::DateTime::from_timestamp(secs, nanos).ok_or(RecordError::Time)?;
            let body = &value[HEADER..];
            let expected = *KINDS
                .get(usize::from(kind))
                .ok_or(RecordError::UnknownKind(kind))?;
            let (event, json) = if kind == 0 {
                (Event::Reading(decode_reading(at, body)?), None)
            } else {
                (decode_json(body)?, Some(body.into()))
            };
            if event.type_name() != expected {
                return Err(RecordError::KindMismatch {
                    expected,
                    found: event.type_name(),
                });
            }
            Ok(Record {
                lane,
                seq,
                committed_at,
                event,
                json,
            })
        }
        other => Err(RecordError::UnknownVersion(other)),
    }
}

fn decode_reading(at: Timestamp, body: &[u8]) -> Result<Reading, RecordError> {
    let b: ReadingBody<'_> = postcard::from_bytes(body)?;
    let metric = match Metric::builtin(b.metric) {
        Some(m) if m.unit() == b.unit => m,
        Some(m) => {
            return Err(ReadingError::WrongUnit {
                metric: b.metric.to_owned(),
                got: b.unit.to_owned(),
                expected: m.info().map_or("", |i| i.unit),
            }
            .into());
        }
        None => Metric::custom(b.metric, b.unit, None),
    };
    let device = match b.device {
        Some((id, kind)) => Some(DeviceRef::new(id.into(), device_kind(kind)?)),
        None => None,
    };
    Ok(Reading::new(
        at,
        time_source(b.time_source)?,
        b.subject.into(),
        device,
        metric,
        b.value,
    )?)
}

/// An event from its JSON. wardgate writes `"type"` first, so the variant's
/// own fields are read straight from the bytes (the variant's struct ignores
/// the `type` key), skipping serde's buffering of internally tagged enums —
/// most of the cost of reading JSON back. Anything else takes the generic
/// path.
pub fn decode_json(json: &[u8]) -> Result<Event, serde_json::Error> {
    if let Some(rest) = json.strip_prefix(br#"{"type":""#) {
        if rest.starts_with(br#"reading","#) {
            return serde_json::from_slice(json).map(Event::Reading);
        }
        if rest.starts_with(br#"alert","#) {
            return serde_json::from_slice(json).map(Event::Alert);
        }
        if rest.starts_with(br#"device_status","#) {
            return serde_json::from_slice(json).map(Event::DeviceStatus);
        }
        if rest.starts_with(br#"device_alarm","#) {
            return serde_json::from_slice(json).map(Event::DeviceAlarm);
        }
    }
    serde_json::from_slice(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_for_every_variant() {
        for k in [
            DeviceKind::Ble,
            DeviceKind::Pump,
            DeviceKind::Modbus,
            DeviceKind::Synthetic,
            DeviceKind::Gateway,
        ] {
            assert_eq!(device_kind(device_kind_code(k)).unwrap(), k);
        }
        for t in [TimeSource::Device, TimeSource::Gateway] {
            assert_eq!(time_source(time_source_code(t)).unwrap(), t);
        }
    }

    #[test]
    fn a_reading_is_a_header_and_a_postcard_body() {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 500).unwrap();
        let reading = Reading::new(
            at,
            TimeSource::Device,
            "b1".into(),
            Some(DeviceRef::new("ox".into(), DeviceKind::Ble)),
            Metric::Spo2,
            0.5,
        )
        .unwrap();
        let mut value = Vec::new();
        encode(at, &Event::Reading(reading.clone()), &mut value).unwrap();
        let nanos = 1_800_000_000_000_000_500_i64.to_le_bytes();
        let secs = 1_800_000_000_i64.to_le_bytes();
        let mut expected = Vec::new();
        expected.extend_from_slice(&nanos); // appended at, ns
        expected.extend_from_slice(&[2, 0]); // version 2, kind reading
        expected.extend_from_slice(&secs); // event at, s
        expected.extend_from_slice(&500_u32.to_le_bytes()); // and ns
        expected.push(0); // time source: device
        expected.extend_from_slice(b"\x02b1"); // subject
        expected.extend_from_slice(b"\x01\x02ox\x00"); // Some(device "ox", BLE)
        expected.extend_from_slice(b"\x04spo2"); // metric
        expected.extend_from_slice(b"\x01%"); // unit
        expected.extend_from_slice(&0.5_f64.to_le_bytes()); // value
        assert_eq!(value, expected);
        let back = decode(Lane::Telemetry, 7, &value).unwrap();
        assert_eq!(
            back,
            Record::new(Lane::Telemetry, 7, at, Event::Reading(reading))
        );
    }

    #[test]
    fn an_unknown_version_is_a_typed_error() {
        let mut value = vec![0; 8];
        value.push(3);
        value.extend_from_slice(&[0; 20]);
        assert!(matches!(
            decode(Lane::Telemetry, 1, &value),
            Err(RecordError::UnknownVersion(3))
        ));
        assert!(matches!(
            decode(Lane::Telemetry, 1, &value[..5]),
            Err(RecordError::Truncated(5))
        ));
    }
}
