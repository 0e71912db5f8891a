//! Commands that do not run the gateway: replaying recorded data through the
//! rules and running rule tests. Thin shells over `wardgate-rules`.

pub mod devices;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::ExitCode;

use wardgate_model::MetricRegistry;
use wardgate_rules::{Engine, EngineOptions, packs, replay, run_rule_tests};

use crate::config;

/// `wardgate replay`: recorded JSON lines in, alert transitions and derived
/// readings out (stdout). Exit 0 on success, 1 on a bad input line, 2 on an
/// invalid configuration.
pub fn replay_file(input: &Path, config_file: Option<&Path>) -> ExitCode {
    let mut engine = match config_file {
        Some(file) => match config::load(file) {
            Ok(c) => match c.engine() {
                Ok(mut engine) => {
                    for s in &c.subjects {
                        // Profiles known before the first input line; nothing is open yet.
                        let _ = engine.set_profile(
                            chrono::DateTime::UNIX_EPOCH,
                            &s.id,
                            s.profile.clone(),
                        );
                    }
                    engine
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    return ExitCode::from(2);
                }
            },
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::from(2);
            }
        },
        None => match packs::builtin_rule_set()
            .map_err(|e| e.to_string())
            .and_then(|rules| {
                Engine::new(rules, EngineOptions::default()).map_err(|e| e.to_string())
            }) {
            Ok(engine) => engine,
            Err(e) => {
                eprintln!("built-in rules: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let reader: Box<dyn BufRead> = if input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(input) {
            Ok(f) => Box::new(BufReader::new(f)),
            Err(e) => {
                eprintln!("{}: cannot open: {e}", input.display());
                return ExitCode::from(2);
            }
        }
    };
    match replay(reader, std::io::stdout().lock(), &mut engine) {
        Ok(stats) => {
            tracing::info!(
                lines = stats.lines,
                readings = stats.readings,
                alerts = stats.alerts,
                derived = stats.derived,
                "replay finished"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", input.display());
            ExitCode::FAILURE
        }
    }
}

/// `wardgate rules test FILE`: exit 0 when every case passes, 1 when one
/// fails, 2 when the test file itself is invalid.
pub fn rules_test(file: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let dir = file.parent().unwrap_or_else(|| Path::new(".")).to_owned();
    let mut load = |p: &str| std::fs::read_to_string(dir.join(p)).map_err(|e| e.to_string());
    match run_rule_tests(
        &file.display().to_string(),
        &text,
        &mut load,
        &MetricRegistry::default(),
    ) {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `wardgate decode ble`: the DESIGN.md contract — one JSON object on stdout
/// and exit 0, or one line naming the characteristic and the reason on stderr
/// and exit 1.
pub fn decode_ble(characteristic: &str, hex: &str) -> ExitCode {
    match wardgate_drivers::ble::json::decode_to_json(characteristic, hex, chrono::Utc::now()) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
