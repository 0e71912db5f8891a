//! The vocabulary of configuration validation, shared by every crate that owns
//! config types: an issue names where (a path relative to the table being
//! validated) and what is wrong. The gateway turns paths into file:line:column.

use std::borrow::Cow;
use std::fmt;

/// One step into a TOML document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Key(Cow<'static, str>),
    Index(usize),
}

impl From<&'static str> for PathSeg {
    fn from(k: &'static str) -> Self {
        PathSeg::Key(Cow::Borrowed(k))
    }
}

impl From<String> for PathSeg {
    fn from(k: String) -> Self {
        PathSeg::Key(Cow::Owned(k))
    }
}

impl From<usize> for PathSeg {
    fn from(i: usize) -> Self {
        PathSeg::Index(i)
    }
}

/// A problem found in a configuration value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where, relative to the table that was validated; empty = the table itself.
    pub path: Vec<PathSeg>,
    /// What is wrong and what is allowed ("must be between 1 and 247, got 300").
    pub message: String,
}

impl ConfigIssue {
    pub fn new(path: impl IntoIterator<Item = PathSeg>, message: impl Into<String>) -> Self {
        Self {
            path: path.into_iter().collect(),
            message: message.into(),
        }
    }

    /// The path as people write it: `signals.[0].metric`.
    pub fn dotted_path(&self) -> String {
        self.path
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The same issue seen from an enclosing table.
    pub fn within(mut self, prefix: impl IntoIterator<Item = PathSeg>) -> Self {
        let mut path: Vec<PathSeg> = prefix.into_iter().collect();
        path.append(&mut self.path);
        self.path = path;
        self
    }
}

impl fmt::Display for PathSeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathSeg::Key(k) => f.write_str(k),
            PathSeg::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Semantic checks beyond what types express: ranges, consistency between keys.
pub trait Validate {
    /// Every issue found, not just the first. `metrics` resolves metric names
    /// (built-in and declared custom ones).
    fn validate(&self, metrics: &crate::MetricRegistry) -> Vec<ConfigIssue>;
}

/// Pushes an issue when `value` lies outside `range`, naming the allowed range.
pub fn check_range<T>(
    issues: &mut Vec<ConfigIssue>,
    key: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) where
    T: PartialOrd + fmt::Display + Copy,
{
    if !range.contains(&value) {
        issues.push(ConfigIssue::new(
            [PathSeg::from(key)],
            format!(
                "{key} must be between {} and {}, got {value}",
                range.start(),
                range.end()
            ),
        ));
    }
}

/// Pushes an issue when the duration `value` lies outside `range`, naming the
/// allowed range in human units ("poll_interval must be between 10ms and 1h, got 2h").
pub fn check_duration(
    issues: &mut Vec<ConfigIssue>,
    key: &'static str,
    value: std::time::Duration,
    range: std::ops::RangeInclusive<std::time::Duration>,
) {
    if !range.contains(&value) {
        let f = humantime::format_duration;
        issues.push(ConfigIssue::new(
            [PathSeg::from(key)],
            format!(
                "{key} must be between {} and {}, got {}",
                f(*range.start()),
                f(*range.end()),
                f(value)
            ),
        ));
    }
}
