//! Delivery self-metrics of one sink or bridge: counted in the hot path with
//! atomics, logged as one line periodically and at shutdown, and readable at
//! any time through [`DeliveryMetrics::snapshot`].

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use wardgate_model::Timestamp;

use crate::sinks::metrics::SinkMetrics;

/// Live counters; share it in an `Arc`.
#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    queued: AtomicU64,
    sent: AtomicU64,
    acknowledged: AtomicU64,
    retried: AtomicU64,
    quarantined: AtomicU64,
    quarantine_dropped: AtomicU64,
    refused: AtomicU64,
    spool_bytes: AtomicU64,
    spool_evicted: AtomicU64,
    /// Time (ns since the epoch) of the oldest point taken but not yet
    /// stored; `i64::MIN` = nothing outstanding.
    oldest_unsent_ns: AtomicI64,
    /// The sink's `/metrics` counters, when it runs in a gateway.
    exported: Option<SinkMetrics>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliverySnapshot {
    /// Points taken from the spool (or MQTT) and not yet stored or quarantined.
    pub queued: u64,
    /// Points sent in write requests, counting every attempt.
    pub sent: u64,
    /// Points the server confirmed with a 2xx.
    pub acknowledged: u64,
    /// Write attempts that failed and were retried.
    pub retried: u64,
    /// Points written to the quarantine file instead of the server.
    pub quarantined: u64,
    /// Points that should have gone to the quarantine file but were dropped
    /// because it is at its bound (`quarantine_max_bytes`).
    pub quarantine_dropped: u64,
    /// Lines the bridge refused to write itself (not line protocol, no
    /// timestamp, tags not those of their topic, not in the schema); 0 for
    /// the sink.
    pub refused: u64,
    /// Telemetry bytes in the spool (gateway only).
    pub spool_bytes: u64,
    /// Telemetry evicted from the spool since it was created (gateway only).
    pub spool_evicted: u64,
    /// Age of the oldest point not yet stored, by its own timestamp.
    pub oldest_unsent_age: Option<Duration>,
}

impl DeliveryMetrics {
    pub fn new() -> Self {
        Self {
            oldest_unsent_ns: AtomicI64::new(i64::MIN),
            ..Self::default()
        }
    }

    /// Also counts retries, quarantined and dropped records into `m`
    /// (`/metrics`).
    #[must_use]
    pub fn exporting(mut self, m: SinkMetrics) -> Self {
        self.exported = Some(m);
        self
    }

    pub fn add_queued(&self, n: u64, oldest: Timestamp) {
        self.queued.fetch_add(n, Relaxed);
        let ns = oldest.timestamp_nanos_opt().unwrap_or(i64::MAX);
        let _ = self
            .oldest_unsent_ns
            .fetch_update(Relaxed, Relaxed, |cur| (cur == i64::MIN).then_some(ns));
    }

    /// `n` points left the queue (stored or quarantined); `next_oldest` is the
    /// oldest still outstanding, if any.
    pub fn done(&self, n: u64, next_oldest: Option<Timestamp>) {
        let _ = self
            .queued
            .fetch_update(Relaxed, Relaxed, |q| Some(q.saturating_sub(n)));
        self.oldest_unsent_ns.store(
            next_oldest.map_or(i64::MIN, |t| t.timestamp_nanos_opt().unwrap_or(i64::MAX)),
            Relaxed,
        );
    }

    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Relaxed);
    }
    pub fn add_acknowledged(&self, n: u64) {
        self.acknowledged.fetch_add(n, Relaxed);
    }
    /// A write of `points` failed and is retried.
    pub fn add_retried(&self, points: u64) {
        self.retried.fetch_add(1, Relaxed);
        if let Some(m) = &self.exported {
            m.retried.inc_by(points);
        }
    }
    pub fn add_quarantined(&self, n: u64) {
        self.quarantined.fetch_add(n, Relaxed);
        if let Some(m) = &self.exported {
            m.quarantined.inc_by(n);
        }
    }
    pub fn add_quarantine_dropped(&self, n: u64) {
        self.quarantine_dropped.fetch_add(n, Relaxed);
        if let Some(m) = &self.exported {
            m.dropped.inc_by(n);
        }
    }
    pub fn add_refused(&self, n: u64) {
        self.refused.fetch_add(n, Relaxed);
    }
    pub fn set_spool(&self, bytes: u64, evicted: u64) {
        self.spool_bytes.store(bytes, Relaxed);
        self.spool_evicted.store(evicted, Relaxed);
    }

    pub fn snapshot(&self, now: Timestamp) -> DeliverySnapshot {
        let oldest = self.oldest_unsent_ns.load(Relaxed);
        let now_ns = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
        DeliverySnapshot {
            queued: self.queued.load(Relaxed),
            sent: self.sent.load(Relaxed),
            acknowledged: self.acknowledged.load(Relaxed),
            retried: self.retried.load(Relaxed),
            quarantined: self.quarantined.load(Relaxed),
            quarantine_dropped: self.quarantine_dropped.load(Relaxed),
            refused: self.refused.load(Relaxed),
            spool_bytes: self.spool_bytes.load(Relaxed),
            spool_evicted: self.spool_evicted.load(Relaxed),
            oldest_unsent_age: (oldest != i64::MIN)
                .then(|| Duration::from_nanos(now_ns.saturating_sub(oldest).max(0) as u64)),
        }
    }

    /// One info line with every figure.
    pub fn log(&self, name: &str, now: Timestamp, what: &'static str) {
        let s = self.snapshot(now);
        tracing::info!(
            sink = %name,
            queued = s.queued,
            sent = s.sent,
            acknowledged = s.acknowledged,
            retried = s.retried,
            quarantined = s.quarantined,
            quarantine_dropped = s.quarantine_dropped,
            refused = s.refused,
            spool_bytes = s.spool_bytes,
            spool_evicted = s.spool_evicted,
            oldest_unsent_age_s = s.oldest_unsent_age.map_or(0.0, |d| d.as_secs_f64()),
            "{what}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn oldest_unsent_age_follows_the_queue() {
        let m = DeliveryMetrics::new();
        let now = t("2026-11-27T10:00:10Z");
        assert_eq!(m.snapshot(now).oldest_unsent_age, None);
        m.add_queued(3, t("2026-11-27T10:00:00Z"));
        // A later batch does not make the oldest younger.
        m.add_queued(2, t("2026-11-27T10:00:05Z"));
        let s = m.snapshot(now);
        assert_eq!(
            (s.queued, s.oldest_unsent_age),
            (5, Some(Duration::from_secs(10)))
        );
        m.done(3, Some(t("2026-11-27T10:00:05Z")));
        let s = m.snapshot(now);
        assert_eq!(
            (s.queued, s.oldest_unsent_age),
            (2, Some(Duration::from_secs(5)))
        );
        m.done(2, None);
        assert_eq!(m.snapshot(now).oldest_unsent_age, None);
        assert_eq!(m.snapshot(now).queued, 0);
    }
}
