//! Sinks: where committed readings and alerts go. Each sink has its own folder
//! with `config.rs` (serde config, validated by [`Validate`]), `encode.rs`
//! (pure encoding) and the sending service, and implements [`Sink`]: built
//! from its config section, run with a [`SinkContext`]. A sink never changes
//! or reorders what it is given.
//!
//! Invariant: sink-specific errors stay here. What leaves this module is a
//! [`SinkError`] (a sink that stopped) or a
//! [`supervisor::SinkStartError`] (one that could not start), both naming
//! the sink.
//!
//! [`Validate`]: wardgate_model::config::Validate

use std::future::Future;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::commands::AlertCommand;
use crate::spool::SpoolReader;
use metrics::SinkMetrics;

pub mod charting;
pub mod delivery;
pub mod fhir;
pub mod hl7v2;
pub mod influxdb;
pub mod jsonl;
pub mod metrics;
pub mod mqtt;
pub mod supervisor;

use supervisor::{SinkEnv, SinkHealth};

/// Why a sink stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Jsonl(#[from] jsonl::JsonlError),
    #[error(transparent)]
    Mqtt(#[from] mqtt::MqttSinkError),
    #[error(transparent)]
    InfluxDb(#[from] influxdb::InfluxSetupError),
    #[error(transparent)]
    Fhir(#[from] fhir::FhirSetupError),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
}

/// A sink: built from its `[[sinks]]` section, then run until the
/// pipeline drains. The supervisor builds and runs every sink through this
/// interface and nothing else.
pub trait Sink: Sized + Send + 'static {
    /// Its section of the configuration.
    type Config;

    /// Builds the sink, opening what must fail at start-up rather than at
    /// the first record (a file, a token).
    fn build(
        name: &str,
        config: &Self::Config,
        env: &SinkEnv,
    ) -> impl Future<Output = Result<Self, SinkError>> + Send;

    /// Delivers spooled records until `cx.drain` is cancelled and its peer
    /// confirmed what it can (the rest stays in the spool). Returns how many
    /// records its peer confirmed.
    fn run(self, cx: SinkContext) -> impl Future<Output = Result<u64, SinkError>> + Send;
}

/// What a running sink is given.
#[derive(Debug)]
pub struct SinkContext {
    /// Its records in order, alerts first, and its cursor.
    pub reader: SpoolReader,
    /// Cancelled when the pipeline has committed all it will: deliver what
    /// the peer confirms within the grace period, then return.
    pub drain: CancellationToken,
    /// Nurses' commands arriving through the sink (MQTT acknowledgements).
    pub commands: mpsc::Sender<AlertCommand>,
    /// Where the sink says how its peer is doing.
    pub health: PeerHealth,
    /// Its counters for `/metrics` (the reader counts sent, acknowledged
    /// and retried records; the sink what it retries, quarantines or drops).
    pub metrics: SinkMetrics,
}

/// A sink's report on its peer, read by `/readyz` beside the supervisor's
/// and the monitor's findings.
#[derive(Debug, Clone)]
pub struct PeerHealth {
    name: String,
    health: SinkHealth,
}

impl PeerHealth {
    pub(crate) fn new(name: &str, health: SinkHealth) -> Self {
        Self {
            name: name.to_owned(),
            health,
        }
    }

    /// The peer confirmed a delivery or accepted the connection.
    pub fn up(&self) {
        self.health.set_peer(&self.name, None);
    }

    /// The peer cannot be reached or refuses; records wait in the spool.
    pub fn down(&self, why: impl std::fmt::Display) {
        self.health.set_peer(&self.name, Some(why.to_string()));
    }
}

/// A context for running one sink in a unit test: its reader, `drain`, a
/// command channel nobody reads and a health report nobody checks.
#[cfg(test)]
pub(crate) fn test_context(reader: SpoolReader, drain: CancellationToken) -> SinkContext {
    let name = reader.sink().to_owned();
    SinkContext {
        reader,
        drain,
        commands: mpsc::channel(1).0,
        health: PeerHealth::new(&name, SinkHealth::default()),
        metrics: SinkMetrics::default(),
    }
}
