//! The pump driver against the simulated pump over a real pseudo-terminal:
//! simulator → pty → tokio-serial → driver → events on the DriverContext
//! channel. Every wait is bounded; nothing sleeps to wait for readiness.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wardgate_drivers::pump::{PollStats, PumpConfig, PumpError, run_with_stats};
use wardgate_drivers::{DriverContext, EventReceiver};
use wardgate_model::{
    AlarmPhase, AlertKind, DeviceAlarm, DeviceKind, DeviceRef, DeviceState, Event, Metric,
};
use wardgate_sim::pump::{Action, PumpProgram, PumpSim, PumpSimConfig, SimAlarm, spawn};

/// Long enough for a loaded 2-core CI box; the happy path takes milliseconds.
const WAIT: Duration = Duration::from_secs(15);

struct Rig {
    sim: PumpSim,
    events: EventReceiver,
    /// Every event received so far, for assertions about what never came.
    seen: Vec<Event>,
    stats: watch::Receiver<PollStats>,
    shutdown: CancellationToken,
    driver: JoinHandle<Result<(), PumpError>>,
    _dir: tempfile::TempDir,
}

/// A simulated pump behind a symlink in a temp dir, and the driver reading it
/// every 100 ms (50 ms reply timeout, 1 retry, lost after 2 failed polls).
fn start() -> Rig {
    start_pump("pump-1", "bed-3", PumpProgram::default())
}

fn start_pump(id: &str, subject: &str, program: PumpProgram) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join(id);
    let sim = spawn(PumpSimConfig {
        program,
        link: Some(link.clone()),
        ..PumpSimConfig::default()
    })
    .unwrap();
    let mut config = PumpConfig::new(&link);
    config.poll_interval = Duration::from_millis(100);
    config.reply_timeout = Duration::from_millis(50);
    config.retries = 1;
    config.failures_before_lost = 2;
    config.reconnect_max = Duration::from_millis(200);
    let (tx, events) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let ctx = DriverContext::new(
        DeviceRef::new(id.into(), DeviceKind::Pump),
        subject.into(),
        tx,
        shutdown.clone(),
    );
    let (stats_tx, stats) = watch::channel(PollStats::default());
    let driver = tokio::spawn(run_with_stats(config, ctx, stats_tx));
    Rig {
        sim,
        events: EventReceiver::new(events),
        seen: Vec::new(),
        stats,
        shutdown,
        driver,
        _dir: dir,
    }
}

impl Rig {
    /// The next event satisfying `want`, within [`WAIT`].
    async fn until(&mut self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}; seen {:#?}", self.seen))
                .expect("driver stopped");
            self.seen.push(event.clone());
            if want(&event) {
                return event;
            }
        }
    }

    async fn status(&mut self, state: DeviceState) -> Option<String> {
        match self
            .until(
                &format!("{state:?} status"),
                |e| matches!(e, Event::DeviceStatus(s) if s.state == state),
            )
            .await
        {
            Event::DeviceStatus(s) => s.reason.map(|r| r.to_string()),
            _ => unreachable!(),
        }
    }

    async fn alarm(&mut self, code: &str, phase: AlarmPhase) -> DeviceAlarm {
        match self
            .until(
                &format!("{code} {phase:?}"),
                |e| matches!(e, Event::DeviceAlarm(a) if &*a.alarm == code && a.phase == phase),
            )
            .await
        {
            Event::DeviceAlarm(a) => a,
            _ => unreachable!(),
        }
    }

    async fn reading(&mut self, metric: &Metric) -> f64 {
        match self
            .until(
                &format!("{} reading", metric.name()),
                |e| matches!(e, Event::Reading(r) if &r.metric == metric),
            )
            .await
        {
            Event::Reading(r) => r.value,
            _ => unreachable!(),
        }
    }

    async fn stats_until(&mut self, what: &str, want: impl Fn(&PollStats) -> bool) {
        let ok = tokio::time::timeout(WAIT, self.stats.wait_for(|s| want(s)))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(ok, "stats never showed {what}: {:?}", *self.stats.borrow());
    }

    async fn stop(self) {
        assert_eq!(
            self.sim.handle.stats().write_commands,
            0,
            "the driver must never send infusion-changing commands"
        );
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.driver)
            .await
            .expect("driver returns on shutdown")
            .unwrap()
            .unwrap();
        self.sim.stop().await;
    }
}

#[tokio::test]
async fn readings_and_occlusion_start_end_bound_to_the_subject() {
    let mut rig = start();
    let reason = rig.status(DeviceState::Online).await;
    assert_eq!(reason.as_deref(), Some("identified pump serial 8002-51740"));
    // The simulator's default programme: 100 mL/h, VTBI 250 mL, 25 mmHg.
    assert_eq!(rig.reading(&Metric::InfusionRate).await, 100.0);
    assert_eq!(rig.reading(&Metric::Vtbi).await, 250.0);
    assert_eq!(rig.reading(&Metric::LinePressure).await, 25.0);

    rig.sim
        .handle
        .set_alarm(SimAlarm::OcclusionDownstream, true)
        .await
        .unwrap();
    assert!(
        rig.seen.iter().all(|e| e.subject().as_str() == "bed-3"),
        "every event is bound to the configured subject"
    );
    let start = rig.alarm("occlusion_downstream", AlarmPhase::Start).await;
    assert_eq!(start.subject.as_str(), "bed-3");
    assert_eq!(start.device.id.as_str(), "pump-1");
    assert_eq!(start.kind, AlertKind::Technical);
    // An occluded pump stops: rate 0; the simulator reports 450 mmHg.
    assert_eq!(rig.reading(&Metric::InfusionRate).await, 0.0);
    assert_eq!(rig.reading(&Metric::LinePressure).await, 450.0);

    rig.sim
        .handle
        .set_alarm(SimAlarm::OcclusionDownstream, false)
        .await
        .unwrap();
    rig.alarm("occlusion_downstream", AlarmPhase::End).await;
    assert_eq!(rig.reading(&Metric::InfusionRate).await, 100.0);
    rig.stop().await;
}

#[tokio::test]
async fn garbage_and_bad_crc_are_counted_and_never_acted_on() {
    let mut rig = start();
    rig.status(DeviceState::Online).await;
    rig.reading(&Metric::InfusionRate).await;

    rig.sim.handle.act(Action::Garbage(300)).await.unwrap();
    rig.stats_until("garbage", |s| s.decoder.garbage_bytes > 0)
        .await;
    // The next corrupted status reply claims AIR_IN_LINE with a wrong CRC.
    rig.sim.handle.act(Action::CorruptNext(1)).await.unwrap();
    rig.stats_until("a CRC error", |s| s.decoder.crc_errors >= 1)
        .await;
    assert_eq!(rig.sim.handle.stats().corrupted_replies, 1);
    // Polling goes on: two more complete cycles after the bad frame.
    for _ in 0..2 {
        assert_eq!(rig.reading(&Metric::InfusionRate).await, 100.0);
    }
    assert!(
        !rig.seen.iter().any(|e| matches!(e,
            Event::DeviceAlarm(a) if &*a.alarm == "air_in_line")),
        "a frame with a bad CRC was acted on: {:#?}",
        rig.seen
    );
    assert!(
        !rig.seen.iter().any(|e| matches!(e,
            Event::DeviceStatus(s) if s.state == DeviceState::Offline)),
        "one bad frame must not take the pump offline"
    );
    rig.stop().await;
}

#[tokio::test]
async fn comms_loss_and_port_reopen_are_reported_and_recovered() {
    let mut rig = start();
    rig.status(DeviceState::Online).await;
    rig.reading(&Metric::InfusionRate).await;

    // Silence: 2 failed polls → offline + communication_lost.
    rig.sim.handle.act(Action::Silent(true)).await.unwrap();
    let reason = rig.status(DeviceState::Offline).await.unwrap();
    assert_eq!(reason, "no reply to 2 polls in a row");
    let lost = rig.alarm("communication_lost", AlarmPhase::Start).await;
    assert_eq!(lost.kind, AlertKind::Technical);
    rig.sim.handle.act(Action::Silent(false)).await.unwrap();
    rig.status(DeviceState::Online).await;
    rig.alarm("communication_lost", AlarmPhase::End).await;
    rig.reading(&Metric::InfusionRate).await;

    // The port goes away (pty closed, link removed) and comes back.
    rig.sim
        .handle
        .act(Action::Reopen(Duration::from_millis(300)))
        .await
        .unwrap();
    let reason = rig.status(DeviceState::Offline).await.unwrap();
    assert!(
        reason.contains("read failed")
            || reason.contains("port closed")
            || reason.contains("cannot open"),
        "{reason}"
    );
    rig.status(DeviceState::Online).await;
    rig.alarm("communication_lost", AlarmPhase::End).await;
    assert_eq!(rig.reading(&Metric::InfusionRate).await, 100.0);
    assert_eq!(rig.sim.handle.stats().reopens, 1);
    rig.stop().await;
}

#[tokio::test]
async fn several_pumps_at_once_stay_independent() {
    let mut a = start_pump("pump-a", "bed-1", PumpProgram::default());
    let mut b = start_pump(
        "pump-b",
        "bed-2",
        PumpProgram {
            serial: "8002-51741".into(),
            rate: 40.0,
            ..PumpProgram::default()
        },
    );
    assert_eq!(
        a.status(DeviceState::Online).await.as_deref(),
        Some("identified pump serial 8002-51740")
    );
    assert_eq!(
        b.status(DeviceState::Online).await.as_deref(),
        Some("identified pump serial 8002-51741")
    );
    assert_eq!(b.reading(&Metric::InfusionRate).await, 40.0);
    // Pump A stops answering; pump B keeps reporting.
    a.sim.handle.act(Action::Silent(true)).await.unwrap();
    a.status(DeviceState::Offline).await;
    b.sim
        .handle
        .set_alarm(SimAlarm::AirInLine, true)
        .await
        .unwrap();
    let air = b.alarm("air_in_line", AlarmPhase::Start).await;
    assert_eq!(air.subject.as_str(), "bed-2");
    assert!(
        !b.seen
            .iter()
            .any(|e| matches!(e, Event::DeviceStatus(s) if s.state == DeviceState::Offline)),
        "pump B must not notice pump A's trouble"
    );
    a.stop().await;
    b.stop().await;
}
