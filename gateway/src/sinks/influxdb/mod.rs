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
//! itself is wrong: the batch goes to the quarantine file, is counted and
//! logged once, and is acknowledged so it does not block the stream forever.
//!
//! This module never reorders or alters records, and never acknowledges a
//! record that is neither stored by the server nor on disk in the quarantine.

mod config;
mod encode;
mod metrics;
mod quarantine;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::InfluxDbConfig;
pub use encode::{Verdict, body, gzip, retry_after, verdict};
pub use metrics::{DeliveryMetrics, DeliverySnapshot};
pub use quarantine::{Quarantine, QuarantineEntry};
pub use writer::{Delivery, InfluxSetupError, InfluxWriter, WriteError};

use crate::lineproto::Identity;
use crate::sinks::SinkError;
use crate::spool::{Batch, Lane, Spool, SpoolReader};

/// How often the figures are logged while running.
const STATS_INTERVAL: Duration = Duration::from_secs(60);

/// A configured InfluxDB sink, ready to run.
#[derive(Debug)]
pub struct InfluxDbSink {
    name: String,
    config: InfluxDbConfig,
    identity: Identity,
    writer: InfluxWriter,
    quarantine: Quarantine,
    metrics: Arc<DeliveryMetrics>,
}

enum Flushed {
    Done,
    /// Stopping while the server is failing: the batch stays in the spool.
    Stopped,
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
        let quarantine = Quarantine::new(config.quarantine.clone().unwrap_or(default_quarantine));
        Ok(Self {
            name: name.to_owned(),
            config,
            identity,
            writer,
            quarantine,
            metrics: Arc::new(DeliveryMetrics::new()),
        })
    }

    /// The live figures (for `/metrics`).
    pub fn metrics(&self) -> Arc<DeliveryMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Writes until `drain` is cancelled and everything spooled is stored
    /// (or, when the server is failing, at once: the spool keeps the rest).
    /// Returns the number of records acknowledged.
    pub async fn run(
        self,
        mut reader: SpoolReader,
        spool: Arc<Spool>,
        drain: CancellationToken,
    ) -> Result<u64, SinkError> {
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
                match self.flush(&mut reader, &held, &drain).await? {
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

    /// Writes the held batches in one request; acknowledges them in the spool
    /// once stored or quarantined.
    async fn flush(
        &self,
        reader: &mut SpoolReader,
        held: &[Batch],
        drain: &CancellationToken,
    ) -> Result<Flushed, SinkError> {
        let records: Vec<_> = held
            .iter()
            .flat_map(|b| b.records.iter().cloned())
            .collect();
        let n = records.len() as u64;
        let text = body(&records, &self.identity);
        match self
            .writer
            .write_until_done(&text, n, &self.metrics, drain)
            .await
        {
            Delivery::Stored => self.metrics.add_acknowledged(n),
            Delivery::Cancelled => return Ok(Flushed::Stopped),
            Delivery::Rejected { status, body } => {
                let now = chrono::Utc::now();
                let entries: Vec<QuarantineEntry<'_>> = records
                    .iter()
                    .map(|r| QuarantineEntry {
                        quarantined_at: now,
                        by: &self.name,
                        status: Some(status),
                        reason: &body,
                        topic: None,
                        event: Some(&r.event),
                        payload: None,
                    })
                    .collect();
                if !self.keep_in_quarantine(&entries, drain).await {
                    return Ok(Flushed::Stopped);
                }
                self.metrics.add_quarantined(n);
                tracing::error!(
                    sink = %self.name,
                    status,
                    response = %body,
                    records = n,
                    quarantine = %self.quarantine.path().display(),
                    total_quarantined = self.metrics.snapshot(now).quarantined,
                    "InfluxDB refused a batch; it was moved to the quarantine file and will not be retried"
                );
            }
        }
        for b in held {
            reader.ack(b.lane, b.after, b.last()).await?;
        }
        self.metrics.done(n, None);
        Ok(Flushed::Done)
    }

    /// Appends to the quarantine file, retrying while the disk refuses;
    /// false when stopping first (nothing is acknowledged then).
    async fn keep_in_quarantine(
        &self,
        entries: &[QuarantineEntry<'_>],
        drain: &CancellationToken,
    ) -> bool {
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            match self.quarantine.append(entries).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::error!(sink = %self.name, path = %self.quarantine.path().display(), error = %e, "cannot write the quarantine file; retrying");
                    if drain.is_cancelled() {
                        return false;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(30))) => {}
                        () = drain.cancelled() => return false,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
