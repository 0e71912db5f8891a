//! The bridge's configuration file (`bridge.toml`): where to subscribe and
//! where to write. Checked in one pass; every problem is reported.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wardgate_model::config::{ConfigIssue, PathSeg};

use crate::config::LoadError;
use crate::mqtt::BrokerConfig;
use crate::sinks::influxdb::InfluxDbConfig;

/// The whole `bridge.toml`.
#[derive(Debug, Clone, Deserialize)]
pub struct BridgeConfig {
    pub mqtt: BridgeMqttConfig,
    pub influxdb: InfluxDbConfig,
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

/// Checks bridge configuration text; errors name the key (and for syntax
/// and type errors the line and column).
pub fn parse(text: &str) -> Result<BridgeConfig, Vec<String>> {
    let mut errors = Vec::new();
    let de = toml::de::Deserializer::parse(text).map_err(|e| vec![located(text, &e)])?;
    let config: Option<BridgeConfig> = match serde_ignored::deserialize(de, |p| {
        errors.push(format!(
            "unknown key `{p}`; allowed: mqtt.broker, mqtt.topic_prefix, mqtt.group and [influxdb] keys url, org, bucket, token, ca, gzip, batch_max, flush_interval, timeout, max_backoff, quarantine"
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
                    .issues()
                    .into_iter()
                    .map(|i| i.within([PathSeg::from("influxdb")])),
            );
        for i in issues {
            errors.push(format!("{}: {}", i.dotted_path(), i.message));
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
        assert!(errors[1].starts_with("mqtt.group: "), "{errors:#?}");
        assert!(errors[2].starts_with("influxdb.bucket: "), "{errors:#?}");
        assert!(errors[3].starts_with("influxdb.batch_max: "), "{errors:#?}");
    }

    #[test]
    fn type_errors_carry_line_and_column() {
        let errors = parse(&GOOD.replace("port = 1883", "port = \"x\"")).unwrap_err();
        assert_eq!(errors.len(), 1);
        // `broker` is on line 3; the bad value starts at column 41.
        assert!(errors[0].starts_with("line 3, column "), "{errors:?}");
    }
}
