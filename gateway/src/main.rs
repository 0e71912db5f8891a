//! `wardgate`: the command line. Exit codes: 0 success, 1 the gateway failed
//! while running (a sink could not be opened, a fatal I/O error), 2 the
//! configuration or the command line is invalid.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use wardgate::config;
use wardgate::logging::{self, LogFormat};

/// Telemetry and alerting gateway for hospital wards and home care hubs.
///
/// wardgate reads bedside and home devices (Bluetooth wearables, infusion pumps,
/// Modbus room sensors), raises alerts for nurses, and forwards every reading
/// and alert to its sinks.
///
/// Exit codes: 0 success; 1 the gateway failed while running; 2 the
/// configuration or the command line is invalid.
#[derive(Debug, Parser)]
#[command(name = "wardgate", version, propagate_version = true)]
struct Cli {
    /// Log format on standard error: `human` for people, `json` for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    /// Least severe log level shown (error, warn, info, debug, trace). RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: read the configured devices and deliver readings and alerts
    /// until stopped with Ctrl-C or SIGTERM (which drains and flushes everything first).
    Run {
        /// The configuration file (TOML), e.g. config/ward.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Forward gateway telemetry from MQTT into InfluxDB (run centrally, not on the ward box).
    ///
    /// Takes every gateway's telemetry (`<topic_prefix>/+/+/+/telemetry`) through an MQTT shared
    /// subscription, checks each line (line protocol, tags naming the gateway of its topic, the
    /// schema), writes the good ones to InfluxDB and only then acknowledges the message to the
    /// broker: if InfluxDB is down, or the bridge crashes, the broker keeps the messages and
    /// nothing is lost. Lines it refuses, or that InfluxDB refuses, go to a bounded quarantine
    /// file. Start several bridges with
    /// the same `group` (each with its own `client_id`) to share the load. Stop with Ctrl-C or
    /// SIGTERM. See docs/influxdb.md.
    Bridge {
        /// The bridge configuration file (TOML), e.g. config/bridge.toml.
        #[arg(long, short)]
        config: PathBuf,
        /// Only check the configuration file and exit (0 valid, 2 invalid).
        #[arg(long)]
        check: bool,
    },
    /// Check a configuration file without starting anything; every problem is listed
    /// with its file, line and column. Exits 0 when valid, 2 when not. A bridge file
    /// (with [mqtt] and [influxdb] and no [gateway]) is checked as one.
    CheckConfig {
        /// The configuration file (TOML) to check.
        file: PathBuf,
    },
    /// Run the alert rules over recorded readings (JSON lines) and print the alerts
    /// they would have raised and the derived readings (NEWS2) as JSON lines —
    /// to try thresholds on past data. Built-in rule packs unless --config says otherwise.
    Replay {
        /// Recorded readings, device events and subject profiles, one JSON object per
        /// line; `-` reads standard input.
        #[arg(long, short)]
        input: PathBuf,
        /// Take the rules, parameters and subject profiles from this configuration.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Try wardgate without hardware: a simulated ward of 8 beds, 4 infusion pumps and
    /// Modbus room and fridge sensors with scripted events, the nurse-station page at
    /// http://127.0.0.1:8080/ and a token printed for acknowledging. Stop with Ctrl-C.
    Demo {
        /// Where the page and API listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Also publish to this MQTT broker (`host:port`); buffered while unreachable.
        #[arg(long)]
        mqtt: Option<String>,
        /// Also write to this InfluxDB v2 API (`http://host:8086`; org `demo`, bucket
        /// `wardgate`, token from $WARDGATE_INFLUX_TOKEN); buffered while unreachable.
        #[arg(long)]
        influx: Option<String>,
    },
    /// Decode what a device sent, for field engineers: prints the readings, units and
    /// flags as one JSON object, or one line saying why the payload is malformed (exit 1).
    Decode {
        #[command(subcommand)]
        command: DecodeCommand,
    },
    /// Rule tools for hospital engineers.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DecodeCommand {
    /// A Bluetooth LE health characteristic value, e.g. `wardgate decode ble 2a37 "16 48 00 04"`.
    Ble {
        /// The characteristic: `2a35`, `0x2A35` or the full 128-bit UUID.
        characteristic: String,
        /// The value as hex bytes (spaces, `:` or `-` between bytes are fine).
        hex: String,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Run rule tests (input series and the alerts they must raise) and report each
    /// case; exits 0 when all pass, 1 when one fails, 2 when the file is invalid.
    Test {
        /// The rule test file (TOML), e.g. config/rules/example.test.toml.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log_level);
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Run { config } => run(&config),
        Command::Bridge { config, check } => bridge(&config, check),
        Command::Demo {
            listen,
            mqtt,
            influx,
        } => demo(wardgate::demo::DemoOptions {
            listen,
            mqtt,
            influx,
        }),
        Command::Replay { input, config } => wardgate::cmd::replay_file(&input, config.as_deref()),
        Command::Rules {
            command: RulesCommand::Test { file },
        } => wardgate::cmd::rules_test(&file),
        Command::Decode {
            command:
                DecodeCommand::Ble {
                    characteristic,
                    hex,
                },
        } => wardgate::cmd::decode_ble(&characteristic, &hex),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    if wardgate::bridge::config::looks_like_bridge_file(file) {
        return bridge(file, true);
    }
    match config::load(file) {
        Ok(c) => {
            println!(
                "{}: valid (gateway {}, {} subjects, {} devices, {} sinks)",
                file.display(),
                c.gateway.id,
                c.subjects.len(),
                c.devices.len(),
                c.sinks.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(2)
        }
    }
}

fn run(file: &std::path::Path) -> ExitCode {
    let config = match config::load(file) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    until_stopped(|shutdown| async move {
        match wardgate::pipeline::run(config, shutdown, None).await {
            Ok(summary) => {
                tracing::info!(events = ?summary.events, written = ?summary.written, driver_crashes = summary.driver_crashes, "wardgate stopped");
                if summary.failed_sinks.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e @ wardgate::pipeline::PipelineError::SpoolFailed { .. }) => {
                tracing::error!(error = %logging::error_chain(&e), "wardgate failed");
                ExitCode::FAILURE
            }
            Err(e) => {
                tracing::error!(error = %logging::error_chain(&e), "wardgate could not start");
                ExitCode::FAILURE
            }
        }
    })
}

fn bridge(file: &std::path::Path, check_only: bool) -> ExitCode {
    let config = match wardgate::bridge::load(file) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!(
            "{}: valid (bridge {} -> {})",
            file.display(),
            config.mqtt.filter(),
            config.influxdb.url
        );
        return ExitCode::SUCCESS;
    }
    // Without a configured quarantine file, it goes next to the config file.
    let quarantine = file.with_file_name("bridge-quarantine.jsonl");
    until_stopped(|shutdown| async move {
        match wardgate::bridge::run(config, quarantine, shutdown).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %logging::error_chain(&e), "wardgate bridge could not start");
                ExitCode::FAILURE
            }
        }
    })
}

fn demo(opts: wardgate::demo::DemoOptions) -> ExitCode {
    until_stopped(|shutdown| async move {
        match wardgate::demo::run(opts, shutdown).await {
            Ok(summary) => {
                tracing::info!(events = ?summary.events, "demo stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %logging::error_chain(e.as_ref()), "demo failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// Runs `job` on a multi-threaded runtime with a shutdown token that the first
/// SIGINT/SIGTERM cancels.
fn until_stopped<F, Fut>(job: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(wardgate::service::MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        job(shutdown).await
    })
}

/// First SIGINT/SIGTERM: graceful shutdown. A second one: exit at once.
async fn stop_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; use Ctrl-C to stop");
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        }
    };
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        if round == 0 {
            tracing::info!(
                "stop requested: stopping drivers, draining, flushing sinks (signal again to exit at once)"
            );
            wardgate::service::stopping();
            shutdown.cancel();
        } else {
            tracing::warn!("second stop signal: exiting without draining");
            std::process::exit(1);
        }
    }
}
