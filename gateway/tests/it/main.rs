//! Integration tests of the `wardgate` binary: one test binary, one module per area.

mod check_config;
mod http;
mod modbus;
mod pump;
mod run;

use std::path::PathBuf;
use std::process::Command;

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
