//! What every driver is given: who it is, whom its readings belong to, where
//! events go, and when to stop.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wardgate_model::{
    AlarmPhase, AlertKind, DeviceAlarm, DeviceRef, DeviceState, DeviceStatus, Event, Metric,
    Reading, ReadingError, SubjectId, TimeSource, Timestamp,
};

/// The pipeline has shut down; the driver should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline is closed")]
pub struct PipelineClosed;

/// A driver's handle on the gateway. Cheap to clone (one per device task).
#[derive(Debug, Clone)]
pub struct DriverContext {
    device: DeviceRef,
    subject: SubjectId,
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
    commits: Option<CommitRequests>,
}

/// Requests to the pipeline to commit everything sent so far; each is
/// answered once that is durable.
pub type CommitRequests = mpsc::Sender<oneshot::Sender<()>>;

impl DriverContext {
    pub fn new(
        device: DeviceRef,
        subject: SubjectId,
        events: mpsc::Sender<Event>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            device,
            subject,
            events,
            shutdown,
            commits: None,
        }
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
        self.events.send(event).await.map_err(|_| PipelineClosed)
    }

    /// A reading of this device, bound to its subject.
    pub fn reading(
        &self,
        at: Timestamp,
        time_source: TimeSource,
        metric: Metric,
        value: f64,
    ) -> Result<Event, ReadingError> {
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
