//! The quarantine file: what the server refused for good (or the bridge
//! refused to write), kept as JSON lines for a person to inspect and replay,
//! so a bad line is neither lost nor retried forever — up to a bound, past
//! which it is dropped and counted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use wardgate_model::{Event, Timestamp};

use super::metrics::DeliveryMetrics;

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

/// An append-only JSONL file of bounded size. Past `max_bytes` entries are
/// dropped and counted, never written: a flood of refused data (or of lines
/// a bridge refused) must not fill the disk the spool lives on. Once an entry
/// did not fit, the file counts as full and every entry is dropped until the
/// operator has emptied or moved it below 90 % of its bound (checked
/// at each append and by [`Quarantine::recheck`]): one overflow episode, not
/// one per entry that happens to fit in the last bytes.
#[derive(Debug)]
pub struct Quarantine {
    path: PathBuf,
    max_bytes: u64,
    /// Whether the last append had to drop entries.
    full: AtomicBool,
}

/// The share of its bound a full quarantine file must be below again to
/// take entries.
const ROOM_AGAIN: f64 = 0.9;

/// What one append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// Entries written (and synced).
    pub kept: u64,
    /// Entries dropped because the file is at its bound.
    pub dropped: u64,
    /// Set when this append started or ended an overflow episode.
    pub overflow: Option<Overflow>,
}

/// An overflow episode starting or ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The first entry dropped since the file had room.
    Started,
    /// The first entry kept after entries were dropped.
    Ended,
}

impl Quarantine {
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        Self {
            path,
            max_bytes,
            full: AtomicBool::new(false),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn size(&self) -> std::io::Result<u64> {
        match tokio::fs::metadata(&self.path).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Whether a full file has been emptied (or moved away) enough to take
    /// entries again.
    fn has_room_again(&self, size: u64) -> bool {
        (size as f64) < self.max_bytes as f64 * ROOM_AGAIN
    }

    /// Appends what fits under the bound, in order (the first entry that
    /// does not fit and every one after it are dropped; everything while the
    /// file is full), and syncs the file: once this returns the kept entries
    /// are on disk, and the caller may acknowledge the originals of kept and
    /// dropped ones alike.
    pub async fn append(&self, entries: &[QuarantineEntry<'_>]) -> std::io::Result<Appended> {
        if entries.is_empty() {
            return Ok(Appended::default());
        }
        let mut size = self.size().await?;
        let was_full = self.full.load(Ordering::Relaxed);
        if was_full && !self.has_room_again(size) {
            return Ok(Appended {
                kept: 0,
                dropped: entries.len() as u64,
                overflow: None,
            });
        }
        let mut text = Vec::new();
        let mut kept = 0u64;
        for e in entries {
            let start = text.len();
            serde_json::to_writer(&mut text, e)?;
            text.push(b'\n');
            let len = (text.len() - start) as u64;
            if size + len > self.max_bytes {
                text.truncate(start);
                break;
            }
            size += len;
            kept += 1;
        }
        if kept > 0 {
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
            f.sync_data().await?;
        }
        let dropped = entries.len() as u64 - kept;
        self.full.store(dropped > 0, Ordering::Relaxed);
        let overflow = match (was_full, dropped > 0) {
            (false, true) => Some(Overflow::Started),
            (true, false) => Some(Overflow::Ended),
            _ => None,
        };
        Ok(Appended {
            kept,
            dropped,
            overflow,
        })
    }

    /// Ends the overflow episode when the file has room again, without
    /// waiting for the next entry (call it now and then, e.g. with the
    /// periodic figures); logs it as [`Self::keep`] does.
    pub async fn recheck(&self, metrics: &DeliveryMetrics, by: &str) -> Option<Overflow> {
        if !self.full.load(Ordering::Relaxed) {
            return None;
        }
        let size = self.size().await.ok()?;
        if !self.has_room_again(size) {
            return None;
        }
        self.full.store(false, Ordering::Relaxed);
        self.log(Overflow::Ended, 0, metrics, by);
        Some(Overflow::Ended)
    }

    /// [`Self::append`], then counts kept and dropped entries in `metrics`
    /// and logs an overflow episode once as it starts (an error) and once as
    /// it ends. `by` names the sink or bridge in the log.
    pub async fn keep(
        &self,
        entries: &[QuarantineEntry<'_>],
        metrics: &DeliveryMetrics,
        by: &str,
    ) -> std::io::Result<Appended> {
        let a = self.append(entries).await?;
        metrics.add_quarantined(a.kept);
        metrics.add_quarantine_dropped(a.dropped);
        if let Some(o) = a.overflow {
            self.log(o, a.dropped, metrics, by);
        }
        Ok(a)
    }

    fn log(&self, overflow: Overflow, dropped: u64, metrics: &DeliveryMetrics, by: &str) {
        match overflow {
            Overflow::Started => tracing::error!(
                sink = %by,
                path = %self.path.display(),
                max_bytes = self.max_bytes,
                dropped,
                "the quarantine file is full: refused data is now dropped (and counted as quarantine_dropped) until the file is emptied or moved away"
            ),
            Overflow::Ended => tracing::info!(
                sink = %by,
                path = %self.path.display(),
                total_dropped = metrics.snapshot(chrono::Utc::now()).quarantine_dropped,
                "the quarantine file has room again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn appends_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path().join("sub/q.jsonl"), 1 << 20);
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
        let mode = std::fs::metadata(q.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "patient data: private to the gateway's user");
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

    #[tokio::test]
    async fn past_the_bound_entries_are_dropped_counted_and_logged_once() {
        let dir = tempfile::tempdir().unwrap();
        let at: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let entry = QuarantineEntry {
            quarantined_at: at,
            by: "b",
            status: Some(400),
            reason: "r",
            topic: None,
            event: None,
            payload: Some("x"),
        };
        // {"quarantined_at":"2026-11-27T10:00:00Z","by":"b","status":400,"reason":"r","payload":"x"}\n
        let len = 91;
        let q = Quarantine::new(dir.path().join("q.jsonl"), 2 * len + 10);
        let m = DeliveryMetrics::new();
        let a = q.keep(std::slice::from_ref(&entry), &m, "b").await.unwrap();
        assert_eq!(std::fs::metadata(q.path()).unwrap().len(), len);
        assert_eq!((a.kept, a.dropped, a.overflow), (1, 0, None));
        // Room for one more of three: the first is kept, the rest dropped.
        let a = q
            .keep(&[entry.clone(), entry.clone(), entry.clone()], &m, "b")
            .await
            .unwrap();
        assert_eq!(
            (a.kept, a.dropped, a.overflow),
            (1, 2, Some(Overflow::Started))
        );
        // Still full: no new episode.
        let a = q.keep(std::slice::from_ref(&entry), &m, "b").await.unwrap();
        assert_eq!((a.kept, a.dropped, a.overflow), (0, 1, None));
        assert_eq!(std::fs::metadata(q.path()).unwrap().len(), 2 * len);
        let s = m.snapshot(chrono::Utc::now());
        assert_eq!((s.quarantined, s.quarantine_dropped), (2, 3));
        // Emptied to just below its bound: still full (no flapping in and out).
        std::fs::write(q.path(), "x".repeat((2 * len - 5) as usize)).unwrap();
        let a = q.keep(std::slice::from_ref(&entry), &m, "b").await.unwrap();
        assert_eq!((a.kept, a.dropped, a.overflow), (0, 1, None));
        assert_eq!(q.recheck(&m, "b").await, None);
        // The operator moves the file away: the next entry ends the episode.
        std::fs::rename(q.path(), dir.path().join("q.jsonl.1")).unwrap();
        let a = q.keep(std::slice::from_ref(&entry), &m, "b").await.unwrap();
        assert_eq!(
            (a.kept, a.dropped, a.overflow),
            (1, 0, Some(Overflow::Ended))
        );
        // Full again; emptied; the periodic check ends the episode by itself.
        let a = q
            .keep(&[entry.clone(), entry.clone(), entry], &m, "b")
            .await
            .unwrap();
        assert_eq!(
            (a.kept, a.dropped, a.overflow),
            (1, 2, Some(Overflow::Started))
        );
        std::fs::write(q.path(), "").unwrap();
        assert_eq!(q.recheck(&m, "b").await, Some(Overflow::Ended));
        assert_eq!(q.recheck(&m, "b").await, None);
    }
}
