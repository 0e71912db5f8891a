//! The end-to-end benchmark (issue 9): mosquitto on a free loopback port,
//! `wardgate-sim load` (simulated BLE patches, Modbus TCP sensors and infusion
//! pumps, each on its real transport), the release `wardgate run` reading
//! them, and an MQTT subscriber measuring what arrives. Run it with
//! `bench/run.sh` (see docs/performance.md).
//!
//! Reported per run:
//! - readings/s received by the subscriber (reading lines of the telemetry
//!   messages) against the rate the simulated devices produce;
//! - telemetry lag: subscriber receive time minus the reading's timestamp
//!   (p50 / p99), which grows without bound once readings queue up;
//! - the gateway's and the simulator's CPU % of one core (utime + stime from
//!   /proc/<pid>/stat over the measured window) and the gateway's peak RSS
//!   (VmHWM);
//! - alert latency: the simulator's `injected_at` of each scripted event to
//!   the subscriber receiving the `raised` alert it caused, p50 / p99 / max,
//!   for BLE events (pushed: the latency of the whole path) and pump events
//!   (polled: includes up to one poll interval), plus events that raised no
//!   alert. The bench acknowledges occlusion alerts over MQTT (they latch).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use wardgate_e2e::{Mosquitto, signal, sim_bin, wait_exit, wardgate_bin};

/// Devices one `wardgate-sim load` process serves at most (it holds about
/// two file descriptors per device; the limit here is 20 000 per process).
const DEVICES_PER_SIM: usize = 4000;
/// How long alerts of events injected at the end of the window may take.
const ALERT_GRACE: Duration = Duration::from_secs(3);
/// How long all devices get to come online.
const ONLINE_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug)]
enum Msg {
    /// Reading lines of one telemetry message and their lag in ms.
    Telemetry(Vec<f64>),
    Online(String),
    Raised(Raised),
}

#[derive(Debug)]
struct Raised {
    subject: String,
    rule: String,
    at: DateTime<Utc>,
    received: DateTime<Utc>,
}

#[derive(Debug, serde::Deserialize)]
struct ScriptedEvent {
    injected_at: DateTime<Utc>,
    subject: String,
    kind: String,
    rule: String,
}

#[derive(Debug, Clone)]
struct Params {
    devices: usize,
    interval_ms: u64,
    mix: String,
    /// Scripted events per second, over all simulator processes.
    events_per_s: f64,
    warmup: Duration,
    measure: Duration,
    /// Where to keep each run's logs and configuration (`--logs DIR`).
    logs: Option<PathBuf>,
}

fn header(dir: &Path, port: u16) -> String {
    format!(
        r#"# Written by bench/bench.rs.
[gateway]
site = "bench"
ward = "ward-1"
id = "gw-bench"

[spool]
path = "{dir}/spool.redb"

# Every injected event must raise an alert of its own, to be timed: the
# fever rule's hold time (one fever episode per hour in a ward) is off here.
[rules.clear_for]
fever = "0s"

[[sinks]]
type = "mqtt"
broker = {{ host = "127.0.0.1", port = {port}, keep_alive = "10s" }}

"#,
        dir = dir.display()
    )
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
                    let received = Utc::now();
                    let Some(msg) = classify(&client, &p.topic, &p.payload, received) else {
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

/// What one received message means for the benchmark. Raised occlusion
/// alerts are acknowledged at once (they latch until acknowledged), as a
/// nurse would, so the next occlusion on that pump raises a new alert.
fn classify(
    client: &rumqttc::Client,
    topic: &str,
    payload: &[u8],
    received: DateTime<Utc>,
) -> Option<Msg> {
    if topic.ends_with("/telemetry") {
        let now_ns = received.timestamp_nanos_opt()?;
        let lags = payload
            .split(|b| *b == b'\n')
            .filter(|l| {
                !l.is_empty()
                    && !l.starts_with(b"alert,")
                    && !l.starts_with(b"device_status,")
                    && !l.starts_with(b"device_alarm,")
            })
            .map(|l| {
                let ts = l
                    .rsplit(|b| *b == b' ')
                    .next()
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .and_then(|t| t.parse::<i64>().ok())
                    .unwrap_or(now_ns);
                (now_ns - ts) as f64 / 1e6
            })
            .collect();
        return Some(Msg::Telemetry(lags));
    }
    if payload.is_empty() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    if let Some((_, device)) = topic.split_once("/devices/") {
        let device = device.strip_suffix("/status")?;
        return (v["state"] == "online").then(|| Msg::Online(device.to_owned()));
    }
    let (prefix, _) = topic.split_once("/alerts/")?;
    if v["transition"] != "raised" {
        return None;
    }
    let rule = v["rule"].as_str()?.to_owned();
    if rule == "pump_occlusion" {
        let ack = serde_json::json!({ "alert_id": v["id"], "by": "bench" });
        let _ = client.try_publish(
            format!("{prefix}/commands/ack"),
            rumqttc::QoS::AtLeastOnce,
            false,
            ack.to_string(),
        );
    }
    Some(Msg::Raised(Raised {
        subject: v["subject"].as_str()?.to_owned(),
        rule,
        at: v["at"].as_str()?.parse().ok()?,
        received,
    }))
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

/// Readings a device of each kind produces per interval (docs/load.md):
/// BLE patch heart rate, SpO2, pulse rate, temperature; Modbus sensor room
/// temperature and humidity; pump rate, infused, VTBI, remaining, time
/// remaining, line pressure.
fn readings_per_interval(mix: &str, devices: usize) -> f64 {
    if mix == SYNTHETIC {
        return (devices * SYNTHETIC_SIGNALS.len()) as f64;
    }
    let weights: HashMap<&str, f64> = mix
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.trim(), v.trim().parse().ok()?)))
        .collect();
    let total: f64 = weights.values().sum();
    let per_device = weights.get("ble").copied().unwrap_or(0.0) * 4.0
        + weights.get("modbus").copied().unwrap_or(0.0) * 2.0
        + weights.get("pump").copied().unwrap_or(0.0) * 6.0;
    devices as f64 * per_device / total
}

/// The scripted event rate, at most one event per 20 devices per second: an
/// occlusion lasts 3 s and must end (and its alert be acknowledged) before
/// the same pump's next one, or that one raises nothing.
fn events_per_s(p: &Params) -> f64 {
    p.events_per_s.min(p.devices as f64 / 20.0)
}

/// `--mix synthetic`: no simulators; the gateway's own synthetic devices
/// produce the readings, so the run measures the path from the processing
/// stage (rules) through the spool to the broker, not device transports.
const SYNTHETIC: &str = "synthetic";
/// A vital-signs wearable's four signals, one reading each per interval.
const SYNTHETIC_SIGNALS: [(&str, f64, f64); 4] = [
    ("heart_rate", 78.0, 6.0),
    ("resp_rate", 16.0, 2.0),
    ("spo2", 96.0, 1.0),
    ("body_temp", 36.9, 0.3),
];

/// One bed subject per synthetic device.
fn synthetic_fragment(p: &Params) -> String {
    let mut t = String::new();
    for i in 0..p.devices {
        let _ = write!(
            t,
            "[[subjects]]\nid = \"bed-s{i}\"\nkind = \"bed\"\ndevices = [\"synth-{i}\"]\n\n\
             [[devices]]\nid = \"synth-{i}\"\ntype = \"synthetic\"\ninterval = \"{}ms\"\nsignals = [\n",
            p.interval_ms
        );
        for (metric, base, amplitude) in SYNTHETIC_SIGNALS {
            let _ = writeln!(
                t,
                "  {{ metric = \"{metric}\", base = {base}, amplitude = {amplitude}, period = \"{}s\" }},",
                60 + i % 60
            );
        }
        t.push_str("]\n\n");
    }
    t
}

struct Sim {
    child: Child,
    fragment: PathBuf,
    events: PathBuf,
}

/// Starts `wardgate-sim load` processes for `p.devices` devices (at most
/// [`DEVICES_PER_SIM`] each, disjoint index ranges) and waits for each one's
/// `READY` line.
fn start_sims(dir: &Path, p: &Params) -> Vec<Sim> {
    let processes = p.devices.div_ceil(DEVICES_PER_SIM);
    let mut sims = Vec::new();
    for k in 0..processes {
        let first = k * DEVICES_PER_SIM;
        let n = DEVICES_PER_SIM.min(p.devices - first);
        let fragment = dir.join(format!("load-{k}.toml"));
        let events = dir.join(format!("events-{k}.jsonl"));
        // Each process injects its share of the event rate.
        let alert_every_ms = (processes as f64 * 1000.0 / events_per_s(p)).round() as u64;
        let mut child = Command::new(sim_bin())
            .arg("load")
            .args(["--devices", &n.to_string()])
            .args(["--first-index", &first.to_string()])
            .args(["--mix", &p.mix])
            .args(["--interval", &format!("{}ms", p.interval_ms)])
            .args(["--alert-every", &format!("{alert_every_ms}ms")])
            .args(["--duration", "0s"])
            .arg("--config-out")
            .arg(&fragment)
            .arg("--events-out")
            .arg(&events)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join(format!("sim-{k}.log"))).expect("sim log"))
            .spawn()
            .expect("start wardgate-sim load");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read READY");
        assert_eq!(line.trim(), format!("READY {n}"), "wardgate-sim load start");
        sims.push(Sim {
            child,
            fragment,
            events,
        });
    }
    sims
}

#[derive(Default)]
struct Latencies {
    /// Injection to the subscriber.
    ms: Vec<f64>,
    /// The alert's `at` (when the driver had the reading) to the subscriber:
    /// the gateway's and the broker's share.
    gateway_ms: Vec<f64>,
    missed: usize,
}

impl Latencies {
    fn cell(&self) -> String {
        let mut ms = self.ms.clone();
        ms.sort_by(f64::total_cmp);
        let mut gw = self.gateway_ms.clone();
        gw.sort_by(f64::total_cmp);
        format!(
            "{} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {}",
            ms.len(),
            percentile(&ms, 50.0),
            percentile(&ms, 99.0),
            ms.last().copied().unwrap_or(f64::NAN),
            percentile(&gw, 50.0),
            percentile(&gw, 99.0),
            self.missed
        )
    }
}

struct Outcome {
    expected_per_s: f64,
    received_per_s: f64,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    gateway_cpu_pct: f64,
    sim_cpu_pct: f64,
    peak_rss_mb: f64,
    online: usize,
    ble: Latencies,
    pump: Latencies,
}

fn millis(d: chrono::TimeDelta) -> f64 {
    d.to_std().unwrap_or_default().as_secs_f64() * 1000.0
}

/// Pairs each event injected inside the window with the first `raised` alert
/// of its subject and rule that came after it.
fn match_events(
    events: &[ScriptedEvent],
    raised: &[Raised],
    window: (DateTime<Utc>, DateTime<Utc>),
) -> (Latencies, Latencies) {
    let mut by_key: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, r) in raised.iter().enumerate() {
        by_key
            .entry((r.subject.as_str(), r.rule.as_str()))
            .or_default()
            .push(i);
    }
    let mut used = HashSet::new();
    let (mut ble, mut pump) = (Latencies::default(), Latencies::default());
    for e in events {
        if e.injected_at < window.0 || e.injected_at > window.1 {
            continue;
        }
        let found = by_key
            .get(&(e.subject.as_str(), e.rule.as_str()))
            .and_then(|ix| {
                ix.iter()
                    .copied()
                    .find(|i| raised[*i].at >= e.injected_at && !used.contains(i))
            });
        let slot = if e.kind == "pump" {
            &mut pump
        } else {
            &mut ble
        };
        match found {
            Some(i) => {
                used.insert(i);
                slot.ms.push(millis(raised[i].received - e.injected_at));
                slot.gateway_ms
                    .push(millis(raised[i].received - raised[i].at));
            }
            None => slot.missed += 1,
        }
    }
    (ble, pump)
}

fn run(p: &Params) -> Outcome {
    let broker = Mosquitto::start();
    let rx = subscribe(broker.port);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = header(dir.path(), broker.port);
    let mut sims = if p.mix == SYNTHETIC {
        config.push_str(&synthetic_fragment(p));
        Vec::new()
    } else {
        start_sims(dir.path(), p)
    };
    for s in &sims {
        config.push_str(&std::fs::read_to_string(&s.fragment).expect("fragment"));
    }
    let cfg = dir.path().join("gateway.toml");
    std::fs::File::create(&cfg)
        .and_then(|mut f| f.write_all(config.as_bytes()))
        .expect("write config");
    let log = std::fs::File::create(dir.path().join("gateway.log")).expect("log");
    let mut gw: Child = Command::new(wardgate_bin())
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        // The gateway logs at RUST_LOG when set, warnings otherwise.
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start wardgate");
    let pid = gw.id();

    // Ready once every device is online (or after ONLINE_WAIT: reported).
    let mut online = HashSet::new();
    let deadline = Instant::now() + ONLINE_WAIT;
    while online.len() < p.devices && Instant::now() < deadline {
        if let Ok(Msg::Online(d)) = rx.recv_timeout(Duration::from_millis(200)) {
            online.insert(d);
        }
    }
    std::thread::sleep(p.warmup);
    let mut raised = Vec::new();
    for m in rx.try_iter() {
        if let Msg::Raised(r) = m {
            raised.push(r);
        }
    }

    let start = Utc::now();
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid);
    let s0: u64 = sims.iter().map(|s| cpu_ticks(s.child.id())).sum();
    let mut readings = 0usize;
    let mut lags = Vec::new();
    let mut take = |m: Msg, in_window: bool, raised: &mut Vec<Raised>| match m {
        Msg::Telemetry(l) if in_window => {
            readings += l.len();
            lags.extend(l);
        }
        Msg::Raised(r) => raised.push(r),
        _ => {}
    };
    while t0.elapsed() < p.measure {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
            take(m, true, &mut raised);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let end = Utc::now();
    let c1 = cpu_ticks(pid);
    let s1: u64 = sims.iter().map(|s| cpu_ticks(s.child.id())).sum();
    let peak_rss_mb = status_kb(pid, "VmHWM:") as f64 / 1024.0;
    // Alerts of the last events in the window may still be on their way.
    let grace = Instant::now() + ALERT_GRACE;
    while Instant::now() < grace {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
            take(m, false, &mut raised);
        }
    }

    for s in &mut sims {
        signal(&s.child, Signal::SIGINT);
        wait_exit(&mut s.child);
    }
    signal(&gw, Signal::SIGINT);
    wait_exit(&mut gw);

    let events: Vec<ScriptedEvent> = sims
        .iter()
        .flat_map(|s| {
            std::fs::read_to_string(&s.events)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<_>>()
        })
        .collect();
    let (ble, pump) = match_events(&events, &raised, (start, end));
    if let Some(keep) = &p.logs {
        let to = keep.join(format!("{}-devices-{}ms", p.devices, p.interval_ms));
        let _ = std::fs::create_dir_all(&to);
        for entry in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(".log") || name.to_string_lossy().ends_with(".toml")
            {
                let _ = std::fs::copy(entry.path(), to.join(name));
            }
        }
    }
    lags.sort_by(f64::total_cmp);
    let ticks = clock_ticks() as f64;
    Outcome {
        expected_per_s: readings_per_interval(&p.mix, p.devices) * 1000.0 / p.interval_ms as f64,
        received_per_s: readings as f64 / elapsed,
        lag_p50_ms: percentile(&lags, 50.0),
        lag_p99_ms: percentile(&lags, 99.0),
        gateway_cpu_pct: (c1 - c0) as f64 / ticks / elapsed * 100.0,
        sim_cpu_pct: (s1 - s0) as f64 / ticks / elapsed * 100.0,
        peak_rss_mb,
        online: online.len(),
        ble,
        pump,
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
    let list = |name: &str, default: &str| -> Vec<u64> {
        get(name, default)
            .split(',')
            .filter_map(|s| s.parse().ok())
            .collect()
    };
    let base = Params {
        devices: 0,
        interval_ms: 1000,
        mix: get("--mix", "ble=60,modbus=20,pump=20"),
        events_per_s: get("--events-per-s", "5").parse().unwrap_or(5.0),
        warmup: Duration::from_secs(get("--warmup", "5").parse().unwrap_or(5)),
        measure: Duration::from_secs(get("--duration", "30").parse().unwrap_or(30)),
        logs: args
            .iter()
            .position(|a| a == "--logs")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from),
    };
    // Sweep: `--sweep-devices` devices at shorter intervals, to find the
    // highest rate the gateway sustains.
    let sweep_devices: usize = get("--sweep-devices", "1000").parse().unwrap_or(1000);
    let mut runs: Vec<Params> = list("--devices", "100,1000,10000")
        .into_iter()
        .map(|n| Params {
            devices: n as usize,
            ..base.clone()
        })
        .collect();
    runs.extend(
        list("--sweep-intervals", "500,250,100")
            .into_iter()
            .map(|ms| Params {
                devices: sweep_devices,
                interval_ms: ms,
                ..base.clone()
            }),
    );

    println!(
        "| devices | interval | online | produced readings/s | received readings/s | telemetry lag p50 / p99 ms | gateway CPU % of one core | simulator CPU % | gateway peak RSS MB | BLE alerts | p50 ms | p99 ms | max ms | of which reading → subscriber p50 / p99 ms | missed | pump alerts | p50 ms | p99 ms | max ms | of which reading → subscriber p50 / p99 ms | missed |"
    );
    println!(
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for p in &runs {
        let o = run(p);
        let mut row = String::new();
        let _ = write!(
            row,
            "| {} | {} ms | {} | {:.0} | {:.0} | {:.1} / {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            p.devices,
            p.interval_ms,
            o.online,
            o.expected_per_s,
            o.received_per_s,
            o.lag_p50_ms,
            o.lag_p99_ms,
            o.gateway_cpu_pct,
            o.sim_cpu_pct,
            o.peak_rss_mb,
            o.ble.cell(),
            o.pump.cell(),
        );
        println!("{row}");
    }
}
