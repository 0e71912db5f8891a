//! The end-to-end benchmark (issue 9): mosquitto on a free loopback port, the
//! release `wardgate run` with N synthetic devices, and an MQTT subscriber
//! measuring what arrives. Run it with `bench/run.sh` (see docs/performance.md).
//!
//! Load: every subject has one synthetic device; one device in ten produces a
//! glucose signal that swings across the built-in hyperglycaemia threshold
//! (raise above 250 mg/dL), the others a heart rate. An alert is raised at the
//! timestamp of the reading that crossed; its latency is the time the
//! subscriber received the alert minus that timestamp (same host clock).
//!
//! Reported per run: readings/s received by the subscriber (telemetry lines),
//! the gateway's CPU % of one core (utime + stime from /proc/<pid>/stat over
//! the measured window), its peak RSS (VmHWM from /proc/<pid>/status), and the
//! alert latency p50 / p99 / max.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use wardgate_e2e::{Mosquitto, wait_for, wardgate_bin};

#[derive(Debug)]
enum Msg {
    Telemetry(usize),
    Raised(chrono::DateTime<chrono::Utc>, SystemTime),
}

fn config(dir: &std::path::Path, port: u16, devices: usize, interval_ms: u64) -> String {
    let mut c = format!(
        r#"
[gateway]
site = "bench"
ward = "ward-1"
id = "gw-bench"

[spool]
path = "{dir}/spool.redb"

[[sinks]]
type = "mqtt"
broker = {{ host = "127.0.0.1", port = {port}, keep_alive = "10s" }}
"#,
        dir = dir.display()
    );
    for i in 0..devices {
        let signal = if i % 10 == 0 {
            // 240 ± 20 mg/dL over 10 s: one raise (above 250) and one clear
            // (at or below 230) per period.
            r#"{ metric = "glucose", base = 240, amplitude = 20, period = "10s", decimals = 0 }"#
        } else {
            r#"{ metric = "heart_rate", base = 72, amplitude = 5, period = "60s" }"#
        };
        let _ = write!(
            c,
            "\n[[subjects]]\nid = \"bed-{i}\"\nkind = \"bed\"\ndevices = [\"dev-{i}\"]\n\n[[devices]]\nid = \"dev-{i}\"\ntype = \"synthetic\"\ninterval = \"{interval_ms}ms\"\nsignals = [{signal}]\n"
        );
    }
    c
}

fn subscribe(port: u16) -> mpsc::Receiver<Msg> {
    let mut opts = rumqttc::MqttOptions::new("bench-sub", "127.0.0.1", port);
    opts.set_clean_session(true)
        .set_keep_alive(Duration::from_secs(10))
        .set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    let (client, mut connection) = rumqttc::Client::new(opts, 1024);
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    let _ = client.subscribe("wardgate/#", rumqttc::QoS::AtLeastOnce);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let received = SystemTime::now();
                    let msg = if p.topic.ends_with("/telemetry") {
                        Msg::Telemetry(
                            p.payload
                                .split(|b| *b == b'\n')
                                .filter(|l| !l.is_empty() && !l.starts_with(b"alert,"))
                                .count(),
                        )
                    } else if p.topic.contains("/alerts/") && !p.payload.is_empty() {
                        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&p.payload) else {
                            continue;
                        };
                        if v["transition"] != "raised" {
                            continue;
                        }
                        let Some(at) = v["at"].as_str().and_then(|s| s.parse().ok()) else {
                            continue;
                        };
                        Msg::Raised(at, received)
                    } else {
                        continue;
                    };
                    if tx.send(msg).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("subscription confirmed");
    rx
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0);
    let stime: u64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    utime + stime
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Outcome {
    expected_per_s: f64,
    received_per_s: f64,
    cpu_pct: f64,
    peak_rss_mb: f64,
    latencies_ms: Vec<f64>,
}

fn run(devices: usize, interval_ms: u64, warmup: Duration, measure: Duration) -> Outcome {
    let broker = Mosquitto::start();
    let rx = subscribe(broker.port);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("gateway.toml");
    std::fs::File::create(&cfg)
        .and_then(|mut f| {
            f.write_all(config(dir.path(), broker.port, devices, interval_ms).as_bytes())
        })
        .expect("write config");
    let log = std::fs::File::create(dir.path().join("gateway.log")).expect("log");
    let mut gw: Child = Command::new(wardgate_bin())
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start wardgate");
    let pid = gw.id();
    // Ready once telemetry flows.
    wait_for("the first telemetry", || {
        rx.try_iter()
            .any(|m| matches!(m, Msg::Telemetry(_)))
            .then_some(())
    });
    std::thread::sleep(warmup);
    let _ = rx.try_iter().count();
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid);
    let mut readings = 0usize;
    let mut latencies_ms = Vec::new();
    while t0.elapsed() < measure {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
            match m {
                Msg::Telemetry(n) => readings += n,
                Msg::Raised(at, received) => latencies_ms.push(
                    received
                        .duration_since(SystemTime::from(at))
                        .unwrap_or_default()
                        .as_secs_f64()
                        * 1000.0,
                ),
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let c1 = cpu_ticks(pid);
    let peak_rss_mb = status_kb(pid, "VmHWM:") as f64 / 1024.0;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = gw.wait();
    latencies_ms.sort_by(f64::total_cmp);
    Outcome {
        expected_per_s: devices as f64 * 1000.0 / interval_ms as f64,
        received_per_s: readings as f64 / elapsed,
        cpu_pct: (c1 - c0) as f64 / clock_ticks() as f64 / elapsed * 100.0,
        peak_rss_mb,
        latencies_ms,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let devices: Vec<usize> = get("--devices", "100,1000,10000")
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let measure = Duration::from_secs(get("--duration", "30").parse().unwrap_or(30));
    let warmup = Duration::from_secs(get("--warmup", "5").parse().unwrap_or(5));
    // Sweep: readings every `interval` ms from `sweep_devices` devices.
    let sweep: Vec<u64> = get("--sweep-intervals", "100,20,10")
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let sweep_devices: usize = get("--sweep-devices", "1000").parse().unwrap_or(1000);

    println!(
        "| devices | interval | expected readings/s | received readings/s | gateway CPU % of one core | peak RSS MB | alerts | latency p50 ms | p99 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let row = |n: usize, interval: u64, o: &Outcome| {
        println!(
            "| {n} | {interval} ms | {:.0} | {:.0} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {:.1} |",
            o.expected_per_s,
            o.received_per_s,
            o.cpu_pct,
            o.peak_rss_mb,
            o.latencies_ms.len(),
            percentile(&o.latencies_ms, 50.0),
            percentile(&o.latencies_ms, 99.0),
            o.latencies_ms.last().copied().unwrap_or(f64::NAN),
        );
    };
    for &n in &devices {
        let o = run(n, 1000, warmup, measure);
        row(n, 1000, &o);
    }
    for &interval in &sweep {
        let o = run(sweep_devices, interval, warmup, measure);
        row(sweep_devices, interval, &o);
    }
}
