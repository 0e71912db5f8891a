//! The alert path is never blocked by a telemetry backlog (issue 9). One
//! gateway, two sinks fed from the same spool: MQTT to a live broker, and
//! InfluxDB to a port where no TSDB listens (the TSDB is down: that sink's
//! spool cursor never moves, so telemetry piles up in the spool). A
//! flood of synthetic telemetry runs alongside one subject whose glucose
//! swings across the built-in hyperglycaemia threshold (raise above 250
//! mg/dL, clear at or below 230), so an alert is raised every period at a
//! known reading time. Each raised alert must reach the live subscriber
//! within a generous bound of that reading time; the precise latency figures
//! belong to the benchmark (`bench/run.sh`, docs/performance.md), not here.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use wardgate_e2e::{Gateway, Mosquitto, Subscriber, free_port};

/// Telemetry flood: devices × signals readings every 10 ms.
const FLOOD_DEVICES: usize = 2;

/// Generous: two orders of magnitude above what the benchmark measures on a
/// quiet machine, still far below the 2 s period of the glucose swing.
const BOUND: Duration = Duration::from_millis(1500);

fn config(live: u16, dead: u16) -> String {
    let mut c = format!(
        r#"
[gateway]
site = "e2e"
ward = "ward-1"
id = "gw-alert"

[spool]
path = "{{dir}}/spool.redb"

# A raise every period is what this test times: the hold time that makes a
# ward's hyperglycaemia one episode is off here.
[rules.clear_for]
hyperglycaemia = "0s"

[[subjects]]
id = "bed-glucose"
kind = "bed"
devices = ["glu-1"]

[[devices]]
id = "glu-1"
type = "synthetic"
interval = "10ms"
# 240 ± 20 mg/dL over 2 s: above 250 (raise) and down to 220 (clear) every period.
signals = [{{ metric = "glucose", base = 240, amplitude = 20, period = "2s", decimals = 0 }}]

[[sinks]]
type = "mqtt"
name = "mqtt_live"
broker = {{ host = "127.0.0.1", port = {live}, keep_alive = "5s", client_id = "gw-live" }}

[[sinks]]
type = "influxdb"
name = "tsdb_down"
url = "http://127.0.0.1:{dead}"
org = "ward"
bucket = "vitals"
"#
    );
    for i in 0..FLOOD_DEVICES {
        let _ = write!(
            c,
            r#"
[[subjects]]
id = "bed-{i}"
kind = "bed"
devices = ["flood-{i}"]

[[devices]]
id = "flood-{i}"
type = "synthetic"
interval = "10ms"
signals = [{{ metric = "heart_rate", base = 72, amplitude = 5, period = "7s" }}, {{ metric = "spo2", base = 97 }}, {{ metric = "resp_rate", base = 16 }}]
"#
        );
    }
    c
}

fn ms(t: Duration) -> u128 {
    t.as_millis()
}

#[test]
fn alerts_reach_mqtt_while_telemetry_piles_up_in_the_spool() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, "e2e-alert-path", "wardgate/+/+/+/alerts/#");
    // Nothing listens on `dead`: that sink never connects, never acknowledges.
    let dead = free_port();
    let gw = Gateway::start(&config(broker.port, dead));
    let spool = gw.path("spool.redb");

    // (reading time of the raise, time received) for each raised alert.
    let mut raised: Vec<(chrono::DateTime<chrono::Utc>, SystemTime)> = Vec::new();
    let mut spool_sizes = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut seen = 0usize;
    loop {
        for (topic, payload, _) in sub.drain() {
            seen += 1;
            let received = SystemTime::now();
            if !topic.ends_with("/alerts/bed-glucose/hyperglycaemia") || payload.is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&payload).expect("alert JSON");
            if v["transition"] == "raised" {
                let at: chrono::DateTime<chrono::Utc> = v["at"]
                    .as_str()
                    .expect("at")
                    .parse()
                    .expect("RFC 3339 time");
                raised.push((at, received));
                spool_sizes.push(std::fs::metadata(&spool).map_or(0, |m| m.len()));
            }
        }
        if raised.len() >= 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} raised alerts of 4 ({seen} alert messages); log:\n{}",
            raised.len(),
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let latencies: Vec<Duration> = raised
        .iter()
        .map(|(at, received)| {
            received
                .duration_since(SystemTime::from(*at))
                .unwrap_or_default()
        })
        .collect();
    // The first raise may race the broker connection at start-up; judge the rest.
    for (i, l) in latencies.iter().enumerate().skip(1) {
        assert!(
            *l < BOUND,
            "alert {i} took {} ms (bound {} ms); all: {:?} ms; log:\n{}",
            ms(*l),
            ms(BOUND),
            latencies.iter().map(|l| ms(*l)).collect::<Vec<_>>(),
            gw.log()
        );
    }
    // Telemetry was piling up meanwhile: the dead sink's cursor holds it.
    assert!(
        spool_sizes.last() > spool_sizes.first(),
        "the spool did not grow: {spool_sizes:?}"
    );
    eprintln!(
        "alert latencies under backlog: {:?} ms; spool sizes: {spool_sizes:?}",
        latencies.iter().map(|l| ms(*l)).collect::<Vec<_>>()
    );
}
