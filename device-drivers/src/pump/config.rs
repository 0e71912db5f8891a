//! `[[devices]] type = "pump"`: which serial port and how to poll it.

use std::path::PathBuf;
use std::time::Duration;

use humantime_serde::re::humantime::format_duration;
use serde::Deserialize;
use wardgate_model::MetricRegistry;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_duration, check_range};

use super::poll::PollSettings;

/// Baud rates a serial line can be set to; the protocol's default is 38400.
const BAUD_RATES: &[u32] = &[1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200];

/// A pump on a serial line. The framing is always 8 data bits, no parity,
/// one stop bit, no flow control (8N1), as the protocol specifies.
#[derive(Debug, Clone, Deserialize)]
pub struct PumpConfig {
    /// Serial device path (`/dev/ttyUSB0`, a `/dev/serial/by-id/...` link, a pty).
    pub port: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Time between the starts of two status + VTBI polls.
    #[serde(with = "humantime_serde", default = "default_poll_interval")]
    pub poll_interval: Duration,
    /// The pump's polls start at a fixed offset into the interval, taken
    /// from a hash of its id in `[0, min(jitter, poll_interval))`, so pumps
    /// are not all asked at once (`0s`: identify as soon as the port opens).
    #[serde(with = "humantime_serde", default = "default_jitter")]
    pub jitter: Duration,
    /// How long to wait for each reply before resending.
    #[serde(with = "humantime_serde", default = "default_reply_timeout")]
    pub reply_timeout: Duration,
    /// Resends of one request before the poll counts as failed.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Failed polls in a row before "communication lost".
    #[serde(default = "default_failures_before_lost")]
    pub failures_before_lost: u32,
    /// Longest wait between attempts to reopen a port that is gone.
    #[serde(with = "humantime_serde", default = "default_reconnect_max")]
    pub reconnect_max: Duration,
}

fn default_baud() -> u32 {
    38_400
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_jitter() -> Duration {
    crate::jitter::DEFAULT_JITTER
}
fn default_reply_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_retries() -> u32 {
    2
}
fn default_failures_before_lost() -> u32 {
    3
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}

impl PumpConfig {
    /// A config with every default, for `port`.
    pub fn new(port: impl Into<PathBuf>) -> Self {
        Self {
            port: port.into(),
            baud: default_baud(),
            poll_interval: default_poll_interval(),
            jitter: default_jitter(),
            reply_timeout: default_reply_timeout(),
            retries: default_retries(),
            failures_before_lost: default_failures_before_lost(),
            reconnect_max: default_reconnect_max(),
        }
    }

    /// The poll schedule of the pump `device` (its id sets its phase).
    pub fn poll_settings(&self, device: &str) -> PollSettings {
        PollSettings {
            interval: self.poll_interval,
            phase: crate::jitter::phase(device, self.jitter, self.poll_interval),
            reply_timeout: self.reply_timeout,
            retries: self.retries,
            failures_before_lost: self.failures_before_lost,
        }
    }
}

impl Validate for PumpConfig {
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.port.as_os_str().is_empty() {
            issues.push(ConfigIssue::new(
                [PathSeg::from("port")],
                "port must name a serial device, e.g. \"/dev/ttyUSB0\"",
            ));
        }
        if !BAUD_RATES.contains(&self.baud) {
            let allowed: Vec<String> = BAUD_RATES.iter().map(ToString::to_string).collect();
            issues.push(ConfigIssue::new(
                [PathSeg::from("baud")],
                format!(
                    "baud must be one of {}, got {}",
                    allowed.join(", "),
                    self.baud
                ),
            ));
        }
        let ms = Duration::from_millis;
        check_duration(
            &mut issues,
            "poll_interval",
            self.poll_interval,
            ms(100)..=Duration::from_secs(3600),
        );
        check_duration(
            &mut issues,
            "jitter",
            self.jitter,
            Duration::ZERO..=Duration::from_secs(3600),
        );
        check_duration(
            &mut issues,
            "reply_timeout",
            self.reply_timeout,
            ms(10)..=Duration::from_secs(60),
        );
        check_duration(
            &mut issues,
            "reconnect_max",
            self.reconnect_max,
            ms(100)..=Duration::from_secs(3600),
        );
        if self.reply_timeout >= self.poll_interval {
            issues.push(ConfigIssue::new(
                [PathSeg::from("reply_timeout")],
                format!(
                    "reply_timeout ({}) must be shorter than poll_interval ({})",
                    format_duration(self.reply_timeout),
                    format_duration(self.poll_interval)
                ),
            ));
        }
        check_range(&mut issues, "retries", self.retries, 0..=10);
        check_range(
            &mut issues,
            "failures_before_lost",
            self.failures_before_lost,
            1..=100,
        );
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_protocol() {
        let c: PumpConfig = toml::from_str(r#"port = "/dev/ttyUSB0""#).unwrap();
        assert_eq!(c.baud, 38_400);
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        assert!(c.validate(&MetricRegistry::default()).is_empty());
        let c: PumpConfig = toml::from_str(
            r#"
            port = "/dev/pump"
            baud = 9600
            poll_interval = "5s"
            reply_timeout = "200ms"
            retries = 1
            failures_before_lost = 4
            jitter = "0s"
            "#,
        )
        .unwrap();
        assert_eq!(
            c.poll_settings("pump-1"),
            PollSettings {
                interval: Duration::from_secs(5),
                phase: Duration::ZERO,
                reply_timeout: Duration::from_millis(200),
                retries: 1,
                failures_before_lost: 4
            }
        );
    }

    #[test]
    fn validation_reports_every_problem() {
        let c = PumpConfig {
            port: PathBuf::new(),
            baud: 38_000,
            poll_interval: Duration::from_secs(1),
            jitter: Duration::from_secs(2),
            reply_timeout: Duration::from_secs(2),
            retries: 11,
            failures_before_lost: 0,
            reconnect_max: Duration::from_secs(30),
        };
        let keys: Vec<String> = c
            .validate(&MetricRegistry::default())
            .iter()
            .map(|i| i.path[0].to_string())
            .collect();
        assert_eq!(
            keys,
            [
                "port",
                "baud",
                "reply_timeout",
                "retries",
                "failures_before_lost"
            ]
        );
    }
}
