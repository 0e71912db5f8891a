//! The HL7 v2 sink: readings as IHE PCD-01 `ORU^R01` and alert transitions
//! as PCD-04 `ORU^R40`, over MLLP to an interface engine, EMR or alert
//! manager (docs/interop.md).
//!
//! MLLP is stop-and-wait: one message, then its acknowledgement. Records are
//! taken from the spool in order, alerts first; each record becomes at most
//! one message (a reading the charting selection skips, a room's reading,
//! a device event become none), whose control id is derived from the record
//! ([`encode::control_id`]) so a message sent again is the same message. The
//! spool cursor moves over a batch once every message in it was accepted
//! (`AA`/`CA`) or quarantined. A connection that fails, an acknowledgement
//! that does not come within `ack_timeout`, a frame that is no ACK of the
//! message sent, or an `AR`/`CR` drops the connection; the message is sent
//! again after a reconnect with capped exponential backoff and jitter, so an
//! outage loses nothing and the peer sees at most duplicates it can drop by
//! control id. An `AE`/`CE` (the peer cannot take this one message) moves
//! the message to the quarantine file, raises `data_quarantined` and goes
//! on, so one bad message never blocks the alerts behind it.
//!
//! A bed or patient without an MRN in `[patients]` is not sent (counted as
//! dropped, logged once per subject); rooms and the gateway's own alarms
//! have no patient and are not sent at all.
//!
//! Invariant: a record is acknowledged in the spool only after its message
//! was accepted by the peer or synced to the quarantine file (or counted as
//! dropped), or when it has no message to send.

pub mod ack;
mod config;
pub mod encode;
pub mod frame;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wardgate_model::{Event, SubjectId, SubjectKind};

use ack::{AckError, Verdict};
pub use config::Hl7Config;
use encode::{Envelope, control_id};
use frame::{FrameError, MllpDecoder};

use crate::config::PatientsConfig;
use crate::sinks::charting::Charting;
use crate::sinks::delivery::refusals::Refusals;
use crate::sinks::delivery::{DeliveryMetrics, Quarantine, QuarantineEntry};
use crate::sinks::metrics::SinkMetrics;
use crate::sinks::supervisor::SinkEnv;
use crate::sinks::{PeerHealth, Sink, SinkContext, SinkError};
use crate::spool::Record;

/// Records read per batch: the cursor moves once per batch, so a crash sends
/// at most this many messages again (with their control ids); and an alert
/// committed while a telemetry batch is being sent waits for at most this
/// many messages before it goes.
const BATCH: usize = 64;
/// How often, while idle, a full quarantine file is checked for room again.
const RECHECK_EVERY: Duration = Duration::from_secs(60);

/// Why one exchange did not end in an acknowledgement.
#[derive(Debug, thiserror::Error)]
enum Exchange {
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("no acknowledgement within {after:?}{}", junk.as_ref().map(|e| format!(" (the peer sent bytes that are not MLLP: {e})")).unwrap_or_default())]
    Timeout {
        after: Duration,
        /// The last bytes dropped while waiting, if any.
        junk: Option<FrameError>,
    },
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer's answer is no acknowledgement of the message: {0}")]
    Ack(#[from] AckError),
    #[error("the peer rejects the messages ({code}): {text}")]
    Rejected { code: String, text: String },
}

/// How the delivery of one message ended.
enum Outcome {
    Accepted,
    Refused {
        code: String,
        text: String,
    },
    /// Stopping while the peer fails: the batch stays in the spool.
    Stopped,
}

/// A configured HL7 v2 sink, ready to run.
#[derive(Debug)]
pub struct Hl7Sink {
    name: String,
    config: Hl7Config,
    sending_facility: String,
    ward: String,
    patients: Option<Arc<PatientsConfig>>,
    kinds: HashMap<SubjectId, SubjectKind>,
    charting: Charting,
    refusals: Refusals,
    delivery: DeliveryMetrics,
    /// Subjects whose missing MRN was logged.
    unmapped: HashSet<SubjectId>,
}

impl Sink for Hl7Sink {
    type Config = Hl7Config;

    async fn build(name: &str, config: &Hl7Config, env: &SinkEnv) -> Result<Self, SinkError> {
        let quarantine = config.quarantine.clone().unwrap_or_else(|| {
            env.spool_path
                .with_file_name(format!("{name}.quarantine.jsonl"))
        });
        let mut refusals = Refusals::new(
            name,
            Quarantine::new(quarantine, config.quarantine_max_bytes),
            config.quarantine_max_bytes,
        );
        refusals.alarm_on(env.events.clone(), env.gateway.clone());
        Ok(Self {
            name: name.to_owned(),
            sending_facility: config
                .sending_facility
                .clone()
                .unwrap_or_else(|| env.gateway.clone()),
            ward: env.identity.ward.clone(),
            patients: env.patients.clone(),
            kinds: env
                .subjects
                .iter()
                .map(|s| (s.id.clone(), s.kind))
                .collect(),
            charting: Charting::new(&config.chart),
            refusals,
            delivery: DeliveryMetrics::new().exporting(env.metrics.sink(name)),
            unmapped: HashSet::new(),
            config: config.clone(),
        })
    }

    fn run(
        self,
        cx: SinkContext,
    ) -> impl std::future::Future<Output = Result<u64, SinkError>> + Send {
        self.deliver_all(cx)
    }
}

/// The connection and the retry state, kept across messages.
struct Link {
    address: String,
    connect_timeout: Duration,
    ack_timeout: Duration,
    stream: Option<TcpStream>,
    decoder: MllpDecoder,
    /// What the decoder last dropped while waiting for this ACK.
    junk: Option<FrameError>,
    backoff: backon::ExponentialBuilder,
    delays: backon::ExponentialBackoff,
    /// Failed exchanges since the last acknowledgement.
    failures: u64,
}

impl Link {
    fn new(config: &Hl7Config) -> Self {
        let backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(config.max_backoff)
            .with_jitter()
            .without_max_times();
        Self {
            address: config.address.clone(),
            connect_timeout: config.connect_timeout,
            ack_timeout: config.ack_timeout,
            stream: None,
            decoder: MllpDecoder::new(),
            junk: None,
            delays: backoff.build(),
            backoff,
            failures: 0,
        }
    }

    async fn connect(&mut self) -> Result<&mut TcpStream, Exchange> {
        if self.stream.is_none() {
            let failed = |reason: String| Exchange::Connect {
                address: self.address.clone(),
                reason,
            };
            let stream =
                tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
                    .await
                    .map_err(|_| failed(format!("no answer within {:?}", self.connect_timeout)))?
                    .map_err(|e| failed(e.to_string()))?;
            let _ = stream.set_nodelay(true);
            self.decoder.clear();
            self.stream = Some(stream);
        }
        self.stream.as_mut().ok_or(Exchange::Closed)
    }

    /// Sends one framed message and waits for its acknowledgement.
    async fn exchange(&mut self, framed: &[u8], control_id: &str) -> Result<Verdict, Exchange> {
        let ack_timeout = self.ack_timeout;
        self.junk = None;
        self.connect().await?.write_all(framed).await?;
        match tokio::time::timeout(ack_timeout, self.read_ack(control_id)).await {
            Ok(result) => result,
            Err(_) => Err(Exchange::Timeout {
                after: ack_timeout,
                junk: self.junk.take(),
            }),
        }
    }

    /// Reads until a frame arrives and parses it as the ACK of `control_id`.
    /// Bytes outside frames (a line feed some engines add after a frame, or
    /// noise) are counted and passed over: only a frame is an answer, and
    /// none within the timeout is a failure.
    async fn read_ack(&mut self, control_id: &str) -> Result<Verdict, Exchange> {
        let mut buf = [0u8; 4096];
        loop {
            let stream = self.stream.as_mut().ok_or(Exchange::Closed)?;
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(Exchange::Closed);
            }
            let mut answer: Option<Result<Verdict, Exchange>> = None;
            let junk = &mut self.junk;
            self.decoder.feed(&buf[..n], |r| match r {
                Ok(message) if answer.is_none() => {
                    answer = Some(ack::parse(message, control_id).map_err(Exchange::from));
                }
                Ok(_) => {}
                Err(e) => *junk = Some(e),
            });
            if let Some(answer) = answer {
                return answer;
            }
        }
    }
}

impl Hl7Sink {
    async fn deliver_all(mut self, cx: SinkContext) -> Result<u64, SinkError> {
        let SinkContext {
            mut reader,
            drain,
            health,
            metrics,
            ..
        } = cx;
        let mut link = Link::new(&self.config);
        let mut acknowledged = 0u64;
        let mut recheck = tokio::time::interval_at(Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let Some(batch) = reader.next_batch(BATCH).await? else {
                if drain.is_cancelled() {
                    break;
                }
                tokio::select! {
                    () = reader.wait_for_data() => {}
                    () = drain.cancelled() => {}
                    // A quarantine emptied by the operator ends its alarm.
                    _ = recheck.tick() => self.refusals.recheck(&self.delivery).await,
                }
                continue;
            };
            for record in &batch.records {
                let Some((control_id, message)) = self.message(record, &metrics) else {
                    continue;
                };
                match deliver(
                    &mut link,
                    &self.name,
                    &control_id,
                    &message,
                    &drain,
                    &health,
                    &metrics,
                )
                .await
                {
                    Outcome::Accepted => {}
                    Outcome::Refused { code, text } => {
                        if !self
                            .quarantine(record, &message, &code, &text, &drain)
                            .await
                        {
                            tracing::info!(sink = %self.name, acknowledged, "hl7v2 sink stopped while the quarantine file cannot be written; the rest stays in the spool");
                            return Ok(acknowledged);
                        }
                    }
                    Outcome::Stopped => {
                        tracing::info!(sink = %self.name, acknowledged, "hl7v2 sink stopped while its peer fails; the rest stays in the spool");
                        return Ok(acknowledged);
                    }
                }
            }
            reader.ack(batch.lane, batch.after, batch.last()).await?;
            acknowledged += batch.records.len() as u64;
        }
        tracing::debug!(sink = %self.name, acknowledged, "hl7v2 sink closed");
        Ok(acknowledged)
    }

    /// The message a record becomes, with its control id; `None` when it is
    /// not for this sink.
    fn message(&mut self, record: &Record, metrics: &SinkMetrics) -> Option<(String, String)> {
        let subject = record.event.subject();
        match &record.event {
            Event::Alert(a) => self.charting.handle_alert(a),
            Event::Reading(r) => {
                if self.patient_class(subject).is_none() || !self.charting.handle_reading(r) {
                    return None;
                }
            }
            _ => return None,
        }
        let class = self.patient_class(subject)?.to_owned();
        let mrn = self.mrn(subject, metrics)?;
        let patients = self.patients.as_deref()?;
        let control_id = control_id(record.lane, record.seq, record.committed_at);
        let env = Envelope {
            sending_facility: &self.sending_facility,
            receiving_application: &self.config.receiving_application,
            receiving_facility: &self.config.receiving_facility,
            control_id: &control_id,
            at: record.committed_at,
            mrn: &mrn,
            authority: &patients.authority,
            patient_class: &class,
            ward: &self.ward,
            bed: subject.as_str(),
        };
        let message = match &record.event {
            Event::Reading(r) => encode::reading(&env, r),
            Event::Alert(a) => encode::alert(&env, a),
            _ => return None,
        };
        Some((control_id, message))
    }

    /// PV1-2 of a bed or patient subject; `None` for a subject with no
    /// patient (a room, the gateway itself).
    fn patient_class(&self, subject: &SubjectId) -> Option<&str> {
        match self.kinds.get(subject)? {
            SubjectKind::Bed => Some(&self.config.bed_class),
            SubjectKind::Patient => Some(&self.config.patient_class),
            SubjectKind::Room => None,
        }
    }

    /// The MRN of a bed's or patient's patient; without one the record is
    /// counted as dropped, and logged once per subject.
    fn mrn(&mut self, subject: &SubjectId, metrics: &SinkMetrics) -> Option<String> {
        let mrn = self.patients.as_deref().and_then(|p| p.mrn(subject));
        if mrn.is_none() {
            metrics.dropped.inc();
            if self.unmapped.insert(subject.clone()) {
                tracing::warn!(sink = %self.name, subject = %subject, "no MRN for this subject in [patients]: its charted readings and alerts are not sent to the EMR (counted as dropped)");
            }
        }
        mrn.map(str::to_owned)
    }

    /// Keeps a message the peer refused in the quarantine file (retrying
    /// while the disk refuses) and raises `data_quarantined` and
    /// `quarantine_full`; `false` when stopping first.
    async fn quarantine(
        &mut self,
        record: &Record,
        message: &str,
        code: &str,
        text: &str,
        drain: &CancellationToken,
    ) -> bool {
        let reason = format!("{code}: {text}");
        let entry = QuarantineEntry {
            quarantined_at: chrono::Utc::now(),
            by: &self.name,
            status: None,
            reason: &reason,
            topic: None,
            event: Some(&record.event),
            payload: Some(message),
        };
        let Some(appended) = self
            .refusals
            .keep(std::slice::from_ref(&entry), &self.delivery, drain)
            .await
        else {
            return false;
        };
        tracing::error!(sink = %self.name, seq = record.seq, code, response = %text, quarantine = %self.refusals.quarantine().path().display(), "the HL7 peer refused a message; it was moved to the quarantine file and will not be sent again");
        self.refusals.alarm_quarantined(appended, &reason).await;
        true
    }
}

/// Sends one message until the peer accepts or refuses it, reconnecting with
/// backoff; gives up only when stopping while the peer fails.
async fn deliver(
    link: &mut Link,
    name: &str,
    control_id: &str,
    message: &str,
    drain: &CancellationToken,
    health: &PeerHealth,
    metrics: &SinkMetrics,
) -> Outcome {
    let framed = frame::encode(message.as_bytes());
    loop {
        let reused = link.stream.is_some();
        let result = match link.exchange(&framed, control_id).await {
            // A peer may close an idle connection (hl7apy's own MLLP server
            // closes after each message): one fresh try, not a failure.
            Err(Exchange::Closed | Exchange::Io(_)) if reused => {
                link.stream = None;
                metrics.retried.inc();
                link.exchange(&framed, control_id).await
            }
            other => other,
        };
        let failure = match result {
            Ok(verdict) => {
                if link.failures > 0 {
                    tracing::info!(sink = %name, address = %link.address, failures = link.failures, "the HL7 peer acknowledges again");
                }
                link.failures = 0;
                link.delays = link.backoff.build();
                health.up();
                match verdict {
                    Verdict::Accepted => return Outcome::Accepted,
                    Verdict::Refused { code, text } => return Outcome::Refused { code, text },
                    Verdict::Rejected { code, text } => Exchange::Rejected { code, text },
                }
            }
            Err(e) => e,
        };
        // Whatever came, the connection is out of step: start afresh.
        link.stream = None;
        link.failures += 1;
        metrics.retried.inc();
        let stats = link.decoder.stats();
        if link.failures == 1 {
            tracing::warn!(sink = %name, address = %link.address, control_id, error = %failure, garbage_bytes = stats.garbage_bytes, truncated_frames = stats.truncated, "HL7 delivery failed; reconnecting and sending again with backoff (data is kept meanwhile)");
        } else {
            tracing::debug!(sink = %name, control_id, error = %failure, attempt = link.failures, "HL7 delivery failed again");
        }
        health.down(&failure);
        if drain.is_cancelled() {
            return Outcome::Stopped;
        }
        let delay = link.delays.next().unwrap_or(Duration::from_secs(30));
        // Stopping cuts the pause short for one last attempt.
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = drain.cancelled() => {}
        }
    }
}
