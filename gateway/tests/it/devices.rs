//! `wardgate devices scan`: the pairing step. Bluetooth LE devices come from
//! `wardgate-sim ble` devices (in-process, on loopback sockets) through the
//! simulator transport; the radio half meets this machine's lack of an
//! adapter (or of a D-Bus system bus) and must say so while still listing
//! the serial ports.

use std::os::unix::fs::FileTypeExt;
use std::process::Output;

use serde_json::Value;
use wardgate_sim::ble::Scenario;

use crate::ble::simulate;
use crate::{stdout_of, wardgate};

fn scan(args: &[&str]) -> (Output, Value) {
    let out = wardgate()
        .args(["devices", "scan", "--json"])
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

/// Every listed serial port is a character device, listed once, and the
/// serial half reports no error.
fn check_serial_ports(json: &Value) {
    assert_eq!(json["serial"]["errors"], Value::Array(Vec::new()), "{json}");
    let ports = json["serial"]["ports"].as_array().unwrap();
    let mut paths: Vec<&str> = ports.iter().map(|p| p["path"].as_str().unwrap()).collect();
    for path in &paths {
        let meta = std::fs::metadata(path).unwrap();
        assert!(meta.file_type().is_char_device(), "{path}");
    }
    let listed = paths.len();
    paths.dedup();
    assert_eq!(paths.len(), listed, "{json}");
}

#[test]
fn simulated_devices_are_listed_with_address_and_services() {
    let scenarios = [
        (Scenario::Desaturation, 0x21),
        (Scenario::Hypertensive, 0x22),
    ];
    let sims: Vec<_> = scenarios
        .iter()
        .map(|&(scenario, last)| simulate(scenario, last, 1.0, true))
        .collect();
    let mut args = Vec::new();
    for (_, addr) in &sims {
        args.extend(["--simulator".to_owned(), addr.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let (out, json) = scan(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_serial_ports(&json);
    let ble = &json["bluetooth"];
    assert_eq!(ble["source"], "simulator");
    assert_eq!(ble["errors"], Value::Array(Vec::new()));
    let devices = ble["devices"].as_array().unwrap();
    assert_eq!(devices.len(), scenarios.len(), "{json}");
    let start = chrono::Utc::now().naive_utc();
    for ((scenario, last), device) in scenarios.iter().zip(devices) {
        assert_eq!(device["address"], format!("AA:BB:CC:00:00:{last:02X}"));
        let advertised: Vec<String> = scenario
            .script(start)
            .services
            .iter()
            .map(|s| format!("{s:04x}"))
            .collect();
        let listed: Vec<&str> = device["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["uuid"].as_str().unwrap())
            .collect();
        assert_eq!(listed, advertised, "{scenario:?}");
        // Each of these is a health service wardgate reads, named as such.
        for service in device["services"].as_array().unwrap() {
            assert!(service["name"].is_string(), "{service}");
        }
    }

    // For people: a table, and the line to paste.
    let text = stdout_of(wardgate().args(["devices", "scan"]).args(&args));
    assert!(text.contains("AA:BB:CC:00:00:21"), "{text}");
    assert!(
        text.contains("addresses = [\"AA:BB:CC:00:00:21\"]"),
        "{text}"
    );
}

#[test]
fn without_a_radio_the_serial_ports_are_still_listed_and_the_reason_given() {
    let (out, json) = scan(&["--timeout", "1s"]);
    check_serial_ports(&json);
    let errors = json["bluetooth"]["errors"].as_array().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if errors.is_empty() {
        // A host with an adapter: the scan ran.
        assert!(out.status.success(), "{stderr}");
    } else {
        // This machine: no adapter, or no D-Bus system bus to reach BlueZ.
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let error = errors[0].as_str().unwrap();
        assert!(
            error.starts_with("bluetooth: ")
                && (error.contains("no Bluetooth adapter") || error.contains("D-Bus system bus")),
            "{error}"
        );
        assert_eq!(stderr.trim_end(), error, "one line on stderr, the same");
    }
}

#[test]
fn an_unreachable_simulator_is_named_and_the_rest_still_listed() {
    let (_rt, live) = simulate(Scenario::Normal, 0x23, 1.0, true);
    // A port nobody listens on: bound, then closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (out, json) = scan(&[
        "--simulator",
        &live.to_string(),
        "--simulator",
        &dead.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    check_serial_ports(&json);
    let devices = json["bluetooth"]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{json}");
    assert_eq!(devices[0]["address"], "AA:BB:CC:00:00:23");
    let errors = json["bluetooth"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{json}");
    assert!(
        errors[0].as_str().unwrap().contains(&dead.to_string()),
        "{json}"
    );
}

#[test]
fn a_scan_time_out_of_range_is_a_usage_error() {
    for bad in ["0s", "10m", "soon"] {
        let out = wardgate()
            .args(["devices", "scan", "--timeout", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--timeout {bad}");
    }
}
