//! Delivery to a real TSDB (victoria-metrics, through its InfluxDB v2 write
//! API) without loss: the InfluxDB sink in a steady stream and across a TSDB
//! outage, the bridge killed with SIGKILL while two bridges share the load,
//! and the spool overflowing while the TSDB is down.
//!
//! The JSONL sink, fed from the same spool, is the record of what was
//! accepted. victoria-metrics stores timestamps in milliseconds and, without
//! `-dedup.minScrapeInterval`, keeps a re-delivered point as a second sample
//! of the same series and timestamp. So a point is identified by (metric,
//! device, millisecond); in the steady stream the raw sample count must equal
//! the accepted count exactly (no duplicate tolerated), in the fault
//! scenarios duplicates of the same series and timestamp are tolerated (a
//! TSDB that dedups, like InfluxDB, stores them once) and the sets must be
//! equal: nothing missing, nothing extra.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::Signal;
use wardgate_e2e::{
    Gateway, Mosquitto, Server, VictoriaMetrics, signal, wait_exit, wait_for, wardgate_bin,
};
use wardgate_model::Event;

/// (metric, device, timestamp in ms).
type Point = (String, String, i64);

/// A gateway with `devices` synthetic devices (two signals each, every 10 ms),
/// a JSONL sink and `sinks` (TOML) after it.
fn gateway_config(devices: usize, spool: &str, sinks: &str) -> String {
    let ids: Vec<String> = (1..=devices).map(|i| format!("\"syn-{i}\"")).collect();
    let mut text = format!(
        r#"
[gateway]
site = "e2e"
ward = "ward-1"
id = "gw-e2e"

[spool]
path = "{{dir}}/spool.redb"
{spool}

[[subjects]]
id = "bed-1"
kind = "bed"
devices = [{}]
"#,
        ids.join(", ")
    );
    for i in 1..=devices {
        let _ = write!(
            text,
            r#"
[[devices]]
id = "syn-{i}"
type = "synthetic"
interval = "10ms"
signals = [{{ metric = "heart_rate", base = 72, amplitude = 5, period = "7s" }}, {{ metric = "spo2", base = 96 }}]
"#
        );
    }
    text.push_str(
        r#"
[[sinks]]
type = "jsonl"
path = "{dir}/events.jsonl"
"#,
    );
    text.push_str(sinks);
    text
}

fn influx_sink(vm: &Server, extra: &str) -> String {
    format!(
        r#"
[[sinks]]
type = "influxdb"
url = "{}"
org = "e2e"
bucket = "e2e"
flush_interval = "100ms"
max_backoff = "500ms"
{extra}
"#,
        vm.url()
    )
}

/// Every reading the JSONL sink saw, as points, with its spool order. A line
/// still being written (no newline yet) is not counted.
fn accepted(gw: &Gateway) -> Vec<Point> {
    let text = std::fs::read_to_string(gw.path("events.jsonl")).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .filter_map(|l| match serde_json::from_str::<Event>(l) {
            Ok(Event::Reading(r)) => Some((
                r.metric.name().to_owned(),
                r.device.map(|d| d.id.to_string()).unwrap_or_default(),
                r.at.timestamp_millis(),
            )),
            Ok(_) => None,
            Err(e) => panic!("bad JSONL line {l:?}: {e}"),
        })
        .collect()
}

fn wait_accepted(gw: &Gateway, at_least: usize) -> usize {
    wait_for(&format!("{at_least} accepted readings"), || {
        let n = accepted(gw).len();
        (n >= at_least).then_some(n)
    })
}

/// A plain HTTP/1.0 GET on loopback; the body, or None on any failure.
fn http_get(port: u16, path_and_query: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_owned())
}

/// Every reading sample in the TSDB: point → how many times.
fn stored(vm: &Server) -> Option<BTreeMap<Point, usize>> {
    // match[]={__name__=~".+_value"} (every reading), percent-encoded.
    let body = http_get(
        vm.port,
        "/api/v1/export?match%5B%5D=%7B__name__%3D~%22.%2B_value%22%7D",
    )?;
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("export line is JSON");
        let name = v["metric"]["__name__"].as_str().expect("__name__");
        let metric = name
            .strip_suffix("_value")
            .expect("field `value`")
            .to_owned();
        let device = v["metric"]["device"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for ts in v["timestamps"].as_array().expect("timestamps") {
            *out.entry((metric.clone(), device.clone(), ts.as_i64().expect("ms")))
                .or_default() += 1;
        }
    }
    Some(out)
}

/// Waits until the TSDB holds every point of `expected` and returns what it
/// holds then.
fn wait_stored(vm: &Server, expected: &BTreeSet<Point>) -> BTreeMap<Point, usize> {
    wait_for("every accepted reading in the TSDB", || {
        let got = stored(vm)?;
        expected.iter().all(|p| got.contains_key(p)).then_some(got)
    })
}

fn assert_same_points(got: &BTreeMap<Point, usize>, expected: &BTreeSet<Point>) {
    let got: BTreeSet<&Point> = got.keys().collect();
    let expected: BTreeSet<&Point> = expected.iter().collect();
    let extra: Vec<_> = got.difference(&expected).take(5).collect();
    assert!(
        extra.is_empty(),
        "TSDB holds readings never accepted: {extra:?}"
    );
}

#[test]
fn steady_stream_every_reading_exactly_once() {
    let vm = VictoriaMetrics::start();
    let mut gw = Gateway::start(&gateway_config(1, "", &influx_sink(&vm, "")));
    wait_accepted(&gw, 300);
    gw.stop();
    let accepted = accepted(&gw);
    let expected: BTreeSet<Point> = accepted.iter().cloned().collect();
    let got = wait_stored(&vm, &expected);
    assert_same_points(&got, &expected);
    // No fault, so no duplicate: the raw sample count is the accepted count.
    assert_eq!(got.values().sum::<usize>(), accepted.len());
    let log = gw.log();
    assert!(log.contains("influxdb sink stopped"), "{log}");
    assert!(log.contains(" quarantined=0 "), "{log}");
}

#[test]
fn tsdb_outage_loses_nothing() {
    let mut vm = VictoriaMetrics::start();
    let mut gw = Gateway::start(&gateway_config(1, "", &influx_sink(&vm, "")));
    let before = wait_accepted(&gw, 100);
    vm.stop();
    // Readings keep being accepted into the spool while the TSDB is away.
    let during = wait_accepted(&gw, before + 300);
    vm.restart();
    wait_for("the sink to recover", || {
        gw.log()
            .contains("InfluxDB writes succeed again")
            .then_some(())
    });
    wait_accepted(&gw, during + 100);
    gw.stop();
    let log = gw.log();
    assert!(log.contains("InfluxDB write failed; retrying"), "{log}");
    // Duplicates tolerated: a write cut by the stop may have been stored and
    // is written again (same series, same timestamp).
    let expected: BTreeSet<Point> = accepted(&gw).into_iter().collect();
    assert_same_points(&wait_stored(&vm, &expected), &expected);
}

/// A `wardgate bridge` process.
struct Bridge {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Bridge {
    fn start(dir: &std::path::Path, name: &str, mqtt_port: u16, vm: &Server) -> Self {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"
[mqtt]
broker = {{ host = "127.0.0.1", port = {mqtt_port}, client_id = "{name}", keep_alive = "5s" }}
group = "e2e"

[influxdb]
url = "{}"
org = "e2e"
bucket = "e2e"
flush_interval = "50ms"
max_backoff = "500ms"
"#,
                vm.url()
            ),
        )
        .expect("write bridge config");
        let mut b = Self {
            log: dir.join(format!("{name}.log")),
            config,
            child: None,
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        self.child = Some(
            Command::new(wardgate_bin())
                .arg("bridge")
                .arg("--config")
                .arg(&self.config)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start wardgate bridge"),
        );
        wait_for("the bridge to subscribe", || {
            (self.log().matches("subscribed").count() > self.starts()).then_some(())
        });
    }

    /// Instances started before the current one.
    fn starts(&self) -> usize {
        self.log().matches("wardgate bridge stopped").count()
            + self.log().matches("killed by the test").count()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, Signal::SIGKILL);
            wait_exit(&mut c);
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&self.log)
                .expect("log");
            writeln!(f, "killed by the test").expect("log");
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, Signal::SIGINT);
            let status = wait_exit(&mut c);
            assert!(
                status.success(),
                "bridge exited with {status}:\n{}",
                self.log()
            );
        }
    }

    /// Points acknowledged, summed over every graceful stop in the log.
    fn acknowledged(&self) -> u64 {
        self.log()
            .lines()
            .filter(|l| l.contains("wardgate bridge stopped"))
            .filter_map(|l| {
                let v = l.split("acknowledged=").nth(1)?;
                v.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn bridge_killed_mid_stream_loses_nothing_and_two_bridges_share_the_load() {
    let broker = Mosquitto::start();
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut a = Bridge::start(dir.path(), "bridge-a", broker.port, &vm);
    let mut b = Bridge::start(dir.path(), "bridge-b", broker.port, &vm);
    let mqtt = format!(
        r#"
[[sinks]]
type = "mqtt"
broker = {{ host = "127.0.0.1", port = {}, keep_alive = "5s" }}
batch_max = 20
"#,
        broker.port
    );
    let mut gw = Gateway::start(&gateway_config(1, "", &mqtt));
    let before = wait_accepted(&gw, 200);
    a.kill();
    let during = wait_accepted(&gw, before + 200);
    a.spawn();
    wait_accepted(&gw, during + 200);
    gw.stop();
    // Duplicates tolerated: what bridge A wrote but had not acknowledged when
    // it was killed is redelivered and written again (same series, same
    // timestamp).
    let expected: BTreeSet<Point> = accepted(&gw).into_iter().collect();
    assert_same_points(&wait_stored(&vm, &expected), &expected);
    a.stop();
    b.stop();
    assert!(
        a.acknowledged() > 0 && b.acknowledged() > 0,
        "both bridges take a share: a={} b={}\n{}\n{}",
        a.acknowledged(),
        b.acknowledged(),
        a.log(),
        b.log()
    );
}

#[test]
fn spool_full_evicts_oldest_telemetry_first_and_counts_it() {
    let mut vm = VictoriaMetrics::start();
    vm.stop();
    // 4 devices × 2 signals every 10 ms fill the 1 MiB bound in seconds.
    let batch_max = 50;
    // A glucose meter reading 50 mg/dL raises a hypoglycaemia alert (rules
    // engine, built-in pack) while the TSDB is down.
    let glucose = r#"
[[subjects]]
id = "bed-2"
kind = "bed"
devices = ["glu-1"]

[[devices]]
id = "glu-1"
type = "synthetic"
interval = "500ms"
signals = [{ metric = "glucose", base = 50 }]
"#;
    let mut gw = Gateway::start(
        &(gateway_config(
            4,
            "max_bytes = 1048576",
            &influx_sink(&vm, &format!("batch_max = {batch_max}")),
        ) + glucose),
    );
    wait_for("the spool to evict", || {
        gw.log()
            .contains("spool full: oldest telemetry evicted")
            .then_some(())
    });
    vm.restart();
    let n = accepted(&gw).len();
    wait_accepted(&gw, n + 200);
    gw.stop();
    let log = gw.log();
    let evicted: usize = log
        .lines()
        .filter(|l| l.contains("spool full: oldest telemetry evicted"))
        .filter_map(|l| {
            let v = l.split("total=").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .max()
        .expect("evictions are counted in the log");
    // In spool order, the newest readings all arrive.
    let accepted = accepted(&gw);
    let got = wait_for("the newest readings in the TSDB", || {
        let got = stored(&vm)?;
        accepted[accepted.len() - 200..]
            .iter()
            .all(|p| got.contains_key(p))
            .then_some(got)
    });
    let missing: Vec<usize> = accepted
        .iter()
        .enumerate()
        .filter(|(_, p)| !got.contains_key(p))
        .map(|(i, _)| i)
        .collect();
    // What is missing was evicted, and it is the oldest: all of it lies in
    // the first `evicted` + `batch_max` readings (the sink still holds and
    // delivers one batch it read before the eviction). Readings evicted but
    // already in hand do arrive, so at most `evicted` are missing.
    assert!(
        !missing.is_empty(),
        "the TSDB was down: something was evicted"
    );
    assert!(
        missing.len() <= evicted,
        "{} missing, {evicted} evicted",
        missing.len()
    );
    assert!(
        missing.iter().all(|&i| i < evicted + batch_max),
        "a missing reading is not among the oldest: {:?}",
        missing.iter().rev().take(3).collect::<Vec<_>>()
    );
    assert!(log.contains("spool_evicted="), "{log}");
    // No alert lost: every alert transition the JSONL sink saw is in the TSDB
    // (measurement `alert`, field `active`), although telemetry was evicted.
    let alerts: BTreeSet<(String, i64)> = std::fs::read_to_string(gw.path("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| match serde_json::from_str::<Event>(l) {
            Ok(Event::Alert(a)) => Some((a.rule.to_string(), a.at.timestamp_millis())),
            _ => None,
        })
        .collect();
    assert!(!alerts.is_empty(), "the glucose meter raised an alert");
    wait_for("every alert transition in the TSDB", || {
        let body = http_get(
            vm.port,
            "/api/v1/export?match%5B%5D=%7B__name__%3D%22alert_active%22%7D",
        )?;
        let mut stored = BTreeSet::new();
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("export line is JSON");
            let rule = v["metric"]["rule"].as_str().expect("rule tag").to_owned();
            for ts in v["timestamps"].as_array().expect("timestamps") {
                stored.insert((rule.clone(), ts.as_i64().expect("ms")));
            }
        }
        alerts.is_subset(&stored).then_some(())
    });
}

/// Publishes one QoS 1 message and returns once the broker confirmed it.
fn publish(port: u16, topic: &str, payload: &[u8]) {
    let opts = rumqttc::MqttOptions::new("e2e-publisher", "127.0.0.1", port);
    let (client, mut connection) = rumqttc::Client::new(opts, 8);
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.to_vec())
        .expect("queue the publish");
    for event in connection.iter() {
        if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
            event.expect("publisher connection")
        {
            return;
        }
    }
}

#[test]
fn bridge_rides_out_a_tsdb_outage_and_quarantines_what_is_not_line_protocol() {
    let broker = Mosquitto::start();
    let mut vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bridge = Bridge::start(dir.path(), "bridge-a", broker.port, &vm);
    let mqtt = format!(
        r#"
[[sinks]]
type = "mqtt"
broker = {{ host = "127.0.0.1", port = {}, keep_alive = "5s" }}
batch_max = 20
"#,
        broker.port
    );
    let mut gw = Gateway::start(&gateway_config(1, "", &mqtt));
    let before = wait_accepted(&gw, 100);
    vm.stop();
    // A message that is not line protocol, in the middle of the stream.
    publish(
        broker.port,
        "wardgate/e2e/ward-1/gw-other/telemetry",
        b"{\"metric\": \"spo2\", \"value\": 93}",
    );
    let during = wait_accepted(&gw, before + 300);
    vm.restart();
    wait_accepted(&gw, during + 100);
    gw.stop();
    // Duplicates tolerated: a write cut by the outage may have been stored
    // before it failed and is written again (same series, same timestamp).
    let expected: BTreeSet<Point> = accepted(&gw).into_iter().collect();
    assert_same_points(&wait_stored(&vm, &expected), &expected);
    bridge.stop();
    let log = bridge.log();
    assert!(log.contains("InfluxDB write failed; retrying"), "{log}");
    let quarantined = std::fs::read_to_string(dir.path().join("bridge-quarantine.jsonl"))
        .expect("the quarantine file");
    let entries: Vec<serde_json::Value> = quarantined
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(entries.len(), 1, "{quarantined}");
    assert_eq!(
        entries[0]["topic"],
        "wardgate/e2e/ward-1/gw-other/telemetry"
    );
    assert_eq!(
        entries[0]["payload"],
        "{\"metric\": \"spo2\", \"value\": 93}"
    );
    assert!(log.contains(" quarantined=1 "), "{log}");
}
