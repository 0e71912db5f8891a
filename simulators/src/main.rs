//! `wardgate-sim`: device simulators, one subcommand per device family. A
//! thin dispatcher: each family's module owns its arguments and its loop.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "wardgate-sim",
    version,
    about = "Spec-exact device simulators for wardgate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Modbus TCP and RTU (pseudo-terminal) ward sensors with scripted values and faults.
    Modbus(wardgate_sim::modbus::cli::ModbusArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Modbus(args) => wardgate_sim::modbus::cli::run(args).await,
    }
}
