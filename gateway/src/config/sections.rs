//! The single-table sections (`[gateway]`, `[spool]`, `[rules]`, `[http]`)
//! and the declarations the others refer to (`[[metrics]]`, `[[staff]]`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_duration};
use wardgate_model::{Metric, MetricRegistry, Subject, SubjectId};
use wardgate_rules::{RuleSet, RuleSource, RulesConfig};

use super::loader::{Loader, child, id_problem};
use crate::http::HttpConfig;

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

impl Validate for GatewayConfig {
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues: Vec<ConfigIssue> =
            [("site", &self.site), ("ward", &self.ward), ("id", &self.id)]
                .into_iter()
                .filter_map(|(key, v)| {
                    let problem = id_problem(v)?;
                    Some(ConfigIssue::new(
                        [PathSeg::from(key)],
                        format!("gateway.{key} {problem}"),
                    ))
                })
                .collect();
        let mut tolerance = Vec::new();
        check_duration(
            &mut tolerance,
            "clock_tolerance",
            self.clock_tolerance,
            Duration::from_secs(1)..=Duration::from_secs(24 * 3600),
        );
        issues.extend(tolerance.into_iter().map(|mut issue| {
            issue.message = format!("gateway.{}", issue.message);
            issue
        }));
        issues
    }
}

impl Validate for SpoolConfig {
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.max_bytes < 1024 * 1024 {
            issues.push(ConfigIssue::new(
                [PathSeg::from("max_bytes")],
                format!(
                    "spool.max_bytes must be at least 1048576 (1 MiB), got {}",
                    self.max_bytes
                ),
            ));
        }
        if self.max_age < Duration::from_secs(60) {
            issues.push(ConfigIssue::new(
                [PathSeg::from("max_age")],
                "spool.max_age must be at least 1m",
            ));
        }
        if self.flush_interval > Duration::from_secs(10) {
            issues.push(ConfigIssue::new(
                [PathSeg::from("flush_interval")],
                "spool.flush_interval must be at most 10s (0s commits as soon as events arrive)",
            ));
        }
        issues
    }
}

#[derive(Debug, Deserialize)]
struct MetricDecl {
    name: String,
    unit: String,
    display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffDecl {
    id: String,
    name: String,
    role: crate::roster::StaffRole,
    #[serde(default)]
    subjects: Vec<String>,
}

impl Loader<'_> {
    pub(super) fn gateway(&mut self, metrics: &MetricRegistry) -> Option<GatewayConfig> {
        let Some(value) = self.table_section("gateway") else {
            self.error(
                0..0,
                "missing section [gateway]; it needs site, ward and id".to_owned(),
            );
            return None;
        };
        self.checked(value, &[PathSeg::from("gateway")], "[gateway]", metrics)
    }

    pub(super) fn spool(&mut self, metrics: &MetricRegistry) -> Option<SpoolConfig> {
        let value = self.table_section("spool")?;
        self.checked(value, &[PathSeg::from("spool")], "[spool]", metrics)
    }

    pub(super) fn http(&mut self, metrics: &MetricRegistry) -> Option<HttpConfig> {
        let value = self.table_section("http")?;
        self.checked(value, &[PathSeg::from("http")], "[http]", metrics)
    }

    pub(super) fn metrics(&mut self) -> MetricRegistry {
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

    /// `[[staff]]`: ids plain and unique, names given, subjects known.
    pub(super) fn staff(
        &mut self,
        subjects: &[Option<Subject>],
    ) -> Vec<crate::roster::StaffMember> {
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

    /// `[rules]` (all defaults when absent): checks the section, reads the
    /// rule files relative to the configuration file, compiles every rule and
    /// builds the engine once, so a bad rule or parameter fails here.
    pub(super) fn rules(
        &mut self,
        file: &Path,
        metrics: &MetricRegistry,
        subjects: &[Option<Subject>],
    ) -> Option<(RulesConfig, RuleSet)> {
        let section = [PathSeg::from("rules")];
        let config: RulesConfig = match self.table_section("rules") {
            Some(value) => self.checked(value, &section, "[rules]", metrics)?,
            None => RulesConfig::default(),
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

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
