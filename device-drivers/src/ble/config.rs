//! `[[devices]] type = "ble"`: which device (by address, or by service when
//! said so), which characteristics, timeouts and backoff, and the checks a
//! config must pass before the driver starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wardgate_model::MetricRegistry;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_duration, check_range};

use super::Characteristic;
use super::transport::{Address, ScanFilter, parse_uuid};

/// `[[devices]] type = "ble"`.
#[derive(Debug, Clone, Deserialize)]
pub struct BleConfig {
    /// Address allow-list (`AA:BB:CC:DD:EE:FF`). With none listed, any device
    /// advertising one of `services` is accepted.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Service UUIDs to scan for (`180d`, `0x1810`, or 128-bit).
    #[serde(default)]
    pub services: Vec<String>,
    /// Accept a device found by its advertised `services` alone, without an
    /// address: any nearby device advertising them becomes this subject's.
    /// Off unless said: a device is bound by its address.
    #[serde(default)]
    pub allow_any_device: bool,
    /// Characteristics to subscribe to; empty = every measurement
    /// characteristic the device offers.
    #[serde(default)]
    pub characteristics: Vec<String>,
    /// How long one scan + connect may take before it counts as failed.
    #[serde(with = "humantime_serde", default = "default_scan_timeout")]
    pub scan_timeout: Duration,
    /// First reconnect delay; doubles per failure up to `backoff_max`.
    #[serde(with = "humantime_serde", default = "default_backoff_initial")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde", default = "default_backoff_max")]
    pub backoff_max: Duration,
    /// Where glucose sequence numbers persist; unset = memory only (records
    /// stored on the meter are fetched again after a gateway restart).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// A battery level below this percentage raises `battery_low`.
    #[serde(default = "default_battery_low")]
    pub battery_low_percent: u8,
    /// Talk to `wardgate-sim ble` on this socket instead of the radio.
    #[serde(default)]
    pub simulator: Option<SocketAddr>,
}

fn default_scan_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_backoff_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(60)
}
fn default_battery_low() -> u8 {
    20
}

impl BleConfig {
    /// A config for `addresses` with every default.
    pub fn for_addresses(addresses: &[&str]) -> Self {
        Self {
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            services: Vec::new(),
            allow_any_device: false,
            characteristics: Vec::new(),
            scan_timeout: default_scan_timeout(),
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
            state_dir: None,
            battery_low_percent: default_battery_low(),
            simulator: None,
        }
    }

    /// The scan filter (entries that do not parse were reported by `validate`).
    pub fn scan_filter(&self) -> ScanFilter {
        ScanFilter {
            addresses: self
                .addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            services: self
                .services
                .iter()
                .filter_map(|s| parse_uuid(s).ok())
                .collect(),
        }
    }

    /// The characteristics to subscribe to when offered.
    pub fn wanted(&self) -> Vec<Characteristic> {
        if self.characteristics.is_empty() {
            Characteristic::ALL
                .into_iter()
                .filter(|c| *c != Characteristic::RecordAccessControlPoint)
                .collect()
        } else {
            self.characteristics
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect()
        }
    }
}

impl Validate for BleConfig {
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let at = |key: &'static str, i: usize, message: String| {
            ConfigIssue::new([PathSeg::from(key), PathSeg::from(i)], message)
        };
        for (i, a) in self.addresses.iter().enumerate() {
            if let Err(e) = a.parse::<Address>() {
                issues.push(at("addresses", i, e));
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            if let Err(e) = parse_uuid(s) {
                issues.push(at("services", i, e));
            }
        }
        for (i, c) in self.characteristics.iter().enumerate() {
            match c.parse::<Characteristic>() {
                Err(e) => issues.push(at("characteristics", i, e.to_string())),
                Ok(Characteristic::RecordAccessControlPoint) => issues.push(at(
                    "characteristics",
                    i,
                    "2a52 (RACP) is used automatically with glucose; list 2a18 instead".into(),
                )),
                Ok(_) => {}
            }
        }
        if self.addresses.is_empty() && !self.allow_any_device {
            issues.push(ConfigIssue::new(
                [PathSeg::from("addresses")],
                "bind the device by its address: give `addresses`; a device chosen by its advertised services alone could be any nearby device advertising them (set `allow_any_device = true` only where that is acceptable, with `services` to scan for)",
            ));
        }
        if self.addresses.is_empty() && self.allow_any_device && self.services.is_empty() {
            issues.push(ConfigIssue::new(
                [PathSeg::from("services")],
                "with `allow_any_device = true` and no `addresses`, give `services` to scan for",
            ));
        }
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        check_duration(
            &mut issues,
            "scan_timeout",
            self.scan_timeout,
            s(1)..=s(600),
        );
        check_duration(
            &mut issues,
            "backoff_initial",
            self.backoff_initial,
            ms(10)..=s(60),
        );
        check_duration(
            &mut issues,
            "backoff_max",
            self.backoff_max,
            ms(10)..=s(3600),
        );
        if self.backoff_max < self.backoff_initial {
            issues.push(ConfigIssue::new(
                [PathSeg::from("backoff_max")],
                "backoff_max must not be shorter than backoff_initial",
            ));
        }
        check_range(
            &mut issues,
            "battery_low_percent",
            self.battery_low_percent,
            1..=100,
        );
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_reports_every_problem() {
        let mut cfg = BleConfig::for_addresses(&["AA:BB"]);
        cfg.services = vec!["18".into()];
        cfg.characteristics = vec!["2a52".into(), "nope".into()];
        cfg.backoff_initial = Duration::from_secs(120);
        cfg.backoff_max = Duration::from_secs(30);
        cfg.battery_low_percent = 0;
        let issues = cfg.validate(&MetricRegistry::default());
        let paths: Vec<String> = issues.iter().map(ConfigIssue::dotted_path).collect();
        assert_eq!(
            paths,
            [
                "addresses.[0]",
                "services.[0]",
                "characteristics.[0]",
                "characteristics.[1]",
                "backoff_initial",
                "backoff_max",
                "battery_low_percent"
            ]
        );
        let mut empty = BleConfig::for_addresses(&[]);
        empty.scan_timeout = Duration::from_millis(10);
        let issues = empty.validate(&MetricRegistry::default());
        assert!(
            issues[0]
                .message
                .starts_with("bind the device by its address")
        );
        assert_eq!(
            issues[1].message,
            "scan_timeout must be between 1s and 10m, got 10ms"
        );
        // Selected by service alone: only when said, and with services.
        let mut by_service = BleConfig::for_addresses(&[]);
        by_service.services = vec!["1810".into()];
        let issues = by_service.validate(&MetricRegistry::default());
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].dotted_path(), "addresses");
        by_service.allow_any_device = true;
        assert!(by_service.validate(&MetricRegistry::default()).is_empty());
        by_service.services.clear();
        let issues = by_service.validate(&MetricRegistry::default());
        assert_eq!(issues[0].dotted_path(), "services");
        assert!(
            BleConfig::for_addresses(&["aa:bb:cc:dd:ee:ff"])
                .validate(&MetricRegistry::default())
                .is_empty()
        );
    }

    #[test]
    fn config_deserialises_with_defaults() {
        let cfg: BleConfig = toml::from_str(
            "addresses = [\"AA:BB:CC:DD:EE:FF\"]\nbackoff_max = \"2m\"\nsimulator = \"127.0.0.1:7001\"\n",
        )
        .unwrap();
        assert_eq!(cfg.backoff_max, Duration::from_secs(120));
        assert_eq!(cfg.scan_timeout, Duration::from_secs(30));
        assert_eq!(cfg.simulator, Some("127.0.0.1:7001".parse().unwrap()));
        assert_eq!(cfg.wanted().len(), 10);
    }
}
