//! Sinks: where committed readings and alerts go. Each sink has its own folder
//! with `config.rs` (serde config), `encode.rs` (pure encoding) and the sending
//! service; a sink never changes or reorders what it is given.

pub mod influxdb;
pub mod jsonl;
pub mod metrics;
pub mod mqtt;
pub mod supervisor;

/// Why a sink stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Jsonl(#[from] jsonl::JsonlError),
    #[error(transparent)]
    Mqtt(#[from] mqtt::MqttSinkError),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
}
