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
