//! Every sink's delivery figures, the same for each (docs/metrics.md):
//! records sent, acknowledged by the peer, retried, quarantined, dropped,
//! and the delivery latency from spool commit to the peer's confirmation.
//!
//! Most of it is counted where every sink passes: the [`SpoolReader`]
//! counts what it hands out (`sent`), what the sink acknowledges
//! (`acknowledged`, with its latency) and what a rewind gives back
//! (`retried`). A sink counts only what is its own: retried writes,
//! quarantined and dropped records.
//!
//! [`SpoolReader`]: crate::spool::SpoolReader

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use wardgate_drivers::metrics::LabelValue;

/// `{sink}`: the sink's configured name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SinkLabels {
    sink: LabelValue,
}

/// Delivery latency buckets: 1 ms to about 9 minutes (an outage's backlog
/// lands in the last buckets).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

/// The sinks' families, registered once.
#[derive(Debug, Clone)]
pub(crate) struct SinkMetricFamilies {
    sent: Family<SinkLabels, Counter>,
    acknowledged: Family<SinkLabels, Counter>,
    retried: Family<SinkLabels, Counter>,
    quarantined: Family<SinkLabels, Counter>,
    dropped: Family<SinkLabels, Counter>,
    latency: Family<SinkLabels, Histogram>,
}

impl Default for SinkMetricFamilies {
    fn default() -> Self {
        Self {
            sent: Family::default(),
            acknowledged: Family::default(),
            retried: Family::default(),
            quarantined: Family::default(),
            dropped: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl SinkMetricFamilies {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let f = Self::default();
        for (name, help, family) in [
            (
                "sink_sent_records",
                "Spooled records handed to the sink for its peer, each attempt counted (a record sent again after a lost session counts again)",
                &f.sent,
            ),
            (
                "sink_acknowledged_records",
                "Records the peer confirmed (flushed and synced file, PUBACK, HTTP 2xx); the spool cursor moves on these only",
                &f.acknowledged,
            ),
            (
                "sink_retried_records",
                "Records sent again: a failed write retried, or the records in flight when the broker lost the session",
                &f.retried,
            ),
            (
                "sink_quarantined_records",
                "Records the peer refused for good, kept in the quarantine file instead (InfluxDB)",
                &f.quarantined,
            ),
            (
                "sink_dropped_records",
                "Records the sink could not deliver nor keep (quarantine full, not encodable) and acknowledged to go on",
                &f.dropped,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register_with_unit(
            "sink_delivery_latency",
            "From a record's spool commit to its peer's confirmation",
            Unit::Seconds,
            f.latency.clone(),
        );
        f
    }

    pub(crate) fn sink(&self, name: &str) -> SinkMetrics {
        let labels = SinkLabels {
            sink: LabelValue::from(name),
        };
        SinkMetrics {
            sent: self.sent.get_or_create_owned(&labels),
            acknowledged: self.acknowledged.get_or_create_owned(&labels),
            retried: self.retried.get_or_create_owned(&labels),
            quarantined: self.quarantined.get_or_create_owned(&labels),
            dropped: self.dropped.get_or_create_owned(&labels),
            latency: self.latency.get_or_create_owned(&labels),
        }
    }
}

/// One sink's counters; cheap to clone. The default counts into nothing
/// registered (sinks run on their own in tests).
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    pub sent: Counter,
    pub acknowledged: Counter,
    pub retried: Counter,
    pub quarantined: Counter,
    pub dropped: Counter,
    /// Seconds from spool commit to the peer's confirmation, per record.
    pub latency: Histogram,
}

impl Default for SinkMetrics {
    fn default() -> Self {
        SinkMetricFamilies::default().sink("")
    }
}
