//! The thin async shell around [`Poller`]: opens the serial port, moves bytes
//! between port and poller, reads the clock, and turns [`PumpEvent`]s into
//! pipeline events. It never exits on a device error: a port that is gone is
//! reopened with capped exponential backoff and jitter until shutdown.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, SerialStream, StopBits};
use wardgate_model::{AlarmPhase, DeviceState, Event, Metric, TimeSource};

use super::config::PumpConfig;
use super::poll::{PollStats, Poller, PumpEvent};
use super::state::PumpState;
use crate::metrics::DeviceTotals;
use crate::{DriverContext, PipelineClosed};

/// Why [`run`] returned early: only the pipeline going away stops a driver.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error(transparent)]
    PipelineClosed(#[from] PipelineClosed),
}

/// How a session on an open port ended.
enum SessionEnd {
    Shutdown,
    PortLost(String),
}

/// Reads the pump until shutdown. See [`run_with_stats`].
pub async fn run(config: PumpConfig, ctx: DriverContext) -> Result<(), PumpError> {
    let (stats, _) = watch::channel(PollStats::default());
    run_with_stats(config, ctx, stats).await
}

/// Like [`run`], publishing the poller's counters (CRC errors, timeouts,
/// failed polls, ...) after every change, for health pages and tests.
pub async fn run_with_stats(
    config: PumpConfig,
    ctx: DriverContext,
    stats: watch::Sender<PollStats>,
) -> Result<(), PumpError> {
    let device = ctx.device().id.clone();
    let mut poller = Poller::new(config.poll_settings(device.as_str()));
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(config.reconnect_max)
        .with_jitter()
        .without_max_times();
    let mut delays = backoff.build();
    let mut last_error: Option<String> = None;
    let mut published = DeviceTotals::default();
    let mut first_attempt = true;
    loop {
        if !std::mem::take(&mut first_attempt) {
            ctx.metrics().reconnect();
        }
        let end = match open(&config) {
            Ok(port) => {
                tracing::info!(%device, port = %config.port.display(), "pump port open");
                last_error = None;
                poller.handle_connect(Instant::now().into_std());
                let mut went_online = false;
                let end = session(
                    &config,
                    &ctx,
                    &mut poller,
                    port,
                    &stats,
                    &mut published,
                    &mut went_online,
                )
                .await?;
                if went_online {
                    delays = backoff.build();
                }
                end
            }
            Err(e) => SessionEnd::PortLost(format!("cannot open {}: {e}", config.port.display())),
        };
        let reason = match end {
            SessionEnd::Shutdown => break,
            SessionEnd::PortLost(reason) => reason,
        };
        // Log on change only: a port that stays gone must not flood the log.
        if last_error.as_deref() != Some(reason.as_str()) {
            tracing::warn!(%device, %reason, "pump port unavailable; retrying");
            last_error = Some(reason.clone());
        }
        poller.handle_disconnect(Instant::now().into_std(), &reason);
        drain_events(&ctx, &mut poller, &mut false).await?;
        report(&ctx, &poller, &stats, &mut published);
        let delay = delays.next().unwrap_or(config.reconnect_max);
        tokio::select! {
            () = ctx.shutdown().cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    tracing::debug!(%device, "pump driver stopped");
    Ok(())
}

fn open(config: &PumpConfig) -> Result<SerialStream, tokio_serial::Error> {
    tokio_serial::new(config.port.to_string_lossy(), config.baud)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None)
        .open_native_async()
}

async fn session(
    config: &PumpConfig,
    ctx: &DriverContext,
    poller: &mut Poller,
    mut port: SerialStream,
    stats: &watch::Sender<PollStats>,
    published: &mut DeviceTotals,
    went_online: &mut bool,
) -> Result<SessionEnd, PipelineClosed> {
    let mut buf = [0u8; 256];
    loop {
        while let Some(bytes) = poller.poll_transmit() {
            let write = tokio::time::timeout(config.reply_timeout, port.write_all(&bytes)).await;
            match write {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Ok(SessionEnd::PortLost(format!("write failed: {e}"))),
                Err(_) => return Ok(SessionEnd::PortLost("write timed out".into())),
            }
        }
        drain_events(ctx, poller, went_online).await?;
        report(ctx, poller, stats, published);
        let deadline = poller.poll_timeout().map(Instant::from_std);
        tokio::select! {
            () = ctx.shutdown().cancelled() => return Ok(SessionEnd::Shutdown),
            read = port.read(&mut buf) => match read {
                Ok(0) => return Ok(SessionEnd::PortLost("port closed".into())),
                Ok(n) => poller.handle_input(Instant::now().into_std(), &buf[..n]),
                Err(e) => return Ok(SessionEnd::PortLost(format!("read failed: {e}"))),
            },
            () = sleep_until(deadline) => {
                // A USB adapter that was unplugged may leave a silent fd behind.
                if !config.port.exists() {
                    return Ok(SessionEnd::PortLost(format!("{} was removed", config.port.display())));
                }
                poller.handle_timeout(Instant::now().into_std());
            }
        }
    }
}

/// Publishes the poller's counters to `stats` (when they changed) and to
/// the device's metrics.
fn report(
    ctx: &DriverContext,
    poller: &Poller,
    stats: &watch::Sender<PollStats>,
    published: &mut DeviceTotals,
) {
    let now = poller.stats();
    ctx.metrics().publish(published, now.totals());
    stats.send_if_modified(|s| {
        let changed = *s != now;
        *s = now;
        changed
    });
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn drain_events(
    ctx: &DriverContext,
    poller: &mut Poller,
    went_online: &mut bool,
) -> Result<(), PipelineClosed> {
    let mut cycle = Vec::new();
    while let Some(event) = poller.poll_event() {
        if let PumpEvent::State(state) = &event {
            // Logged when it starts and when it ends, counted in the poll
            // stats (`incomplete_polls`) every time.
            let invalid = state.vtbi_invalid.is_some();
            if invalid != poller.vtbi_missing_logged {
                poller.vtbi_missing_logged = invalid;
                match &state.vtbi_invalid {
                    Some(e) => {
                        tracing::warn!(device = %ctx.device().id, error = %e, "pump VTBI reply unusable: status values kept, VTBI reported missing");
                    }
                    None => {
                        tracing::info!(device = %ctx.device().id, "pump VTBI replies usable again");
                    }
                }
            }
        }
        if matches!(event, PumpEvent::Online { .. }) {
            *went_online = true;
        }
        match translate(ctx, chrono::Utc::now(), event, &mut cycle) {
            Translated::Gathering => {}
            Translated::CycleDone => ctx.emit_measurement(std::mem::take(&mut cycle)).await?,
            Translated::Alone(event) => {
                ctx.emit_measurement(std::mem::take(&mut cycle)).await?;
                ctx.emit(event).await?;
            }
        }
    }
    ctx.emit_measurement(cycle).await
}

/// What one poller event means for the pipeline.
#[derive(Debug)]
pub enum Translated {
    /// Added to the poll cycle's measurement; more of it follows.
    Gathering,
    /// The poll cycle is complete: its measurement goes out now.
    CycleDone,
    /// A status change that stands on its own (after the cycle so far).
    Alone(Event),
}

/// Turns a poller event into what the driver emits, with the gateway's
/// time `now`: one poll cycle's alarm changes and values gather in `cycle`
/// (one measurement, so a rule raised by the alarm reads the values of the
/// same poll). Pure apart from logging: the demo's scenario test runs it on
/// a simulated clock.
pub fn translate(
    ctx: &DriverContext,
    now: chrono::DateTime<chrono::Utc>,
    event: PumpEvent,
    cycle: &mut Vec<Event>,
) -> Translated {
    match event {
        PumpEvent::Online { serial } => {
            tracing::info!(device = %ctx.device().id, %serial, "pump online");
            let reason = format!("identified pump serial {serial}");
            Translated::Alone(ctx.status(now, DeviceState::Online, Some(&reason)))
        }
        PumpEvent::Offline { reason } => {
            tracing::warn!(device = %ctx.device().id, %reason, "pump offline");
            Translated::Alone(ctx.status(now, DeviceState::Offline, Some(&reason)))
        }
        PumpEvent::AlarmStart(a) => {
            cycle.push(ctx.alarm(now, a.code(), AlarmPhase::Start, a.kind(), a.raw()));
            Translated::Gathering
        }
        PumpEvent::AlarmEnd(a) => {
            cycle.push(ctx.alarm(now, a.code(), AlarmPhase::End, a.kind(), a.raw()));
            Translated::Gathering
        }
        PumpEvent::State(state) => {
            readings(ctx, now, &state, cycle);
            Translated::CycleDone
        }
    }
}

/// The values of one poll, added to `out`.
fn readings(
    ctx: &DriverContext,
    now: chrono::DateTime<chrono::Utc>,
    state: &PumpState,
    out: &mut Vec<Event>,
) {
    let values = [
        (Metric::InfusionRate, state.rate),
        (Metric::VolumeInfused, state.volume_infused),
        (Metric::Vtbi, state.vtbi),
        (Metric::VtbiRemaining, state.vtbi_remaining),
        (Metric::InfusionTimeRemaining, state.time_remaining),
        (Metric::LinePressure, state.line_pressure),
    ];
    for (metric, value) in values {
        let Some(value) = value else { continue };
        // The parser only yields finite numbers, so this cannot fail; if it
        // ever does, the value is dropped and said so rather than sent.
        match ctx.reading(now, TimeSource::Gateway, metric, value) {
            Ok(event) => out.push(event),
            Err(e) => tracing::error!(device = %ctx.device().id, error = %e, "pump value rejected"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;
    use wardgate_model::{DeviceKind, DeviceRef, Event};

    #[tokio::test(start_paused = true)]
    async fn missing_port_reports_offline_once_keeps_retrying_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = PumpConfig::new(dir.path().join("no-such-port"));
        config.reconnect_max = Duration::from_secs(1);
        let (tx, rx) = mpsc::channel(16);
        let mut rx = crate::EventReceiver::new(rx);
        let shutdown = CancellationToken::new();
        let ctx = DriverContext::new(
            DeviceRef::new("pump-9".into(), DeviceKind::Pump),
            "bed-9".into(),
            tx,
            shutdown.clone(),
        );
        let (stats_tx, _stats) = watch::channel(PollStats::default());
        let task = tokio::spawn(run_with_stats(config, ctx, stats_tx));
        match rx.recv().await {
            Some(Event::DeviceStatus(s)) => {
                assert_eq!(s.state, DeviceState::Offline);
                assert!(s.reason.unwrap().starts_with("cannot open "));
            }
            other => panic!("expected offline, got {other:?}"),
        }
        assert!(
            matches!(rx.recv().await, Some(Event::DeviceAlarm(a)) if &*a.alarm == "communication_lost")
        );
        // A minute of (virtual) retrying adds nothing: offline is said once.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(rx.try_recv().is_err());
        assert!(!task.is_finished());
        shutdown.cancel();
        task.await.unwrap().unwrap();
    }
}
