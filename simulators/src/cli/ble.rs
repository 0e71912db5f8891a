//! `wardgate-sim ble`: one BLE health device on a local TCP socket.

use anyhow::Context;
use clap::Args;
use wardgate_sim::ble::{BleSimConfig, Scenario, listen_and_serve};

#[derive(Debug, Args)]
pub(crate) struct BleArgs {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:7001")]
    listen: std::net::SocketAddr,
    #[arg(long, value_enum, default_value = "normal")]
    scenario: Scenario,
    /// The device's Bluetooth address.
    #[arg(long, default_value = "AA:BB:CC:00:00:01", value_parser = parse_address)]
    address: [u8; 6],
    /// Virtual seconds per real second (weight-gain defaults to half a day a second).
    #[arg(long)]
    speed: Option<f64>,
    /// Start the script over when it ends.
    #[arg(long)]
    repeat: bool,
}

fn parse_address(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut out = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("{s:?} is not an address like AA:BB:CC:00:00:01"));
    }
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).map_err(|e| format!("{s:?}: {e}"))?;
    }
    Ok(out)
}

/// Runs the device until interrupted.
pub(crate) async fn run(args: BleArgs) -> anyhow::Result<()> {
    let config = BleSimConfig {
        scenario: args.scenario,
        address: args.address,
        speed: args.speed,
        start: chrono::Utc::now().naive_utc(),
        repeat: args.repeat,
    };
    listen_and_serve(args.listen, config)
        .await
        .with_context(|| format!("BLE simulator on {}", args.listen))
}
