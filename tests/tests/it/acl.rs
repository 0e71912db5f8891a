//! The shipped broker ACL (`config/mosquitto/wardgate.acl`) on a real
//! mosquitto: only the alert manager's account acknowledges alerts, and only
//! in its own name; a gateway cannot write another gateway's topics; the
//! bridge reads telemetry and writes nothing; anonymous clients are turned
//! away. Every acknowledgement records the account it came from.
//!
//! How a refusal is shown: mosquitto answers a publish it refuses with a
//! PUBACK like any other (MQTT 3.1.1 has no way to say no) and drops it. Each
//! forged message is published and its PUBACK awaited before a genuine one
//! follows, from the same or another client; the broker handles them in that
//! order, so had it let the forged one through, the receiver would have had
//! it before the genuine one.

use std::time::Duration;

use rumqttc::{Client, Connection, Event, MqttOptions, Packet, QoS};
use wardgate_e2e::{Gateway, Mosquitto, Subscriber, wait_for, workspace};

const ACCOUNTS: &[(&str, &str)] = &[
    ("gw-e2e", "gw-e2e-secret"),
    ("gw-2", "gw-2-secret"),
    ("alert-manager", "am-secret"),
    ("bridge", "bridge-secret"),
];

fn password(account: &str) -> &'static str {
    ACCOUNTS
        .iter()
        .find(|(a, _)| *a == account)
        .map(|(_, p)| *p)
        .expect("known account")
}

/// A connected client of `account` (None: anonymous); the CONNACK is
/// awaited and returned as accepted or not.
fn connect(port: u16, client_id: &str, account: Option<&str>) -> (Client, Connection, bool) {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    if let Some(a) = account {
        opts.set_credentials(a, password(a));
    }
    let (client, mut conn) = Client::new(opts, 10);
    let accepted = match conn.iter().next() {
        Some(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
            ack.code == rumqttc::ConnectReturnCode::Success
        }
        _ => false,
    };
    (client, conn, accepted)
}

/// Connects as `account`, publishes once at QoS 1 and waits until the
/// broker has handled it: its PUBACK, or — mosquitto 2.0 after refusing a
/// publish — the connection closed right after that PUBACK.
fn publish(port: u16, account: &str, topic: &str, payload: &str) {
    let (client, mut conn, accepted) = connect(port, &format!("{account}-pub"), Some(account));
    assert!(accepted, "{account} was not let in");
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .expect("queue publish");
    for event in conn.iter() {
        match event {
            Ok(Event::Incoming(Packet::PubAck(_))) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = client.disconnect();
}

#[test]
fn shipped_acl_stops_forged_acknowledgements_and_foreign_writes() {
    let acl = workspace().join("config/mosquitto/wardgate.acl");
    let shipped = std::fs::read_to_string(workspace().join("config/mosquitto/wardgate.conf"))
        .expect("shipped mosquitto conf");
    assert!(
        shipped.lines().any(|l| l.trim() == "allow_anonymous false"),
        "{shipped}"
    );
    let broker = Mosquitto::start_secured(&acl, ACCOUNTS);
    let port = broker.port;

    // Anonymous, a wrong password, and an account the broker does not know
    // are turned away at the door.
    assert!(!connect(port, "anon", None).2, "anonymous accepted");
    let mut opts = MqttOptions::new("wrong", "127.0.0.1", port);
    opts.set_credentials("alert-manager", "guess");
    let (_c, mut conn) = Client::new(opts, 10);
    assert!(
        !matches!(conn.iter().next(), Some(Ok(Event::Incoming(Packet::ConnAck(a)))) if a.code == rumqttc::ConnectReturnCode::Success),
        "a wrong password was accepted"
    );

    // The gateway, under its own account, raises an alert.
    let alerts = Subscriber::start_as(
        port,
        "am-view",
        "wardgate/+/+/+/alerts/#",
        Some(("alert-manager", password("alert-manager"))),
    );
    // As `wardgate bridge` subscribes: a shared subscription.
    let telemetry = Subscriber::start_as(
        port,
        "bridge-view",
        "$share/wardgate-bridge/wardgate/+/+/+/telemetry",
        Some(("bridge", password("bridge"))),
    );
    let mut gw = Gateway::start_with_secrets(
        &format!(
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
interval = "100ms"
signals = [{{ metric = "glucose", base = 50 }}]

[[sinks]]
type = "mqtt"
broker = {{ host = "127.0.0.1", port = {port}, keep_alive = "5s", reconnect_max = "2s", username = "gw-e2e", password = {{ file = "{{dir}}/mqtt.secret" }} }}
"#
        ),
        &[("mqtt.secret", password("gw-e2e"))],
    );
    let mut states: Vec<serde_json::Value> = Vec::new();
    let mut alert_in = |state: &str| {
        wait_for(&format!("the alert {state}"), || {
            for (topic, payload, _) in alerts.drain() {
                if topic == "wardgate/e2e/ward-1/gw-e2e/alerts/bed-1/hypoglycaemia" {
                    states.push(serde_json::from_slice(&payload).expect("alert JSON"));
                }
            }
            states.iter().find(|v| v["state"] == state).cloned()
        })
    };
    let raised = alert_in("active");
    let id = raised["id"].as_str().expect("alert id").to_owned();
    let ack = |by: &str| serde_json::json!({"alert_id": id, "by": by}).to_string();
    let commands = "wardgate/e2e/ward-1/gw-e2e/commands/ack";

    // Another gateway's account acknowledges, in its own name and posing as
    // the alert manager; the alert manager posing as another account.
    publish(port, "gw-2", &format!("{commands}/gw-2"), &ack("mallory"));
    publish(
        port,
        "gw-2",
        &format!("{commands}/alert-manager"),
        &ack("mallory"),
    );
    publish(
        port,
        "alert-manager",
        &format!("{commands}/nurse-app"),
        &ack("mallory"),
    );
    // Then the genuine acknowledgement.
    publish(
        port,
        "alert-manager",
        &format!("{commands}/alert-manager"),
        &ack("nurse-7"),
    );
    let acked = alert_in("acknowledged");
    assert_eq!(acked["id"].as_str(), Some(id.as_str()));
    assert_eq!(
        (&acked["acknowledged"]["by"], &acked["acknowledged"]["via"]),
        (
            &serde_json::json!("nurse-7@alert-manager"),
            &serde_json::json!("mqtt:alert-manager")
        )
    );

    // Writes on the gateway's telemetry topic from anyone but the gateway:
    // another gateway, the bridge, the alert manager. Then another gateway's
    // genuine telemetry on its own topic, which arrives.
    let forged = "heart_rate,site=e2e,ward=ward-1,gateway=gw-e2e,subject=bed-1 value=30 1";
    let foreign = "wardgate/e2e/ward-1/gw-e2e/telemetry";
    for account in ["gw-2", "alert-manager", "bridge"] {
        publish(port, account, foreign, forged);
    }
    let genuine = "heart_rate,site=e2e,ward=ward-1,gateway=gw-2,subject=bed-9 value=70 2";
    publish(port, "gw-2", "wardgate/e2e/ward-1/gw-2/telemetry", genuine);
    let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
    wait_for("gw-2's own telemetry", || {
        seen.extend(telemetry.drain().into_iter().map(|(t, p, _)| (t, p)));
        seen.iter()
            .any(|(_, p)| p == genuine.as_bytes())
            .then_some(())
    });
    assert!(
        !seen.iter().any(|(_, p)| p == forged.as_bytes()),
        "a forged telemetry message was delivered"
    );
    // The gateway's own telemetry reached the bridge's account.
    assert!(
        seen.iter().any(|(t, _)| t == foreign),
        "no telemetry from gw-e2e"
    );

    gw.stop();
    let log = gw.log();
    assert_eq!(log.matches("alert acknowledged").count(), 1, "{log}");
    assert!(!log.contains("mallory"), "{log}");
}
