//! `wardgate-sim ble` (in-process, the simulator transport on loopback TCP) →
//! `wardgate run` with a `type = "ble"` device → JSONL: the oximeter's
//! desaturation reaches the sink bound to the configured subject.

use std::time::{Duration, Instant};

use wardgate_model::{Event, Metric};
use wardgate_sim::ble::{BleSimConfig, Scenario, serve};

use crate::Running;

/// A BLE device `AA:BB:CC:00:00:<last>` simulated in-process on a loopback
/// port, for as long as the returned runtime lives.
pub(crate) fn simulate(
    scenario: Scenario,
    last: u8,
    speed: f64,
    repeat: bool,
) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    simulate_with_clock(
        scenario,
        last,
        speed,
        repeat,
        chrono::Utc::now().naive_utc(),
    )
}

/// As [`simulate`], the device's clock reading `clock` when it starts.
fn simulate_with_clock(
    scenario: Scenario,
    last: u8,
    speed: f64,
    repeat: bool,
    clock: chrono::NaiveDateTime,
) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(serve(
        listener,
        BleSimConfig {
            scenario,
            address: [0xAA, 0xBB, 0xCC, 0x00, 0x00, last],
            speed: Some(speed),
            start: clock,
            repeat,
        },
    ));
    (rt, addr)
}

#[test]
fn ble_oximeter_desaturation_reaches_the_jsonl_sink() {
    let (_rt, addr) = simulate(Scenario::Desaturation, 0x09, 30.0, true);

    let mut gw = Running::start(&format!(
        r#"
[[subjects]]
id = "bed-3"
kind = "bed"
devices = ["ox-3"]

[[devices]]
id = "ox-3"
type = "ble"
addresses = ["AA:BB:CC:00:00:09"]
simulator = "{addr}"
"#
    ));
    // The scenario takes SpO2 from 97 % down to 85 %.
    gw.wait_event(
        "SpO2 at or below 86 %",
        |e| matches!(e, Event::Reading(r) if r.metric == Metric::Spo2 && r.value <= 86.0),
    );
    let all = gw.stop();
    assert!(
        all.iter()
            .any(|e| matches!(e, Event::DeviceStatus(s) if s.device.id.as_str() == "ox-3"))
    );
    for e in &all {
        if let Event::Reading(r) = e {
            assert_eq!(r.subject.as_str(), "bed-3");
            assert_eq!(r.device.as_ref().map(|d| d.id.as_str()), Some("ox-3"));
        }
    }
}

/// A glucose meter's sequence number is persisted only once its reading is
/// committed (`DriverContext::committed`): with a 10 s telemetry flush, the
/// readings still reach the sink at once when the state file is written —
/// they were committed first, not left waiting for the flush.
#[test]
fn glucose_sequence_is_persisted_only_after_the_reading_is_committed() {
    let (_rt, addr) = simulate(Scenario::Hypoglycaemia, 0x0A, 600.0, false);
    let state = tempfile::tempdir().unwrap();
    let seq_file = state.path().join("meter-1.glucose-seq");
    let mut gw = Running::start(&format!(
        r#"
[spool]
flush_interval = "10s"

[[subjects]]
id = "home-2"
kind = "bed"
devices = ["meter-1"]

[[devices]]
id = "meter-1"
type = "ble"
addresses = ["AA:BB:CC:00:00:0A"]
simulator = "{addr}"
state_dir = "{}"
"#,
        state.path().display()
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seq_file.exists() {
        assert!(
            Instant::now() < deadline,
            "no glucose sequence state written"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let persisted = Instant::now();
    gw.wait_event(
        "a glucose reading",
        |e| matches!(e, Event::Reading(r) if r.metric == Metric::Glucose),
    );
    // Committed before the state file: at the sink long before the 10 s flush.
    assert!(
        persisted.elapsed() < Duration::from_secs(5),
        "glucose readings reached the sink {:?} after their sequence number was persisted",
        persisted.elapsed()
    );
    gw.stop();
}

/// A device whose clock runs 20 hours ahead (a thermometer set wrong, a
/// clock jump): its time stamps are replaced by the gateway's, the readings
/// marked `time_source = gateway`, and it is said once in the log.
#[test]
fn a_device_clock_far_ahead_gets_the_gateway_time() {
    let ahead = chrono::Utc::now() + chrono::TimeDelta::hours(20);
    let (_rt, addr) = simulate_with_clock(Scenario::Normal, 0x0B, 1.0, true, ahead.naive_utc());
    let mut gw = Running::start(&format!(
        r#"
[[subjects]]
id = "bed-4"
kind = "bed"
devices = ["patch-4"]

[[devices]]
id = "patch-4"
type = "ble"
addresses = ["AA:BB:CC:00:00:0B"]
simulator = "{addr}"
"#
    ));
    gw.wait_event(
        "a temperature reading",
        |e| matches!(e, Event::Reading(r) if r.metric == Metric::BodyTemp),
    );
    let log = gw.log();
    let all = gw.stop();
    let now = chrono::Utc::now();
    for e in &all {
        if let Event::Reading(r) = e {
            assert!(r.at <= now, "{} is in the future", r.at);
            if r.metric == Metric::BodyTemp {
                assert_eq!(r.time_source, wardgate_model::TimeSource::Gateway);
            }
        }
    }
    assert_eq!(log.matches("device clock ahead").count(), 1, "{log}");
}
