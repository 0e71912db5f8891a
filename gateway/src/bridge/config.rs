//! The bridge's configuration file (`bridge.toml`): where to subscribe and
//! where to write. Checked in one pass; every problem is reported.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use wardgate_model::MetricRegistry;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_duration};

use crate::config::{ConfigErrors, LoadError, Loader};
use crate::mqtt::BrokerConfig;
use crate::sinks::influxdb::InfluxDbConfig;

/// The whole `bridge.toml`.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub mqtt: BridgeMqttConfig,
    pub influxdb: InfluxDbConfig,
    pub bridge: BridgeOptions,
}

/// `[bridge]`: what the bridge accepts and when it calls itself stalled.
#[derive(Debug, Clone, Deserialize)]
pub struct BridgeOptions {
    /// A batch InfluxDB has not stored for this long (it keeps failing, the
    /// bridge keeps retrying) makes the bridge report itself stalled: an
    /// error in the log and `stalled: ...` on its status topic, until the
    /// batch is stored.
    #[serde(with = "humantime_serde", default = "default_stalled_after")]
    pub stalled_after: Duration,
    /// Metrics the gateways declare in `[[metrics]]` (their names), accepted
    /// as measurements besides the built-in metrics and event measurements.
    #[serde(default)]
    pub metrics: Vec<String>,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self {
            stalled_after: default_stalled_after(),
            metrics: Vec::new(),
        }
    }
}

fn default_stalled_after() -> Duration {
    Duration::from_secs(300)
}

impl Validate for BridgeOptions {
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        check_duration(
            &mut issues,
            "stalled_after",
            self.stalled_after,
            Duration::from_secs(1)..=Duration::from_secs(24 * 3600),
        );
        for (i, name) in self.metrics.iter().enumerate() {
            let problem = crate::config::name_problem(name)
                .or_else(|| {
                    wardgate_model::Metric::builtin(name)
                        .map(|_| format!("`{name}` is a built-in metric; leave it out"))
                })
                .or_else(|| {
                    self.metrics[..i]
                        .contains(name)
                        .then(|| format!("`{name}` is listed twice"))
                });
            if let Some(p) = problem {
                issues.push(ConfigIssue::new(
                    [PathSeg::from("metrics"), PathSeg::from(i)],
                    p,
                ));
            }
        }
        issues
    }
}

/// `[mqtt]`: the broker and which telemetry to take.
#[derive(Debug, Clone, Deserialize)]
pub struct BridgeMqttConfig {
    /// The broker; give each bridge its own stable `client_id` (the broker
    /// keeps the unacknowledged messages of its persistent session under it).
    pub broker: BrokerConfig,
    /// The gateways' `topic_prefix`; the bridge takes
    /// `{topic_prefix}/+/+/+/telemetry`.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// Shared-subscription group: bridges in one group split the messages
    /// between them (`$share/{group}/...`).
    #[serde(default = "default_group")]
    pub group: String,
}

fn default_prefix() -> String {
    "wardgate".to_owned()
}
fn default_group() -> String {
    "wardgate-bridge".to_owned()
}

impl BridgeMqttConfig {
    /// `$share/{group}/{prefix}/+/+/+/telemetry`.
    pub fn filter(&self) -> String {
        format!(
            "$share/{}/{}",
            self.group,
            crate::mqtt::Topics::telemetry_filter(&self.topic_prefix)
        )
    }

    /// `{prefix}/bridge/{client_id}/status`: the bridge's retained status
    /// (three levels under the prefix, so no gateway's topics can match).
    pub fn status_topic(prefix: &str, client_id: &str) -> String {
        format!(
            "{}/bridge/{}/status",
            prefix.trim_end_matches('/'),
            crate::mqtt::segment(client_id)
        )
    }
}

impl Validate for BridgeMqttConfig {
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues: Vec<ConfigIssue> = self
            .broker
            .issues()
            .into_iter()
            .map(|i| i.within([PathSeg::from("broker")]))
            .collect();
        if self.topic_prefix.is_empty()
            || self.topic_prefix.contains(['+', '#'])
            || self.topic_prefix.starts_with(['/', '$'])
        {
            issues.push(ConfigIssue::new(
                [PathSeg::from("topic_prefix")],
                "topic_prefix must be non-empty, must not start with '/' or '$' and must not contain '+' or '#'",
            ));
        }
        if self.group.is_empty() || self.group.contains(['/', '+', '#']) {
            issues.push(ConfigIssue::new(
                [PathSeg::from("group")],
                "group must be non-empty and must not contain '/', '+' or '#'",
            ));
        }
        issues
    }
}

/// Whether a file is meant for `wardgate bridge` rather than `wardgate run`:
/// it has `[influxdb]` and `[mqtt]` tables and no `[gateway]`.
pub fn looks_like_bridge_file(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    table.contains_key("influxdb") && table.contains_key("mqtt") && !table.contains_key("gateway")
}

/// The bridge file's sections.
const SECTIONS: &[&str] = &["mqtt", "influxdb", "bridge"];

/// Reads and checks a bridge file.
pub fn load(path: &Path) -> Result<BridgeConfig, LoadError<ConfigErrors>> {
    parse(path, &crate::config::read(path)?).map_err(LoadError::Invalid)
}

/// Checks bridge configuration text with the gateway's loader, so both
/// files report alike: every problem at its file:line:column — syntax,
/// types, unknown sections and keys (with the keys allowed), and each
/// section's checks.
pub fn parse(file: &Path, text: &str) -> Result<BridgeConfig, ConfigErrors> {
    crate::config::check(file, text, |loader| {
        loader.unknown_sections(SECTIONS);
        let mqtt = required(loader, "mqtt", "broker");
        let influxdb = required(loader, "influxdb", "url, org and bucket");
        // The bridge declares no metrics: it checks lines by shape.
        let bridge = match loader.table_section("bridge") {
            Some(value) => loader.checked(
                value,
                &[PathSeg::from("bridge")],
                "[bridge]",
                &MetricRegistry::default(),
            ),
            None => Some(BridgeOptions::default()),
        };
        Some(BridgeConfig {
            mqtt: mqtt?,
            influxdb: influxdb?,
            bridge: bridge?,
        })
    })
}

/// A section the bridge cannot do without.
fn required<'i, T: serde::Deserialize<'i> + Validate>(
    loader: &mut Loader<'i>,
    name: &'static str,
    needs: &str,
) -> Option<T> {
    let Some(value) = loader.table_section(name) else {
        loader.error(0..0, format!("missing section [{name}]; it needs {needs}"));
        return None;
    };
    loader.checked(
        value,
        &[PathSeg::from(name)],
        &format!("[{name}]"),
        &MetricRegistry::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[mqtt]
broker = { host = "127.0.0.1", port = 1883, client_id = "bridge-a" }

[influxdb]
url = "http://127.0.0.1:8428"
org = "hospital"
bucket = "wards"
"#;

    /// Each error as `line:column: message`.
    fn errors(text: &str) -> Vec<String> {
        match parse(Path::new("bridge.toml"), text) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .errors
                .iter()
                .map(|e| format!("{}:{}: {}", e.position.line, e.position.column, e.message))
                .collect(),
        }
    }

    #[test]
    fn shipped_example_is_valid() {
        let text = include_str!("../../../config/bridge.toml");
        let c = parse(Path::new("config/bridge.toml"), text).unwrap();
        assert!(c.mqtt.broker.tls.is_some());
    }

    #[test]
    fn minimal_file_with_defaults() {
        let c = parse(Path::new("bridge.toml"), GOOD).unwrap();
        assert_eq!(
            c.mqtt.filter(),
            "$share/wardgate-bridge/wardgate/+/+/+/telemetry"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let text = GOOD
            .replace(
                "bucket = \"wards\"",
                "bucket = \"\"\nbatch_max = 0\ncolour = 1",
            )
            .replace("[mqtt]", "[mqtt]\ngroup = \"a/b\"");
        let errors = errors(&text);
        assert_eq!(errors.len(), 4, "{errors:#?}");
        // `group` is on line 3 (after a blank line and `[mqtt]`), bucket on 9.
        assert!(
            errors[0].starts_with("3:1: group must be non-empty"),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with("9:1: bucket must not be empty"),
            "{errors:#?}"
        );
        assert!(
            errors[2].starts_with("10:1: batch_max must be between"),
            "{errors:#?}"
        );
        assert!(
            errors[3].starts_with("11:1: unknown key `colour` in [influxdb]; allowed keys: url, "),
            "{errors:#?}"
        );
    }

    /// `file:line:column` of the first `needle` in `text`.
    fn at(text: &str, needle: &str) -> String {
        let offset = text.find(needle).unwrap();
        let line = text[..offset].matches('\n').count() + 1;
        let column = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("/etc/wardgate/bridge.toml:{line}:{column}")
    }

    #[test]
    fn unknown_keys_and_sections_carry_file_line_and_column() {
        let text = format!("{GOOD}\n[bridge]\nstalled = \"5m\"\n\n[influx]\nurl = \"x\"\n")
            .replace("port = 1883,", "port = 1883, qos = 1,");
        let e = parse(Path::new("/etc/wardgate/bridge.toml"), &text).unwrap_err();
        let shown = e.to_string();
        let lines: Vec<&str> = shown.lines().filter(|l| l.contains(": error: ")).collect();
        assert_eq!(lines.len(), 3, "{shown}");
        // A key inside an inline table, a key of a table, a section.
        let expected = [
            format!("{}: error: unknown key `qos` in [mqtt]", at(&text, "qos")),
            format!(
                "{}: error: unknown key `stalled` in [bridge]; allowed keys: stalled_after, metrics",
                at(&text, "stalled")
            ),
            format!(
                "{}: error: unknown section `influx`; allowed sections: mqtt, influxdb, bridge",
                at(&text, "influx]")
            ),
        ];
        for (line, want) in lines.iter().zip(&expected) {
            assert!(line.starts_with(want.as_str()), "{line}\nwanted {want}");
        }
        assert!(
            shown.ends_with("/etc/wardgate/bridge.toml: 3 errors found"),
            "{shown}"
        );
    }

    #[test]
    fn a_missing_section_is_named() {
        let errors = errors("[mqtt]\nbroker = { host = \"h\" }\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("1:1: missing section [influxdb]"),
            "{errors:?}"
        );
    }

    #[test]
    fn bridge_and_quarantine_keys() {
        let c = parse(Path::new("b.toml"), GOOD).unwrap();
        assert_eq!(c.bridge.stalled_after, Duration::from_secs(300));
        assert_eq!(c.influxdb.quarantine_max_bytes, 64 << 20);
        let text = format!(
            "{GOOD}quarantine_max_bytes = 100\n\n[bridge]\nstalled_after = \"0s\"\nmetrics = [\"co2\", \"spo2\", \"Bad\", \"co2\"]\n"
        );
        assert_eq!(
            errors(&text),
            [
                "9:1: quarantine_max_bytes must be between 1024 and 1099511627776, got 100",
                "12:1: stalled_after must be between 1s and 1day, got 0s",
                "13:19: `spo2` is a built-in metric; leave it out",
                "13:27: `Bad` must be snake_case: lower-case letters, digits and '_', starting with a letter",
                "13:34: `co2` is listed twice",
            ]
        );
        let c = parse(
            Path::new("b.toml"),
            &format!("{GOOD}\n[bridge]\nmetrics = [\"co2\"]\n"),
        )
        .unwrap();
        assert_eq!(c.bridge.metrics, ["co2"]);
    }

    #[test]
    fn a_bad_value_carries_line_and_column() {
        let errors = errors(&GOOD.replace("port = 1883", "port = \"x\""));
        assert_eq!(errors.len(), 1, "{errors:?}");
        // `broker` is on line 3; the bad value starts at column 37.
        let column = GOOD.lines().nth(2).unwrap().find("1883").unwrap() + 1;
        assert!(
            errors[0].starts_with(&format!("3:{column}: ")),
            "{errors:?}"
        );
    }
}
