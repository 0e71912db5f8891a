//! The JSONL sink: how users and tests see what the gateway does. It writes
//! each event as it arrives and flushes whenever no further event is waiting,
//! so a reader sees every line promptly and a burst costs one flush.

mod config;
mod encode;

use std::pin::Pin;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use wardgate_model::Event;

pub use config::JsonlConfig;
pub use encode::encode_line;

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
        })
    }

    /// Writes until the channel closes, then flushes (and syncs a file) and
    /// returns how many events were written.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Event>) -> Result<u64, JsonlError> {
        let mut written = 0u64;
        let mut line = Vec::with_capacity(512);
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            while let Some(event) = next {
                line.clear();
                match encode_line(&event, &mut line) {
                    Ok(()) => {
                        self.write(&line).await?;
                        written += 1;
                    }
                    // Model types always serialise; if one ever does not, say so loudly.
                    Err(e) => {
                        tracing::error!(sink = %self.name, error = %e, "event could not be encoded as JSON");
                    }
                }
                next = rx.try_recv().ok();
            }
            self.flush().await?;
        }
        self.flush().await?;
        if let Some(file) = &self.file {
            file.sync_all().await.map_err(|source| JsonlError::Write {
                path: self.target.clone(),
                source,
            })?;
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
