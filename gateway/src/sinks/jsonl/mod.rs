//! The JSONL sink: how users and tests see what the gateway does. It reads
//! committed events from the spool in order (alerts first), writes a batch,
//! flushes (and syncs a file), and only then acknowledges the batch.

mod config;
mod encode;

use std::pin::Pin;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio_util::sync::CancellationToken;

use crate::sinks::SinkError;
use crate::sinks::metrics::SinkMetrics;
use crate::spool::SpoolReader;

pub use config::JsonlConfig;
pub use encode::encode_line;

/// Events written per batch (one flush and one acknowledgement each).
const BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    #[error("cannot open {path} for appending: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// An opened JSONL destination.
pub struct JsonlSink {
    name: String,
    target: String,
    out: BufWriter<Pin<Box<dyn AsyncWrite + Send>>>,
    file: Option<tokio::fs::File>,
    metrics: SinkMetrics,
}

impl std::fmt::Debug for JsonlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlSink")
            .field("name", &self.name)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl JsonlSink {
    /// Opens the destination now, so a bad path fails at start-up rather than
    /// at the first event.
    pub async fn open(name: &str, config: &JsonlConfig) -> Result<Self, JsonlError> {
        let target = if config.is_stdout() {
            "stdout".to_owned()
        } else {
            config.path.display().to_string()
        };
        let (out, file): (Pin<Box<dyn AsyncWrite + Send>>, _) = if config.is_stdout() {
            (Box::pin(tokio::io::stdout()), None)
        } else {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(crate::spool::PRIVATE_MODE)
                .open(&config.path)
                .await
                .map_err(|source| JsonlError::Open {
                    path: target.clone(),
                    source,
                })?;
            let sync_handle = file.try_clone().await.map_err(|source| JsonlError::Open {
                path: target.clone(),
                source,
            })?;
            (Box::pin(file), Some(sync_handle))
        };
        Ok(Self {
            name: name.to_owned(),
            target,
            out: BufWriter::new(out),
            file,
            metrics: SinkMetrics::default(),
        })
    }

    /// Counts records that cannot be encoded (dropped) into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: SinkMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Writes spooled events in order until `drain` is cancelled and nothing
    /// is left, acknowledging each batch once it is flushed. Returns how many
    /// events were written.
    pub async fn run(
        mut self,
        mut reader: SpoolReader,
        drain: CancellationToken,
    ) -> Result<u64, SinkError> {
        let mut written = 0u64;
        let mut lines = Vec::with_capacity(64 * 1024);
        loop {
            let Some(batch) = reader.next_batch(BATCH).await? else {
                if drain.is_cancelled() {
                    break;
                }
                tokio::select! {
                    () = reader.wait_for_data() => {}
                    () = drain.cancelled() => {}
                }
                continue;
            };
            lines.clear();
            for record in &batch.records {
                if let Err(e) = encode_line(&record.event, &mut lines) {
                    self.metrics.dropped.inc();
                    // Model types always serialise; if one ever does not, say so loudly.
                    tracing::error!(sink = %self.name, seq = record.seq, error = %e, "event could not be encoded as JSON");
                }
            }
            self.write(&lines).await?;
            self.flush().await?;
            if let Some(file) = &self.file {
                file.sync_data().await.map_err(|source| JsonlError::Write {
                    path: self.target.clone(),
                    source,
                })?;
            }
            written += batch.records.len() as u64;
            reader.ack(batch.lane, batch.after, batch.last()).await?;
        }
        tracing::debug!(sink = %self.name, target = %self.target, written, "jsonl sink closed");
        Ok(written)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), JsonlError> {
        self.out
            .write_all(bytes)
            .await
            .map_err(|source| JsonlError::Write {
                path: self.target.clone(),
                source,
            })
    }

    async fn flush(&mut self) -> Result<(), JsonlError> {
        self.out.flush().await.map_err(|source| JsonlError::Write {
            path: self.target.clone(),
            source,
        })
    }
}
