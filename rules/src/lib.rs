//! The rules engine: rule language, windows, NEWS2, built-in packs and the
//! alert lifecycle. Deterministic: time is always passed in, never read from the
//! clock, and this crate never does I/O (rule files and inputs are handed in as
//! text or readers by the caller).
//!
//! Entry points: [`RuleSet::compile`] (or [`packs::builtin_rule_set`]),
//! [`Engine`], [`replay()`], [`run_rule_tests`] and [`RulesConfig`].

mod config;
mod engine;
mod expr;
pub mod news2;
pub mod packs;
mod replay;
mod ruleset;
mod testfile;
mod window;

pub use config::RulesConfig;
pub use engine::{
    AckError, AuditEntry, Engine, EngineError, EngineOptions, Silence, SilenceError, SilenceTarget,
};
#[doc(hidden)]
pub use expr::parse_expression;
pub use replay::{ReplayError, ReplayStats, replay};
pub use ruleset::{ParamDecl, Rule, RuleIssue, RuleSet, RuleSource, RulesError};
pub use testfile::{CaseResult, RuleTestError, TestReport, run_rule_tests};
pub use window::MAX_SAMPLES;
