//! `/metrics` of a running gateway reading a simulated pump, scraped over
//! HTTP and parsed by an independent OpenMetrics parser: the official Python
//! client's (Debian `python3-prometheus-client`, installed by scripts/test),
//! which refuses anything the format does not allow. Faults injected into
//! the pump must show in the device's series; the alert it raises in the
//! rules' series; the JSONL sink's delivery in the sink's.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wardgate_model::Event;
use wardgate_sim::pump::{Action, SimAlarm};

use crate::{Running, free_port, get};

/// Debian's interpreter: the parser is a Debian package, not a pip install.
const PYTHON: &str = "/usr/bin/python3";

/// Parses OpenMetrics text strictly and prints every sample as JSON.
const PARSE: &str = r"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([family.name, family.type, family.unit, s.name, s.labels, s.value])
print(json.dumps(out))
";

/// What the parser prints per sample: family, type, unit, sample name,
/// labels, value.
type Row = (
    String,
    String,
    String,
    String,
    BTreeMap<String, String>,
    f64,
);

/// One family's type and unit, and its samples: (sample name, labels) → value.
#[derive(Debug, Default)]
struct Scrape {
    families: BTreeMap<String, (String, String)>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// The values of sample `name` whose labels include `labels`.
    fn values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.2)
            .collect()
    }

    /// The one value of sample `name` with `labels`; fails if absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let v = self.values(name, labels);
        assert_eq!(v.len(), 1, "{name}{labels:?}: {v:?}");
        v[0]
    }
}

/// Scrapes `/metrics` and parses it with the independent parser.
fn scrape(port: u16) -> Scrape {
    let (status, body) = get(port, "/metrics");
    assert_eq!(status, 200, "{body}");
    let mut child = Command::new(PYTHON)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{PYTHON} not runnable ({e}): install python3-prometheus-client (scripts/test does)"
            )
        });
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the scrape (or is not installed: python3-prometheus-client, which scripts/test installs): {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Row> = serde_json::from_slice(&out.stdout).unwrap();
    let mut scrape = Scrape::default();
    for (family, kind, unit, name, labels, value) in rows {
        scrape.families.insert(family, (kind, unit));
        scrape.samples.push((name, labels, value));
    }
    scrape
}

/// Scrapes until `pred` holds (a minute at most).
fn scrape_until(gw: &mut Running, port: u16, what: &str, pred: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            panic!("wardgate exited early with {status}");
        }
        let s = scrape(port);
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_scrape_parses_and_counts_what_happened() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (sim, pump_config) = crate::pump::simulated_pump(&rt, dir.path());
    let port = free_port();
    let mut gw = Running::start(&format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n{pump_config}"
    ));
    gw.wait_event("a reading", |e| matches!(e, Event::Reading(_)));
    let pump = [("device", "pump-1")];
    let jsonl = [("sink", "jsonl")];

    // Bad CRCs, a silent pump, a port that goes away: each counted.
    rt.block_on(sim.handle.act(Action::CorruptNext(3))).unwrap();
    scrape_until(&mut gw, port, "crc errors counted", |s| {
        s.values(
            "wardgate_device_decode_errors_total",
            &[("device", "pump-1"), ("kind", "crc")],
        ) == [3.0]
    });
    rt.block_on(sim.handle.act(Action::Silent(true))).unwrap();
    scrape_until(&mut gw, port, "timeouts counted", |s| {
        s.values("wardgate_device_timeouts_total", &pump)
            .iter()
            .any(|v| *v > 0.0)
    });
    rt.block_on(sim.handle.act(Action::Silent(false))).unwrap();
    rt.block_on(sim.handle.act(Action::Reopen(Duration::from_millis(300))))
        .unwrap();
    scrape_until(&mut gw, port, "a reconnect, online again", |s| {
        s.values("wardgate_device_reconnects_total", &pump)
            .iter()
            .any(|v| *v > 0.0)
            && s.values("wardgate_device_online", &pump) == [1.0]
    });
    // An occlusion: an alert raised by the infusion pack's rule.
    rt.block_on(sim.handle.set_alarm(SimAlarm::OcclusionDownstream, true))
        .unwrap();
    let raised = [
        ("rule", "pump_occlusion"),
        ("priority", "high"),
        ("transition", "raised"),
    ];
    let s = scrape_until(&mut gw, port, "the occlusion alert counted", |s| {
        s.values("wardgate_rule_alert_transitions_total", &raised) == [1.0]
    });

    // Every family of docs/metrics.md, typed as documented.
    for (family, kind, unit) in [
        ("wardgate_build", "info", ""),
        ("wardgate_process_start_time_seconds", "gauge", "seconds"),
        ("wardgate_device_frames", "counter", ""),
        ("wardgate_device_decode_errors", "counter", ""),
        ("wardgate_device_timeouts", "counter", ""),
        ("wardgate_device_reconnects", "counter", ""),
        ("wardgate_device_online", "gauge", ""),
        ("wardgate_device_readings", "counter", ""),
        ("wardgate_device_last_seen_seconds", "gauge", "seconds"),
        ("wardgate_rules_evaluations", "counter", ""),
        ("wardgate_rule_alert_transitions", "counter", ""),
        ("wardgate_alert_transitions", "counter", ""),
        ("wardgate_alerts", "gauge", ""),
        ("wardgate_events", "counter", ""),
        ("wardgate_sink_sent_records", "counter", ""),
        ("wardgate_sink_acknowledged_records", "counter", ""),
        ("wardgate_sink_retried_records", "counter", ""),
        ("wardgate_sink_quarantined_records", "counter", ""),
        ("wardgate_sink_dropped_records", "counter", ""),
        (
            "wardgate_sink_delivery_latency_seconds",
            "histogram",
            "seconds",
        ),
        ("wardgate_sink_backlog_records", "gauge", ""),
        ("wardgate_sink_backlog_age_seconds", "gauge", "seconds"),
        ("wardgate_spool_file_size_bytes", "gauge", "bytes"),
        ("wardgate_spool_telemetry_bytes", "gauge", "bytes"),
        ("wardgate_spool_max_bytes", "gauge", "bytes"),
        ("wardgate_spool_fill_ratio", "gauge", ""),
        ("wardgate_spool_commits", "counter", ""),
        (
            "wardgate_spool_commit_duration_seconds",
            "histogram",
            "seconds",
        ),
        ("wardgate_spool_evicted", "counter", ""),
        ("wardgate_tasks", "gauge", ""),
        ("wardgate_http_unauthorized", "counter", ""),
    ] {
        assert_eq!(
            s.families.get(family),
            Some(&(kind.to_owned(), unit.to_owned())),
            "{family}"
        );
    }

    // Plausible values.
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(s.value("wardgate_build_info", &version), 1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = s.value("wardgate_process_start_time_seconds", &[]);
    assert!((now - 600.0..=now).contains(&started), "{started} vs {now}");
    let frames = s.value("wardgate_device_frames_total", &pump);
    let readings = s.value("wardgate_device_readings_total", &pump);
    assert!(frames > 3.0 && readings > 0.0, "{frames} {readings}");
    assert!(
        s.value(
            "wardgate_rules_evaluations_total",
            &[("trigger", "measurement")]
        ) > 0.0
    );
    let sent = s.value("wardgate_sink_sent_records_total", &jsonl);
    let acked = s.value("wardgate_sink_acknowledged_records_total", &jsonl);
    assert!(acked > 0.0 && acked <= sent, "{acked} of {sent}");
    for nothing in [
        "wardgate_sink_retried_records_total",
        "wardgate_sink_quarantined_records_total",
        "wardgate_sink_dropped_records_total",
    ] {
        assert_eq!(s.value(nothing, &jsonl), 0.0, "{nothing}");
    }
    // One latency per acknowledged record, each within the run's length.
    assert_eq!(
        s.value("wardgate_sink_delivery_latency_seconds_count", &jsonl),
        acked
    );
    let latency = s.value("wardgate_sink_delivery_latency_seconds_sum", &jsonl);
    assert!(latency >= 0.0 && latency / acked < 60.0, "{latency}");
    let commits = s.value("wardgate_spool_commits_total", &[]);
    assert!(commits > 0.0);
    assert_eq!(
        s.value("wardgate_spool_commit_duration_seconds_count", &[]),
        commits
    );
    assert!(s.value("wardgate_spool_file_size_bytes", &[]) > 0.0);
    let fill = s.value("wardgate_spool_fill_ratio", &[]);
    let held = s.value("wardgate_spool_telemetry_bytes", &[]);
    let bound = s.value("wardgate_spool_max_bytes", &[]);
    assert!(
        bound > 0.0 && (fill - held / bound).abs() < 1e-9,
        "{fill} {held} {bound}"
    );
    let age = s.value(
        "wardgate_sink_backlog_age_seconds",
        &[("sink", "jsonl"), ("lane", "telemetry")],
    );
    assert!((0.0..60.0).contains(&age), "{age}");

    // Acknowledged grows as the sink delivers more.
    scrape_until(&mut gw, port, "more acknowledged", |s| {
        s.value("wardgate_sink_acknowledged_records_total", &jsonl) > acked
    });
    gw.stop();
    rt.block_on(sim.stop());
}
