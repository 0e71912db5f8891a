//! Checking a telemetry message before it is written: pure, over bytes.
//!
//! The bridge writes lines as they came, and anyone who may publish on a
//! telemetry topic reaches InfluxDB through it; so each line must be line
//! protocol InfluxDB will accept, with its own timestamp (a redelivered
//! message then overwrites itself instead of adding points), *and* one the
//! gateway of that topic could have written: its `site`, `ward` and `gateway`
//! tags are the topic's (`{prefix}/{site}/{ward}/{gateway}/telemetry`), its
//! measurement is in the schema ([`crate::lineproto::shape`]: the event
//! measurements, the built-in metrics and the metrics declared in
//! `[bridge] metrics`) and its tag and field keys are those of that
//! measurement; a built-in metric's `unit` tag is its unit. A gateway can
//! thus neither write as another gateway nor create series of its own.
//!
//! Lines are judged one by one: a refused line does not cost the good lines
//! of the same message.

use std::collections::BTreeSet;

use wardgate_model::Metric;

use crate::lineproto::{self, IDENTITY_TAGS};
use crate::mqtt::Topics;

/// What lines may say: the schema, and the topics' prefix.
#[derive(Debug, Clone)]
pub struct Schema {
    prefix: String,
    /// Metrics declared in configuration, besides the built-in ones.
    custom: BTreeSet<String>,
}

impl Schema {
    pub fn new(prefix: &str, custom: impl IntoIterator<Item = String>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            custom: custom.into_iter().collect(),
        }
    }
}

/// A message, line by line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked<'a> {
    /// The lines to write, as they came (without their `\n`), in order.
    pub good: Vec<&'a str>,
    /// Smallest timestamp (ns since the epoch) of the good lines;
    /// `i64::MAX` when there is none.
    pub oldest_ns: i64,
    /// The lines refused, with why.
    pub refused: Vec<(&'a str, LineError)>,
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
    #[error("line {line}: not in the schema: {reason}")]
    NotInSchema { line: usize, reason: String },
    #[error("line {line}: not from this topic's gateway: {reason}")]
    WrongSource { line: usize, reason: String },
}

/// Checks every line of a payload that arrived on `topic`. `Err` when the
/// payload as a whole is unusable (not UTF-8, no line at all).
pub fn check<'a>(
    topic: &str,
    payload: &'a [u8],
    schema: &Schema,
) -> Result<Checked<'a>, LineError> {
    let text = std::str::from_utf8(payload).map_err(|_| LineError::NotUtf8)?;
    let mut checked = Checked {
        good: Vec::new(),
        oldest_ns: i64::MAX,
        refused: Vec::new(),
    };
    let mut line = 0;
    // `split_lines` cuts where InfluxDB's own scanner does (not inside a
    // quoted string); each piece then holds at most one line.
    for raw in influxdb_line_protocol::split_lines(text) {
        let Some(parsed) = influxdb_line_protocol::parse_lines(raw).next() else {
            continue;
        };
        line += 1;
        match parsed
            .map_err(|e| LineError::Invalid {
                line,
                reason: e.to_string(),
            })
            .and_then(|p| check_line(line, &p, topic, schema))
        {
            Ok(ts) => {
                checked.oldest_ns = checked.oldest_ns.min(ts);
                checked.good.push(raw.trim_end_matches('\r'));
            }
            Err(e) => checked.refused.push((raw.trim_end_matches('\r'), e)),
        }
    }
    if line == 0 {
        return Err(LineError::Empty);
    }
    Ok(checked)
}

/// One parsed line: its timestamp when it may be written.
fn check_line(
    line: usize,
    p: &influxdb_line_protocol::ParsedLine<'_>,
    topic: &str,
    schema: &Schema,
) -> Result<i64, LineError> {
    let ts = p.timestamp.ok_or(LineError::NoTimestamp { line })?;
    let not_in_schema = |reason: String| LineError::NotInSchema { line, reason };
    let m = p.series.measurement.as_str();
    let builtin = Metric::builtin(m);
    let shape = lineproto::shape(m, |m| builtin.is_some() || schema.custom.contains(m))
        .ok_or_else(|| not_in_schema(format!("unknown measurement `{m}`")))?;
    for (k, _) in p.series.tag_set.iter().flatten() {
        if !shape.tags.contains(&k.as_str()) {
            return Err(not_in_schema(format!("`{m}` has no tag `{k}`")));
        }
    }
    for (k, _) in &p.field_set {
        if !shape.fields.contains(&k.as_str()) {
            return Err(not_in_schema(format!("`{m}` has no field `{k}`")));
        }
    }
    if let (Some(metric), Some(unit)) = (&builtin, p.tag_value("unit"))
        && metric.unit() != unit.as_str()
    {
        return Err(not_in_schema(format!(
            "the unit of `{m}` is `{}`, not `{unit}`",
            metric.unit()
        )));
    }
    let [site, ward, gateway] = IDENTITY_TAGS.map(|t| p.tag_value(t));
    let (Some(site), Some(ward), Some(gateway)) = (site, ward, gateway) else {
        return Err(LineError::WrongSource {
            line,
            reason: "a line must carry the site, ward and gateway tags".to_owned(),
        });
    };
    // A value MQTT could not carry in a topic level is no gateway's id (ids
    // are checked at configuration); it must not pass for the one its
    // topic level was made from.
    if let Some(v) = [site, ward, gateway]
        .into_iter()
        .find(|v| crate::mqtt::segment(v) != v.as_str())
    {
        return Err(LineError::WrongSource {
            line,
            reason: format!("`{v}` cannot be a topic level"),
        });
    }
    let own = Topics::new(&schema.prefix, site, ward, gateway).telemetry();
    if own != topic {
        return Err(LineError::WrongSource {
            line,
            reason: format!("site={site},ward={ward},gateway={gateway} publish on {own}"),
        });
    }
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "wardgate/st example/ward-7/gw-1/telemetry";

    fn schema() -> Schema {
        Schema::new("wardgate", ["co2".to_owned()])
    }

    fn check_str(s: &str) -> Result<Checked<'_>, LineError> {
        check(TOPIC, s.as_bytes(), &schema())
    }

    /// `line` as published on the topic of gateway `gw_1`.
    fn on_gw_1(line: &str) -> Checked<'_> {
        check(
            "wardgate/st example/ward-7/gw_1/telemetry",
            line.as_bytes(),
            &schema(),
        )
        .unwrap()
    }

    /// The reasons of the refused lines of `s`.
    fn refused(s: &str) -> Vec<LineError> {
        check_str(s)
            .unwrap()
            .refused
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    #[test]
    fn gateway_payloads_pass() {
        // As the gateway's encoder writes them (lineproto.rs tests): escaped
        // space in a tag, a quoted string field with escapes, ns timestamps.
        let payload = concat!(
            "spo2,site=st\\ example,ward=ward-7,gateway=gw-1,subject=bed-1,unit=% value=93.0 1795773600000000001\n",
            "device_alarm,site=st\\ example,ward=ward-7,gateway=gw-1,subject=bed-2,alarm=unknown active=1i,raw=\"ALM \\\"X\\\\Y\\\"\" 1795773600000000000\n",
            // A declared custom metric.
            "co2,site=st\\ example,ward=ward-7,gateway=gw-1,subject=room-1,unit=ppm value=612.0 1795773600000000002",
        );
        let c = check_str(payload).unwrap();
        assert_eq!(c.refused, []);
        assert_eq!(c.good.len(), 3);
        assert!(c.good[0].starts_with("spo2,"));
        assert_eq!(c.oldest_ns, 1_795_773_600_000_000_000);
    }

    #[test]
    fn whole_payload_errors() {
        assert_eq!(
            check(TOPIC, &[0xff, 0xfe], &schema()),
            Err(LineError::NotUtf8)
        );
        assert_eq!(check_str("\n\n"), Err(LineError::Empty));
    }

    #[test]
    fn bad_lines_are_refused_one_by_one() {
        let tags = "site=st\\ example,ward=ward-7,gateway=gw-1,subject=bed-1";
        let good = format!("spo2,{tags} value=1.0 1");
        let payload = format!("{good}\nspo2,{tags} value=2.0\nspo2 1795773600000000000\n{good}\n");
        let c = check_str(&payload).unwrap();
        assert_eq!(c.good, [good.as_str(), good.as_str()]);
        assert_eq!(c.refused[0].1, LineError::NoTimestamp { line: 2 });
        // No field set after the measurement.
        assert!(matches!(c.refused[1].1, LineError::Invalid { line: 3, .. }));
        assert!(matches!(
            refused("{\"metric\":\"spo2\"}")[..],
            [LineError::Invalid { line: 1, .. }]
        ));
    }

    #[test]
    fn another_gateways_tags_are_refused() {
        let wrong =
            |line: &str| matches!(&refused(line)[..], [LineError::WrongSource { line: 1, .. }]);
        assert!(wrong(
            "spo2,site=st\\ example,ward=ward-7,gateway=gw-2,subject=bed-1 value=1.0 1"
        ));
        assert!(wrong(
            "spo2,site=st\\ example,ward=ward-8,gateway=gw-1,subject=bed-1 value=1.0 1"
        ));
        assert!(wrong(
            "spo2,site=other,ward=ward-7,gateway=gw-1,subject=bed-1 value=1.0 1"
        ));
        // Without identity tags it could be anyone's.
        assert!(wrong("spo2,subject=bed-1 value=1.0 1"));
        // `gw/1` would become the topic level `gw_1`: not the same gateway.
        let c = on_gw_1("spo2,site=st\\ example,ward=ward-7,gateway=gw/1 value=1.0 1");
        assert_eq!(
            c.refused[0].1.to_string(),
            "line 1: not from this topic's gateway: `gw/1` cannot be a topic level"
        );
        assert_eq!(
            on_gw_1("spo2,site=st\\ example,ward=ward-7,gateway=gw_1 value=1.0 1").refused,
            []
        );
        assert_eq!(
            refused("spo2,site=st\\ example,ward=ward-7,gateway=gw-2 value=1.0 1")[0].to_string(),
            "line 1: not from this topic's gateway: site=st example,ward=ward-7,gateway=gw-2 publish on wardgate/st example/ward-7/gw-2/telemetry"
        );
    }

    #[test]
    fn series_outside_the_schema_are_refused() {
        let tags = "site=st\\ example,ward=ward-7,gateway=gw-1,subject=bed-1";
        for (line, reason) in [
            (
                format!("evil,{tags} value=1.0 1"),
                "unknown measurement `evil`",
            ),
            (
                format!("spo2,{tags},colour=red value=1.0 1"),
                "`spo2` has no tag `colour`",
            ),
            (
                format!("spo2,{tags} value=1.0,extra=2.0 1"),
                "`spo2` has no field `extra`",
            ),
            (
                format!("spo2,{tags},unit=ppm value=1.0 1"),
                "the unit of `spo2` is `%`, not `ppm`",
            ),
            (
                format!("alert,{tags},unit=% active=1i 1"),
                "`alert` has no tag `unit`",
            ),
        ] {
            assert_eq!(
                refused(&line),
                [LineError::NotInSchema {
                    line: 1,
                    reason: reason.to_owned()
                }],
                "{line}"
            );
        }
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

        // The gateway of TOPIC, and a metric the schema declares.
        let id = Identity {
            site: "st example".into(),
            ward: "ward-7".into(),
            gateway: "gw-1".into(),
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
            let metric = Metric::custom("co2", &unit, None);
            let r = Reading::new(at, TimeSource::Device, "a".into(), None, metric, 0.0).unwrap();
            let mut line = String::new();
            encode(&Event::Reading(r), &id, &mut line);
            let checked = check_str(&line).unwrap();
            assert_eq!(checked.refused, [], "{line:?}");
            assert_eq!(checked.good.len(), 1, "{line:?}");
            assert_eq!(checked.oldest_ns, 6_638_341_174_403_161_153);
        }
        // What the fuzz target found, refused as before.
        assert_eq!(
            refused("co2,site=st\\ example,ward=ward-7,gateway=gw-1,subject=a,unit=d\t value=0.0 6638341174403161153\n").len(),
            1
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = check(TOPIC, &bytes, &schema());
        }

        #[test]
        fn arbitrary_text_never_panics(s in "[a-z ,=\"\\\\0-9.\n]{0,200}") {
            let _ = check(TOPIC, s.as_bytes(), &schema());
        }
    }
}
