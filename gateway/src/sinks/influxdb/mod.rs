//! The InfluxDB sink: writes spooled records to an InfluxDB v2 write API
//! (InfluxDB 2.x, victoria-metrics, anything speaking `/api/v2/write`) and
//! advances its spool cursor only after a 2xx.
//!
//! Records are taken from the spool in order, alerts first; a write carries up
//! to `batch_max` records and waits at most `flush_interval` for a batch to
//! fill (an alert is written at once). Network errors, 429 and 5xx, and the
//! configuration faults 401, 403 and 404 (token, org, bucket) are retried
//! with capped exponential backoff and jitter (or the server's `Retry-After`);
//! the batch stays in hand and the spool keeps everything behind it, so an
//! outage costs memory only for one batch. Any other 4xx means the request
//! itself is wrong (400 a bad line, 413 too large, 422 a schema conflict):
//! the batch is split in halves until only the refused lines are left
//! ([`split`]); those go to the quarantine file, are counted and logged once
//! per batch, and everything is acknowledged so the stream goes on. The
//! quarantine file is bounded (`quarantine_max_bytes`): past it refused lines
//! are dropped and counted. A refusal raises the low `data_quarantined`
//! technical alarm (at most once a minute), an overflow the medium
//! `quarantine_full` one, both through the rules like any alarm.
//!
//! This module never reorders or alters records, and never acknowledges a
//! record that is neither stored by the server nor on disk in the quarantine
//! (or counted as dropped because the quarantine is full).

mod config;
mod encode;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::InfluxDbConfig;
pub use encode::{body, gzip};
pub use writer::{InfluxSetupError, InfluxWriter, write_splitting};

use crate::sinks::delivery::refusals::Refusals;
use crate::sinks::delivery::{DeliveryMetrics, Quarantine, QuarantineEntry, Settled};

use tokio::sync::mpsc;
use wardgate_drivers::Emitted;

use crate::lineproto::{self, Identity};
use crate::sinks::supervisor::SinkEnv;
use crate::sinks::{PeerHealth, Sink, SinkContext, SinkError};
use crate::spool::{Batch, Lane, Spool, SpoolReader};

/// How often the figures are logged while running.
const STATS_INTERVAL: Duration = Duration::from_secs(60);
pub use crate::sinks::delivery::refusals::{QUARANTINE_FULL_ALARM, QUARANTINED_ALARM};

/// A configured InfluxDB sink, ready to run.
#[derive(Debug)]
pub struct InfluxDbSink {
    name: String,
    config: InfluxDbConfig,
    identity: Identity,
    writer: InfluxWriter,
    refusals: Refusals,
    metrics: Arc<DeliveryMetrics>,
}

enum Flushed {
    Done,
    /// Stopping while the server is failing: the batch stays in the spool.
    Stopped,
}

impl Sink for InfluxDbSink {
    type Config = InfluxDbConfig;

    async fn build(name: &str, config: &InfluxDbConfig, env: &SinkEnv) -> Result<Self, SinkError> {
        let quarantine = env
            .spool_path
            .with_file_name(format!("{name}.quarantine.jsonl"));
        Ok(
            InfluxDbSink::new(name, config.clone(), env.identity.clone(), quarantine)?
                .with_alarms(env.events.clone(), env.gateway.clone())
                .with_metrics(env.metrics.sink(name)),
        )
    }

    fn run(
        self,
        cx: SinkContext,
    ) -> impl std::future::Future<Output = Result<u64, SinkError>> + Send {
        self.deliver(cx)
    }
}

impl InfluxDbSink {
    /// Resolves the token and prepares the HTTP client. `default_quarantine`
    /// is used when the config names no quarantine file.
    pub fn new(
        name: &str,
        config: InfluxDbConfig,
        identity: Identity,
        default_quarantine: std::path::PathBuf,
    ) -> Result<Self, InfluxSetupError> {
        let writer = InfluxWriter::new(name, &config)?;
        let quarantine = Quarantine::new(
            config.quarantine.clone().unwrap_or(default_quarantine),
            config.quarantine_max_bytes,
        );
        Ok(Self {
            name: name.to_owned(),
            refusals: Refusals::new(name, quarantine, config.quarantine_max_bytes),
            config,
            identity,
            writer,
            metrics: Arc::new(DeliveryMetrics::new()),
        })
    }

    /// Raises the sink's technical alarms (`data_quarantined`,
    /// `quarantine_full`) on `events`, the pipeline's channel, for gateway
    /// `gateway`. Without it they are only logged.
    #[must_use]
    pub fn with_alarms(mut self, events: mpsc::WeakSender<Emitted>, gateway: String) -> Self {
        self.refusals.alarm_on(events, gateway);
        self
    }

    /// Counts retries, quarantined and dropped records into `metrics` too.
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::sinks::metrics::SinkMetrics) -> Self {
        self.metrics = Arc::new(DeliveryMetrics::new().exporting(metrics));
        self
    }

    /// The live figures.
    pub fn metrics(&self) -> Arc<DeliveryMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Writes until `drain` is cancelled and everything spooled is stored
    /// (or, when the server is failing, at once: the spool keeps the rest).
    /// Returns the number of records acknowledged.
    async fn deliver(mut self, cx: SinkContext) -> Result<u64, SinkError> {
        let SinkContext {
            mut reader,
            drain,
            health,
            ..
        } = cx;
        let spool = Arc::clone(reader.spool());
        let probe = self.writer.clone();
        tokio::spawn(async move { probe.probe().await });
        let batch_max = self.config.batch_max;
        let mut held: Vec<Batch> = Vec::new();
        let mut held_n = 0usize;
        let mut deadline: Option<Instant> = None;
        let mut urgent = false;
        let mut stats = tokio::time::interval_at(Instant::now() + STATS_INTERVAL, STATS_INTERVAL);
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

        loop {
            let mut caught_up = false;
            while held_n < batch_max {
                let Some(batch) = reader.next_batch(batch_max - held_n).await? else {
                    caught_up = true;
                    break;
                };
                if let Some(first) = batch.records.first() {
                    self.metrics
                        .add_queued(batch.records.len() as u64, first.event.at());
                }
                held_n += batch.records.len();
                urgent |= batch.lane == Lane::Alert;
                deadline.get_or_insert_with(|| Instant::now() + self.config.flush_interval);
                held.push(batch);
            }
            let due = urgent
                || held_n >= batch_max
                || drain.is_cancelled()
                || deadline.is_some_and(|d| d <= Instant::now());
            if held_n > 0 && due {
                match self.flush(&mut reader, &held, &drain, &health).await? {
                    Flushed::Done => {
                        held.clear();
                        held_n = 0;
                        deadline = None;
                        urgent = false;
                        continue;
                    }
                    Flushed::Stopped => break,
                }
            }
            if drain.is_cancelled() && caught_up && held_n == 0 {
                break;
            }
            let sleep_until = deadline.unwrap_or_else(Instant::now);
            tokio::select! {
                () = reader.wait_for_data(), if caught_up => {}
                () = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {}
                _ = stats.tick() => {
                    self.refresh_spool_stats(&spool).await;
                    self.metrics.log(&self.name, chrono::Utc::now(), "influxdb sink");
                    self.refusals.recheck(&self.metrics).await;
                }
                () = drain.cancelled(), if !drain.is_cancelled() => {}
            }
        }
        self.refresh_spool_stats(&spool).await;
        self.metrics
            .log(&self.name, chrono::Utc::now(), "influxdb sink stopped");
        Ok(self.metrics.snapshot(chrono::Utc::now()).acknowledged)
    }

    async fn refresh_spool_stats(&self, spool: &Arc<Spool>) {
        let spool = Arc::clone(spool);
        if let Ok(Ok(s)) = tokio::task::spawn_blocking(move || spool.stats()).await {
            self.metrics.set_spool(s.telemetry_bytes, s.evicted_total);
        }
    }

    /// Writes the held batches in one request (split while the server
    /// refuses lines); acknowledges them in the spool once every line is
    /// stored or quarantined.
    async fn flush(
        &mut self,
        reader: &mut SpoolReader,
        held: &[Batch],
        drain: &CancellationToken,
        health: &PeerHealth,
    ) -> Result<Flushed, SinkError> {
        let records: Vec<&crate::spool::Record> =
            held.iter().flat_map(|b| b.records.iter()).collect();
        let n = records.len() as u64;
        let lines: Vec<String> = records
            .iter()
            .map(|r| {
                let mut line = String::new();
                lineproto::encode(&r.event, &self.identity, &mut line);
                line
            })
            .collect();
        let slices: Vec<&str> = lines.iter().map(String::as_str).collect();
        let refused = match write_splitting(&self.writer, &slices, &self.metrics, drain).await {
            Settled::Done { refused, .. } => refused,
            Settled::Cancelled => {
                health.down("the server did not store the last batch before the gateway stopped");
                return Ok(Flushed::Stopped);
            }
        };
        health.up();
        self.metrics.add_acknowledged(n - refused.len() as u64);
        if let Some(first) = refused.first() {
            let now = chrono::Utc::now();
            let entries: Vec<QuarantineEntry<'_>> = refused
                .iter()
                .map(|f| QuarantineEntry {
                    quarantined_at: now,
                    by: &self.name,
                    status: Some(f.status),
                    reason: &f.reason,
                    topic: None,
                    event: Some(&records[f.index].event),
                    payload: None,
                })
                .collect();
            let Some(appended) = self.refusals.keep(&entries, &self.metrics, drain).await else {
                return Ok(Flushed::Stopped);
            };
            tracing::error!(
                sink = %self.name,
                status = first.status,
                response = %first.reason,
                refused = refused.len(),
                records = n,
                quarantine = %self.refusals.quarantine().path().display(),
                total_quarantined = self.metrics.snapshot(now).quarantined,
                "InfluxDB refused records; they were moved to the quarantine file and will not be retried (the rest of the batch is stored)"
            );
            let detail = format!(
                "{} of {n} records refused with {}: {}",
                refused.len(),
                first.status,
                first.reason.trim_end()
            );
            self.refusals.alarm_quarantined(appended, &detail).await;
        }
        for b in held {
            reader.ack(b.lane, b.after, b.last()).await?;
        }
        self.metrics.done(n, None);
        Ok(Flushed::Done)
    }
}

#[cfg(test)]
mod tests;
