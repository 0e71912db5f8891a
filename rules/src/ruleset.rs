//! Rule files: TOML parsing, validation and compilation into a [`RuleSet`].
//! Never reads files itself: the caller hands in each file's name and text.
//! Every error names the file, the line and column, and the rule.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::TimeDelta;
use serde::Deserialize;
use toml::Spanned;
use wardgate_model::{AlertKind, Condition, MetricRegistry, Priority, RuleId};

use crate::expr::{self, Deps, Expr, ExprError, Piece, Resolve, Slot, SlotTable};

/// One rule file's name (for messages) and text.
#[derive(Clone, Copy, Debug)]
pub struct RuleSource<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// One problem in a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleIssue {
    pub file: String,
    /// 1-based line and column in the file.
    pub line: usize,
    pub column: usize,
    /// The rule's id, when the problem is inside a rule.
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(r) = &self.rule {
            write!(f, "rule '{r}': ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a set of rule files.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RulesError {
    pub issues: Vec<RuleIssue>,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    params: BTreeMap<String, Spanned<f64>>,
    #[serde(default)]
    rules: Vec<Spanned<RuleToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    id: Spanned<String>,
    #[serde(default)]
    description: String,
    when: Spanned<String>,
    #[serde(default, rename = "for")]
    for_: Option<Spanned<String>>,
    #[serde(default)]
    clear: Option<Spanned<String>>,
    priority: Priority,
    kind: AlertKind,
    #[serde(default)]
    applies_to: Vec<Condition>,
    message: Spanned<String>,
    #[serde(default)]
    escalate_after: Option<Spanned<String>>,
    #[serde(default)]
    latching: bool,
    #[serde(default)]
    clear_for: Option<Spanned<String>>,
    #[serde(default)]
    bands: Vec<BandToml>,
    /// What a patient at home should do, in plain words.
    #[serde(default)]
    advice: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BandToml {
    when: Spanned<String>,
    priority: Priority,
    #[serde(default)]
    message: Option<Spanned<String>>,
    #[serde(default)]
    escalate_after: Option<Spanned<String>>,
    #[serde(default, rename = "for")]
    for_: Option<Spanned<String>>,
}

/// A priority band of a rule: while its condition holds (and no earlier
/// band's does) the open alert has this priority and message.
#[derive(Clone, Debug)]
pub(crate) struct Band {
    pub(crate) priority: Priority,
    pub(crate) when: Expr,
    /// `None`: the rule's message.
    pub(crate) message: Option<Vec<Piece>>,
    /// `None`: the rule's `escalate_after`.
    pub(crate) escalate_after: Option<TimeDelta>,
    /// How long the band's condition must hold before it counts.
    pub(crate) for_: TimeDelta,
}

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: RuleId,
    pub description: String,
    /// What a patient at home should do while the alert is open, in plain
    /// words (shown on a home hub's page); `None` for ward-only rules.
    pub advice: Option<String>,
    pub priority: Priority,
    pub kind: AlertKind,
    /// Empty: every subject. Otherwise subjects with at least one of these.
    pub applies_to: Vec<Condition>,
    /// How long `when` must hold before the alert is raised (zero: at once).
    pub for_: TimeDelta,
    pub escalate_after: Option<TimeDelta>,
    pub latching: bool,
    /// How long `clear` must hold before the episode ends (zero: at once);
    /// `when` holding again within it continues the episode.
    pub clear_for: TimeDelta,
    /// The file the rule came from.
    pub file: Arc<str>,
    pub(crate) when: Expr,
    pub(crate) clear: Option<Expr>,
    pub(crate) message: Vec<Piece>,
    /// Priority bands, first match wins; none matching: `priority`.
    pub(crate) bands: Vec<Band>,
    pub(crate) deps: Deps,
}

/// A declared parameter (`[params]` in a rule file) and its default.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDecl {
    pub name: String,
    /// `NaN` (TOML `nan`) means "unset unless configured": `param()` is then missing.
    pub default: f64,
    pub file: Arc<str>,
}

/// Compiled rules from one or more files, ready for an [`crate::Engine`].
#[derive(Clone, Debug)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) params: Vec<ParamDecl>,
    pub(crate) slots: SlotTable,
}

impl RuleSet {
    /// Compiles rule files together: parameters declared in any file may be
    /// used by all; rule ids must be unique across files. Collects every
    /// problem before failing.
    pub fn compile(
        sources: &[RuleSource<'_>],
        registry: &MetricRegistry,
    ) -> Result<RuleSet, RulesError> {
        let mut issues = Vec::new();
        let mut files = Vec::new();
        for src in sources {
            match toml::from_str::<FileToml>(src.text) {
                Ok(f) => files.push((src, f)),
                Err(e) => {
                    let (line, column) = e.span().map_or((1, 1), |s| line_col(src.text, s.start));
                    issues.push(RuleIssue {
                        file: src.name.to_owned(),
                        line,
                        column,
                        rule: None,
                        message: e.message().trim().to_owned(),
                    });
                }
            }
        }

        let mut params: Vec<ParamDecl> = Vec::new();
        for (src, f) in &files {
            for (name, value) in &f.params {
                let at = line_col(src.text, value.span().start);
                if !is_snake(name) {
                    issues.push(issue(
                        src.name,
                        at,
                        None,
                        format!("parameter name '{name}' must be snake_case"),
                    ));
                }
                let v = *value.get_ref();
                if v.is_infinite() {
                    issues.push(issue(
                        src.name,
                        at,
                        None,
                        format!("parameter '{name}' must be a finite number or nan (unset)"),
                    ));
                }
                match params.iter().find(|p| p.name == *name) {
                    Some(p) if p.default.to_bits() != v.to_bits() => issues.push(issue(
                        src.name,
                        at,
                        None,
                        format!("parameter '{name}' is already declared in {} with another default ({})", p.file, p.default),
                    )),
                    Some(_) => {}
                    None => params.push(ParamDecl {
                        name: name.clone(),
                        default: v,
                        file: Arc::from(src.name),
                    }),
                }
            }
        }

        let mut names = Names {
            slots: SlotTable::default(),
            registry,
            params: &params,
        };
        // NEWS2 inputs always have slots so the engine can score without rules asking.
        for m in crate::news2::NEWS2_INPUTS {
            names.slots.slot_of(m);
        }

        let mut rules: Vec<Rule> = Vec::new();
        for (src, f) in &files {
            let file: Arc<str> = Arc::from(src.name);
            for r in &f.rules {
                let r = r.get_ref();
                let id = r.id.get_ref().clone();
                let id_at = line_col(src.text, r.id.span().start);
                let before = issues.len();
                if let Some(advice) = &r.advice {
                    let text = advice.get_ref();
                    if text.trim().is_empty()
                        || text.chars().count() > MAX_ADVICE
                        || text.chars().any(char::is_control)
                    {
                        issues.push(issue(
                            src.name,
                            line_col(src.text, advice.span().start),
                            Some(&id),
                            format!("advice must be 1 to {MAX_ADVICE} characters on one line"),
                        ));
                    }
                }
                if !is_snake(&id) {
                    issues.push(issue(
                        src.name,
                        id_at,
                        Some(&id),
                        "a rule id must be snake_case (a-z, 0-9, _)".into(),
                    ));
                }
                if let Some(prev) = rules.iter().find(|p| p.id.as_str() == id) {
                    issues.push(issue(
                        src.name,
                        id_at,
                        Some(&id),
                        format!("duplicate rule id (first defined in {})", prev.file),
                    ));
                }
                let mut deps = Deps::default();
                let mut cond = |field: &str,
                                s: &Spanned<String>,
                                deps: &mut Deps,
                                issues: &mut Vec<RuleIssue>| {
                    match expr::compile_condition(s.get_ref(), &mut names, deps) {
                        Ok(e) => Some(e),
                        Err(e) => {
                            issues.push(expr_issue(src, s, &id, field, &e));
                            None
                        }
                    }
                };
                let when = cond("when", &r.when, &mut deps, &mut issues);
                let clear = r
                    .clear
                    .as_ref()
                    .and_then(|c| cond("clear", c, &mut deps, &mut issues));
                let band_whens: Vec<Option<Expr>> = r
                    .bands
                    .iter()
                    .map(|b| cond("bands.when", &b.when, &mut deps, &mut issues))
                    .collect();
                let mut template =
                    |field: &str, s: &Spanned<String>, issues: &mut Vec<RuleIssue>| {
                        match expr::compile_template(s.get_ref(), &mut names) {
                            Ok(m) => Some(m),
                            Err(e) => {
                                issues.push(expr_issue(src, s, &id, field, &e));
                                None
                            }
                        }
                    };
                let message = template("message", &r.message, &mut issues);
                let mut bands = Vec::with_capacity(r.bands.len());
                for (b, when) in r.bands.iter().zip(band_whens) {
                    let message = match &b.message {
                        Some(m) => template("bands.message", m, &mut issues),
                        None => None,
                    };
                    if let Some(when) = when {
                        bands.push((
                            Band {
                                priority: b.priority,
                                when,
                                message,
                                escalate_after: None,
                                for_: TimeDelta::zero(),
                            },
                            (&b.escalate_after, &b.for_),
                        ));
                    }
                }
                let mut dur = |field: &str,
                               s: &Option<Spanned<String>>,
                               min_zero: bool|
                 -> Option<TimeDelta> {
                    let s = s.as_ref()?;
                    match parse_duration(s.get_ref()) {
                        Ok(d) if d > TimeDelta::zero() || (min_zero && d == TimeDelta::zero()) => {
                            Some(d)
                        }
                        Ok(_) => {
                            issues.push(issue(
                                src.name,
                                line_col(src.text, s.span().start),
                                Some(&id),
                                format!("{field} must be longer than 0"),
                            ));
                            None
                        }
                        Err(msg) => {
                            issues.push(issue(
                                src.name,
                                line_col(src.text, s.span().start),
                                Some(&id),
                                format!("{field}: {msg}"),
                            ));
                            None
                        }
                    }
                };
                let for_ = dur("for", &r.for_, true).unwrap_or_default();
                let escalate_after = dur("escalate_after", &r.escalate_after, false);
                let clear_for = dur("clear_for", &r.clear_for, true).unwrap_or_default();
                let bands: Vec<Band> = bands
                    .into_iter()
                    .map(|(mut band, (escalate_after, for_))| {
                        band.escalate_after = dur("bands.escalate_after", escalate_after, false);
                        band.for_ = dur("bands.for", for_, true).unwrap_or_default();
                        band
                    })
                    .collect();
                if issues.len() > before {
                    continue;
                }
                let (Some(when), Some(message)) = (when, message) else {
                    continue;
                };
                rules.push(Rule {
                    id: RuleId::from(id),
                    description: r.description.clone(),
                    advice: r.advice.as_ref().map(|a| a.get_ref().trim().to_owned()),
                    priority: r.priority,
                    kind: r.kind,
                    applies_to: r.applies_to.clone(),
                    for_,
                    escalate_after,
                    latching: r.latching,
                    clear_for,
                    file: file.clone(),
                    when,
                    clear,
                    message,
                    bands,
                    deps,
                });
            }
        }
        if rules.len() > usize::from(u16::MAX) {
            issues.push(RuleIssue {
                file: String::new(),
                line: 1,
                column: 1,
                rule: None,
                message: format!("at most {} rules are supported", u16::MAX),
            });
        }
        if issues.is_empty() {
            let slots = names.slots;
            Ok(RuleSet {
                rules,
                params,
                slots,
            })
        } else {
            Err(RulesError { issues })
        }
    }

    /// The compiled rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Declared parameters and their defaults.
    pub fn params(&self) -> &[ParamDecl] {
        &self.params
    }

    pub(crate) fn slot(&self, metric: &wardgate_model::Metric) -> Option<Slot> {
        self.slots.by_metric.get(metric).copied()
    }
}

struct Names<'a> {
    slots: SlotTable,
    registry: &'a MetricRegistry,
    params: &'a [ParamDecl],
}

impl Resolve for Names<'_> {
    fn metric(&mut self, name: &str) -> Option<Slot> {
        self.slots.resolve(self.registry, name)
    }
    fn param(&self, name: &str) -> Option<u16> {
        self.params
            .iter()
            .position(|p| p.name == name)
            .map(|i| i as u16)
    }
    fn param_names(&self) -> Vec<String> {
        self.params.iter().map(|p| p.name.clone()).collect()
    }
}

fn is_snake(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

/// Longest advice text: a few short sentences a patient reads at once.
const MAX_ADVICE: usize = 400;

fn issue(
    file: &str,
    (line, column): (usize, usize),
    rule: Option<&str>,
    message: String,
) -> RuleIssue {
    RuleIssue {
        file: file.to_owned(),
        line,
        column,
        rule: rule.map(str::to_owned),
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Maps an error inside a TOML string to a file position. When the string's
/// source text equals its value (no escapes: the usual case, and always for
/// '...' literal strings) the position is exact; otherwise the string's start
/// is reported and the message names the column within the expression.
fn expr_issue(
    src: &RuleSource<'_>,
    s: &Spanned<String>,
    rule: &str,
    field: &str,
    e: &ExprError,
) -> RuleIssue {
    let span = s.span();
    let raw = src.text.get(span.clone()).unwrap_or("");
    let value = s.get_ref();
    let delim = ["'''", "\"\"\"", "'", "\""]
        .into_iter()
        .find(|d| raw.starts_with(d))
        .unwrap_or("");
    let mut content_start = span.start + delim.len();
    if delim.len() == 3 {
        if src.text[content_start..].starts_with("\r\n") {
            content_start += 2;
        } else if src.text[content_start..].starts_with('\n') {
            content_start += 1;
        }
    }
    let exact = src.text.get(content_start..content_start + value.len()) == Some(value.as_str());
    let expr_col = value
        .get(..e.offset)
        .map_or(e.offset, |p| p.chars().count())
        + 1;
    if exact {
        issue(
            src.name,
            line_col(src.text, content_start + e.offset),
            Some(rule),
            format!("{field}: {}", e.message),
        )
    } else {
        issue(
            src.name,
            line_col(src.text, span.start),
            Some(rule),
            format!(
                "{field}, column {expr_col} of the expression: {}",
                e.message
            ),
        )
    }
}

/// Parses `5m`, `90s`, `3days`, `1h 30m` (humantime syntax).
pub(crate) fn parse_duration(s: &str) -> Result<TimeDelta, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("'{s}' is not a duration ({e}); write e.g. 30s, 5m, 2h, 3d"))?;
    TimeDelta::from_std(d).map_err(|_| format!("'{s}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<RuleSet, RulesError> {
        RuleSet::compile(
            &[RuleSource {
                name: "t.toml",
                text,
            }],
            &MetricRegistry::default(),
        )
    }

    #[test]
    fn errors_name_file_line_column_and_rule() {
        let text = "[params]\nx = 1\n\n[[rules]]\nid = \"low\"\nwhen = 'spo2 < param(\"y\")'\npriority = \"high\"\nkind = \"physiological\"\nmessage = \"m\"\n";
        let err = compile(text).unwrap_err();
        assert_eq!(err.issues.len(), 1);
        let i = &err.issues[0];
        // line 6 is the when; the string content starts at column 9 and
        // `"y"` is at byte 13 of the expression → column 9 + 13 = 22.
        assert_eq!((i.line, i.column), (6, 22), "{i}");
        assert_eq!(i.rule.as_deref(), Some("low"));
        assert!(
            i.to_string()
                .starts_with("t.toml:6:22: rule 'low': when: unknown parameter 'y'"),
            "{i}"
        );
    }

    #[test]
    fn collects_every_issue() {
        let text = r#"
[[rules]]
id = "Bad-Id"
when = "spo2 < 90"
priority = "high"
kind = "physiological"
message = "m"

[[rules]]
id = "two"
when = "spo2 <"
clear = "hr > 1"
for = "5 parsecs"
priority = "high"
kind = "physiological"
message = "{nope}"
"#;
        let err = compile(text).unwrap_err();
        let msgs: Vec<String> = err.issues.iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 5, "{msgs:#?}");
        assert!(
            msgs[0].starts_with("t.toml:3:6: rule 'Bad-Id': a rule id must be snake_case"),
            "{}",
            msgs[0]
        );
        // "spo2 <" content begins at column 9; end of expression is byte 6 → column 15.
        assert!(
            msgs[1].starts_with("t.toml:11:15: rule 'two': when: expected a value"),
            "{}",
            msgs[1]
        );
        assert!(
            msgs[2].starts_with("t.toml:12:10: rule 'two': clear: unknown metric 'hr'"),
            "{}",
            msgs[2]
        );
        assert!(
            msgs[3].contains("message: unknown metric 'nope'"),
            "{}",
            msgs[3]
        );
        assert!(
            msgs[4].starts_with("t.toml:13:7: rule 'two': for: '5 parsecs' is not a duration"),
            "{}",
            msgs[4]
        );
    }

    #[test]
    fn toml_syntax_and_unknown_keys_are_located() {
        let err = compile("[[rules]]\nid = \"a\"\nwhen = \"spo2 < 1\"\npriority = \"urgent\"\nkind = \"technical\"\nmessage = \"m\"\n").unwrap_err();
        assert_eq!(err.issues[0].line, 4, "{err}");
        assert!(err.issues[0].message.contains("urgent"), "{err}");
        let err = compile("[[rules]]\nid = \"a\"\nwhen = \"spo2 < 1\"\npriority = \"high\"\nkind = \"technical\"\nmessage = \"m\"\nlatched = true\n").unwrap_err();
        assert_eq!(err.issues[0].line, 7, "{err}");
    }

    #[test]
    fn escaped_strings_fall_back_to_expression_column() {
        let text = "[[rules]]\nid = \"a\"\nwhen = \"alarm(\\\"x\\\") and zz > 1\"\npriority = \"high\"\nkind = \"technical\"\nmessage = \"m\"\n";
        let err = compile(text).unwrap_err();
        // value: alarm("x") and zz > 1 ; 'zz' at byte 15 → column 16
        assert_eq!(
            err.issues[0].to_string(),
            "t.toml:3:8: rule 'a': when, column 16 of the expression: unknown metric 'zz' (a metric name, or a function call like news2())"
        );
    }
}
