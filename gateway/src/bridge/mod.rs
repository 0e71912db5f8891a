//! `wardgate bridge`: MQTT telemetry → InfluxDB, for the central side.
//!
//! The bridge subscribes to every gateway's telemetry topic through a shared
//! subscription (`$share/{group}/{prefix}/+/+/+/telemetry`, QoS 1) with a
//! persistent session and MANUAL acknowledgements: a message is acknowledged
//! to the broker only after InfluxDB stored its lines (or, when it is not
//! valid line protocol or InfluxDB refused it for good, after it was written
//! to the quarantine file). Until then the broker keeps it, so a bridge that
//! crashes or is killed loses nothing — the broker redelivers to it, or to
//! another bridge of the group. A redelivered message is written again, which
//! is harmless: same series, same timestamps.
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

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use rumqttc::{AsyncClient, Event as MqttEvent, Outgoing, Packet, Publish, SubscribeReasonCode};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{BridgeConfig, BridgeConfigErrors, BridgeMqttConfig, load};
pub use lines::{Checked, LineError, check};

use crate::mqtt::{BrokerError, QOS};
use crate::sinks::influxdb::{
    Delivery, DeliveryMetrics, InfluxSetupError, InfluxWriter, Quarantine, QuarantineEntry,
};

/// Messages between the MQTT task and the writer at most.
const CHANNEL: usize = 1024;
const STATS_INTERVAL: Duration = Duration::from_secs(60);

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
) -> Result<crate::sinks::influxdb::DeliverySnapshot, BridgeError> {
    let name = format!("bridge:{}", config.mqtt.group);
    let writer = InfluxWriter::new(&name, &config.influxdb)?;
    let quarantine = Quarantine::new(
        config
            .influxdb
            .quarantine
            .clone()
            .unwrap_or(default_quarantine),
    );
    let default_id = format!("{}-{}", config.mqtt.group, hostname());
    let mut options = config.mqtt.broker.options(&default_id, 16, None)?;
    options.set_manual_acks(true);
    let (client, mut eventloop) = AsyncClient::new(options, CHANNEL);
    crate::mqtt::without_nagle(&mut eventloop);
    let connection = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel(CHANNEL);
    let mqtt_done = CancellationToken::new();
    let mqtt_task = tokio::spawn(poll_mqtt(
        eventloop,
        client.clone(),
        config.mqtt.filter(),
        Arc::clone(&connection),
        tx,
        mqtt_done.clone(),
        config.mqtt.broker.reconnect_backoff(),
    ));
    let probe = writer.clone();
    tokio::spawn(async move { probe.probe().await });
    tracing::info!(filter = %config.mqtt.filter(), influxdb = %config.influxdb.url, "wardgate bridge running");

    let metrics = Arc::new(DeliveryMetrics::new());
    let mut bridge = Writer {
        name,
        influx: writer,
        quarantine,
        metrics: Arc::clone(&metrics),
        client: client.clone(),
        connection,
        batch_max: config.influxdb.batch_max as u64,
        flush_interval: config.influxdb.flush_interval,
        held: Vec::new(),
        body: String::new(),
        lines: 0,
    };
    bridge.run(rx, &shutdown).await;

    // Let the last acknowledgements go out, then leave cleanly.
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

/// Polls the event loop until it sends DISCONNECT (or `done`): subscribes on
/// every CONNACK, counts connections, forwards telemetry messages.
async fn poll_mqtt(
    mut eventloop: rumqttc::EventLoop,
    client: AsyncClient,
    filter: String,
    connection: Arc<AtomicU64>,
    tx: mpsc::Sender<Held>,
    done: CancellationToken,
    backoff: backon::ExponentialBuilder,
) {
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

struct Writer {
    name: String,
    influx: InfluxWriter,
    quarantine: Quarantine,
    metrics: Arc<DeliveryMetrics>,
    client: AsyncClient,
    connection: Arc<AtomicU64>,
    batch_max: u64,
    flush_interval: Duration,
    /// Messages in arrival order, acknowledged together after the write.
    held: Vec<Held>,
    /// Their valid lines, concatenated.
    body: String,
    lines: u64,
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
                _ = stats.tick() => self.metrics.log(&self.name, chrono::Utc::now(), "wardgate bridge"),
            }
            if self.lines >= self.batch_max {
                deadline = None;
                if !self.flush(shutdown).await {
                    return;
                }
            }
        }
        // Stopping: deliver what is in hand (one attempt if InfluxDB fails).
        self.flush(shutdown).await;
    }

    /// Checks a message; valid lines join the batch, invalid messages go to
    /// the quarantine at once (and are acknowledged with the batch, in order).
    async fn take(&mut self, m: Held) {
        match check(&m.publish.payload) {
            Ok(checked) => {
                let text = String::from_utf8_lossy(&m.publish.payload);
                self.body.push_str(&text);
                if !text.ends_with('\n') {
                    self.body.push('\n');
                }
                self.lines += checked.lines;
                self.metrics.add_queued(
                    checked.lines,
                    chrono::DateTime::from_timestamp_nanos(checked.oldest_ns),
                );
            }
            Err(e) => {
                let reason = e.to_string();
                let payload = String::from_utf8_lossy(&m.publish.payload);
                let entry = QuarantineEntry {
                    quarantined_at: chrono::Utc::now(),
                    by: &self.name,
                    status: None,
                    reason: &reason,
                    topic: Some(&m.publish.topic),
                    event: None,
                    payload: Some(&payload),
                };
                if let Err(io) = self.quarantine.append(&[entry]).await {
                    // Not on disk: do not acknowledge; the broker redelivers it
                    // after the next reconnect.
                    tracing::error!(path = %self.quarantine.path().display(), error = %io, "cannot write the quarantine file; the message stays with the broker");
                    return;
                }
                self.metrics.add_quarantined(1);
                tracing::warn!(
                    topic = %m.publish.topic,
                    error = %e,
                    quarantine = %self.quarantine.path().display(),
                    total_quarantined = self.metrics.snapshot(chrono::Utc::now()).quarantined,
                    "message is not valid line protocol; quarantined"
                );
            }
        }
        self.held.push(m);
    }

    /// Writes the batch and acknowledges its messages. False when stopping
    /// while InfluxDB fails (nothing acknowledged; the broker keeps them).
    async fn flush(&mut self, shutdown: &CancellationToken) -> bool {
        if self.held.is_empty() {
            return true;
        }
        let lines = self.lines;
        if lines > 0 {
            match self
                .influx
                .write_until_done(&self.body, lines, &self.metrics, shutdown)
                .await
            {
                Delivery::Stored => self.metrics.add_acknowledged(lines),
                Delivery::Cancelled => return false,
                Delivery::Rejected { status, body } => {
                    let now = chrono::Utc::now();
                    let payloads: Vec<(String, String)> = self
                        .held
                        .iter()
                        .filter(|h| check(&h.publish.payload).is_ok())
                        .map(|h| {
                            (
                                h.publish.topic.clone(),
                                String::from_utf8_lossy(&h.publish.payload).into_owned(),
                            )
                        })
                        .collect();
                    let entries: Vec<QuarantineEntry<'_>> = payloads
                        .iter()
                        .map(|(topic, payload)| QuarantineEntry {
                            quarantined_at: now,
                            by: &self.name,
                            status: Some(status),
                            reason: &body,
                            topic: Some(topic),
                            event: None,
                            payload: Some(payload),
                        })
                        .collect();
                    if let Err(e) = self.quarantine.append(&entries).await {
                        tracing::error!(path = %self.quarantine.path().display(), error = %e, "cannot write the quarantine file; the batch stays with the broker");
                        return !shutdown.is_cancelled() && self.forget();
                    }
                    self.metrics.add_quarantined(lines);
                    tracing::error!(
                        status,
                        response = %body,
                        lines,
                        quarantine = %self.quarantine.path().display(),
                        "InfluxDB refused a batch; it was moved to the quarantine file and will not be retried"
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
        self.metrics.done(lines, None);
        self.body.clear();
        self.lines = 0;
        true
    }

    /// Drops the batch without acknowledging it (the broker redelivers it
    /// after a reconnect).
    fn forget(&mut self) -> bool {
        self.metrics.done(self.lines, None);
        self.held.clear();
        self.body.clear();
        self.lines = 0;
        true
    }
}
