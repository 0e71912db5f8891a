//! `wardgate run`: starts, writes JSONL, and on SIGINT or SIGTERM stops the
//! drivers, drains the pipeline and flushes the sink before exiting 0.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use wardgate_model::{Event, Transition};

use crate::wardgate;

fn config(out: &Path) -> String {
    format!(
        r#"
[gateway]
site = "test-site"
ward = "test-ward"
id = "gw-test"

[[subjects]]
id = "bed-1"
kind = "bed"
devices = ["hr-1"]

[[devices]]
id = "hr-1"
type = "synthetic"
interval = "20ms"
signals = [{{ metric = "heart_rate", base = 72 }}, {{ metric = "spo2", base = 97 }}]

[[sinks]]
type = "jsonl"
path = "{}"
"#,
        out.display()
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls until `path` holds at least `n` lines (the gateway flushes as it goes).
fn wait_for_lines(child: &mut Child, path: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines(path).len() < n {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("wardgate exited early with {status}");
        }
        assert!(Instant::now() < deadline, "no {n} JSONL lines within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "wardgate did not stop within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stops_cleanly_on(signal: Signal, log_format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, config(&out)).unwrap();

    let mut child = wardgate()
        .args(["--log-format", log_format, "run", "--config"])
        .arg(&cfg)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lines(&mut child, &out, 10);
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let status = wait_exit(&mut child);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");
    // Drivers ending because of the stop are not failures.
    assert!(!stderr.contains("stopped before shutdown"), "{stderr}");
    if log_format == "json" {
        // One JSON object per log line, for collectors; the text as fields.
        let logs: Vec<serde_json::Value> = stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let messages: Vec<&str> = logs.iter().filter_map(|l| l["message"].as_str()).collect();
        assert!(
            messages.iter().any(|m| m.starts_with("stop requested")),
            "{messages:?}"
        );
        let stopped = logs
            .iter()
            .find(|l| l["message"] == "wardgate stopped")
            .unwrap();
        stopped["written"].as_str().unwrap().clone_into(&mut stderr);
    } else {
        assert!(stderr.contains("stop requested"), "{stderr}");
        assert!(stderr.contains("wardgate stopped"), "{stderr}");
    }

    // Every line is one complete event; the file ends with a newline (flushed).
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with('\n'));
    let events: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(matches!(&events[0], Event::DeviceStatus(s) if s.device.id.as_str() == "hr-1"));
    let readings: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Reading(r) => Some(r),
            _ => None,
        })
        .collect();
    assert!(readings.len() >= 9);
    assert!(readings.iter().all(|r| r.subject.as_str() == "bed-1"));
    assert!(
        readings
            .iter()
            .any(|r| r.metric.name() == "spo2" && r.value == 97.0)
    );

    // The summary counts what the sink wrote: nothing was left in a queue.
    let written = format!("\"jsonl\": {}", events.len());
    assert!(
        stderr.contains(&written),
        "expected {written} in:\n{stderr}"
    );
}

#[test]
fn sigint_drains_and_flushes() {
    stops_cleanly_on(Signal::SIGINT, "human");
}

#[test]
fn sigterm_drains_and_flushes_with_json_logs() {
    stops_cleanly_on(Signal::SIGTERM, "json");
}

#[test]
fn unopenable_sink_fails_at_start_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, config(Path::new("/nonexistent/dir/events.jsonl"))).unwrap();
    let out = wardgate()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir/events.jsonl"));
}

/// Alert transitions are committed (and reach the sinks) at once; telemetry
/// waits for `[spool] flush_interval`, here far longer than the test needs to
/// see the alert, and is all committed at a clean stop.
#[test]
fn alerts_do_not_wait_for_the_telemetry_flush() {
    let mut gw = crate::Running::start(
        r#"
[spool]
flush_interval = "10s"

[[subjects]]
id = "home-1"
kind = "bed"
devices = ["meter"]

[[devices]]
id = "meter"
type = "synthetic"
interval = "100ms"
signals = [{ metric = "glucose", base = 300, amplitude = 0, period = "60s", decimals = 0 }]
"#,
    );
    let is_reading = |e: &Event| matches!(e, Event::Reading(_));
    let is_raised = |e: &Event| matches!(e, Event::Alert(a) if a.rule.as_ref() == "hyperglycaemia" && a.transition == Transition::Raised);
    gw.wait_event("hyperglycaemia alert", is_raised);
    // The reading that raised the alert is still waiting for its group
    // commit (10 s away), so the sink has no reading yet.
    assert!(
        !gw.events().iter().any(is_reading),
        "telemetry was committed before flush_interval elapsed"
    );
    let all = gw.stop();
    assert!(
        all.iter().filter(|e| is_reading(e)).count() >= 1,
        "the readings are committed at the stop"
    );
}
