//! Checking a telemetry message before it is written: pure, over bytes.
//! The bridge writes a payload as it came; it only has to be sure every line
//! is line protocol InfluxDB will accept, with its own timestamp (so a
//! redelivered message overwrites itself instead of adding points).

/// A payload that passed the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub lines: u64,
    /// Smallest timestamp (ns since the epoch) of its lines.
    pub oldest_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("payload is not UTF-8")]
    NotUtf8,
    #[error("payload holds no line")]
    Empty,
    #[error("line {line}: {reason}")]
    Invalid { line: usize, reason: String },
    #[error("line {line}: no timestamp (the bridge needs one to write idempotently)")]
    NoTimestamp { line: usize },
}

/// Checks every line of a payload with the `influxdb-line-protocol` parser.
pub fn check(payload: &[u8]) -> Result<Checked, LineError> {
    let text = std::str::from_utf8(payload).map_err(|_| LineError::NotUtf8)?;
    let mut lines = 0u64;
    let mut oldest = i64::MAX;
    for (i, parsed) in influxdb_line_protocol::parse_lines(text).enumerate() {
        let line = i + 1;
        let parsed = parsed.map_err(|e| LineError::Invalid {
            line,
            reason: e.to_string(),
        })?;
        let ts = parsed.timestamp.ok_or(LineError::NoTimestamp { line })?;
        oldest = oldest.min(ts);
        lines += 1;
    }
    if lines == 0 {
        return Err(LineError::Empty);
    }
    Ok(Checked {
        lines,
        oldest_ns: oldest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_str(s: &str) -> Result<Checked, LineError> {
        check(s.as_bytes())
    }

    #[test]
    fn gateway_payloads_pass() {
        // As the gateway's encoder writes them (lineproto.rs tests): escaped
        // space in a tag, a quoted string field with escapes, ns timestamps.
        let payload = concat!(
            "spo2,site=st\\ example,ward=ward-7,gateway=gw-1,subject=bed-1,unit=% value=93.0 1795773600000000001\n",
            "device_alarm,site=s,subject=bed-2,alarm=unknown active=1i,raw=\"ALM \\\"X\\\\Y\\\"\" 1795773600000000000\n",
        );
        assert_eq!(
            check_str(payload),
            Ok(Checked {
                lines: 2,
                oldest_ns: 1_795_773_600_000_000_000
            })
        );
    }

    #[test]
    fn bad_payloads_are_named() {
        assert_eq!(check(&[0xff, 0xfe]), Err(LineError::NotUtf8));
        assert_eq!(check_str("\n\n"), Err(LineError::Empty));
        assert_eq!(
            check_str("spo2 value=1.0 1\nspo2 value=2.0\n"),
            Err(LineError::NoTimestamp { line: 2 })
        );
        // No field set after the measurement.
        assert!(matches!(
            check_str("spo2 1795773600000000000"),
            Err(LineError::Invalid { line: 1, .. })
        ));
        assert!(matches!(
            check_str("{\"metric\":\"spo2\"}"),
            Err(LineError::Invalid { line: 1, .. })
        ));
    }

    /// The `bridge_lines` fuzz target found a custom unit with a tab (then
    /// accepted by the configuration) that made the gateway write lines the
    /// bridge refuses: `...,unit=d\t value=0.0 6638341174403161153`. The
    /// configuration now refuses such units; every character it still
    /// accepts must encode to a line that passes.
    #[test]
    fn every_unit_the_configuration_accepts_passes() {
        use crate::lineproto::{Identity, encode};
        use wardgate_model::{Event, Metric, Reading, TimeSource};

        let id = Identity {
            site: "s".into(),
            ward: "w".into(),
            gateway: "g".into(),
        };
        let at = chrono::DateTime::from_timestamp_nanos(6_638_341_174_403_161_153);
        let graphic: String = (b'!'..=b'~')
            .map(char::from)
            .filter(|&c| c != '\\')
            .collect();
        let units = graphic.chars().map(String::from).chain([
            graphic.clone(),
            format!("a{graphic}"),
            "{count}".into(),
        ]);
        for unit in units {
            let metric = Metric::custom("bed_load", &unit, None);
            let r = Reading::new(at, TimeSource::Device, "a".into(), None, metric, 0.0).unwrap();
            let mut line = String::new();
            encode(&Event::Reading(r), &id, &mut line);
            assert_eq!(
                check_str(&line),
                Ok(Checked {
                    lines: 1,
                    oldest_ns: 6_638_341_174_403_161_153
                }),
                "{line:?}"
            );
        }
        // What the fuzz target found, refused as before.
        assert!(matches!(
            check_str("a,unit=d\t value=0.0 6638341174403161153\n"),
            Err(LineError::Invalid { line: 1, .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = check(&bytes);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "[a-z ,=\"\\\\0-9.\n]{0,200}") {
            let _ = check(s.as_bytes());
        }
    }
}
