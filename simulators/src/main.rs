//! `wardgate-sim`: device simulators for demos and manual testing. A thin
//! dispatcher; each device family's subcommand lives in `cli/` (Modbus: in
//! the library, `wardgate_sim::modbus::cli`, so the demo can share it).

mod cli;

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
    /// A BLE health device (wearable, oximeter, cuff, glucometer, scale) on a local socket.
    Ble(cli::ble::BleArgs),
    /// Modbus TCP and RTU (pseudo-terminal) ward sensors with scripted values and faults.
    Modbus(wardgate_sim::modbus::cli::ModbusArgs),
    /// Asena-style infusion pumps on pseudo-terminals.
    Pump(cli::pump::PumpArgs),
    /// Many devices of mixed kinds (BLE, Modbus TCP, pumps) with scripted alert events.
    Load(cli::load::LoadArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Plain text when stderr is a log file (the load benchmark keeps it).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Ble(args) => cli::ble::run(args).await,
        Command::Modbus(args) => wardgate_sim::modbus::cli::run(args).await,
        Command::Pump(args) => cli::pump::run(args).await,
        Command::Load(args) => cli::load::run(args).await,
    }
}
