//! Integration tests of the `wardgate` binary: one test binary, one module per area.

mod assignment;
mod at_rest;
mod ble;
mod check_config;
mod devices;
mod faults;
mod fhir;
mod first_run;
mod generate;
mod hl7v2;
mod http;
mod interop;
mod metrics;
mod modbus;
mod pump;
mod rotation;
mod run;
mod service;
mod supervision;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use wardgate_model::Event;

/// The `wardgate` binary Cargo built for these tests.
fn wardgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wardgate"));
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs `cmd` to its end, asserts it succeeded (showing its stderr if
/// not) and returns its standard output.
fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A child process killed when the test ends, passing or not.
struct Guarded(std::process::Child);

impl std::ops::Deref for Guarded {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Guarded {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

/// `wardgate run` in a temporary directory: the test's devices and subjects,
/// with a gateway identity and a JSONL sink (`events.jsonl`) added. Its log
/// is printed if the test fails; the process is killed if still running.
struct Running {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Running {
    fn start(devices_and_subjects: &str) -> Self {
        Self::start_env(devices_and_subjects, &[])
    }

    /// As [`Running::start`], with extra environment variables.
    fn start_env(devices_and_subjects: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("events.jsonl");
        let cfg = dir.path().join("gw.toml");
        std::fs::write(
            &cfg,
            format!(
                "[gateway]\nsite = \"t\"\nward = \"w\"\nid = \"gw\"\n{devices_and_subjects}\n[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\n",
                out.display()
            ),
        )
        .unwrap();
        let child = wardgate()
            .envs(env.iter().copied())
            .args(["run", "--config"])
            .arg(&cfg)
            .stderr(std::fs::File::create(dir.path().join("gw.log")).unwrap())
            .spawn()
            .unwrap();
        Self { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gw.log")).unwrap_or_default()
    }

    fn events(&self) -> Vec<Event> {
        events(&self.dir.path().join("events.jsonl"))
    }

    /// Polls the JSONL file until `pred` holds for some event.
    fn wait_event(&mut self, what: &str, pred: impl Fn(&Event) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.events().iter().any(&pred) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("wardgate exited early with {status}");
            }
            assert!(Instant::now() < deadline, "no {what} in the JSONL sink");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT, then a clean exit within the bound; returns every event written.
    fn stop(&mut self) -> Vec<Event> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT).unwrap();
        assert!(run::wait_exit(&mut self.child).success());
        self.events()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("gw.log")).unwrap_or_default();
            eprintln!("gateway log:\n{log}");
        }
    }
}

/// The ward the EMR sinks' tests chart from: bed-1 (its monitor `mon-1`
/// sends `monitor_signals` every 100 ms) with the MRN `mrn`, bed-2 with a
/// monitor but no MRN, and a room with a fridge probe — only bed-1 goes to
/// the record.
pub(crate) fn emr_ward(monitor_signals: &str, mrn: &str) -> String {
    format!(
        r#"
[[subjects]]
id = "bed-1"
kind = "bed"
devices = ["mon-1"]

[[subjects]]
id = "bed-2"
kind = "bed"
devices = ["mon-2"]

[[subjects]]
id = "fridge"
kind = "room"
devices = ["fridge-1"]

[[devices]]
id = "mon-1"
type = "synthetic"
interval = "100ms"
signals = {monitor_signals}

[[devices]]
id = "mon-2"
type = "synthetic"
interval = "100ms"
signals = [{{ metric = "heart_rate", base = 70 }}]

[[devices]]
id = "fridge-1"
type = "synthetic"
interval = "100ms"
signals = [{{ metric = "fridge_temp", base = 5 }}]

[patients]
system = "urn:oid:2.16.840.1.113883.19.5"
authority = "WARDHOSP"
mrn = {{ bed-1 = "{mrn}" }}
"#
    )
}

/// A loopback port free now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on a loopback HTTP port: (status, body).
pub(crate) fn get(port: u16, path: &str) -> (u16, String) {
    request(port, "GET", path, "")
}

/// One HTTP/1.1 request on a loopback port: (status, body).
pub(crate) fn request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let status = r
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        r.split_once("\r\n\r\n")
            .map(|x| x.1.to_owned())
            .unwrap_or_default(),
    )
}

/// The Python with the independent validators the interoperability peers
/// use (`tests/peers/requirements.txt`, installed by scripts/test into
/// `target/interop-venv`), or `$WARDGATE_INTEROP_PYTHON`.
pub(crate) fn interop_python() -> PathBuf {
    let python = std::env::var_os("WARDGATE_INTEROP_PYTHON").map_or_else(
        || workspace().join("target/interop-venv/bin/python"),
        PathBuf::from,
    );
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which installs the Python test peers (tests/peers/requirements.txt) into target/interop-venv",
        python.display()
    );
    python
}

/// A peer from `tests/peers/` started with the interop Python; it prints
/// its bound port as its first line. Killed when dropped.
pub(crate) fn python_peer(script: &str, args: &[&str]) -> (Guarded, u16) {
    use std::io::BufRead as _;
    let mut child = Guarded(
        Command::new(interop_python())
            .arg(workspace().join("tests/peers").join(script))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{script} did not print its port: {line:?}"));
    (child, port)
}
