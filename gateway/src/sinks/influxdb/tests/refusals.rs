//! A peer that refuses what it is sent: 413 splits a batch, 400 bisects it
//! down to the refused lines, which are quarantined within a bound.

use super::*;

fn stamp(i: i64) -> String {
    // 2026-11-27T10:00:00Z = 1795773600 s, plus i seconds.
    format!(" {}\n", (1_795_773_600 + i) * 1_000_000_000)
}

/// Runs the sink over `n` spooled readings until everything is
/// acknowledged, then stops it; returns the metrics and the quarantine.
async fn deliver(
    n: usize,
    url: &str,
    dir: &std::path::Path,
    tune: impl FnOnce(&mut InfluxDbConfig),
    alarms: Option<tokio::sync::mpsc::WeakSender<wardgate_drivers::Emitted>>,
) -> (Arc<DeliveryMetrics>, std::path::PathBuf) {
    let spool = spool(dir, &readings(n));
    let reader = SpoolReader::new(Arc::clone(&spool), "influx").unwrap();
    let quarantine = dir.join("q.jsonl");
    let mut c = config(url, dir);
    tune(&mut c);
    let mut sink = InfluxDbSink::new("influx", c, identity(), quarantine.clone()).unwrap();
    if let Some(events) = alarms {
        sink = sink.with_alarms(events, "gw-1".into());
    }
    let metrics = sink.metrics();
    let drain = CancellationToken::new();
    drain.cancel();
    sink.run(test_context(reader, drain)).await.unwrap();
    assert_eq!(
        spool.cursor("influx", Lane::Telemetry).unwrap(),
        n as u64,
        "everything acknowledged"
    );
    (metrics, quarantine)
}

fn quarantined(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const TOO_LARGE: &str = "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 16\r\nConnection: close\r\n\r\nbody is too big\n";

/// A server that takes at most two lines a request: 413 splits the batch
/// until every part fits, and everything is stored.
#[tokio::test]
async fn a_413_splits_the_batch_until_it_fits() {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = serve(|body| {
        if body.lines().count() > 2 {
            TOO_LARGE
        } else {
            STORED
        }
    })
    .await;
    let (metrics, quarantine) = deliver(5, &url, dir.path(), |_| {}, None).await;
    let sizes: Vec<usize> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.text().lines().count())
        .collect();
    // 0..5 too large: 0..2 stored, 2..5 too large: 2..3 and 3..5 stored.
    assert_eq!(sizes, [5, 2, 3, 1, 2]);
    assert!(!quarantine.exists());
    let s = metrics.snapshot(chrono::Utc::now());
    assert_eq!((s.acknowledged, s.quarantined, s.queued), (5, 0, 0));
}

/// A single line still too large is quarantined alone, with the 413.
#[tokio::test]
async fn a_413_on_a_single_line_quarantines_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = serve(|body| {
        if body.lines().count() > 2 || body.contains(&stamp(3)) {
            TOO_LARGE
        } else {
            STORED
        }
    })
    .await;
    let (metrics, quarantine) = deliver(5, &url, dir.path(), |_| {}, None).await;
    let q = quarantined(&quarantine);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["status"], 413);
    assert_eq!(
        q[0]["event"],
        serde_json::to_value(&readings(5)[3]).unwrap()
    );
    let s = metrics.snapshot(chrono::Utc::now());
    assert_eq!((s.acknowledged, s.quarantined), (4, 1));
}

/// InfluxDB refuses a whole body for one bad line (400, nothing written):
/// bisection writes the good lines and quarantines exactly the bad one.
#[tokio::test]
async fn a_400_bisects_so_only_the_bad_line_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let stored = Arc::new(Mutex::new(Vec::<String>::new()));
    let keep = Arc::clone(&stored);
    let (url, seen) = serve(move |body| {
        if body.contains(&stamp(5)) {
            BAD
        } else {
            keep.lock().unwrap().extend(body.lines().map(str::to_owned));
            STORED
        }
    })
    .await;
    let (metrics, quarantine) = deliver(8, &url, dir.path(), |_| {}, None).await;
    // 0..8 → 0..4 stored, 4..8 → 4..6 → 4..5 stored, 5..6 refused; 6..8 stored.
    assert_eq!(seen.lock().unwrap().len(), 7);
    let stored = stored.lock().unwrap();
    assert_eq!(stored.len(), 7);
    assert!(
        !stored
            .iter()
            .any(|l| format!(" {}\n", l.rsplit(' ').next().unwrap()) == stamp(5))
    );
    let q = quarantined(&quarantine);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["status"], 400);
    assert_eq!(q[0]["reason"], "unable to parse 'x y z'\n");
    assert_eq!(
        q[0]["event"],
        serde_json::to_value(&readings(8)[5]).unwrap()
    );
    let s = metrics.snapshot(chrono::Utc::now());
    assert_eq!((s.acknowledged, s.quarantined), (7, 1));
}

thread_local! {
    /// The log lines of this thread (the test's current-thread runtime).
    static LOGS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where the tests' log lines go: each thread's own buffer.
struct Logs;

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOGS.with(|l| l.borrow_mut().extend_from_slice(b));
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Starts capturing this thread's log. One global subscriber for the
    /// whole test binary: a scoped one (`set_default`) misses events whose
    /// call sites another test thread registered first.
    fn capture() {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| Logs)
                .with_ansi(false)
                .finish();
            let _ = tracing::subscriber::set_global_default(subscriber);
        });
        LOGS.with(|l| l.borrow_mut().clear());
    }

    /// What this thread logged since [`Logs::capture`].
    fn text() -> String {
        LOGS.with(|l| String::from_utf8_lossy(&l.borrow()).into_owned())
    }
}

/// Past its bound the quarantine drops refused lines and counts them, logs
/// the overflow once, and the gateway's technical alarms say so:
/// `data_quarantined` (raised and ended at once; the rule latches) and
/// `quarantine_full`.
#[tokio::test]
async fn a_full_quarantine_drops_counts_logs_once_and_alarms() {
    use wardgate_model::AlarmPhase::{End, Start};
    let dir = tempfile::tempdir().unwrap();
    Logs::capture();
    let (url, _) = serve(|_| BAD).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let (metrics, quarantine) = deliver(
        6,
        &url,
        dir.path(),
        |c| {
            c.quarantine_max_bytes = 1024;
            c.batch_max = 2;
        },
        Some(tx.downgrade()),
    )
    .await;
    // An entry holds the whole event: about 330 bytes, so three fit in 1 KiB:
    // the second batch of two overflows it.
    let kept = quarantined(&quarantine);
    assert_eq!(kept.len(), 3);
    assert!(std::fs::metadata(&quarantine).unwrap().len() <= 1024);
    let s = metrics.snapshot(chrono::Utc::now());
    assert_eq!(
        (s.acknowledged, s.quarantined, s.quarantine_dropped),
        (0, 3, 3)
    );
    let log = Logs::text();
    assert_eq!(
        log.matches("the quarantine file is full").count(),
        1,
        "one log line per overflow episode:\n{log}"
    );
    assert!(log.contains("quarantine_dropped=3"), "{log}");
    drop(tx);
    let mut alarms = Vec::new();
    while let Some(wardgate_drivers::Emitted::Event(Event::DeviceAlarm(a))) = rx.recv().await {
        assert_eq!(
            (a.subject.as_str(), a.device.id.as_str()),
            ("gw-1", "sink:influx")
        );
        assert_eq!(a.device.kind, DeviceKind::Gateway);
        alarms.push((a.alarm.to_string(), a.phase, a.raw.map(|r| r.to_string())));
    }
    let first = Some("2 of 2 records refused with 400: unable to parse 'x y z'".to_owned());
    assert_eq!(
        alarms,
        [
            // Once a minute at most: later batches do not raise it again.
            ("data_quarantined".to_owned(), Start, first.clone()),
            ("data_quarantined".to_owned(), End, first),
            (
                "quarantine_full".to_owned(),
                Start,
                Some(format!(
                    "{} reached its bound of 1024 bytes; 1 records dropped",
                    quarantine.display()
                ))
            ),
        ]
    );
}
