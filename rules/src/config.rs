//! `RulesConfig`: the gateway's `[rules]` section. Pure data + validation; the
//! gateway reads the extra rule files and hands their text to
//! [`RulesConfig::rule_set`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wardgate_model::config::{ConfigIssue, PathSeg, Validate, check_duration};
use wardgate_model::{MetricRegistry, SubjectId};

use crate::engine::EngineOptions;
use crate::packs::{BUILTIN_PACKS, pack_source};
use crate::{Engine, EngineError, RuleSet, RuleSource, RulesError};

/// The `[rules]` section:
///
/// ```toml
/// [rules]
/// packs = ["news2", "chronic", "infusion", "technical"]  # default: all
/// files = ["rules/local.toml"]                             # extra rule files
/// news2_freshness = "1h"
/// tick_interval = "1s"
/// max_silence = "4h"
/// [rules.for]                    # onset delays replacing the rules' own
/// device_offline = "26h"
/// [rules.clear_for]              # hold times replacing the rules' own
/// news2 = "30m"
/// [rules.escalate_after]         # escalation times replacing the rules' own
/// pump_occlusion = "1m"
/// [rules.params]                 # override pack defaults for everyone
/// sys_crisis = 170
/// [rules.subjects.bed-4.params]  # per-subject overrides
/// prescribed_rate = 125
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RulesConfig {
    /// Built-in packs to load.
    pub packs: Vec<String>,
    /// Extra rule files (paths as written; the gateway resolves and reads them).
    pub files: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub news2_freshness: Duration,
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub max_silence: Duration,
    /// Onset delays (`for`) replacing the rules' own, by rule id (not their
    /// bands').
    #[serde(rename = "for", with = "humantime_map")]
    pub for_: BTreeMap<String, Duration>,
    /// Hold times (`clear_for`) replacing the rules' own, by rule id.
    #[serde(with = "humantime_map")]
    pub clear_for: BTreeMap<String, Duration>,
    /// Escalation times replacing the rules' own (and their bands'), by
    /// rule id: the ward's policy for how long an unacknowledged alert stays
    /// with one person before it is handed on.
    #[serde(with = "humantime_map")]
    pub escalate_after: BTreeMap<String, Duration>,
    /// Parameter overrides for every subject.
    pub params: BTreeMap<String, f64>,
    /// Per-subject settings.
    pub subjects: BTreeMap<String, SubjectRules>,
}

/// Per-subject rule settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubjectRules {
    pub params: BTreeMap<String, f64>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            packs: BUILTIN_PACKS.iter().map(|p| p.0.to_owned()).collect(),
            files: Vec::new(),
            news2_freshness: Duration::from_secs(3600),
            tick_interval: Duration::from_secs(1),
            max_silence: Duration::from_secs(4 * 3600),
            for_: BTreeMap::new(),
            clear_for: BTreeMap::new(),
            escalate_after: BTreeMap::new(),
            params: BTreeMap::new(),
            subjects: BTreeMap::new(),
        }
    }
}

impl Validate for RulesConfig {
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let known: Vec<&str> = BUILTIN_PACKS.iter().map(|p| p.0).collect();
        for (i, p) in self.packs.iter().enumerate() {
            if !known.contains(&p.as_str()) {
                issues.push(ConfigIssue::new(
                    [PathSeg::from("packs"), PathSeg::from(i)],
                    format!(
                        "unknown rule pack '{p}'; built-in packs: {}",
                        known.join(", ")
                    ),
                ));
            }
            if self.packs[..i].contains(p) {
                issues.push(ConfigIssue::new(
                    [PathSeg::from("packs"), PathSeg::from(i)],
                    format!("pack '{p}' is listed twice"),
                ));
            }
        }
        for (i, f) in self.files.iter().enumerate() {
            if f.trim().is_empty() {
                issues.push(ConfigIssue::new(
                    [PathSeg::from("files"), PathSeg::from(i)],
                    "a rule file path must not be empty",
                ));
            }
        }
        check_duration(
            &mut issues,
            "news2_freshness",
            self.news2_freshness,
            Duration::from_secs(60)..=Duration::from_secs(24 * 3600),
        );
        check_duration(
            &mut issues,
            "tick_interval",
            self.tick_interval,
            Duration::from_millis(100)..=Duration::from_secs(60),
        );
        check_duration(
            &mut issues,
            "max_silence",
            self.max_silence,
            Duration::from_secs(60)..=Duration::from_secs(24 * 3600),
        );
        // Rule ids are checked when the engine is built, as parameters are.
        let week = Duration::from_secs(7 * 24 * 3600);
        for (key, what, map) in [
            ("for", "an onset delay", &self.for_),
            ("clear_for", "a hold time", &self.clear_for),
        ] {
            for (rule, d) in map {
                if *d > week {
                    issues.push(ConfigIssue::new(
                        [PathSeg::from(key), PathSeg::from(rule.clone())],
                        format!(
                            "{what} must be at most 7days, got {}",
                            humantime::format_duration(*d)
                        ),
                    ));
                }
            }
        }
        for (rule, after) in &self.escalate_after {
            if *after < Duration::from_secs(1) || *after > Duration::from_secs(24 * 3600) {
                issues.push(ConfigIssue::new(
                    [PathSeg::from("escalate_after"), PathSeg::from(rule.clone())],
                    format!(
                        "an escalation time must be 1s to 1day, got {}",
                        humantime::format_duration(*after)
                    ),
                ));
            }
        }
        for (k, v) in &self.params {
            if !v.is_finite() {
                issues.push(ConfigIssue::new(
                    [PathSeg::from("params"), PathSeg::from(k.clone())],
                    format!("parameter {k} must be a finite number"),
                ));
            }
        }
        for (subject, s) in &self.subjects {
            for (k, v) in &s.params {
                if !v.is_finite() {
                    issues.push(ConfigIssue::new(
                        [
                            PathSeg::from("subjects"),
                            PathSeg::from(subject.clone()),
                            PathSeg::from("params"),
                            PathSeg::from(k.clone()),
                        ],
                        format!("parameter {k} must be a finite number"),
                    ));
                }
            }
        }
        // Parameter names are checked against the loaded rule files when the
        // engine is built (extra files may declare parameters of their own).
        issues
    }
}

impl RulesConfig {
    /// Compiles the configured built-in packs and the extra files, given as
    /// `(name, text)` in the order of `files`.
    pub fn rule_set(
        &self,
        extra: &[RuleSource<'_>],
        registry: &MetricRegistry,
    ) -> Result<RuleSet, RulesError> {
        let mut sources: Vec<RuleSource<'_>> =
            self.packs.iter().filter_map(|p| pack_source(p)).collect();
        sources.extend_from_slice(extra);
        RuleSet::compile(&sources, registry)
    }

    /// Engine options from this section.
    pub fn engine_options(&self) -> EngineOptions {
        let td = |d: Duration| chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
        EngineOptions {
            news2_freshness: td(self.news2_freshness),
            tick_interval: td(self.tick_interval),
            max_silence: td(self.max_silence),
            for_: self.for_.iter().map(|(k, v)| (k.clone(), td(*v))).collect(),
            clear_for: self
                .clear_for
                .iter()
                .map(|(k, v)| (k.clone(), td(*v)))
                .collect(),
            escalate_after: self
                .escalate_after
                .iter()
                .map(|(k, v)| (k.clone(), td(*v)))
                .collect(),
            params: self.params.clone(),
            ..EngineOptions::default()
        }
    }

    /// Builds the engine: options, then every subject's parameter overrides.
    pub fn engine(&self, rules: RuleSet) -> Result<Engine, EngineError> {
        let mut engine = Engine::new(rules, self.engine_options())?;
        for (subject, s) in &self.subjects {
            if !s.params.is_empty() {
                engine.set_params(&SubjectId::from(subject.as_str()), s.params.clone())?;
            }
        }
        Ok(engine)
    }
}

/// A table of durations in humantime syntax (`news2 = "30m"`).
mod humantime_map {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct D(#[serde(with = "humantime_serde")] Duration);

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let m: BTreeMap<&String, D> = map.iter().map(|(k, v)| (k, D(*v))).collect();
        m.serialize(s)
    }

    pub(super) fn deserialize<'de, D2: Deserializer<'de>>(
        d: D2,
    ) -> Result<BTreeMap<String, Duration>, D2::Error> {
        let m = BTreeMap::<String, D>::deserialize(d)?;
        Ok(m.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_every_pack_and_validate() {
        let c: RulesConfig = toml::from_str("").unwrap();
        assert_eq!(c, RulesConfig::default());
        assert!(c.validate(&MetricRegistry::default()).is_empty());
        let rules = c.rule_set(&[], &MetricRegistry::default()).unwrap();
        assert!(rules.rules().len() > 20);
        c.engine(rules).unwrap();
    }

    #[test]
    fn reports_every_issue_with_its_path() {
        let c: RulesConfig = toml::from_str(
            "packs = [\"chronic\", \"cardiac\", \"chronic\"]\nnews2_freshness = \"10s\"\ntick_interval = \"5m\"\n[subjects.bed-1.params]\nx = nan\n",
        )
        .unwrap();
        let issues = c.validate(&MetricRegistry::default());
        let text: Vec<String> = issues
            .iter()
            .map(|i| format!("{}: {}", i.dotted_path(), i.message))
            .collect();
        assert_eq!(
            text,
            vec![
                "packs.[1]: unknown rule pack 'cardiac'; built-in packs: news2, chronic, infusion, technical",
                "packs.[2]: pack 'chronic' is listed twice",
                "news2_freshness: news2_freshness must be between 1m and 1day, got 10s",
                "tick_interval: tick_interval must be between 100ms and 1m, got 5m",
                "subjects.bed-1.params.x: parameter x must be a finite number",
            ]
        );
    }

    #[test]
    fn unknown_parameter_override_fails_engine_build() {
        let c: RulesConfig = toml::from_str("[params]\nsys_crisys = 170\n").unwrap();
        let rules = c.rule_set(&[], &MetricRegistry::default()).unwrap();
        let err = c.engine(rules).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unknown rule parameter 'sys_crisys'"),
            "{err}"
        );
    }
}
