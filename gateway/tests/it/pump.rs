//! A pump simulated on a pseudo-terminal, read by `wardgate run` through
//! serialport: readings and alarm start/end events reach the JSONL sink bound
//! to the configured subject.

use std::path::Path;

use wardgate_model::{AlarmPhase, Event, Metric};
use wardgate_sim::pump::{PumpSim, PumpSimConfig, SimAlarm, spawn};

use crate::Running;

fn is_alarm(e: &Event, phase: AlarmPhase) -> bool {
    matches!(e, Event::DeviceAlarm(a)
        if a.alarm.as_ref() == "occlusion_downstream" && a.phase == phase && a.subject.as_str() == "bed-4")
}

/// A simulated pump on a pseudo-terminal linked at `dir/pump-1`, and the
/// configuration of subject `bed-4` reading it as device `pump-1`.
pub(crate) fn simulated_pump(rt: &tokio::runtime::Runtime, dir: &Path) -> (PumpSim, String) {
    let link = dir.join("pump-1");
    let sim = rt
        .block_on(async {
            spawn(PumpSimConfig {
                link: Some(link.clone()),
                ..PumpSimConfig::default()
            })
        })
        .unwrap();
    let config = format!(
        r#"
[[subjects]]
id = "bed-4"
kind = "bed"
devices = ["pump-1"]

[[devices]]
id = "pump-1"
type = "pump"
port = "{}"
poll_interval = "200ms"
reply_timeout = "100ms"
"#,
        link.display()
    );
    (sim, config)
}

#[test]
fn pump_readings_and_occlusion_reach_the_jsonl_sink() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (sim, config) = simulated_pump(&rt, dir.path());
    let mut gw = Running::start(&config);
    gw.wait_event("infusion rate reading", |e| {
        matches!(e, Event::Reading(r) if r.metric == Metric::InfusionRate && r.subject.as_str() == "bed-4")
    });
    rt.block_on(sim.handle.set_alarm(SimAlarm::OcclusionDownstream, true))
        .unwrap();
    gw.wait_event("occlusion start", |e| is_alarm(e, AlarmPhase::Start));
    rt.block_on(sim.handle.set_alarm(SimAlarm::OcclusionDownstream, false))
        .unwrap();
    gw.wait_event("occlusion end", |e| is_alarm(e, AlarmPhase::End));
    let all = gw.stop();
    let metrics: std::collections::BTreeSet<&str> = all
        .iter()
        .filter_map(|e| match e {
            Event::Reading(r) => Some(r.metric.name()),
            _ => None,
        })
        .collect();
    for m in ["infusion_rate", "volume_infused", "vtbi", "vtbi_remaining"] {
        assert!(metrics.contains(m), "{m} missing from {metrics:?}");
    }
    rt.block_on(sim.stop());
}
