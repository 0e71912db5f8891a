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
    /// How long after `now` given to [`Poller::new`] the first cycle starts
    /// (the device's phase, [`crate::jitter::phase`]); every later cycle
    /// keeps it.
    pub phase: Duration,
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
    /// A poller whose first cycle is due at `now` plus the timing's phase.
    /// `plan` indexes `entries`.
    pub fn new(entries: Vec<Entry>, plan: Vec<ReadBlock>, timing: Timing, now: Instant) -> Self {
        let first = now + timing.phase;
        Self {
            entries,
            plan,
            timing,
            next_cycle: first,
            cycle_start: first,
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
mod tests;
