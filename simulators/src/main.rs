//! `wardgate-sim`: a thin dispatcher over the simulators in the library.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "wardgate-sim",
    about = "Spec-exact device simulators for wardgate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A BLE health device (wearable, oximeter, cuff, glucometer, scale) on a local socket.
    Ble(wardgate_sim::ble::BleArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ble(args) => wardgate_sim::ble::run(args).await?,
    }
    Ok(())
}
