//! Configuration: the TOML file a hospital engineer writes, loaded and checked
//! in one pass that reports every problem it finds, each with file, line and
//! column, what is wrong and what is allowed.
//!
//! Loading never starts anything. Sections are deserialised one table at a
//! time so that one bad device does not hide the problems of the next; then
//! cross-references (subjects ↔ devices), duplicate ids and each section's own
//! [`Validate`](wardgate_model::config::Validate) checks run over everything
//! that parsed.
//!
//! `loader` reads the TOML and owns positions, unknown keys and the order of
//! the sections; `devices` the `[[devices]]` and `[[subjects]]` tables;
//! `sinks` the `[[sinks]]`; `sections` the single tables (`[gateway]`,
//! `[spool]`, `[rules]`, `[http]`) and the `[[metrics]]` and `[[staff]]`
//! declarations. Secrets live in [`crate::secret`], a leaf the sections'
//! owners import without importing this module.

mod devices;
mod introspect;
mod loader;
mod patients;
mod sections;
mod sinks;
pub(crate) mod source;

use std::path::PathBuf;

use wardgate_model::{MetricRegistry, Subject};
use wardgate_rules::{RuleSet, RulesConfig};

pub use devices::{DeviceConfig, DriverConfig};
pub use loader::{ConfigError, ConfigErrors, LoadError, load, parse, read};
pub(crate) use loader::{Loader, check};
pub use patients::PatientsConfig;
pub(crate) use sections::name_problem;
pub use sections::{GatewayConfig, SpoolConfig};
pub use sinks::{SinkConfig, SinkKind};
pub use source::Position;

use crate::http::HttpConfig;

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
    /// `[patients]`: subject → MRN, for the sinks that chart into an EMR.
    pub patients: Option<PatientsConfig>,
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
