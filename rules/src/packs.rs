//! The built-in rule packs, compiled into the binary from `config/rules/` so
//! `wardgate replay` works without any file.

use wardgate_model::MetricRegistry;

use crate::{RuleSet, RuleSource, RulesError};

/// `(pack name, file name, TOML text)` of every built-in pack.
pub const BUILTIN_PACKS: &[(&str, &str, &str)] = &[
    (
        "news2",
        "news2.toml",
        include_str!("../../config/rules/news2.toml"),
    ),
    (
        "chronic",
        "chronic.toml",
        include_str!("../../config/rules/chronic.toml"),
    ),
    (
        "infusion",
        "infusion.toml",
        include_str!("../../config/rules/infusion.toml"),
    ),
    (
        "technical",
        "technical.toml",
        include_str!("../../config/rules/technical.toml"),
    ),
];

/// The names of the built-in packs.
pub fn pack_names() -> impl Iterator<Item = &'static str> {
    BUILTIN_PACKS.iter().map(|p| p.0)
}

/// The sources of the named built-in packs; `None` for an unknown name.
pub fn pack_source(name: &str) -> Option<RuleSource<'static>> {
    BUILTIN_PACKS
        .iter()
        .find(|p| p.0 == name)
        .map(|p| RuleSource {
            name: p.1,
            text: p.2,
        })
}

/// Every built-in pack compiled together (the default for replay).
pub fn builtin_rule_set() -> Result<RuleSet, RulesError> {
    let sources: Vec<RuleSource<'static>> = BUILTIN_PACKS
        .iter()
        .map(|p| RuleSource {
            name: p.1,
            text: p.2,
        })
        .collect();
    RuleSet::compile(&sources, &MetricRegistry::default())
}
