//! Repair: a corrupt file moved aside for a fresh spool at start-up, and a
//! database reopened in place after a failed write.

use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use redb::Database;
use wardgate_model::Timestamp;

use super::{Spool, SpoolError, SpoolLimits};

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

impl Spool {
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
}
