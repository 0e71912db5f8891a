//! The running gateway: drivers → one bounded event channel → (rules) →
//! spool (alerts at once, telemetry in group commits) → one reader per sink.
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

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use wardgate_model::Event;

use crate::commands::AlertCommand;
use crate::config::Config;
use crate::lineproto::Identity;
use crate::metrics::Metrics;
use crate::roster::Roster;
use crate::sinks::supervisor::{SinkEnv, SinkHealth, SinkStartError, Sinks};
use crate::spool::{Spool, SpoolError, SpoolLimits};
use crate::supervisor::{DriverEnv, Drivers};

mod batcher;
mod process;

use process::{Inputs, Stage, append, latch_gateway_alarm, process};

/// Events waiting between the drivers and the spool.
const EVENT_QUEUE: usize = 4096;
/// Events committed to the spool in one transaction at most.
const COMMIT_BATCH: usize = 1024;
/// Acknowledgement commands waiting for the alert manager.
const COMMAND_QUEUE: usize = 256;
/// How long the spool may keep failing to commit before the gateway gives up
/// and exits, so that the service manager restarts it (a fresh process
/// reopens the database; a wedged one that looks alive helps nobody).
const SPOOL_FAILURE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Sink(#[from] SinkStartError),
    #[error("spool {path}: {source}")]
    Spool { path: PathBuf, source: SpoolError },
    #[error(
        "the spool {path} cannot commit ({source}) and has not recovered in {} s; wardgate stops so that the service manager restarts it",
        SPOOL_FAILURE_LIMIT.as_secs()
    )]
    SpoolFailed { path: PathBuf, source: SpoolError },
    #[error("rules engine: {0}")]
    Rules(wardgate_rules::EngineError),
    #[error("cannot create a temporary spool directory: {0}")]
    TempDir(std::io::Error),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
}

/// What the HTTP layer hangs on the pipeline: every committed batch is
/// published on `committed` (after the spool append, so what a page shows is
/// durable), and its commands arrive on `commands`.
#[derive(Debug, Default)]
struct Hooks {
    committed: Option<broadcast::Sender<Arc<[Event]>>>,
    commands: Option<mpsc::Receiver<AlertCommand>>,
    /// Commits and the alert transitions they carry are counted here.
    metrics: Arc<Metrics>,
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
    /// Driver crashes (each restarted by the supervisor).
    pub driver_crashes: u64,
}

/// Sent once when the gateway runs: spool open, sinks ready, the HTTP server
/// listening and the drivers started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// Where the page and API listen, when `[http]` is configured.
    pub http: Option<std::net::SocketAddr>,
}

/// Runs until `shutdown` is cancelled, then stops everything in order.
/// `running`, when given, hears once that start-up is over; it is dropped
/// unsent when start-up fails (the error is then this function's result).
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    running: Option<tokio::sync::oneshot::Sender<Running>>,
) -> Result<Summary, PipelineError> {
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
    let (spool, set_aside) = {
        let path = spool_path.clone();
        let names = sink_names.clone();
        let now = chrono::Utc::now();
        tokio::task::spawn_blocking(move || Spool::open_recovering(&path, limits, &names, now))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            .map(|(spool, set_aside)| (Arc::new(spool), set_aside))
            .map_err(|source| PipelineError::Spool {
                path: spool_path.clone(),
                source,
            })?
    };
    if let Some(s) = &set_aside {
        tracing::error!(
            spool = %spool_path.display(),
            set_aside = %s.path.display(),
            reason = %s.reason,
            "the spool was unreadable: it was moved aside and an empty one started; readings and alerts it held but had not delivered are in the file set aside"
        );
    }
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
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let mut engine = config.engine().map_err(PipelineError::Rules)?;
    let now = chrono::Utc::now();
    let mut startup_events = Vec::new();
    for subject in &config.subjects {
        startup_events.extend(engine.set_profile(now, &subject.id, subject.profile.clone()));
    }
    // The alerts that were open when the gateway last stopped (or was
    // killed) are open again, with their ids and states.
    let open = spool.open_alerts().map_err(|source| PipelineError::Spool {
        path: spool_path.clone(),
        source,
    })?;
    let not_restored = engine.restore(now, &open);
    if !open.is_empty() {
        tracing::info!(
            restored = open.len() - not_restored.len(),
            not_restored = not_restored.len(),
            "open alerts restored from the spool"
        );
    }
    for e in &not_restored {
        if let wardgate_model::Event::Alert(a) = e {
            tracing::warn!(alert = %a.id.0, message = %a.message, "alert not restored; ended explicitly");
        }
    }
    startup_events.extend(not_restored);
    let silences = spool
        .open_silences()
        .map_err(|source| PipelineError::Spool {
            path: spool_path.clone(),
            source,
        })?;
    if !silences.is_empty() {
        tracing::info!(
            silences = silences.len(),
            "silences restored from the spool"
        );
    }
    startup_events.extend(engine.restore_silences(now, &silences));
    if let Some(s) = set_aside {
        // The alarm system announces its own failure, through the rules
        // like any alarm: a high, latching technical alert (`storage_reset`).
        latch_gateway_alarm(
            &mut engine,
            &config.gateway.id,
            crate::spool::RESET_ALARM,
            &format!(
                "{} was set aside as {} ({})",
                spool_path.display(),
                s.path.display(),
                s.reason
            ),
            &mut startup_events,
        );
    }
    tracing::info!(rules = config.rule_set.rules().len(), "rules engine ready");
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let sink_health = SinkHealth::default();
    let live = Arc::new(Metrics::new());
    let sinks = Sinks::start(
        &config.sinks,
        SinkEnv {
            spool: Arc::clone(&spool),
            spool_path: spool_path.clone(),
            identity: Identity {
                site: config.gateway.site.clone(),
                ward: config.gateway.ward.clone(),
                gateway: config.gateway.id.clone(),
            },
            commands: commands_tx.clone(),
            drain: drain.clone(),
            events: events_tx.downgrade(),
            gateway: config.gateway.id.clone(),
            health: sink_health.clone(),
            metrics: Arc::clone(&live),
            patients: config.patients.clone().map(Arc::new),
            subjects: config.subjects.clone().into(),
        },
    )
    .await?;
    let sinks = tokio::spawn(sinks.supervise());
    let monitor = tokio::spawn(
        crate::monitor::Monitor {
            spool: Arc::clone(&spool),
            max_bytes: config.spool.max_bytes,
            stalled_after: config.spool.stalled_after,
            required: config
                .sinks
                .iter()
                .filter(|s| s.required)
                .map(|s| s.name.clone())
                .collect(),
            health: sink_health.clone(),
            events: events_tx.downgrade(),
            gateway: config.gateway.id.clone(),
            every: crate::monitor::EVERY,
        }
        .run(drain.clone()),
    );

    let mut hooks = Hooks {
        metrics: Arc::clone(&live),
        ..Hooks::default()
    };
    let mut http_addr = None;
    let http = match &config.http {
        Some(http) => {
            let started = crate::http::start(
                http,
                &config,
                Arc::clone(&spool),
                sink_health.clone(),
                Arc::clone(&live),
            )
            .await?;
            hooks.committed = Some(started.committed.clone());
            hooks.commands = Some(started.commands_rx);
            http_addr = Some(started.addr);
            Some(started.server)
        }
        None => None,
    };
    let (commits_tx, commits_rx) = mpsc::channel(COMMAND_QUEUE);
    let metrics = Arc::new(config.metrics.clone());
    let drivers_stop = shutdown.child_token();
    let drivers = Drivers::start(
        &config.devices,
        DriverEnv {
            metrics,
            events: events_tx,
            commits: commits_tx.clone(),
            shutdown: drivers_stop.clone(),
            clock_tolerance: chrono::TimeDelta::from_std(config.gateway.clock_tolerance)
                .unwrap_or(wardgate_drivers::DEFAULT_CLOCK_TOLERANCE),
            device_metrics: live.drivers.clone(),
        },
    );
    tracing::info!(
        gateway = %config.gateway.id,
        site = %config.gateway.site,
        ward = %config.gateway.ward,
        subjects = config.subjects.len(),
        devices = config.devices.len(),
        sinks = config.sinks.len(),
        "wardgate running"
    );
    if let Some(running) = running {
        // The caller may have stopped listening; the gateway runs all the same.
        let _ = running.send(Running { http: http_addr });
    }
    crate::service::ready(&format!(
        "running: {} devices, {} sinks",
        config.devices.len(),
        config.sinks.len()
    ));
    let watchdog = tokio::spawn(crate::service::watchdog(commits_tx));
    let supervisor = tokio::spawn(drivers.supervise(drivers_stop.clone()));

    let mut summary = Summary::default();
    // Drivers stop on the caller's shutdown, or when the spool fails.
    let stop = drivers_stop;
    let roster = Roster::new(
        config.staff.clone(),
        config.subjects.iter().map(|s| s.id.clone()).collect(),
    );
    roster.address_events(&mut startup_events);
    if !startup_events.is_empty()
        && let Err(source) = append(&spool, startup_events, &mut summary, &hooks).await
    {
        stop.cancel();
        watchdog.abort();
        let _ = supervisor.await;
        return Err(PipelineError::SpoolFailed {
            path: spool_path,
            source,
        });
    }
    // A task of its own, on the runtime's workers like the drivers: a driver's
    // event then wakes it without a thread switch (the caller may be
    // `block_on`, outside the workers).
    let flush_interval = config.spool.flush_interval;
    let gateway = config.gateway.id.clone();
    let (mut summary, processed) = tokio::spawn({
        let spool = Arc::clone(&spool);
        let stop = stop.clone();
        async move {
            let processed = process(
                Inputs {
                    events: events_rx,
                    commits: commits_rx,
                    commands: commands_rx,
                },
                Stage {
                    engine,
                    roster,
                    gateway,
                    metrics: live,
                },
                &spool,
                &mut summary,
                hooks,
                flush_interval,
            )
            .await;
            if processed.is_err() {
                // Nothing more can be accepted: stop the drivers.
                stop.cancel();
            }
            (summary, processed)
        }
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    watchdog.abort();
    match supervisor.await {
        Ok(crashes) => summary.driver_crashes = crashes,
        Err(e) => tracing::error!(error = %e, "driver supervisor failed"),
    }
    let failure = processed.err().map(|source| PipelineError::SpoolFailed {
        path: spool_path.clone(),
        source,
    });

    // Everything accepted is in the spool: let the sinks deliver what they can.
    drain.cancel();
    monitor.abort();
    match sinks.await {
        Ok(report) => {
            summary.written = report.written;
            summary.failed_sinks = report.failed;
        }
        Err(e) => tracing::error!(error = %e, "sink supervisor failed"),
    }
    // Cursor moves since the last append are made durable now.
    let synced = {
        let spool = Arc::clone(&spool);
        tokio::task::spawn_blocking(move || spool.sync())
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    };
    if let Err(e) = synced {
        tracing::warn!(error = %e, "spool: delivery positions not synced; some records will be delivered again");
    }
    drop(commands_tx);
    if let Some(server) = http {
        server.abort();
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}
