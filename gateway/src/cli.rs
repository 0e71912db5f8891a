//! The command line's definitions (clap), shared by the binary, the man
//! pages and the shell completions (`wardgate generate`), so the three never
//! disagree. Parsing only: what each command does lives elsewhere.

use std::path::{Path, PathBuf};

use clap::{Arg, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::logging::LogFormat;

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
pub struct Cli {
    /// Log format on standard error: `human` for people, `json` for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Least severe log level shown (error, warn, info, debug, trace). RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Find devices to configure: this machine's serial ports and the Bluetooth LE
    /// devices in range, with the addresses to paste into the configuration.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DecodeCommand {
    /// A Bluetooth LE health characteristic value, e.g. `wardgate decode ble 2a37 "16 48 00 04"`.
    Ble {
        /// The characteristic: `2a35`, `0x2A35` or the full 128-bit UUID.
        characteristic: String,
        /// The value as hex bytes (spaces, `:` or `-` between bytes are fine).
        hex: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List the serial ports (for pumps and Modbus RTU: `port`) and the Bluetooth LE
    /// devices heard within --timeout with the services they advertise (for BLE:
    /// `addresses`), as tables or one JSON object.
    ///
    /// Exits 0 when both lists were made, 1 when one could not be (no Bluetooth
    /// adapter, no D-Bus system bus): the other list is still printed and the reason
    /// is one line on standard error. Nothing is opened or connected to.
    Scan {
        /// How long to listen for Bluetooth LE advertisements (1s to 5m).
        #[arg(long, default_value = "5s", value_parser = crate::cmd::devices::parse_timeout)]
        timeout: std::time::Duration,
        /// Print one JSON object (`serial.ports`, `bluetooth.devices`, and each
        /// half's `errors`) instead of tables.
        #[arg(long)]
        json: bool,
        /// Ask the `wardgate-sim ble` device on this socket instead of the radio
        /// (repeatable): the pairing step without hardware.
        #[arg(long, value_name = "HOST:PORT")]
        simulator: Vec<std::net::SocketAddr>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Run rule tests (input series and the alerts they must raise) and report each
    /// case; exits 0 when all pass, 1 when one fails, 2 when the file is invalid.
    Test {
        /// The rule test file (TOML), e.g. config/rules/example.test.toml.
        file: PathBuf,
    },
}

/// What the binary was asked to do.
#[derive(Debug)]
pub enum Invocation {
    /// A command of [`Cli`].
    Cli(Cli),
    /// `wardgate generate --out DIR`: the man pages and completions, for
    /// packaging (scripts/package). Not part of [`Cli`], so that neither the
    /// man pages nor the completions offer it.
    Generate { out: PathBuf },
}

/// Parses the command line: [`Cli`] plus the hidden `generate`; on a usage
/// error prints it and exits 2, as clap does.
pub fn parse() -> Invocation {
    let generate = clap::Command::new("generate")
        .hide(true)
        .about("Write the man pages and shell completions into a directory (for packaging)")
        .arg(
            Arg::new("out")
                .long("out")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf))
                .help("Where to write man/*.1 and completions/{wardgate.bash,_wardgate,wardgate.fish}"),
        );
    let matches = Cli::command().subcommand(generate).get_matches();
    if let Some(("generate", m)) = matches.subcommand()
        && let Some(out) = m.get_one::<PathBuf>("out")
    {
        return Invocation::Generate { out: out.clone() };
    }
    Invocation::Cli(Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
}

/// The shells whose completions the package ships, with the file name each
/// one's Debian directory expects (`/usr/share/bash-completion/completions`,
/// `/usr/share/zsh/vendor-completions`, `/usr/share/fish/vendor_completions.d`).
const COMPLETIONS: [(clap_complete::Shell, &str); 3] = [
    (clap_complete::Shell::Bash, "wardgate.bash"),
    (clap_complete::Shell::Zsh, "_wardgate"),
    (clap_complete::Shell::Fish, "wardgate.fish"),
];

/// `wardgate generate`: one man page per command (`man/wardgate.1`,
/// `man/wardgate-check-config.1`, ...) and the
/// completions of [`COMPLETIONS`] under `completions/`. Returns the files
/// written.
pub fn generate(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(Cli::command(), &man)?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(&man)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    for (shell, name) in COMPLETIONS {
        // Into memory first: clap_complete panics on a failed write.
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "wardgate", &mut script);
        let path = completions.join(name);
        std::fs::write(&path, script)?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}
