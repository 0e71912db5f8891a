//! BLE health devices over the simulator socket: a spec-exact encoder of
//! every GATT health characteristic the gateway decodes ([`encode`]),
//! scripted scenarios ([`scenario`]) and the device server ([`server`]).
//! Runnable in-process ([`server::serve`]) or as `wardgate-sim ble`.

pub mod encode;
pub mod scenario;
pub mod server;

pub use scenario::Scenario;
pub use server::{BleSimConfig, listen_and_serve, serve};

/// `wardgate-sim ble` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BleArgs {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub listen: std::net::SocketAddr,
    #[arg(long, value_enum, default_value = "normal")]
    pub scenario: Scenario,
    /// The device's Bluetooth address.
    #[arg(long, default_value = "AA:BB:CC:00:00:01", value_parser = parse_address)]
    pub address: [u8; 6],
    /// Virtual seconds per real second (weight-gain defaults to half a day a second).
    #[arg(long)]
    pub speed: Option<f64>,
    /// Start the script over when it ends.
    #[arg(long)]
    pub repeat: bool,
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

/// Runs `wardgate-sim ble` until interrupted.
pub async fn run(args: BleArgs) -> std::io::Result<()> {
    let config = BleSimConfig {
        scenario: args.scenario,
        address: args.address,
        speed: args.speed,
        start: chrono::Utc::now().naive_utc(),
        repeat: args.repeat,
    };
    listen_and_serve(args.listen, config).await
}
