//! Delivering spooled records to an HTTP server that may fail, refuse or
//! ask to wait, shared by the InfluxDB and FHIR sinks and `wardgate
//! bridge`: the retry loop ([`retry`]), splitting a refused batch down to
//! the items at fault ([`split`]), the bounded quarantine file for those
//! ([`quarantine`]) and the delivery figures ([`metrics`]).
//!
//! Invariant: nothing here acknowledges a spool record; it tells the sink
//! what the server stored, refused or left unsettled.

pub mod metrics;
pub mod quarantine;
pub mod refusals;
pub mod retry;
pub mod split;

pub use metrics::{DeliveryMetrics, DeliverySnapshot};
pub use quarantine::{Appended, Overflow, Quarantine, QuarantineEntry};
pub use retry::{
    Delivery, Peer, Verdict, WriteError, retry_after, status_error, tls_roots, verdict,
};
pub use split::{Refusal, Settled};

/// The default bound of a sink's quarantine file: 64 MiB.
pub fn default_quarantine_max_bytes() -> u64 {
    64 * 1024 * 1024
}

/// The checks of the keys every sink that retries and quarantines shares
/// (InfluxDB, FHIR, HL7 v2): `max_backoff` and `quarantine_max_bytes`.
pub fn check_retry_keys(
    issues: &mut Vec<wardgate_model::config::ConfigIssue>,
    max_backoff: std::time::Duration,
    quarantine_max_bytes: u64,
) {
    use std::time::Duration;
    wardgate_model::config::check_duration(
        issues,
        "max_backoff",
        max_backoff,
        Duration::from_millis(100)..=Duration::from_secs(3600),
    );
    wardgate_model::config::check_range(
        issues,
        "quarantine_max_bytes",
        quarantine_max_bytes,
        1024..=1 << 40,
    );
}
