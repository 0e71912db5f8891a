//! Lanes and cursors: which table a record lives in, reading a lane after a
//! sink's cursor, moving cursors, and deleting what every sink has passed.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use wardgate_model::Event;

use super::record::{self, Record};
use super::{
    ALERTS, CURSORS, META, NEXT_ALERT, NEXT_TELEMETRY, SinkBacklog, Spool, SpoolError, TELEMETRY,
    TELEMETRY_BYTES,
};

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

    pub(super) fn table(self) -> TableDefinition<'static, u64, &'static [u8]> {
        match self {
            Lane::Alert => ALERTS,
            Lane::Telemetry => TELEMETRY,
        }
    }

    pub(super) fn code(self) -> u8 {
        match self {
            Lane::Alert => 0,
            Lane::Telemetry => 1,
        }
    }

    pub(super) fn next_key(self) -> &'static str {
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

impl Spool {
    /// Up to `max` records of `lane` with a sequence number above `after`, in order.
    pub fn read(&self, lane: Lane, after: u64, max: usize) -> Result<Vec<Record>, SpoolError> {
        Ok(self.scan(lane, after, max)?.0)
    }

    /// As [`Spool::read`], with the last sequence number looked at: above
    /// the last record returned when unreadable records follow it (they are
    /// counted and logged, never handed out).
    pub(super) fn scan(
        &self,
        lane: Lane,
        after: u64,
        max: usize,
    ) -> Result<(Vec<Record>, u64), SpoolError> {
        let db = self.db()?;
        let tx = db.begin_read()?;
        let table = tx.open_table(lane.table())?;
        let mut out = Vec::with_capacity(max.min(1024));
        let mut upto = after;
        for entry in table.range(after.saturating_add(1)..)? {
            if out.len() >= max {
                break;
            }
            let (k, v) = entry?;
            upto = k.value();
            match record::decode(lane, upto, v.value()) {
                Ok(r) => out.push(r),
                Err(e) => self.unreadable(lane, upto, &e),
            }
        }
        Ok((out, upto))
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

    pub(super) fn collect_garbage(&self) -> Result<(), SpoolError> {
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
                        record::appended_at(v.value()).map(chrono::DateTime::from_timestamp_nanos),
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
}
