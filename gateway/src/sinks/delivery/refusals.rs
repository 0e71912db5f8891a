//! What a sink does with records its server refused for good, shared by the
//! InfluxDB and FHIR sinks: keep them in the bounded quarantine file
//! (retrying while the disk refuses), and raise the technical alarms —
//! the low `data_quarantined` (at most once a minute: the rule latches) and
//! the medium `quarantine_full` while the file is at its bound — through the
//! rules like any alarm.

use std::time::Duration;

use backon::BackoffBuilder;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wardgate_drivers::Emitted;
use wardgate_model::AlarmPhase;

use super::{Appended, DeliveryMetrics, Overflow, Quarantine, QuarantineEntry};

/// The technical alarm (device `sink:NAME`) raised when the server refused
/// records for good: they are in the quarantine file, not at the server.
pub const QUARANTINED_ALARM: &str = "data_quarantined";
/// The technical alarm raised while the quarantine file is at its bound and
/// refused records are dropped.
pub const QUARANTINE_FULL_ALARM: &str = "quarantine_full";
/// `data_quarantined` is raised again at most this often while refusals go
/// on (the rule latches; one raise per refused batch would flood the spool).
const QUARANTINED_EVERY: Duration = Duration::from_secs(60);

/// Where a sink raises its technical alarms.
#[derive(Debug, Clone)]
struct Alarms {
    events: mpsc::WeakSender<Emitted>,
    /// The gateway's id: the subject of its own technical alarms.
    gateway: String,
    /// When `data_quarantined` was last raised.
    quarantined_at: Option<Instant>,
}

/// A sink's quarantine and the alarms that announce it.
#[derive(Debug)]
pub struct Refusals {
    name: String,
    quarantine: Quarantine,
    max_bytes: u64,
    alarms: Option<Alarms>,
}

impl Refusals {
    pub fn new(name: &str, quarantine: Quarantine, max_bytes: u64) -> Self {
        Self {
            name: name.to_owned(),
            quarantine,
            max_bytes,
            alarms: None,
        }
    }

    /// Raises the alarms on `events`, the pipeline's channel, for gateway
    /// `gateway`. Without it they are only logged.
    pub fn alarm_on(&mut self, events: mpsc::WeakSender<Emitted>, gateway: String) {
        self.alarms = Some(Alarms {
            events,
            gateway,
            quarantined_at: None,
        });
    }

    pub fn quarantine(&self) -> &Quarantine {
        &self.quarantine
    }

    /// Appends to the quarantine file (what fits under its bound), retrying
    /// while the disk refuses; `None` when stopping first (nothing is
    /// acknowledged then).
    pub async fn keep(
        &self,
        entries: &[QuarantineEntry<'_>],
        metrics: &DeliveryMetrics,
        drain: &CancellationToken,
    ) -> Option<Appended> {
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            match self.quarantine.keep(entries, metrics, &self.name).await {
                Ok(a) => return Some(a),
                Err(e) => {
                    tracing::error!(sink = %self.name, path = %self.quarantine.path().display(), error = %e, "cannot write the quarantine file; retrying");
                    if drain.is_cancelled() {
                        return None;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(30))) => {}
                        () = drain.cancelled() => return None,
                    }
                }
            }
        }
    }

    /// Raises `data_quarantined` (at most once a minute; the rule latches,
    /// so it is raised and ended at once) and, as the quarantine overflows or
    /// has room again, starts or ends `quarantine_full`.
    pub async fn alarm_quarantined(&mut self, appended: Appended, detail: &str) {
        let now = Instant::now();
        let due = self.alarms.as_mut().is_some_and(|a| {
            let due = a
                .quarantined_at
                .is_none_or(|t| now.duration_since(t) >= QUARANTINED_EVERY);
            if due {
                a.quarantined_at = Some(now);
            }
            due
        });
        if due {
            for phase in [AlarmPhase::Start, AlarmPhase::End] {
                self.alarm(QUARANTINED_ALARM, phase, Some(detail)).await;
            }
        }
        if let Some(o) = appended.overflow {
            self.alarm_full(o, appended.dropped).await;
        }
    }

    /// A quarantine emptied by the operator ends its alarm without waiting
    /// for the next refusal.
    pub async fn recheck(&self, metrics: &DeliveryMetrics) {
        if let Some(o) = self.quarantine.recheck(metrics, &self.name).await {
            self.alarm_full(o, 0).await;
        }
    }

    /// Starts or ends `quarantine_full`.
    async fn alarm_full(&self, overflow: Overflow, dropped: u64) {
        match overflow {
            Overflow::Started => {
                let why = format!(
                    "{} reached its bound of {} bytes; {dropped} records dropped",
                    self.quarantine.path().display(),
                    self.max_bytes
                );
                self.alarm(QUARANTINE_FULL_ALARM, AlarmPhase::Start, Some(&why))
                    .await;
            }
            Overflow::Ended => {
                self.alarm(QUARANTINE_FULL_ALARM, AlarmPhase::End, None)
                    .await;
            }
        }
    }

    async fn alarm(&self, alarm: &str, phase: AlarmPhase, detail: Option<&str>) {
        if let Some(a) = &self.alarms {
            let device = format!("sink:{}", self.name);
            crate::monitor::raise(&a.events, &a.gateway, &device, alarm, phase, detail).await;
        }
    }
}
