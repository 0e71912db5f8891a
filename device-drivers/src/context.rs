//! What every driver is given: who it is, whom its readings belong to, where
//! events go, and when to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::TimeDelta;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::DeviceMetrics;
use tokio_util::sync::CancellationToken;
use wardgate_model::{
    AlarmPhase, AlertKind, DeviceAlarm, DeviceRef, DeviceState, DeviceStatus, Event, Metric,
    Reading, ReadingError, SubjectId, TimeSource, Timestamp,
};

/// The pipeline has shut down; the driver should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline is closed")]
pub struct PipelineClosed;

/// What a driver hands to the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Emitted {
    /// One event on its own.
    Event(Event),
    /// The events of one measurement — a cuff's systolic, diastolic and
    /// mean pressure; a pump poll's alarms and values — which the rules
    /// evaluate together, so an alert raised by one value can name the
    /// others.
    Measurement(Vec<Event>),
}

impl Emitted {
    /// The events, in the order the driver emitted them.
    pub fn into_events(self) -> Vec<Event> {
        match self {
            Emitted::Event(e) => vec![e],
            Emitted::Measurement(v) => v,
        }
    }
}

/// The receiving end of drivers' events one event at a time, measurements
/// unpacked in order: for tests and tools that run drivers without the
/// pipeline.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::Receiver<Emitted>,
    pending: std::collections::VecDeque<Event>,
}

impl EventReceiver {
    pub fn new(rx: mpsc::Receiver<Emitted>) -> Self {
        Self {
            rx,
            pending: std::collections::VecDeque::new(),
        }
    }

    /// The next event; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            self.pending.extend(self.rx.recv().await?.into_events());
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Result<Event, mpsc::error::TryRecvError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            self.pending.extend(self.rx.try_recv()?.into_events());
        }
    }
}

/// A driver's handle on the gateway. Cheap to clone (one per device task).
#[derive(Debug, Clone)]
pub struct DriverContext {
    device: DeviceRef,
    subject: SubjectId,
    events: mpsc::Sender<Emitted>,
    shutdown: CancellationToken,
    commits: Option<CommitRequests>,
    clock_tolerance: TimeDelta,
    /// Readings of this device stamped further ahead than `clock_tolerance`
    /// (shared by the context's clones).
    future_stamped: Arc<AtomicU64>,
    metrics: DeviceMetrics,
}

/// How far a device clock may run ahead of the gateway's before its time
/// stamps are replaced by the gateway's.
pub const DEFAULT_CLOCK_TOLERANCE: TimeDelta = TimeDelta::minutes(2);

/// Requests to the pipeline to commit everything sent so far; each is
/// answered once that is durable.
pub type CommitRequests = mpsc::Sender<oneshot::Sender<()>>;

impl DriverContext {
    pub fn new(
        device: DeviceRef,
        subject: SubjectId,
        events: mpsc::Sender<Emitted>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            device,
            subject,
            events,
            shutdown,
            commits: None,
            clock_tolerance: DEFAULT_CLOCK_TOLERANCE,
            future_stamped: Arc::default(),
            metrics: DeviceMetrics::default(),
        }
    }

    /// Counts this device's frames, decode errors, timeouts and reconnects
    /// into `metrics` (by default into counters nobody reads).
    #[must_use]
    pub fn with_metrics(mut self, metrics: DeviceMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Where the driver's shell counts.
    pub fn metrics(&self) -> &DeviceMetrics {
        &self.metrics
    }

    /// Sets how far the device clock may run ahead (default 2 minutes).
    #[must_use]
    pub fn with_clock_tolerance(mut self, tolerance: TimeDelta) -> Self {
        self.clock_tolerance = tolerance;
        self
    }

    /// Readings whose device time stamp lay in the future and were given
    /// the gateway's time instead.
    pub fn future_stamped(&self) -> u64 {
        self.future_stamped.load(Ordering::Relaxed)
    }

    /// Lets [`Self::committed`] ask the pipeline for a commit.
    #[must_use]
    pub fn with_commits(mut self, commits: CommitRequests) -> Self {
        self.commits = Some(commits);
        self
    }

    /// Waits until every event this driver emitted so far is committed to
    /// the spool. State that makes a device not send something again (the
    /// glucose meter's last sequence number) is persisted only after this:
    /// otherwise a crash in between would lose the records for good. Without
    /// a committing pipeline (driver tests), it returns at once.
    pub async fn committed(&self) -> Result<(), PipelineClosed> {
        let Some(commits) = &self.commits else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        commits.send(tx).await.map_err(|_| PipelineClosed)?;
        rx.await.map_err(|_| PipelineClosed)
    }

    pub fn device(&self) -> &DeviceRef {
        &self.device
    }

    pub fn subject(&self) -> &SubjectId {
        &self.subject
    }

    /// Cancelled when the gateway shuts down; drivers select on it.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Hands an event to the pipeline, waiting for room (the channel is bounded:
    /// a slow pipeline slows the drivers rather than growing memory).
    pub async fn emit(&self, event: Event) -> Result<(), PipelineClosed> {
        self.events
            .send(Emitted::Event(event))
            .await
            .map_err(|_| PipelineClosed)
    }

    /// Hands the events of one measurement to the pipeline in one piece
    /// (nothing is sent for none).
    pub async fn emit_measurement(&self, mut events: Vec<Event>) -> Result<(), PipelineClosed> {
        let item = match events.len() {
            0 => return Ok(()),
            1 => Emitted::Event(events.remove(0)),
            _ => Emitted::Measurement(events),
        };
        self.events.send(item).await.map_err(|_| PipelineClosed)
    }

    /// A reading of this device, bound to its subject. A device time stamp
    /// more than the clock tolerance ahead of the gateway's clock (a device
    /// clock set wrong) is replaced by the gateway's time — the reading is
    /// marked `time_source = gateway` and counted — so that it cannot mask
    /// later readings or look fresh for hours.
    pub fn reading(
        &self,
        at: Timestamp,
        time_source: TimeSource,
        metric: Metric,
        value: f64,
    ) -> Result<Event, ReadingError> {
        let (at, time_source) = self.checked_time(at, time_source);
        Reading::new(
            at,
            time_source,
            self.subject.clone(),
            Some(self.device.clone()),
            metric,
            value,
        )
        .map(Event::Reading)
    }

    fn checked_time(&self, at: Timestamp, time_source: TimeSource) -> (Timestamp, TimeSource) {
        let now = chrono::Utc::now();
        if at - now <= self.clock_tolerance {
            return (at, time_source);
        }
        if self.future_stamped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                device = %self.device.id,
                ahead_s = (at - now).num_seconds(),
                tolerance_s = self.clock_tolerance.num_seconds(),
                "device clock ahead of the gateway's: its readings get the gateway's time (logged once, counted)"
            );
        }
        (now, TimeSource::Gateway)
    }

    /// A connection-state change of this device.
    pub fn status(&self, at: Timestamp, state: DeviceState, reason: Option<&str>) -> Event {
        Event::DeviceStatus(DeviceStatus {
            at,
            subject: self.subject.clone(),
            device: self.device.clone(),
            state,
            reason: reason.map(Arc::from),
        })
    }

    /// A condition this device reports, starting or ending.
    pub fn alarm(
        &self,
        at: Timestamp,
        alarm: &str,
        phase: AlarmPhase,
        kind: AlertKind,
        raw: Option<&str>,
    ) -> Event {
        Event::DeviceAlarm(DeviceAlarm {
            at,
            subject: self.subject.clone(),
            device: self.device.clone(),
            alarm: Arc::from(alarm),
            phase,
            kind,
            raw: raw.map(Arc::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use wardgate_model::{DeviceKind, Event, Metric, TimeSource};

    use super::*;

    fn context() -> DriverContext {
        let (tx, _rx) = mpsc::channel(1);
        DriverContext::new(
            DeviceRef::new("ox-1".into(), DeviceKind::Ble),
            "bed-1".into(),
            tx,
            CancellationToken::new(),
        )
    }

    #[test]
    fn a_device_clock_far_ahead_gets_the_gateway_time_marked_and_counted() {
        let ctx = context();
        let before = chrono::Utc::now();
        let ahead = before + TimeDelta::hours(20);
        let Ok(Event::Reading(r)) = ctx.reading(ahead, TimeSource::Device, Metric::Spo2, 97.0)
        else {
            panic!("a reading")
        };
        assert_eq!(r.time_source, TimeSource::Gateway);
        assert!(r.at >= before && r.at <= chrono::Utc::now(), "{}", r.at);
        assert_eq!(ctx.future_stamped(), 1);
        // Within the tolerance (a clock a minute fast) the device time stands.
        let slightly = chrono::Utc::now() + TimeDelta::minutes(1);
        let Ok(Event::Reading(r)) = ctx.reading(slightly, TimeSource::Device, Metric::Spo2, 96.0)
        else {
            panic!("a reading")
        };
        assert_eq!((r.at, r.time_source), (slightly, TimeSource::Device));
        // Clones count together: one device, one counter.
        let clone = ctx.clone();
        let _ = clone.reading(ahead, TimeSource::Device, Metric::Spo2, 95.0);
        assert_eq!(ctx.future_stamped(), 2);
    }
}
