#![no_main]
//! Any text as a configuration file, through the loaders `wardgate
//! check-config` uses: the gateway's (`config::parse`: TOML, every section's
//! validation, rule files and the rules engine) and the bridge's
//! (`bridge::config::parse`).
//!
//! The gateway's file is named as if it sat in the repository's `config/`
//! directory, so `[rules] files = [...]` can name the shipped rule files. A
//! text naming a rule file by absolute path or through `..` is skipped: the
//! loader would read it (a fuzzer that found `/dev/zero` would hang).
//!
//! Asserts, beyond "no panic":
//! - a rejected file has at least one error, each at a line and column of at
//!   least 1 and inside the text, with the offending line quoted without its
//!   line break — for the bridge's file as for the gateway's (one loader).

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use toml::de::{DeTable, DeValue};

/// Whether `[rules] files` could name a file outside `config/`.
fn reads_outside(text: &str) -> bool {
    let (root, _) = DeTable::parse_recoverable(text);
    let Some(rules) = root.get_ref().get("rules") else {
        return false;
    };
    let DeValue::Table(rules) = rules.get_ref() else {
        return false;
    };
    let Some(files) = rules.get("files") else {
        return false;
    };
    let DeValue::Array(files) = files.get_ref() else {
        return false;
    };
    files.iter().any(|f| match f.get_ref() {
        DeValue::String(s) => Path::new(s.as_ref()).components().any(|c| {
            matches!(
                c,
                Component::RootDir | Component::Prefix(_) | Component::ParentDir
            )
        }),
        _ => false,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if reads_outside(text) {
        return;
    }
    let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/fuzz.toml"));
    let lines = text.split('\n').count();
    let located = |e: &wardgate::config::ConfigErrors| {
        assert!(!e.errors.is_empty());
        for err in &e.errors {
            let p = err.position;
            assert!(p.line >= 1 && p.column >= 1, "{p:?}");
            assert!(p.line <= lines, "{p:?} in {lines} lines");
            assert!(!err.line_text.contains('\n'));
            assert!(!err.message.is_empty());
        }
        let _ = e.to_string();
    };
    if let Err(e) = wardgate::config::parse(file, text) {
        located(&e);
    }
    // The bridge's loader is the gateway's: the same guarantees.
    if let Err(e) = wardgate::bridge::config::parse(file, text) {
        located(&e);
    }
});
