//! Integration tests of the `wardgate` binary: one test binary, one module per area.

mod ble;
mod check_config;
mod http;
mod modbus;
mod pump;
mod run;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wardgate_model::Event;

/// The `wardgate` binary Cargo built for these tests.
fn wardgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wardgate"));
    cmd.env_remove("RUST_LOG");
    cmd
}

/// The workspace root (configs are referenced relative to it).
fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every event in a JSONL sink file.
fn events(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Polls the JSONL file until `pred` holds for some event.
fn wait_event(
    child: &mut std::process::Child,
    path: &Path,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !events(path).iter().any(&pred) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("wardgate exited early with {status}");
        }
        assert!(Instant::now() < deadline, "no {what} in {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Shows the gateway's log when the test fails.
struct PrintLogOnPanic(PathBuf);

impl Drop for PrintLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "gateway log:\n{}",
                std::fs::read_to_string(&self.0).unwrap_or_default()
            );
        }
    }
}
