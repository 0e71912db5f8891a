//! The MQTT sink: publishes spooled records with QoS 1 and advances its spool
//! cursor only when the broker's PUBACK for every message of a batch arrived.
//!
//! The in-flight window is a state machine of its own ([`window`]): which
//! publishes await their PUBACK, and which spool batches are confirmed over
//! a contiguous prefix of their lane. When the broker has lost the session
//! (`session_present = false`), rumqttc drops what it held: the window
//! forgets its state and the sink rewinds to its cursor, so everything
//! unconfirmed is published again (a duplicate is harmless: same series,
//! same timestamp). This file is the async shell around it.
//!
//! The connection is driven on a task of its own ([`drive`]), so publishes
//! go out and PUBACKs come in while the sink reads the spool or moves its
//! cursor: an alert is never held up behind the sink's own bookkeeping.

mod command;
mod config;
mod encode;
pub mod window;

use std::time::Duration;

use backon::BackoffBuilder;
use rumqttc::{
    AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, LastWill, Outgoing, Packet,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use command::{AckCommand, CommandError, parse_ack};
pub use config::{MqttSinkConfig, TelemetryFormat};
pub use encode::{Message, messages};

use crate::commands::AlertCommand;
use crate::lineproto::Identity;
use crate::mqtt::{BrokerError, QOS, Topics};
use crate::sinks::supervisor::SinkEnv;
use crate::sinks::{Sink, SinkContext, SinkError};
use window::{Confirmed, Resume, Window};

#[derive(Debug, thiserror::Error)]
pub enum MqttSinkError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("the MQTT client stopped: {0}")]
    Client(#[from] rumqttc::ClientError),
}

/// Connection events waiting for the sink loop.
const NETWORK_EVENTS: usize = 256;

/// Polls the connection: writes queued publishes, reads PUBACKs and
/// commands, reconnects. Every event goes to the sink loop; after an error
/// it waits out the reconnect backoff (cut short when the sink is draining,
/// for one last attempt at once). Ends when the sink loop is gone.
async fn drive(
    mut eventloop: EventLoop,
    events: mpsc::Sender<Result<MqttEvent, ConnectionError>>,
    backoff: backon::ExponentialBuilder,
    drain: CancellationToken,
) {
    let mut delays = backoff.build();
    loop {
        let event = eventloop.poll().await;
        let failed = event.is_err();
        if matches!(event, Ok(MqttEvent::Incoming(Packet::ConnAck(_)))) {
            delays = backoff.build();
        }
        if events.send(event).await.is_err() {
            return;
        }
        if failed && !drain.is_cancelled() {
            let delay = delays.next().unwrap_or(Duration::from_secs(30));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = drain.cancelled() => {}
            }
        }
    }
}

/// Counters for logs and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct MqttCounters {
    pub published: u64,
    pub acknowledged_records: u64,
    pub connection_losses: u64,
    pub bad_commands: u64,
}

/// A configured MQTT sink, ready to run.
#[derive(Debug)]
pub struct MqttSink {
    name: String,
    config: MqttSinkConfig,
    identity: Identity,
    topics: Topics,
}

impl MqttSink {
    pub fn new(name: &str, config: MqttSinkConfig, identity: Identity) -> Self {
        let topics = Topics::new(
            &config.topic_prefix,
            &identity.site,
            &identity.ward,
            &identity.gateway,
        );
        Self {
            name: name.to_owned(),
            config,
            identity,
            topics,
        }
    }
}

impl Sink for MqttSink {
    type Config = MqttSinkConfig;

    async fn build(name: &str, config: &MqttSinkConfig, env: &SinkEnv) -> Result<Self, SinkError> {
        Ok(MqttSink::new(name, config.clone(), env.identity.clone()))
    }

    /// Publishes until `drain` is cancelled and everything spooled is
    /// confirmed (or, when the broker is unreachable, at once: the spool keeps
    /// the rest). Acknowledgement commands go to `commands`.
    async fn run(self, cx: SinkContext) -> Result<u64, SinkError> {
        let SinkContext {
            mut reader,
            drain,
            commands,
            health,
            ..
        } = cx;
        let window = usize::from(self.config.inflight);
        let batch_max = self.config.batch_max;
        let will = LastWill::new(self.topics.status(), "offline", QOS, true);
        let options = self
            .config
            .broker
            .options(
                &format!("wardgate-{}", self.identity.gateway),
                self.config.inflight,
                Some(will),
            )
            .map_err(MqttSinkError::from)?;
        // Room for a full window plus the largest batch: `try_publish` never
        // finds the request channel full.
        let (client, mut eventloop) = AsyncClient::new(options, window + 2 * batch_max + 16);
        crate::mqtt::without_nagle(&mut eventloop);
        let (network_tx, mut network) = mpsc::channel(NETWORK_EVENTS);
        let driver = tokio::spawn(drive(
            eventloop,
            network_tx,
            self.config.broker.reconnect_backoff(),
            drain.clone(),
        ));

        let mut window = Window::new(window);
        let mut counters = MqttCounters::default();
        let ack_topic = self.topics.ack_commands();
        let mut final_attempt_done = false;

        loop {
            // Fill the window from the spool (alerts first).
            let mut caught_up = false;
            while window.has_room() {
                let Some(batch) = reader.next_batch(batch_max).await? else {
                    caught_up = true;
                    break;
                };
                let msgs = messages(
                    &batch.records,
                    &self.identity,
                    &self.topics,
                    self.config.telemetry_format,
                );
                window.handle_batch(
                    Confirmed {
                        lane: batch.lane,
                        after: batch.after,
                        last: batch.last(),
                        records: batch.records.len() as u64,
                    },
                    msgs.len(),
                );
                for m in msgs {
                    client
                        .try_publish(m.topic, QOS, m.retain, m.payload)
                        .map_err(MqttSinkError::from)?;
                    counters.published += 1;
                }
            }
            if drain.is_cancelled() {
                // Stopping: finish what the broker can confirm. When it is
                // unreachable, try once more at once (the backoff may have been
                // long), then leave the rest in the spool.
                if window.is_connected() && caught_up && window.is_settled() {
                    break;
                }
                if !window.is_connected() {
                    if final_attempt_done {
                        break;
                    }
                    final_attempt_done = true;
                }
            }
            let room = window.has_room();
            tokio::select! {
                event = network.recv() => match event {
                    // The connection task only ends when this loop is gone.
                    None => break,
                    Some(Ok(MqttEvent::Incoming(Packet::ConnAck(ack)))) => {
                        tracing::info!(sink = %self.name, session_present = ack.session_present, "connected to the MQTT broker");
                        health.up();
                        if window.handle_connected(ack.session_present) == Resume::Rewind {
                            // The broker lost the session and rumqttc dropped what it held.
                            reader.rewind();
                        }
                        client.try_publish(self.topics.status(), QOS, true, "online").map_err(MqttSinkError::from)?;
                        window.handle_control();
                        client.try_subscribe(format!("{ack_topic}+"), QOS).map_err(MqttSinkError::from)?;
                    }
                    Some(Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid)))) => window.handle_published(pkid),
                    Some(Ok(MqttEvent::Incoming(Packet::PubAck(ack)))) => {
                        window.handle_puback(ack.pkid);
                        while let Some(b) = window.poll_ack() {
                            reader.ack(b.lane, b.after, b.last).await?;
                            counters.acknowledged_records += b.records;
                        }
                    }
                    Some(Ok(MqttEvent::Incoming(Packet::Publish(p)))) if p.topic.starts_with(&ack_topic) => {
                        match parse_ack(&p.topic[ack_topic.len()..], &p.payload) {
                            Ok(cmd) => {
                                // Nobody to answer over MQTT: the pipeline logs the outcome.
                                let (reply, _) = tokio::sync::oneshot::channel();
                                let cmd = AlertCommand::Acknowledge { alert: cmd.alert, who: cmd.who, reply };
                                if commands.try_send(cmd).is_err() {
                                    counters.bad_commands += 1;
                                    tracing::error!(sink = %self.name, "acknowledgement command dropped: the alert manager is not keeping up");
                                }
                            }
                            Err(e) => {
                                counters.bad_commands += 1;
                                tracing::warn!(sink = %self.name, topic = %p.topic, error = %e, total = counters.bad_commands, "bad acknowledgement command ignored");
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        health.down(&e);
                        if window.is_connected() {
                            counters.connection_losses += 1;
                            tracing::warn!(sink = %self.name, error = %e, "MQTT broker connection lost; data waits in the spool");
                        } else {
                            tracing::debug!(sink = %self.name, error = %e, "MQTT broker still unreachable");
                        }
                        window.handle_disconnected();
                    }
                },
                () = reader.wait_for_data(), if room && caught_up => {}
                () = drain.cancelled(), if !drain.is_cancelled() => {}
            }
        }

        if window.is_connected() {
            // Say goodbye properly so subscribers see `offline` at once.
            let _ = client.try_publish(self.topics.status(), QOS, true, "offline");
            let _ = client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(ev)) = network.recv().await {
                    if matches!(ev, MqttEvent::Outgoing(Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
        driver.abort();
        tracing::info!(
            sink = %self.name,
            published = counters.published,
            acknowledged_records = counters.acknowledged_records,
            connection_losses = counters.connection_losses,
            bad_commands = counters.bad_commands,
            "mqtt sink stopped"
        );
        Ok(counters.acknowledged_records)
    }
}
