//! The JSONL sink's file: appended to in whole synced batches, rotated by
//! size and by age, the rotated files compressed and only the newest `keep`
//! of them kept.
//!
//! Files, for `path = "/var/log/wardgate/events.jsonl"`:
//! - `events.jsonl`: the live file, always complete lines up to the last
//!   acknowledged batch;
//! - `events.jsonl.N.gz` (or `events.jsonl.N` with `compress = false`): the
//!   rotated files, `N` counting up, the highest the newest.
//!
//! Invariants (no line lost or written twice across a rotation, whatever
//! the moment of a crash):
//! - a batch is written and synced before the spool cursor moves past it
//!   (the sink acknowledges only after [`RotatingFile::write_batch`]);
//! - rotation happens between batches: the live file is renamed whole to
//!   `events.jsonl.N` (atomic, directory synced) and a new live file begun;
//! - compression writes `events.jsonl.N.gz.tmp`, syncs it, renames it to
//!   `.gz`, syncs the directory, and only then removes `events.jsonl.N`.
//!
//! Recovery at open: a `.gz.tmp` is an unfinished compression and is
//! removed; an `events.jsonl.N` whose `.gz` exists was already compressed
//! and is removed; any other `events.jsonl.N` is compressed now; then the
//! oldest rotated files beyond `keep` are deleted. A live file whose last
//! line is cut short (a crash mid-write, never acknowledged) is truncated to
//! its last whole line: the spool hands that batch to the sink again.
//!
//! [`Rotation`] is the policy, given the time; the rest is blocking file
//! I/O, run by the sink on the blocking pool.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::config::JsonlConfig;

/// When the live file is due for rotation: the sans-IO part, given the time.
#[derive(Debug, Clone)]
pub(crate) struct Rotation {
    max_bytes: u64,
    max_age: Duration,
    size: u64,
    started: SystemTime,
}

impl Rotation {
    /// `max_bytes` / `max_age` of 0: never by size / by age.
    pub(crate) fn new(max_bytes: u64, max_age: Duration, size: u64, started: SystemTime) -> Self {
        Self {
            max_bytes,
            max_age,
            size,
            started,
        }
    }

    /// A file's age counts from its first line.
    pub(crate) fn handle_written(&mut self, now: SystemTime, bytes: u64) {
        if self.size == 0 {
            self.started = now;
        }
        self.size += bytes;
    }

    pub(crate) fn handle_rotated(&mut self, now: SystemTime) {
        self.size = 0;
        self.started = now;
    }

    /// When the live file will be old enough to rotate; never while it is
    /// empty (an idle gateway does not rotate empty files).
    pub(crate) fn poll_timeout(&self) -> Option<SystemTime> {
        (self.size > 0 && !self.max_age.is_zero()).then(|| self.started + self.max_age)
    }

    /// Whether to rotate now: the file reached `max_bytes` or `max_age`.
    /// An empty file is never rotated.
    pub(crate) fn poll_due(&self, now: SystemTime) -> bool {
        (self.size > 0 && self.max_bytes > 0 && self.size >= self.max_bytes)
            || self.poll_timeout().is_some_and(|at| now >= at)
    }
}

/// The live file and its rotated siblings.
#[derive(Debug)]
pub(crate) struct RotatingFile {
    path: PathBuf,
    file: File,
    rotation: Rotation,
    keep: usize,
    compress: bool,
}

/// A rotated file's sequence number and whether it is finished (`.gz`,
/// or plain when not compressing).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rotated {
    n: u64,
    path: PathBuf,
    kind: RotatedKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RotatedKind {
    Plain,
    Gz,
    GzTmp,
}

impl RotatingFile {
    /// Opens (or creates) the live file, after recovering from whatever a
    /// crash left; `now` starts the age of a new live file.
    pub(crate) fn open(config: &JsonlConfig, now: SystemTime) -> io::Result<Self> {
        let path = config.path.clone();
        let file = open_append(&path)?;
        let size = truncate_torn_line(&path, &file)?;
        // The age of a file we continue: from its creation when the file
        // system knows it, else from now.
        let started = if size > 0 {
            file.metadata()?.created().unwrap_or(now)
        } else {
            now
        };
        let this = Self {
            rotation: Rotation::new(
                config.rotate_max_bytes,
                config.rotate_max_age,
                size,
                started,
            ),
            file,
            path,
            keep: config.keep,
            compress: config.compress,
        };
        this.recover()?;
        Ok(this)
    }

    /// Appends a batch of whole lines and syncs it: once this returns, the
    /// batch survives a crash and may be acknowledged.
    pub(crate) fn write_batch(&mut self, now: SystemTime, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.file.sync_data()?;
        self.rotation.handle_written(now, bytes.len() as u64);
        Ok(())
    }

    pub(crate) fn poll_timeout(&self) -> Option<SystemTime> {
        self.rotation.poll_timeout()
    }

    /// Rotates when due; returns the rotated file's final path.
    pub(crate) fn rotate_if_due(&mut self, now: SystemTime) -> io::Result<Option<PathBuf>> {
        if !self.rotation.poll_due(now) {
            return Ok(None);
        }
        let n = self.rotated()?.iter().map(|r| r.n).max().unwrap_or(0) + 1;
        let plain = self.sibling(&format!(".{n}"));
        std::fs::rename(&self.path, &plain)?;
        sync_dir(&self.path)?;
        self.file = open_append(&self.path)?;
        self.rotation.handle_rotated(now);
        let done = if self.compress {
            compress(&plain)?
        } else {
            plain
        };
        self.prune()?;
        Ok(Some(done))
    }

    /// `events.jsonl` + `suffix`, in the same directory.
    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }

    /// Every rotated file (and leftover) beside the live file.
    fn rotated(&self) -> io::Result<Vec<Rotated>> {
        let dir = parent(&self.path);
        let Some(base) = self.path.file_name().and_then(|n| n.to_str()) else {
            return Ok(Vec::new());
        };
        let prefix = format!("{base}.");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            let (digits, kind) = if let Some(d) = rest.strip_suffix(".gz.tmp") {
                (d, RotatedKind::GzTmp)
            } else if let Some(d) = rest.strip_suffix(".gz") {
                (d, RotatedKind::Gz)
            } else {
                (rest, RotatedKind::Plain)
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(n) = digits.parse() {
                found.push(Rotated {
                    n,
                    path: entry.path(),
                    kind,
                });
            }
        }
        found.sort_by_key(|r| r.n);
        Ok(found)
    }

    /// Finishes what a crash interrupted, then applies `keep`.
    fn recover(&self) -> io::Result<()> {
        // Unfinished compressions first: each is redone from its plain file.
        for r in self.rotated()? {
            if r.kind == RotatedKind::GzTmp {
                std::fs::remove_file(&r.path)?;
            }
        }
        let found = self.rotated()?;
        for r in &found {
            if r.kind != RotatedKind::Plain {
                continue;
            }
            let compressed = found
                .iter()
                .any(|o| o.n == r.n && o.kind == RotatedKind::Gz);
            if compressed {
                std::fs::remove_file(&r.path)?;
            } else if self.compress {
                compress(&r.path)?;
            }
        }
        sync_dir(&self.path)?;
        self.prune()
    }

    /// Deletes the oldest rotated files beyond `keep`.
    fn prune(&self) -> io::Result<()> {
        let found = self.rotated()?;
        let excess = found.len().saturating_sub(self.keep);
        for r in &found[..excess] {
            std::fs::remove_file(&r.path)?;
        }
        if excess > 0 {
            sync_dir(&self.path)?;
        }
        Ok(())
    }
}

/// Cuts a last line without its newline (never acknowledged, so the spool
/// gives it again); returns the file's size after.
fn truncate_torn_line(path: &Path, file: &File) -> io::Result<u64> {
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(0);
    }
    // Search backwards in chunks for the last newline.
    let mut end = size;
    let mut buf = vec![0u8; 64 * 1024];
    let mut reader = File::open(path)?;
    let keep = loop {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(end - start).unwrap_or(0)];
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    if keep < size {
        tracing::warn!(
            path = %path.display(),
            cut = size - keep,
            "the JSONL file ended in a partial line (a crash mid-write); cut it, the spool writes that batch again"
        );
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(keep)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(crate::spool::PRIVATE_MODE)
        .open(path)
}

/// Makes a rename or removal in `path`'s directory durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(parent(path))?.sync_all()
}

/// `events.jsonl.N` → `events.jsonl.N.gz` through a synced `.gz.tmp`; the
/// plain file is removed only once the `.gz` is durable.
fn compress(plain: &Path) -> io::Result<PathBuf> {
    let mut gz = plain.as_os_str().to_owned();
    gz.push(".gz");
    let gz = PathBuf::from(gz);
    let mut tmp = gz.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let out = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(crate::spool::PRIVATE_MODE)
            .open(&tmp)?;
        let mut encoder =
            flate2::write::GzEncoder::new(BufWriter::new(out), flate2::Compression::default());
        io::copy(&mut File::open(plain)?, &mut encoder)?;
        let out = encoder
            .finish()?
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        out.sync_all()?;
    }
    std::fs::rename(&tmp, &gz)?;
    sync_dir(&gz)?;
    std::fs::remove_file(plain)?;
    Ok(gz)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000)
    }

    fn config(dir: &Path, max_bytes: u64, max_age: Duration, keep: usize) -> JsonlConfig {
        JsonlConfig {
            rotate_max_bytes: max_bytes,
            rotate_max_age: max_age,
            keep,
            ..JsonlConfig::new(dir.join("events.jsonl"))
        }
    }

    /// `n` distinct lines starting at `from`, as one batch.
    fn batch(from: usize, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in from..from + n {
            let _ = writeln!(out, "{{\"line\":{i}}}");
        }
        out
    }

    fn gunzip(path: &Path) -> String {
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    /// The rotated files' names, oldest first.
    fn rotated_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<(u64, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter_map(|n| {
                let digits = n.strip_prefix("events.jsonl.")?.split('.').next()?;
                Some((digits.parse().ok()?, n.clone()))
            })
            .collect();
        names.sort();
        names.into_iter().map(|(_, n)| n).collect()
    }

    #[test]
    fn the_policy_rotates_by_size_and_by_age_from_the_first_line() {
        let mut r = Rotation::new(100, HOUR, 0, t0());
        assert!(!r.poll_due(t0() + 10 * HOUR), "an empty file never rotates");
        assert_eq!(r.poll_timeout(), None);
        let first = t0() + 5 * HOUR;
        r.handle_written(first, 60);
        assert_eq!(r.poll_timeout(), Some(first + HOUR));
        assert!(!r.poll_due(first + HOUR - Duration::from_secs(1)));
        assert!(r.poll_due(first + HOUR));
        r.handle_written(first, 40);
        assert!(r.poll_due(first), "100 bytes reach max_bytes");
        r.handle_rotated(first);
        assert!(!r.poll_due(first + 2 * HOUR));
        let never = Rotation::new(0, Duration::ZERO, 1 << 40, t0());
        assert!(!never.poll_due(t0() + 1000 * HOUR));
    }

    #[test]
    fn rotates_by_size_into_a_gzip_holding_exactly_the_lines() {
        let dir = tempfile::tempdir().unwrap();
        let first = batch(0, 50);
        let size = first.len() as u64;
        let mut f = RotatingFile::open(&config(dir.path(), size + 1, HOUR, 5), t0()).unwrap();
        f.write_batch(t0(), &first).unwrap();
        assert_eq!(f.rotate_if_due(t0()).unwrap(), None, "one byte short");
        let second = batch(50, 1);
        f.write_batch(t0(), &second).unwrap();
        let rotated = f.rotate_if_due(t0()).unwrap().expect("rotated");
        assert_eq!(rotated, dir.path().join("events.jsonl.1.gz"));
        let expected = String::from_utf8([first, second].concat()).unwrap();
        assert_eq!(gunzip(&rotated), expected);
        assert_eq!(
            std::fs::metadata(dir.path().join("events.jsonl"))
                .unwrap()
                .len(),
            0
        );
        assert_eq!(rotated_names(dir.path()), ["events.jsonl.1.gz"]);
        // The next batch starts the new live file.
        f.write_batch(t0(), &batch(51, 1)).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("events.jsonl")).unwrap(),
            batch(51, 1)
        );
    }

    #[test]
    fn rotates_by_age_with_the_time_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = RotatingFile::open(&config(dir.path(), 0, HOUR, 5), t0()).unwrap();
        let written = t0() + Duration::from_secs(30);
        f.write_batch(written, &batch(0, 3)).unwrap();
        assert_eq!(f.poll_timeout(), Some(written + HOUR));
        assert_eq!(f.rotate_if_due(written + HOUR / 2).unwrap(), None);
        let rotated = f
            .rotate_if_due(written + HOUR)
            .unwrap()
            .expect("an hour old");
        assert_eq!(gunzip(&rotated).as_bytes(), batch(0, 3));
        // An idle, empty file does not rotate however old.
        assert_eq!(f.poll_timeout(), None);
        assert_eq!(f.rotate_if_due(written + 100 * HOUR).unwrap(), None);
    }

    #[test]
    fn keeps_only_the_newest_files_and_no_line_is_lost_or_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let keep = 3;
        let mut f = RotatingFile::open(&config(dir.path(), 1, Duration::ZERO, keep), t0()).unwrap();
        let per = 10;
        let rotations = 7;
        for k in 0..rotations {
            f.write_batch(t0(), &batch(k * per, per)).unwrap();
            f.rotate_if_due(t0()).unwrap().expect("every batch rotates");
        }
        f.write_batch(t0(), &batch(rotations * per, per)).unwrap();
        let names = rotated_names(dir.path());
        let expected: Vec<String> = (rotations - keep + 1..=rotations)
            .map(|n| format!("events.jsonl.{n}.gz"))
            .collect();
        assert_eq!(names, expected);
        // The kept files and the live file hold the newest lines, in order, once.
        let mut text: String = names.iter().map(|n| gunzip(&dir.path().join(n))).collect();
        text.push_str(&std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap());
        let first_kept = (rotations - keep) * per;
        assert_eq!(
            text.into_bytes(),
            batch(first_kept, (rotations + 1) * per - first_kept)
        );
    }

    #[test]
    fn without_compression_rotated_files_stay_plain() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), 1, Duration::ZERO, 2);
        c.compress = false;
        let mut f = RotatingFile::open(&c, t0()).unwrap();
        f.write_batch(t0(), &batch(0, 2)).unwrap();
        let rotated = f.rotate_if_due(t0()).unwrap().unwrap();
        assert_eq!(rotated, dir.path().join("events.jsonl.1"));
        assert_eq!(std::fs::read(rotated).unwrap(), batch(0, 2));
    }

    #[test]
    fn a_restart_continues_the_current_file_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let first = batch(0, 10);
        let c = config(dir.path(), first.len() as u64 * 2, Duration::ZERO, 5);
        let mut f = RotatingFile::open(&c, t0()).unwrap();
        f.write_batch(t0(), &first).unwrap();
        drop(f);
        // A crash in the middle of the next batch: half a line, never acknowledged.
        let live = dir.path().join("events.jsonl");
        let mut torn = OpenOptions::new().append(true).open(&live).unwrap();
        torn.write_all(b"{\"line\":10,\"cut\":").unwrap();
        drop(torn);

        let mut f = RotatingFile::open(&c, t0()).unwrap();
        assert_eq!(std::fs::read(&live).unwrap(), first, "the torn line is cut");
        // The spool hands the unacknowledged batch over again.
        let again = batch(10, 10);
        f.write_batch(t0(), &again).unwrap();
        assert_eq!(std::fs::read(&live).unwrap(), [&first[..], &again].concat());
        // The bytes from before the restart count towards max_bytes.
        let rotated = f
            .rotate_if_due(t0())
            .unwrap()
            .expect("two batches reach max_bytes");
        assert_eq!(gunzip(&rotated).as_bytes(), batch(0, 20));
    }

    #[test]
    fn a_crash_mid_rotation_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // 1: renamed, not yet compressed. 2: compression cut short.
        // 3: compressed, the plain file not yet removed.
        std::fs::write(d.join("events.jsonl.1"), batch(0, 5)).unwrap();
        std::fs::write(d.join("events.jsonl.2"), batch(5, 5)).unwrap();
        std::fs::write(d.join("events.jsonl.2.gz.tmp"), b"\x1f\x8b half").unwrap();
        std::fs::write(d.join("events.jsonl.3"), batch(10, 5)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            File::create(d.join("events.jsonl.3.gz")).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(&batch(10, 5)).unwrap();
        gz.finish().unwrap();

        RotatingFile::open(&config(d, 1, Duration::ZERO, 10), t0()).unwrap();
        assert_eq!(
            rotated_names(d),
            [
                "events.jsonl.1.gz",
                "events.jsonl.2.gz",
                "events.jsonl.3.gz"
            ]
        );
        for (n, from) in [(1, 0), (2, 5), (3, 10)] {
            let text = gunzip(&d.join(format!("events.jsonl.{n}.gz")));
            assert_eq!(text.into_bytes(), batch(from, 5), "file {n}");
        }
    }
}
