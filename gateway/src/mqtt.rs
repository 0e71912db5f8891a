//! MQTT connection settings and topic names shared by the MQTT sink and the
//! bridge (one home for both ends of the protocol).

use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use serde::Deserialize;
use wardgate_model::config::{ConfigIssue, PathSeg, check_duration};

use crate::secret::{SecretError, SecretSource};

/// `broker = { ... }`: how to reach the MQTT broker.
#[derive(Debug, Clone, Deserialize)]
pub struct BrokerConfig {
    /// Host name or address of the broker.
    pub host: String,
    /// TCP port; defaults to 1883, or 8883 with `tls`.
    pub port: Option<u16>,
    /// MQTT client id; must be unique per broker and stable across restarts
    /// (the broker keeps the persistent session under it).
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// `{ env = "VAR" }` or `{ file = "/path" }`, never inline.
    pub password: Option<SecretSource>,
    #[serde(with = "humantime_serde", default = "default_keep_alive")]
    pub keep_alive: Duration,
    /// Longest wait between reconnection attempts (exponential backoff with
    /// jitter, from 200 ms up to this).
    #[serde(with = "humantime_serde", default = "default_reconnect_max")]
    pub reconnect_max: Duration,
    /// TLS (rustls). Present = TLS on.
    pub tls: Option<TlsConfig>,
}

/// `tls = { ca = "...", client_cert = "...", client_key = "..." }`.
#[derive(Debug, Clone, Deserialize)]
pub struct TlsConfig {
    /// PEM file of the CA that signed the broker's certificate.
    pub ca: PathBuf,
    /// PEM client certificate and key, for brokers that require client auth.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

fn default_reconnect_max() -> Duration {
    Duration::from_secs(30)
}

fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot read {what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("MQTT password: {0}")]
    Secret(#[from] SecretError),
}

impl BrokerConfig {
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.tls.is_some() { 8883 } else { 1883 })
    }

    /// Checks what types cannot: paired TLS files, a password needing a user.
    pub fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.host.trim().is_empty() {
            issues.push(ConfigIssue::new(
                [PathSeg::from("host")],
                "host must not be empty",
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            issues.push(ConfigIssue::new(
                [PathSeg::from("password")],
                "a password needs a username",
            ));
        }
        if let Some(tls) = &self.tls
            && tls.client_cert.is_some() != tls.client_key.is_some()
        {
            issues.push(ConfigIssue::new(
                [PathSeg::from("tls")],
                "client_cert and client_key go together: give both or neither",
            ));
        }
        check_duration(
            &mut issues,
            "reconnect_max",
            self.reconnect_max,
            Duration::from_secs(1)..=Duration::from_secs(600),
        );
        if self.keep_alive < Duration::from_secs(5) {
            issues.push(ConfigIssue::new(
                [PathSeg::from("keep_alive")],
                "keep_alive must be at least 5s",
            ));
        }
        issues
    }

    /// Delays between reconnection attempts: exponential from 200 ms up to
    /// `reconnect_max`, with jitter.
    pub fn reconnect_backoff(&self) -> backon::ExponentialBuilder {
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(self.reconnect_max)
            .with_jitter()
            .without_max_times()
    }

    /// rumqttc options: persistent session (`clean_session = false`), the
    /// given in-flight window and last will, credentials and TLS resolved now.
    pub fn options(
        &self,
        default_client_id: &str,
        inflight: u16,
        last_will: Option<LastWill>,
    ) -> Result<MqttOptions, BrokerError> {
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| default_client_id.to_owned());
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port());
        o.set_keep_alive(self.keep_alive)
            .set_clean_session(false)
            .set_inflight(inflight.max(1))
            .set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        if let Some(will) = last_will {
            o.set_last_will(will);
        }
        if let Some(user) = &self.username {
            let password = match &self.password {
                Some(p) => p.resolve()?.expose().to_owned(),
                None => String::new(),
            };
            o.set_credentials(user.clone(), password);
        }
        if let Some(tls) = &self.tls {
            let read = |what: &'static str, path: &PathBuf| {
                std::fs::read(path).map_err(|source| BrokerError::File {
                    what,
                    path: path.clone(),
                    source,
                })
            };
            let ca = read("CA file", &tls.ca)?;
            let client_auth = match (&tls.client_cert, &tls.client_key) {
                (Some(c), Some(k)) => {
                    Some((read("client certificate", c)?, read("client key", k)?))
                }
                _ => None,
            };
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth,
            }));
        }
        Ok(o)
    }
}

/// Topic names under `{prefix}/{site}/{ward}/{gateway}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(prefix: &str, site: &str, ward: &str, gateway: &str) -> Self {
        Self {
            base: format!(
                "{}/{}/{}/{}",
                prefix.trim_end_matches('/'),
                segment(site),
                segment(ward),
                segment(gateway)
            ),
        }
    }

    /// Telemetry batches (line protocol or JSON), QoS 1, not retained.
    pub fn telemetry(&self) -> String {
        format!("{}/telemetry", self.base)
    }

    /// The shared-subscription filter a bridge uses for every gateway under
    /// `prefix`.
    pub fn telemetry_filter(prefix: &str) -> String {
        format!("{}/+/+/+/telemetry", prefix.trim_end_matches('/'))
    }

    /// Gateway status: retained `online`, last will `offline`.
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }

    /// One retained message per device with its latest status.
    pub fn device_status(&self, device: &str) -> String {
        format!("{}/devices/{}/status", self.base, segment(device))
    }

    /// One retained message per (subject, rule) with the alert's whole state.
    pub fn alert(&self, subject: &str, rule: &str) -> String {
        format!(
            "{}/alerts/{}/{}",
            self.base,
            segment(subject),
            segment(rule)
        )
    }

    /// Silences as they start and end (not retained: a record, not a state).
    pub fn silences(&self) -> String {
        format!("{}/silences", self.base)
    }

    /// Where nurses' apps publish acknowledgements, each on the level of
    /// its own broker account: `{base}/commands/ack/{account}`. This is the
    /// prefix, ending in `/`.
    pub fn ack_commands(&self) -> String {
        format!("{}/commands/ack/", self.base)
    }
}

/// Ids are validated by the config loader; rule ids and anything else that
/// reaches a topic still must not carry MQTT's separators or wildcards.
pub(crate) fn segment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if matches!(c, '/' | '+' | '#') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// QoS 1 everywhere: at-least-once, confirmed by PUBACK.
pub const QOS: QoS = QoS::AtLeastOnce;

/// Turns Nagle's algorithm off (`TCP_NODELAY`) for the event loop's
/// connections: a small alert published right after a large telemetry
/// message goes out at once instead of waiting up to a delayed-ACK timeout
/// (~40 ms on Linux) for the broker's acknowledgement of the large one.
pub fn without_nagle(eventloop: &mut rumqttc::EventLoop) {
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_namespaced_and_safe() {
        let t = Topics::new("wardgate/", "st-x", "ward-7", "gw-1");
        assert_eq!(t.telemetry(), "wardgate/st-x/ward-7/gw-1/telemetry");
        assert_eq!(
            t.alert("bed-1", "a/b+#"),
            "wardgate/st-x/ward-7/gw-1/alerts/bed-1/a_b__"
        );
        assert_eq!(
            t.device_status("ox-1"),
            "wardgate/st-x/ward-7/gw-1/devices/ox-1/status"
        );
        assert_eq!(
            Topics::telemetry_filter("wardgate"),
            "wardgate/+/+/+/telemetry"
        );
    }
}
