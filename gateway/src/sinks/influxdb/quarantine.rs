//! The quarantine file: what the server refused for good (or the bridge could
//! not parse), kept as JSON lines for a person to inspect and replay, so a bad
//! batch is neither lost nor retried forever.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use wardgate_model::{Event, Timestamp};

/// One quarantined item.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineEntry<'a> {
    pub quarantined_at: Timestamp,
    /// The sink or bridge that quarantined it.
    pub by: &'a str,
    /// The server's HTTP status, when the server refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The server's answer or the parse error.
    pub reason: &'a str,
    /// The MQTT topic it came from (bridge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<&'a str>,
    /// The spooled event (gateway sink).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<&'a Event>,
    /// The raw payload (bridge), lossily decoded as UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<&'a str>,
}

/// An append-only JSONL file.
#[derive(Debug, Clone)]
pub struct Quarantine {
    path: PathBuf,
}

impl Quarantine {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the entries and syncs the file: once this returns they are on
    /// disk and the caller may acknowledge the originals.
    pub async fn append(&self, entries: &[QuarantineEntry<'_>]) -> std::io::Result<()> {
        let mut text = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut text, e)?;
            text.push(b'\n');
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await?;
        }
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(crate::spool::PRIVATE_MODE)
            .open(&self.path)
            .await?;
        f.write_all(&text).await?;
        f.sync_data().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path().join("sub/q.jsonl"));
        let at: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let entry = |payload| QuarantineEntry {
            quarantined_at: at,
            by: "bridge",
            status: None,
            reason: "bad line",
            topic: Some("wardgate/s/w/g/telemetry"),
            event: None,
            payload: Some(payload),
        };
        q.append(&[entry("a b")]).await.unwrap();
        q.append(&[entry("c\nd")]).await.unwrap();
        let text = std::fs::read_to_string(q.path()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"quarantined_at":"2026-11-27T10:00:00Z","by":"bridge","reason":"bad line","topic":"wardgate/s/w/g/telemetry","payload":"a b"}"#,
                "\n",
                r#"{"quarantined_at":"2026-11-27T10:00:00Z","by":"bridge","reason":"bad line","topic":"wardgate/s/w/g/telemetry","payload":"c\nd"}"#,
                "\n"
            )
        );
    }
}
