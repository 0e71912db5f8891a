//! The sinks' supervisor: every sink runs as a task whose failure is noticed
//! at once — not at shutdown. A sink that fails while the gateway runs (a
//! JSONL file on a full disk, an error from the spool) is logged with its
//! error, raises the technical device alarm `sink_failing` on the gateway
//! (the technical pack's `sink_failing` rule, through the rules like any
//! alarm), shows as failing on `/readyz`, and is started again after a
//! capped backoff (1 s, 2 s … 60 s); it resumes from its spool cursor, so
//! nothing is lost. The alarm ends once it has run [`TRUSTED_AFTER`]
//! without failing. At shutdown the sinks deliver what they can within a
//! grace period; whatever is left stays in the spool.
//!
//! Invariant: the supervisor starts, watches and reports sinks; it never
//! touches a record itself.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wardgate_drivers::Emitted;
use wardgate_model::AlarmPhase;

use super::fhir::FhirSink;
use super::hl7v2::Hl7Sink;
use super::influxdb::InfluxDbSink;
use super::jsonl::JsonlSink;
use super::mqtt::MqttSink;
use super::{PeerHealth, Sink, SinkContext, SinkError};
use crate::commands::AlertCommand;
use crate::config::{SinkConfig, SinkKind};
use crate::lineproto::Identity;
use crate::spool::{Spool, SpoolReader};

/// The device alarm of a sink that failed (the technical pack's rule).
pub const FAILING_ALARM: &str = "sink_failing";
/// How long a restarted sink must run before its alarm ends.
pub const TRUSTED_AFTER: Duration = Duration::from_secs(60);
/// How long sinks get, at shutdown, to deliver what is spooled.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Why a sink could not be started.
#[derive(Debug, thiserror::Error)]
#[error("sink `{name}`: {source}")]
pub struct SinkStartError {
    pub name: String,
    pub source: SinkError,
}

/// Which sinks are failing or stalled now, and why: `/readyz` reports them.
#[derive(Debug, Clone, Default)]
pub struct SinkHealth(Arc<Mutex<Problems>>);

#[derive(Debug, Default)]
struct Problems {
    failing: BTreeMap<String, String>,
    /// Required sinks that have not delivered for too long.
    stalled: BTreeMap<String, String>,
    /// What each sink last said about its peer, while it is down.
    peer_down: BTreeMap<String, String>,
}

impl SinkHealth {
    fn problems(&self) -> std::sync::MutexGuard<'_, Problems> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, name: &str, failure: Option<String>) {
        let mut p = self.problems();
        match failure {
            Some(why) => p.failing.insert(name.to_owned(), why),
            None => p.failing.remove(name),
        };
    }

    pub(super) fn set_peer(&self, name: &str, down: Option<String>) {
        let mut p = self.problems();
        match down {
            Some(why) => p.peer_down.insert(name.to_owned(), why),
            None => p.peer_down.remove(name),
        };
    }

    /// Marks a required sink stalled (or no longer).
    pub fn set_stalled(&self, name: &str, stalled: Option<String>) {
        let mut p = self.problems();
        match stalled {
            Some(why) => p.stalled.insert(name.to_owned(), why),
            None => p.stalled.remove(name),
        };
    }

    /// What keeps the gateway from being ready, one line per sink.
    pub fn not_ready(&self) -> Vec<String> {
        let p = self.problems();
        p.failing
            .iter()
            .map(|(n, why)| format!("sink {n} failing: {why}"))
            .chain(p.stalled.iter().map(|(n, why)| match p.peer_down.get(n) {
                Some(peer) => format!("sink {n} stalled: {why} (its peer: {peer})"),
                None => format!("sink {n} stalled: {why}"),
            }))
            .collect()
    }
}

/// What every sink is given, kept to start it again.
#[derive(Debug, Clone)]
pub struct SinkEnv {
    pub spool: Arc<Spool>,
    /// Where rejected InfluxDB batches go unless configured (beside the spool).
    pub spool_path: PathBuf,
    pub identity: Identity,
    pub commands: mpsc::Sender<AlertCommand>,
    pub drain: CancellationToken,
    /// The pipeline's event channel, for the sinks' alarms; weak, so it
    /// never keeps the pipeline from finishing.
    pub events: mpsc::WeakSender<Emitted>,
    /// The gateway's id: the subject of its own technical alarms.
    pub gateway: String,
    pub health: SinkHealth,
    /// Where the sinks' delivery figures are counted (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `[patients]`: subject → MRN, for the sinks that chart into an EMR.
    pub patients: Option<Arc<crate::config::PatientsConfig>>,
    /// The configured subjects (their kinds and NEWS2 profiles).
    pub subjects: Arc<[wardgate_model::Subject]>,
}

type SinkFuture = Pin<Box<dyn Future<Output = Result<u64, SinkError>> + Send>>;

#[derive(Debug)]
struct Slot {
    config: SinkConfig,
    failures: u32,
    started: Instant,
    alarmed: bool,
}

/// The running sinks.
#[derive(Debug)]
pub struct Sinks {
    env: SinkEnv,
    tasks: JoinSet<Result<u64, SinkError>>,
    /// Which sink each task runs.
    names: HashMap<Id, String>,
    running: BTreeMap<String, Slot>,
    waiting: Vec<(Instant, Slot)>,
    written: BTreeMap<String, u64>,
}

/// What the sinks did, at the end.
#[derive(Debug, Default)]
pub struct SinksReport {
    /// Events each sink delivered, by sink name (over all its restarts).
    pub written: BTreeMap<String, u64>,
    /// Sinks that stopped with an error at shutdown.
    pub failed: Vec<String>,
}

impl Sinks {
    /// Opens and starts every sink; a sink that cannot start fails the start.
    pub async fn start(configs: &[SinkConfig], env: SinkEnv) -> Result<Sinks, SinkStartError> {
        let mut sinks = Sinks {
            env,
            tasks: JoinSet::new(),
            names: HashMap::new(),
            running: BTreeMap::new(),
            waiting: Vec::new(),
            written: BTreeMap::new(),
        };
        for config in configs {
            let run = sinks.open(config).await?;
            sinks.spawn(
                Slot {
                    config: config.clone(),
                    failures: 0,
                    started: Instant::now(),
                    alarmed: false,
                },
                run,
            );
            tracing::info!(sink = %config.name, "sink ready");
        }
        Ok(sinks)
    }

    async fn open(&self, sink: &SinkConfig) -> Result<SinkFuture, SinkStartError> {
        let env = &self.env;
        match &sink.kind {
            SinkKind::Jsonl(c) => start::<JsonlSink>(&sink.name, c, env).await,
            SinkKind::Mqtt(c) => start::<MqttSink>(&sink.name, c, env).await,
            SinkKind::InfluxDb(c) => start::<InfluxDbSink>(&sink.name, c, env).await,
            SinkKind::Fhir(c) => start::<FhirSink>(&sink.name, c, env).await,
            SinkKind::Hl7v2(c) => start::<Hl7Sink>(&sink.name, c, env).await,
        }
        .map_err(|source| SinkStartError {
            name: sink.name.clone(),
            source,
        })
    }

    fn spawn(&mut self, mut slot: Slot, run: SinkFuture) {
        slot.started = Instant::now();
        let name = slot.config.name.clone();
        let handle = self.tasks.spawn(run);
        self.names.insert(handle.id(), name.clone());
        self.running.insert(name, slot);
    }

    /// Watches the sinks until `drain` (the pipeline has committed all it
    /// will), restarting failed ones; then lets them deliver within the
    /// grace period.
    pub async fn supervise(mut self) -> SinksReport {
        let drain = self.env.drain.clone();
        let mut trust = tokio::time::interval(Duration::from_secs(5));
        loop {
            let next_restart = self.waiting.iter().map(|w| w.0).min();
            tokio::select! {
                biased;
                () = drain.cancelled() => break,
                Some(joined) = self.tasks.join_next_with_id() => self.ended(joined).await,
                () = sleep_until(next_restart) => self.restart_due().await,
                _ = trust.tick() => self.trust_again().await,
            }
        }
        // A sink waiting for its restart gets one more start, to deliver.
        for (_, slot) in std::mem::take(&mut self.waiting) {
            if let Ok(run) = self.open(&slot.config).await {
                self.spawn(slot, run);
            }
        }
        let mut report = SinksReport::default();
        let deadline = tokio::time::sleep(DRAIN_GRACE);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = self.tasks.join_next_with_id() => match joined {
                    None => break,
                    Some(Ok((id, Ok(written)))) => {
                        let name = self.names.remove(&id).unwrap_or_default();
                        *self.written.entry(name).or_default() += written;
                    }
                    Some(Ok((id, Err(e)))) => {
                        let name = self.names.remove(&id).unwrap_or_default();
                        tracing::error!(sink = %name, error = %e, "sink failed");
                        report.failed.push(name);
                    }
                    Some(Err(e)) => {
                        let name = self.names.remove(&e.id()).unwrap_or_default();
                        tracing::error!(sink = %name, error = %e, "sink task panicked");
                        report.failed.push(name);
                    }
                },
                () = &mut deadline => {
                    tracing::warn!(
                        remaining = self.tasks.len(),
                        "sinks could not deliver everything in time; the rest stays in the spool for the next start"
                    );
                    self.tasks.abort_all();
                    while self.tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        report.written = self.written;
        report
    }

    async fn ended(&mut self, joined: Result<(Id, Result<u64, SinkError>), JoinError>) {
        let (id, error) = match joined {
            Ok((id, Ok(written))) => {
                // A sink returns on its own only at drain; count what it did.
                if let Some(name) = self.names.get(&id) {
                    *self.written.entry(name.clone()).or_default() += written;
                }
                (id, "stopped before shutdown".to_owned())
            }
            Ok((id, Err(e))) => (id, e.to_string()),
            Err(e) => (e.id(), format!("panicked: {e}")),
        };
        let Some(name) = self.names.remove(&id) else {
            return;
        };
        let Some(mut slot) = self.running.remove(&name) else {
            return;
        };
        slot.failures += 1;
        let backoff = crate::supervisor::restart_backoff(slot.failures);
        tracing::error!(
            sink = %name,
            error = %error,
            failures = slot.failures,
            restart_in_s = backoff.as_secs(),
            "sink failed; restarting it from its spool position (nothing is lost meanwhile)"
        );
        self.env.health.set(&name, Some(error.clone()));
        if !slot.alarmed {
            slot.alarmed = true;
            self.alarm(&name, AlarmPhase::Start, Some(&error)).await;
        }
        self.waiting.push((Instant::now() + backoff, slot));
    }

    async fn restart_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.waiting = later;
        for (_, mut slot) in due {
            match self.open(&slot.config).await {
                Ok(run) => {
                    tracing::info!(sink = %slot.config.name, attempt = slot.failures + 1, "restarting sink");
                    self.spawn(slot, run);
                }
                Err(e) => {
                    slot.failures += 1;
                    let backoff = crate::supervisor::restart_backoff(slot.failures);
                    tracing::error!(sink = %slot.config.name, error = %e, restart_in_s = backoff.as_secs(), "sink cannot be restarted yet");
                    self.waiting.push((now + backoff, slot));
                }
            }
        }
    }

    /// Ends the alarm of sinks that ran long enough since their restart.
    async fn trust_again(&mut self) {
        let now = Instant::now();
        let mut recovered = Vec::new();
        for (name, slot) in &mut self.running {
            if slot.alarmed && now.duration_since(slot.started) >= TRUSTED_AFTER {
                slot.alarmed = false;
                slot.failures = 0;
                recovered.push(name.clone());
            }
        }
        for name in recovered {
            tracing::info!(sink = %name, "sink delivers again");
            self.env.health.set(&name, None);
            self.alarm(&name, AlarmPhase::End, None).await;
        }
    }

    async fn alarm(&self, sink: &str, phase: AlarmPhase, detail: Option<&str>) {
        crate::monitor::raise(
            &self.env.events,
            &self.env.gateway,
            &format!("sink:{sink}"),
            FAILING_ALARM,
            phase,
            detail,
        )
        .await;
    }
}

/// Builds a sink and gives it its context: a reader at its cursor, the
/// drain signal, the command channel and its health report.
async fn start<S: Sink>(
    name: &str,
    config: &S::Config,
    env: &SinkEnv,
) -> Result<SinkFuture, SinkError> {
    let metrics = env.metrics.sink(name);
    let reader = SpoolReader::new(Arc::clone(&env.spool), name)?.with_metrics(metrics.clone());
    let sink = S::build(name, config, env).await?;
    let cx = SinkContext {
        reader,
        drain: env.drain.clone(),
        commands: env.commands.clone(),
        health: PeerHealth::new(name, env.health.clone()),
        metrics,
    };
    Ok(Box::pin(sink.run(cx)))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
