//! The JSONL sink: how users and tests see what the gateway does. It reads
//! committed events from the spool in order (alerts first), writes a batch,
//! flushes (and syncs a file), and only then acknowledges the batch. A file
//! rotates by size and age between batches (`rotate.rs`).

mod config;
mod encode;
mod rotate;

use std::time::SystemTime;

use tokio::io::{AsyncWriteExt, BufWriter, Stdout};

use crate::sinks::supervisor::SinkEnv;
use crate::sinks::{Sink, SinkContext, SinkError};

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
    #[error("cannot rotate {path}: {source}")]
    Rotate {
        path: String,
        source: std::io::Error,
    },
}

/// Where the lines go. The file is taken out while a blocking task writes it.
enum Out {
    Stdout(BufWriter<Stdout>),
    File(Option<rotate::RotatingFile>),
}

/// An opened JSONL destination.
pub struct JsonlSink {
    name: String,
    target: String,
    out: Out,
}

impl std::fmt::Debug for JsonlSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlSink")
            .field("name", &self.name)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Sink for JsonlSink {
    type Config = JsonlConfig;

    async fn build(name: &str, config: &JsonlConfig, _env: &SinkEnv) -> Result<Self, SinkError> {
        Ok(Self::open(name, config).await?)
    }

    /// Writes spooled events in order until `drain` is cancelled and nothing
    /// is left, acknowledging each batch once it is flushed. Returns how many
    /// events were written.
    async fn run(mut self, cx: SinkContext) -> Result<u64, SinkError> {
        let SinkContext {
            mut reader,
            drain,
            health,
            metrics,
            ..
        } = cx;
        let mut written = 0u64;
        let mut lines = Vec::with_capacity(64 * 1024);
        loop {
            let Some(batch) = reader.next_batch(BATCH).await? else {
                if drain.is_cancelled() {
                    break;
                }
                // An idle file still rotates when it is old enough.
                let deadline = self.rotate_deadline();
                tokio::select! {
                    () = reader.wait_for_data() => {}
                    () = drain.cancelled() => {}
                    () = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                        self.rotate_if_due().await?;
                    }
                }
                continue;
            };
            lines.clear();
            for record in &batch.records {
                if let Err(e) = encode_line(record, &mut lines) {
                    metrics.dropped.inc();
                    // Model types always serialise; if one ever does not, say so loudly.
                    tracing::error!(sink = %self.name, seq = record.seq, error = %e, "event could not be encoded as JSON");
                }
            }
            lines = self.write(lines).await?;
            written += batch.records.len() as u64;
            reader.ack(batch.lane, batch.after, batch.last()).await?;
            health.up();
            self.rotate_if_due().await?;
        }
        tracing::debug!(sink = %self.name, target = %self.target, written, "jsonl sink closed");
        Ok(written)
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
        let out = if config.is_stdout() {
            Out::Stdout(BufWriter::new(tokio::io::stdout()))
        } else {
            let config = config.clone();
            let file = tokio::task::spawn_blocking(move || {
                rotate::RotatingFile::open(&config, SystemTime::now())
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|source| JsonlError::Open {
                path: target.clone(),
                source,
            })?;
            Out::File(Some(file))
        };
        Ok(Self {
            name: name.to_owned(),
            target,
            out,
        })
    }

    /// Writes a batch and makes it durable (flushed; a file also synced);
    /// hands the buffer back for the next batch.
    async fn write(&mut self, bytes: Vec<u8>) -> Result<Vec<u8>, JsonlError> {
        let failed = |source| JsonlError::Write {
            path: self.target.clone(),
            source,
        };
        match &mut self.out {
            Out::Stdout(out) => {
                out.write_all(&bytes).await.map_err(failed)?;
                out.flush().await.map_err(failed)?;
                Ok(bytes)
            }
            Out::File(slot) => {
                let mut file = slot.take().ok_or_else(|| failed(lost()))?;
                let (file, bytes, result) = tokio::task::spawn_blocking(move || {
                    let result = file.write_batch(SystemTime::now(), &bytes);
                    (file, bytes, result)
                })
                .await
                .map_err(|e| failed(std::io::Error::other(e)))?;
                *slot = Some(file);
                result.map_err(failed)?;
                Ok(bytes)
            }
        }
    }

    /// Rotates the file when it is due (size or age), between batches.
    async fn rotate_if_due(&mut self) -> Result<(), JsonlError> {
        let Out::File(slot) = &mut self.out else {
            return Ok(());
        };
        let failed = |source| JsonlError::Rotate {
            path: self.target.clone(),
            source,
        };
        let mut file = slot.take().ok_or_else(|| failed(lost()))?;
        let (file, result) = tokio::task::spawn_blocking(move || {
            let result = file.rotate_if_due(SystemTime::now());
            (file, result)
        })
        .await
        .map_err(|e| failed(std::io::Error::other(e)))?;
        *slot = Some(file);
        if let Some(rotated) = result.map_err(failed)? {
            tracing::info!(sink = %self.name, rotated = %rotated.display(), "jsonl file rotated");
        }
        Ok(())
    }

    /// When the file is old enough to rotate, as a tokio instant.
    fn rotate_deadline(&self) -> Option<tokio::time::Instant> {
        let Out::File(Some(file)) = &self.out else {
            return None;
        };
        let wait = file
            .poll_timeout()?
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Some(tokio::time::Instant::now() + wait)
    }
}

/// A blocking write panicked and took the file with it: the sink fails and
/// its supervisor restarts it from the spool cursor.
fn lost() -> std::io::Error {
    std::io::Error::other("the file was lost in a failed write")
}
