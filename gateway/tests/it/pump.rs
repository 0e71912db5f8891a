//! A pump simulated on a pseudo-terminal, read by `wardgate run` through
//! serialport: readings and alarm start/end events reach the JSONL sink bound
//! to the configured subject.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use wardgate_model::{AlarmPhase, Event, Metric};
use wardgate_sim::pump::{PumpSimConfig, SimAlarm, spawn};

use crate::run::wait_exit;
use crate::{PrintLogOnPanic, events, wait_event, wardgate};

fn is_alarm(e: &Event, phase: AlarmPhase) -> bool {
    matches!(e, Event::DeviceAlarm(a)
        if a.alarm.as_ref() == "occlusion_downstream" && a.phase == phase && a.subject.as_str() == "bed-4")
}

#[test]
fn pump_readings_and_occlusion_reach_the_jsonl_sink() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("pump-1");
    let sim = rt
        .block_on(async {
            spawn(PumpSimConfig {
                link: Some(link.clone()),
                ..PumpSimConfig::default()
            })
        })
        .unwrap();
    let out = dir.path().join("events.jsonl");
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[gateway]
site = "t"
ward = "w"
id = "gw"

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

[[sinks]]
type = "jsonl"
path = "{}"
"#,
            link.display(),
            out.display()
        ),
    )
    .unwrap();
    let mut child = wardgate()
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(std::fs::File::create(dir.path().join("gw.log")).unwrap())
        .spawn()
        .unwrap();

    let log = dir.path().join("gw.log");
    let _guard = PrintLogOnPanic(log);
    wait_event(
        &mut child,
        &out,
        "infusion rate reading",
        |e| matches!(e, Event::Reading(r) if r.metric == Metric::InfusionRate && r.subject.as_str() == "bed-4"),
    );
    rt.block_on(sim.handle.set_alarm(SimAlarm::OcclusionDownstream, true))
        .unwrap();
    wait_event(&mut child, &out, "occlusion start", |e| {
        is_alarm(e, AlarmPhase::Start)
    });
    rt.block_on(sim.handle.set_alarm(SimAlarm::OcclusionDownstream, false))
        .unwrap();
    wait_event(&mut child, &out, "occlusion end", |e| {
        is_alarm(e, AlarmPhase::End)
    });

    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let status = wait_exit(&mut child);
    assert!(status.success());
    let all = events(&out);
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
