//! `[[devices]] type = "modbus"`: what one Modbus device is, where it is
//! reached and what its registers mean. Serde types with defaults, and the
//! semantic checks serde cannot express.

use std::time::Duration;

use serde::Deserialize;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_duration, check_range};
use wardgate_model::{Metric, MetricRegistry};

use super::plan::{MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ, PlanLimits, Span};
use super::register::{ByteOrder, DataType, Decoding, Table};

/// One Modbus device: a TCP server (`address`) or a slave on a serial RTU
/// bus (`port`). Exactly one of the two is set.
#[derive(Debug, Clone, Deserialize)]
pub struct ModbusConfig {
    /// Modbus TCP: `host:port` of the device or gateway: an IP address
    /// (`"10.1.7.20:502"`, IPv6 in brackets) or a host name
    /// (`"room-7-sensor.ward.local:502"`), looked up at each connection
    /// attempt so a device that moves keeps being found.
    #[serde(default)]
    pub address: Option<String>,
    /// Modbus RTU: serial device path, e.g. `"/dev/ttyUSB0"`. Devices with the
    /// same `port` share one bus.
    #[serde(default)]
    pub port: Option<String>,
    #[serde(default = "default_baud_rate")]
    pub baud_rate: u32,
    #[serde(default)]
    pub parity: Parity,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Unit identifier (TCP) or slave address (RTU).
    #[serde(default = "default_unit_id", alias = "slave_id")]
    pub unit_id: u8,
    /// Time between the starts of two poll cycles.
    #[serde(with = "humantime_serde", default = "default_poll_interval")]
    pub poll_interval: Duration,
    /// The device's cycles start at a fixed offset into the interval, taken
    /// from a hash of its id in `[0, min(jitter, poll_interval))`, so devices
    /// are not all asked at once (`0s`: every device at the same instant).
    #[serde(with = "humantime_serde", default = "default_jitter")]
    pub jitter: Duration,
    /// How long one request may wait for its reply.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    /// Further attempts of a request that got no usable reply.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Failed poll cycles in a row before the device is reported offline.
    #[serde(default = "default_failures_before_unreachable")]
    pub failures_before_unreachable: u32,
    /// Shortest wait before polling an unreachable device again.
    #[serde(with = "humantime_serde", default = "default_backoff_min")]
    pub backoff_min: Duration,
    /// Longest wait (before jitter) between polls of an unreachable device.
    #[serde(with = "humantime_serde", default = "default_backoff_max")]
    pub backoff_max: Duration,
    /// How long a device may answer every request with a Modbus exception
    /// (reachable, but no reading) before it is reported as a technical
    /// condition (`modbus_exceptions` device alarm).
    #[serde(with = "humantime_serde", default = "default_exceptions_alarm_after")]
    pub exceptions_alarm_after: Duration,
    /// Unmapped addresses one request may read through to join two entries.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// Cap on registers per read, for devices below the protocol's 125.
    #[serde(default = "default_max_registers")]
    pub max_registers_per_read: u16,
    /// Cap on coils/discrete inputs per read, for devices below the protocol's 2000.
    #[serde(default = "default_max_bits")]
    pub max_bits_per_read: u16,
    /// The register map: one reading per entry per poll.
    pub registers: Vec<RegisterConfig>,
}

/// Serial parity. The Modbus serial line specification makes even parity the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    None,
    #[default]
    Even,
    Odd,
}

/// `[[devices.registers]]`: one value in the device's tables.
#[derive(Debug, Clone, Deserialize)]
pub struct RegisterConfig {
    pub table: Table,
    /// Protocol (0-based) address of the first register or bit.
    pub address: u16,
    #[serde(rename = "type")]
    pub data_type: DataType,
    #[serde(default)]
    pub order: ByteOrder,
    #[serde(default = "default_scale")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    /// For `bool` in a register table: the bit (0 = least significant).
    #[serde(default)]
    pub bit: Option<u8>,
    /// Metric name: built-in or declared in `[[metrics]]`.
    pub metric: String,
    /// UCUM unit the scaled value is in; when given it must be the metric's unit.
    #[serde(default)]
    pub unit: Option<String>,
}

fn default_baud_rate() -> u32 {
    9600
}
fn default_stop_bits() -> u8 {
    1
}
fn default_unit_id() -> u8 {
    1
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_jitter() -> Duration {
    crate::jitter::DEFAULT_JITTER
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_retries() -> u32 {
    1
}
fn default_failures_before_unreachable() -> u32 {
    3
}
fn default_backoff_min() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(60)
}
fn default_exceptions_alarm_after() -> Duration {
    Duration::from_secs(60)
}
fn default_max_gap() -> u16 {
    PlanLimits::default().max_gap
}
fn default_max_registers() -> u16 {
    MAX_REGISTERS_PER_READ
}
fn default_max_bits() -> u16 {
    MAX_BITS_PER_READ
}
fn default_scale() -> f64 {
    1.0
}

/// How a device is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link<'a> {
    Tcp(&'a str),
    Rtu(&'a str),
}

impl ModbusConfig {
    /// TCP or RTU; `None` for a config that failed validation (both or neither set).
    pub fn link(&self) -> Option<Link<'_>> {
        match (&self.address, &self.port) {
            (Some(a), None) => Some(Link::Tcp(a)),
            (None, Some(p)) => Some(Link::Rtu(p)),
            _ => None,
        }
    }

    /// The serial port of an RTU device: devices with the same bus key must
    /// be run together by [`super::run_bus`].
    pub fn bus_key(&self) -> Option<&str> {
        match self.link() {
            Some(Link::Rtu(p)) => Some(p),
            _ => None,
        }
    }

    pub fn plan_limits(&self) -> PlanLimits {
        PlanLimits {
            max_gap: self.max_gap,
            max_registers: self.max_registers_per_read,
            max_bits: self.max_bits_per_read,
        }
    }

    fn serial_settings(&self) -> (u32, Parity, u8) {
        (self.baud_rate, self.parity, self.stop_bits)
    }
}

impl RegisterConfig {
    pub fn span(&self) -> Span {
        Span {
            table: self.table,
            address: self.address,
            len: if self.table.is_bits() {
                1
            } else {
                self.data_type.words()
            },
        }
    }

    pub fn decoding(&self) -> Decoding {
        Decoding {
            data_type: self.data_type,
            order: self.order,
            bit: self.bit,
            scale: self.scale,
            offset: self.offset,
        }
    }

    fn validate(&self, metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut push = |key: &'static str, msg: String| {
            issues.push(ConfigIssue::new([PathSeg::from(key)], msg));
        };
        match metrics.resolve(&self.metric) {
            None => push(
                "metric",
                format!(
                    "unknown metric {:?}; allowed: the built-in metrics ({}) or a [[metrics]] declaration",
                    self.metric,
                    metrics.known_names().join(", ")
                ),
            ),
            Some(m) => {
                if let Some(unit) = &self.unit
                    && unit != m.unit()
                {
                    push(
                        "unit",
                        format!(
                            "metric {} is in {:?}, not {unit:?}; use scale/offset to convert and give {:?} or leave unit out",
                            m.name(),
                            m.unit(),
                            m.unit()
                        ),
                    );
                }
            }
        }
        if self.table.is_bits() && self.data_type != DataType::Bool {
            push(
                "type",
                format!(
                    "a {} holds one bit: type must be \"bool\", got {:?}",
                    self.table.as_str(),
                    self.data_type.as_str()
                ),
            );
        }
        if let Some(bit) = self.bit {
            if self.data_type != DataType::Bool || self.table.is_bits() {
                push(
                    "bit",
                    "bit is for type \"bool\" in a register table (input_register or holding_register)".into(),
                );
            } else if bit > 15 {
                push("bit", format!("bit must be between 0 and 15, got {bit}"));
            }
        }
        let end = u32::from(self.address) + u32::from(self.span().len);
        if end > 65_536 {
            push(
                "address",
                format!(
                    "a {} at {} runs past the last address 65535",
                    self.data_type.as_str(),
                    self.address
                ),
            );
        }
        if !self.scale.is_finite() || self.scale == 0.0 {
            push(
                "scale",
                format!("scale must be a finite non-zero number, got {}", self.scale),
            );
        }
        if !self.offset.is_finite() {
            push(
                "offset",
                format!("offset must be a finite number, got {}", self.offset),
            );
        }
        issues
    }

    /// The metric, once validation has passed.
    pub fn resolve_metric(&self, metrics: &MetricRegistry) -> Option<Metric> {
        metrics.resolve(&self.metric)
    }
}

/// Why `s` is not a `host:port` a connection can be made to: the port a
/// number 1 to 65535; the host an IPv4 address, an IPv6 address in
/// brackets, or a DNS name (labels of letters, digits and `-`, each 1 to 63
/// characters, 253 in all).
fn host_port_problem(s: &str) -> Option<String> {
    let usage = "address must be \"host:port\": an IP address (IPv6 in brackets) or a host name, and a port 1 to 65535, e.g. \"10.1.7.20:502\" or \"room-7-sensor.ward.local:502\"";
    let Some((host, port)) = s.rsplit_once(':') else {
        return Some(usage.to_owned());
    };
    if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
        return Some(usage.to_owned());
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .is_err()
            .then(|| usage.to_owned());
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    (host.len() > 253 || !name.split('.').all(label_ok)).then(|| usage.to_owned())
}

fn fmt_duration(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

impl Validate for ModbusConfig {
    fn validate(&self, metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        match (&self.address, &self.port) {
            (Some(_), Some(_)) => issues.push(ConfigIssue::new(
                [PathSeg::from("port")],
                "give either address (Modbus TCP) or port (Modbus RTU), not both",
            )),
            (None, None) => issues.push(ConfigIssue::new(
                Vec::<PathSeg>::new(),
                "missing address (Modbus TCP, \"ip:port\") or port (Modbus RTU, a serial device path)",
            )),
            (None, Some(p)) if p.is_empty() => issues.push(ConfigIssue::new(
                [PathSeg::from("port")],
                "port must name a serial device, e.g. \"/dev/ttyUSB0\"",
            )),
            (Some(a), None) => {
                if let Some(problem) = host_port_problem(a) {
                    issues.push(ConfigIssue::new([PathSeg::from("address")], problem));
                }
            }
            _ => {}
        }
        if self.port.is_some() {
            // 0 is broadcast (no reply), 248..=255 are reserved on a serial line.
            check_range(&mut issues, "unit_id", self.unit_id, 1..=247);
            check_range(&mut issues, "baud_rate", self.baud_rate, 300..=921_600);
            check_range(&mut issues, "stop_bits", self.stop_bits, 1..=2);
        }
        check_duration(
            &mut issues,
            "poll_interval",
            self.poll_interval,
            Duration::from_millis(10)..=Duration::from_secs(3600),
        );
        check_duration(
            &mut issues,
            "jitter",
            self.jitter,
            Duration::ZERO..=Duration::from_secs(3600),
        );
        check_duration(
            &mut issues,
            "timeout",
            self.timeout,
            Duration::from_millis(1)..=Duration::from_secs(60),
        );
        check_range(&mut issues, "retries", self.retries, 0..=10);
        check_range(
            &mut issues,
            "failures_before_unreachable",
            self.failures_before_unreachable,
            1..=1000,
        );
        check_duration(
            &mut issues,
            "exceptions_alarm_after",
            self.exceptions_alarm_after,
            Duration::from_secs(1)..=Duration::from_secs(24 * 3600),
        );
        check_duration(
            &mut issues,
            "backoff_min",
            self.backoff_min,
            Duration::from_millis(1)..=Duration::from_secs(3600),
        );
        if self.backoff_max < self.backoff_min || self.backoff_max > Duration::from_secs(3600) {
            issues.push(ConfigIssue::new(
                [PathSeg::from("backoff_max")],
                format!(
                    "backoff_max must be between backoff_min ({}) and 1h, got {}",
                    fmt_duration(self.backoff_min),
                    fmt_duration(self.backoff_max)
                ),
            ));
        }
        check_range(
            &mut issues,
            "max_registers_per_read",
            self.max_registers_per_read,
            4..=MAX_REGISTERS_PER_READ,
        );
        check_range(
            &mut issues,
            "max_bits_per_read",
            self.max_bits_per_read,
            1..=MAX_BITS_PER_READ,
        );
        if self.registers.is_empty() {
            issues.push(ConfigIssue::new(
                [PathSeg::from("registers")],
                "at least one register is needed",
            ));
        }
        for (i, r) in self.registers.iter().enumerate() {
            let within = [PathSeg::from("registers"), PathSeg::from(i)];
            issues.extend(
                r.validate(metrics)
                    .into_iter()
                    .map(|x| x.within(within.clone())),
            );
        }
        issues
    }
}

/// Devices sharing one serial port must agree on its settings: one message
/// per device id whose baud rate, parity or stop bits differ from the first
/// device's, or whose slave address is already taken on that bus. The gateway
/// calls this for each group of RTU devices with the same [`ModbusConfig::bus_key`].
pub fn validate_bus<'a>(
    devices: impl IntoIterator<Item = (&'a str, &'a ModbusConfig)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut first: Option<(&str, &ModbusConfig)> = None;
    let mut ids = std::collections::BTreeMap::new();
    for (id, c) in devices {
        if let Some((first_id, f)) = first {
            if f.serial_settings() != c.serial_settings() {
                problems.push(format!(
                    "device {id} on {} uses {} baud, {:?} parity, {} stop bits, but {first_id} on the same port uses {} baud, {:?} parity, {} stop bits",
                    c.port.as_deref().unwrap_or_default(),
                    c.baud_rate, c.parity, c.stop_bits, f.baud_rate, f.parity, f.stop_bits
                ));
            }
        } else {
            first = Some((id, c));
        }
        if let Some(other) = ids.insert(c.unit_id, id) {
            problems.push(format!(
                "device {id} uses slave address {} on {}, already used by {other}",
                c.unit_id,
                c.port.as_deref().unwrap_or_default()
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_addresses_are_ip_addresses_or_host_names_with_a_port() {
        for ok in [
            "10.1.7.20:502",
            "[fe80::1]:502",
            "localhost:1502",
            "room-7-sensor.ward.local:502",
            "sensor7.:502",
        ] {
            assert_eq!(host_port_problem(ok), None, "{ok}");
        }
        for bad in [
            "10.1.7.20",
            "sensor:0",
            "sensor:65536",
            ":502",
            "fe80::1:502",
            "[fe80::zz]:502",
            "-sensor:502",
            "room_7:502",
            "a..b:502",
            "sensor 7:502",
        ] {
            assert!(host_port_problem(bad).is_some(), "{bad}");
        }
    }

    fn parse(s: &str) -> ModbusConfig {
        toml::from_str(s).unwrap()
    }

    fn paths(issues: &[ConfigIssue]) -> Vec<String> {
        issues.iter().map(ConfigIssue::dotted_path).collect()
    }

    #[test]
    fn a_minimal_tcp_device_takes_the_defaults() {
        let c = parse(
            r#"
            address = "127.0.0.1:502"
            [[registers]]
            table = "input_register"
            address = 0
            type = "i16"
            scale = 0.1
            metric = "room_temp"
            unit = "Cel"
            "#,
        );
        assert!(c.validate(&MetricRegistry::default()).is_empty());
        assert_eq!(c.link(), Some(Link::Tcp("127.0.0.1:502")));
        assert_eq!(
            (c.unit_id, c.retries, c.failures_before_unreachable),
            (1, 1, 3)
        );
        assert_eq!(
            (c.poll_interval, c.timeout),
            (Duration::from_secs(5), Duration::from_secs(1))
        );
        assert_eq!(c.registers[0].order, ByteOrder::Abcd);
        assert_eq!(c.parity, Parity::Even);
    }

    #[test]
    fn validation_reports_every_problem_with_its_path() {
        let c = parse(
            r#"
            port = "/dev/ttyUSB0"
            slave_id = 0
            stop_bits = 3
            timeout = "0s"
            failures_before_unreachable = 0
            [[registers]]
            table = "coil"
            address = 0
            type = "u16"
            metric = "fridge_tmp"
            [[registers]]
            table = "holding_register"
            address = 65535
            type = "f32"
            metric = "fridge_temp"
            unit = "[degF]"
            bit = 3
            scale = 0
            "#,
        );
        let issues = c.validate(&MetricRegistry::default());
        assert_eq!(
            paths(&issues),
            [
                "unit_id",
                "stop_bits",
                "timeout",
                "failures_before_unreachable",
                "registers.[0].metric",
                "registers.[0].type",
                "registers.[1].unit",
                "registers.[1].bit",
                "registers.[1].address",
                "registers.[1].scale",
            ],
            "{issues:#?}"
        );
    }

    #[test]
    fn custom_metrics_resolve_through_the_registry() {
        let c = parse(
            r#"
            address = "127.0.0.1:502"
            [[registers]]
            table = "holding_register"
            address = 0
            type = "u32"
            metric = "bed_load"
            unit = "kg"
            "#,
        );
        assert_eq!(
            paths(&c.validate(&MetricRegistry::default())),
            ["registers.[0].metric"]
        );
        let mut m = MetricRegistry::default();
        m.declare(Metric::custom("bed_load", "kg", None)).unwrap();
        assert!(c.validate(&m).is_empty());
    }

    #[test]
    fn both_or_neither_link_is_an_error() {
        let base = "[[registers]]\ntable = \"coil\"\naddress = 0\ntype = \"bool\"\nmetric = \"humidity\"\n";
        let neither = parse(base);
        assert_eq!(paths(&neither.validate(&MetricRegistry::default())), [""]);
        let both = parse(&format!(
            "address = \"127.0.0.1:1\"\nport = \"/dev/x\"\n{base}"
        ));
        assert_eq!(paths(&both.validate(&MetricRegistry::default())), ["port"]);
    }

    #[test]
    fn devices_on_one_bus_must_agree() {
        let dev = |unit: u8, baud: u32| {
            parse(&format!(
                "port = \"/dev/ttyS1\"\nunit_id = {unit}\nbaud_rate = {baud}\nregisters = []\n"
            ))
        };
        let (a, b, c) = (dev(1, 9600), dev(2, 19200), dev(1, 9600));
        let problems = validate_bus([("a", &a), ("b", &b), ("c", &c)]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("device b on /dev/ttyS1 uses 19200 baud"));
        assert!(problems[1].starts_with("device c uses slave address 1"));
    }
}
