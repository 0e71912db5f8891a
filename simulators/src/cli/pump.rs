//! `wardgate-sim pump`: one or more pumps, each on its own pseudo-terminal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use wardgate_sim::pump::{
    self, Action, EndAction, PumpProgram, PumpSimConfig, ScriptStep, SimAlarm, demo_script,
};

#[derive(Debug, Args)]
pub(crate) struct PumpArgs {
    /// Stable symlink to create for a pump's port; repeat for several pumps.
    #[arg(long = "link", value_name = "PATH")]
    links: Vec<PathBuf>,
    /// Number of pumps when no --link is given (their /dev/pts paths are printed).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Serial number of the first pump; later ones count up (8002-51741, ...).
    #[arg(long, default_value = "8002-51740")]
    serial: String,
    /// Infusion rate, mL/h.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Volume to be infused, mL (0 = no VTBI).
    #[arg(long, default_value_t = 250.0)]
    vtbi: f64,
    /// What to do when the VTBI is delivered.
    #[arg(long, value_enum, default_value_t = End::Kvo)]
    end: End,
    /// Pump seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Scripted events: `demo` cycles through every alarm and line fault.
    #[arg(long, value_enum, default_value_t = Scenario::None)]
    scenario: Scenario,
    /// Switch an alarm on at start (occlusion, occlusion-upstream, air-in-line,
    /// door-open, low-battery, battery-depleted, pump-fault, call-back).
    #[arg(long = "alarm", value_name = "NAME", value_parser = parse_alarm)]
    alarms: Vec<SimAlarm>,
    /// Write the gateway configuration fragment that reads these pumps
    /// ([[subjects]] bed-1.., [[devices]] pump-<serial> with their ports) to
    /// this file once every pump is up.
    #[arg(long, value_name = "FILE")]
    config_out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum End {
    Kvo,
    Stop,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Scenario {
    None,
    Demo,
}

fn parse_alarm(s: &str) -> Result<SimAlarm, String> {
    SimAlarm::parse(s).ok_or_else(|| format!("unknown alarm {s:?}"))
}

/// `8002-51740` + 2 = `8002-51742`; a serial without a numeric tail gets `-2`.
fn nth_serial(base: &str, i: usize) -> String {
    if i == 0 {
        return base.to_owned();
    }
    let digits = base.len() - base.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, tail) = base.split_at(base.len() - digits);
    match tail.parse::<u64>() {
        Ok(n) => format!("{head}{:0width$}", n + i as u64, width = digits),
        Err(_) => format!("{base}-{i}"),
    }
}

pub(crate) async fn run(args: PumpArgs) -> anyhow::Result<()> {
    let links: Vec<Option<PathBuf>> = if args.links.is_empty() {
        vec![None; args.count.max(1)]
    } else {
        args.links.iter().cloned().map(Some).collect()
    };
    let mut pumps = Vec::new();
    for (i, link) in links.into_iter().enumerate() {
        let config = PumpSimConfig {
            program: PumpProgram {
                serial: nth_serial(&args.serial, i),
                rate: args.rate,
                vtbi: (args.vtbi > 0.0).then_some(args.vtbi),
                end_action: match args.end {
                    End::Kvo => EndAction::Kvo,
                    End::Stop => EndAction::Stop,
                },
                ..PumpProgram::default()
            },
            link,
            time_scale: args.time_scale,
        };
        let sim = pump::spawn(config).context("starting a simulated pump")?;
        for alarm in &args.alarms {
            sim.handle.act(Action::Alarm(*alarm, true)).await?;
        }
        println!(
            "pump {} on {}",
            sim.handle.serial(),
            pump::describe(&sim.handle.path())
        );
        pumps.push(sim);
    }
    if let Some(out) = &args.config_out {
        let fragment = pump::config_fragment(pumps.iter().map(|p| &p.handle));
        wardgate_sim::write_fragment(out, &fragment)?;
    }
    let script: Vec<ScriptStep> = match args.scenario {
        Scenario::None => Vec::new(),
        Scenario::Demo => demo_script(),
    };
    for sim in &pumps {
        if !script.is_empty() {
            let handle = sim.handle.clone();
            let script = script.clone();
            tokio::spawn(async move {
                while pump::run_script(&handle, &script).await.is_ok() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
    }
    // Stop on Ctrl-C or SIGTERM, removing the links either way.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    for sim in pumps {
        sim.stop().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::nth_serial;

    #[test]
    fn serials_count_up() {
        assert_eq!(nth_serial("8002-51740", 0), "8002-51740");
        assert_eq!(nth_serial("8002-51740", 3), "8002-51743");
        assert_eq!(nth_serial("PUMP", 2), "PUMP-2");
    }
}
