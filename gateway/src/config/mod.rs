//! Configuration: the TOML file a hospital engineer writes, loaded and checked
//! in one pass that reports every problem it finds, each with file, line and
//! column, what is wrong and what is allowed.
//!
//! Loading never starts anything. Sections are deserialised one table at a
//! time so that one bad device does not hide the problems of the next; then
//! cross-references (subjects ↔ devices), duplicate ids and each section's own
//! [`Validate`] checks run over everything that parsed.

mod introspect;
mod secret;
pub(crate) mod source;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use wardgate_drivers::ble::driver::BleConfig;
use wardgate_drivers::modbus::{ModbusConfig, validate_bus};
use wardgate_drivers::pump::PumpConfig;
use wardgate_drivers::synthetic::SyntheticConfig;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate};
use wardgate_model::{
    DeviceId, DeviceKind, DeviceRef, Metric, MetricRegistry, Subject, SubjectId, SubjectKind,
    SubjectProfile,
};
use wardgate_rules::{RuleSet, RuleSource, RulesConfig};

pub use secret::{Secret, SecretError, SecretSource};
pub use source::Position;

use crate::http::HttpConfig;
use crate::sinks::influxdb::InfluxDbConfig;
use crate::sinks::jsonl::JsonlConfig;
use crate::sinks::mqtt::MqttSinkConfig;
use source::{Source, get, span_of};

type Spanned<T> = toml::Spanned<T>;

/// A loaded, valid configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub gateway: GatewayConfig,
    pub metrics: MetricRegistry,
    pub subjects: Vec<Subject>,
    pub devices: Vec<DeviceConfig>,
    pub sinks: Vec<SinkConfig>,
    pub spool: SpoolConfig,
    /// `[rules]`: which packs and files, engine options, parameter overrides.
    pub rules: RulesConfig,
    /// The compiled rules of `rules` (built-in packs and extra files).
    pub rule_set: RuleSet,
    /// `[http]`: the API and nurse-station page; absent = no HTTP server.
    pub http: Option<HttpConfig>,
    /// `[[staff]]`: who has which subjects' alerts (empty: nobody is named).
    pub staff: Vec<crate::roster::StaffMember>,
}

impl Config {
    /// The rules engine this configuration runs: its rules and options, and
    /// with `[[staff]]` escalation ending where the chain of people does.
    pub fn engine(&self) -> Result<wardgate_rules::Engine, wardgate_rules::EngineError> {
        let mut engine = self.rules.engine(self.rule_set.clone())?;
        if !self.staff.is_empty() {
            // Assigned nurse, charge nurse, everyone: a further step would
            // reach no one new.
            engine.set_max_escalations(Some(crate::roster::CHAIN_STEPS));
        }
        Ok(engine)
    }
}

/// `[spool]`: where accepted readings and alerts wait until every sink's peer
/// has confirmed them.
#[derive(Debug, Clone, Deserialize)]
pub struct SpoolConfig {
    /// The spool file. Without it the spool lives in a temporary directory
    /// and does not survive a restart (fine for a demo, not for a ward).
    pub path: Option<PathBuf>,
    /// Telemetry kept at most, in bytes; the oldest is evicted first (alerts
    /// are never evicted and not counted).
    #[serde(default = "default_spool_bytes")]
    pub max_bytes: u64,
    /// Telemetry older than this is evicted.
    #[serde(with = "humantime_serde", default = "default_spool_age")]
    pub max_age: std::time::Duration,
    /// Telemetry is committed at most this long after it arrived (group
    /// commit: one fsync for everything that arrived meanwhile). Alert
    /// transitions never wait: they are committed at once, on their own.
    #[serde(with = "humantime_serde", default = "default_flush_interval")]
    pub flush_interval: std::time::Duration,
    /// A sink whose oldest undelivered record has waited this long raises
    /// the `sink_stalled` alarm (and, when required, makes `/readyz` say so).
    #[serde(with = "humantime_serde", default = "default_stalled_after")]
    pub stalled_after: std::time::Duration,
}

fn default_stalled_after() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

fn default_flush_interval() -> std::time::Duration {
    std::time::Duration::from_millis(100)
}

fn default_spool_bytes() -> u64 {
    256 * 1024 * 1024
}

fn default_spool_age() -> std::time::Duration {
    std::time::Duration::from_secs(7 * 24 * 3600)
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            path: None,
            max_bytes: default_spool_bytes(),
            max_age: default_spool_age(),
            flush_interval: default_flush_interval(),
            stalled_after: default_stalled_after(),
        }
    }
}

/// `[gateway]`: who this gateway is; these name its data everywhere downstream.
#[derive(Debug, Clone, Deserialize)]
pub struct GatewayConfig {
    /// Hospital or care organisation (`st-example`).
    pub site: String,
    /// Ward or home-hub location (`ward-7`).
    pub ward: String,
    /// This gateway (`gw-ward-7`).
    pub id: String,
    /// How far a device clock may run ahead of this gateway's before its
    /// time stamps are replaced by the gateway's (and counted).
    #[serde(with = "humantime_serde", default = "default_clock_tolerance")]
    pub clock_tolerance: std::time::Duration,
}

fn default_clock_tolerance() -> std::time::Duration {
    wardgate_drivers::DEFAULT_CLOCK_TOLERANCE
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(120))
}

/// One `[[devices]]` table.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub device: DeviceRef,
    /// The subject whose `devices` list names this device.
    pub subject: SubjectId,
    pub driver: DriverConfig,
}

/// The driver-specific part of a device table, chosen by its `type`.
#[derive(Debug, Clone)]
pub enum DriverConfig {
    Synthetic(SyntheticConfig),
    Pump(PumpConfig),
    Modbus(Box<ModbusConfig>),
    Ble(Box<BleConfig>),
}

impl DriverConfig {
    const TYPES: &'static [&'static str] = &["synthetic", "pump", "modbus", "ble"];

    fn kind(&self) -> DeviceKind {
        match self {
            DriverConfig::Synthetic(_) => DeviceKind::Synthetic,
            DriverConfig::Pump(_) => DeviceKind::Pump,
            DriverConfig::Modbus(_) => DeviceKind::Modbus,
            DriverConfig::Ble(_) => DeviceKind::Ble,
        }
    }
}

/// One `[[sinks]]` table.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Unique name (defaults to the type); names the sink in logs and metrics.
    pub name: String,
    /// Whether the gateway can do its job without it: a required sink that
    /// stalls makes `/readyz` say "not ready" (default: required).
    pub required: bool,
    pub kind: SinkKind,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Jsonl(JsonlConfig),
    Mqtt(Box<MqttSinkConfig>),
    InfluxDb(Box<InfluxDbConfig>),
}

impl SinkKind {
    const TYPES: &'static [&'static str] = &["jsonl", "mqtt", "influxdb"];
}

#[derive(Debug, Deserialize)]
struct MetricDecl {
    name: String,
    unit: String,
    display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SubjectDecl {
    id: String,
    kind: SubjectKind,
    name: Option<String>,
    #[serde(default)]
    profile: SubjectProfile,
    #[serde(default)]
    devices: Vec<String>,
}

const SECTIONS: &[&str] = &[
    "gateway", "metrics", "subjects", "devices", "sinks", "spool", "rules", "http", "staff",
];

/// `[[staff]]`: `{ id = "ada", name = "Nurse Ada", role = "nurse", subjects = ["bed-1"] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffDecl {
    id: String,
    name: String,
    role: crate::roster::StaffRole,
    #[serde(default)]
    subjects: Vec<String>,
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub position: Position,
    pub message: String,
    /// The offending line, for a caret display.
    pub line_text: String,
}

/// Every problem found in one file; `Display` prints one per line as
/// `file:line:column: error: message`, each followed by the line and a caret.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(
                f,
                "{}:{}:{}: error: {}",
                self.file.display(),
                e.position.line,
                e.position.column,
                e.message
            )?;
            writeln!(f, "    | {}", e.line_text)?;
            writeln!(
                f,
                "    | {}^",
                " ".repeat(e.position.column.saturating_sub(1))
            )?;
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

/// Why a configuration file (the gateway's or the bridge's, `E`) could not
/// be loaded: it could not be read at all, or it was read and is invalid.
#[derive(Debug, thiserror::Error)]
pub enum LoadError<E: std::error::Error + 'static> {
    /// One line with the path and the operating system's reason: there is no
    /// line or column to point at.
    #[error("{}: cannot read the configuration file: {reason}", path.display())]
    Unreadable {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error(transparent)]
    Invalid(E),
}

/// Reads a configuration file whole, or says why it cannot.
pub fn read<E: std::error::Error>(path: &Path) -> Result<String, LoadError<E>> {
    std::fs::read_to_string(path).map_err(|reason| LoadError::Unreadable {
        path: path.to_owned(),
        reason,
    })
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Config, LoadError<ConfigErrors>> {
    parse(path, &read(path)?).map_err(LoadError::Invalid)
}

/// Checks configuration text; `file` names it in errors.
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let source = Source { text };
    let (root, syntax) = DeTable::parse_recoverable(text);
    let mut loader = Loader {
        source: Source { text },
        errors: Vec::new(),
        root: Spanned::new(root.span(), DeValue::Table(root.into_inner())),
    };
    for e in syntax {
        loader.error(e.span().unwrap_or(0..0), e.message().trim_end().to_owned());
    }
    let config = if loader.errors.is_empty() {
        loader.load(file)
    } else {
        None
    };
    match config {
        Some(config) if loader.errors.is_empty() => Ok(config),
        _ => {
            let mut errors: Vec<(Range<usize>, String)> = loader.errors;
            errors.sort_by_key(|(span, _)| span.start);
            errors.dedup();
            Err(ConfigErrors {
                file: file.to_owned(),
                errors: errors
                    .into_iter()
                    .map(|(span, message)| ConfigError {
                        position: source.position(span.start),
                        line_text: source.line_text(span.start).to_owned(),
                        message,
                    })
                    .collect(),
            })
        }
    }
}

struct Loader<'i> {
    source: Source<'i>,
    errors: Vec<(Range<usize>, String)>,
    root: Spanned<DeValue<'i>>,
}

impl<'i> Loader<'i> {
    fn error(&mut self, span: Range<usize>, message: String) {
        self.errors.push((span, message));
    }

    fn error_at(&mut self, path: &[PathSeg], message: String) {
        let span = span_of(&self.root, path);
        self.error(span, message);
    }

    fn issues(&mut self, prefix: &[PathSeg], issues: Vec<ConfigIssue>) {
        for issue in issues {
            let issue = issue.within(prefix.iter().cloned());
            self.error_at(&issue.path, issue.message);
        }
    }

    /// Deserialises one value, reporting a type error and every unknown key.
    fn de<T: Deserialize<'i>>(
        &mut self,
        value: Spanned<DeValue<'i>>,
        path: &[PathSeg],
        what: &str,
    ) -> Option<T> {
        let element_span = value.span();
        let mut unknown = Vec::new();
        let result = serde_ignored::deserialize(ValueDeserializer::from(value), |p| {
            unknown.push(ignored_path(&p));
        });
        for rel in unknown {
            let key = rel.last().map(ToString::to_string).unwrap_or_default();
            let mut full = path.to_vec();
            let depth = rel.len();
            full.extend(rel);
            let allowed = introspect::field_names::<T>();
            let message = if depth == 1 && !allowed.is_empty() {
                format!(
                    "unknown key `{key}` in {what}; allowed keys: {}",
                    allowed.join(", ")
                )
            } else {
                format!("unknown key `{key}` in {what}")
            };
            self.error_at(&full, message);
        }
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().unwrap_or(element_span);
                self.error(span, format!("{} (in {what})", e.message().trim_end()));
                None
            }
        }
    }

    fn root_table(&self) -> &DeTable<'i> {
        match self.root.get_ref() {
            DeValue::Table(t) => t,
            _ => unreachable!("the document root is always a table"),
        }
    }

    /// The elements of an array-of-tables section (`[[devices]]`), or an error
    /// when the section has another shape.
    fn array_section(&mut self, name: &'static str) -> Vec<Spanned<DeValue<'i>>> {
        let found = get(self.root_table(), name).map(|(s, v)| (s, v.clone()));
        match found {
            None => Vec::new(),
            Some((_, v)) => match v.into_inner() {
                DeValue::Array(a) => a.iter().cloned().collect(),
                _ => {
                    self.error_at(
                        &[PathSeg::from(name)],
                        format!("`{name}` must be an array of tables, written [[{name}]]"),
                    );
                    Vec::new()
                }
            },
        }
    }

    fn load(&mut self, file: &Path) -> Option<Config> {
        let unknown: Vec<(Range<usize>, String)> = self
            .root_table()
            .iter()
            .filter(|(k, _)| !SECTIONS.contains(&k.get_ref().as_ref()))
            .map(|(k, _)| (k.span(), k.get_ref().to_string()))
            .collect();
        for (span, key) in unknown {
            self.error(
                span,
                format!(
                    "unknown section `{key}`; allowed sections: {}",
                    SECTIONS.join(", ")
                ),
            );
        }

        let gateway = self.gateway();
        let metrics = self.metrics();
        let device_tables = self.array_section("devices");
        // Ids of every device table, even one that fails to parse, so that a
        // broken device is reported once and not again as "unknown" in subjects.
        let device_ids: Vec<String> = device_tables
            .iter()
            .filter_map(|v| {
                v.get_ref()
                    .as_table()?
                    .get("id")?
                    .get_ref()
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        let devices: Vec<Option<(Spanned<String>, DriverConfig)>> = device_tables
            .into_iter()
            .enumerate()
            .map(|(i, v)| self.device(i, v, &metrics))
            .collect();
        self.rtu_buses(&devices);
        let subjects = self.subjects(&devices, &device_ids);
        let all_subjects_parsed = subjects.iter().all(Option::is_some);
        let sinks = self.sinks();
        let spool = self.spool();
        let http = self.http();
        let rules = self.rules(file, &metrics, &subjects);
        let staff = self.staff(&subjects);

        // Bind each device to the one subject that lists it.
        let mut owner: HashMap<&str, &SubjectId> = HashMap::new();
        for s in subjects.iter().flatten() {
            for d in &s.devices {
                owner.entry(d.as_str()).or_insert(&s.id);
            }
        }
        let mut bound = Vec::new();
        for (i, d) in devices.iter().enumerate() {
            let Some((id, driver)) = d else { continue };
            match owner.get(id.get_ref().as_str()) {
                Some(subject) => bound.push(DeviceConfig {
                    device: DeviceRef::new(DeviceId::from(id.get_ref().as_str()), driver.kind()),
                    subject: (*subject).clone(),
                    driver: driver.clone(),
                }),
                None if !all_subjects_parsed => {}
                None => self.error_at(
                    &[PathSeg::from("devices"), PathSeg::from(i), PathSeg::from("id")],
                    format!(
                        "device `{}` is not bound to any subject; list it in one subject's `devices`",
                        id.get_ref()
                    ),
                ),
            }
        }

        let gateway = gateway?;
        let (rules, rule_set) = rules?;
        if !self.errors.is_empty() {
            return None;
        }
        Some(Config {
            file: file.to_owned(),
            gateway,
            metrics,
            subjects: subjects.into_iter().flatten().collect(),
            devices: bound,
            sinks: sinks.into_iter().flatten().collect(),
            spool: spool.unwrap_or_default(),
            rules,
            rule_set,
            http,
            staff,
        })
    }

    /// `[[staff]]`: ids plain and unique, names given, subjects known.
    fn staff(&mut self, subjects: &[Option<Subject>]) -> Vec<crate::roster::StaffMember> {
        let all_parsed = subjects.iter().all(Option::is_some);
        let mut out = Vec::new();
        let mut ids = Vec::new();
        for (i, v) in self.array_section("staff").into_iter().enumerate() {
            let path = [PathSeg::from("staff"), PathSeg::from(i)];
            let Some(decl) = self.de::<StaffDecl>(v, &path, "[[staff]]") else {
                ids.push(None);
                continue;
            };
            if let Some(problem) = id_problem(&decl.id) {
                self.error_at(&child(&path, "id"), format!("staff id {problem}"));
            }
            if decl.name.trim().is_empty() || !crate::commands::safe_name(&decl.name) {
                self.error_at(
                    &child(&path, "name"),
                    "a name is 1 to 64 letters, digits, spaces or . - _ '".to_owned(),
                );
            }
            for (j, s) in decl.subjects.iter().enumerate() {
                if all_parsed && !subjects.iter().flatten().any(|k| k.id.as_str() == s) {
                    self.error_at(
                        &[
                            path[0].clone(),
                            path[1].clone(),
                            PathSeg::from("subjects"),
                            PathSeg::from(j),
                        ],
                        format!("staff `{}` covers unknown subject `{s}`", decl.id),
                    );
                }
            }
            ids.push(Some(decl.id.clone()));
            out.push(crate::roster::StaffMember {
                id: decl.id.as_str().into(),
                name: decl.name.as_str().into(),
                role: decl.role,
                subjects: decl
                    .subjects
                    .iter()
                    .map(|s| SubjectId::from(s.as_str()))
                    .collect(),
            });
        }
        self.duplicates("staff", ids.into_iter(), "staff id");
        out
    }

    /// Modbus RTU devices on one serial port share a bus: same line settings,
    /// distinct slave addresses. Problems are reported at the bus's first device.
    fn rtu_buses(&mut self, devices: &[Option<(Spanned<String>, DriverConfig)>]) {
        let mut buses: std::collections::BTreeMap<&str, Vec<(usize, &str, &ModbusConfig)>> =
            std::collections::BTreeMap::new();
        for (i, d) in devices.iter().enumerate() {
            if let Some((id, DriverConfig::Modbus(c))) = d
                && let Some(port) = c.bus_key()
            {
                buses.entry(port).or_default().push((i, id.get_ref(), c));
            }
        }
        for members in buses.values() {
            let problems = validate_bus(members.iter().map(|(_, id, c)| (*id, *c)));
            let first = members[0].0;
            for p in problems {
                self.error_at(
                    &[
                        PathSeg::from("devices"),
                        PathSeg::from(first),
                        PathSeg::from("port"),
                    ],
                    p,
                );
            }
        }
    }

    /// `[rules]` (all defaults when absent): checks the section, reads the
    /// rule files relative to the configuration file, compiles every rule and
    /// builds the engine once, so a bad rule or parameter fails here.
    fn rules(
        &mut self,
        file: &Path,
        metrics: &MetricRegistry,
        subjects: &[Option<Subject>],
    ) -> Option<(RulesConfig, RuleSet)> {
        let section = [PathSeg::from("rules")];
        let config: RulesConfig = match get(self.root_table(), "rules").map(|(_, v)| v.clone()) {
            Some(value) => self.de(value, &section, "[rules]")?,
            None => RulesConfig::default(),
        };
        self.issues(&section, config.validate(metrics));
        if subjects.iter().all(Option::is_some) {
            for id in config.subjects.keys() {
                if !subjects.iter().flatten().any(|s| s.id.as_str() == id) {
                    self.error_at(
                        &[
                            PathSeg::from("rules"),
                            PathSeg::from("subjects"),
                            PathSeg::from(id.clone()),
                        ],
                        format!("rules.subjects.{id}: no [[subjects]] entry has id `{id}`"),
                    );
                }
            }
        }
        let base = file.parent().unwrap_or_else(|| Path::new("."));
        let mut texts = Vec::new();
        for (i, f) in config.files.iter().enumerate() {
            let path = base.join(f);
            match std::fs::read_to_string(&path) {
                Ok(text) => texts.push((f.clone(), text)),
                Err(e) => self.error_at(
                    &[
                        PathSeg::from("rules"),
                        PathSeg::from("files"),
                        PathSeg::from(i),
                    ],
                    format!("cannot read rule file {}: {e}", path.display()),
                ),
            }
        }
        let sources: Vec<RuleSource<'_>> = texts
            .iter()
            .map(|(name, text)| RuleSource { name, text })
            .collect();
        let rule_set = match config.rule_set(&sources, metrics) {
            Ok(r) => r,
            Err(e) => {
                for issue in e.issues {
                    let at = config
                        .files
                        .iter()
                        .position(|f| *f == issue.file)
                        .map_or_else(
                            || section.to_vec(),
                            |i| {
                                vec![
                                    PathSeg::from("rules"),
                                    PathSeg::from("files"),
                                    PathSeg::from(i),
                                ]
                            },
                        );
                    self.error_at(&at, format!("in rule file {issue}"));
                }
                return None;
            }
        };
        if let Err(e) = config.engine(rule_set.clone()) {
            self.error_at(&section, format!("[rules]: {e}"));
            return None;
        }
        Some((config, rule_set))
    }

    fn http(&mut self) -> Option<HttpConfig> {
        let (_, value) = get(self.root_table(), "http").map(|(s, v)| (s, v.clone()))?;
        let path = [PathSeg::from("http")];
        let c: HttpConfig = self.de(value, &path, "[http]")?;
        self.issues(&path, c.issues());
        Some(c)
    }

    fn spool(&mut self) -> Option<SpoolConfig> {
        let (_, value) = get(self.root_table(), "spool").map(|(s, v)| (s, v.clone()))?;
        let path = [PathSeg::from("spool")];
        let c: SpoolConfig = self.de(value, &path, "[spool]")?;
        if c.max_bytes < 1024 * 1024 {
            self.error_at(
                &[PathSeg::from("spool"), PathSeg::from("max_bytes")],
                format!(
                    "spool.max_bytes must be at least 1048576 (1 MiB), got {}",
                    c.max_bytes
                ),
            );
        }
        if c.max_age < std::time::Duration::from_secs(60) {
            self.error_at(
                &[PathSeg::from("spool"), PathSeg::from("max_age")],
                "spool.max_age must be at least 1m".to_owned(),
            );
        }
        if c.flush_interval > std::time::Duration::from_secs(10) {
            self.error_at(
                &[PathSeg::from("spool"), PathSeg::from("flush_interval")],
                "spool.flush_interval must be at most 10s (0s commits as soon as events arrive)"
                    .to_owned(),
            );
        }
        Some(c)
    }

    fn gateway(&mut self) -> Option<GatewayConfig> {
        let Some((_, value)) = get(self.root_table(), "gateway").map(|(s, v)| (s, v.clone()))
        else {
            self.error(
                0..0,
                "missing section [gateway]; it needs site, ward and id".to_owned(),
            );
            return None;
        };
        let path = [PathSeg::from("gateway")];
        let g: GatewayConfig = self.de(value, &path, "[gateway]")?;
        for (key, v) in [("site", &g.site), ("ward", &g.ward), ("id", &g.id)] {
            if let Some(problem) = id_problem(v) {
                self.error_at(
                    &[PathSeg::from("gateway"), PathSeg::from(key)],
                    format!("gateway.{key} {problem}"),
                );
            }
        }
        let mut issues = Vec::new();
        wardgate_model::config::check_duration(
            &mut issues,
            "clock_tolerance",
            g.clock_tolerance,
            std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(24 * 3600),
        );
        for issue in issues {
            self.error_at(
                &[PathSeg::from("gateway"), PathSeg::from("clock_tolerance")],
                format!("gateway.{}", issue.message),
            );
        }
        Some(g)
    }

    fn metrics(&mut self) -> MetricRegistry {
        let mut registry = MetricRegistry::default();
        for (i, v) in self.array_section("metrics").into_iter().enumerate() {
            let path = [PathSeg::from("metrics"), PathSeg::from(i)];
            let Some(decl) = self.de::<MetricDecl>(v, &path, "[[metrics]]") else {
                continue;
            };
            let at = |key: &'static str| [path[0].clone(), path[1].clone(), PathSeg::from(key)];
            if let Some(problem) = name_problem(&decl.name) {
                self.error_at(&at("name"), format!("metric name {problem}"));
                continue;
            }
            if let Some(problem) = unit_problem(&decl.unit) {
                self.error_at(&at("unit"), format!("unit {problem}"));
            }
            let metric = Metric::custom(&decl.name, &decl.unit, decl.display_name.as_deref());
            if let Err(existing) = registry.declare(metric) {
                let which = if existing.info().is_some() {
                    "a built-in metric"
                } else {
                    "already declared above"
                };
                self.error_at(
                    &at("name"),
                    format!("metric `{}` is {which}; choose another name", decl.name),
                );
            }
        }
        registry
    }

    fn device(
        &mut self,
        i: usize,
        value: Spanned<DeValue<'i>>,
        metrics: &MetricRegistry,
    ) -> Option<(Spanned<String>, DriverConfig)> {
        let path = [PathSeg::from("devices"), PathSeg::from(i)];
        let span = value.span();
        let DeValue::Table(mut table) = value.into_inner() else {
            self.error(span, "each [[devices]] entry must be a table".into());
            return None;
        };
        let id = self.take_string(&mut table, &path, "id", "[[devices]]");
        let kind = self.take_string(&mut table, &path, "type", "[[devices]]");
        let (id, kind) = (id?, kind?);
        if let Some(problem) = id_problem(id.get_ref()) {
            self.error(id.span(), format!("device id {problem}"));
        }
        let rest = Spanned::new(span, DeValue::Table(table));
        let what = format!("device `{}` (type {})", id.get_ref(), kind.get_ref());
        let driver = match kind.get_ref().as_str() {
            "synthetic" => {
                let c: SyntheticConfig = self.de(rest, &path, &what)?;
                self.issues(&path, c.validate(metrics));
                DriverConfig::Synthetic(c)
            }
            "pump" => {
                let c: PumpConfig = self.de(rest, &path, &what)?;
                self.issues(&path, c.validate(metrics));
                DriverConfig::Pump(c)
            }
            "modbus" => {
                let c: ModbusConfig = self.de(rest, &path, &what)?;
                self.issues(&path, c.validate(metrics));
                DriverConfig::Modbus(Box::new(c))
            }
            "ble" => {
                let c: BleConfig = self.de(rest, &path, &what)?;
                self.issues(&path, c.validate(metrics));
                DriverConfig::Ble(Box::new(c))
            }
            other => {
                self.error(
                    kind.span(),
                    format!(
                        "unknown device type `{other}`; allowed types: {}",
                        DriverConfig::TYPES.join(", ")
                    ),
                );
                return None;
            }
        };
        Some((id, driver))
    }

    /// Removes a required string key from a table, reporting it when missing
    /// or not a string.
    fn take_string(
        &mut self,
        table: &mut DeTable<'i>,
        path: &[PathSeg],
        key: &'static str,
        what: &str,
    ) -> Option<Spanned<String>> {
        match table.remove_entry(key) {
            Some((_, v)) => match v.get_ref().as_str() {
                Some(s) => Some(Spanned::new(v.span(), s.to_owned())),
                None => {
                    self.error(
                        v.span(),
                        format!(
                            "`{key}` in {what} must be a string, found {}",
                            v.get_ref().type_str()
                        ),
                    );
                    None
                }
            },
            None => {
                self.error_at(path, format!("{what} is missing the required key `{key}`"));
                None
            }
        }
    }

    fn subjects(
        &mut self,
        devices: &[Option<(Spanned<String>, DriverConfig)>],
        device_ids: &[String],
    ) -> Vec<Option<Subject>> {
        let known: HashSet<&str> = device_ids.iter().map(String::as_str).collect();
        let mut device_ids: Vec<&str> = known.iter().copied().collect();
        device_ids.sort_unstable();
        let mut bound_to: HashMap<String, String> = HashMap::new();
        let mut out = Vec::new();
        for (i, v) in self.array_section("subjects").into_iter().enumerate() {
            let path = [PathSeg::from("subjects"), PathSeg::from(i)];
            let Some(decl) = self.de::<SubjectDecl>(v, &path, "[[subjects]]") else {
                out.push(None);
                continue;
            };
            if let Some(problem) = id_problem(&decl.id) {
                self.error_at(&child(&path, "id"), format!("subject id {problem}"));
            }
            for (j, d) in decl.devices.iter().enumerate() {
                let at = [
                    path[0].clone(),
                    path[1].clone(),
                    PathSeg::from("devices"),
                    PathSeg::from(j),
                ];
                if !known.contains(d.as_str()) {
                    let listed = if device_ids.is_empty() {
                        "none are configured".to_owned()
                    } else {
                        format!("configured devices: {}", device_ids.join(", "))
                    };
                    self.error_at(
                        &at,
                        format!(
                            "subject `{}` is bound to unknown device `{d}`; {listed}",
                            decl.id
                        ),
                    );
                } else if let Some(other) = bound_to.get(d) {
                    self.error_at(
                        &at,
                        format!(
                            "device `{d}` is already bound to subject `{other}`; a device belongs to one subject"
                        ),
                    );
                } else {
                    bound_to.insert(d.clone(), decl.id.clone());
                }
            }
            out.push(Some(Subject {
                id: decl.id.into(),
                kind: decl.kind,
                name: decl.name,
                profile: decl.profile,
                devices: decl.devices.into_iter().map(DeviceId::from).collect(),
            }));
        }
        self.duplicates(
            "subjects",
            out.iter().map(|s| s.as_ref().map(|s| s.id.to_string())),
            "subject id",
        );
        self.duplicates(
            "devices",
            devices
                .iter()
                .map(|d| d.as_ref().map(|(id, _)| id.get_ref().clone())),
            "device id",
        );
        out
    }

    fn sinks(&mut self) -> Vec<Option<SinkConfig>> {
        let mut out = Vec::new();
        for (i, v) in self.array_section("sinks").into_iter().enumerate() {
            let path = [PathSeg::from("sinks"), PathSeg::from(i)];
            let span = v.span();
            let DeValue::Table(mut table) = v.into_inner() else {
                self.error(span, "each [[sinks]] entry must be a table".into());
                out.push(None);
                continue;
            };
            let kind = self.take_string(&mut table, &path, "type", "[[sinks]]");
            let name = match table.remove_entry("name") {
                Some((_, v)) => match v.get_ref().as_str() {
                    Some(s) => Some(s.to_owned()),
                    None => {
                        self.error(v.span(), "`name` in [[sinks]] must be a string".into());
                        None
                    }
                },
                None => None,
            };
            let Some(kind) = kind else {
                out.push(None);
                continue;
            };
            let required = match table.remove_entry("required") {
                Some((_, v)) => match v.get_ref().as_bool() {
                    Some(b) => b,
                    None => {
                        self.error(
                            v.span(),
                            "`required` in [[sinks]] must be true or false".into(),
                        );
                        true
                    }
                },
                None => true,
            };
            let rest = Spanned::new(span, DeValue::Table(table));
            let what = format!("sink (type {})", kind.get_ref());
            let sink = match kind.get_ref().as_str() {
                "jsonl" => self.de::<JsonlConfig>(rest, &path, &what).map(|c| {
                    self.issues(&path, c.issues());
                    SinkKind::Jsonl(c)
                }),
                "mqtt" => self.de::<MqttSinkConfig>(rest, &path, &what).map(|c| {
                    self.issues(&path, c.issues());
                    SinkKind::Mqtt(Box::new(c))
                }),
                "influxdb" => self.de::<InfluxDbConfig>(rest, &path, &what).map(|c| {
                    self.issues(&path, c.issues());
                    SinkKind::InfluxDb(Box::new(c))
                }),
                other => {
                    self.error(
                        kind.span(),
                        format!(
                            "unknown sink type `{other}`; allowed types: {}",
                            SinkKind::TYPES.join(", ")
                        ),
                    );
                    None
                }
            };
            out.push(sink.map(|kind_config| SinkConfig {
                name: name.unwrap_or_else(|| kind.get_ref().clone()),
                required,
                kind: kind_config,
            }));
        }
        self.duplicates(
            "sinks",
            out.iter().map(|s| s.as_ref().map(|s| s.name.clone())),
            "sink name",
        );
        out
    }

    /// Reports every repeated id in a section, at the repeat.
    fn duplicates(
        &mut self,
        section: &'static str,
        ids: impl Iterator<Item = Option<String>>,
        what: &str,
    ) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let key = if section == "sinks" { "name" } else { "id" };
        for (i, id) in ids.enumerate() {
            let Some(id) = id else { continue };
            if let Some(first) = seen.get(&id) {
                let first = self.line_of(&[
                    PathSeg::from(section),
                    PathSeg::from(*first),
                    PathSeg::from(key),
                ]);
                self.error_at(
                    &[PathSeg::from(section), PathSeg::from(i), PathSeg::from(key)],
                    format!(
                        "duplicate {what} `{id}` (first used on line {first}); ids must be unique"
                    ),
                );
            } else {
                seen.insert(id, i);
            }
        }
    }

    fn line_of(&self, path: &[PathSeg]) -> usize {
        self.source.position(span_of(&self.root, path).start).line
    }
}

fn child(path: &[PathSeg; 2], key: &'static str) -> [PathSeg; 3] {
    [path[0].clone(), path[1].clone(), PathSeg::from(key)]
}

/// Ids appear in MQTT topics, InfluxDB tags and URLs: keep them plain.
fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("must not be empty".into());
    }
    if id.len() > 64 {
        return Some(format!("must be at most 64 characters, got {}", id.len()));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some(format!(
            "`{id}` may only contain ASCII letters, digits, '-', '_' and '.'"
        ));
    }
    None
}

/// A unit is a UCUM code: printable ASCII without spaces (UCUM has none).
/// It is written as an InfluxDB tag value, where a tab, a control character
/// or a backslash (it would escape the space after it) breaks the line and
/// the bridge and InfluxDB refuse every reading of the metric.
fn unit_problem(unit: &str) -> Option<String> {
    let ok = !unit.is_empty() && unit.chars().all(|c| c.is_ascii_graphic() && c != '\\');
    (!ok).then(|| {
        format!(
            "{unit:?} must be a UCUM code such as \"Cel\", \"%\", \"kg\" or \"{{count}}\": printable ASCII without spaces or backslashes"
        )
    })
}

/// Metric names are snake_case, like the built-in ones.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    (!ok).then(|| format!("`{name}` must be snake_case: lower-case letters, digits and '_', starting with a letter"))
}

fn ignored_path(p: &serde_ignored::Path<'_>) -> Vec<PathSeg> {
    use serde_ignored::Path;
    match p {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut v = ignored_path(parent);
            v.push(PathSeg::from(*index));
            v
        }
        Path::Map { parent, key } => {
            let mut v = ignored_path(parent);
            v.push(PathSeg::from(key.clone()));
            v
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse(Path::new("t.toml"), text) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors.into_iter().map(|e| e.message).collect(),
        }
    }

    /// Found by the `bridge_lines` fuzz target: a custom metric declared with
    /// `unit = "d\t"` was accepted, and every reading of it was encoded as
    /// `...,unit=d\t value=0.0 6638341174403161153`, which the bridge (and
    /// InfluxDB) refuse. The unit is now checked where it is declared.
    #[test]
    fn units_that_would_break_line_protocol_are_refused() {
        let config = |unit: &str| {
            format!(
                "[gateway]\nsite = \"s\"\nward = \"w\"\nid = \"g\"\n\n[[metrics]]\nname = \"bed_load\"\nunit = {}\n",
                toml::Value::String(unit.to_owned())
            )
        };
        for bad in ["d\t", "", " ", "k g", "kg\\", "m\u{b2}", "a\u{7f}"] {
            let errors = errors(&config(bad));
            assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with("unit ") && e.contains("UCUM code")),
                "{bad:?}: {errors:?}"
            );
        }
        for good in ["kg", "Cel", "%", "{count}", "mm[Hg]", "L/min", "10*3/uL"] {
            assert!(
                errors(&config(good)).iter().all(|e| !e.contains("UCUM")),
                "{good:?}"
            );
        }
    }
}
