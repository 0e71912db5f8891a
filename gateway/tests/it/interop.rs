//! The interoperability demo (`config/interop-demo.toml`, what
//! `scripts/interop-demo` runs) against both test peers at once: the FHIR
//! server and the MLLP receiver, each validating what it receives with its
//! independent library. Only the peers' ports are changed.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{Guarded, python_peer, request, run, wardgate, workspace};

#[test]
fn the_demo_configuration_charts_into_both_peers_and_every_message_validates() {
    let dir = tempfile::tempdir().unwrap();
    let (_fhir, fhir_port) = python_peer("fhir_peer.py", &[]);
    let received = dir.path().join("hl7v2.jsonl");
    let (_mllp, mllp_port) = python_peer(
        "mllp_peer.py",
        &["--port", "0", "--out", received.to_str().unwrap()],
    );
    let demo = std::fs::read_to_string(workspace().join("config/interop-demo.toml")).unwrap();
    assert!(demo.contains("127.0.0.1:18080") && demo.contains("127.0.0.1:12575"));
    let config = dir.path().join("interop-demo.toml");
    std::fs::write(
        &config,
        demo.replace("127.0.0.1:18080", &format!("127.0.0.1:{fhir_port}"))
            .replace("127.0.0.1:12575", &format!("127.0.0.1:{mllp_port}")),
    )
    .unwrap();
    let mut gw = Guarded(
        wardgate()
            .env("FHIR_TOKEN", "test-token")
            .args(["run", "--config"])
            .arg(&config)
            .stdout(std::fs::File::create(dir.path().join("events.jsonl")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("gw.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let fhir_mrns = || -> Vec<String> {
        let (_, body) = request(fhir_port, "GET", "/_store", "");
        let store: Value = serde_json::from_str(&body).unwrap();
        store["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                o["subject"]["identifier"]["value"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let messages = || -> Vec<Value> {
        let text = std::fs::read_to_string(&received).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mrns = fhir_mrns();
        let types: Vec<String> = messages()
            .iter()
            .map(|m| m["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        if ["000101", "000102"]
            .iter()
            .all(|m| mrns.iter().any(|x| x == m))
            && types.iter().any(|t| t.starts_with("ORU^R01"))
            && types.iter().any(|t| t.starts_with("ORU^R40"))
        {
            break;
        }
        assert!(gw.try_wait().unwrap().is_none(), "wardgate exited early");
        assert!(
            Instant::now() < deadline,
            "the peers did not get both patients' Observations and an alert: FHIR {mrns:?}, HL7 {types:?}\n{}",
            std::fs::read_to_string(dir.path().join("gw.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    kill(Pid::from_raw(gw.id() as i32), Signal::SIGINT).unwrap();
    assert!(run::wait_exit(&mut gw).success());

    let (_, body) = request(fhir_port, "GET", "/_store", "");
    let store: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(store["invalid"], serde_json::json!([]), "FHIR refused");
    assert_eq!(store["existing"], 0, "a FHIR Observation sent twice");
    for m in messages() {
        assert_eq!(m["valid"], true, "hl7apy refused {m}");
        assert_eq!(m["answer"], "AA", "{m}");
        assert_eq!(m["duplicate"], false, "{m}");
        assert!(
            ["000101", "000102"].contains(&m["mrn"].as_str().unwrap()),
            "{m}"
        );
        assert_eq!(m["authority"], "DEMOHOSP");
    }
    // The empty bed (no MRN) and the fridge are charted nowhere.
    assert!(fhir_mrns().iter().all(|m| m == "000101" || m == "000102"));
}
