//! A sink's view of the spool: read positions ahead of the persisted cursors,
//! and acknowledgements that move the cursors once they are contiguous.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use wardgate_model::Timestamp;

use super::{Lane, Record, Spool, SpoolError};
use crate::sinks::metrics::SinkMetrics;

/// Records of one lane read in one go: everything after `after` up to the
/// last record's sequence number (gaps left by eviction included).
#[derive(Debug, Clone)]
pub struct Batch {
    pub lane: Lane,
    pub after: u64,
    pub records: Vec<Record>,
}

impl Batch {
    pub fn last(&self) -> u64 {
        self.records.last().map_or(self.after, |r| r.seq)
    }
}

/// Reads a sink's records in order (alerts before telemetry) and turns its
/// peer's acknowledgements, which may arrive out of order, into cursor moves.
#[derive(Debug)]
pub struct SpoolReader {
    spool: Arc<Spool>,
    sink: String,
    /// Last sequence number handed out, per lane.
    position: [u64; 2],
    /// Persisted cursor, per lane.
    cursor: [u64; 2],
    /// Acknowledged ranges not yet contiguous with the cursor: after → last.
    pending: [BTreeMap<u64, u64>; 2],
    updates: watch::Receiver<u64>,
    /// Batches handed out and not acknowledged yet: after → commit times.
    handed: [BTreeMap<u64, Vec<Timestamp>>; 2],
    metrics: SinkMetrics,
}

fn ix(lane: Lane) -> usize {
    match lane {
        Lane::Alert => 0,
        Lane::Telemetry => 1,
    }
}

impl SpoolReader {
    pub fn new(spool: Arc<Spool>, sink: &str) -> Result<Self, SpoolError> {
        let cursor = [
            spool.cursor(sink, Lane::Alert)?,
            spool.cursor(sink, Lane::Telemetry)?,
        ];
        let updates = spool.subscribe();
        Ok(Self {
            spool,
            sink: sink.to_owned(),
            position: cursor,
            cursor,
            pending: [BTreeMap::new(), BTreeMap::new()],
            updates,
            handed: [BTreeMap::new(), BTreeMap::new()],
            metrics: SinkMetrics::default(),
        })
    }

    /// The spool it reads.
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// Counts what is sent, acknowledged (with its delivery latency) and
    /// given back by a rewind into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: SinkMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn sink(&self) -> &str {
        &self.sink
    }

    /// The next records to send, at most `max`: alerts if any are waiting,
    /// else telemetry. `None` when nothing is waiting.
    pub async fn next_batch(&mut self, max: usize) -> Result<Option<Batch>, SpoolError> {
        // Mark what we have seen before reading, so an append that lands after
        // the read wakes `wait_for_data`.
        self.updates.borrow_and_update();
        for lane in Lane::ALL {
            let (after, records) = loop {
                let after = self.position[ix(lane)];
                let spool = Arc::clone(&self.spool);
                let (records, upto) =
                    tokio::task::spawn_blocking(move || spool.scan(lane, after, max))
                        .await
                        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
                if !records.is_empty() || upto == after {
                    break (after, records);
                }
                // Only unreadable records (counted and logged by the spool):
                // nothing to deliver, so the cursor passes them.
                self.position[ix(lane)] = upto;
                // Handed out as nothing: counted as no delivery.
                self.handed[ix(lane)].insert(after, Vec::new());
                self.ack(lane, after, upto).await?;
            };
            if !records.is_empty() {
                let batch = Batch {
                    lane,
                    after,
                    records,
                };
                self.position[ix(lane)] = batch.last();
                self.metrics.sent.inc_by(batch.records.len() as u64);
                self.handed[ix(lane)].insert(
                    after,
                    batch.records.iter().map(|r| r.committed_at).collect(),
                );
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }

    /// Waits until something new was committed (returns at once if something
    /// was committed since the last `next_batch`).
    pub async fn wait_for_data(&mut self) {
        // Err means the spool is gone: nothing will ever arrive; park.
        if self.updates.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The peer confirmed the records in `(after, last]` of `lane`.
    pub async fn ack(&mut self, lane: Lane, after: u64, last: u64) -> Result<(), SpoolError> {
        let i = ix(lane);
        match self.handed[i].remove(&after) {
            Some(committed) => {
                let now = chrono::Utc::now();
                self.metrics.acknowledged.inc_by(committed.len() as u64);
                for t in committed {
                    let waited = (now - t).to_std().unwrap_or_default();
                    self.metrics.latency.observe(waited.as_secs_f64());
                }
            }
            None => {
                self.metrics.acknowledged.inc_by(last.saturating_sub(after));
            }
        }
        let pending = &mut self.pending[i];
        let entry = pending.entry(after).or_insert(last);
        *entry = (*entry).max(last);
        let mut cursor = self.cursor[i];
        loop {
            let ready: Vec<u64> = pending.range(..=cursor).map(|(a, _)| *a).collect();
            if ready.is_empty() {
                break;
            }
            for a in ready {
                if let Some(l) = pending.remove(&a) {
                    cursor = cursor.max(l);
                }
            }
        }
        if cursor > self.cursor[i] {
            self.cursor[i] = cursor;
            let spool = Arc::clone(&self.spool);
            let sink = self.sink.clone();
            tokio::task::spawn_blocking(move || spool.ack(&sink, lane, cursor))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        }
        Ok(())
    }

    /// Forgets everything handed out but not acknowledged: the next batches
    /// start again after the cursors (after a lost connection).
    pub fn rewind(&mut self) {
        for handed in &mut self.handed {
            let again: usize = handed.values().map(Vec::len).sum();
            self.metrics.retried.inc_by(again as u64);
            handed.clear();
        }
        self.position = self.cursor;
        for p in &mut self.pending {
            p.clear();
        }
    }

    /// Whether everything handed out has been acknowledged.
    pub fn is_idle(&self) -> bool {
        self.position == self.cursor
    }
}
