use super::*;
use crate::modbus::plan::{PlanLimits, Span, plan};
use crate::modbus::register::{ByteOrder, DataType};

fn entry(metric: Metric, data_type: DataType, scale: f64) -> Entry {
    Entry {
        metric,
        decoding: Decoding {
            data_type,
            order: ByteOrder::Abcd,
            bit: None,
            scale,
            offset: 0.0,
        },
    }
}

const TIMING: Timing = Timing {
    poll_interval: Duration::from_secs(1),
    phase: Duration::ZERO,
    retries: 1,
    failures_before_unreachable: 2,
    backoff_min: Duration::from_secs(2),
    backoff_max: Duration::from_secs(8),
    exceptions_alarm_after: Duration::from_secs(30),
};

/// room_temp i16 /10 at input 0, humidity u16 at input 1, door at discrete input 0.
fn poller(now: Instant) -> Poller {
    poller_with(TIMING, now)
}

fn poller_with(timing: Timing, now: Instant) -> Poller {
    let entries = vec![
        entry(Metric::RoomTemp, DataType::I16, 0.1),
        entry(Metric::Humidity, DataType::U16, 1.0),
        entry(Metric::custom("door_open", "1", None), DataType::Bool, 1.0),
    ];
    let spans = [
        Span {
            table: Table::InputRegister,
            address: 0,
            len: 1,
        },
        Span {
            table: Table::InputRegister,
            address: 1,
            len: 1,
        },
        Span {
            table: Table::DiscreteInput,
            address: 0,
            len: 1,
        },
    ];
    Poller::new(entries, plan(&spans, PlanLimits::default()), timing, now)
}

fn events(p: &mut Poller) -> Vec<PollerEvent> {
    std::iter::from_fn(|| p.poll_event()).collect()
}

fn values(p: &mut Poller) -> Vec<(String, f64)> {
    events(p)
        .into_iter()
        .filter_map(|e| match e {
            PollerEvent::Value { metric, value, .. } => Some((metric.name().to_owned(), value)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cycle_reads_every_block_once_and_decodes_against_its_own_block() {
    let t0 = Instant::now();
    let mut p = poller(t0);
    // Block 0: discrete inputs [0, 1).
    assert_eq!(
        p.poll_request(t0).map(|b| (b.table, b.start, b.count)),
        Some((Table::DiscreteInput, 0, 1))
    );
    // Nothing else until it is answered.
    assert!(p.poll_request(t0).is_none());
    p.handle_outcome(t0, Outcome::Bits(vec![true]));
    assert_eq!(
        p.poll_request(t0).map(|b| (b.table, b.start, b.count)),
        Some((Table::InputRegister, 0, 2))
    );
    // 0x00D7 = 215 -> 21.5 Cel; 0x0037 = 55 %.
    p.handle_outcome(t0, Outcome::Words(vec![0x00D7, 0x0037]));
    let got = values(&mut p);
    assert_eq!(got[0], ("door_open".to_owned(), 1.0));
    assert_eq!(got[2], ("humidity".to_owned(), 55.0));
    assert!((got[1].1 - 21.5).abs() < 1e-9);
    // Cycle done: next one at t0 + 1 s.
    assert!(p.poll_request(t0 + Duration::from_millis(999)).is_none());
    assert_eq!(p.poll_timeout(), t0 + Duration::from_secs(1));
    assert!(p.poll_request(t0 + Duration::from_secs(1)).is_some());
}

#[test]
fn the_first_reply_reports_online_once() {
    let t0 = Instant::now();
    let mut p = poller(t0);
    p.poll_request(t0);
    p.handle_outcome(t0, Outcome::Bits(vec![false]));
    p.poll_request(t0);
    p.handle_outcome(t0, Outcome::Words(vec![1, 2]));
    let online = events(&mut p)
        .into_iter()
        .filter(|e| *e == PollerEvent::Online)
        .count();
    assert_eq!(online, 1);
}

#[test]
fn timeouts_retry_then_fail_the_cycle_then_go_offline_and_back_off() {
    let t0 = Instant::now();
    let mut p = poller(t0);
    let mut now = t0;
    for cycle in 0..2 {
        // attempt + 1 retry, both time out; the second block is never asked.
        for _ in 0..2 {
            assert_eq!(
                p.poll_request(now).map(|b| b.table),
                Some(Table::DiscreteInput),
                "cycle {cycle}"
            );
            now += Duration::from_millis(100);
            p.handle_outcome(now, Outcome::Timeout);
        }
        if cycle == 0 {
            assert!(events(&mut p).is_empty());
            // Still on the schedule: t0 + 1 s.
            assert_eq!(p.poll_timeout(), t0 + Duration::from_secs(1));
            now = p.poll_timeout();
        }
    }
    let ev = events(&mut p);
    assert!(
        matches!(&ev[..], [PollerEvent::Offline { reason }] if reason.starts_with("sensor unreachable: 2 failed polls in a row, last: no reply")),
        "{ev:?}"
    );
    // Backing off: between backoff_min and 2 * backoff_min (jitter adds < the delay).
    let wait = p.poll_timeout() - now;
    assert!(
        wait >= Duration::from_secs(2) && wait < Duration::from_secs(4),
        "{wait:?}"
    );
    assert_eq!(p.counters().timeouts, 4);
    // Recovery: one reply brings it online, once.
    now = p.poll_timeout();
    p.poll_request(now);
    p.handle_outcome(now, Outcome::Bits(vec![true]));
    assert_eq!(events(&mut p)[0], PollerEvent::Online);
}

#[test]
fn exceptions_are_values_counted_per_code() {
    let t0 = Instant::now();
    let mut p = poller(t0);
    p.poll_request(t0);
    // Illegal data address: the device answered; no retry, go on to the next block.
    p.handle_outcome(t0, Outcome::Exception(0x02));
    assert_eq!(
        p.poll_request(t0).map(|b| b.table),
        Some(Table::InputRegister)
    );
    // Busy: retried once, then skipped; the device still counts as reachable.
    p.handle_outcome(t0, Outcome::Exception(0x06));
    assert_eq!(
        p.poll_request(t0).map(|b| b.table),
        Some(Table::InputRegister)
    );
    p.handle_outcome(t0, Outcome::Exception(0x06));
    assert!(p.poll_request(t0).is_none());
    assert_eq!(
        p.counters().exceptions,
        BTreeMap::from([(0x02, 1), (0x06, 2)])
    );
    let ev = events(&mut p);
    assert_eq!(
        ev[0],
        PollerEvent::Exception {
            table: Table::DiscreteInput,
            start: 0,
            code: 2
        }
    );
    assert_eq!(ev[1], PollerEvent::Online);
    assert!(!ev.iter().any(|e| matches!(e, PollerEvent::Offline { .. })));
}

#[test]
fn a_device_answering_only_with_exceptions_is_reported_once_then_recovers() {
    let t0 = Instant::now();
    let mut p = poller(t0);
    let mut now = t0;
    let mut only = 0;
    // Every block answers "illegal data address" for 40 s of 1 s cycles.
    while now <= t0 + Duration::from_secs(40) {
        while p.poll_request(now).is_some() {
            p.handle_outcome(now, Outcome::Exception(0x02));
        }
        for e in events(&mut p) {
            match e {
                PollerEvent::ExceptionsOnly { last_code } => {
                    assert_eq!(last_code, 0x02);
                    // Not before the configured 30 s have passed.
                    assert!(now >= t0 + TIMING.exceptions_alarm_after, "{now:?}");
                    only += 1;
                }
                PollerEvent::Value { .. } | PollerEvent::Offline { .. } => {
                    panic!("unexpected {e:?}")
                }
                _ => {}
            }
        }
        now = p.poll_timeout();
    }
    assert_eq!(only, 1, "reported once, not every cycle");
    // The device answers properly again: the condition ends, once.
    p.poll_request(now);
    p.handle_outcome(now, Outcome::Bits(vec![false]));
    let ev = events(&mut p);
    assert_eq!(
        ev.iter()
            .filter(|e| **e == PollerEvent::ExceptionsEnded)
            .count(),
        1,
        "{ev:?}"
    );
}

#[test]
fn gateway_target_failures_count_as_unreachable() {
    let t0 = Instant::now();
    let mut p = poller(t0);
    let mut now = t0;
    for _ in 0..2 {
        for _ in 0..2 {
            assert!(p.poll_request(now).is_some());
            p.handle_outcome(now, Outcome::Exception(0x0B));
        }
        now = p.poll_timeout();
    }
    assert!(
        events(&mut p)
            .iter()
            .any(|e| matches!(e, PollerEvent::Offline { reason } if reason.contains("0x0B")))
    );
}

#[test]
fn short_replies_are_decode_errors_not_panics() {
    let t0 = Instant::now();
    let mut p = poller(t0);
    p.poll_request(t0);
    p.handle_outcome(t0, Outcome::Bits(vec![]));
    p.poll_request(t0);
    p.handle_outcome(t0, Outcome::Words(vec![0x00D7]));
    let ev = events(&mut p);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, PollerEvent::DecodeFailed { .. }))
            .count(),
        2
    );
    assert_eq!(p.counters().decode_errors, 2);
}

#[test]
fn an_unasked_outcome_is_ignored() {
    let t0 = Instant::now();
    let mut p = poller(t0);
    p.handle_outcome(t0, Outcome::Words(vec![1, 2]));
    assert!(events(&mut p).is_empty());
    assert_eq!(p.counters().replies, 0);
}

#[test]
fn missed_ticks_are_skipped() {
    let t0 = Instant::now();
    let mut p = poller(t0);
    p.poll_request(t0);
    p.handle_outcome(t0, Outcome::Bits(vec![true]));
    p.poll_request(t0);
    // The reply took 2.5 intervals: the next cycle is at 3 s, not 1 s.
    p.handle_outcome(t0 + Duration::from_millis(2500), Outcome::Words(vec![1, 2]));
    assert_eq!(p.poll_timeout(), t0 + Duration::from_secs(3));
}

/// Answers every request due at `now` (a healthy device, replying at once).
fn answer_cycle(p: &mut Poller, now: Instant) -> usize {
    let mut asked = 0;
    while let Some(block) = p.poll_request(now) {
        asked += 1;
        let n = usize::from(block.count);
        let outcome = match block.table {
            Table::DiscreteInput | Table::Coil => Outcome::Bits(vec![false; n]),
            Table::InputRegister | Table::HoldingRegister => Outcome::Words(vec![0; n]),
        };
        p.handle_outcome(now, outcome);
    }
    asked
}

#[test]
fn devices_poll_at_their_own_stable_phase_and_keep_the_interval() {
    let t0 = Instant::now();
    let interval = TIMING.poll_interval;
    let mut firsts = Vec::new();
    for i in 0..20 {
        let id = format!("sensor-{i}");
        let phase = crate::jitter::phase(&id, crate::jitter::DEFAULT_JITTER, interval);
        let mut p = poller_with(Timing { phase, ..TIMING }, t0);
        let first = p.poll_timeout();
        assert_eq!(first, t0 + phase, "{id}");
        // Not before its phase; then a full cycle each interval, on phase.
        if phase > Duration::ZERO {
            assert!(
                p.poll_request(t0 + phase / 2).is_none(),
                "{id}: before its phase"
            );
        }
        for k in 0..3 {
            let due = first + interval * k;
            assert_eq!(p.poll_timeout(), due, "{id}, cycle {k}");
            assert_eq!(answer_cycle(&mut p, due), 2, "{id}, cycle {k}");
        }
        firsts.push(first);
    }
    firsts.sort_unstable();
    firsts.dedup();
    // Twenty devices over twenty slots: spread, not all in one.
    assert!(
        firsts.len() >= 10,
        "devices share a phase: {} phases",
        firsts.len()
    );
}

fn any_outcome() -> impl proptest::strategy::Strategy<Value = Outcome> {
    use proptest::prelude::*;
    prop_oneof![
        proptest::collection::vec(any::<u16>(), 0..4).prop_map(Outcome::Words),
        proptest::collection::vec(any::<bool>(), 0..3).prop_map(Outcome::Bits),
        any::<u8>().prop_map(Outcome::Exception),
        Just(Outcome::Timeout),
        Just(Outcome::Transport("reset".into())),
        Just(Outcome::OutOfSync("tid".into())),
    ]
}

proptest::proptest! {
    /// Whatever the device does: no panic, values only for the entries of
    /// the block that was answered, and online/offline strictly alternate.
    #[test]
    fn arbitrary_outcomes_keep_the_invariants(
        steps in proptest::collection::vec((any_outcome(), 0u64..3000), 0..60)
    ) {
        let t0 = Instant::now();
        let mut p = poller(t0);
        let mut now = t0;
        let mut last_state: Option<bool> = None;
        for (outcome, advance_ms) in steps {
            now += Duration::from_millis(advance_ms);
            let asked: Option<Vec<usize>> = p
                .poll_request(now)
                .map(|b| b.members.iter().map(|m| m.0).collect());
            p.handle_outcome(now, outcome);
            for ev in events(&mut p) {
                match ev {
                    PollerEvent::Value { entry, value, .. } => {
                        proptest::prop_assert!(asked.as_ref().is_some_and(|a| a.contains(&entry)));
                        proptest::prop_assert!(value.is_finite());
                    }
                    PollerEvent::Online => {
                        proptest::prop_assert_ne!(last_state, Some(true));
                        last_state = Some(true);
                    }
                    PollerEvent::Offline { .. } => {
                        proptest::prop_assert_ne!(last_state, Some(false));
                        last_state = Some(false);
                    }
                    _ => {}
                }
            }
            proptest::prop_assert!(p.poll_timeout() >= t0);
        }
    }
}
