//! A spool written by the gateway before records v2
//! (`gateway/testdata/spool-v1.redb`, see `spool-v1.md` beside it) read by
//! this one: every record, through every sink's encoding, with new records
//! appended after the old ones.

use std::path::Path;

use super::*;
use crate::lineproto::{self, Identity};
use crate::mqtt::Topics;
use crate::sinks::jsonl::{JsonlConfig, JsonlSink, encode_line};
use crate::sinks::mqtt::{TelemetryFormat, messages};
use crate::sinks::{Sink, test_context};

fn fixture(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("spool.redb");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/spool-v1.redb"),
        &path,
    )
    .unwrap();
    path
}

fn names() -> Vec<String> {
    vec!["jsonl".to_owned(), "mqtt".to_owned(), "influx".to_owned()]
}

fn all(spool: &Spool) -> Vec<Record> {
    let mut records = spool.read(Lane::Alert, 0, 100).unwrap();
    records.extend(spool.read(Lane::Telemetry, 0, 100).unwrap());
    records
}

#[tokio::test]
async fn reads_every_v1_record_through_every_sink() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path());
    let spool = Arc::new(Spool::open(&path, BIG, &names()).unwrap());
    let expected = v1_fixture_events();
    let records = all(&spool);
    let events: Vec<&Event> = records.iter().map(|r| &r.event).collect();
    let mut want: Vec<&Event> = expected.iter().filter(|e| e.is_alert()).collect();
    want.extend(expected.iter().filter(|e| !e.is_alert()));
    assert_eq!(events, want);
    assert_eq!(spool.stats().unwrap().corrupt_records, 0);

    // JSONL: the same line as the event encoded now.
    for r in &records {
        let mut line = Vec::new();
        encode_line(r, &mut line).unwrap();
        let mut now = serde_json::to_vec(&r.event).unwrap();
        now.push(b'\n');
        assert_eq!(line, now);
    }
    // MQTT, both telemetry formats: what today's encoder makes of the events.
    let id = Identity {
        site: "s".into(),
        ward: "w".into(),
        gateway: "g".into(),
    };
    let topics = Topics::new("wardgate", "s", "w", "g");
    let fresh: Vec<Record> = records
        .iter()
        .map(|r| Record::new(r.lane, r.seq, r.committed_at, r.event.clone()))
        .collect();
    for format in [TelemetryFormat::Line, TelemetryFormat::Json] {
        assert_eq!(
            messages(&records, &id, &topics, format),
            messages(&fresh, &id, &topics, format)
        );
    }
    // InfluxDB: every record is valid line protocol.
    for r in &records {
        let mut line = String::new();
        lineproto::encode(&r.event, &id, &mut line);
        let parsed: Vec<_> = influxdb_line_protocol::parse_lines(&line).collect();
        assert!(
            !parsed.is_empty() && parsed.iter().all(Result::is_ok),
            "{line}"
        );
    }
    // The open alerts and the silence come back.
    assert_eq!(spool.open_alerts().unwrap().len(), 2);
    assert_eq!(spool.open_silences().unwrap().len(), 1);

    // New records follow the old ones in the same lanes.
    spool.append(t(20), &every_kind()).unwrap();
    let mixed = all(&spool);
    assert_eq!(mixed.len(), records.len() + every_kind().len());
    for e in every_kind() {
        assert!(
            mixed
                .iter()
                .any(|r| r.event == e && r.json.is_none() == matches!(e, Event::Reading(_)))
        );
    }

    // And a real JSONL sink writes the lot.
    let out = dir.path().join("out.jsonl");
    let sink = JsonlSink::open("jsonl", &JsonlConfig::new(&out))
        .await
        .unwrap();
    let reader = SpoolReader::new(Arc::clone(&spool), "jsonl").unwrap();
    let drain = tokio_util::sync::CancellationToken::new();
    drain.cancel();
    let written = sink.run(test_context(reader, drain)).await.unwrap();
    assert_eq!(written, mixed.len() as u64);
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mixed_events: Vec<Event> = mixed.into_iter().map(|r| r.event).collect();
    assert_eq!(lines, mixed_events);
}
