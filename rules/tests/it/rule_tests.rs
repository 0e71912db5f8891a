//! `rules test`: the example file in config/rules/ passes, and a failing case
//! is reported the way a rule author can act on.

use wardgate_model::MetricRegistry;
use wardgate_rules::{RuleTestError, run_rule_tests};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/rules");

fn load(path: &str) -> Result<String, String> {
    std::fs::read_to_string(format!("{DIR}/{path}")).map_err(|e| e.to_string())
}

#[test]
fn example_rule_tests_pass() {
    let text = load("example.test.toml").unwrap();
    let report = run_rule_tests(
        "example.test.toml",
        &text,
        &mut load,
        &MetricRegistry::default(),
    )
    .unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.cases.len(), 6);
    assert!(
        report
            .to_string()
            .ends_with("example.test.toml: 6 tests, 0 failed"),
        "{report}"
    );
}

#[test]
fn failing_case_names_missing_and_unexpected_transitions() {
    let text = r#"
packs = ["chronic"]
[[tests]]
name = "wrong expectation"
input = [{ at = "0s", metric = "glucose", value = 60 }]
expect = [{ at = "0s", rule = "hypoglycaemia", transition = "raised", priority = "high" }]
"#;
    let report = run_rule_tests("t.toml", text, &mut load, &MetricRegistry::default()).unwrap();
    assert!(!report.passed());
    // 60 mg/dL is level 1 (medium), not level 2: the priority differs.
    assert_eq!(
        report.to_string(),
        "FAIL  wrong expectation\n      missing: at 0s subject-1 hypoglycaemia Raised\n      unexpected: at 0s subject-1 hypoglycaemia Raised (state Active, medium, level 0, \"Hypoglycaemia level 1: glucose 60 mg/dL\")\nt.toml: 1 tests, 1 failed"
    );
}

#[test]
fn broken_test_files_and_rule_files_are_located() {
    let err = run_rule_tests(
        "t.toml",
        "packs = [\"chronic\"]\n[[tests]]\nnam = \"x\"\n",
        &mut load,
        &MetricRegistry::default(),
    )
    .unwrap_err();
    assert!(matches!(err, RuleTestError::Parse { line: 3, .. }), "{err}");
    let mut bad_rules = |_: &str| {
        Ok("[[rules]]\nid = \"x\"\nwhen = \"spo2 <\"\npriority = \"low\"\nkind = \"advisory\"\nmessage = \"m\"\n".to_owned())
    };
    let err = run_rule_tests(
        "t.toml",
        "rule_files = [\"mine.toml\"]\n",
        &mut bad_rules,
        &MetricRegistry::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mine.toml:3:15: rule 'x': when: expected a value, found end of expression"
    );
    let mut missing = |p: &str| Err(format!("{p}: no such file"));
    let err = run_rule_tests(
        "t.toml",
        "rule_files = [\"gone.toml\"]\n",
        &mut missing,
        &MetricRegistry::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "t.toml: cannot load rule file gone.toml: gone.toml: no such file"
    );
}

#[test]
fn the_test_file_example_in_the_module_docs_passes() {
    let src = include_str!("../../src/testfile.rs");
    let start = src.find("//! ```toml\n").expect("test file example") + "//! ```toml\n".len();
    let len = src[start..].find("//! ```").unwrap();
    let mut text = String::new();
    for l in src[start..start + len].lines() {
        text.push_str(l.strip_prefix("//!").unwrap().trim_start_matches(' '));
        text.push('\n');
    }
    // The example names a site rule file; an empty one will do.
    let mut local = |p: &str| {
        assert_eq!(p, "local.toml");
        Ok(String::new())
    };
    let report = run_rule_tests("doc.toml", &text, &mut local, &MetricRegistry::default()).unwrap();
    assert!(report.passed(), "{report}\n{text}");
    assert_eq!(report.cases.len(), 1);
}

#[test]
fn the_rule_file_example_in_the_docs_compiles() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/rules.md")).unwrap();
    let start = docs.find("```toml\n[params]").expect("rule file example") + "```toml\n".len();
    let len = docs[start..].find("```").unwrap();
    let text = &docs[start..start + len];
    let rules = wardgate_rules::RuleSet::compile(
        &[wardgate_rules::RuleSource {
            name: "docs/rules.md",
            text,
        }],
        &MetricRegistry::default(),
    )
    .unwrap();
    assert_eq!(rules.rules()[0].id.as_str(), "copd_spo2_low");
}
