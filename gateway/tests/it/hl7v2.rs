//! The HL7 v2 sink against an independent peer: `tests/peers/mllp_peer.py`,
//! an MLLP receiver that validates every message with hl7apy (strict, HL7
//! v2.6) and logs what it accepted. A real gateway with synthetic devices
//! raises and clears alerts and sends readings; every reading of a bed with
//! an MRN and every alert transition of it must reach the peer exactly once
//! by content (a message sent again carries its control id, so the peer can
//! drop it), through an outage of the peer, an acknowledgement that never
//! comes, an `AE`, an `AR` and garbage instead of an ACK.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use wardgate_model::{AlertState, Event, Metric, Transition};

use crate::{Guarded, Running, emr_ward, free_port, get, python_peer};

/// The peer process, its log of received messages and its control files.
struct Peer {
    child: Option<Guarded>,
    port: u16,
    dir: tempfile::TempDir,
    /// Run hl7apy's own `MLLPServer` (one message per connection).
    hl7apy_server: bool,
}

impl Peer {
    fn start() -> Peer {
        Self::start_with(false)
    }

    fn start_with(hl7apy_server: bool) -> Peer {
        let mut peer = Peer {
            child: None,
            port: 0,
            dir: tempfile::tempdir().unwrap(),
            hl7apy_server,
        };
        peer.restart();
        peer
    }

    /// Starts the peer (again, on the same port once it has one) and waits
    /// until it listens.
    fn restart(&mut self) {
        let port = self.port.to_string();
        let out = self.dir.path().join("received.jsonl");
        let control = self.dir.path().to_str().unwrap().to_owned();
        let mut args = vec![
            "--port",
            &port,
            "--out",
            out.to_str().unwrap(),
            "--control",
            &control,
        ];
        if self.hl7apy_server {
            args.push("--hl7apy-server");
        }
        let (child, port) = python_peer("mllp_peer.py", &args);
        self.port = port;
        self.child = Some(child);
    }

    fn stop(&mut self) {
        self.child = None;
    }

    fn flag(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn unflag(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join(name)).unwrap();
    }

    /// Every message received, in order, as the peer logged it (a line
    /// still being written is left for the next look).
    fn received(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.dir.path().join("received.jsonl")).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Polls the peer's log until `pred` holds for it.
    fn wait(&self, gw: &mut Running, what: &str, pred: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pred(&self.received()) {
            if let Some(status) = gw.child.try_wait().unwrap() {
                panic!("wardgate exited early with {status}");
            }
            assert!(Instant::now() < deadline, "the peer never saw {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

const RULES: &str = r#"
[[rules]]
id = "tachy"
description = "Heart rate above 125 (test timing: a few episodes a minute)"
when = "heart_rate > 125"
priority = "high"
kind = "physiological"
message = "Heart rate {heart_rate}/min | check & count"
"#;

/// bed-1 has an MRN; bed-2 has none (not sent, counted as dropped); the
/// room has no patient (not sent).
fn start_gateway(peer: &Peer, rules_dir: &Path, http_port: u16, quarantine: &Path) -> Running {
    let rules = rules_dir.join("tachy.rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    Running::start(&format!(
        r#"
[spool]
path = "{spool}"

[rules]
packs = []
files = ["{rules}"]

[http]
listen = "127.0.0.1:{http_port}"

{ward}

[[sinks]]
type = "hl7v2"
name = "emr"
address = "127.0.0.1:{port}"
receiving_application = "EMR"
receiving_facility = "HOSP"
ack_timeout = "1s"
max_backoff = "300ms"
quarantine = "{quarantine}"
chart = {{ every = "0s" }}
"#,
        ward = emr_ward(
            r#"[{ metric = "heart_rate", base = 100, amplitude = 40, period = "3s" }, { metric = "spo2", base = 95, amplitude = 2, period = "5s", decimals = 1 }]"#,
            "MRN-0001"
        ),
        rules = rules.display(),
        spool = rules_dir.join("spool.redb").display(),
        port = peer.port,
        quarantine = quarantine.display(),
    ))
}

/// HL7 DTM as the peer read it (`20261127101530.1234+0000`).
fn dtm(s: &str) -> DateTime<Utc> {
    let (local, zone) = s.split_at(s.len() - 5);
    assert_eq!(zone, "+0000", "{s}");
    let format = if local.contains('.') {
        "%Y%m%d%H%M%S%.f"
    } else {
        "%Y%m%d%H%M%S"
    };
    NaiveDateTime::parse_from_str(local, format)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .and_utc()
}

/// What identifies a reading or an alert transition by content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Content {
    Reading {
        code: String,
        at_100us: i64,
        device: String,
        value: String,
    },
    Alert {
        id: String,
        phase: String,
        state: String,
        inactivation: String,
        at: i64,
        message: String,
    },
}

fn at_100us(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap() / 100_000
}

/// OBX-3.1 of a metric: MDC, else LOINC, else NEWS2's SNOMED code, else its
/// name (docs/interop.md).
fn code(metric: &Metric) -> String {
    let info = metric.info();
    match (info.and_then(|i| i.mdc), info.and_then(|i| i.loinc)) {
        (Some(m), _) => m.code.to_string(),
        (None, Some(l)) => l.to_owned(),
        _ if *metric == Metric::News2Score => "1104051000000101".into(),
        _ => metric.name().to_owned(),
    }
}

/// What the gateway committed for bed-1, as the peer should see it.
fn expected(events: &[Event]) -> BTreeSet<Content> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Reading(r) if r.subject.as_str() == "bed-1" => Some(Content::Reading {
                code: code(&r.metric),
                at_100us: at_100us(r.at),
                device: r
                    .device
                    .as_ref()
                    .map(|d| d.id.to_string())
                    .unwrap_or_default(),
                value: format!("{}", r.value),
            }),
            Event::Alert(a) if a.subject.as_str() == "bed-1" => Some(Content::Alert {
                id: a.id.0.to_string(),
                phase: match a.transition {
                    Transition::Raised => "start",
                    Transition::Cleared => "end",
                    _ => "continue",
                }
                .into(),
                state: match a.state {
                    AlertState::Latched => "latched",
                    AlertState::Cleared => "inactive",
                    AlertState::Active | AlertState::Acknowledged => "active",
                }
                .into(),
                inactivation: if a.acknowledged.is_some() {
                    "alert-acknowledged"
                } else {
                    "enabled"
                }
                .into(),
                at: at_100us(a.at),
                message: a.message.to_string(),
            }),
            _ => None,
        })
        .collect()
}

/// What one logged message carries, checked against what every message of
/// this gateway must say (patient, units, flags).
fn content(m: &Value) -> Content {
    assert_eq!(m["valid"], true, "the peer refused a message: {m}");
    assert_eq!(
        (&m["mrn"], &m["authority"], &m["bed"], &m["patient_class"]),
        (
            &"MRN-0001".into(),
            &"WARDHOSP".into(),
            &"bed-1".into(),
            &"I".into()
        ),
        "{m}"
    );
    let obx = &m["obx"][0];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match m["type"].as_str() {
        Some("ORU^R01^ORU_R01") => {
            let metric = [Metric::HeartRate, Metric::Spo2, Metric::News2Score]
                .into_iter()
                .find(|metric| code(metric) == s(&obx["code"]))
                .unwrap_or_else(|| panic!("unexpected OBX-3 {obx}"));
            assert_eq!(s(&obx["unit"]), metric.unit(), "{obx}");
            assert_eq!(s(&obx["unit_system"]), "UCUM");
            assert_eq!(s(&obx["type"]), "NM");
            let value: f64 = s(&obx["value"]).parse().unwrap();
            Content::Reading {
                code: s(&obx["code"]),
                at_100us: at_100us(dtm(&s(&obx["time"]))),
                device: s(&obx["device"]),
                value: format!("{value}"),
            }
        }
        Some("ORU^R40^ORU_R40") => {
            let a = &m["alert"];
            assert_eq!(a["flags"], serde_json::json!(["PH", "SP"]), "{m}");
            assert_eq!((&a["priority"], &a["type"]), (&"PH".into(), &"SP".into()));
            assert_eq!(a["rule"], "tachy");
            assert_eq!(a["source"], "mon-1", "the device the rule read");
            Content::Alert {
                id: s(&m["filler"]),
                phase: s(&a["phase"]),
                state: s(&a["state"]),
                inactivation: s(&a["inactivation"]),
                at: at_100us(dtm(&s(&obx["time"]))),
                message: s(&a["message"]),
            }
        }
        other => panic!("unexpected message type {other:?}"),
    }
}

/// Every reading and alert transition of bed-1 arrived exactly once by
/// content (one control id each; a resend carries the same one), nothing
/// else arrived, and what the peer refused for good (`AE`) is in the
/// quarantine file instead.
fn check_exactly_once(events: &[Event], peer: &Peer, quarantine: &Path) -> usize {
    let received = peer.received();
    // Every receipt of one content, whatever the answer, carries one id.
    let mut ids: BTreeMap<Content, BTreeSet<String>> = BTreeMap::new();
    let mut by_content: BTreeMap<Content, BTreeSet<String>> = BTreeMap::new();
    let mut refused = BTreeSet::new();
    for m in &received {
        let id = m["control_id"].as_str().unwrap().to_owned();
        let c = content(m);
        ids.entry(c.clone()).or_default().insert(id.clone());
        match m["answer"].as_str() {
            Some("AA") => {
                by_content.entry(c).or_default().insert(id);
            }
            Some("AE") => {
                refused.insert((c, id));
            }
            _ => {}
        }
    }
    for (c, ids) in &ids {
        assert_eq!(
            ids.len(),
            1,
            "{c:?} was sent under several control ids: {ids:?}"
        );
    }
    let quarantined = std::fs::read_to_string(quarantine).unwrap_or_default();
    for (c, id) in &refused {
        assert!(
            quarantined.contains(id.as_str()),
            "{id} was refused but is not in the quarantine file"
        );
        assert!(
            !by_content.contains_key(c),
            "{c:?} was refused yet accepted"
        );
    }
    for (c, ids) in &by_content {
        assert_eq!(
            ids.len(),
            1,
            "{c:?} arrived under several control ids: {ids:?}"
        );
    }
    let expected = expected(events);
    let delivered: BTreeSet<Content> = by_content
        .into_keys()
        .chain(refused.into_iter().map(|(c, _)| c))
        .collect();
    let missing: Vec<_> = expected.difference(&delivered).collect();
    let extra: Vec<_> = delivered.difference(&expected).collect();
    assert!(missing.is_empty(), "never delivered: {missing:#?}");
    assert!(
        extra.is_empty(),
        "delivered but not committed for bed-1: {extra:#?}"
    );
    assert!(
        expected
            .iter()
            .any(|c| matches!(c, Content::Alert { phase, .. } if phase == "end")),
        "the run raised and cleared no alert"
    );
    expected.len()
}

fn answered(received: &[Value], answer: &str) -> Vec<String> {
    received
        .iter()
        .filter(|m| m["answer"] == answer)
        .map(|m| m["control_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether the message `id` was finally accepted.
fn accepted(received: &[Value], id: &str) -> bool {
    received
        .iter()
        .any(|m| m["control_id"] == id && m["answer"] == "AA")
}

fn count_alerts(gw: &Running) -> usize {
    gw.events()
        .iter()
        .filter(|e| matches!(e, Event::Alert(a) if a.subject.as_str() == "bed-1"))
        .count()
}

/// A run without faults: the gateway raises and clears an alert, stops;
/// every message arrived exactly once, each answered AA at the first try
/// (no errors, no resends). Returns the gateway and how many messages.
fn clean_run(peer: &Peer) -> (Running, usize) {
    let dir = tempfile::tempdir().unwrap();
    let quarantine = dir.path().join("q.jsonl");
    let mut gw = start_gateway(peer, dir.path(), free_port(), &quarantine);
    gw.wait_event(
        "a cleared alert",
        |e| matches!(e, Event::Alert(a) if a.transition == Transition::Cleared),
    );
    let events = gw.stop();
    let n = check_exactly_once(&events, peer, &quarantine);
    let received = peer.received();
    assert_eq!(answered(&received, "AA").len(), received.len());
    (gw, n)
}

#[test]
fn readings_and_alert_transitions_reach_the_peer_exactly_once_and_valid() {
    let (gw, n) = clean_run(&Peer::start());
    assert!(n > 10, "only {n} messages");
    assert!(
        gw.log().contains("no MRN for this subject"),
        "bed-2 is logged"
    );
}

/// hl7apy's own MLLP server closes the connection after each answer: the
/// sink opens a new one for the next message, and that is no failure.
#[test]
fn a_peer_closing_the_connection_after_each_message_is_served_without_failures() {
    let (gw, _) = clean_run(&Peer::start_with(true));
    assert!(!gw.log().contains("HL7 delivery failed"), "{}", gw.log());
}

/// A line feed after each ACK's frame (some engines send one) is passed
/// over, not taken for a broken answer.
#[test]
fn bytes_outside_the_frames_of_good_acks_are_no_failure() {
    let peer = Peer::start();
    peer.flag("trailing_lf", "");
    let (gw, _) = clean_run(&peer);
    assert!(!gw.log().contains("HL7 delivery failed"), "{}", gw.log());
}

#[test]
fn an_outage_of_the_peer_and_a_lost_ack_lose_and_duplicate_nothing() {
    let mut peer = Peer::start();
    let dir = tempfile::tempdir().unwrap();
    let quarantine = dir.path().join("q.jsonl");
    let mut gw = start_gateway(&peer, dir.path(), free_port(), &quarantine);
    peer.wait(&mut gw, "a first alert", |r| {
        r.iter().any(|m| m["type"] == "ORU^R40^ORU_R40")
    });
    // Outage: the gateway goes on raising and clearing alerts meanwhile.
    peer.stop();
    let before = count_alerts(&gw);
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_alerts(&gw) < before + 2 {
        assert!(Instant::now() < deadline, "no alerts during the outage");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Back on the same port; the first message it gets is never answered.
    peer.flag("silent_once", "");
    peer.restart();
    peer.wait(&mut gw, "the unanswered message sent again", |r| {
        answered(r, "none")
            .first()
            .is_some_and(|id| accepted(r, id))
    });
    // The gateway dies while a message waits for its ACK; started again on
    // the same spool, it sends that message again under the same id.
    peer.flag("silent_once", "");
    peer.wait(&mut gw, "a second unanswered message", |r| {
        answered(r, "none").len() == 2
    });
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(gw.dir.path().join("gw.log"))
        .unwrap();
    gw.child = crate::wardgate()
        .args(["run", "--config"])
        .arg(gw.dir.path().join("gw.toml"))
        .stderr(log)
        .spawn()
        .unwrap();
    peer.wait(
        &mut gw,
        "the message in flight at the crash sent again",
        |r| accepted(r, &answered(r, "none")[1]),
    );
    let events = gw.stop();
    check_exactly_once(&events, &peer, &quarantine);
    assert!(gw.log().contains("HL7 delivery failed"));
}

#[test]
fn an_application_error_is_quarantined_and_a_reject_is_retried_until_accepted() {
    let peer = Peer::start();
    let dir = tempfile::tempdir().unwrap();
    let quarantine = dir.path().join("q.jsonl");
    peer.flag("refuse_once", "ORU^R40");
    let mut gw = start_gateway(&peer, dir.path(), free_port(), &quarantine);
    // AE: the alert transition goes to the quarantine file, the stream goes on.
    peer.wait(&mut gw, "an AE, then an accepted alert", |r| {
        let refused = r.iter().position(|m| m["answer"] == "AE");
        refused.is_some_and(|i| {
            r[i + 1..]
                .iter()
                .any(|m| m["type"] == "ORU^R40^ORU_R40" && m["answer"] == "AA")
        })
    });
    gw.wait_event(
        "the data_quarantined alarm",
        |e| matches!(e, Event::DeviceAlarm(a) if &*a.alarm == "data_quarantined"),
    );
    // AR: the same message again and again until the peer takes it.
    peer.flag("reject", "");
    peer.wait(&mut gw, "three rejects", |r| answered(r, "AR").len() >= 3);
    peer.unflag("reject");
    peer.wait(&mut gw, "the rejected message accepted", |r| {
        let rejected = answered(r, "AR");
        rejected.iter().all(|id| id == &rejected[0]) && accepted(r, &rejected[0])
    });
    let events = gw.stop();
    check_exactly_once(&events, &peer, &quarantine);
    let q = std::fs::read_to_string(&quarantine).unwrap();
    assert_eq!(q.lines().count(), 1, "{q}");
    assert!(q.contains(r#""reason":"AE: refused by the test""#), "{q}");
}

#[test]
fn garbage_instead_of_an_ack_is_counted_and_the_message_sent_again() {
    let peer = Peer::start();
    let dir = tempfile::tempdir().unwrap();
    let quarantine = dir.path().join("q.jsonl");
    let http = free_port();
    peer.flag("garbage_once", "");
    let mut gw = start_gateway(&peer, dir.path(), http, &quarantine);
    peer.wait(
        &mut gw,
        "the message answered with garbage sent again",
        |r| {
            answered(r, "garbage")
                .first()
                .is_some_and(|id| accepted(r, id))
        },
    );
    let (status, metrics) = get(http, "/metrics");
    assert_eq!(status, 200);
    let retried = metrics
        .lines()
        .find(|l| l.starts_with("wardgate_sink_retried_records_total{sink=\"emr\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no retried counter for the sink:\n{metrics}"));
    assert!(retried >= 1.0, "{retried}");
    gw.wait_event(
        "a cleared alert",
        |e| matches!(e, Event::Alert(a) if a.transition == Transition::Cleared),
    );
    let events = gw.stop();
    check_exactly_once(&events, &peer, &quarantine);
    assert!(
        gw.log().contains("the peer sent bytes that are not MLLP"),
        "the garbage is logged"
    );
}

/// `check-config` names every problem of an hl7v2 sink at its place, and
/// refuses it without `[patients]`.
#[test]
fn check_config_reports_a_broken_hl7v2_sink_at_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        r#"[gateway]
site = "s"
ward = "w"
id = "gw"

[[sinks]]
type = "hl7v2"
address = "emr.example"
receiving_application = "EMR"
receiving_facility = "HOSP"
ack_timeout = "0s"
chart = { metrics = { nope = "1m" } }
"#,
    )
    .unwrap();
    let out = crate::wardgate()
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let at = |line: usize| format!("{}:{line}:", cfg.display());
    for (line, what) in [
        (7, "needs a [patients] section"),
        (8, "address must be host:port"),
        (11, "ack_timeout"),
        (12, "unknown metric `nope`"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&at(line)) && l.contains(what)),
            "no error at line {line} saying {what:?} in:\n{stderr}"
        );
    }
}
