use std::path::PathBuf;

use serde::Deserialize;
use wardgate_model::MetricRegistry;
use wardgate_model::config::{ConfigIssue, Validate};

/// `[[sinks]] type = "jsonl"`: every reading, device event and alert, one JSON
/// object per line.
#[derive(Debug, Clone, Deserialize)]
pub struct JsonlConfig {
    /// File to append to, or `"-"` for standard output. The file is created if
    /// missing; its directory must exist.
    pub path: PathBuf,
}

impl JsonlConfig {
    pub fn is_stdout(&self) -> bool {
        self.path.as_os_str() == "-"
    }
}

impl Validate for JsonlConfig {
    /// A path is all there is; whether it can be opened is known only when
    /// the sink starts.
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        Vec::new()
    }
}
