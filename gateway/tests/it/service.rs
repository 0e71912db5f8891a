//! The service-manager contract: systemd's notify protocol spoken to a real
//! `NOTIFY_SOCKET`, and the shipped unit file accepted by `systemd-analyze`.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{wardgate, workspace};

const CONFIG: &str = r#"
[gateway]
site = "t"
ward = "w"
id = "gw"

[[subjects]]
id = "bed-1"
kind = "bed"
devices = ["hr-1"]

[[devices]]
id = "hr-1"
type = "synthetic"
interval = "100ms"
signals = [{ metric = "heart_rate", base = 72 }]

[[sinks]]
type = "jsonl"
path = "-"
"#;

/// Datagrams received until `until` holds for one of them (each datagram
/// is one or more `KEY=value` lines).
fn receive_until(sock: &UnixDatagram, seen: &mut Vec<String>, until: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "no such notification; got {seen:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = until(&text);
            seen.push(text);
            if done {
                return;
            }
        }
    }
}

#[test]
fn ready_watchdog_and_stopping_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let mut child = crate::Guarded(
        wardgate()
            .args(["run", "--config"])
            .arg(&cfg)
            .env("NOTIFY_SOCKET", &socket)
            // A 1 s watchdog: a ping every half second.
            .env("WATCHDOG_USEC", "1000000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut seen = Vec::new();
    receive_until(&sock, &mut seen, |m| m.lines().any(|l| l == "READY=1"));
    assert!(
        seen.last()
            .unwrap()
            .contains("STATUS=running: 1 devices, 1 sinks"),
        "{seen:?}"
    );
    // Pings keep coming while the gateway works.
    let before = seen.len();
    receive_until(&sock, &mut seen, |m| m == "WATCHDOG=1\n");
    receive_until(&sock, &mut seen, |m| m == "WATCHDOG=1\n");
    assert!(seen.len() >= before + 2);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    receive_until(&sock, &mut seen, |m| m.lines().any(|l| l == "STOPPING=1"));
    assert!(crate::run::wait_exit(&mut child).success());
}

#[test]
fn the_shipped_unit_file_passes_systemd_analyze_verify() {
    let unit =
        std::fs::read_to_string(workspace().join("packaging/systemd/wardgate.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    // `verify` checks that the executables exist: point it at this build.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("wardgate.service");
    std::fs::write(
        &local,
        unit.replace("/usr/bin/wardgate", env!("CARGO_BIN_EXE_wardgate")),
    )
    .unwrap();
    // Nor are the man pages installed here (scripts/package-check verifies
    // the installed unit with them).
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&local)
        .output()
        .expect("systemd-analyze (Debian package systemd) is needed for this test");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It exits 0 even for lines it ignores: any output is a problem.
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
