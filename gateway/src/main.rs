//! `wardgate`: the command line. Exit codes: 0 success, 1 the gateway failed
//! while running (a sink could not be opened, a fatal I/O error), 2 the
//! configuration or the command line is invalid.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use wardgate::cli::{Command, DecodeCommand, DevicesCommand, Invocation, RulesCommand};
use wardgate::config;
use wardgate::logging;

fn main() -> ExitCode {
    let cli = match wardgate::cli::parse() {
        Invocation::Cli(cli) => cli,
        Invocation::Generate { out } => return generate(&out),
    };
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
        Command::Devices {
            command:
                DevicesCommand::Scan {
                    timeout,
                    json,
                    simulator,
                },
        } => wardgate::cmd::devices::scan(&wardgate::cmd::devices::ScanOptions {
            timeout,
            json,
            simulators: simulator,
        }),
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

fn generate(out: &std::path::Path) -> ExitCode {
    match wardgate::cli::generate(out) {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "{}: cannot write the man pages and completions: {e}",
                out.display()
            );
            ExitCode::FAILURE
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
