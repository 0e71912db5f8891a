#![no_main]
//! Any text as a rule expression: through the parser alone, and as the
//! `when` of a rule in a rule file compiled by `RuleSet::compile` (parser,
//! type checker, name resolution and the file/line/column mapping of errors).
//!
//! Asserts, beyond "no panic" (and no stack overflow):
//! - a parsed expression, printed with every operation in parentheses,
//!   parses back to the same printed tree;
//! - a parse error points at a byte offset inside the text, on a character
//!   boundary, and says something;
//! - a rule file error names the file and a line and column of at least 1.

use libfuzzer_sys::fuzz_target;
use wardgate_model::MetricRegistry;
use wardgate_rules::{RuleSet, RuleSource, parse_expression};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };

    match parse_expression(src) {
        Ok(printed) => {
            assert_eq!(
                parse_expression(&printed).as_ref(),
                Ok(&printed),
                "source {src:?}"
            );
        }
        Err((offset, message)) => {
            assert!(offset <= src.len(), "offset {offset} of {src:?}");
            assert!(src.is_char_boundary(offset), "offset {offset} of {src:?}");
            assert!(!message.is_empty());
        }
    }

    // The same text as a rule's condition, in a file that is otherwise valid.
    let when = toml::Value::String(src.to_owned()).to_string();
    let text = format!(
        "[params]\nlimit = 90\n\n[[rules]]\nid = \"fuzz\"\nwhen = {when}\npriority = \"high\"\nkind = \"physiological\"\nmessage = \"{{spo2}}\"\n"
    );
    let registry = MetricRegistry::default();
    if let Err(e) = RuleSet::compile(
        &[RuleSource {
            name: "fuzz.toml",
            text: &text,
        }],
        &registry,
    ) {
        assert!(!e.issues.is_empty());
        for issue in &e.issues {
            assert_eq!(issue.file, "fuzz.toml");
            assert!(issue.line >= 1 && issue.column >= 1, "{issue}");
        }
        let _ = e.to_string();
    }
});
