//! Pure helpers of the InfluxDB write path: the request body, what a status
//! code means, and the `Retry-After` header. The line protocol itself is
//! [`crate::lineproto`], shared with the MQTT telemetry payloads.

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use wardgate_model::Timestamp;

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

/// What to do after the server answered a write with `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the points are stored; acknowledge them.
    Stored,
    /// 429, 5xx (and anything unexpected such as a redirect): the server may
    /// take them later; retry with backoff.
    Retry,
    /// 401, 403, 404: the gateway's configuration is wrong (token, org,
    /// bucket), not the points; they are kept and retried with backoff until
    /// an operator fixes it, while the sink's backlog raises `sink_stalled`.
    Misconfigured,
    /// Any other 4xx: the request itself is wrong (a bad line, too large);
    /// retrying cannot help, so the batch is quarantined.
    Reject,
}

pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Stored,
        429 => Verdict::Retry,
        401 | 403 | 404 => Verdict::Misconfigured,
        400..=499 => Verdict::Reject,
        _ => Verdict::Retry,
    }
}

/// The delay a `Retry-After` header asks for: either delay-seconds
/// (`120`) or an HTTP-date (`Fri, 27 Nov 2026 10:00:00 GMT`, RFC 9110
/// §10.2.3). A date in the past means "now". Anything else is ignored.
pub fn retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.to_utc() - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
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

    #[test]
    fn status_codes() {
        for (status, expected) in [
            (204, Verdict::Stored),
            (200, Verdict::Stored),
            (400, Verdict::Reject),
            (401, Verdict::Misconfigured),
            (403, Verdict::Misconfigured),
            (404, Verdict::Misconfigured),
            (413, Verdict::Reject),
            (422, Verdict::Reject),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (503, Verdict::Retry),
            (307, Verdict::Retry),
        ] {
            assert_eq!(verdict(status), expected, "status {status}");
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(retry_after("120", now()), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now()), Some(Duration::ZERO));
        // Ten seconds after now(), as an IMF-fixdate.
        assert_eq!(
            retry_after("Fri, 27 Nov 2026 10:00:10 GMT", now()),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after("Fri, 27 Nov 2026 09:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("-5", now()), None);
        assert_eq!(retry_after("soon", now()), None);
    }

    proptest::proptest! {
        #[test]
        fn retry_after_never_panics(s in "\\PC*") {
            let _ = retry_after(&s, now());
        }
    }
}
