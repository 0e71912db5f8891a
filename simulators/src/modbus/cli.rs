//! `wardgate-sim modbus`: runs a configured (or the built-in ward) scenario
//! until Ctrl-C, printing where each device can be reached.

use std::path::PathBuf;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::{SimConfig, start_rtu, start_tcp};

/// Modbus TCP and RTU (pseudo-terminal) ward sensors.
#[derive(Debug, clap::Args)]
pub struct ModbusArgs {
    /// Scenario file (TOML, `[[tcp]]` devices and `[[rtu]]` buses); the
    /// built-in ward scenario when absent.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Starts every device, prints `tcp <name> <addr>` / `rtu <bus> <path>`
/// lines on stdout, and serves until Ctrl-C.
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
    let shutdown = CancellationToken::new();
    let mut running = Vec::new();
    for d in config.tcp {
        let name = d.device.name.clone();
        let sim = start_tcp(d.listen, d.device, shutdown.clone())
            .await
            .with_context(|| format!("listening on {} for {name}", d.listen))?;
        println!("tcp {name} {}", sim.addr);
        running.push(sim);
    }
    let mut buses = Vec::new();
    for bus in config.rtu {
        let ids: Vec<String> = bus.slaves.iter().map(|s| s.unit_id.to_string()).collect();
        let sim = start_rtu(bus.slaves, shutdown.clone())
            .await
            .with_context(|| format!("opening a pseudo-terminal for {}", bus.name))?;
        println!("rtu {} {} slaves {}", bus.name, sim.path, ids.join(","));
        buses.push(sim);
    }
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    Ok(())
}
