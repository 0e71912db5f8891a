//! The running gateway: drivers → one bounded event channel → (rules) → one
//! bounded channel per sink.
//!
//! Every queue is bounded, so a slow sink slows the pipeline and the pipeline
//! slows the drivers: memory never grows without limit. Shutdown runs in
//! order: the token stops the drivers; when the last driver has returned the
//! event channel drains; then each sink drains its own channel and flushes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wardgate_drivers::{DriverContext, synthetic};
use wardgate_model::{Event, MetricRegistry};

use crate::config::{Config, DeviceConfig, DriverConfig, SinkKind};
use crate::sinks::jsonl::{JsonlError, JsonlSink};

/// Events waiting between the drivers and the rules/sinks stage.
const EVENT_QUEUE: usize = 4096;
/// Events waiting in front of each sink.
const SINK_QUEUE: usize = 1024;
/// How long drivers get to stop before they are abandoned.
const DRIVER_STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("sink `{name}`: {source}")]
    SinkOpen { name: String, source: JsonlError },
}

/// What passed through, reported at shutdown.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Events by type (`reading`, `device_status`, ...).
    pub events: BTreeMap<&'static str, u64>,
    /// Events each sink wrote, by sink name.
    pub written: BTreeMap<String, u64>,
    /// Sinks that stopped with an error.
    pub failed_sinks: Vec<String>,
}

struct SinkHandle {
    name: String,
    tx: Option<mpsc::Sender<Event>>,
}

/// Runs until `shutdown` is cancelled, then stops everything in order.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<Summary, PipelineError> {
    // Open every sink before any device starts: a bad path fails now.
    let mut sink_tasks = JoinSet::new();
    let mut sinks = Vec::new();
    for sink in &config.sinks {
        let (tx, rx) = mpsc::channel(SINK_QUEUE);
        match &sink.kind {
            SinkKind::Jsonl(c) => {
                let opened = JsonlSink::open(&sink.name, c).await.map_err(|source| {
                    PipelineError::SinkOpen {
                        name: sink.name.clone(),
                        source,
                    }
                })?;
                let name = sink.name.clone();
                sink_tasks.spawn(async move { (name, opened.run(rx).await) });
            }
        }
        tracing::info!(sink = %sink.name, "sink ready");
        sinks.push(SinkHandle {
            name: sink.name.clone(),
            tx: Some(tx),
        });
    }

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let metrics = Arc::new(config.metrics.clone());
    let drivers = spawn_drivers(&config.devices, &metrics, &events_tx, &shutdown);
    tracing::info!(
        gateway = %config.gateway.id,
        site = %config.gateway.site,
        ward = %config.gateway.ward,
        subjects = config.subjects.len(),
        devices = config.devices.len(),
        sinks = config.sinks.len(),
        "wardgate running"
    );
    let supervisor = tokio::spawn(supervise(drivers, events_tx, shutdown.clone()));

    let mut summary = Summary::default();
    forward(events_rx, &mut sinks, &mut summary).await;
    if let Err(e) = supervisor.await {
        tracing::error!(error = %e, "driver supervisor failed");
    }

    // The event channel is drained: close the sinks and let them flush.
    drop(sinks);
    while let Some(joined) = sink_tasks.join_next().await {
        match joined {
            Ok((name, Ok(written))) => {
                summary.written.insert(name, written);
            }
            Ok((name, Err(e))) => {
                tracing::error!(sink = %name, error = %e, "sink failed");
                summary.failed_sinks.push(name);
            }
            Err(e) => tracing::error!(error = %e, "sink task panicked"),
        }
    }
    Ok(summary)
}

fn spawn_drivers(
    devices: &[DeviceConfig],
    metrics: &Arc<MetricRegistry>,
    events: &mpsc::Sender<Event>,
    shutdown: &CancellationToken,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for device in devices {
        let ctx = DriverContext::new(
            device.device.clone(),
            device.subject.clone(),
            events.clone(),
            shutdown.child_token(),
        );
        let id = device.device.id.clone();
        tracing::info!(device = %id, kind = device.device.kind.as_str(), subject = %device.subject, "starting driver");
        let metrics = Arc::clone(metrics);
        match device.driver.clone() {
            DriverConfig::Synthetic(c) => {
                set.spawn(async move {
                    // PipelineClosed is the only error: the gateway is stopping.
                    let _ = synthetic::run(c, &metrics, ctx).await;
                    tracing::debug!(device = %id, "driver stopped");
                });
            }
        }
    }
    set
}

/// Waits for shutdown, gives drivers a grace period, then releases the last
/// event sender so the forwarding loop can finish.
async fn supervise(
    mut drivers: JoinSet<()>,
    events_tx: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            joined = drivers.join_next(), if !drivers.is_empty() => {
                if let Some(Err(e)) = joined {
                    tracing::error!(error = %e, "a driver task panicked; other devices continue");
                } else {
                    tracing::warn!("a driver stopped before shutdown; other devices continue");
                }
            }
        }
    }
    tracing::info!(drivers = drivers.len(), "stopping drivers");
    let drained = tokio::time::timeout(DRIVER_STOP_GRACE, async {
        while drivers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = drivers.len(),
            grace_s = DRIVER_STOP_GRACE.as_secs(),
            "drivers did not stop in time; abandoning them"
        );
        drivers.abort_all();
        while drivers.join_next().await.is_some() {}
    }
    drop(events_tx);
}

/// Hands each event to every live sink, in order. A sink that has stopped is
/// reported once and skipped from then on.
async fn forward(
    mut events: mpsc::Receiver<Event>,
    sinks: &mut [SinkHandle],
    summary: &mut Summary,
) {
    while let Some(event) = events.recv().await {
        let kind = match &event {
            Event::Reading(_) => "reading",
            Event::DeviceStatus(_) => "device_status",
            Event::DeviceAlarm(_) => "device_alarm",
            Event::Alert(_) => "alert",
        };
        *summary.events.entry(kind).or_default() += 1;
        for sink in sinks.iter_mut() {
            let Some(tx) = &sink.tx else { continue };
            if tx.send(event.clone()).await.is_err() {
                tracing::error!(sink = %sink.name, "sink stopped; it receives no further events");
                sink.tx = None;
            }
        }
    }
}
