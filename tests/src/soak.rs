//! A soak run: a simulated ward (`wardgate-sim load`, BLE patches, Modbus
//! sensors and pumps on their real transports, with scripted alert events)
//! read by a real `wardgate run` for a long while, sampling what grows when
//! something leaks: resident memory, open file descriptors, threads and the
//! spool file. `bench/soak.rs` runs it for an hour and prints the samples;
//! the short version in the tests asserts that nothing grows after warm-up.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::Gateway;

/// How big and how long.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub devices: usize,
    pub duration: Duration,
    pub every: Duration,
}

/// One sample of the gateway process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub seconds: u64,
    pub rss_kib: u64,
    pub fds: usize,
    pub threads: u64,
    /// Tasks alive in the gateway's async runtime (`wardgate_tasks`).
    pub tasks: u64,
    pub spool_bytes: u64,
}

impl Sample {
    pub const HEADER: &'static str = "seconds,rss_kib,fds,threads,tasks,spool_bytes";

    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{}",
            self.seconds, self.rss_kib, self.fds, self.threads, self.tasks, self.spool_bytes
        )
    }
}

fn status_field(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `wardgate_tasks` from the gateway's `/metrics`.
fn tasks(port: u16) -> u64 {
    let (_, body) = crate::http(port, "GET", "/metrics", None, "");
    body.lines()
        .find_map(|l| l.strip_prefix("wardgate_tasks "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn sample(pid: u32, port: u16, spool: &Path, seconds: u64) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    Sample {
        seconds,
        rss_kib: status_field(&status, "VmRSS:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count),
        threads: status_field(&status, "Threads:"),
        tasks: tasks(port),
        spool_bytes: std::fs::metadata(spool).map_or(0, |m| m.len()),
    }
}

/// Runs the soak, calling `each` with every sample as it is taken.
pub fn run(opts: &SoakOptions, mut each: impl FnMut(&Sample)) -> Vec<Sample> {
    let dir = tempfile::tempdir().expect("tempdir");
    let fragment = dir.path().join("load.toml");
    let devices = opts.devices.to_string();
    let mut sim = crate::start_load(
        &[
            "--devices",
            &devices,
            "--alert-every",
            "10s",
            "--duration",
            "0s",
        ],
        &fragment,
    );
    let port = crate::free_port();
    let config = format!(
        "[gateway]\nsite = \"soak\"\nward = \"ward-1\"\nid = \"gw-soak\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n[spool]\npath = \"{{dir}}/spool.redb\"\n\n[[sinks]]\ntype = \"jsonl\"\npath = \"{{dir}}/events.jsonl\"\n\n{}",
        std::fs::read_to_string(&fragment).expect("fragment")
    );
    let mut gw = Gateway::start(&config);
    let pid = gw.pid().expect("running");
    crate::wait_port(port);
    let spool = gw.path("spool.redb");
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < opts.duration {
        std::thread::sleep(
            opts.every
                .min(opts.duration.saturating_sub(start.elapsed())),
        );
        let s = sample(pid, port, &spool, start.elapsed().as_secs());
        each(&s);
        samples.push(s);
    }
    gw.stop();
    let _ = sim.kill();
    let _ = sim.wait();
    samples
}
