//! Reading the file: TOML with spans, every section deserialised one table at
//! a time, unknown keys collected with `serde_ignored`, each section's
//! [`Validate`] issues and every other problem turned into file:line:column.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use wardgate_model::MetricRegistry;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate};

use super::source::{Position, Source, get, span_of};
use super::{Config, introspect};

pub(super) type Spanned<T> = toml::Spanned<T>;

const SECTIONS: &[&str] = &[
    "gateway", "metrics", "subjects", "devices", "sinks", "spool", "rules", "http", "staff",
    "patients",
];

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
    check(file, text, |loader| loader.load(file))
}

/// Checks a TOML file with `load` (the gateway's file, or the bridge's):
/// syntax errors first; then whatever `load` reports through the
/// [`Loader`], each problem turned into file:line:column, sorted.
pub(crate) fn check<'i, T>(
    file: &Path,
    text: &'i str,
    load: impl FnOnce(&mut Loader<'i>) -> Option<T>,
) -> Result<T, ConfigErrors> {
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
    let loaded = if loader.errors.is_empty() {
        load(&mut loader)
    } else {
        None
    };
    match loaded {
        Some(loaded) if loader.errors.is_empty() => Ok(loaded),
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

/// One file being checked: its parsed tree with spans and the problems found.
pub(crate) struct Loader<'i> {
    source: Source<'i>,
    errors: Vec<(Range<usize>, String)>,
    root: Spanned<DeValue<'i>>,
}

impl<'i> Loader<'i> {
    pub(crate) fn error(&mut self, span: Range<usize>, message: String) {
        self.errors.push((span, message));
    }

    pub(super) fn error_at(&mut self, path: &[PathSeg], message: String) {
        let span = span_of(&self.root, path);
        self.error(span, message);
    }

    pub(super) fn issues(&mut self, prefix: &[PathSeg], issues: Vec<ConfigIssue>) {
        for issue in issues {
            let issue = issue.within(prefix.iter().cloned());
            self.error_at(&issue.path, issue.message);
        }
    }

    /// Deserialises one value, reporting a type error and every unknown key.
    pub(super) fn de<T: Deserialize<'i>>(
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

    /// Deserialises one section's table and runs its [`Validate`] checks,
    /// the one way every section is checked.
    pub(crate) fn checked<T: Deserialize<'i> + Validate>(
        &mut self,
        value: Spanned<DeValue<'i>>,
        path: &[PathSeg],
        what: &str,
        metrics: &MetricRegistry,
    ) -> Option<T> {
        let config: T = self.de(value, path, what)?;
        self.issues(path, config.validate(metrics));
        Some(config)
    }

    /// The value of a single-table section (`[spool]`), if present.
    pub(crate) fn table_section(&self, name: &str) -> Option<Spanned<DeValue<'i>>> {
        get(self.root_table(), name).map(|(_, v)| v.clone())
    }

    pub(super) fn root_table(&self) -> &DeTable<'i> {
        match self.root.get_ref() {
            DeValue::Table(t) => t,
            _ => unreachable!("the document root is always a table"),
        }
    }

    /// The elements of an array-of-tables section (`[[devices]]`), or an error
    /// when the section has another shape.
    pub(super) fn array_section(&mut self, name: &'static str) -> Vec<Spanned<DeValue<'i>>> {
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
    /// Reports every top-level key that is not one of `allowed`.
    pub(crate) fn unknown_sections(&mut self, allowed: &[&str]) {
        let unknown: Vec<(Range<usize>, String)> = self
            .root_table()
            .iter()
            .filter(|(k, _)| !allowed.contains(&k.get_ref().as_ref()))
            .map(|(k, _)| (k.span(), k.get_ref().to_string()))
            .collect();
        for (span, key) in unknown {
            self.error(
                span,
                format!(
                    "unknown section `{key}`; allowed sections: {}",
                    allowed.join(", ")
                ),
            );
        }
    }

    fn load(&mut self, file: &Path) -> Option<Config> {
        self.unknown_sections(SECTIONS);

        let metrics = self.metrics();
        let gateway = self.gateway(&metrics);
        let (devices, subjects) = self.devices_and_subjects(&metrics);
        let sinks = self.sinks(&metrics);
        let spool = self.spool(&metrics);
        let http = self.http(&metrics);
        let rules = self.rules(file, &metrics, &subjects);
        let staff = self.staff(&subjects);
        let patients = self.patients(&metrics, &subjects, &sinks);

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
            devices,
            sinks: sinks.into_iter().flatten().collect(),
            spool: spool.unwrap_or_default(),
            rules,
            rule_set,
            http,
            staff,
            patients,
        })
    }

    /// Removes a required string key from a table, reporting it when missing
    /// or not a string.
    pub(super) fn take_string(
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

    /// Reports every repeated id in a section, at the repeat.
    pub(super) fn duplicates(
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

pub(super) fn child(path: &[PathSeg; 2], key: &'static str) -> [PathSeg; 3] {
    [path[0].clone(), path[1].clone(), PathSeg::from(key)]
}

/// Ids appear in MQTT topics, InfluxDB tags and URLs: keep them plain.
pub(super) fn id_problem(id: &str) -> Option<String> {
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
