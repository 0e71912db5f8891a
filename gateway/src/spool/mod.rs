//! The spool: the durable queue between the pipeline and the sinks, and the
//! single source of truth for delivery.
//!
//! # Invariants
//!
//! 1. An event is *accepted* once [`Spool::append`] has returned: its write
//!    transaction committed with `Durability::Immediate` (fsync). Appends are
//!    group commits: one transaction (one fsync) per batch.
//! 2. Two lanes, each with its own sequence numbers: [`Lane::Alert`] for alert
//!    transitions and [`Lane::Telemetry`] for everything else. Sequence numbers
//!    start at 1, increase by one per record and are never reused, across
//!    restarts and deletions.
//! 3. Each sink has a cursor per lane: the highest sequence number up to which
//!    its peer acknowledged *everything*. A cursor only moves forward and only
//!    through [`Spool::ack`], which a sink calls after its peer confirmed (a
//!    PUBACK, an HTTP 2xx, a flushed file). A cursor move is durable with the
//!    next append or [`Spool::sync`]; after a crash a cursor may be behind,
//!    never ahead (records are delivered again, never skipped).
//! 4. A record is deleted once every configured sink's cursor has passed it.
//! 5. Open alerts: the latest snapshot of every alert not yet cleared is kept
//!    in a table of its own, updated in the same transaction as the alert
//!    lane ([`Spool::open_alerts`]), so a restart (even after SIGKILL) can
//!    restore exactly the alerts that were open when the last commit ended.
//! 6. Bounds: when the telemetry lane holds more than `max_bytes`, or its
//!    oldest record is older than `max_age`, telemetry is evicted oldest first
//!    and counted. Alerts are never evicted and do not count against the bound.
//!    A sink whose cursor lies inside the evicted range resumes after it.
//!
//! # Record format
//!
//! Key: the sequence number (`u64`). Value: a versioned record ([`record`]):
//! the append time as little-endian `i64` nanoseconds since the Unix epoch,
//! a format version, then (v2) the kind, the event's time and a compact
//! body. Records written by older gateways (v1: the append time, then the
//! event as JSON) are read as they are; nothing is rewritten.
//!
//! # Recovery
//!
//! A file that redb reports corrupt, fails on with a panic, or finds torn is
//! moved aside as `<file>.corrupt-<UTC time>` and a fresh spool starts
//! ([`Spool::open_recovering`]); the caller announces it (the `storage_reset`
//! alert). Any other error opening the file leaves it alone.
//!
//! A write that fails while running (a full disk) makes redb refuse every
//! later write until the file is reopened: the pipeline reopens it
//! ([`Spool::reopen`]) before each retry, and while appends fail
//! [`Spool::failing`] says why (`/readyz`).
//!
//! redb commits atomically: after a crash the spool holds exactly the
//! committed transactions. On open, sequence numbers continue from the stored
//! counters, cursors are read back, a sink seen for the first time starts at
//! the oldest retained record, and cursors of sinks no longer configured are
//! removed (they would otherwise pin records forever). A record whose value
//! cannot be decoded (damaged, or of a version this gateway does not know) is
//! a typed error ([`RecordError`]): it is counted ([`SpoolStats`]), logged
//! once per kind of failure, and left out of what sinks are handed — never a
//! panic, never a silent skip.

mod lanes;
mod reader;
pub mod record;
mod repair;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::watch;
use wardgate_model::{Event, Timestamp};

pub use lanes::Lane;
pub use reader::{Batch, SpoolReader};
pub use record::{Record, RecordError};
pub use repair::{FAILED_ALARM, RESET_ALARM, SetAside};

const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
const TELEMETRY: TableDefinition<u64, &[u8]> = TableDefinition::new("telemetry");
/// (sink name, lane) → cursor.
const CURSORS: TableDefinition<(&str, u8), u64> = TableDefinition::new("cursors");
/// Counters: next sequence numbers, telemetry bytes, evictions.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Alert id → the latest snapshot (JSON) of each alert not yet cleared.
const OPEN_ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("open_alerts");
/// A silence's subject, target and start → its record (JSON), while in force.
const OPEN_SILENCES: TableDefinition<&str, &[u8]> = TableDefinition::new("open_silences");

/// The key of a silence in [`OPEN_SILENCES`].
fn silence_key(s: &wardgate_model::Silence) -> String {
    format!(
        "{}|{:?}|{}",
        s.subject,
        s.target,
        s.from.timestamp_nanos_opt().unwrap_or_default()
    )
}

const NEXT_ALERT: &str = "next_alert";
const NEXT_TELEMETRY: &str = "next_telemetry";
const TELEMETRY_BYTES: &str = "telemetry_bytes";
const EVICTED: &str = "evicted";

/// Limits of the spool.
#[derive(Debug, Clone, Copy)]
pub struct SpoolLimits {
    /// Telemetry bytes kept at most (alerts do not count).
    pub max_bytes: u64,
    /// Telemetry older than this is evicted.
    pub max_age: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool database: {0}")]
    Db(#[from] redb::Error),
    #[error("event could not be encoded: {0}")]
    Encode(#[from] RecordError),
    #[error("unknown sink `{0}`")]
    UnknownSink(String),
    #[error("the spool {} is closed: reopening it failed", .0.display())]
    Closed(PathBuf),
    #[error("the spool is unreadable ({reason}) and cannot be moved aside to {aside}: {source}")]
    SetAside {
        aside: PathBuf,
        reason: String,
        source: std::io::Error,
    },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for SpoolError {
            fn from(e: $t) -> Self {
                SpoolError::Db(e.into())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Records a sink's peer has not confirmed yet in one lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkBacklog {
    pub sink: String,
    pub lane: Lane,
    pub records: u64,
    /// When the oldest of them was appended.
    pub since: Option<Timestamp>,
}

/// Figures for logs and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub alerts: u64,
    pub telemetry: u64,
    pub telemetry_bytes: u64,
    pub evicted_total: u64,
    /// Records that could not be read back (damaged, or of an unknown
    /// version), all of them; `unknown_version_records` of them newer than
    /// this gateway.
    pub corrupt_records: u64,
    pub unknown_version_records: u64,
}

/// Records that could not be read back, by class, and the classes logged
/// already (each is logged once; the counts go on).
#[derive(Debug, Default)]
struct Unreadable {
    total: u64,
    unknown_version: u64,
    logged: std::collections::BTreeSet<&'static str>,
}

/// What one append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    /// Highest sequence number per lane after the append (0 = none yet).
    pub last_alert: u64,
    pub last_telemetry: u64,
    /// Telemetry records evicted by this append to stay within the limits.
    pub evicted: u64,
}

/// The durable queue. All methods are synchronous (they fsync); async callers
/// run them on the blocking pool.
#[derive(Debug)]
pub struct Spool {
    /// `None` only between a failed [`Spool::reopen`] and the next one.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    /// Why the last append failed, while appends fail (`/readyz` says so).
    failing: Mutex<Option<String>>,
    sinks: Vec<String>,
    limits: SpoolLimits,
    /// Bumped after every commit so waiting sinks wake up.
    appended: watch::Sender<u64>,
    unreadable: Mutex<Unreadable>,
}

/// A read lock on the spool's open database.
struct Db<'a>(RwLockReadGuard<'a, Option<Database>>);

impl std::ops::Deref for Db<'_> {
    type Target = Database;

    fn deref(&self) -> &Database {
        match self.0.as_ref() {
            Some(db) => db,
            None => unreachable!("Spool::db checks that the database is open"),
        }
    }
}

/// Files holding patient data (the spool, JSONL and quarantine files) are
/// created readable and writable by the gateway's user alone.
pub const PRIVATE_MODE: u32 = 0o600;

impl Spool {
    /// Opens (or creates) the spool file for these sinks. A new file is
    /// created private ([`PRIVATE_MODE`]); an existing one is made private.
    pub fn open(path: &Path, limits: SpoolLimits, sinks: &[String]) -> Result<Spool, SpoolError> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(PRIVATE_MODE)
            .open(path)
            .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(PRIVATE_MODE)))
            .map_err(|e| SpoolError::Db(redb::Error::Io(e)))?;
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        {
            tx.open_table(ALERTS)?;
            tx.open_table(TELEMETRY)?;
            tx.open_table(OPEN_ALERTS)?;
            tx.open_table(OPEN_SILENCES)?;
            let mut meta = tx.open_table(META)?;
            for key in [NEXT_ALERT, NEXT_TELEMETRY] {
                if meta.get(key)?.is_none() {
                    meta.insert(key, 1)?;
                }
            }
            let mut cursors = tx.open_table(CURSORS)?;
            let stale: Vec<(String, u8)> = cursors
                .iter()?
                .filter_map(Result::ok)
                .map(|(k, _)| {
                    let (name, lane) = k.value();
                    (name.to_owned(), lane)
                })
                .filter(|(name, _)| !sinks.contains(name))
                .collect();
            for (name, lane) in stale {
                tracing::warn!(sink = %name, "removing the spool cursor of a sink that is no longer configured");
                cursors.remove((name.as_str(), lane))?;
            }
            for lane in Lane::ALL {
                let first = tx
                    .open_table(lane.table())?
                    .first()?
                    .map(|(k, _)| k.value());
                let next = meta.get(lane.next_key())?.map_or(1, |v| v.value());
                let start = first.map_or(next - 1, |f| f - 1);
                for sink in sinks {
                    if cursors.get((sink.as_str(), lane.code()))?.is_none() {
                        cursors.insert((sink.as_str(), lane.code()), start)?;
                    }
                }
            }
        }
        tx.commit()?;
        let (appended, _) = watch::channel(0);
        let spool = Spool {
            db: RwLock::new(Some(db)),
            path: path.to_owned(),
            failing: Mutex::new(None),
            sinks: sinks.to_vec(),
            limits,
            appended,
            unreadable: Mutex::default(),
        };
        // Records every sink already acknowledged may remain after a crash
        // between an ack and its deletion; drop them now.
        spool.collect_garbage()?;
        Ok(spool)
    }

    /// Commits a batch in one transaction (one fsync), assigning sequence
    /// numbers, then evicts telemetry beyond the limits.
    /// While appends fail, [`Spool::failing`] says why.
    pub fn append(&self, now: Timestamp, events: &[Event]) -> Result<Appended, SpoolError> {
        let result = self.commit(now, events);
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        match &result {
            Ok(_) => *failing = None,
            Err(e) => {
                failing.get_or_insert_with(|| e.to_string());
            }
        }
        result
    }

    fn commit(&self, now: Timestamp, events: &[Event]) -> Result<Appended, SpoolError> {
        let mut out = Appended::default();
        // Encoded before the write transaction: the lock other writers (an
        // alert's commit, a sink's cursor move) wait for is held only for
        // the inserts and the commit.
        let mut buf = Vec::with_capacity(events.len() * 64);
        let mut ends = Vec::with_capacity(events.len());
        for e in events {
            record::encode(now, e, &mut buf)?;
            ends.push(buf.len());
        }
        let encoded = ends.iter().scan(0, |start, &end| {
            let v = &buf[*start..end];
            *start = end;
            Some(v)
        });
        let db = self.db()?;
        let tx = db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let mut alerts = tx.open_table(ALERTS)?;
            let mut telemetry = tx.open_table(TELEMETRY)?;
            let mut open = tx.open_table(OPEN_ALERTS)?;
            let mut silences = tx.open_table(OPEN_SILENCES)?;
            let mut next_alert = meta.get(NEXT_ALERT)?.map_or(1, |v| v.value());
            let mut next_tel = meta.get(NEXT_TELEMETRY)?.map_or(1, |v| v.value());
            let mut bytes = meta.get(TELEMETRY_BYTES)?.map_or(0, |v| v.value());
            for (v, event) in encoded.zip(events) {
                match Lane::of(event) {
                    Lane::Alert => {
                        alerts.insert(next_alert, v)?;
                        next_alert += 1;
                        match event {
                            Event::Alert(a) if a.state == wardgate_model::AlertState::Cleared => {
                                open.remove(&*a.id.0)?;
                            }
                            Event::Alert(a) => {
                                if let Some(json) = record::stored_json(v) {
                                    open.insert(&*a.id.0, json)?;
                                }
                            }
                            Event::Silence(s) => {
                                let key = silence_key(s);
                                if s.state == wardgate_model::SilenceState::Ended {
                                    silences.remove(key.as_str())?;
                                } else if let Some(json) = record::stored_json(v) {
                                    silences.insert(key.as_str(), json)?;
                                }
                            }
                            _ => {}
                        }
                    }
                    Lane::Telemetry => {
                        telemetry.insert(next_tel, v)?;
                        bytes += v.len() as u64;
                        next_tel += 1;
                    }
                }
            }
            // Evict oldest telemetry beyond the byte bound or the age bound.
            let oldest_allowed = now
                - chrono::Duration::from_std(self.limits.max_age).unwrap_or(chrono::Duration::MAX);
            let oldest_allowed = oldest_allowed.timestamp_nanos_opt().unwrap_or(i64::MIN);
            let mut evicted = 0;
            loop {
                let Some((seq, len, at)) = telemetry.first()?.map(|(k, v)| {
                    let v = v.value();
                    (
                        k.value(),
                        v.len() as u64,
                        record::appended_at(v).unwrap_or(i64::MIN),
                    )
                }) else {
                    break;
                };
                if bytes <= self.limits.max_bytes && at >= oldest_allowed {
                    break;
                }
                telemetry.remove(seq)?;
                bytes = bytes.saturating_sub(len);
                evicted += 1;
            }
            if evicted > 0 {
                let total = meta.get(EVICTED)?.map_or(0, |v| v.value()) + evicted;
                meta.insert(EVICTED, total)?;
            }
            meta.insert(NEXT_ALERT, next_alert)?;
            meta.insert(NEXT_TELEMETRY, next_tel)?;
            meta.insert(TELEMETRY_BYTES, bytes)?;
            out.last_alert = next_alert - 1;
            out.last_telemetry = next_tel - 1;
            out.evicted = evicted;
        }
        tx.commit()?;
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
        Ok(out)
    }

    /// The latest snapshot of every alert that was open at the last commit,
    /// oldest id first. A snapshot that cannot be decoded is skipped and
    /// logged (the caller says what it could not restore).
    pub fn open_alerts(&self) -> Result<Vec<wardgate_model::Alert>, SpoolError> {
        self.snapshots(OPEN_ALERTS, "an open alert")
    }

    /// The silences in force at the last commit (undecodable ones skipped
    /// and logged, as for alerts).
    pub fn open_silences(&self) -> Result<Vec<wardgate_model::Silence>, SpoolError> {
        self.snapshots(OPEN_SILENCES, "a silence")
    }

    fn snapshots<T: serde::de::DeserializeOwned>(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        what: &str,
    ) -> Result<Vec<T>, SpoolError> {
        let db = self.db()?;
        let tx = db.begin_read()?;
        let table = tx.open_table(table)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, json) = entry?;
            match serde_json::from_slice(json.value()) {
                Ok(v) => out.push(v),
                Err(e) => {
                    tracing::error!(key = key.value(), error = %e, "{what} in the spool cannot be read; it is not restored");
                }
            }
        }
        Ok(out)
    }

    /// Figures for logs and metrics.
    pub fn stats(&self) -> Result<SpoolStats, SpoolError> {
        let db = self.db()?;
        let tx = db.begin_read()?;
        let meta = tx.open_table(META)?;
        let get =
            |k: &str| -> Result<u64, SpoolError> { Ok(meta.get(k)?.map_or(0, |v| v.value())) };
        let unreadable = self
            .unreadable
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(SpoolStats {
            alerts: tx.open_table(ALERTS)?.len()?,
            telemetry: tx.open_table(TELEMETRY)?.len()?,
            telemetry_bytes: get(TELEMETRY_BYTES)?,
            evicted_total: get(EVICTED)?,
            corrupt_records: unreadable.total,
            unknown_version_records: unreadable.unknown_version,
        })
    }

    /// The database, held open until the guard is dropped (a reopen waits).
    fn db(&self) -> Result<Db<'_>, SpoolError> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            return Err(SpoolError::Closed(self.path.clone()));
        }
        Ok(Db(guard))
    }

    /// Why appends fail, while they do (the first error since the last
    /// append that succeeded).
    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts a record that could not be read back and logs the first of
    /// each class (a damaged record, one of an unknown version).
    fn unreadable(&self, lane: Lane, seq: u64, e: &RecordError) {
        let mut u = self
            .unreadable
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        u.total += 1;
        if matches!(e, RecordError::UnknownVersion(_)) {
            u.unknown_version += 1;
        }
        if u.logged.insert(e.class()) {
            tracing::error!(
                spool = %self.path.display(),
                lane = lane.as_str(),
                seq,
                error = %e,
                "a spool record cannot be read; it is not delivered (counted in wardgate_spool_corrupt_records_total; further ones are counted, not logged)"
            );
        }
    }

    /// A receiver that changes after every commit.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    pub fn sinks(&self) -> &[String] {
        &self.sinks
    }
}

/// Also the crate's test events (`reading`, `alert`).
#[cfg(test)]
pub(crate) mod tests;
