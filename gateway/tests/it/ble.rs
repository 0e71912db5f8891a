//! `wardgate-sim ble` (in-process, the simulator transport on loopback TCP) →
//! `wardgate run` with a `type = "ble"` device → JSONL: the oximeter's
//! desaturation reaches the sink bound to the configured subject.

use wardgate_model::{Event, Metric};
use wardgate_sim::ble::{BleSimConfig, Scenario, serve};

use crate::Running;

#[test]
fn ble_oximeter_desaturation_reaches_the_jsonl_sink() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(serve(
        listener,
        BleSimConfig {
            scenario: Scenario::Desaturation,
            address: [0xAA, 0xBB, 0xCC, 0x00, 0x00, 0x09],
            speed: Some(30.0),
            start: chrono::Utc::now().naive_utc(),
            repeat: true,
        },
    ));

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
