//! The running gateway: drivers → one bounded event channel → (rules) →
//! spool (group commit) → one reader per sink.
//!
//! The only in-memory queue is bounded, so a slow spool slows the drivers;
//! sinks read from the spool at their own pace and a slow or absent peer only
//! makes the spool grow, within its limits. Shutdown runs in order: the token
//! stops the drivers; when the last driver has returned the event channel
//! drains into the spool; then each sink delivers what it can within a grace
//! period and stops — whatever is left stays in the spool for the next start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wardgate_drivers::{DriverContext, synthetic};
use wardgate_model::{Event, MetricRegistry};

use crate::config::{Config, DeviceConfig, DriverConfig, SinkKind};
use crate::lineproto::Identity;
use crate::sinks::influxdb::{InfluxDbSink, InfluxSetupError};
use crate::sinks::jsonl::{JsonlError, JsonlSink};
use crate::sinks::mqtt::{AckCommand, MqttSink};
use crate::spool::{Spool, SpoolError, SpoolLimits, SpoolReader};

/// Events waiting between the drivers and the spool.
const EVENT_QUEUE: usize = 4096;
/// Events committed to the spool in one transaction at most.
const COMMIT_BATCH: usize = 1024;
/// Acknowledgement commands waiting for the alert manager.
const COMMAND_QUEUE: usize = 256;
/// How long drivers get to stop before they are abandoned.
const DRIVER_STOP_GRACE: Duration = Duration::from_secs(5);
/// How long sinks get, at shutdown, to deliver what is spooled.
const SINK_DRAIN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("sink `{name}`: {source}")]
    SinkOpen { name: String, source: JsonlError },
    #[error("sink `{name}`: {source}")]
    SinkSetup {
        name: String,
        source: InfluxSetupError,
    },
    #[error("spool {path}: {source}")]
    Spool { path: PathBuf, source: SpoolError },
    #[error("cannot create a temporary spool directory: {0}")]
    TempDir(std::io::Error),
}

/// What passed through, reported at shutdown.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Events committed to the spool, by type (`reading`, `device_status`, ...).
    pub events: BTreeMap<&'static str, u64>,
    /// Events each sink delivered, by sink name.
    pub written: BTreeMap<String, u64>,
    /// Sinks that stopped with an error.
    pub failed_sinks: Vec<String>,
    /// Telemetry evicted from the spool to stay within its limits.
    pub evicted: u64,
}

/// Runs until `shutdown` is cancelled, then stops everything in order.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<Summary, PipelineError> {
    let (spool_path, _temp_dir) = match &config.spool.path {
        Some(p) => (p.clone(), None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("wardgate-spool-")
                .tempdir()
                .map_err(PipelineError::TempDir)?;
            let path = dir.path().join("spool.redb");
            tracing::warn!(path = %path.display(), "no [spool] path configured: using a temporary spool that does not survive a restart");
            (path, Some(dir))
        }
    };
    let sink_names: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
    let limits = SpoolLimits {
        max_bytes: config.spool.max_bytes,
        max_age: config.spool.max_age,
    };
    let spool = {
        let path = spool_path.clone();
        let names = sink_names.clone();
        tokio::task::spawn_blocking(move || Spool::open(&path, limits, &names))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            .map(Arc::new)
            .map_err(|source| PipelineError::Spool {
                path: spool_path.clone(),
                source,
            })?
    };
    if let Ok(stats) = spool.stats() {
        tracing::info!(
            path = %spool_path.display(),
            alerts_waiting = stats.alerts,
            telemetry_waiting = stats.telemetry,
            "spool open"
        );
    }

    // Open every sink before any device starts: a bad path fails now.
    let drain = CancellationToken::new();
    let identity = Identity {
        site: config.gateway.site.clone(),
        ward: config.gateway.ward.clone(),
        gateway: config.gateway.id.clone(),
    };
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let command_task = tokio::spawn(handle_commands(commands_rx));
    let mut sink_tasks = JoinSet::new();
    for sink in &config.sinks {
        let reader = SpoolReader::new(Arc::clone(&spool), &sink.name).map_err(|source| {
            PipelineError::Spool {
                path: spool_path.clone(),
                source,
            }
        })?;
        let name = sink.name.clone();
        match &sink.kind {
            SinkKind::Jsonl(c) => {
                let opened = JsonlSink::open(&sink.name, c).await.map_err(|source| {
                    PipelineError::SinkOpen {
                        name: sink.name.clone(),
                        source,
                    }
                })?;
                let drain = drain.clone();
                sink_tasks.spawn(async move { (name, opened.run(reader, drain).await) });
            }
            SinkKind::Mqtt(c) => {
                let sink = MqttSink::new(&sink.name, (**c).clone(), identity.clone());
                let drain = drain.clone();
                let commands = commands_tx.clone();
                sink_tasks.spawn(async move { (name, sink.run(reader, drain, commands).await) });
            }
            SinkKind::InfluxDb(c) => {
                // Rejected batches land next to the spool unless configured.
                let quarantine =
                    spool_path.with_file_name(format!("{}.quarantine.jsonl", sink.name));
                let sink =
                    InfluxDbSink::new(&sink.name, (**c).clone(), identity.clone(), quarantine)
                        .map_err(|source| PipelineError::SinkSetup {
                            name: sink.name.clone(),
                            source,
                        })?;
                let drain = drain.clone();
                let spool = Arc::clone(&spool);
                sink_tasks.spawn(async move { (name, sink.run(reader, spool, drain).await) });
            }
        }
        tracing::info!(sink = %sink.name, "sink ready");
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
    commit(events_rx, &spool, &mut summary).await;
    if let Err(e) = supervisor.await {
        tracing::error!(error = %e, "driver supervisor failed");
    }

    // Everything accepted is in the spool: let the sinks deliver what they can.
    drain.cancel();
    let deadline = tokio::time::sleep(SINK_DRAIN_GRACE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            joined = sink_tasks.join_next() => match joined {
                None => break,
                Some(Ok((name, Ok(written)))) => {
                    summary.written.insert(name, written);
                }
                Some(Ok((name, Err(e)))) => {
                    tracing::error!(sink = %name, error = %e, "sink failed");
                    summary.failed_sinks.push(name);
                }
                Some(Err(e)) => tracing::error!(error = %e, "sink task panicked"),
            },
            () = &mut deadline => {
                tracing::warn!(
                    remaining = sink_tasks.len(),
                    "sinks could not deliver everything in time; the rest stays in the spool for the next start"
                );
                sink_tasks.abort_all();
                while sink_tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    drop(commands_tx);
    let _ = command_task.await;
    Ok(summary)
}

/// Acknowledgement commands from nurses' apps (MQTT), for the alert manager.
async fn handle_commands(mut commands: mpsc::Receiver<AckCommand>) {
    while let Some(cmd) = commands.recv().await {
        tracing::warn!(alert = %cmd.alert_id, by = %cmd.by, "acknowledgement received, but no rules engine runs in this build to apply it");
    }
}

/// Commits events to the spool in batches (one fsync per batch) until every
/// driver is gone. A failed commit is retried: the drivers wait meanwhile.
async fn commit(mut events: mpsc::Receiver<Event>, spool: &Arc<Spool>, summary: &mut Summary) {
    let mut batch = Vec::with_capacity(COMMIT_BATCH);
    while events.recv_many(&mut batch, COMMIT_BATCH).await > 0 {
        for event in &batch {
            *summary.events.entry(kind_name(event)).or_default() += 1;
        }
        let mut attempt = 0u32;
        loop {
            let spool = Arc::clone(spool);
            let events = batch.clone();
            let now = chrono::Utc::now();
            let result = tokio::task::spawn_blocking(move || spool.append(now, &events))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            match result {
                Ok(appended) => {
                    if appended.evicted > 0 {
                        summary.evicted += appended.evicted;
                        tracing::warn!(
                            evicted = appended.evicted,
                            total = summary.evicted,
                            "spool full: oldest telemetry evicted"
                        );
                    }
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    if attempt == 1 {
                        tracing::error!(error = %e, events = batch.len(), "spool commit failed; retrying (drivers are held back meanwhile)");
                    }
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(50))))
                        .await;
                }
            }
        }
        batch.clear();
    }
}

fn kind_name(event: &Event) -> &'static str {
    match event {
        Event::Reading(_) => "reading",
        Event::DeviceStatus(_) => "device_status",
        Event::DeviceAlarm(_) => "device_alarm",
        Event::Alert(_) => "alert",
    }
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
