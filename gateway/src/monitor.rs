//! The gateway watching itself: every few seconds it reads its spool's
//! figures and raises, through the rules like any alarm, the technical
//! alarms that say it cannot do its job — and ends them when it can again:
//!
//! - `sink_stalled` (device `sink:NAME`): the oldest record a sink has not
//!   delivered has waited longer than `[spool] stalled_after` (its broker or
//!   TSDB is down, or too slow); a required sink that stalls also makes
//!   `/readyz` report not ready;
//! - `spool_filling` (device `spool`): telemetry fills 80 % or more of
//!   `[spool] max_bytes` (ended below 70 %); beyond the bound the oldest
//!   telemetry is evicted (alerts never are);
//! - `rules_behind` (device `rules`): the queue between the drivers and the
//!   rules stage stayed three quarters full at two checks in a row — the
//!   rules stage (or the spool behind it) is not keeping up and the drivers
//!   are being held back; ended when the queue is below half full.
//!
//! Invariant: it only reads figures and reports; it changes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wardgate_drivers::Emitted;
use wardgate_model::{AlarmPhase, AlertKind, DeviceAlarm, DeviceKind, DeviceRef, Event};

use crate::sinks::supervisor::SinkHealth;
use crate::spool::Spool;

pub const STALLED_ALARM: &str = "sink_stalled";
pub const FILLING_ALARM: &str = "spool_filling";
pub const BEHIND_ALARM: &str = "rules_behind";
/// How often the gateway checks itself.
pub const EVERY: Duration = Duration::from_secs(5);
const FILL_RAISE: f64 = 0.8;
const FILL_END: f64 = 0.7;

/// What the monitor watches.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub spool: Arc<Spool>,
    pub max_bytes: u64,
    pub stalled_after: Duration,
    /// Sinks whose stall makes the gateway not ready.
    pub required: BTreeSet<String>,
    pub health: SinkHealth,
    pub events: mpsc::WeakSender<Emitted>,
    /// The gateway's id: the subject of its own technical alarms.
    pub gateway: String,
    /// How often to check ([`EVERY`]).
    pub every: Duration,
}

impl Monitor {
    /// Checks every few seconds until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut stalled: BTreeSet<String> = BTreeSet::new();
        let mut filling = false;
        let (mut full_checks, mut behind) = (0u32, false);
        let mut tick = tokio::time::interval(self.every);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.check_queue(&mut full_checks, &mut behind).await;
            let spool = Arc::clone(&self.spool);
            let figures = tokio::task::spawn_blocking(move || {
                Ok::<_, crate::spool::SpoolError>((spool.backlog()?, spool.stats()?))
            })
            .await;
            let Ok(Ok((backlog, stats))) = figures else {
                // The pipeline reports spool errors itself.
                continue;
            };
            let now = chrono::Utc::now();
            let mut waiting: std::collections::BTreeMap<String, (chrono::TimeDelta, u64)> =
                std::collections::BTreeMap::new();
            for b in backlog {
                if let Some(since) = b.since {
                    let e = waiting
                        .entry(b.sink.clone())
                        .or_insert((chrono::TimeDelta::zero(), 0));
                    e.0 = e.0.max(now - since);
                    e.1 += b.records;
                }
            }
            let limit =
                chrono::TimeDelta::from_std(self.stalled_after).unwrap_or(chrono::TimeDelta::MAX);
            for sink in self.spool.sinks() {
                let late = waiting.get(sink).filter(|(age, _)| *age > limit);
                match (late, stalled.contains(sink)) {
                    (Some((age, records)), false) => {
                        let why = format!(
                            "{records} records waiting, the oldest for {} s",
                            age.num_seconds()
                        );
                        tracing::error!(sink = %sink, %why, "sink is not delivering");
                        stalled.insert(sink.clone());
                        if self.required.contains(sink) {
                            self.health.set_stalled(sink, Some(why.clone()));
                        }
                        self.alarm(
                            &format!("sink:{sink}"),
                            STALLED_ALARM,
                            AlarmPhase::Start,
                            Some(&why),
                        )
                        .await;
                    }
                    (None, true) => {
                        tracing::info!(sink = %sink, "sink delivers again");
                        stalled.remove(sink);
                        self.health.set_stalled(sink, None);
                        self.alarm(
                            &format!("sink:{sink}"),
                            STALLED_ALARM,
                            AlarmPhase::End,
                            None,
                        )
                        .await;
                    }
                    _ => {}
                }
            }
            let share = stats.telemetry_bytes as f64 / self.max_bytes.max(1) as f64;
            if !filling && share >= FILL_RAISE {
                filling = true;
                let why = format!("{:.0} % of {} bytes", share * 100.0, self.max_bytes);
                tracing::warn!(%why, "spool filling up");
                self.alarm("spool", FILLING_ALARM, AlarmPhase::Start, Some(&why))
                    .await;
            } else if filling && share < FILL_END {
                filling = false;
                self.alarm("spool", FILLING_ALARM, AlarmPhase::End, None)
                    .await;
            }
        }
    }

    /// The drivers' queue into the rules stage: three quarters full at two
    /// checks in a row raises `rules_behind`, below half full ends it.
    async fn check_queue(&self, full_checks: &mut u32, behind: &mut bool) {
        let Some(events) = self.events.upgrade() else {
            return;
        };
        let (max, free) = (events.max_capacity(), events.capacity());
        drop(events);
        let used = max - free;
        if used * 4 >= max * 3 {
            *full_checks += 1;
        } else {
            *full_checks = 0;
        }
        if !*behind && *full_checks >= 2 {
            *behind = true;
            let why = format!("{used} of {max} events waiting for the rules stage");
            tracing::error!(%why, "the rules stage is falling behind; drivers are held back");
            self.alarm("rules", BEHIND_ALARM, AlarmPhase::Start, Some(&why))
                .await;
        } else if *behind && used * 2 < max {
            *behind = false;
            tracing::info!("the rules stage keeps up again");
            self.alarm("rules", BEHIND_ALARM, AlarmPhase::End, None)
                .await;
        }
    }

    async fn alarm(&self, device: &str, alarm: &str, phase: AlarmPhase, detail: Option<&str>) {
        raise(&self.events, &self.gateway, device, alarm, phase, detail).await;
    }
}

/// Sends a technical alarm about the gateway itself (subject: the gateway's
/// id; device: the part at fault, of kind `gateway`) into the pipeline, where
/// the technical pack's rule of the same name turns it into an alert. The
/// channel is weak: once the pipeline is gone the alarm is not sent.
pub async fn raise(
    events: &mpsc::WeakSender<Emitted>,
    gateway: &str,
    device: &str,
    alarm: &str,
    phase: AlarmPhase,
    detail: Option<&str>,
) {
    let Some(events) = events.upgrade() else {
        return;
    };
    let event = Event::DeviceAlarm(DeviceAlarm {
        at: chrono::Utc::now(),
        subject: gateway.into(),
        device: DeviceRef::new(device.into(), DeviceKind::Gateway),
        alarm: alarm.into(),
        phase,
        kind: AlertKind::Technical,
        raw: detail.map(Into::into),
    });
    let _ = events.send(Emitted::Event(event)).await;
}
