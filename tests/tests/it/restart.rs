//! Open alerts survive a restart, even a SIGKILL: the same ids, states and
//! priorities on the API before and after, no second alert for the same
//! episode, and a nurse can still acknowledge it.

use wardgate_e2e::{Gateway, free_port, http, lines, wait_for, wait_port};
use wardgate_model::{Event, Transition};

const TOKEN: &str = "restart-test-token";

fn config(port: u16) -> String {
    format!(
        r#"
[gateway]
site = "e2e"
ward = "ward-1"
id = "gw-restart"

[spool]
path = "{{dir}}/spool.redb"

[http]
listen = "127.0.0.1:{port}"
tokens = [{{ name = "station-1", token = {{ file = "{{dir}}/token" }} }}]

[[subjects]]
id = "bed-1"
kind = "bed"
devices = ["glu-1"]

[[devices]]
id = "glu-1"
type = "synthetic"
interval = "200ms"
# 50 mg/dL: level 2 hypoglycaemia, high priority, latching.
signals = [{{ metric = "glucose", base = 50 }}]

[[sinks]]
type = "jsonl"
path = "{{dir}}/events.jsonl"
"#
    )
}

/// The open alerts on the API: (id, state, priority).
fn open_alerts(port: u16) -> Vec<(String, String, String)> {
    let (status, body) = http(port, "GET", "/api/alerts", None, "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("alerts JSON");
    v["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().to_owned(),
                a["state"].as_str().unwrap_or_default().to_owned(),
                a["priority"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Distinct alerts raised, by id (a transition the sink had not confirmed
/// before the kill is delivered again after it: at least once, same id).
fn raised(gw: &Gateway) -> usize {
    let ids: std::collections::BTreeSet<String> = lines(&gw.path("events.jsonl"))
        .iter()
        .filter_map(|l| match serde_json::from_str::<Event>(l).ok()? {
            Event::Alert(a) if a.transition == Transition::Raised => Some(a.id.0.to_string()),
            _ => None,
        })
        .collect();
    ids.len()
}

#[test]
fn open_alerts_survive_a_sigkill_with_their_ids_and_states() {
    let port = free_port();
    let mut gw = Gateway::start_with_secrets(&config(port), &[("token", TOKEN)]);
    wait_port(port);
    let before = wait_for("the hypoglycaemia alert on the API", || {
        let open = open_alerts(port);
        (!open.is_empty()).then_some(open)
    });
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(
        (before[0].1.as_str(), before[0].2.as_str()),
        ("active", "high")
    );

    // A nurse silences bed 1 for 30 minutes: on the record in the JSONL
    // sink (who, what, until when) and on the API.
    let (status, body) = http(
        port,
        "POST",
        "/api/silence",
        Some(TOKEN),
        r#"{"subject": "bed-1", "minutes": 30, "by": "nurse-b"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let record = wait_for("the silence in the JSONL sink", || {
        lines(&gw.path("events.jsonl"))
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "silence")
    });
    assert_eq!(record["target"]["subject"], "bed-1");
    assert_eq!(record["state"], "active");
    assert!(
        record["by"].as_str().unwrap().contains("nurse-b"),
        "{record}"
    );
    let silences = |port| {
        let (status, body) = http(port, "GET", "/api/silences", None, "");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["silences"].as_array().unwrap().clone()
    };
    let silenced = silences(port);
    assert_eq!(silenced.len(), 1, "{silenced:?}");

    gw.kill();
    gw.restart();
    wait_port(port);
    // From the first page view after the restart: the same alert, and the
    // silence still in force.
    assert_eq!(open_alerts(port), before);
    assert_eq!(silences(port), silenced);
    assert!(gw.log().contains("open alerts restored"), "{}", gw.log());
    // The glucose is still low: still one episode, no second alert, however
    // many readings arrive after the restart.
    let mark = lines(&gw.path("events.jsonl")).len();
    wait_for("readings after the restart", || {
        (lines(&gw.path("events.jsonl")).len() >= mark + 5).then_some(())
    });
    assert_eq!(raised(&gw), 1, "{}", gw.log());

    // The engine knows it too: it can be acknowledged.
    let id = &before[0].0;
    let (status, body) = http(
        port,
        "POST",
        &format!(
            "/api/alerts/{}/ack",
            id.replace('/', "%2F").replace(':', "%3A")
        ),
        Some(TOKEN),
        r#"{"by": "nurse-b"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let after = wait_for("the acknowledgement on the API", || {
        let open = open_alerts(port);
        open.iter().any(|a| a.1 == "acknowledged").then_some(open)
    });
    assert_eq!(after[0].0, *id);
    gw.stop();
}
