use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wardgate_model::MetricRegistry;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_duration};

use crate::sinks::charting::ChartConfig;

/// `[[sinks]] type = "hl7v2"`: readings (PCD-01) and alert transitions
/// (PCD-04) as HL7 v2.6 messages over MLLP to an interface engine, an EMR
/// or an alert manager.
#[derive(Debug, Clone, Deserialize)]
pub struct Hl7Config {
    /// `host:port` of the MLLP listener. MLLP is plain TCP: run it on the
    /// hospital LAN or through a TLS tunnel (stunnel) to the engine.
    pub address: String,
    /// MSH-5: the receiving application, as the interface engineer names it.
    pub receiving_application: String,
    /// MSH-6: the receiving facility.
    pub receiving_facility: String,
    /// MSH-4: the sending facility (default: the gateway's id).
    pub sending_facility: Option<String>,
    /// PV1-2 of a bed's patient (HL7 table 0004; `I` inpatient).
    #[serde(default = "default_bed_class")]
    pub bed_class: String,
    /// PV1-2 of a home patient (`O` outpatient).
    #[serde(default = "default_patient_class")]
    pub patient_class: String,
    /// Time allowed for the TCP connection.
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Time the peer has to acknowledge a message; then the connection is
    /// dropped and the message sent again (with the same control id).
    #[serde(with = "humantime_serde", default = "default_ack_timeout")]
    pub ack_timeout: Duration,
    /// Longest pause between reconnection attempts (the backoff doubles up
    /// to it).
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Which readings are charted (`[sinks.chart]`).
    #[serde(default)]
    pub chart: ChartConfig,
    /// JSONL file for messages the peer refused for good (`AE`/`CE`).
    /// Default: `<name>.quarantine.jsonl` next to the spool.
    pub quarantine: Option<PathBuf>,
    /// The quarantine file's bound in bytes; past it refused messages are
    /// dropped and counted (and the gateway raises `quarantine_full`).
    #[serde(default = "crate::sinks::delivery::default_quarantine_max_bytes")]
    pub quarantine_max_bytes: u64,
}

fn default_bed_class() -> String {
    "I".into()
}
fn default_patient_class() -> String {
    "O".into()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

/// Whether `address` is `host:port` with a port other than 0.
fn address_ok(address: &str) -> bool {
    address.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|p| p != 0)
    })
}

impl Validate for Hl7Config {
    fn validate(&self, metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if !address_ok(&self.address) {
            issues.push(ConfigIssue::new(
                [PathSeg::from("address")],
                format!(
                    "address must be host:port of the MLLP listener, e.g. \"10.1.2.3:2575\", got \"{}\"",
                    self.address
                ),
            ));
        }
        for (key, v) in [
            ("receiving_application", Some(&self.receiving_application)),
            ("receiving_facility", Some(&self.receiving_facility)),
            ("sending_facility", self.sending_facility.as_ref()),
            ("bed_class", Some(&self.bed_class)),
            ("patient_class", Some(&self.patient_class)),
        ] {
            if let Some(v) = v
                && (v.trim().is_empty() || v.len() > 180)
            {
                issues.push(ConfigIssue::new(
                    [PathSeg::from(key)],
                    format!("{key} must be 1 to 180 characters"),
                ));
            }
        }
        check_duration(
            &mut issues,
            "connect_timeout",
            self.connect_timeout,
            Duration::from_millis(100)..=Duration::from_secs(300),
        );
        check_duration(
            &mut issues,
            "ack_timeout",
            self.ack_timeout,
            Duration::from_millis(100)..=Duration::from_secs(600),
        );
        crate::sinks::delivery::check_retry_keys(
            &mut issues,
            self.max_backoff,
            self.quarantine_max_bytes,
        );
        self.chart.check_within(metrics, &mut issues);
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Hl7Config {
        toml::from_str(&format!(
            "address = \"127.0.0.1:2575\"\nreceiving_application = \"EMR\"\nreceiving_facility = \"HOSP\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse("");
        let issues = c.validate(&MetricRegistry::default());
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(c.ack_timeout, Duration::from_secs(10));
        assert_eq!(c.max_backoff, Duration::from_secs(30));
        assert_eq!((c.bed_class.as_str(), c.patient_class.as_str()), ("I", "O"));
        assert_eq!(c.chart.every, Duration::from_secs(15 * 60));
    }

    #[test]
    fn bad_values_are_all_reported() {
        let mut c = parse(
            "ack_timeout = \"0s\"\nsending_facility = \" \"\n[chart]\nmetrics = { nope = \"1m\" }",
        );
        for bad in ["127.0.0.1", ":2575", "h:0", "h:99999", "a b:1"] {
            c.address = bad.into();
            let keys: Vec<String> = c
                .validate(&MetricRegistry::default())
                .iter()
                .map(ConfigIssue::dotted_path)
                .collect();
            assert_eq!(
                keys,
                [
                    "address",
                    "sending_facility",
                    "ack_timeout",
                    "chart.metrics.nope"
                ],
                "{bad}"
            );
        }
        for good in ["emr.hospital.example:2575", "[::1]:2575", "127.0.0.1:1"] {
            assert!(address_ok(good), "{good}");
        }
    }
}
