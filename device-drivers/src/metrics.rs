//! The drivers' figures for `/metrics` (docs/metrics.md): frames, decode
//! errors by kind, timeouts and reconnects per device. The gateway registers
//! one [`DriverMetrics`] and gives each driver its device's [`DeviceMetrics`]
//! through the `DriverContext`; only the async shells count — the sans-IO
//! decoders and pollers keep their own plain counters, which the shells
//! publish as increments ([`DeviceMetrics::publish`]).
//!
//! Label cardinality is bounded by the configuration: one series per
//! configured device (and per decode-error kind, a fixed vocabulary).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// A label value from configuration or input, escaped as the text format
/// requires (backslash, double quote, newline); prometheus-client writes
/// label values as they are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelValue(pub Arc<str>);

impl From<&str> for LabelValue {
    fn from(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

impl From<Arc<str>> for LabelValue {
    fn from(s: Arc<str>) -> Self {
        Self(s)
    }
}

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// `{device}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeviceLabels {
    pub device: LabelValue,
}

/// `{device, kind}`: what was wrong with the bytes (`crc`, `malformed`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DecodeErrorLabels {
    pub device: LabelValue,
    pub kind: &'static str,
}

/// The drivers' metric families, registered once.
#[derive(Debug, Clone, Default)]
pub struct DriverMetrics {
    frames: Family<DeviceLabels, Counter>,
    decode_errors: Family<DecodeErrorLabels, Counter>,
    timeouts: Family<DeviceLabels, Counter>,
    reconnects: Family<DeviceLabels, Counter>,
}

impl DriverMetrics {
    /// The families, registered in `registry` (which carries the `wardgate`
    /// prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "device_decode_errors",
            "Input from the device that could not be decoded, by kind (pump: crc, malformed, truncated, overlong, invalid_reply; Modbus: register, out_of_sync; BLE: payload)",
            m.decode_errors.clone(),
        );
        for (name, help, family) in [
            (
                "device_frames",
                "Frames, replies or notifications received from the device (decodable or not)",
                &m.frames,
            ),
            (
                "device_timeouts",
                "Requests to the device that got no reply in time",
                &m.timeouts,
            ),
            (
                "device_reconnects",
                "Connection attempts after the device's link was lost or could not be made",
                &m.reconnects,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        m
    }

    /// The counters of device `id`; its series appear at once, at zero.
    pub fn device(&self, id: &str) -> DeviceMetrics {
        let labels = DeviceLabels {
            device: LabelValue::from(id),
        };
        DeviceMetrics {
            frames: self.frames.get_or_create_owned(&labels),
            timeouts: self.timeouts.get_or_create_owned(&labels),
            reconnects: self.reconnects.get_or_create_owned(&labels),
            decode_errors: self.decode_errors.clone(),
            device: labels.device,
        }
    }
}

/// One device's counters; cheap to clone. The default counts into nothing
/// registered (drivers run without a gateway in tests and tools).
#[derive(Debug, Clone)]
pub struct DeviceMetrics {
    frames: Counter,
    timeouts: Counter,
    reconnects: Counter,
    decode_errors: Family<DecodeErrorLabels, Counter>,
    device: LabelValue,
}

impl Default for DeviceMetrics {
    fn default() -> Self {
        DriverMetrics::default().device("")
    }
}

/// A sans-IO part's cumulative figures, as [`DeviceMetrics::publish`] takes
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceTotals {
    pub frames: u64,
    pub timeouts: u64,
    pub decode_errors: BTreeMap<&'static str, u64>,
}

impl DeviceMetrics {
    pub fn frame(&self) {
        self.frames.inc();
    }

    pub fn reconnect(&self) {
        self.reconnects.inc();
    }

    pub fn decode_error(&self, kind: &'static str) {
        self.decode_error_counter(kind).inc();
    }

    fn decode_error_counter(&self, kind: &'static str) -> Counter {
        self.decode_errors.get_or_create_owned(&DecodeErrorLabels {
            device: self.device.clone(),
            kind,
        })
    }

    /// Adds what grew from `last` to `now` and remembers `now`. Each driver
    /// run starts from zero totals with a fresh sans-IO part, so a restarted
    /// driver never counts anything twice.
    pub fn publish(&self, last: &mut DeviceTotals, now: DeviceTotals) {
        if *last == now {
            return;
        }
        self.frames.inc_by(now.frames.saturating_sub(last.frames));
        self.timeouts
            .inc_by(now.timeouts.saturating_sub(last.timeouts));
        for (&kind, &n) in &now.decode_errors {
            let before = last.decode_errors.get(kind).copied().unwrap_or(0);
            if n > before {
                self.decode_error_counter(kind).inc_by(n - before);
            }
        }
        *last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_totals_become_increments_and_labels_are_escaped() {
        let mut registry = Registry::with_prefix("wardgate");
        let metrics = DriverMetrics::register(&mut registry);
        let dev = metrics.device("bed \"3\"\\a");
        let mut last = DeviceTotals::default();
        let totals = |frames, crc| DeviceTotals {
            frames,
            timeouts: 1,
            decode_errors: BTreeMap::from([("crc", crc)]),
        };
        dev.publish(&mut last, totals(5, 1));
        dev.publish(&mut last, totals(7, 3));
        dev.reconnect();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        let device = r#"device="bed \"3\"\\a""#;
        for line in [
            format!("wardgate_device_frames_total{{{device}}} 7"),
            format!("wardgate_device_timeouts_total{{{device}}} 1"),
            format!("wardgate_device_reconnects_total{{{device}}} 1"),
            format!("wardgate_device_decode_errors_total{{{device},kind=\"crc\"}} 3"),
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
    }
}
