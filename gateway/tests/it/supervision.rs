//! A driver that crashes is noticed at once, reported, restarted with
//! backoff, and — when it keeps crashing — raises a technical alarm; the
//! other devices never notice. The crash is injected through the documented
//! fault-injection variable `WARDGATE_FAULT_PANIC_DRIVER`.

use wardgate_model::{DeviceState, Event, Transition};

use crate::Running;

const DEVICES: &str = r#"
[[subjects]]
id = "bed-1"
kind = "bed"
devices = ["flaky-1", "steady-2"]

[[devices]]
id = "flaky-1"
type = "synthetic"
interval = "100ms"
signals = [{ metric = "heart_rate", base = 72 }]

[[devices]]
id = "steady-2"
type = "synthetic"
interval = "100ms"
signals = [{ metric = "spo2", base = 97 }]
"#;

fn status_of(e: &Event, device: &str) -> Option<(DeviceState, String)> {
    match e {
        Event::DeviceStatus(s) if s.device.id.as_str() == device => {
            Some((s.state, s.reason.as_deref().unwrap_or_default().to_owned()))
        }
        _ => None,
    }
}

#[test]
fn a_driver_that_keeps_crashing_is_restarted_reported_and_alarmed() {
    // Three crashes 300 ms after each start; restarts after 1, 2 and 4 s.
    let mut gw = Running::start_env(DEVICES, &[("WARDGATE_FAULT_PANIC_DRIVER", "flaky-1:3")]);
    gw.wait_event("the driver_restarting alert", |e| {
        matches!(e, Event::Alert(a) if a.rule.as_str() == "driver_restarting" && a.transition == Transition::Raised)
    });
    // The fourth start runs: its readings arrive.
    gw.wait_event("a reading of the restarted driver", |e| {
        matches!(e, Event::Reading(r) if r.device.as_ref().is_some_and(|d| d.id.as_str() == "flaky-1"))
    });
    let events = gw.stop();
    let log = gw.log();

    let statuses: Vec<(DeviceState, String)> = events
        .iter()
        .filter_map(|e| status_of(e, "flaky-1"))
        .collect();
    let crashed: Vec<&(DeviceState, String)> = statuses
        .iter()
        .filter(|(s, r)| {
            *s == DeviceState::Offline && r.starts_with("driver crashed: fault injection")
        })
        .collect();
    assert_eq!(crashed.len(), 3, "{statuses:?}");
    // Offline three times, then online when the driver finally runs.
    assert_eq!(
        statuses.last().map(|s| s.0),
        Some(DeviceState::Online),
        "{statuses:?}"
    );
    assert!(crashed[0].1.ends_with("restarting in 1 s"), "{crashed:?}");
    assert!(crashed[2].1.ends_with("restarting in 4 s"), "{crashed:?}");

    // Noticed at once and logged with the device, not at shutdown.
    assert_eq!(log.matches("driver crashed").count(), 3, "{log}");
    assert_eq!(log.matches("restarting driver").count(), 3, "{log}");
    let alert = events
        .iter()
        .find_map(|e| match e {
            Event::Alert(a) if a.rule.as_str() == "driver_restarting" => Some(a),
            _ => None,
        })
        .unwrap();
    assert_eq!(alert.device.as_ref().unwrap().id.as_str(), "flaky-1");

    // The other device never stopped: no status change, readings throughout.
    assert_eq!(
        events
            .iter()
            .filter_map(|e| status_of(e, "steady-2"))
            .count(),
        1,
        "only its start"
    );
    assert!(
        log.contains("driver_crashes=3"),
        "the summary counts them: {log}"
    );
}
