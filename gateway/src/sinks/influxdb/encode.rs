//! Pure helpers of the InfluxDB write path: the request body and its gzip
//! compression (what a status code means is [`crate::sinks::delivery`]'s). The line protocol itself is
//! [`crate::lineproto`], shared with the MQTT telemetry payloads.

use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;

use crate::lineproto::{self, Identity};
use crate::spool::Record;

/// The line protocol body for spooled records, one line each, in order.
pub fn body(records: &[Record], id: &Identity) -> String {
    let mut out = String::with_capacity(records.len() * 200);
    for r in records {
        lineproto::encode(&r.event, id, &mut out);
    }
    out
}

/// The body gzip-compressed (`Content-Encoding: gzip`).
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use wardgate_model::Timestamp;
    use wardgate_model::{DeviceKind, DeviceRef, Event, Metric, Reading, TimeSource};

    use crate::spool::Lane;

    fn now() -> Timestamp {
        "2026-11-27T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn body_is_one_line_per_record() {
        let reading = |seq: u64, value: f64| {
            Record::new(
                Lane::Telemetry,
                seq,
                now(),
                Event::Reading(
                    Reading::new(
                        now(),
                        TimeSource::Gateway,
                        "bed-1".into(),
                        Some(DeviceRef::new("w-1".into(), DeviceKind::Synthetic)),
                        Metric::HeartRate,
                        value,
                    )
                    .unwrap(),
                ),
            )
        };
        let id = Identity {
            site: "s".into(),
            ward: "w".into(),
            gateway: "g".into(),
        };
        let b = body(&[reading(1, 72.0), reading(2, 73.5)], &id);
        // 2026-11-27T10:00:00Z = 1795773600 s; ns precision.
        let tags = "site=s,ward=w,gateway=g,subject=bed-1,device=w-1,device_kind=synthetic,time_source=gateway,unit=/min";
        assert_eq!(
            b,
            format!(
                "heart_rate,{tags} value=72.0 1795773600000000000\nheart_rate,{tags} value=73.5 1795773600000000000\n"
            )
        );
    }

    #[test]
    fn gzip_round_trips() {
        let text = "spo2,subject=bed-1 value=93.0 1\n".repeat(100);
        let packed = gzip(text.as_bytes());
        // A gzip member starts with the magic bytes 1f 8b and method 08 (deflate).
        assert_eq!(&packed[..3], &[0x1f, 0x8b, 0x08]);
        assert!(packed.len() < text.len());
        let mut back = String::new();
        flate2::read::GzDecoder::new(packed.as_slice())
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, text);
    }
}
