//! The disk a box needs (docs/install.md, "Disk a box needs"): a simulated
//! ward (`wardgate-sim load`) read by a real gateway for a while, with
//! every sink at once — JSONL (not rotated, measured raw and gzipped as the
//! rotation compresses it), InfluxDB into a real victoria-metrics, and an
//! MQTT sink whose broker is down, so the spool keeps every record as it
//! would through an outage. Prints what each grew by during the
//! measurement, and that per device per day.
//!
//! ```console
//! $ cargo build -p wardgate -p wardgate-sim
//! $ cargo run -p wardgate-e2e --example disk -- [DEVICES] [SECONDS] [MIX]
//! ```
//! Defaults: 60 devices, 300 s, `ble=60,modbus=20,pump=20` (the load
//! simulator's, one batch of readings per device per second).

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use wardgate_e2e::{
    Gateway, VictoriaMetrics, free_port, http, lines, start_load, wait_for, wait_port,
};

/// Bytes in every file under `dir`.
fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => du(&e.path()),
                _ => e.metadata().map_or(0, |m| m.len()),
            })
            .sum()
    })
}

/// `wardgate_spool_telemetry_bytes` and `wardgate_spool_alerts` style gauges.
fn gauge(port: u16, name: &str) -> u64 {
    let (_, body) = http(port, "GET", "/metrics", None, "");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn gzip_len(bytes: &[u8]) -> u64 {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("gzip in memory");
    e.finish().expect("gzip in memory").len() as u64
}

struct Figures {
    jsonl: u64,
    spool_file: u64,
    spool_telemetry: u64,
    vm: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let devices: usize = args.first().map_or(60, |a| a.parse().expect("DEVICES"));
    let seconds: u64 = args.get(1).map_or(300, |a| a.parse().expect("SECONDS"));
    let mix = args
        .get(2)
        .map_or("ble=60,modbus=20,pump=20", String::as_str);

    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let fragment = dir.path().join("load.toml");
    let count = devices.to_string();
    let mut sim = start_load(
        &[
            "--devices",
            &count,
            "--mix",
            mix,
            "--alert-every",
            "10s",
            "--duration",
            "0s",
        ],
        &fragment,
    );

    let port = free_port();
    let down = free_port(); // nothing listens: the MQTT broker is "down"
    let config = format!(
        r#"[gateway]
site = "disk"
ward = "ward-1"
id = "gw-disk"

[http]
listen = "127.0.0.1:{port}"

[spool]
path = "{{dir}}/spool.redb"
max_bytes = 17179869184

[[sinks]]
type = "jsonl"
path = "{{dir}}/events.jsonl"
rotate_max_bytes = 0
rotate_max_age = "0s"

[[sinks]]
type = "influxdb"
url = "{url}"
org = "disk"
bucket = "disk"

[[sinks]]
type = "mqtt"
required = false
broker = {{ host = "127.0.0.1", port = {down}, client_id = "gw-disk" }}

{fragment}"#,
        url = vm.url(),
        fragment = std::fs::read_to_string(&fragment).expect("fragment")
    );
    let mut gw = Gateway::start(&config);
    wait_port(port);
    let jsonl = gw.path("events.jsonl");
    // Every device delivering before the window opens.
    wait_for("the first readings", || {
        (lines(&jsonl).len() > devices * 5).then_some(())
    });
    let take = |gw: &Gateway| {
        let _ = http(vm.port, "GET", "/internal/force_flush", None, "");
        Figures {
            jsonl: std::fs::metadata(gw.path("events.jsonl")).map_or(0, |m| m.len()),
            spool_file: std::fs::metadata(gw.path("spool.redb")).map_or(0, |m| m.len()),
            spool_telemetry: gauge(port, "wardgate_spool_telemetry_bytes"),
            vm: du(vm.dir()),
        }
    };
    let before = take(&gw);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let after = take(&gw);
    let elapsed = start.elapsed().as_secs_f64();
    let text = std::fs::read(&jsonl).expect("jsonl");
    let window = &text[usize::try_from(before.jsonl).unwrap_or(0)..];
    let window = &window[..usize::try_from(after.jsonl - before.jsonl)
        .unwrap_or(0)
        .min(window.len())];
    let records = String::from_utf8_lossy(window).lines().count();
    gw.stop();
    let _ = sim.kill();
    let _ = sim.wait();

    let per_day = |bytes: u64| bytes as f64 / devices as f64 / elapsed * 86_400.0 / 1e6;
    println!(
        "{devices} devices ({mix}), {elapsed:.0} s, {records} records ({:.1} per device per second)",
        records as f64 / devices as f64 / elapsed
    );
    println!("| what | bytes in the window | MB per device per day |");
    println!("| --- | --- | --- |");
    for (what, bytes) in [
        ("JSONL, plain", after.jsonl - before.jsonl),
        ("JSONL, gzip (rotated files)", gzip_len(window)),
        (
            "spool, telemetry held while a sink is down",
            after.spool_telemetry.saturating_sub(before.spool_telemetry),
        ),
        (
            "spool file growth meanwhile",
            after.spool_file.saturating_sub(before.spool_file),
        ),
        (
            "victoria-metrics data directory",
            after.vm.saturating_sub(before.vm),
        ),
    ] {
        println!("| {what} | {bytes} | {:.2} |", per_day(bytes));
    }
    println!(
        "spool file at the end: {} bytes; victoria-metrics directory at the end: {} bytes",
        after.spool_file, after.vm
    );
}
