use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wardgate_model::MetricRegistry;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_range};

use crate::secret::SecretSource;

/// How to reach an InfluxDB v2 write API and how to batch writes to it.
/// `[[sinks]] type = "influxdb"` in a gateway file and `[influxdb]` in a
/// bridge file are this same table.
#[derive(Debug, Clone, Deserialize)]
pub struct InfluxDbConfig {
    /// Base URL, e.g. `https://influx.example.org:8086` (the sink appends
    /// `/api/v2/write`).
    pub url: String,
    /// Organisation name (InfluxDB 2); victoria-metrics ignores it.
    pub org: String,
    /// Bucket the points go to.
    pub bucket: String,
    /// API token, `{ env = "VAR" }` or `{ file = "/path" }`; sent as
    /// `Authorization: Token ...`. Leave out for servers without auth.
    pub token: Option<SecretSource>,
    /// PEM file of a private CA that signed the server's certificate
    /// (for `https://` URLs); the public web roots are trusted otherwise.
    pub ca: Option<PathBuf>,
    /// Compress request bodies with gzip.
    #[serde(default = "default_gzip")]
    pub gzip: bool,
    /// Points per write request at most.
    #[serde(default = "default_batch")]
    pub batch_max: usize,
    /// A smaller batch is written once its oldest point waited this long.
    #[serde(with = "humantime_serde", default = "default_flush")]
    pub flush_interval: Duration,
    /// Time allowed for one write request.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    /// Longest pause between retries (the backoff doubles up to it).
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// JSONL file for lines the server refused (4xx other than 401, 403,
    /// 404 and 429, down to the single line) and, in the bridge, lines it
    /// refused itself. Default: `<name>.quarantine.jsonl` next to the spool
    /// (gateway) or `bridge-quarantine.jsonl` next to the bridge's config file.
    pub quarantine: Option<PathBuf>,
    /// The quarantine file's bound in bytes; past it entries are dropped and
    /// counted (and the gateway raises `quarantine_full`).
    #[serde(default = "crate::sinks::delivery::default_quarantine_max_bytes")]
    pub quarantine_max_bytes: u64,
}

fn default_gzip() -> bool {
    true
}
fn default_batch() -> usize {
    5000
}
fn default_flush() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl Validate for InfluxDbConfig {
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => issues.push(ConfigIssue::new(
                [PathSeg::from("url")],
                format!(
                    "url must be an http:// or https:// URL such as \"http://127.0.0.1:8086\", got \"{}\"",
                    self.url
                ),
            )),
        }
        if self.ca.is_some() && !self.url.starts_with("https://") {
            issues.push(ConfigIssue::new(
                [PathSeg::from("ca")],
                "ca is only used with an https:// url",
            ));
        }
        for (key, v) in [("org", &self.org), ("bucket", &self.bucket)] {
            if v.trim().is_empty() {
                issues.push(ConfigIssue::new(
                    [PathSeg::from(key)],
                    format!("{key} must not be empty"),
                ));
            }
        }
        check_range(&mut issues, "batch_max", self.batch_max, 1..=100_000);
        if self.flush_interval < Duration::from_millis(10)
            || self.flush_interval > Duration::from_secs(60)
        {
            issues.push(ConfigIssue::new(
                [PathSeg::from("flush_interval")],
                "flush_interval must be between 10ms and 60s",
            ));
        }
        if self.timeout < Duration::from_secs(1) || self.timeout > Duration::from_secs(300) {
            issues.push(ConfigIssue::new(
                [PathSeg::from("timeout")],
                "timeout must be between 1s and 5m",
            ));
        }
        crate::sinks::delivery::check_retry_keys(
            &mut issues,
            self.max_backoff,
            self.quarantine_max_bytes,
        );
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> InfluxDbConfig {
        toml::from_str(&format!(
            "url = \"http://127.0.0.1:8428\"\norg = \"ward\"\nbucket = \"vitals\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse("");
        let issues = c.validate(&MetricRegistry::default());
        assert!(issues.is_empty(), "{issues:?}");
        assert!(c.gzip);
        assert_eq!(c.batch_max, 5000);
        assert_eq!(c.flush_interval, Duration::from_secs(1));
        assert_eq!(c.quarantine_max_bytes, 64 << 20);
    }

    #[test]
    fn bad_values_are_all_reported() {
        let mut c = parse(
            "batch_max = 0\nflush_interval = \"2m\"\ntoken = { env = \"T\" }\nquarantine_max_bytes = 10",
        );
        c.url = "influx.example.org:8086".into();
        c.bucket = " ".into();
        let keys: Vec<String> = c
            .validate(&MetricRegistry::default())
            .iter()
            .map(ConfigIssue::dotted_path)
            .collect();
        assert_eq!(
            keys,
            [
                "url",
                "bucket",
                "batch_max",
                "flush_interval",
                "quarantine_max_bytes"
            ]
        );
    }
}
