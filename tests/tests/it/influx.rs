//! Delivery to a real TSDB (victoria-metrics, through its InfluxDB v2 write
//! API) without loss: the InfluxDB sink in a steady stream and across a TSDB
//! outage, the bridge killed with SIGKILL while two bridges share the load,
//! and the spool overflowing while the TSDB is down; the bridge refusing a
//! gateway's lines that carry another gateway's tags. Where the behaviour
//! under test is an answer victoria-metrics never gives (a 400 for one bad
//! line: it skips such lines and answers 204; a lasting 503), a scripted
//! InfluxDB on loopback answers instead ([`ScriptedInflux`]).
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use wardgate_e2e::{
    Gateway, Mosquitto, Server, Subscriber, VictoriaMetrics, free_port, metric, signal, wait_exit,
    wait_for, wardgate_bin,
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
    let port = free_port();
    let sinks = influx_sink(&vm, "") + &format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\n");
    let mut gw = Gateway::start(&gateway_config(1, "", &sinks));
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
    // `/metrics` tells the outage: writes retried, and the records that
    // waited through it delivered late but delivered.
    let influx = r#"{sink="influxdb"}"#;
    let acknowledged = wait_for("records acknowledged after the outage", || {
        let body = http_get(port, "/metrics")?;
        let acked = metric(
            &body,
            &format!("wardgate_sink_acknowledged_records_total{influx}"),
        )?;
        (acked >= (during + 100) as f64).then_some((body, acked))
    });
    let (body, acked) = acknowledged;
    let retried = metric(
        &body,
        &format!("wardgate_sink_retried_records_total{influx}"),
    );
    assert!(retried.is_some_and(|r| r > 0.0), "{body}");
    let late = metric(
        &body,
        r#"wardgate_sink_delivery_latency_seconds_bucket{le="1.024",sink="influxdb"}"#,
    );
    assert!(
        late.is_some_and(|n| n < acked),
        "some waited out the outage: {body}"
    );
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
        Self::start_with(dir, name, mqtt_port, &vm.url(), "")
    }

    /// A bridge writing to `url`, with `extra` appended to its `[influxdb]`
    /// table (and able to open tables of its own); `flush_interval` and
    /// `max_backoff` there replace the defaults below.
    fn start_with(
        dir: &std::path::Path,
        name: &str,
        mqtt_port: u16,
        url: &str,
        extra: &str,
    ) -> Self {
        let config = dir.join(format!("{name}.toml"));
        let mut defaults = String::new();
        for (k, v) in [("flush_interval", "\"50ms\""), ("max_backoff", "\"500ms\"")] {
            if !extra.contains(k) {
                let _ = writeln!(defaults, "{k} = {v}");
            }
        }
        std::fs::write(
            &config,
            format!(
                r#"
[mqtt]
broker = {{ host = "127.0.0.1", port = {mqtt_port}, client_id = "{name}", keep_alive = "5s" }}
group = "e2e"

[influxdb]
url = "{url}"
org = "e2e"
bucket = "e2e"
{defaults}{extra}
"#
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
    publish_all(port, &[(topic, payload)]);
}

/// Publishes QoS 1 messages back to back on one connection and returns once
/// the broker confirmed every one.
fn publish_all(port: u16, messages: &[(&str, &[u8])]) {
    let opts = rumqttc::MqttOptions::new("e2e-publisher", "127.0.0.1", port);
    let (client, mut connection) = rumqttc::Client::new(opts, 8);
    for (topic, payload) in messages {
        client
            .publish(*topic, rumqttc::QoS::AtLeastOnce, false, payload.to_vec())
            .expect("queue the publish");
    }
    let mut acked = 0;
    for event in connection.iter() {
        if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
            event.expect("publisher connection")
        {
            acked += 1;
            if acked == messages.len() {
                return;
            }
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

/// The quarantine file's entries.
fn quarantine_entries(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// A gateway's reading line, as its encoder writes it.
fn reading_line(
    gateway: &str,
    metric: &str,
    unit: &str,
    device: &str,
    value: &str,
    ms: i64,
) -> String {
    format!(
        "{metric},site=e2e,ward=ward-1,gateway={gateway},subject=bed-1,device={device},device_kind=ble,time_source=device,unit={unit} value={value} {}",
        ms * 1_000_000
    )
}

#[test]
fn bridge_refuses_lines_with_another_gateways_tags_and_writes_the_rest() {
    let broker = Mosquitto::start();
    let vm = VictoriaMetrics::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bridge = Bridge::start(dir.path(), "bridge-a", broker.port, &vm);
    let t = chrono::Utc::now().timestamp_millis();
    let good = [
        reading_line("gw-a", "spo2", "%", "ox-a", "95.0", t),
        reading_line("gw-a", "heart_rate", "/min", "ox-a", "70.0", t + 1),
    ];
    // gw-a publishing as gw-b, and a series outside the schema.
    let spoofed = reading_line("gw-b", "spo2", "%", "ox-b", "80.0", t + 2);
    let unknown = format!(
        "evil_series,site=e2e,ward=ward-1,gateway=gw-a,subject=bed-1 value=1.0 {}",
        (t + 3) * 1_000_000
    );
    let payload = format!("{}\n{spoofed}\n{unknown}\n{}\n", good[0], good[1]);
    let topic = "wardgate/e2e/ward-1/gw-a/telemetry";
    publish(broker.port, topic, payload.as_bytes());
    let expected: BTreeSet<Point> = [
        ("spo2".to_owned(), "ox-a".to_owned(), t),
        ("heart_rate".to_owned(), "ox-a".to_owned(), t + 1),
    ]
    .into();
    // The good lines of the message are written; the refused ones, which
    // the bridge handled before writing, are not.
    let got = wait_stored(&vm, &expected);
    assert_same_points(&got, &expected);
    assert!(
        !got.keys()
            .any(|(m, d, _)| d == "ox-b" || m == "evil_series"),
        "{got:?}"
    );
    bridge.stop();
    let entries = quarantine_entries(&dir.path().join("bridge-quarantine.jsonl"));
    assert_eq!(entries.len(), 2, "{entries:#?}");
    for e in &entries {
        assert_eq!(e["topic"], topic);
        assert_eq!(e["by"], "bridge:e2e");
    }
    assert_eq!(entries[0]["payload"], spoofed.as_str());
    assert_eq!(
        entries[0]["reason"],
        "line 2: not from this topic's gateway: site=e2e,ward=ward-1,gateway=gw-b publish on wardgate/e2e/ward-1/gw-b/telemetry"
    );
    assert_eq!(entries[1]["payload"], unknown.as_str());
    assert_eq!(
        entries[1]["reason"],
        "line 3: not in the schema: unknown measurement `evil_series`"
    );
    let log = bridge.log();
    assert_eq!(log.matches("line refused").count(), 2, "{log}");
    assert!(log.contains(&format!("topic={topic}")), "{log}");
    assert!(
        log.contains("line=spo2,site=e2e,ward=ward-1,gateway=gw-b"),
        "{log}"
    );
    assert!(log.contains(" acknowledged=2 "), "{log}");
    assert!(
        log.contains(" quarantined=2 quarantine_dropped=0 refused=2 "),
        "{log}"
    );
}

/// What the scripted InfluxDB answers to one write body.
type Answer = fn(&str) -> &'static str;

/// An InfluxDB v2 write endpoint on loopback whose answers a test scripts:
/// each request is answered by `answer` (bodies must be sent uncompressed,
/// `gzip = false`), and the lines of every body answered with a 2xx are kept.
struct ScriptedInflux {
    port: u16,
    /// Lines stored, in order.
    stored: Arc<Mutex<Vec<String>>>,
    /// Bodies received, in order.
    bodies: Arc<Mutex<Vec<String>>>,
    /// While false every write is answered 503.
    up: Arc<AtomicBool>,
}

impl ScriptedInflux {
    fn start(answer: Answer, up: bool) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let this = Self {
            port,
            stored: Arc::default(),
            bodies: Arc::default(),
            up: Arc::new(AtomicBool::new(up)),
        };
        let (stored, bodies, is_up) = (
            Arc::clone(&this.stored),
            Arc::clone(&this.bodies),
            Arc::clone(&this.up),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { return };
                let Some((target, body)) = read_request(&mut s) else {
                    continue;
                };
                let response = if !target.starts_with("/api/v2/write") {
                    // The bridge's start-up readiness probe.
                    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else if !is_up.load(Ordering::SeqCst) {
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    bodies.lock().unwrap().push(body.clone());
                    let r = answer(&body);
                    if r.starts_with("HTTP/1.1 2") {
                        stored
                            .lock()
                            .unwrap()
                            .extend(body.lines().map(str::to_owned));
                    }
                    r
                };
                let _ = s.write_all(response.as_bytes());
            }
        });
        this
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// One HTTP/1.1 request: its target and body.
fn read_request(s: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let k = s.read(&mut chunk).ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..k]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let target = head.split(' ').nth(1)?.to_owned();
    let len: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let k = s.read(&mut chunk).ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..k]);
    }
    Some((
        target,
        String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned(),
    ))
}

/// As InfluxDB 2 refuses a field of the wrong type: the whole body, 400.
const TYPE_CONFLICT: &str = "HTTP/1.1 400 Bad Request\r\nContent-Length: 38\r\nConnection: close\r\n\r\npartial write: field type conflict\r\n\r\n";

#[test]
fn bridge_bisects_a_refused_batch_so_only_the_bad_line_is_quarantined() {
    let broker = Mosquitto::start();
    let influx = ScriptedInflux::start(
        |body| {
            if body.contains("value=\"oops\"") {
                TYPE_CONFLICT
            } else {
                "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
            }
        },
        true,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    // A long flush interval: both gateways' messages land in one batch.
    let mut bridge = Bridge::start_with(
        dir.path(),
        "bridge-a",
        broker.port,
        &influx.url(),
        "gzip = false\nflush_interval = \"2s\"",
    );
    let t = chrono::Utc::now().timestamp_millis();
    let a: Vec<String> = (0..3)
        .map(|i| reading_line("gw-a", "spo2", "%", "ox-a", "95.0", t + i))
        .collect();
    let mut b: Vec<String> = (0..2)
        .map(|i| reading_line("gw-b", "spo2", "%", "ox-b", "96.0", t + i))
        .collect();
    let bad = reading_line("gw-b", "spo2", "%", "ox-b", "\"oops\"", t + 2);
    b.insert(1, bad.clone());
    let (ta, tb) = (
        "wardgate/e2e/ward-1/gw-a/telemetry",
        "wardgate/e2e/ward-1/gw-b/telemetry",
    );
    let (pa, pb) = (a.join("\n"), b.join("\n"));
    publish_all(broker.port, &[(ta, pa.as_bytes()), (tb, pb.as_bytes())]);
    let good: BTreeSet<String> = a.iter().chain(&b).filter(|l| **l != bad).cloned().collect();
    wait_for("the good lines stored", || {
        let stored: BTreeSet<String> = influx.stored.lock().unwrap().iter().cloned().collect();
        (stored == good).then_some(())
    });
    bridge.stop();
    // One batch of six lines, refused whole, then bisected.
    let bodies = influx.bodies.lock().unwrap().clone();
    assert_eq!(bodies[0].lines().count(), 6, "{bodies:#?}");
    assert_eq!(
        influx.stored.lock().unwrap().len(),
        5,
        "each good line once"
    );
    let entries = quarantine_entries(&dir.path().join("bridge-quarantine.jsonl"));
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["payload"], bad.as_str());
    assert_eq!(entries[0]["topic"], tb);
    assert_eq!(entries[0]["status"], 400);
    let log = bridge.log();
    assert!(log.contains("InfluxDB refused lines"), "{log}");
    assert!(log.contains(" acknowledged=5 "), "{log}");
}

#[test]
fn bridge_reports_a_stall_on_its_status_topic_and_recovers() {
    let broker = Mosquitto::start();
    let influx = ScriptedInflux::start(
        |_| "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        false,
    );
    let status = Subscriber::start(broker.port, "e2e-status", "wardgate/bridge/+/status");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bridge = Bridge::start_with(
        dir.path(),
        "bridge-a",
        broker.port,
        &influx.url(),
        "gzip = false\nmax_backoff = \"200ms\"\n\n[bridge]\nstalled_after = \"1s\"",
    );
    let topic = "wardgate/bridge/bridge-a/status";
    let mut seen: Vec<String> = Vec::new();
    let mut wait_status = |what: &str, want: fn(&str) -> bool| {
        wait_for(what, || {
            seen.extend(
                status
                    .drain()
                    .into_iter()
                    .filter(|(t, _, _)| t == topic)
                    .map(|(_, p, _)| String::from_utf8_lossy(&p).into_owned()),
            );
            seen.last().filter(|s| want(s)).map(|_| ())
        });
    };
    wait_status("the bridge online", |s| s == "online");
    let t = chrono::Utc::now().timestamp_millis();
    let line = reading_line("gw-a", "spo2", "%", "ox-a", "95.0", t);
    publish(
        broker.port,
        "wardgate/e2e/ward-1/gw-a/telemetry",
        line.as_bytes(),
    );
    // InfluxDB answers 503 to everything: after 1 s the bridge says so.
    wait_status("the bridge stalled", |s| s.starts_with("stalled: "));
    assert!(
        bridge.log().contains(
            "wardgate bridge stalled: InfluxDB has stored nothing for 1 s; 1 lines waiting"
        ),
        "{}",
        bridge.log()
    );
    influx.up.store(true, Ordering::SeqCst);
    wait_status("the bridge online again", |s| s == "online");
    assert_eq!(*influx.stored.lock().unwrap(), [line]);
    let log = bridge.log();
    assert!(log.contains("wardgate bridge no longer stalled"), "{log}");
    assert!(log.contains("ERROR"), "{log}");
    bridge.stop();
    wait_status("the bridge offline", |s| s == "offline");
}
