//! The spool against a trivial reference queue, plus named recovery and
//! eviction cases.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use wardgate_model::{
    AlarmPhase, Alert, AlertId, AlertKind, AlertState, DeviceAlarm, DeviceKind, DeviceRef,
    DeviceState, DeviceStatus, Metric, Priority, Reading, TimeSource, Transition,
};

use super::*;

fn t(secs: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

pub(crate) fn reading(value: f64) -> Event {
    Event::Reading(
        Reading::new(
            t(0),
            TimeSource::Gateway,
            "bed-1".into(),
            None,
            Metric::HeartRate,
            value,
        )
        .unwrap(),
    )
}

pub(crate) fn alert(n: u32) -> Event {
    Event::Alert(Alert {
        id: AlertId(format!("a-{n}").into()),
        rule: "spo2_low".into(),
        subject: "bed-1".into(),
        device: None,
        priority: Priority::High,
        kind: AlertKind::Physiological,
        state: AlertState::Active,
        transition: Transition::Raised,
        at: t(0),
        raised_at: t(0),
        message: "SpO2 88 %".into(),
        escalation_level: 0,
        acknowledged: None,
        cleared_at: None,
        recipient: None,
    })
}

const BIG: SpoolLimits = SpoolLimits {
    max_bytes: u64::MAX,
    max_age: Duration::from_secs(365 * 24 * 3600),
};

fn sinks() -> Vec<String> {
    vec!["mqtt".into(), "influx".into()]
}

#[derive(Debug, Clone)]
enum Op {
    /// true = alert, false = reading.
    Append(Vec<bool>),
    /// sink index, lane, how many of the sink's unacknowledged records to ack.
    Ack(usize, bool, usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(any::<bool>(), 0..6).prop_map(Op::Append),
        4 => (0..2usize, any::<bool>(), 0..8usize).prop_map(|(s, a, n)| Op::Ack(s, a, n)),
        1 => Just(Op::Reopen),
    ]
}

/// The reference: per lane an ordered map seq → event, per sink a cursor.
#[derive(Default)]
struct Model {
    lanes: [BTreeMap<u64, Event>; 2],
    next: [u64; 2],
    cursors: BTreeMap<(usize, usize), u64>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn behaves_like_a_reference_queue(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.redb");
        let names = sinks();
        let mut spool = Spool::open(&path, BIG, &names).unwrap();
        let mut model = Model { next: [1, 1], ..Model::default() };
        let mut counter = 0u32;
        for op in ops {
            match op {
                Op::Append(kinds) => {
                    let events: Vec<Event> = kinds.iter().map(|&is_alert| {
                        counter += 1;
                        if is_alert { alert(counter) } else { reading(f64::from(counter)) }
                    }).collect();
                    spool.append(t(0), &events).unwrap();
                    for e in events {
                        let l = usize::from(!e.is_alert());
                        model.lanes[l].insert(model.next[l], e);
                        model.next[l] += 1;
                    }
                }
                Op::Ack(s, is_alert, n) => {
                    let l = usize::from(!is_alert);
                    let lane = if is_alert { Lane::Alert } else { Lane::Telemetry };
                    let cursor = *model.cursors.get(&(s, l)).unwrap_or(&0);
                    let unacked: Vec<u64> = model.lanes[l].range(cursor + 1..).map(|(k, _)| *k).collect();
                    if let Some(&upto) = unacked.get(n.min(unacked.len().saturating_sub(1)))
                        && n > 0
                    {
                        spool.ack(&names[s], lane, upto).unwrap();
                        model.cursors.insert((s, l), upto);
                    }
                }
                Op::Reopen => {
                    drop(spool);
                    spool = Spool::open(&path, BIG, &names).unwrap();
                }
            }
            for (s, name) in names.iter().enumerate() {
                for (l, lane) in [(0, Lane::Alert), (1, Lane::Telemetry)] {
                    let cursor = *model.cursors.get(&(s, l)).unwrap_or(&0);
                    prop_assert_eq!(spool.cursor(name, lane).unwrap(), cursor);
                    let got: Vec<(u64, Event)> = spool.read(lane, cursor, usize::MAX).unwrap()
                        .into_iter().map(|r| (r.seq, r.event)).collect();
                    let want: Vec<(u64, Event)> = model.lanes[l].range(cursor + 1..)
                        .map(|(k, e)| (*k, e.clone())).collect();
                    prop_assert_eq!(got, want);
                }
            }
            // What every sink passed is deleted; nothing else is.
            let stats = spool.stats().unwrap();
            for (l, count) in [(0, stats.alerts), (1, stats.telemetry)] {
                let min = (0..names.len()).map(|s| *model.cursors.get(&(s, l)).unwrap_or(&0)).min().unwrap();
                prop_assert_eq!(count, model.lanes[l].range(min + 1..).count() as u64);
            }
        }
    }
}

#[test]
fn survives_reopen_without_acks_and_keeps_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.redb");
    let spool = Spool::open(&path, BIG, &sinks()).unwrap();
    let a = spool
        .append(t(0), &[reading(1.0), alert(1), reading(2.0)])
        .unwrap();
    assert_eq!((a.last_alert, a.last_telemetry), (1, 2));
    spool.ack("mqtt", Lane::Telemetry, 2).unwrap();
    spool.ack("influx", Lane::Telemetry, 2).unwrap();
    drop(spool);

    let spool = Spool::open(&path, BIG, &sinks()).unwrap();
    assert_eq!(
        spool.stats().unwrap().telemetry,
        0,
        "acknowledged by all sinks: deleted"
    );
    assert_eq!(
        spool.read(Lane::Alert, 0, 10).unwrap().len(),
        1,
        "unacknowledged alert kept"
    );
    let a = spool.append(t(1), &[reading(3.0)]).unwrap();
    assert_eq!(a.last_telemetry, 3, "sequence numbers are never reused");
}

#[test]
fn telemetry_is_evicted_oldest_first_by_bytes_and_alerts_never() {
    let dir = tempfile::tempdir().unwrap();
    let mut value = Vec::new();
    record::encode(t(0), &reading(1.0), &mut value).unwrap();
    let one = value.len() as u64;
    let limits = SpoolLimits {
        max_bytes: one * 3,
        max_age: BIG.max_age,
    };
    let spool = Spool::open(&dir.path().join("s.redb"), limits, &sinks()).unwrap();
    let events: Vec<Event> = (1..=5)
        .flat_map(|i| [reading(f64::from(i)), alert(i as u32)])
        .collect();
    let a = spool.append(t(0), &events).unwrap();
    assert_eq!(a.evicted, 2);
    let kept: Vec<u64> = spool
        .read(Lane::Telemetry, 0, 10)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(kept, [3, 4, 5]);
    assert_eq!(spool.read(Lane::Alert, 0, 10).unwrap().len(), 5);
    let stats = spool.stats().unwrap();
    assert_eq!((stats.evicted_total, stats.telemetry_bytes), (2, one * 3));
}

#[test]
fn telemetry_older_than_max_age_is_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let limits = SpoolLimits {
        max_bytes: u64::MAX,
        max_age: Duration::from_secs(60),
    };
    let spool = Spool::open(&dir.path().join("s.redb"), limits, &sinks()).unwrap();
    spool.append(t(0), &[reading(1.0), alert(1)]).unwrap();
    spool.append(t(30), &[reading(2.0)]).unwrap();
    let a = spool.append(t(61), &[reading(3.0)]).unwrap();
    assert_eq!(a.evicted, 1);
    let kept: Vec<u64> = spool
        .read(Lane::Telemetry, 0, 10)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(kept, [2, 3]);
    assert_eq!(spool.read(Lane::Alert, 0, 10).unwrap().len(), 1);
}

#[test]
fn a_new_sink_starts_at_the_oldest_record_and_a_removed_one_releases_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let spool = Spool::open(&path, BIG, &["mqtt".to_owned()]).unwrap();
    spool.append(t(0), &[reading(1.0), reading(2.0)]).unwrap();
    drop(spool);
    let spool = Spool::open(&path, BIG, &["mqtt".to_owned(), "jsonl".to_owned()]).unwrap();
    assert_eq!(spool.cursor("jsonl", Lane::Telemetry).unwrap(), 0);
    spool.ack("jsonl", Lane::Telemetry, 2).unwrap();
    assert_eq!(
        spool.stats().unwrap().telemetry,
        2,
        "mqtt has not acknowledged yet"
    );
    drop(spool);
    let spool = Spool::open(&path, BIG, &["jsonl".to_owned()]).unwrap();
    assert_eq!(
        spool.stats().unwrap().telemetry,
        0,
        "the removed sink no longer pins records"
    );
    assert!(matches!(
        spool.cursor("mqtt", Lane::Telemetry),
        Err(SpoolError::UnknownSink(_))
    ));
}

#[tokio::test]
async fn an_unreadable_record_is_counted_logged_once_and_passed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(&dir.path().join("s.redb"), BIG, &sinks()).unwrap());
    spool
        .append(
            t(0),
            &[reading(1.0), reading(2.0), reading(3.0), reading(4.0)],
        )
        .unwrap();
    {
        // Record 2 damaged, record 3 of a version from the future, record 4
        // cut short.
        let tx = spool.db().unwrap().begin_write().unwrap();
        let mut table = tx.open_table(TELEMETRY).unwrap();
        let mut future = table.get(3).unwrap().unwrap().value().to_vec();
        future[8] = record::VERSION + 1;
        let mut short = table.get(4).unwrap().unwrap().value().to_vec();
        short.truncate(12);
        table
            .insert(2, &b"\x01\x02\x03\x04\x05\x06\x07\x08\x02\x00"[..])
            .unwrap();
        table.insert(3, future.as_slice()).unwrap();
        table.insert(4, short.as_slice()).unwrap();
        drop(table);
        tx.commit().unwrap();
    }
    let seqs: Vec<u64> = spool
        .read(Lane::Telemetry, 0, 10)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, [1]);
    let stats = spool.stats().unwrap();
    assert_eq!(
        (stats.corrupt_records, stats.unknown_version_records),
        (3, 1)
    );
    // A reader hands out what can be read and its cursor passes the rest.
    let mut r = SpoolReader::new(Arc::clone(&spool), "mqtt").unwrap();
    let b = r.next_batch(1).await.unwrap().unwrap();
    r.ack(b.lane, b.after, b.last()).await.unwrap();
    assert!(r.next_batch(10).await.unwrap().is_none());
    assert_eq!(spool.cursor("mqtt", Lane::Telemetry).unwrap(), 4);
}

#[tokio::test]
async fn reader_sends_alerts_first_and_moves_the_cursor_only_when_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(&dir.path().join("s.redb"), BIG, &sinks()).unwrap());
    spool
        .append(t(0), &[reading(1.0), reading(2.0), reading(3.0), alert(1)])
        .unwrap();
    let mut r = SpoolReader::new(Arc::clone(&spool), "mqtt").unwrap();
    let first = r.next_batch(10).await.unwrap().unwrap();
    assert_eq!((first.lane, first.records.len()), (Lane::Alert, 1));
    let b1 = r.next_batch(2).await.unwrap().unwrap();
    let b2 = r.next_batch(2).await.unwrap().unwrap();
    assert_eq!((b1.after, b1.last(), b2.after, b2.last()), (0, 2, 2, 3));
    assert!(r.next_batch(2).await.unwrap().is_none());
    // The later batch is confirmed first: the cursor must wait for the earlier one.
    r.ack(Lane::Telemetry, b2.after, b2.last()).await.unwrap();
    assert_eq!(spool.cursor("mqtt", Lane::Telemetry).unwrap(), 0);
    r.ack(Lane::Telemetry, b1.after, b1.last()).await.unwrap();
    assert_eq!(spool.cursor("mqtt", Lane::Telemetry).unwrap(), 3);
    // The alert was never confirmed: a rewind hands it out again.
    r.rewind();
    let again = r.next_batch(10).await.unwrap().unwrap();
    assert_eq!((again.lane, again.records[0].seq), (Lane::Alert, 1));
}

/// Every kind of event as wardgate writes it, with optional fields set and
/// unset.
fn every_kind() -> Vec<Event> {
    let device = DeviceRef {
        id: "pump-1".into(),
        kind: DeviceKind::Pump,
    };
    vec![
        reading(72.0),
        Event::Reading(
            Reading::new(
                t(1),
                TimeSource::Device,
                "bed-2".into(),
                Some(device.clone()),
                Metric::custom("line_temp", "Cel", None),
                21.5,
            )
            .unwrap(),
        ),
        alert(1),
        Event::DeviceStatus(DeviceStatus {
            at: t(2),
            subject: "bed-2".into(),
            device: device.clone(),
            state: DeviceState::Offline,
            reason: Some("no reply to 3 status polls".into()),
        }),
        Event::DeviceAlarm(DeviceAlarm {
            at: t(3),
            subject: "bed-2".into(),
            device,
            alarm: "occlusion_downstream".into(),
            phase: AlarmPhase::Start,
            kind: AlertKind::Technical,
            raw: None,
        }),
    ]
}

#[test]
fn every_kind_of_event_reads_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("s.redb"), BIG, &sinks()).unwrap();
    let events = every_kind();
    spool.append(t(9), &events).unwrap();
    let mut back = spool.read(Lane::Alert, 0, 10).unwrap();
    back.extend(spool.read(Lane::Telemetry, 0, 10).unwrap());
    for r in &back {
        assert!(events.contains(&r.event), "{:?}", r.event);
        // What is kept as JSON is exactly the JSONL sink's line.
        if let Some(json) = &r.json {
            assert_eq!(&json[..], serde_json::to_vec(&r.event).unwrap());
        }
    }
    assert_eq!(back.len(), events.len());
}

#[test]
fn the_fast_decoder_reads_back_every_kind_of_event_like_serde() {
    for event in every_kind() {
        let json = serde_json::to_vec(&event).unwrap();
        assert!(json.starts_with(br#"{"type":""#), "the tag comes first");
        assert_eq!(record::decode_json(&json).unwrap(), event);
        // The generic path, for JSON written with the tag elsewhere.
        let mut moved: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&json).unwrap();
        let tag = moved.remove("type").unwrap();
        moved.insert("type".into(), tag);
        let moved = serde_json::to_vec(&moved).unwrap();
        assert!(!moved.starts_with(br#"{"type":""#));
        assert_eq!(record::decode_json(&moved).unwrap(), event);
    }
}

proptest! {
    /// A damaged v2 record is an error, never a panic.
    #[test]
    fn a_damaged_record_never_panics(cut in 0usize..80, flip in 0usize..80, byte in any::<u8>(), which in 0usize..5) {
        let mut value = Vec::new();
        record::encode(t(0), &every_kind()[which], &mut value).unwrap();
        if let Some(b) = value.get_mut(flip) {
            *b = byte;
        }
        value.truncate(cut.max(9));
        let _ = record::decode(Lane::Telemetry, 1, &value);
    }

    /// A corrupt record is an error, never a panic.
    #[test]
    fn the_fast_decoder_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200), kind in 0usize..5) {
        let prefix: &[u8] = match kind {
            0 => br#"{"type":"reading","#,
            1 => br#"{"type":"alert","#,
            2 => br#"{"type":"device_status","#,
            3 => br#"{"type":"device_alarm","#,
            _ => b"",
        };
        let mut json = prefix.to_vec();
        json.extend(tail);
        let _ = record::decode_json(&json);
    }
}

#[test]
fn backlog_counts_what_each_sink_has_not_confirmed_and_since_when() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(&dir.path().join("s.redb"), BIG, &sinks()).unwrap();
    spool
        .append(t(0), &[reading(60.0), reading(61.0), alert(1)])
        .unwrap();
    spool.append(t(5), &[reading(62.0)]).unwrap();
    // mqtt confirmed telemetry 1..=2 and its alert; influx nothing.
    spool.ack("mqtt", Lane::Telemetry, 2).unwrap();
    spool.ack("mqtt", Lane::Alert, 1).unwrap();
    let backlog = spool.backlog().unwrap();
    let get = |sink: &str, lane: Lane| {
        backlog
            .iter()
            .find(|b| b.sink == sink && b.lane == lane)
            .map(|b| (b.records, b.since))
            .unwrap()
    };
    assert_eq!(get("mqtt", Lane::Telemetry), (1, Some(t(5))));
    assert_eq!(get("mqtt", Lane::Alert), (0, None));
    assert_eq!(get("influx", Lane::Telemetry), (3, Some(t(0))));
    assert_eq!(get("influx", Lane::Alert), (1, Some(t(0))));
    assert_eq!(backlog.len(), 4);
}

#[test]
fn open_alerts_follow_the_alert_lane_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.redb");
    let cleared = |n: u32| {
        let Event::Alert(mut a) = alert(n) else {
            unreachable!()
        };
        a.state = AlertState::Cleared;
        a.transition = Transition::Cleared;
        Event::Alert(a)
    };
    {
        let spool = Spool::open(&path, BIG, &sinks()).unwrap();
        spool
            .append(t(1), &[alert(1), reading(70.0), alert(2)])
            .unwrap();
        spool.append(t(2), &[cleared(1)]).unwrap();
        // Delivered and deleted from the lane: still open.
        for sink in sinks() {
            spool.ack(&sink, Lane::Alert, 3).unwrap();
        }
        spool.sync().unwrap();
    }
    let spool = Spool::open(&path, BIG, &sinks()).unwrap();
    let open = spool.open_alerts().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id.0.as_ref(), "a-2");
    assert_eq!(open[0].message.as_ref(), "SpO2 88 %");
}

#[test]
fn only_a_corrupt_spool_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.redb");
    let held = Spool::open(&path, BIG, &sinks()).unwrap();
    // Held by another opener (another wardgate): an error, the file stays.
    assert!(Spool::open_recovering(&path, BIG, &sinks(), t(0)).is_err());
    drop(held);
    let entries = || std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries(), 1);
    // Torn: the file ends where its header says there is more.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let (spool, aside) = Spool::open_recovering(&path, BIG, &sinks(), t(0)).unwrap();
    let aside = aside.expect("set aside");
    assert!(aside.path.exists());
    assert!(
        aside
            .path
            .to_string_lossy()
            .ends_with(".corrupt-20270115T080000Z"),
        "{aside:?}"
    );
    spool.append(t(1), &[reading(70.0)]).unwrap();
}

/// The records of `gateway/testdata/spool-v1.redb` (written by the test
/// `write_v1_fixture` at commit 4f5baab): every kind of event, two alerts
/// still open and one silence in force.
pub(super) fn v1_fixture_events() -> Vec<Event> {
    let mut events = every_kind();
    events.push(alert(2));
    events.push(Event::Silence(wardgate_model::Silence::new(
        wardgate_model::SilenceTarget::Subject("bed-2".into()),
        t(4),
        t(604),
        &wardgate_model::Actor {
            by: "nurse-a".into(),
            via: Some("http".into()),
        },
    )));
    events
}

mod migration;
