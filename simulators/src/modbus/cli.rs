//! `wardgate-sim modbus`: runs a configured (or the built-in ward) scenario
//! until Ctrl-C, printing where each device can be reached.

use std::path::PathBuf;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::{SimConfig, config_fragment, start};

/// Modbus TCP and RTU (pseudo-terminal) ward sensors.
#[derive(Debug, clap::Args)]
pub struct ModbusArgs {
    /// Scenario file (TOML, `[[tcp]]` devices and `[[rtu]]` buses); the
    /// built-in ward scenario when absent.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Write the gateway configuration fragment that reads these devices
    /// ([[metrics]], [[subjects]], [[devices]] with their real addresses and
    /// register maps) to this file once every device is up. Each register
    /// needs `metric` (and `unit` for a custom metric) in the scenario.
    #[arg(long, value_name = "FILE")]
    pub config_out: Option<PathBuf>,
}

/// Starts every device, writes the `--config-out` fragment, prints
/// `tcp <name> <addr>` / `rtu <bus> <path>` lines on stdout, and serves
/// until Ctrl-C.
pub async fn run(args: ModbusArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<SimConfig>(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => SimConfig::ward_scenario(),
    };
    let rtu_ids: Vec<Vec<String>> = config
        .rtu
        .iter()
        .map(|b| b.slaves.iter().map(|s| s.unit_id.to_string()).collect())
        .collect();
    let shutdown = CancellationToken::new();
    let running = start(config.clone(), shutdown.clone()).await?;
    if let Some(out) = &args.config_out {
        crate::write_fragment(out, &config_fragment(&config, &running)?)?;
    }
    for (name, sim) in &running.tcp {
        println!("tcp {name} {}", sim.addr);
    }
    for ((name, sim), ids) in running.rtu.iter().zip(rtu_ids) {
        println!("rtu {name} {} slaves {}", sim.path, ids.join(","));
    }
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    Ok(())
}
