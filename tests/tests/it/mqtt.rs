//! Delivery to MQTT without loss: a steady stream, a broker outage, and a
//! gateway killed with SIGKILL. The JSONL sink, fed from the same spool, is
//! the record of what was accepted; every reading in it must reach the
//! subscriber. A reading may arrive twice after a crash or reconnect (same
//! series and timestamp, so InfluxDB and victoria-metrics store it once);
//! sets are compared, so duplicates are tolerated and nothing else.

use std::collections::BTreeSet;

use wardgate_e2e::{Gateway, Mosquitto, Subscriber, free_port, lines, metric, wait_for};
use wardgate_model::Event;

fn config(port: u16) -> String {
    format!(
        r#"
[gateway]
site = "e2e"
ward = "ward-1"
id = "gw-e2e"

[spool]
path = "{{dir}}/spool.redb"

[[subjects]]
id = "bed-1"
kind = "bed"
devices = ["syn-1"]

[[devices]]
id = "syn-1"
type = "synthetic"
interval = "10ms"
signals = [{{ metric = "heart_rate", base = 72, amplitude = 5, period = "7s" }}, {{ metric = "spo2", base = 96 }}]

[[sinks]]
type = "jsonl"
path = "{{dir}}/events.jsonl"

[[sinks]]
type = "mqtt"
broker = {{ host = "127.0.0.1", port = {port}, keep_alive = "5s", reconnect_max = "2s" }}
batch_max = 50
"#
    )
}

/// (metric, timestamp in ns) of every reading in the JSONL file.
fn accepted(gw: &Gateway) -> BTreeSet<(String, i64)> {
    lines(&gw.path("events.jsonl"))
        .iter()
        .filter_map(|l| match serde_json::from_str::<Event>(l) {
            Ok(Event::Reading(r)) => Some((
                r.metric.name().to_owned(),
                r.at.timestamp_nanos_opt().unwrap(),
            )),
            Ok(_) => None,
            Err(e) => panic!("bad JSONL line {l:?}: {e}"),
        })
        .collect()
}

/// Collects (metric, timestamp) of every reading line received on telemetry topics.
#[derive(Default)]
struct Received {
    readings: BTreeSet<(String, i64)>,
    status: Vec<String>,
}

impl Received {
    fn take(&mut self, sub: &Subscriber) {
        for (topic, payload, _retain) in sub.drain() {
            let text = String::from_utf8(payload).expect("UTF-8 payload");
            if topic.ends_with("/telemetry") {
                for line in text.lines() {
                    let measurement = line.split([',', ' ']).next().unwrap().to_owned();
                    let ts: i64 = line.rsplit(' ').next().unwrap().parse().expect("timestamp");
                    if measurement == "heart_rate" || measurement == "spo2" {
                        self.readings.insert((measurement, ts));
                    }
                }
            } else if topic.ends_with("/status") && !topic.contains("/devices/") {
                self.status.push(text);
            }
        }
    }

    /// Waits until every accepted reading has been received.
    fn wait_for_all(&mut self, sub: &Subscriber, accepted: &BTreeSet<(String, i64)>) {
        wait_for("every accepted reading on MQTT", || {
            self.take(sub);
            accepted.is_subset(&self.readings).then_some(())
        });
        assert_eq!(
            &self.readings, accepted,
            "MQTT carried readings the JSONL sink never saw"
        );
    }
}

fn wait_accepted(gw: &Gateway, at_least: usize) -> usize {
    wait_for(&format!("{at_least} accepted readings"), || {
        let n = accepted(gw).len();
        (n >= at_least).then_some(n)
    })
}

#[test]
fn steady_stream_arrives_complete_with_status_and_last_will() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, "e2e-steady", "wardgate/#");
    let mut gw = Gateway::start(&config(broker.port));
    wait_accepted(&gw, 300);
    gw.stop();
    let accepted = accepted(&gw);
    let mut got = Received::default();
    got.wait_for_all(&sub, &accepted);
    assert_eq!(got.status.first().map(String::as_str), Some("online"));
    assert_eq!(got.status.last().map(String::as_str), Some("offline"));
}

#[test]
fn broker_outage_loses_nothing() {
    let mut broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, "e2e-outage", "wardgate/+/+/+/telemetry");
    let http = free_port();
    let mut gw = Gateway::start(&format!(
        "{}\n[http]\nlisten = \"127.0.0.1:{http}\"\n",
        config(broker.port)
    ));
    let before = wait_accepted(&gw, 100);
    broker.stop();
    // The broker stays away for 30 s (the outage is the scenario, not a
    // readiness wait); readings keep being accepted into the spool meanwhile.
    std::thread::sleep(std::time::Duration::from_secs(30));
    let during = wait_accepted(&gw, before + 300);
    broker.restart();
    wait_accepted(&gw, during + 100);
    // Stop only once the sink is back: a gateway stopped while the broker is
    // unreachable keeps the rest in its spool, which this test does not restart.
    wait_for("the MQTT sink to reconnect", || {
        (gw.log().matches("connected to the MQTT broker").count() >= 2).then_some(())
    });
    // `/metrics`: what was committed during the outage is confirmed by the
    // broker after it, much of it more than 16 s later.
    wait_for("deliveries late by the outage on /metrics", || {
        let (_, body) = wardgate_e2e::http(http, "GET", "/metrics", None, "");
        let acked = metric(
            &body,
            r#"wardgate_sink_acknowledged_records_total{sink="mqtt"}"#,
        )?;
        let prompt = metric(
            &body,
            r#"wardgate_sink_delivery_latency_seconds_bucket{le="16.384",sink="mqtt"}"#,
        )?;
        (acked - prompt >= 100.0).then_some(())
    });
    gw.stop();
    assert!(
        gw.log().contains("MQTT broker connection lost"),
        "{}",
        gw.log()
    );
    let accepted = accepted(&gw);
    Received::default().wait_for_all(&sub, &accepted);
}

#[test]
fn gateway_killed_mid_stream_resumes_from_the_spool() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, "e2e-kill", "wardgate/+/+/+/telemetry");
    let mut gw = Gateway::start(&config(broker.port));
    let before = wait_accepted(&gw, 200);
    gw.kill();
    gw.restart();
    wait_accepted(&gw, before + 200);
    gw.stop();
    let log = gw.log();
    assert!(log.matches("spool open").count() == 2, "{log}");
    let accepted = accepted(&gw);
    Received::default().wait_for_all(&sub, &accepted);
}

/// The alert path end to end: a hypoglycaemic reading raises an alert whose
/// whole state is retained on MQTT; a nurse's acknowledgement published on the
/// command topic reaches the rules engine, and the new state is published.
#[test]
fn alert_is_retained_and_acknowledged_over_mqtt() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, "e2e-alerts", "wardgate/+/+/+/alerts/#");
    let cfg = config(broker.port).replace(
        r#"signals = [{ metric = "heart_rate", base = 72, amplitude = 5, period = "7s" }, { metric = "spo2", base = 96 }]"#,
        r#"signals = [{ metric = "glucose", base = 50 }]"#,
    );
    assert!(cfg.contains("glucose"));
    let mut gw = Gateway::start(&cfg);

    let alert_state = |sub: &Subscriber, states: &mut Vec<serde_json::Value>, state: &str| {
        wait_for(&format!("a retained alert in state {state}"), || {
            for (topic, payload, _) in sub.drain() {
                if topic.ends_with("/alerts/bed-1/hypoglycaemia") {
                    states.push(serde_json::from_slice(&payload).expect("alert JSON"));
                }
            }
            states.iter().find(|v| v["state"] == state).cloned()
        })
    };
    let mut seen = Vec::new();
    let raised = alert_state(&sub, &mut seen, "active");
    assert_eq!(raised["priority"], "high");
    let id = raised["id"].as_str().unwrap().to_owned();

    // A nurse's app acknowledges it on the command topic (and sends garbage first).
    let mut opts = rumqttc::MqttOptions::new("nurse-app", "127.0.0.1", broker.port);
    opts.set_keep_alive(std::time::Duration::from_secs(5));
    let (client, mut conn) = rumqttc::Client::new(opts, 10);
    // Its account's level of the command topic (the broker's ACL lets only
    // that account publish there; this broker has none).
    let topic = "wardgate/e2e/ward-1/gw-e2e/commands/ack/nurse-app";
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, false, "not json")
        .unwrap();
    let ack = serde_json::json!({"alert_id": id, "by": "nurse-7"}).to_string();
    client
        .publish(topic, rumqttc::QoS::AtLeastOnce, false, ack)
        .unwrap();
    let mut pubacks = 0;
    for event in conn.iter() {
        if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = event {
            pubacks += 1;
            if pubacks == 2 {
                break;
            }
        }
    }

    let acked = alert_state(&sub, &mut seen, "acknowledged");
    assert_eq!(acked["id"].as_str(), Some(id.as_str()));
    assert_eq!(acked["acknowledged"]["by"], "nurse-7@nurse-app");
    assert_eq!(acked["acknowledged"]["via"], "mqtt:nurse-app");
    gw.stop();
    let log = gw.log();
    assert!(log.contains("bad acknowledgement command ignored"), "{log}");
    // The JSONL sink saw the same transitions, from the same spool.
    let transitions: Vec<String> = lines(&gw.path("events.jsonl"))
        .iter()
        .filter_map(|l| match serde_json::from_str::<Event>(l).unwrap() {
            Event::Alert(a) if a.id.0.as_ref() == id => Some(format!("{:?}", a.transition)),
            _ => None,
        })
        .collect();
    assert_eq!(transitions.first().map(String::as_str), Some("Raised"));
    assert!(
        transitions.iter().any(|t| t == "Acknowledged"),
        "{transitions:?}"
    );
}

/// Ten SIGKILLs in a row during a steady stream: every reading the spool
/// committed (the JSONL sink's record of it) reaches the subscriber, once or
/// again with the same series and timestamp (idempotent in a TSDB), never
/// lost; and the gateway comes back every time.
#[test]
fn ten_sigkills_in_a_row_lose_nothing() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(broker.port, "e2e-kills", "wardgate/+/+/+/telemetry");
    let mut gw = Gateway::start(&config(broker.port));
    let mut n = wait_accepted(&gw, 100);
    for _ in 0..10 {
        gw.kill();
        gw.restart();
        n = wait_accepted(&gw, n + 50);
    }
    gw.stop();
    let log = gw.log();
    assert_eq!(log.matches("spool open").count(), 11, "{log}");
    let accepted = accepted(&gw);
    assert!(accepted.len() >= 600, "{}", accepted.len());
    Received::default().wait_for_all(&sub, &accepted);
}
