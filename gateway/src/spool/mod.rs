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
//! Key: the sequence number (`u64`). Value: the append time as little-endian
//! `i64` nanoseconds since the Unix epoch, then the event as JSON (the model's
//! serde shape, the same as the JSONL sink's lines).
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
//! cannot be decoded is skipped, counted and logged — never a panic.

mod reader;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::watch;
use wardgate_model::{Event, Timestamp};

pub use reader::{Batch, SpoolReader};

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

/// Which queue a record travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Alert transitions: sent first, never evicted.
    Alert,
    /// Readings and device events.
    Telemetry,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Alert, Lane::Telemetry];

    pub fn of(event: &Event) -> Lane {
        if event.is_alert() {
            Lane::Alert
        } else {
            Lane::Telemetry
        }
    }

    fn table(self) -> TableDefinition<'static, u64, &'static [u8]> {
        match self {
            Lane::Alert => ALERTS,
            Lane::Telemetry => TELEMETRY,
        }
    }

    fn code(self) -> u8 {
        match self {
            Lane::Alert => 0,
            Lane::Telemetry => 1,
        }
    }

    fn next_key(self) -> &'static str {
        match self {
            Lane::Alert => NEXT_ALERT,
            Lane::Telemetry => NEXT_TELEMETRY,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Alert => "alert",
            Lane::Telemetry => "telemetry",
        }
    }
}

/// One spooled event.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub lane: Lane,
    pub seq: u64,
    /// When it was appended (committed).
    pub committed_at: Timestamp,
    pub event: Event,
}

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
    Encode(#[from] serde_json::Error),
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

/// Why an error opening the spool means its file is corrupt: redb says so,
/// or the file ends where its own structures say there is more (a torn or
/// overwritten file). A permission, a full disk or a lock held by another
/// process is not corruption: that file must be left alone.
fn corruption(e: &SpoolError) -> Option<String> {
    match e {
        SpoolError::Db(redb::Error::Corrupted(why)) => Some(why.clone()),
        SpoolError::Db(redb::Error::Io(io))
            if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ) =>
        {
            Some(format!("the file is damaged: {io}"))
        }
        _ => None,
    }
}

/// The device alarm announcing a spool that was set aside (the technical
/// pack's `storage_reset` rule).
pub const RESET_ALARM: &str = "storage_reset";

/// The device alarm announcing that the spool could not be written for a
/// while and recovered (the technical pack's `storage_failed` rule).
pub const FAILED_ALARM: &str = "storage_failed";

/// A spool file that could not be read, moved aside so a fresh spool could
/// start ([`Spool::open_recovering`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// Where the unreadable file is now.
    pub path: PathBuf,
    /// Why it could not be read.
    pub reason: String,
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
    pub corrupt_records: u64,
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
    corrupt: Mutex<u64>,
}

fn value(now: Timestamp, json: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + json.len());
    v.extend_from_slice(&now.timestamp_nanos_opt().unwrap_or(i64::MAX).to_le_bytes());
    v.extend_from_slice(json);
    v
}

/// An event from its spooled JSON. wardgate writes `"type"` first, so the
/// variant's own fields are read straight from the bytes (the variant's
/// struct ignores the `type` key), skipping serde's buffering of internally
/// tagged enums — most of the cost of reading a record back. Anything else
/// takes the generic path.
fn decode_event(json: &[u8]) -> Result<Event, serde_json::Error> {
    if let Some(rest) = json.strip_prefix(br#"{"type":""#) {
        if rest.starts_with(br#"reading","#) {
            return serde_json::from_slice(json).map(Event::Reading);
        }
        if rest.starts_with(br#"alert","#) {
            return serde_json::from_slice(json).map(Event::Alert);
        }
        if rest.starts_with(br#"device_status","#) {
            return serde_json::from_slice(json).map(Event::DeviceStatus);
        }
        if rest.starts_with(br#"device_alarm","#) {
            return serde_json::from_slice(json).map(Event::DeviceAlarm);
        }
    }
    serde_json::from_slice(json)
}

fn split_value(v: &[u8]) -> Option<(i64, &[u8])> {
    let (t, json) = v.split_first_chunk::<8>()?;
    Some((i64::from_le_bytes(*t), json))
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
            corrupt: Mutex::new(0),
        };
        // Records every sink already acknowledged may remain after a crash
        // between an ack and its deletion; drop them now.
        spool.collect_garbage()?;
        Ok(spool)
    }

    /// As [`Spool::open`], but a file that is corrupt (redb reports it
    /// corrupted, or fails on it with a panic) is moved aside as
    /// `<file>.corrupt-<UTC time>` and a fresh spool starts in its place;
    /// what was set aside is returned for the caller to announce. Any other
    /// error (a permission, a lock held by another process) is returned: the
    /// file is left alone.
    pub fn open_recovering(
        path: &Path,
        limits: SpoolLimits,
        sinks: &[String],
        now: Timestamp,
    ) -> Result<(Spool, Option<SetAside>), SpoolError> {
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Spool::open(path, limits, sinks)
        }));
        let reason = match attempt {
            Ok(Ok(spool)) => return Ok((spool, None)),
            Ok(Err(e)) => match corruption(&e) {
                Some(why) => why,
                None => return Err(e),
            },
            Err(panic) => panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .map_or_else(
                    || "the database could not be read".to_owned(),
                    |m| format!("the database could not be read: {m}"),
                ),
        };
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".corrupt-{}", now.format("%Y%m%dT%H%M%SZ")));
        let aside = PathBuf::from(name);
        if let Err(source) = std::fs::rename(path, &aside) {
            return Err(SpoolError::SetAside {
                aside,
                reason,
                source,
            });
        }
        let spool = Spool::open(path, limits, sinks)?;
        Ok((
            spool,
            Some(SetAside {
                path: aside,
                reason,
            }),
        ))
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
        let encoded = events
            .iter()
            .map(|e| Ok((Lane::of(e), value(now, &serde_json::to_vec(e)?))))
            .collect::<Result<Vec<_>, SpoolError>>()?;
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
            for ((lane, v), event) in encoded.iter().zip(events) {
                match lane {
                    Lane::Alert => {
                        alerts.insert(next_alert, v.as_slice())?;
                        next_alert += 1;
                        match event {
                            Event::Alert(a) if a.state == wardgate_model::AlertState::Cleared => {
                                open.remove(&*a.id.0)?;
                            }
                            Event::Alert(a) => {
                                if let Some((_, json)) = split_value(v) {
                                    open.insert(&*a.id.0, json)?;
                                }
                            }
                            Event::Silence(s) => {
                                let key = silence_key(s);
                                if s.state == wardgate_model::SilenceState::Ended {
                                    silences.remove(key.as_str())?;
                                } else if let Some((_, json)) = split_value(v) {
                                    silences.insert(key.as_str(), json)?;
                                }
                            }
                            _ => {}
                        }
                    }
                    Lane::Telemetry => {
                        telemetry.insert(next_tel, v.as_slice())?;
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
                        split_value(v).map_or(i64::MIN, |(t, _)| t),
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

    /// Up to `max` records of `lane` with a sequence number above `after`, in order.
    pub fn read(&self, lane: Lane, after: u64, max: usize) -> Result<Vec<Record>, SpoolError> {
        let db = self.db()?;
        let tx = db.begin_read()?;
        let table = tx.open_table(lane.table())?;
        let mut out = Vec::new();
        for entry in table.range(after.saturating_add(1)..)? {
            if out.len() >= max {
                break;
            }
            let (k, v) = entry?;
            let seq = k.value();
            match split_value(v.value()).map(|(ns, json)| (ns, decode_event(json))) {
                Some((ns, Ok(event))) => out.push(Record {
                    lane,
                    seq,
                    committed_at: chrono::DateTime::from_timestamp_nanos(ns),
                    event,
                }),
                _ => {
                    let mut corrupt = self
                        .corrupt
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *corrupt += 1;
                    tracing::error!(
                        lane = lane.as_str(),
                        seq,
                        "spool record cannot be decoded; skipping it"
                    );
                }
            }
        }
        Ok(out)
    }

    /// The sink's cursor in a lane: everything up to it was acknowledged.
    pub fn cursor(&self, sink: &str, lane: Lane) -> Result<u64, SpoolError> {
        let db = self.db()?;
        let tx = db.begin_read()?;
        let cursors = tx.open_table(CURSORS)?;
        cursors
            .get((sink, lane.code()))?
            .map(|v| v.value())
            .ok_or_else(|| SpoolError::UnknownSink(sink.to_owned()))
    }

    /// Records that the sink's peer acknowledged everything up to `upto`.
    /// Never moves a cursor backwards. Deletes what every sink has passed.
    ///
    /// Committed without an fsync of its own: the move becomes durable with
    /// the next append (at most `flush_interval` later while data flows) or
    /// [`Spool::sync`]. A crash before that delivers those records again —
    /// at-least-once, never lost.
    pub fn ack(&self, sink: &str, lane: Lane, upto: u64) -> Result<(), SpoolError> {
        if !self.sinks.iter().any(|s| s == sink) {
            return Err(SpoolError::UnknownSink(sink.to_owned()));
        }
        let db = self.db()?;
        let mut tx = db.begin_write()?;
        tx.set_durability(redb::Durability::None)?;
        {
            let mut cursors = tx.open_table(CURSORS)?;
            let current = cursors.get((sink, lane.code()))?.map_or(0, |v| v.value());
            if upto > current {
                cursors.insert((sink, lane.code()), upto)?;
            }
        }
        Self::delete_passed(&tx, &self.sinks, lane)?;
        tx.commit()?;
        Ok(())
    }

    /// Makes every earlier commit durable (one fsync): cursor moves since the
    /// last append. Called when the gateway stops.
    pub fn sync(&self) -> Result<(), SpoolError> {
        self.db()?.begin_write()?.commit()?;
        Ok(())
    }

    fn collect_garbage(&self) -> Result<(), SpoolError> {
        let db = self.db()?;
        let tx = db.begin_write()?;
        for lane in Lane::ALL {
            Self::delete_passed(&tx, &self.sinks, lane)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn delete_passed(
        tx: &redb::WriteTransaction,
        sinks: &[String],
        lane: Lane,
    ) -> Result<(), SpoolError> {
        let cursors = tx.open_table(CURSORS)?;
        let mut min = u64::MAX;
        for sink in sinks {
            min = min.min(
                cursors
                    .get((sink.as_str(), lane.code()))?
                    .map_or(0, |v| v.value()),
            );
        }
        if sinks.is_empty() {
            // No sink: nothing is ever delivered, so keep everything (bounded by eviction).
            return Ok(());
        }
        let mut table = tx.open_table(lane.table())?;
        let mut freed = 0u64;
        let removed: Vec<u64> = table
            .range(..=min)?
            .filter_map(Result::ok)
            .map(|(k, v)| {
                freed += v.value().len() as u64;
                k.value()
            })
            .collect();
        for seq in removed {
            table.remove(seq)?;
        }
        if lane == Lane::Telemetry && freed > 0 {
            let mut meta = tx.open_table(META)?;
            let bytes = meta.get(TELEMETRY_BYTES)?.map_or(0, |v| v.value());
            meta.insert(TELEMETRY_BYTES, bytes.saturating_sub(freed))?;
        }
        Ok(())
    }

    /// Figures for logs and metrics.
    pub fn stats(&self) -> Result<SpoolStats, SpoolError> {
        let db = self.db()?;
        let tx = db.begin_read()?;
        let meta = tx.open_table(META)?;
        let get =
            |k: &str| -> Result<u64, SpoolError> { Ok(meta.get(k)?.map_or(0, |v| v.value())) };
        Ok(SpoolStats {
            alerts: tx.open_table(ALERTS)?.len()?,
            telemetry: tx.open_table(TELEMETRY)?.len()?,
            telemetry_bytes: get(TELEMETRY_BYTES)?,
            evicted_total: get(EVICTED)?,
            corrupt_records: *self
                .corrupt
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        })
    }

    /// What each sink's peer has not confirmed yet, per lane: how many
    /// records and since when (the oldest one's append time).
    pub fn backlog(&self) -> Result<Vec<SinkBacklog>, SpoolError> {
        let db = self.db()?;
        let tx = db.begin_read()?;
        let meta = tx.open_table(META)?;
        let cursors = tx.open_table(CURSORS)?;
        let mut out = Vec::new();
        for lane in Lane::ALL {
            let table = tx.open_table(lane.table())?;
            let last = meta.get(lane.next_key())?.map_or(1, |v| v.value()) - 1;
            for sink in &self.sinks {
                let cursor = cursors
                    .get((sink.as_str(), lane.code()))?
                    .map_or(0, |v| v.value());
                // Records above the oldest one still stored are contiguous
                // (eviction and deletion only take from the front).
                let oldest = table
                    .range(cursor.saturating_add(1)..)?
                    .next()
                    .transpose()?;
                let (records, since) = match oldest {
                    Some((k, v)) => (
                        last - k.value() + 1,
                        split_value(v.value())
                            .map(|(ns, _)| chrono::DateTime::from_timestamp_nanos(ns)),
                    ),
                    None => (0, None),
                };
                out.push(SinkBacklog {
                    sink: sink.clone(),
                    lane,
                    records,
                    since,
                });
            }
        }
        Ok(out)
    }

    /// The database, held open until the guard is dropped (a reopen waits).
    fn db(&self) -> Result<Db<'_>, SpoolError> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            return Err(SpoolError::Closed(self.path.clone()));
        }
        Ok(Db(guard))
    }

    /// Closes the database and opens it again, which repairs it. redb
    /// refuses every write after a failed one (a full disk, a file-size
    /// limit) until the file is reopened; this is how the spool recovers
    /// in place once the disk takes writes again. While it cannot be
    /// opened, every call fails with [`SpoolError::Closed`].
    pub fn reopen(&self) -> Result<(), SpoolError> {
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // The file's lock is released only when the old handle is gone.
        drop(db.take());
        *db = Some(Database::create(&self.path)?);
        Ok(())
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

    /// A receiver that changes after every commit.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    pub fn sinks(&self) -> &[String] {
        &self.sinks
    }
}

#[cfg(test)]
mod tests;
