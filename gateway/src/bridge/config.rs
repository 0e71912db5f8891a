//! The bridge's configuration file (`bridge.toml`): where to subscribe and
//! where to write. Checked in one pass; every problem is reported.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wardgate_model::MetricRegistry;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_duration};

use crate::config::LoadError;
use crate::mqtt::BrokerConfig;
use crate::sinks::influxdb::InfluxDbConfig;

/// The whole `bridge.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct BridgeConfig {
    pub mqtt: BridgeMqttConfig,
    pub influxdb: InfluxDbConfig,
    #[serde(default)]
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

impl BridgeOptions {
    fn issues(&self) -> Vec<ConfigIssue> {
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

    fn issues(&self) -> Vec<ConfigIssue> {
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

/// Every problem found in a bridge file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct BridgeConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<String>,
}

impl fmt::Display for BridgeConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "{}: error: {e}", self.file.display())?;
        }
        let n = self.errors.len();
        write!(
            f,
            "{}: {n} error{} found",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )
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

/// Reads and checks a bridge file.
pub fn load(path: &Path) -> Result<BridgeConfig, LoadError<BridgeConfigErrors>> {
    parse(&crate::config::read(path)?).map_err(|errors| {
        LoadError::Invalid(BridgeConfigErrors {
            file: path.to_owned(),
            errors,
        })
    })
}

/// Checks bridge configuration text; errors name the line, the column and
/// the key.
pub fn parse(text: &str) -> Result<BridgeConfig, Vec<String>> {
    let mut errors = Vec::new();
    let de = toml::de::Deserializer::parse(text).map_err(|e| vec![located(text, &e)])?;
    let config: Option<BridgeConfig> = match serde_ignored::deserialize(de, |p| {
        errors.push(format!(
            "unknown key `{p}`; allowed: mqtt.broker, mqtt.topic_prefix, mqtt.group, bridge.stalled_after, bridge.metrics and [influxdb] keys url, org, bucket, token, ca, gzip, batch_max, flush_interval, timeout, max_backoff, quarantine, quarantine_max_bytes"
        ));
    }) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(located(text, &e));
            None
        }
    };
    if let Some(c) = &config {
        let issues = c
            .mqtt
            .issues()
            .into_iter()
            .map(|i| i.within([PathSeg::from("mqtt")]))
            .chain(
                c.influxdb
                    // The bridge declares no metrics: it checks lines by shape.
                    .validate(&MetricRegistry::default())
                    .into_iter()
                    .map(|i| i.within([PathSeg::from("influxdb")])),
            )
            .chain(
                c.bridge
                    .issues()
                    .into_iter()
                    .map(|i| i.within([PathSeg::from("bridge")])),
            );
        // Name where each problem is: the key, or the deepest value there.
        let root = toml::de::DeTable::parse(text)
            .map(|t| toml::Spanned::new(t.span(), toml::de::DeValue::Table(t.into_inner())));
        let source = crate::config::source::Source { text };
        for i in issues {
            let at = match &root {
                Ok(root) => {
                    let p = source.position(crate::config::source::span_of(root, &i.path).start);
                    format!("line {}, column {}: ", p.line, p.column)
                }
                Err(_) => String::new(),
            };
            errors.push(format!("{at}{}: {}", i.dotted_path(), i.message));
        }
    }
    match config {
        Some(c) if errors.is_empty() => Ok(c),
        _ => Err(errors),
    }
}

fn located(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    }
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

    #[test]
    fn shipped_example_is_valid() {
        let text = include_str!("../../../config/bridge.toml");
        let c = parse(text).unwrap();
        assert!(c.mqtt.broker.tls.is_some());
    }

    #[test]
    fn minimal_file_with_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(
            c.mqtt.filter(),
            "$share/wardgate-bridge/wardgate/+/+/+/telemetry"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let text = GOOD
            .replace(
                "bucket = \"wards\"",
                "bucket = \"\"\nbatch_max = 0\ncolour = 1",
            )
            .replace("[mqtt]", "[mqtt]\ngroup = \"a/b\"");
        let errors = parse(&text).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(
            errors[0].contains("unknown key `influxdb.colour`"),
            "{errors:#?}"
        );
        // `group` is on line 3 (after a blank line and `[mqtt]`), bucket on 9.
        assert!(
            errors[1].starts_with("line 3, column 1: mqtt.group: "),
            "{errors:#?}"
        );
        assert!(
            errors[2].starts_with("line 9, column 1: influxdb.bucket: "),
            "{errors:#?}"
        );
        assert!(
            errors[3].starts_with("line 10, column 1: influxdb.batch_max: "),
            "{errors:#?}"
        );
    }

    #[test]
    fn bridge_and_quarantine_keys() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.bridge.stalled_after, Duration::from_secs(300));
        assert_eq!(c.influxdb.quarantine_max_bytes, 64 << 20);
        let text = format!(
            "{GOOD}quarantine_max_bytes = 100\n\n[bridge]\nstalled_after = \"0s\"\nmetrics = [\"co2\", \"spo2\", \"Bad\", \"co2\"]\n"
        );
        let errors = parse(&text).unwrap_err();
        assert_eq!(
            errors,
            [
                "line 9, column 1: influxdb.quarantine_max_bytes: quarantine_max_bytes must be between 1024 and 1099511627776, got 100",
                "line 12, column 1: bridge.stalled_after: stalled_after must be between 1s and 1day, got 0s",
                "line 13, column 19: bridge.metrics.[1]: `spo2` is a built-in metric; leave it out",
                "line 13, column 27: bridge.metrics.[2]: `Bad` must be snake_case: lower-case letters, digits and '_', starting with a letter",
                "line 13, column 34: bridge.metrics.[3]: `co2` is listed twice",
            ]
        );
        let c = parse(&format!("{GOOD}\n[bridge]\nmetrics = [\"co2\"]\n")).unwrap();
        assert_eq!(c.bridge.metrics, ["co2"]);
    }

    #[test]
    fn type_errors_carry_line_and_column() {
        let errors = parse(&GOOD.replace("port = 1883", "port = \"x\"")).unwrap_err();
        assert_eq!(errors.len(), 1);
        // `broker` is on line 3; the bad value starts at column 41.
        assert!(errors[0].starts_with("line 3, column "), "{errors:?}");
    }
}
