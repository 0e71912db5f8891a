//! The FHIR sink against `tests/peers/fhir_peer.py`: a FHIR server that
//! checks every Bundle and Observation with the independent `fhir.resources`
//! R4B models (and the vital-signs profile rules), implements conditional
//! create, and can fail on purpose. The JSONL sink of the same gateway is
//! the ground truth: every charted reading must be stored exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use wardgate_model::{Event, Metric, Transition};

use crate::{Guarded, Running, emr_ward, python_peer, request};

const MRN: &str = "000101";
const TOKEN: &str = "test-token";

/// A bed with a vital-signs monitor (NEWS2 inputs, SpO2 wandering around
/// its alert threshold), a bed without an MRN and a room: only the first
/// is charted. Every reading is charted (`every = "0s"`) so the accounting
/// is exact.
fn config(port: u16, extra: &str) -> String {
    let ward = emr_ward(
        r#"[
  { metric = "heart_rate", base = 85, amplitude = 30, period = "3s" },
  { metric = "spo2", base = 92, amplitude = 4, period = "2s" },
  { metric = "resp_rate", base = 18 },
  { metric = "bp_systolic", base = 120 },
  { metric = "bp_diastolic", base = 80 },
  { metric = "bp_mean", base = 93 },
  { metric = "body_temp", base = 37.2 },
  { metric = "o2_flow", base = 0 },
  { metric = "consciousness", base = 0 },
  { metric = "battery_level", base = 80 },
]"#,
        MRN,
    );
    format!(
        r#"{ward}
[[sinks]]
type = "fhir"
url = "http://127.0.0.1:{port}/fhir"
token = {{ env = "FHIR_TOKEN" }}
flush_interval = "200ms"
max_backoff = "500ms"
{extra}
[sinks.chart]
every = "0s"
"#
    )
}

fn start(port: u16, extra: &str) -> Running {
    Running::start_env(&config(port, extra), &[("FHIR_TOKEN", TOKEN)])
}

/// What the peer holds.
fn store(port: u16) -> Value {
    let (status, body) = request(port, "GET", "/_store", "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn set_mode(port: u16, mode: &str) {
    let (status, body) = request(port, "POST", "/_mode", mode);
    assert_eq!(status, 200, "{body}");
}

/// Polls until `pred` holds, failing after 60 s or if the gateway exits.
fn wait(gw: &mut Running, what: &str, mut pred: impl FnMut(&Running) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pred(gw) {
        if let Some(status) = gw.child.try_wait().unwrap() {
            panic!("wardgate exited early with {status}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Each charted reading of bed-1, as `<metric>.<time in ns>`, with its value.
fn expected(events: &[Event], leave_out: &[Metric]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for e in events {
        let Event::Reading(r) = e else { continue };
        if r.subject.as_str() != "bed-1" || leave_out.contains(&r.metric) {
            continue;
        }
        match r.metric {
            Metric::HeartRate
            | Metric::Spo2
            | Metric::RespRate
            | Metric::BodyTemp
            | Metric::News2Score
            | Metric::BpSystolic
            | Metric::BpDiastolic
            | Metric::BpMean => {}
            // No LOINC or MDC code: not part of the record.
            _ => continue,
        }
        let nanos = r.at.timestamp_nanos_opt().unwrap();
        out.insert(format!("{}.{nanos}", r.metric.name()), r.value);
    }
    out
}

/// The stored Observations by identifier, checking none is there twice.
fn stored(store: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for o in store["resources"].as_array().unwrap() {
        let id = o["identifier"][0]["value"].as_str().unwrap().to_owned();
        assert!(
            out.insert(id.clone(), o.clone()).is_none(),
            "{id} stored twice"
        );
    }
    out
}

/// The readings an Observation charts, as `<metric>.<time in ns>` with
/// their values: one, or a blood-pressure panel's parts.
fn charted(id: &str, o: &Value) -> Vec<(String, f64)> {
    let rest = id.strip_prefix("gw.bed-1.").expect("bed-1's identifier");
    let Some(nanos) = rest.strip_prefix("bp.") else {
        let value = o["valueQuantity"]["value"]
            .as_f64()
            .or_else(|| o["valueInteger"].as_f64())
            .unwrap();
        return vec![(rest.to_owned(), value)];
    };
    o["component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let metric = match c["code"]["coding"][0]["code"].as_str().unwrap() {
                "8480-6" => "bp_systolic",
                "8462-4" => "bp_diastolic",
                "8478-0" => "bp_mean",
                other => panic!("unexpected BP component {other}"),
            };
            (
                format!("{metric}.{nanos}"),
                c["valueQuantity"]["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Every expected reading is charted once, with its patient and value,
/// and nothing else is.
fn check_exact(store: &Value, expected: &BTreeMap<String, f64>) {
    assert_eq!(
        store["invalid"],
        serde_json::json!([]),
        "the validator refused requests"
    );
    let mut got = BTreeMap::new();
    for (id, o) in stored(store) {
        assert_eq!(o["subject"]["identifier"]["value"], MRN, "{id}");
        for (reading, value) in charted(&id, &o) {
            assert!(
                got.insert(reading.clone(), value).is_none(),
                "{reading} charted twice"
            );
        }
    }
    let want: BTreeSet<&String> = expected.keys().collect();
    let have: BTreeSet<&String> = got.keys().collect();
    assert_eq!(
        want.difference(&have).count() + have.difference(&want).count(),
        0,
        "missing: {:?}\nunexpected: {:?}",
        want.difference(&have).take(5).collect::<Vec<_>>(),
        have.difference(&want).take(5).collect::<Vec<_>>()
    );
    for (reading, value) in &got {
        assert_eq!(Some(value), expected.get(reading), "{reading}");
    }
}

fn raised(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Alert(a) if a.subject.as_str() == "bed-1" && a.transition == Transition::Raised))
}

fn bed1_readings(gw: &Running) -> usize {
    gw.events()
        .iter()
        .filter(|e| matches!(e, Event::Reading(r) if r.subject.as_str() == "bed-1"))
        .count()
}

#[test]
fn every_charted_reading_reaches_the_server_once_and_passes_the_validator() {
    let (_peer, port) = python_peer("fhir_peer.py", &[]);
    let mut gw = start(port, "");
    wait(&mut gw, "an alert and 40 charted observations", |gw| {
        raised(&gw.events()) && store(port)["resources"].as_array().unwrap().len() >= 40
    });
    let events = gw.stop();
    let store = store(port);
    check_exact(&store, &expected(&events, &[]));
    let got = stored(&store);
    // Blood pressure is charted as panels with their three parts (a panel
    // whose parts were committed apart may be charted in pieces, each part
    // once: check_exact counts them).
    let panels = got.iter().filter(|(id, o)| {
        id.contains(".bp.") && o["component"].as_array().is_some_and(|c| c.len() == 3)
    });
    assert!(panels.count() > 0, "no whole BP panel");
    // NEWS2 carries parameter scores that add up to it.
    let news2 = got
        .values()
        .find(|o| o.get("component").is_some() && o.get("valueInteger").is_some())
        .expect("a NEWS2 Observation with its parameter scores");
    let sum: i64 = news2["component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["valueInteger"].as_i64().unwrap())
        .sum();
    assert_eq!(Some(sum), news2["valueInteger"].as_i64());
    assert_eq!(store["existing"], 0, "nothing was sent twice");
}

/// The server down (503), then gone (connection refused), then back
/// answering its stores with 500 (the answer lost), then well: nothing is
/// lost, and the bundles sent again are not stored twice.
#[test]
fn an_outage_of_the_server_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("fhir-state.jsonl");
    let state_arg = state.to_str().unwrap().to_owned();
    let (peer, port) = python_peer("fhir_peer.py", &["--state", &state_arg]);
    set_mode(port, "down");
    let mut gw = start(port, "");
    wait(&mut gw, "retries while the server answers 503", |gw| {
        store(port)["requests"].as_u64().unwrap() >= 3 && bed1_readings(gw) > 50
    });
    drop::<Guarded>(peer);
    let before = bed1_readings(&gw);
    wait(&mut gw, "more readings while the server is gone", |gw| {
        bed1_readings(gw) > before + 50
    });
    let (_peer, again) = python_peer(
        "fhir_peer.py",
        &["--port", &port.to_string(), "--state", &state_arg],
    );
    assert_eq!(again, port);
    set_mode(port, "lose-answer");
    wait(&mut gw, "a bundle stored whose answer was lost", |_| {
        store(port)["creates"].as_u64().unwrap() > 0
    });
    set_mode(port, "ok");
    wait(
        &mut gw,
        "the same bundle sent again and found stored",
        |_| store(port)["existing"].as_u64().unwrap() > 0,
    );
    let events = gw.stop();
    assert!(raised(&events));
    check_exact(&store(port), &expected(&events, &[]));
    let lines = std::fs::read_to_string(&state).unwrap().lines().count();
    assert_eq!(
        lines,
        stored(&store(port)).len(),
        "each Observation created once"
    );
}

/// The server refuses heart-rate Observations for good (422): the bundles
/// are split down to them, they go to the quarantine file with a technical
/// alarm, and everything else is stored once.
#[test]
fn observations_the_server_refuses_are_quarantined_and_the_rest_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let quarantine = dir.path().join("fhir.quarantine.jsonl");
    let (_peer, port) = python_peer("fhir_peer.py", &[]);
    set_mode(port, "reject-code:8867-4");
    let mut gw = start(port, &format!("quarantine = \"{}\"", quarantine.display()));
    wait(&mut gw, "the data_quarantined alarm", |gw| {
        gw.events()
            .iter()
            .any(|e| matches!(e, Event::Alert(a) if a.rule.as_str() == "data_quarantined"))
            && quarantined(&quarantine).len() >= 5
    });
    let events = gw.stop();
    let store = store(port);
    check_exact(&store, &expected(&events, &[Metric::HeartRate]));
    let refused = quarantined(&quarantine);
    let want: BTreeSet<String> = expected(&events, &[])
        .into_keys()
        .filter(|r| r.starts_with("heart_rate."))
        .map(|r| format!("gw.bed-1.{r}"))
        .collect();
    assert_eq!(refused, want);
}

/// The identifiers of the Observations in the quarantine file.
fn quarantined(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let entry: Value = serde_json::from_str(l).unwrap();
            assert_eq!(entry["status"], 422);
            let o: Value = serde_json::from_str(entry["payload"].as_str().unwrap()).unwrap();
            o["identifier"][0]["value"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Mutual TLS instead of a bearer token: the gateway presents its client
/// certificate to a server that requires one signed by the hospital's CA.
#[test]
fn a_server_requiring_a_client_certificate_takes_the_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("fhir-state.jsonl");
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tls");
    let (_peer, port) = python_peer(
        "fhir_peer.py",
        &[
            "--tls-dir",
            tls.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ],
    );
    let conf = config(port, "")
        .replace("http://127.0.0.1", "https://127.0.0.1")
        .replace(
            "token = { env = \"FHIR_TOKEN\" }",
            &format!(
                "ca = \"{0}/ca.pem\"\ncert = \"{0}/client.pem\"\nkey = \"{0}/client.key\"",
                tls.display()
            ),
        );
    let mut gw = Running::start(&conf);
    wait(&mut gw, "20 Observations over mutual TLS", |_| {
        std::fs::read_to_string(&state).map_or(0, |s| s.lines().count()) >= 20
    });
    let events = gw.stop();
    let want = expected(&events, &[]);
    for line in std::fs::read_to_string(&state).unwrap().lines() {
        let (_, o): (String, Value) = serde_json::from_str(line).unwrap();
        let id = o["identifier"][0]["value"].as_str().unwrap();
        for (reading, value) in charted(id, &o) {
            assert_eq!(want.get(&reading), Some(&value), "{reading}");
        }
        assert_eq!(o["subject"]["identifier"]["value"], MRN);
    }
}

/// A token the server refuses (401) is a configuration fault: logged once
/// as such, retried with the data kept (nothing quarantined), and, once the
/// oldest charted reading has waited `stalled_after`, the `sink_stalled`
/// technical alarm — the gateway does not stay silent.
#[test]
fn a_refused_token_is_retried_logged_and_alarmed_never_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let quarantine = dir.path().join("fhir.quarantine.jsonl");
    let (_peer, port) = python_peer("fhir_peer.py", &[]);
    let conf = format!(
        "[spool]\nstalled_after = \"2s\"\n{}",
        config(port, &format!("quarantine = \"{}\"", quarantine.display()))
    );
    let mut gw = Running::start_env(&conf, &[("FHIR_TOKEN", "not-the-token")]);
    gw.wait_event("sink_stalled for the fhir sink", |e| {
        matches!(e, Event::Alert(a) if a.rule.as_str() == "sink_stalled"
            && a.transition == Transition::Raised
            && a.message.contains("fhir"))
    });
    let store = store(port);
    assert!(store["requests"].as_u64().unwrap() >= 2, "{store}");
    assert_eq!(store["resources"], serde_json::json!([]));
    assert!(
        !quarantine.exists(),
        "a configuration fault is never quarantined"
    );
    let log = gw.log();
    assert_eq!(
        log.matches("FHIR refuses the gateway's writes: check this sink's url and token")
            .count(),
        1,
        "{log}"
    );
}
