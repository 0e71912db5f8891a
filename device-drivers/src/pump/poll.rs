//! The poll schedule as a state machine that is given the time.
//!
//! Identify the pump (serial number, protocol, remote-control handshake),
//! then every interval ask for status and VTBI. One request is in flight at a
//! time; a request without a valid reply by its deadline is resent up to
//! `retries` times, and an exchange that still fails is a failed poll. After
//! `failures_before_lost` failed polls in a row the pump is offline
//! (communication lost) until an identification succeeds again.
//!
//! Inputs: [`Poller::handle_connect`], [`Poller::handle_disconnect`],
//! [`Poller::handle_input`], [`Poller::handle_timeout`]. Outputs:
//! [`Poller::poll_transmit`] (bytes for the port), [`Poller::poll_event`] and
//! [`Poller::poll_timeout`]. It never reads a clock and never sends a command
//! that changes an infusion.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::codec::{DecoderStats, Frame, FrameDecoder, crc16};
use super::state::{
    PumpAlarm, PumpState, ReplyError, StatusReply, VtbiReply, parse_status, parse_vtbi,
};

/// Timing and tolerance of the poll schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollSettings {
    pub interval: Duration,
    /// How long after the port opens identification starts (the pump's
    /// phase, [`crate::jitter::phase`]); every later poll keeps it.
    pub phase: Duration,
    pub reply_timeout: Duration,
    /// Resends of one request before the exchange counts as failed.
    pub retries: u32,
    /// Failed polls in a row before the pump is reported offline.
    pub failures_before_lost: u32,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            phase: Duration::ZERO,
            reply_timeout: Duration::from_millis(500),
            retries: 2,
            failures_before_lost: 3,
        }
    }
}

/// What the poller tells its driver.
#[derive(Clone, Debug, PartialEq)]
pub enum PumpEvent {
    /// Identified and answering (first time, or again after being offline).
    Online {
        serial: String,
    },
    /// Not answering, or the port is gone.
    Offline {
        reason: String,
    },
    AlarmStart(PumpAlarm),
    AlarmEnd(PumpAlarm),
    /// A complete poll cycle.
    State(PumpState),
}

/// The requests this driver ever sends; all are queries or the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    SerialNo,
    CommsProtocol,
    RemoteCtrl,
    Status,
    Vtbi,
}

impl Request {
    fn reply_name(self) -> &'static str {
        match self {
            Request::SerialNo => "INST_SERIALNO",
            Request::CommsProtocol => "COMMS_PROTOCOL",
            Request::RemoteCtrl => "REMOTE_CTRL",
            Request::Status => "INF",
            Request::Vtbi => "INF_VTBI",
        }
    }
}

#[derive(Debug)]
struct InFlight {
    request: Request,
    frame: Vec<u8>,
    deadline: Instant,
    sends: u32,
}

/// Whether the driver has told the world the pump is online.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Unknown,
    Online,
    Offline,
}

/// Counters beyond the decoder's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollStats {
    pub decoder: DecoderStats,
    pub timeouts: u64,
    pub failed_polls: u64,
    pub invalid_replies: u64,
    pub unexpected_frames: u64,
    pub cycles: u64,
    /// Polls completed from the status reply alone because the VTBI reply
    /// was unusable (its fields then reported missing).
    pub incomplete_polls: u64,
}

impl PollStats {
    /// The figures `/metrics` shows per device.
    pub fn totals(&self) -> crate::metrics::DeviceTotals {
        let d = &self.decoder;
        crate::metrics::DeviceTotals {
            frames: d.frames,
            timeouts: self.timeouts,
            decode_errors: [
                ("crc", d.crc_errors),
                ("malformed", d.malformed),
                ("truncated", d.truncated),
                ("overlong", d.overlong),
                ("invalid_reply", self.invalid_replies),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect(),
        }
    }
}

/// Why the last exchange failed, for the offline reason.
#[derive(Clone, Debug)]
enum Failure {
    NoReply,
    Invalid(ReplyError),
    Refused(String),
}

#[derive(Debug)]
pub struct Poller {
    settings: PollSettings,
    decoder: FrameDecoder,
    connected: bool,
    identified: bool,
    serial: Option<String>,
    protocol: Option<String>,
    in_flight: Option<InFlight>,
    next_cycle: Option<Instant>,
    cycle_start: Option<Instant>,
    status: Option<StatusReply>,
    failures: u32,
    last_failure: Option<Failure>,
    link: Link,
    alarms: BTreeSet<PumpAlarm>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<PumpEvent>,
    stats: PollStats,
    /// The driver's note that it logged the VTBI fields missing (it logs
    /// the start and the end of that condition, not every poll).
    pub vtbi_missing_logged: bool,
}

impl Poller {
    pub fn new(settings: PollSettings) -> Self {
        Self {
            settings,
            decoder: FrameDecoder::new(),
            connected: false,
            identified: false,
            serial: None,
            protocol: None,
            in_flight: None,
            next_cycle: None,
            cycle_start: None,
            status: None,
            failures: 0,
            last_failure: None,
            link: Link::Unknown,
            alarms: BTreeSet::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            stats: PollStats::default(),
            vtbi_missing_logged: false,
        }
    }

    pub fn stats(&self) -> PollStats {
        PollStats {
            decoder: self.decoder.stats(),
            ..self.stats
        }
    }

    /// The serial number the pump gave when last identified.
    pub fn serial(&self) -> Option<&str> {
        self.serial.as_deref()
    }

    /// The `COMMS_PROTOCOL` reply's fields after the command name.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The port is open: start identifying, at once or at the pump's phase.
    pub fn handle_connect(&mut self, now: Instant) {
        self.connected = true;
        self.reset_exchange();
        if self.settings.phase.is_zero() {
            self.begin_identify(now);
        } else {
            self.next_cycle = Some(now + self.settings.phase);
        }
    }

    /// The port is gone. Reports the pump offline (once) and waits for
    /// [`Self::handle_connect`].
    pub fn handle_disconnect(&mut self, _now: Instant, reason: &str) {
        self.connected = false;
        self.reset_exchange();
        self.next_cycle = None;
        self.go_offline(reason.to_owned());
    }

    /// Bytes read from the port.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        let mut frames = Vec::new();
        self.decoder.feed(bytes, |r| {
            if let Ok(frame) = r {
                frames.push(frame);
            }
        });
        for frame in frames {
            self.handle_frame(now, &frame);
        }
    }

    /// The deadline from [`Self::poll_timeout`] has passed (calling early is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        if let Some(f) = &mut self.in_flight {
            if now < f.deadline {
                return;
            }
            self.stats.timeouts += 1;
            if f.sends <= self.settings.retries {
                f.sends += 1;
                f.deadline = now + self.settings.reply_timeout;
                self.transmit.push_back(f.frame.clone());
            } else {
                self.fail(now, Failure::NoReply);
            }
            return;
        }
        if self.next_cycle.is_some_and(|t| now >= t) {
            self.next_cycle = None;
            if self.identified {
                self.cycle_start = Some(now);
                self.send(now, Request::Status);
            } else {
                self.begin_identify(now);
            }
        }
    }

    /// The next bytes to write to the port.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<PumpEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due; `None` while disconnected.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.connected {
            return None;
        }
        self.in_flight
            .as_ref()
            .map(|f| f.deadline)
            .or(self.next_cycle)
    }

    fn reset_exchange(&mut self) {
        self.in_flight = None;
        self.status = None;
        self.cycle_start = None;
        self.identified = false;
        self.decoder.clear();
        self.transmit.clear();
    }

    fn begin_identify(&mut self, now: Instant) {
        self.identified = false;
        self.cycle_start = Some(now);
        self.send(now, Request::SerialNo);
    }

    fn send(&mut self, now: Instant, request: Request) {
        let frame = match request {
            Request::SerialNo => Frame::command("INST_SERIALNO"),
            Request::CommsProtocol => Frame::command("COMMS_PROTOCOL"),
            Request::RemoteCtrl => {
                let key = format!(
                    "{:04X}",
                    crc16(self.serial.as_deref().unwrap_or_default().as_bytes())
                );
                Frame::new(["REMOTE_CTRL", "ENABLED", &key])
            }
            Request::Status => Frame::command("INF"),
            Request::Vtbi => Frame::command("INF_VTBI"),
        };
        // Command names are constants and the key is hex: always a valid frame.
        let Ok(frame) = frame else { return };
        let bytes = frame.encode();
        self.transmit.push_back(bytes.clone());
        self.in_flight = Some(InFlight {
            request,
            frame: bytes,
            deadline: now + self.settings.reply_timeout,
            sends: 1,
        });
    }

    fn handle_frame(&mut self, now: Instant, frame: &Frame) {
        let Some(request) = self.in_flight.as_ref().map(|f| f.request) else {
            self.stats.unexpected_frames += 1;
            return;
        };
        if frame.name() == "NAK" && frame.field(1) == Some(request.reply_name()) {
            let reason = frame.field(2).unwrap_or("").to_owned();
            self.fail(now, Failure::Refused(reason));
            return;
        }
        if frame.name() != request.reply_name() {
            // A late reply to a resent request, or noise that happened to be a frame.
            self.stats.unexpected_frames += 1;
            return;
        }
        let outcome = match request {
            Request::SerialNo => match frame.field(1).filter(|s| !s.is_empty()) {
                Some(serial) => {
                    self.serial = Some(serial.to_owned());
                    self.send(now, Request::CommsProtocol);
                    Ok(())
                }
                None => Err(ReplyError::TooFewFields {
                    command: "INST_SERIALNO",
                    needed: 2,
                    got: frame.fields().len(),
                }),
            },
            Request::CommsProtocol => {
                self.protocol = Some(frame.fields()[1..].join("^"));
                self.send(now, Request::RemoteCtrl);
                Ok(())
            }
            Request::RemoteCtrl => {
                if frame.field(1) == Some("ENABLED") {
                    self.identified = true;
                    self.send(now, Request::Status);
                    Ok(())
                } else {
                    self.fail(
                        now,
                        Failure::Refused(format!(
                            "remote control not enabled ({})",
                            frame.fields()[1..].join("^")
                        )),
                    );
                    return;
                }
            }
            Request::Status => match parse_status(frame) {
                Ok(s) if self.serial.as_deref().is_some_and(|id| id != s.serial) => {
                    // Another pump on this port: identify it before trusting its values.
                    let why = format!(
                        "serial number changed from {} to {}",
                        self.serial.as_deref().unwrap_or_default(),
                        s.serial
                    );
                    tracing::warn!(%why, "pump replaced on its port");
                    self.fail(now, Failure::Refused(why));
                    self.identified = false;
                    return;
                }
                Ok(s) => {
                    self.status = Some(s);
                    self.send(now, Request::Vtbi);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Request::Vtbi => {
                // A malformed VTBI reply must not discard the status reply of
                // the same poll: its alarms and rate are current. The VTBI
                // fields are reported missing and the reply counted.
                let vtbi = parse_vtbi(frame).unwrap_or_else(|e| {
                    self.stats.invalid_replies += 1;
                    self.stats.incomplete_polls += 1;
                    tracing::debug!(error = %e, "invalid INF_VTBI reply: status kept, VTBI missing");
                    VtbiReply::missing(e)
                });
                if let Some(status) = self.status.take() {
                    self.complete_cycle(now, PumpState::new(&status, &vtbi));
                }
                Ok(())
            }
        };
        if let Err(e) = outcome {
            // The pump answered, but not in a way we can use: never act on it.
            self.stats.invalid_replies += 1;
            tracing::debug!(error = %e, "invalid pump reply");
            self.fail(now, Failure::Invalid(e));
        }
    }

    fn complete_cycle(&mut self, now: Instant, state: PumpState) {
        self.in_flight = None;
        self.failures = 0;
        self.stats.cycles += 1;
        if self.link != Link::Online {
            self.link = Link::Online;
            self.events.push_back(PumpEvent::Online {
                serial: self.serial.clone().unwrap_or_default(),
            });
            if self.alarms.remove(&PumpAlarm::CommunicationLost) {
                self.events
                    .push_back(PumpEvent::AlarmEnd(PumpAlarm::CommunicationLost));
            }
        }
        let pump_alarms: BTreeSet<_> = self
            .alarms
            .iter()
            .filter(|a| **a != PumpAlarm::CommunicationLost)
            .cloned()
            .collect();
        for ended in pump_alarms.difference(&state.alarms) {
            self.events.push_back(PumpEvent::AlarmEnd(ended.clone()));
        }
        for started in state.alarms.difference(&pump_alarms) {
            self.events
                .push_back(PumpEvent::AlarmStart(started.clone()));
        }
        self.alarms.clone_from(&state.alarms);
        self.events.push_back(PumpEvent::State(state));
        self.schedule_next(now);
    }

    fn schedule_next(&mut self, now: Instant) {
        let start = self.cycle_start.take().unwrap_or(now);
        self.next_cycle = Some((start + self.settings.interval).max(now));
    }

    fn fail(&mut self, now: Instant, why: Failure) {
        self.in_flight = None;
        self.status = None;
        self.failures += 1;
        self.stats.failed_polls += 1;
        self.last_failure = Some(why);
        if self.failures >= self.settings.failures_before_lost {
            let reason = match &self.last_failure {
                Some(Failure::NoReply) | None => {
                    format!("no reply to {} polls in a row", self.failures)
                }
                Some(Failure::Invalid(e)) => {
                    format!(
                        "{} failed polls in a row; last reply invalid: {e}",
                        self.failures
                    )
                }
                Some(Failure::Refused(r)) => {
                    format!("{} failed polls in a row; pump refused: {r}", self.failures)
                }
            };
            self.go_offline(reason);
            // The pump may have been swapped or restarted: identify again.
            self.identified = false;
        }
        self.schedule_next(now);
    }

    fn go_offline(&mut self, reason: String) {
        if self.link == Link::Offline {
            return;
        }
        self.link = Link::Offline;
        self.events.push_back(PumpEvent::Offline { reason });
        if self.alarms.insert(PumpAlarm::CommunicationLost) {
            self.events
                .push_back(PumpEvent::AlarmStart(PumpAlarm::CommunicationLost));
        }
    }
}

#[cfg(test)]
mod tests;
