use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wardgate_model::MetricRegistry;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_duration, check_range};

use crate::secret::SecretSource;
use crate::sinks::charting::ChartConfig;

/// `[[sinks]] type = "fhir"`: a FHIR R4 server (an EMR's or an integration
/// engine's endpoint) that takes transaction Bundles at its base URL.
#[derive(Debug, Clone, Deserialize)]
pub struct FhirConfig {
    /// The server's base URL, e.g. `https://emr.example.org/fhir/r4`; the
    /// bundles are POSTed to it.
    pub url: String,
    /// Bearer token, `{ env = "VAR" }` or `{ file = "/path" }`: sent as
    /// `Authorization: Bearer ...`.
    pub token: Option<SecretSource>,
    /// PEM file of a private CA that signed the server's certificate.
    pub ca: Option<PathBuf>,
    /// The gateway's client certificate (PEM) for mutual TLS, with `key`.
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of `cert`.
    pub key: Option<PathBuf>,
    /// Which readings are charted and how often.
    #[serde(default)]
    pub chart: ChartConfig,
    /// Observations per transaction Bundle at most.
    #[serde(default = "default_batch")]
    pub batch_max: usize,
    /// A smaller bundle is sent once its oldest Observation waited this long.
    #[serde(with = "humantime_serde", default = "default_flush")]
    pub flush_interval: Duration,
    /// Time allowed for one request.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    /// Longest pause between retries.
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// JSONL file for Observations the server refused for good (down to the
    /// single resource). Default: `<name>.quarantine.jsonl` next to the spool.
    pub quarantine: Option<PathBuf>,
    /// The quarantine file's bound in bytes.
    #[serde(default = "crate::sinks::delivery::default_quarantine_max_bytes")]
    pub quarantine_max_bytes: u64,
    /// The URI prefix naming the gateway's own identifiers (Observation
    /// identifiers, devices, NEWS2 parameter codes). Default:
    /// `urn:wardgate:<site>:<gateway id>`.
    pub identifier_base: Option<String>,
}

fn default_batch() -> usize {
    100
}
fn default_flush() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}

impl Validate for FhirConfig {
    fn validate(&self, metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        match reqwest::Url::parse(&self.url) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none() => {}
            _ => issues.push(ConfigIssue::new(
                [PathSeg::from("url")],
                format!(
                    "url must be the FHIR base, an http:// or https:// URL without a query such as \"https://emr.example.org/fhir/r4\", got \"{}\"",
                    self.url
                ),
            )),
        }
        let https = self.url.starts_with("https://");
        for (key, set) in [
            ("ca", self.ca.is_some()),
            ("cert", self.cert.is_some()),
            ("key", self.key.is_some()),
        ] {
            if set && !https {
                issues.push(ConfigIssue::new(
                    [PathSeg::from(key)],
                    format!("{key} is only used with an https:// url"),
                ));
            }
        }
        if self.cert.is_some() != self.key.is_some() {
            issues.push(ConfigIssue::new(
                [PathSeg::from(if self.cert.is_some() {
                    "cert"
                } else {
                    "key"
                })],
                "mutual TLS needs both cert and key",
            ));
        }
        if let Some(base) = &self.identifier_base
            && !identifier_base_ok(base)
        {
            issues.push(ConfigIssue::new(
                [PathSeg::from("identifier_base")],
                "identifier_base is a URI of letters, digits and : . - _ / (no spaces, | & # ? or %), e.g. \"urn:wardgate:st-example:gw-ward-7\"",
            ));
        }
        self.chart.check_within(metrics, &mut issues);
        check_range(&mut issues, "batch_max", self.batch_max, 1..=1000);
        check_duration(
            &mut issues,
            "flush_interval",
            self.flush_interval,
            Duration::from_millis(10)..=Duration::from_secs(300),
        );
        check_duration(
            &mut issues,
            "timeout",
            self.timeout,
            Duration::from_secs(1)..=Duration::from_secs(300),
        );
        crate::sinks::delivery::check_retry_keys(
            &mut issues,
            self.max_backoff,
            self.quarantine_max_bytes,
        );
        issues
    }
}

/// The identifier base goes into `ifNoneExist` query strings unescaped.
pub(super) fn identifier_base_ok(base: &str) -> bool {
    base.contains(':')
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'-' | b'_' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> FhirConfig {
        toml::from_str(&format!("url = \"https://emr.example.org/fhir\"\n{extra}")).unwrap()
    }

    /// The dotted keys of every issue, in order.
    fn keys(c: &FhirConfig) -> Vec<String> {
        c.validate(&MetricRegistry::default())
            .iter()
            .map(ConfigIssue::dotted_path)
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse("");
        assert!(c.validate(&MetricRegistry::default()).is_empty());
        assert_eq!(c.chart.every, Duration::from_secs(900));
        assert_eq!(c.batch_max, 100);
    }

    #[test]
    fn bad_values_are_all_reported() {
        let mut c = parse(
            "cert = \"/c.pem\"\nbatch_max = 0\nidentifier_base = \"urn:x y\"\n[chart]\nmetrics = { nope = \"1m\" }",
        );
        assert_eq!(
            keys(&c),
            ["cert", "identifier_base", "chart.metrics.nope", "batch_max"]
        );
        c.url = "http://emr/fhir?x=1".into();
        c.cert = None;
        assert_eq!(
            keys(&c),
            ["url", "identifier_base", "chart.metrics.nope", "batch_max"]
        );
    }
}
