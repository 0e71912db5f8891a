use serde::Deserialize;
use wardgate_model::MetricRegistry;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_range};

use crate::mqtt::BrokerConfig;

/// `[[sinks]] type = "mqtt"`.
#[derive(Debug, Clone, Deserialize)]
pub struct MqttSinkConfig {
    pub broker: BrokerConfig,
    /// First topic level; topics are `{topic_prefix}/{site}/{ward}/{gateway}/...`.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// Payload of telemetry messages: InfluxDB line protocol or a JSON array.
    #[serde(default)]
    pub telemetry_format: TelemetryFormat,
    /// Events per telemetry message at most.
    #[serde(default = "default_batch")]
    pub batch_max: usize,
    /// Messages awaiting PUBACK at most.
    #[serde(default = "default_inflight")]
    pub inflight: u16,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TelemetryFormat {
    /// InfluxDB line protocol: Telegraf's `mqtt_consumer` with
    /// `data_format = "influx"` reads it as is.
    #[default]
    Line,
    /// A JSON array of events (the JSONL sink's objects).
    Json,
}

fn default_prefix() -> String {
    "wardgate".to_owned()
}
fn default_batch() -> usize {
    500
}
fn default_inflight() -> u16 {
    64
}

impl Validate for MqttSinkConfig {
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues: Vec<ConfigIssue> = self
            .broker
            .issues()
            .into_iter()
            .map(|i| i.within([PathSeg::from("broker")]))
            .collect();
        check_range(&mut issues, "batch_max", self.batch_max, 1..=10_000);
        check_range(&mut issues, "inflight", self.inflight, 1..=1000);
        if self.topic_prefix.is_empty()
            || self.topic_prefix.contains(['+', '#'])
            || self.topic_prefix.starts_with('/')
        {
            issues.push(ConfigIssue::new(
                [PathSeg::from("topic_prefix")],
                "topic_prefix must be non-empty, must not start with '/' and must not contain '+' or '#'",
            ));
        }
        issues
    }
}
