//! Failures of the gateway's own storage make it say so and stop, never
//! leave a process that looks alive and accepts nothing.

use std::io::Read as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{free_port, get, wardgate};

const CONFIG: &str = r#"
[gateway]
site = "t"
ward = "w"
id = "gw"

[spool]
path = "SPOOL"

[[subjects]]
id = "bed-1"
kind = "bed"
devices = ["flood-1"]

[[devices]]
id = "flood-1"
type = "synthetic"
interval = "10ms"
signals = [{ metric = "heart_rate", base = 72, amplitude = 5, period = "7s" }, { metric = "spo2", base = 97 }]

# A broker that is never there (nothing listens on loopback port 1): nothing
# is delivered, so the spool keeps everything and grows.
[[sinks]]
type = "mqtt"
broker = { host = "127.0.0.1", port = 1 }
"#;

/// A disk write fails for good (here: a file-size limit the spool outgrows,
/// with SIGXFSZ ignored so the write returns EFBIG as on a full disk): the
/// gateway retries for a bounded time, then exits 1 with one message that
/// names the spool and the cause, for the service manager to restart it.
#[test]
fn a_spool_that_cannot_commit_ends_the_gateway_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.redb");
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, CONFIG.replace("SPOOL", &spool.display().to_string())).unwrap();
    let bin = wardgate().get_program().to_owned();
    // `ulimit -f` counts 512-byte blocks in POSIX sh: 400 KiB. The spool
    // starts near 140 KiB and outgrows that within seconds.
    let mut child = crate::Guarded(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -f 800; exec \"$0\" run --config \"$1\"")
            .arg(bin)
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "wardgate is still running: wedged"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    // Logged once when it starts failing, and once when it gives up.
    assert_eq!(log.matches("spool commit failed").count(), 1, "{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!(
            "the spool {} cannot commit (spool database: I/O error: File too large",
            spool.display()
        )) && last.contains("wardgate stops so that the service manager restarts it"),
        "{log}"
    );

    // The service manager restarts it once the disk has room again: the
    // same spool opens and the gateway runs.
    let restarted = dir.path().join("restarted.log");
    let mut again = crate::Guarded(
        wardgate()
            .args(["run", "--config"])
            .arg(&cfg)
            .stderr(std::fs::File::create(&restarted).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&restarted)
        .unwrap_or_default()
        .contains("wardgate running")
    {
        assert!(again.try_wait().unwrap().is_none(), "the restart failed");
        assert!(Instant::now() < deadline, "no restart");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&restarted).unwrap();
    assert!(
        !text.contains("set aside"),
        "the spool was not damaged: {text}"
    );
}

/// A disk write fails, then the disk takes writes again (here: a file-size
/// limit the spool outgrows, lifted from outside with `prlimit`): the
/// gateway reopens the spool, goes on without a restart and without losing
/// anything, was not ready meanwhile, and a latching technical alert says
/// how long the storage failed and why.
#[test]
fn a_spool_that_fails_then_recovers_is_reopened_in_place_and_announced() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.redb");
    let cfg = dir.path().join("gw.toml");
    let port = free_port();
    std::fs::write(
        &cfg,
        CONFIG
            .replace("SPOOL", &spool.display().to_string())
            .replace(
                "[spool]",
                &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n\n[spool]"),
            ),
    )
    .unwrap();
    let log = dir.path().join("gw.log");
    let bin = wardgate().get_program().to_owned();
    // A soft limit only (see above for the size): the hard one stays
    // unlimited, so it can be lifted again.
    let mut child = crate::Guarded(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -S -f 800; exec \"$0\" run --config \"$1\"")
            .arg(bin)
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let log_has = |what: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(what)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log_has("spool commit failed") {
        assert!(child.try_wait().unwrap().is_none(), "wardgate ended");
        assert!(Instant::now() < deadline, "the spool never failed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = readyz(port);
    assert_eq!(
        (status, body.as_str()),
        (
            503,
            "spool cannot commit: spool database: I/O error: File too large (os error 27)\n"
        )
    );
    // The disk takes writes again.
    let lifted = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", child.id()))
        .arg("--fsize=unlimited")
        .status()
        .unwrap();
    assert!(lifted.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log_has("spool reopened; it commits again") {
        assert!(
            child.try_wait().unwrap().is_none(),
            "wardgate ended: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "the spool did not recover");
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let (_, body) = get(port, "/api/alerts");
        let alerts: serde_json::Value = serde_json::from_str(&body).unwrap();
        let found = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == "storage_failed")
            .cloned();
        if let Some(a) = found {
            break a;
        }
        assert!(Instant::now() < deadline, "no storage_failed alert: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (&alert["priority"], &alert["state"]),
        (&serde_json::json!("medium"), &serde_json::json!("latched"))
    );
    let message = alert["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "The gateway's storage failed and recovered; check its disk: {} could not be written for ",
            spool.display()
        )) && message.ends_with(
            "(spool database: I/O error: File too large (os error 27)); it was reopened and takes writes again, nothing was lost"
        ),
        "{message}"
    );
    let (status, body) = readyz(port);
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    // Still running: no restart was needed.
    assert!(child.try_wait().unwrap().is_none());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("spool commit failed").count(), 1, "{text}");
}

/// A spool file with corrupted pages (here: bytes flipped across the file)
/// does not stop the gateway from starting, nor send it into a crash loop:
/// the file is moved aside, an empty spool starts, and a high, latching
/// technical alert says what was set aside and where.
#[test]
fn a_corrupt_spool_is_set_aside_and_announced() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use wardgate_model::{AlertState, Event, Priority, Transition};

    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.redb");
    let out = dir.path().join("events.jsonl");
    let cfg = dir.path().join("gw.toml");
    let text = CONFIG
        .replace("SPOOL", &spool.display().to_string())
        .replace(
            "type = \"mqtt\"\nbroker = { host = \"127.0.0.1\", port = 1 }",
            &format!("type = \"jsonl\"\npath = \"{}\"", out.display()),
        );
    std::fs::write(&cfg, text).unwrap();
    let run = || {
        crate::Guarded(
            wardgate()
                .args(["run", "--config"])
                .arg(&cfg)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let wait_for = |what: &str, pred: &dyn Fn(&[Event]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pred(&crate::events(&out)) {
            assert!(Instant::now() < deadline, "no {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let stop = |mut child: crate::Guarded| {
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
        assert!(crate::run::wait_exit(&mut child).success());
    };
    // A spool with data in it.
    let child = run();
    wait_for("readings", &|e| e.len() > 20);
    stop(child);
    let mut bytes = std::fs::read(&spool).unwrap();
    for i in (4096..bytes.len().min(32 * 1024)).step_by(97) {
        bytes[i] ^= 0xFF;
    }
    std::fs::write(&spool, bytes).unwrap();

    let child = run();
    let reset = |e: &Event| matches!(e, Event::Alert(a) if a.rule.as_str() == "storage_reset");
    wait_for("the storage_reset alert", &|e| {
        e.iter().filter(|e| reset(e)).count() >= 2
    });
    let events = crate::events(&out);
    stop(child);
    let alerts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Alert(a) if a.rule.as_str() == "storage_reset" => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(
        alerts
            .iter()
            .map(|a| (a.transition, a.state))
            .collect::<Vec<_>>(),
        [
            (Transition::Raised, AlertState::Active),
            (Transition::Latched, AlertState::Latched)
        ]
    );
    assert_eq!(alerts[0].priority, Priority::High);
    assert_eq!(alerts[0].subject.as_str(), "gw");
    // It names the file and where it went, and that file is there.
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("spool.redb.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        alerts[0].message.contains(&format!(
            "{} was set aside as {}",
            spool.display(),
            aside[0].display()
        )),
        "{}",
        alerts[0].message
    );
    // The fresh spool works: readings after the reset were delivered.
    assert!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Reading(_)))
            .count()
            > 0
    );
}

/// A sink that fails while the gateway runs — a JSONL file on a full disk
/// (`/dev/full`: every write fails with ENOSPC) — is noticed at once,
/// restarted with backoff from its spool position, reported on `/readyz`,
/// and raises the high `sink_failing` alert, which the other sinks deliver.
#[test]
fn a_sink_on_a_full_disk_is_restarted_reported_and_alarmed() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use wardgate_model::{Event, Priority, Transition};

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let observer = dir.path().join("observer.jsonl");
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        one_bed_with_page(
            port,
            "",
            &format!(
                "[[sinks]]\ntype = \"jsonl\"\nname = \"ward_file\"\npath = \"/dev/full\"\n\n[[sinks]]\ntype = \"jsonl\"\nname = \"observer\"\npath = \"{}\"\n",
                observer.display()
            ),
        ),
    )
    .unwrap();
    let log = dir.path().join("gw.log");
    let mut child = crate::Guarded(
        wardgate()
            .args(["run", "--config"])
            .arg(&cfg)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let alert = first_alert(&observer, "sink_failing");
    assert_eq!(
        (alert.transition, alert.priority),
        (Transition::Raised, Priority::High)
    );
    assert_eq!(alert.subject.as_str(), "gw");
    assert!(
        alert.message.contains("sink:ward_file"),
        "{}",
        alert.message
    );
    assert!(
        alert.message.contains("No space left on device"),
        "{}",
        alert.message
    );
    // Not ready while a sink fails, and it says which and why.
    let (status, body) = readyz(port);
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("sink ward_file failing: "), "{body}");
    // Restarted with backoff (1 s, then 2 s): a second failure is logged.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("sink failed; restarting it")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "no restart");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The other sink kept delivering throughout.
    let readings = crate::events(&observer)
        .iter()
        .filter(|e| matches!(e, Event::Reading(_)))
        .count();
    assert!(readings > 10, "{readings}");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    // A sink that still fails at the stop makes the exit code say so.
    assert_eq!(crate::run::wait_exit(&mut child).code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("restarting sink"), "{text}");
}

/// `GET /readyz`: (status, body).
fn readyz(port: u16) -> (u16, String) {
    get(port, "/readyz")
}

/// The first transition of `rule` a JSONL sink wrote (waits up to a minute).
fn first_alert(jsonl: &std::path::Path, rule: &str) -> wardgate_model::Alert {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = crate::events(jsonl).into_iter().find_map(|e| match e {
            wardgate_model::Event::Alert(a) if a.rule.as_str() == rule => Some(a),
            _ => None,
        });
        if let Some(a) = found {
            return a;
        }
        assert!(Instant::now() < deadline, "no {rule} alert");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A sink that does not fail but does not deliver either (its broker is
/// down) raises `sink_stalled` once its oldest record has waited longer than
/// `[spool] stalled_after`, and a required one makes `/readyz` say so.
#[test]
fn a_sink_whose_peer_is_down_is_reported_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let observer = dir.path().join("observer.jsonl");
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        one_bed_with_page(
            port,
            "[spool]\nstalled_after = \"2s\"\n",
            &format!(
                "# Nothing listens on loopback port 1: the broker is down.\n[[sinks]]\ntype = \"mqtt\"\nname = \"nurse_call\"\nbroker = {{ host = \"127.0.0.1\", port = 1 }}\n\n[[sinks]]\ntype = \"jsonl\"\nname = \"observer\"\nrequired = false\npath = \"{}\"\n",
                observer.display()
            ),
        ),
    )
    .unwrap();
    let child = crate::Guarded(
        wardgate()
            .args(["run", "--config"])
            .arg(&cfg)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let alert = first_alert(&observer, "sink_stalled");
    assert_eq!(alert.priority, wardgate_model::Priority::High);
    assert!(
        alert
            .message
            .starts_with("The gateway's output sink:nurse_call is not delivering: "),
        "{}",
        alert.message
    );
    let (status, body) = readyz(port);
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("sink nurse_call stalled: "), "{body}");
    drop(child);
}

/// The queue from the drivers into the rules stage stays three quarters
/// full (here: nobody reads it): the gateway says the rules stage is falling
/// behind, and says so again when it catches up.
#[tokio::test]
async fn a_full_queue_into_the_rules_stage_raises_rules_behind() {
    use wardgate_drivers::Emitted;
    use wardgate_model::{AlarmPhase, Event, Metric, Reading, TimeSource};

    let dir = tempfile::tempdir().unwrap();
    let spool = std::sync::Arc::new(
        wardgate::spool::Spool::open(
            &dir.path().join("spool.redb"),
            wardgate::spool::SpoolLimits {
                max_bytes: 1 << 30,
                max_age: Duration::from_secs(3600),
            },
            &["jsonl".to_owned()],
        )
        .unwrap(),
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Emitted>(8);
    let reading = Event::Reading(
        Reading::new(
            chrono::Utc::now(),
            TimeSource::Gateway,
            "bed-1".into(),
            None,
            Metric::HeartRate,
            72.0,
        )
        .unwrap(),
    );
    for _ in 0..7 {
        tx.try_send(Emitted::Event(reading.clone())).unwrap();
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let monitor = wardgate::monitor::Monitor {
        spool,
        max_bytes: 1 << 30,
        stalled_after: Duration::from_secs(300),
        required: std::collections::BTreeSet::new(),
        health: wardgate::sinks::supervisor::SinkHealth::default(),
        events: tx.downgrade(),
        gateway: "gw".into(),
        every: Duration::from_millis(50),
    };
    let task = tokio::spawn(monitor.run(stop.clone()));
    // Nobody reads: after two checks the alarm takes the last free slot.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tx.capacity() > 0 {
        assert!(
            Instant::now() < deadline,
            "no alarm while the queue stays full"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Reading the queue empties it: first the readings, then the alarm.
    let start = next_alarm(&mut rx).await;
    assert_eq!(
        (start.alarm.as_ref(), start.phase, start.subject.as_str()),
        ("rules_behind", AlarmPhase::Start, "gw")
    );
    assert_eq!(
        start.raw.as_deref(),
        Some("7 of 8 events waiting for the rules stage")
    );
    let end = next_alarm(&mut rx).await;
    assert_eq!(
        (end.alarm.as_ref(), end.phase),
        ("rules_behind", AlarmPhase::End)
    );
    stop.cancel();
    task.await.unwrap();
    drop(tx);
}

/// The next device alarm on a drivers' queue (other events are skipped).
async fn next_alarm(
    rx: &mut tokio::sync::mpsc::Receiver<wardgate_drivers::Emitted>,
) -> wardgate_model::DeviceAlarm {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an alarm in time")
            .expect("open");
        if let wardgate_drivers::Emitted::Event(wardgate_model::Event::DeviceAlarm(a)) = item {
            return a;
        }
    }
}

/// A gateway with the page on `port`, one bed with a heart-rate source,
/// `extra` tables and `sinks`.
fn one_bed_with_page(port: u16, extra: &str, sinks: &str) -> String {
    format!(
        r#"[gateway]
site = "t"
ward = "w"
id = "gw"

[http]
listen = "127.0.0.1:{port}"

{extra}
[[subjects]]
id = "bed-1"
kind = "bed"
devices = ["hr-1"]

[[devices]]
id = "hr-1"
type = "synthetic"
interval = "100ms"
signals = [{{ metric = "heart_rate", base = 72 }}]

{sinks}"#
    )
}
