//! The poll schedule of one Modbus device as a state machine that is given
//! the time: which request is due (`poll_request`), what a reply means
//! (`handle_outcome`), when to wake (`poll_timeout`), what to report
//! (`poll_event`). It never reads the clock and never does I/O, so the TCP
//! shell, the RTU bus shell and the tests drive the same logic.
//!
//! Invariants: a request's reply is decoded against the block it was sent
//! for and nothing else; one device's failures change only its own schedule;
//! a device is reported offline once after `failures_before_unreachable`
//! failed cycles in a row and online once on its next reply; a device that
//! answers but only with exceptions for `exceptions_alarm_after` is reported
//! once (`ExceptionsOnly`) and once more when a value decodes again.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use wardgate_model::Metric;

use super::plan::ReadBlock;
use super::register::{DecodeError, Decoding, Table};

/// One map entry, resolved for polling.
#[derive(Debug, Clone)]
pub struct Entry {
    pub metric: Metric,
    pub decoding: Decoding,
}

/// Timing of one device's schedule.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub poll_interval: Duration,
    pub retries: u32,
    pub failures_before_unreachable: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Exceptions without a single value for this long: a technical condition.
    pub exceptions_alarm_after: Duration,
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Register words, first address first.
    Words(Vec<u16>),
    /// Coils or discrete inputs, first address first.
    Bits(Vec<bool>),
    /// The device answered with a Modbus exception (code per the spec).
    Exception(u8),
    /// No reply within the timeout.
    Timeout,
    /// The link failed (connect refused, closed, I/O error).
    Transport(String),
    /// A reply arrived that does not belong to the request (transaction id,
    /// unit id or function code differ); it was discarded.
    OutOfSync(String),
}

/// The Modbus exception codes (Modbus Application Protocol 1.1b3, §7).
pub fn exception_name(code: u8) -> &'static str {
    match code {
        0x01 => "illegal function",
        0x02 => "illegal data address",
        0x03 => "illegal data value",
        0x04 => "server device failure",
        0x05 => "acknowledge",
        0x06 => "server device busy",
        0x08 => "memory parity error",
        0x0A => "gateway path unavailable",
        0x0B => "gateway target device failed to respond",
        _ => "unknown exception",
    }
}

/// What the poller reports.
#[derive(Debug, Clone, PartialEq)]
pub enum PollerEvent {
    /// A decoded value of map entry `entry`.
    Value {
        entry: usize,
        metric: Metric,
        value: f64,
    },
    /// An entry's raw data gave no value (counted; the others still report).
    DecodeFailed { entry: usize, error: DecodeError },
    /// The device answered again after being unknown or unreachable.
    Online,
    /// `failures_before_unreachable` cycles in a row got no usable reply.
    Offline { reason: String },
    /// The device answered a request with an exception (a value, not a link failure).
    Exception { table: Table, start: u16, code: u8 },
    /// The device has answered with exceptions only, no value at all, for
    /// `exceptions_alarm_after`: reachable yet useless, it must not look healthy.
    ExceptionsOnly { last_code: u8 },
    /// A value decoded again after [`PollerEvent::ExceptionsOnly`].
    ExceptionsEnded,
}

/// Per-device counts since start; low-cardinality, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub replies: u64,
    pub timeouts: u64,
    pub transport_errors: u64,
    pub out_of_sync: u64,
    pub decode_errors: u64,
    /// Exception responses by exception code.
    pub exceptions: BTreeMap<u8, u64>,
}

impl Counters {
    /// The figures `/metrics` shows per device (exceptions are answers,
    /// not decode errors).
    pub fn totals(&self) -> crate::metrics::DeviceTotals {
        crate::metrics::DeviceTotals {
            frames: self.replies,
            timeouts: self.timeouts,
            decode_errors: [
                ("register", self.decode_errors),
                ("out_of_sync", self.out_of_sync),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Unknown,
    Online,
    Offline,
}

#[derive(Debug, Clone, Copy)]
struct Cursor {
    block: usize,
    attempt: u32,
    due: Instant,
    in_flight: bool,
}

/// The sans-IO poll schedule of one device.
#[derive(Debug)]
pub struct Poller {
    entries: Vec<Entry>,
    plan: Vec<ReadBlock>,
    timing: Timing,
    next_cycle: Instant,
    cycle_start: Instant,
    cursor: Option<Cursor>,
    failed_cycles: u32,
    reach: Reach,
    last_error: String,
    backoff: ExponentialBackoff,
    counters: Counters,
    events: VecDeque<PollerEvent>,
    /// Since when every answer was an exception (reset by a decoded value),
    /// and the last code.
    exceptions_since: Option<(Instant, u8)>,
    /// `ExceptionsOnly` was reported and not yet ended.
    exceptions_only: bool,
}

impl Poller {
    /// A poller whose first cycle is due at `now`. `plan` indexes `entries`.
    pub fn new(entries: Vec<Entry>, plan: Vec<ReadBlock>, timing: Timing, now: Instant) -> Self {
        Self {
            entries,
            plan,
            timing,
            next_cycle: now,
            cycle_start: now,
            cursor: None,
            failed_cycles: 0,
            reach: Reach::Unknown,
            last_error: String::new(),
            backoff: new_backoff(timing),
            counters: Counters::default(),
            events: VecDeque::new(),
            exceptions_since: None,
            exceptions_only: false,
        }
    }

    pub fn plan(&self) -> &[ReadBlock] {
        &self.plan
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// When the next request is due (may be in the past: then poll now).
    pub fn poll_timeout(&self) -> Instant {
        self.cursor.map_or(self.next_cycle, |c| c.due)
    }

    /// The request to send now, if one is due. The caller must answer it
    /// with [`Poller::handle_outcome`] before asking again.
    pub fn poll_request(&mut self, now: Instant) -> Option<&ReadBlock> {
        if self.plan.is_empty() {
            return None;
        }
        if self.cursor.is_none() && now >= self.next_cycle {
            self.cycle_start = self.next_cycle;
            self.cursor = Some(Cursor {
                block: 0,
                attempt: 0,
                due: self.next_cycle,
                in_flight: false,
            });
        }
        let cursor = self.cursor.as_mut()?;
        if cursor.in_flight || cursor.due > now {
            return None;
        }
        cursor.in_flight = true;
        self.counters.requests += 1;
        self.plan.get(cursor.block)
    }

    /// The result of the request [`Poller::poll_request`] returned.
    pub fn handle_outcome(&mut self, now: Instant, outcome: Outcome) {
        let Some(cursor) = self.cursor.filter(|c| c.in_flight) else {
            return; // nothing asked: ignore rather than misassign
        };
        let block = cursor.block;
        let retry = |this: &mut Self| {
            if cursor.attempt < this.timing.retries {
                this.cursor = Some(Cursor {
                    block,
                    attempt: cursor.attempt + 1,
                    due: now,
                    in_flight: false,
                });
                true
            } else {
                false
            }
        };
        match outcome {
            Outcome::Words(words) => {
                self.counters.replies += 1;
                self.reached();
                self.decode(block, &Raw::Words(&words));
                self.next_block(now, block);
            }
            Outcome::Bits(bits) => {
                self.counters.replies += 1;
                self.reached();
                self.decode(block, &Raw::Bits(&bits));
                self.next_block(now, block);
            }
            Outcome::Exception(code) => {
                self.counters.replies += 1;
                *self.counters.exceptions.entry(code).or_default() += 1;
                let b = &self.plan[block];
                self.events.push_back(PollerEvent::Exception {
                    table: b.table,
                    start: b.start,
                    code,
                });
                // A gateway's "target did not answer" is unreachability, below.
                if !matches!(code, 0x0A | 0x0B) {
                    let since = self.exceptions_since.map_or(now, |(t, _)| t);
                    self.exceptions_since = Some((since, code));
                }
                match code {
                    // The sensor behind a gateway did not answer: as good as a timeout.
                    0x0A | 0x0B => {
                        if !retry(self) {
                            self.fail(
                                now,
                                format!("exception 0x{code:02X} ({})", exception_name(code)),
                            );
                        }
                    }
                    // Busy / still working: the device is there; ask again if allowed.
                    0x05 | 0x06 => {
                        self.reached();
                        if !retry(self) {
                            self.next_block(now, block);
                        }
                    }
                    // The device answered; this block yields nothing this cycle.
                    _ => {
                        self.reached();
                        self.next_block(now, block);
                    }
                }
            }
            Outcome::Timeout | Outcome::Transport(_) | Outcome::OutOfSync(_) => {
                let reason = match &outcome {
                    Outcome::Timeout => {
                        self.counters.timeouts += 1;
                        "no reply within the timeout".to_owned()
                    }
                    Outcome::Transport(e) => {
                        self.counters.transport_errors += 1;
                        format!("link error: {e}")
                    }
                    Outcome::OutOfSync(e) => {
                        self.counters.out_of_sync += 1;
                        format!("reply out of sync, discarded: {e}")
                    }
                    _ => String::new(),
                };
                if !retry(self) {
                    self.fail(now, reason);
                }
            }
        }
    }

    /// The next thing to report, if any.
    pub fn poll_event(&mut self) -> Option<PollerEvent> {
        self.events.pop_front()
    }

    fn decode(&mut self, block: usize, raw: &Raw<'_>) {
        let b = &self.plan[block];
        for &(entry, offset) in &b.members {
            let e = &self.entries[entry];
            let off = usize::from(offset);
            let result = match raw {
                Raw::Words(w) => {
                    let n = usize::from(e.decoding.data_type.words());
                    w.get(off..off + n)
                        .ok_or(DecodeError::WrongLength {
                            what: "registers",
                            expected: off + n,
                            got: w.len(),
                        })
                        .and_then(|s| e.decoding.decode_words(s))
                }
                Raw::Bits(bits) => bits
                    .get(off..=off)
                    .ok_or(DecodeError::WrongLength {
                        what: "bits",
                        expected: off + 1,
                        got: bits.len(),
                    })
                    .and_then(|s| e.decoding.decode_bits(s)),
            };
            match result {
                Ok(value) => {
                    self.events.push_back(PollerEvent::Value {
                        entry,
                        metric: e.metric.clone(),
                        value,
                    });
                    self.exceptions_since = None;
                    if std::mem::take(&mut self.exceptions_only) {
                        self.events.push_back(PollerEvent::ExceptionsEnded);
                    }
                }
                Err(error) => {
                    self.counters.decode_errors += 1;
                    self.events
                        .push_back(PollerEvent::DecodeFailed { entry, error });
                }
            }
        }
    }

    fn reached(&mut self) {
        self.failed_cycles = 0;
        if self.reach != Reach::Online {
            self.reach = Reach::Online;
            self.backoff = new_backoff(self.timing);
            self.events.push_back(PollerEvent::Online);
        }
    }

    fn next_block(&mut self, now: Instant, block: usize) {
        if block + 1 < self.plan.len() {
            self.cursor = Some(Cursor {
                block: block + 1,
                attempt: 0,
                due: now,
                in_flight: false,
            });
        } else {
            self.end_cycle(now, false);
        }
    }

    /// A request got no usable reply even after its retries: the device is
    /// not answering, so the rest of this cycle is skipped rather than spend
    /// more timeouts (on a shared bus they would be other devices' time).
    fn fail(&mut self, now: Instant, reason: String) {
        self.failed_cycles = self.failed_cycles.saturating_add(1);
        self.last_error = reason;
        if self.failed_cycles >= self.timing.failures_before_unreachable
            && self.reach != Reach::Offline
        {
            self.reach = Reach::Offline;
            self.events.push_back(PollerEvent::Offline {
                reason: format!(
                    "sensor unreachable: {} failed polls in a row, last: {}",
                    self.failed_cycles, self.last_error
                ),
            });
        }
        self.end_cycle(now, true);
    }

    fn end_cycle(&mut self, now: Instant, failed: bool) {
        self.cursor = None;
        if let Some((since, last_code)) = self.exceptions_since
            && !self.exceptions_only
            && now.saturating_duration_since(since) >= self.timing.exceptions_alarm_after
        {
            self.exceptions_only = true;
            self.events
                .push_back(PollerEvent::ExceptionsOnly { last_code });
        }
        if failed && self.reach == Reach::Offline {
            // Unreachable: back off (capped, jittered) instead of the schedule.
            let delay = self.backoff.next().unwrap_or(self.timing.backoff_max);
            self.next_cycle = now + delay;
            return;
        }
        // The next tick of the schedule after `now`; missed ticks are skipped.
        let interval = self.timing.poll_interval.max(Duration::from_millis(1));
        let elapsed = now.saturating_duration_since(self.cycle_start);
        let ticks = elapsed.as_nanos() / interval.as_nanos() + 1;
        self.next_cycle = self.cycle_start + interval * u32::try_from(ticks).unwrap_or(u32::MAX);
    }
}

enum Raw<'a> {
    Words(&'a [u16]),
    Bits(&'a [bool]),
}

fn new_backoff(t: Timing) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(t.backoff_min)
        .with_max_delay(t.backoff_max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
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
        retries: 1,
        failures_before_unreachable: 2,
        backoff_min: Duration::from_secs(2),
        backoff_max: Duration::from_secs(8),
        exceptions_alarm_after: Duration::from_secs(30),
    };

    /// room_temp i16 /10 at input 0, humidity u16 at input 1, door at discrete input 0.
    fn poller(now: Instant) -> Poller {
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
        Poller::new(entries, plan(&spans, PlanLimits::default()), TIMING, now)
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
}
