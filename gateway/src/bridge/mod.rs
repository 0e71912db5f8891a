//! `wardgate bridge`: MQTT telemetry → InfluxDB, for the central side.
//!
//! The bridge subscribes to every gateway's telemetry topic through a shared
//! subscription (`$share/{group}/{prefix}/+/+/+/telemetry`, QoS 1) with a
//! persistent session and MANUAL acknowledgements: a message is acknowledged
//! to the broker only after every one of its lines is stored by InfluxDB or
//! written to the quarantine file (or, the quarantine being full, dropped and
//! counted). Until then the broker keeps it, so a bridge that crashes or is
//! killed loses nothing — the broker redelivers to it, or to another bridge
//! of the group. A redelivered message is written again, which is harmless:
//! same series, same timestamps.
//!
//! Every line is checked first ([`lines`]): line protocol with a timestamp,
//! tags naming the gateway of its topic, a measurement and keys of the
//! schema. A refused line is counted, logged (at most 10 a minute, with its
//! topic, an excerpt and the reason), quarantined and never written; the
//! message's other lines go on. A batch InfluxDB refuses is split until only
//! the refused lines are left ([`write_splitting`]); those are quarantined.
//!
//! While InfluxDB fails the bridge retries with backoff and never drops
//! anything; a batch not stored after `[bridge] stalled_after` makes it log
//! an error and publish `stalled: ...` (retained) on its status topic,
//! `{prefix}/bridge/{client_id}/status`, which otherwise says `online` (and
//! `offline` after a clean stop or, as last will, when the bridge vanishes).
//!
//! Two tasks: one polls the MQTT event loop without pause (keep-alive and
//! acknowledgements must flow while InfluxDB is slow) and forwards messages
//! over a bounded channel; the other batches, writes through the shared
//! [`InfluxWriter`] (retrying while InfluxDB is down) and acknowledges in
//! arrival order. Acknowledgements belonging to a connection that has since
//! dropped are not sent: the broker redelivers those messages on the new
//! connection and they are acknowledged then.

pub mod config;
pub mod lines;
pub mod throttle;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder;
use rumqttc::{
    AsyncClient, Event as MqttEvent, LastWill, Outgoing, Packet, Publish, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{BridgeConfig, BridgeMqttConfig, BridgeOptions, load};
pub use lines::{Checked, LineError, Schema, check};
pub use throttle::Throttle;

use crate::mqtt::{BrokerError, QOS};
use crate::sinks::delivery::{
    DeliveryMetrics, DeliverySnapshot, Quarantine, QuarantineEntry, Settled,
};
use crate::sinks::influxdb::{InfluxSetupError, InfluxWriter, write_splitting};

/// Messages between the MQTT task and the writer at most.
const CHANNEL: usize = 1024;
const STATS_INTERVAL: Duration = Duration::from_secs(60);
/// Refused lines logged at most per [`REFUSALS_WINDOW`]; the rest are counted.
const REFUSALS_LOGGED: u32 = 10;
const REFUSALS_WINDOW: Duration = Duration::from_secs(60);
/// Characters of a refused line shown in the log.
const EXCERPT: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Influx(#[from] InfluxSetupError),
}

/// A message in hand, with the connection it arrived on.
#[derive(Debug)]
struct Held {
    connection: u64,
    publish: Publish,
}

/// Runs until `shutdown` is cancelled: the batch in hand is written (once,
/// if InfluxDB is failing) and acknowledged, then the bridge disconnects.
/// Returns the figures at the end.
pub async fn run(
    config: BridgeConfig,
    default_quarantine: PathBuf,
    shutdown: CancellationToken,
) -> Result<DeliverySnapshot, BridgeError> {
    let name = format!("bridge:{}", config.mqtt.group);
    let writer = InfluxWriter::new(&name, &config.influxdb)?;
    let quarantine = Quarantine::new(
        config
            .influxdb
            .quarantine
            .clone()
            .unwrap_or(default_quarantine),
        config.influxdb.quarantine_max_bytes,
    );
    let client_id = config
        .mqtt
        .broker
        .client_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", config.mqtt.group, hostname()));
    let status_topic = BridgeMqttConfig::status_topic(&config.mqtt.topic_prefix, &client_id);
    let will = LastWill::new(&status_topic, OFFLINE, QOS, true);
    let mut options = config.mqtt.broker.options(&client_id, 16, Some(will))?;
    options.set_manual_acks(true);
    let (client, mut eventloop) = AsyncClient::new(options, CHANNEL);
    crate::mqtt::without_nagle(&mut eventloop);
    let status = Status::new(status_topic, client.clone());
    let connection = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel(CHANNEL);
    let mqtt_done = CancellationToken::new();
    let mqtt_task = tokio::spawn(poll_mqtt(
        eventloop,
        Link {
            client: client.clone(),
            filter: config.mqtt.filter(),
            status: status.clone(),
        },
        Arc::clone(&connection),
        tx,
        mqtt_done.clone(),
        config.mqtt.broker.reconnect_backoff(),
    ));
    let probe = writer.clone();
    tokio::spawn(async move { probe.probe().await });
    tracing::info!(filter = %config.mqtt.filter(), influxdb = %config.influxdb.url, status = %status.topic, "wardgate bridge running");

    let metrics = Arc::new(DeliveryMetrics::new());
    let mut bridge = Writer {
        name,
        influx: writer,
        quarantine,
        metrics: Arc::clone(&metrics),
        client: client.clone(),
        connection,
        batch_max: config.influxdb.batch_max,
        flush_interval: config.influxdb.flush_interval,
        schema: Schema::new(&config.mqtt.topic_prefix, config.bridge.metrics.clone()),
        stalled_after: config.bridge.stalled_after,
        status: status.clone(),
        refusals: Throttle::new(REFUSALS_LOGGED, REFUSALS_WINDOW),
        held: Vec::new(),
        body: String::new(),
        lines: Vec::new(),
    };
    bridge.run(rx, &shutdown).await;

    // Let the last acknowledgements go out, then leave cleanly (a clean
    // DISCONNECT does not publish the last will: say `offline` ourselves).
    status.set(OFFLINE);
    let _ = client.disconnect().await;
    if tokio::time::timeout(Duration::from_secs(3), mqtt_task)
        .await
        .is_err()
    {
        mqtt_done.cancel();
    }
    metrics.log(&bridge.name, chrono::Utc::now(), "wardgate bridge stopped");
    Ok(metrics.snapshot(chrono::Utc::now()))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned())
}

/// What the MQTT task does on every connection: publish the status, subscribe.
#[derive(Debug)]
struct Link {
    client: AsyncClient,
    filter: String,
    status: Status,
}

/// Polls the event loop until it sends DISCONNECT (or `done`): on every
/// CONNACK publishes the status again and subscribes, counts connections,
/// forwards telemetry messages.
async fn poll_mqtt(
    mut eventloop: rumqttc::EventLoop,
    link: Link,
    connection: Arc<AtomicU64>,
    tx: mpsc::Sender<Held>,
    done: CancellationToken,
    backoff: backon::ExponentialBuilder,
) {
    let Link {
        client,
        filter,
        status,
    } = link;
    let mut delays = backoff.build();
    let mut connected = false;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            () = done.cancelled() => return,
        };
        match event {
            Ok(MqttEvent::Incoming(Packet::ConnAck(ack))) => {
                connected = true;
                delays = backoff.build();
                let n = connection.fetch_add(1, Ordering::SeqCst) + 1;
                tracing::info!(
                    session_present = ack.session_present,
                    connection = n,
                    "connected to the MQTT broker"
                );
                // The broker may have published the last will meanwhile.
                status.publish();
                if let Err(e) = client.try_subscribe(filter.clone(), QOS) {
                    tracing::error!(error = %e, "cannot request the subscription");
                }
            }
            Ok(MqttEvent::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    tracing::error!(filter = %filter, "the broker refused the subscription (does it support shared subscriptions and allow this filter?)");
                } else {
                    tracing::info!(filter = %filter, "subscribed");
                }
            }
            Ok(MqttEvent::Incoming(Packet::Publish(publish))) => {
                let held = Held {
                    connection: connection.load(Ordering::SeqCst),
                    publish,
                };
                if tx.send(held).await.is_err() {
                    // The writer stopped; unacknowledged messages stay with the broker.
                    tracing::debug!("writer gone; message left to the broker");
                }
            }
            Ok(MqttEvent::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                if connected {
                    tracing::warn!(error = %e, "MQTT broker connection lost; unacknowledged messages stay with the broker");
                } else {
                    tracing::debug!(error = %e, "MQTT broker still unreachable");
                }
                connected = false;
                let delay = delays.next().unwrap_or(Duration::from_secs(30));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = done.cancelled() => return,
                }
            }
        }
    }
}

/// The status payload while the bridge runs and InfluxDB takes its writes.
const ONLINE: &str = "online";
/// The status payload after a clean stop, and the last will.
const OFFLINE: &str = "offline";

/// The bridge's retained status message: `online`, `stalled: ...` or
/// `offline`. Published again after every reconnection, since the broker
/// may have published the last will (`offline`) meanwhile.
#[derive(Debug, Clone)]
struct Status {
    topic: String,
    client: AsyncClient,
    now: Arc<Mutex<String>>,
}

impl Status {
    fn new(topic: String, client: AsyncClient) -> Self {
        Self {
            topic,
            client,
            now: Arc::new(Mutex::new(ONLINE.to_owned())),
        }
    }

    fn set(&self, text: &str) {
        text.clone_into(&mut self.lock());
        self.publish();
    }

    /// Never waits: while the broker is away the request queue may be full,
    /// and the next CONNACK publishes the status anyway.
    fn publish(&self) {
        let text = self.lock().clone();
        if let Err(e) = self.client.try_publish(&self.topic, QOS, true, text) {
            tracing::debug!(error = %e, "status not published now; it is published again on reconnection");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, String> {
        self.now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A line of the batch: where it ends in the body and which held message
/// it came from.
#[derive(Debug, Clone, Copy)]
struct LineRef {
    end: usize,
    held: usize,
}

struct Writer {
    name: String,
    influx: InfluxWriter,
    quarantine: Quarantine,
    metrics: Arc<DeliveryMetrics>,
    client: AsyncClient,
    connection: Arc<AtomicU64>,
    batch_max: usize,
    flush_interval: Duration,
    schema: Schema,
    stalled_after: Duration,
    status: Status,
    /// The log budget for refused lines and batches.
    refusals: Throttle,
    /// Messages in arrival order, acknowledged together after the write.
    held: Vec<Held>,
    /// Their good lines, each with its `\n`.
    body: String,
    lines: Vec<LineRef>,
}

impl Writer {
    async fn run(&mut self, mut rx: mpsc::Receiver<Held>, shutdown: &CancellationToken) {
        let mut deadline: Option<Instant> = None;
        let mut stats = tokio::time::interval_at(Instant::now() + STATS_INTERVAL, STATS_INTERVAL);
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let sleep_until = deadline.unwrap_or_else(Instant::now);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                msg = rx.recv() => match msg {
                    Some(m) => {
                        self.take(m).await;
                        deadline.get_or_insert_with(|| Instant::now() + self.flush_interval);
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {
                    deadline = None;
                    if !self.flush(shutdown).await {
                        return;
                    }
                }
                _ = stats.tick() => {
                    self.metrics.log(&self.name, chrono::Utc::now(), "wardgate bridge");
                    self.quarantine.recheck(&self.metrics, &self.name).await;
                }
            }
            if self.lines.len() >= self.batch_max {
                deadline = None;
                if !self.flush(shutdown).await {
                    return;
                }
            }
        }
        // Stopping: deliver what is in hand (one attempt if InfluxDB fails).
        self.flush(shutdown).await;
    }

    /// Checks a message: its good lines join the batch, refused lines (or
    /// the whole payload, when it is unusable) go to the quarantine at once.
    /// The message is acknowledged with the batch, in order.
    async fn take(&mut self, m: Held) {
        let topic = m.publish.topic.clone();
        let payload = m.publish.payload.clone();
        let checked = check(&topic, &payload, &self.schema);
        let (good, oldest_ns, refused): (&[&str], i64, Vec<(String, String)>) = match &checked {
            Ok(c) => (
                &c.good,
                c.oldest_ns,
                c.refused
                    .iter()
                    .map(|(line, e)| ((*line).to_owned(), e.to_string()))
                    .collect(),
            ),
            Err(e) => (
                &[],
                i64::MAX,
                vec![(
                    String::from_utf8_lossy(&payload).into_owned(),
                    e.to_string(),
                )],
            ),
        };
        if !refused.is_empty() {
            let now = chrono::Utc::now();
            let entries: Vec<QuarantineEntry<'_>> = refused
                .iter()
                .map(|(line, reason)| QuarantineEntry {
                    quarantined_at: now,
                    by: &self.name,
                    status: None,
                    reason,
                    topic: Some(&topic),
                    event: None,
                    payload: Some(line),
                })
                .collect();
            if let Err(io) = self
                .quarantine
                .keep(&entries, &self.metrics, &self.name)
                .await
            {
                // Not on disk: do not acknowledge; the broker redelivers it
                // after the next reconnect.
                tracing::error!(path = %self.quarantine.path().display(), error = %io, "cannot write the quarantine file; the message stays with the broker");
                return;
            }
            self.metrics.add_refused(refused.len() as u64);
            for (line, reason) in &refused {
                self.log_refused(&topic, line, reason);
            }
        }
        if !good.is_empty() {
            for line in good {
                self.body.push_str(line);
                self.body.push('\n');
                self.lines.push(LineRef {
                    end: self.body.len(),
                    held: self.held.len(),
                });
            }
            self.metrics.add_queued(
                good.len() as u64,
                chrono::DateTime::from_timestamp_nanos(oldest_ns),
            );
        }
        self.held.push(m);
    }

    /// Logs a refused line, within the log budget.
    fn log_refused(&mut self, topic: &str, line: &str, reason: &str) {
        let Some(held_back) = self.refusals.admit(Instant::now()) else {
            return;
        };
        tracing::warn!(
            topic = %topic,
            line = %excerpt(line),
            reason = %reason,
            quarantine = %self.quarantine.path().display(),
            total_refused = self.metrics.snapshot(chrono::Utc::now()).refused,
            not_logged_before = held_back,
            "line refused: not written to InfluxDB, quarantined"
        );
    }

    /// Writes the batch and acknowledges its messages. False when stopping
    /// while InfluxDB fails (nothing acknowledged; the broker keeps them).
    async fn flush(&mut self, shutdown: &CancellationToken) -> bool {
        if self.held.is_empty() {
            return true;
        }
        let n = self.lines.len();
        if n > 0 {
            let mut start = 0;
            let slices: Vec<&str> = self
                .lines
                .iter()
                .map(|l| {
                    let s = &self.body[start..l.end];
                    start = l.end;
                    s
                })
                .collect();
            let write = write_splitting(&self.influx, &slices, &self.metrics, shutdown);
            let settled = watch_stall(
                write,
                self.stalled_after,
                &self.status,
                &self.metrics,
                shutdown,
            )
            .await;
            let refused = match settled {
                Settled::Done { refused, .. } => refused,
                Settled::Cancelled => return false,
            };
            self.metrics.add_acknowledged((n - refused.len()) as u64);
            if let Some(first) = refused.first() {
                let now = chrono::Utc::now();
                let entries: Vec<QuarantineEntry<'_>> = refused
                    .iter()
                    .map(|f| QuarantineEntry {
                        quarantined_at: now,
                        by: &self.name,
                        status: Some(f.status),
                        reason: &f.reason,
                        topic: Some(&self.held[self.lines[f.index].held].publish.topic),
                        event: None,
                        payload: Some(slices[f.index].trim_end_matches('\n')),
                    })
                    .collect();
                if let Err(e) = self
                    .quarantine
                    .keep(&entries, &self.metrics, &self.name)
                    .await
                {
                    tracing::error!(path = %self.quarantine.path().display(), error = %e, "cannot write the quarantine file; the batch stays with the broker");
                    return !shutdown.is_cancelled() && self.forget();
                }
                let (status, response) = (first.status, first.reason.clone());
                let topic = self.held[self.lines[first.index].held]
                    .publish
                    .topic
                    .clone();
                let line = slices[first.index].trim_end_matches('\n').to_owned();
                if let Some(held_back) = self.refusals.admit(Instant::now()) {
                    tracing::error!(
                        status,
                        response = %response,
                        refused = refused.len(),
                        lines = n,
                        topic = %topic,
                        line = %excerpt(&line),
                        quarantine = %self.quarantine.path().display(),
                        not_logged_before = held_back,
                        "InfluxDB refused lines; they were moved to the quarantine file and will not be retried (the rest of the batch is stored)"
                    );
                }
            }
        }
        let current = self.connection.load(Ordering::SeqCst);
        let mut stale = 0u64;
        for h in self.held.drain(..) {
            if h.connection == current {
                if let Err(e) = self.client.ack(&h.publish).await {
                    tracing::debug!(error = %e, "acknowledgement not sent; the broker will redeliver");
                }
            } else {
                stale += 1;
            }
        }
        if stale > 0 {
            tracing::debug!(
                stale,
                "messages of an earlier connection not acknowledged; the broker redelivers them"
            );
        }
        self.metrics.done(n as u64, None);
        self.body.clear();
        self.lines.clear();
        true
    }

    /// Drops the batch without acknowledging it (the broker redelivers it
    /// after a reconnect).
    fn forget(&mut self) -> bool {
        self.metrics.done(self.lines.len() as u64, None);
        self.held.clear();
        self.body.clear();
        self.lines.clear();
        true
    }
}

/// Runs `write`; if it has not finished after `after` (InfluxDB keeps
/// failing and the bridge keeps retrying), reports the bridge stalled — an
/// error in the log, `stalled: ...` on the status topic — until it finishes.
async fn watch_stall<F: Future>(
    write: F,
    after: Duration,
    status: &Status,
    metrics: &DeliveryMetrics,
    stop: &CancellationToken,
) -> F::Output {
    tokio::pin!(write);
    let started = Instant::now();
    tokio::select! {
        out = &mut write => return out,
        () = tokio::time::sleep(after) => {}
    }
    let s = metrics.snapshot(chrono::Utc::now());
    let why = format!(
        "InfluxDB has stored nothing for {} s; {} lines waiting, {} attempts failed so far; retrying, the broker keeps the messages",
        after.as_secs(),
        s.queued,
        s.retried
    );
    tracing::error!(status = %status.topic, "wardgate bridge stalled: {why}");
    status.set(&format!("stalled: {why}"));
    let out = write.await;
    if !stop.is_cancelled() {
        tracing::info!(
            stalled_for_s = started.elapsed().as_secs(),
            "wardgate bridge no longer stalled: InfluxDB stores its writes again"
        );
        status.set(ONLINE);
    }
    out
}

/// The start of a line for the log, cut at a character boundary.
fn excerpt(line: &str) -> String {
    match line.char_indices().nth(EXCERPT) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}
