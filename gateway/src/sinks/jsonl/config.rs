use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wardgate_model::MetricRegistry;
use wardgate_model::config::{ConfigIssue, Validate, check_duration, check_range};

/// `[[sinks]] type = "jsonl"`: every reading, device event and alert, one JSON
/// object per line.
#[derive(Debug, Clone, Deserialize)]
pub struct JsonlConfig {
    /// File to append to, or `"-"` for standard output. The file is created if
    /// missing; its directory must exist.
    pub path: PathBuf,
    /// Rotate the file once it holds this many bytes (0: never by size).
    #[serde(default = "default_rotate_max_bytes")]
    pub rotate_max_bytes: u64,
    /// Rotate the file once it is this old (0s: never by age).
    #[serde(with = "humantime_serde", default = "default_rotate_max_age")]
    pub rotate_max_age: Duration,
    /// Rotated files kept; the oldest beyond are deleted.
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Gzip rotated files.
    #[serde(default = "default_compress")]
    pub compress: bool,
}

fn default_rotate_max_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_rotate_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_keep() -> usize {
    14
}
fn default_compress() -> bool {
    true
}

impl JsonlConfig {
    /// A file sink with the default rotation.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            rotate_max_bytes: default_rotate_max_bytes(),
            rotate_max_age: default_rotate_max_age(),
            keep: default_keep(),
            compress: default_compress(),
        }
    }

    pub fn is_stdout(&self) -> bool {
        self.path.as_os_str() == "-"
    }
}

impl Validate for JsonlConfig {
    /// The rotation bounds; whether the path can be opened is known only
    /// when the sink starts.
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.rotate_max_bytes != 0 {
            check_range(
                &mut issues,
                "rotate_max_bytes",
                self.rotate_max_bytes,
                1 << 20..=1 << 40,
            );
        }
        if !self.rotate_max_age.is_zero() {
            check_duration(
                &mut issues,
                "rotate_max_age",
                self.rotate_max_age,
                Duration::from_secs(60)..=Duration::from_secs(366 * 24 * 3600),
            );
        }
        check_range(&mut issues, "keep", self.keep, 1..=10_000);
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_bounds_are_checked_and_zero_means_never() {
        let mut c = JsonlConfig::new("/tmp/x.jsonl");
        assert!(c.validate(&MetricRegistry::default()).is_empty());
        c.rotate_max_bytes = 0;
        c.rotate_max_age = Duration::ZERO;
        assert!(
            c.validate(&MetricRegistry::default()).is_empty(),
            "0 turns each off"
        );
        c.rotate_max_bytes = 1000;
        c.rotate_max_age = Duration::from_secs(1);
        c.keep = 0;
        let keys: Vec<String> = c
            .validate(&MetricRegistry::default())
            .iter()
            .map(ConfigIssue::dotted_path)
            .collect();
        assert_eq!(keys, ["rotate_max_bytes", "rotate_max_age", "keep"]);
    }
}
