//! `wardgate-sim load`: N devices of mixed kinds for a set duration, with
//! scripted alert-triggering events (see docs/load.md). Prints `READY <N>`
//! on stdout once every device is up and the configuration fragment is
//! written; everything else goes to stderr.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wardgate_sim::load::{LoadConfig, LoadKind, LoadSim, LoadStats, Mix};

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Total number of devices.
    #[arg(long)]
    devices: usize,
    /// Weights of the kinds; kinds not named get 0; the remainder of the
    /// integer split goes to BLE.
    #[arg(long, default_value = "ble=60,modbus=20,pump=20")]
    mix: Mix,
    /// One batch of readings per device per interval (at least 100ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Time between two scripted events (0s: none).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    alert_every: Duration,
    /// How long to run (0s: until interrupted).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Index of the first device: subjects are load-<first-index>, ...
    #[arg(long, default_value_t = 0)]
    first_index: usize,
    /// Where to write the gateway configuration fragment ([[subjects]], [[devices]]).
    #[arg(long)]
    config_out: PathBuf,
    /// Where to write one JSON line per injected event.
    #[arg(long)]
    events_out: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime_serde::re::humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

fn count(sim: &LoadSim, kind: LoadKind) -> usize {
    sim.devices().iter().filter(|d| d.kind == kind).count()
}

pub(crate) async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let config = LoadConfig {
        devices: args.devices,
        mix: args.mix,
        interval: args.interval,
        first_index: args.first_index,
    };
    let started = Instant::now();
    let sim = LoadSim::start(config, shutdown.clone())
        .await
        .context("starting the simulated devices")?;
    wardgate_sim::write_fragment(&args.config_out, &sim.config_fragment()?)?;
    let events = args
        .events_out
        .as_ref()
        .map(|p| std::fs::File::create(p).with_context(|| format!("creating {}", p.display())))
        .transpose()?;
    let interval = humantime_serde::re::humantime::format_duration(args.interval);
    let last = args.first_index + args.devices.saturating_sub(1);
    tracing::info!(
        kind = "ble",
        devices = count(&sim, LoadKind::Ble),
        "BLE vital-signs patches on 127.0.0.1 simulator sockets: HR + PLX + temperature every {interval}, phases spread over the interval"
    );
    tracing::info!(
        kind = "modbus",
        devices = count(&sim, LoadKind::Modbus),
        "Modbus TCP ward sensors, one listener each: room_temp + humidity, polled every {interval}"
    );
    tracing::info!(
        kind = "pump",
        devices = count(&sim, LoadKind::Pump),
        "infusion pumps on pseudo-terminals, infusing, polled every {interval}"
    );
    tracing::info!(
        subjects = %format_args!("load-{}..=load-{last}", args.first_index),
        config = %args.config_out.display(),
        startup_ms = started.elapsed().as_millis(),
        "all devices up"
    );
    // Signals are caught before READY is said: a caller may stop us at once.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY {}", args.devices)?;
        out.flush()?;
    }

    let end = async {
        if args.duration.is_zero() {
            std::future::pending::<()>().await;
        } else {
            tokio::time::sleep(args.duration).await;
        }
    };
    let mut injector = sim.injector(events);
    let mut ticker = (!args.alert_every.is_zero()).then(|| {
        let mut t = tokio::time::interval_at(Instant::now() + args.alert_every, args.alert_every);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    tokio::pin!(end);
    let why = loop {
        tokio::select! {
            () = &mut end => break "duration elapsed",
            _ = interrupt.recv() => break "interrupted",
            _ = term.recv() => break "terminated",
            _ = async { ticker.as_mut().expect("guarded").tick().await }, if ticker.is_some() => {
                if let Err(e) = injector.inject_next().await {
                    tracing::warn!(error = %e, "cannot write the events file");
                }
            }
        }
    };
    drop(injector);
    let LoadStats {
        notifications,
        ble_links,
        modbus_polls,
        pump_replies,
        events,
        events_missed,
    } = sim.stats();
    tracing::info!(
        why,
        seconds = started.elapsed().as_secs_f64(),
        notifications,
        ble_links,
        modbus_polls,
        pump_replies,
        events,
        events_missed,
        "load finished: {notifications} BLE notifications sent, {} polls answered ({modbus_polls} Modbus, {pump_replies} pump), {events} events injected",
        modbus_polls + pump_replies
    );
    sim.stop();
    Ok(())
}
