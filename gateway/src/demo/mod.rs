//! `wardgate demo`: the whole gateway on one machine without hardware. A
//! ward of 8 beds (BLE wearables, oximeters and cuffs from the in-process
//! BLE simulator, the rest synthetic), 4 infusion pumps
//! simulated on pseudo-terminals, Modbus room and fridge sensors from the
//! in-process Modbus simulator on free ports, and scripted events. The
//! demo writes an ordinary configuration file into a temporary directory and
//! runs the ordinary pipeline on it, so what the demo shows is what `run`
//! does.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use wardgate_sim::ble::{BleSimConfig, Scenario};
use wardgate_sim::modbus::SimConfig;
use wardgate_sim::pump::{Action, PumpProgram, PumpSim, PumpSimConfig, ScriptStep, SimAlarm};

use crate::pipeline::{PipelineError, Summary};

#[cfg(test)]
mod ward_test;

/// `wardgate demo` options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the page and API listen.
    pub listen: SocketAddr,
    /// `host:port` of an MQTT broker to publish to (buffered in the spool
    /// while it is unreachable).
    pub mqtt: Option<String>,
    /// InfluxDB v2 write API base URL (e.g. `http://127.0.0.1:8086`, org
    /// `demo`, bucket `wardgate`, token from `$WARDGATE_INFLUX_TOKEN` when set);
    /// buffered in the spool while unreachable.
    pub influx: Option<String>,
}

/// One device of a bed.
enum DeviceSpec {
    /// `(id suffix, interval, signals as TOML inline tables)`.
    Synthetic(&'static str, &'static str, Vec<String>),
    /// `(id suffix, scenario, speed, repeat)`: a BLE device simulated
    /// in-process on a loopback socket, read by the real BLE driver.
    Ble(&'static str, Scenario, Option<f64>, bool),
}

impl DeviceSpec {
    fn suffix(&self) -> &'static str {
        match self {
            DeviceSpec::Synthetic(s, _, _) | DeviceSpec::Ble(s, _, _, _) => s,
        }
    }
}

/// One bed: its number, its devices and its pump.
struct Bed {
    n: u8,
    devices: Vec<DeviceSpec>,
    pump: Option<u8>,
}

fn sig(metric: &str, base: f64, amplitude: f64, period: &str, decimals: u8) -> String {
    format!(
        "{{ metric = \"{metric}\", base = {base}, amplitude = {amplitude}, period = \"{period}\", decimals = {decimals} }}"
    )
}

/// The ward. BLE devices (the simulator's scenarios): a vital-signs patch
/// (heart rate, SpO2, temperature, battery) on most beds; bed 3 desaturates
/// (an oximeter taking SpO2 from 97 % to 85 % and back, every 3 minutes)
/// while a chest strap shows its heart rate climbing (NEWS2 up to high); bed
/// 5's cuff measures 182/112 mmHg (hypertensive crisis); bed 7's chest strap
/// battery drains from 30 % to 10 % and stays there. Synthetic devices fill
/// in what has no BLE scenario: respiration rate, ACVPU and O2 flow (charted
/// observations, as an EHR would send them: NEWS2 needs all seven
/// parameters), routine BP cuffs, and oximeters and thermometers where the
/// wearable is a chest strap.
fn beds() -> Vec<Bed> {
    (1..=8u8)
        .map(|n| {
            let rr = if n == 3 { 23.0 } else { 15.0 };
            let o2 = if n == 3 { 2.0 } else { 0.0 };
            let mut devices = vec![DeviceSpec::Synthetic(
                "obs",
                "10s",
                vec![
                    sig("resp_rate", rr, 1.0, "120s", 0),
                    sig("consciousness", 0.0, 0.0, "60s", 0),
                    sig("o2_flow", o2, 0.0, "60s", 1),
                ],
            )];
            match n {
                3 => {
                    devices.push(DeviceSpec::Ble(
                        "oximeter",
                        Scenario::Desaturation,
                        None,
                        true,
                    ));
                    devices.push(DeviceSpec::Ble(
                        "wearable",
                        Scenario::Tachycardia,
                        None,
                        true,
                    ));
                }
                7 => {
                    devices.push(DeviceSpec::Ble(
                        "wearable",
                        Scenario::BatteryDrain,
                        Some(5.0),
                        false,
                    ));
                    devices.push(DeviceSpec::Synthetic(
                        "oximeter",
                        "2s",
                        vec![
                            sig("spo2", 96.0, 1.0, "120s", 0),
                            sig("pulse_rate", 70.0, 3.0, "90s", 0),
                        ],
                    ));
                }
                _ => devices.push(DeviceSpec::Ble("wearable", Scenario::Normal, None, true)),
            }
            if matches!(n, 3 | 7) {
                devices.push(DeviceSpec::Synthetic(
                    "thermometer",
                    "20s",
                    vec![sig("body_temp", 36.9, 0.1, "300s", 1)],
                ));
            }
            if n == 5 {
                devices.push(DeviceSpec::Ble("cuff", Scenario::Hypertensive, None, true));
            } else {
                let sys = 118.0 + f64::from(n);
                devices.push(DeviceSpec::Synthetic(
                    "cuff",
                    "15s",
                    vec![
                        sig("bp_systolic", sys, 6.0, "180s", 0),
                        sig("bp_diastolic", 76.0, 3.0, "180s", 0),
                    ],
                ));
            }
            Bed {
                n,
                devices,
                pump: match n {
                    1 => Some(1),
                    2 => Some(2),
                    4 => Some(3),
                    6 => Some(4),
                    _ => None,
                },
            }
        })
        .collect()
}

/// Addresses of the running simulators, for the configuration.
struct Peers<'a> {
    dir: &'a Path,
    /// `(device id, BLE address, simulator socket)` of every BLE device.
    ble: Vec<(String, String, SocketAddr)>,
    pumps: Vec<PathBuf>,
    room_tcp: SocketAddr,
    rtu_port: String,
    mqtt: Option<&'a str>,
    influx: Option<&'a str>,
    listen: SocketAddr,
    token_file: PathBuf,
}

fn toml_str(s: &str) -> String {
    // TOML basic strings take JSON-style escapes for quotes and backslashes.
    serde_json::to_string(s).unwrap_or_default()
}

/// The configuration the demo runs, as a file a user could run themselves.
fn config_text(p: &Peers<'_>) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Written by `wardgate demo`: the simulated ward it runs.\n\n[gateway]\nsite = \"demo-hospital\"\nward = \"ward-7\"\nid = \"gw-demo\"\n"
    );
    let _ = writeln!(
        t,
        "[http]\nlisten = {}\ntokens = [{{ name = \"demo-station\", token = {{ file = {} }} }}]\n",
        toml_str(&p.listen.to_string()),
        toml_str(&p.token_file.display().to_string())
    );
    let _ = writeln!(
        t,
        "[spool]\npath = {}\n",
        toml_str(&p.dir.join("spool.redb").display().to_string())
    );
    // Demo timing: pump 2's occlusion (at 30 s) goes from the nurse of bed 2
    // to the charge nurse after 30 s unacknowledged, not the pack's 2 min.
    let _ = writeln!(
        t,
        "[rules]\nfiles = [\"rules.toml\"]\n\n[rules.escalate_after]\npump_occlusion = \"30s\"\n"
    );
    // Who has which beds: an alert goes to the bed's nurse first, then to
    // the charge nurse (the fridge and the bays: nobody's, so hers at once).
    let _ = writeln!(
        t,
        "[[staff]]\nid = \"ada\"\nname = \"Nurse Ada\"\nrole = \"nurse\"\nsubjects = [\"bed-1\", \"bed-2\", \"bed-3\", \"bed-4\"]\n\n[[staff]]\nid = \"ben\"\nname = \"Nurse Ben\"\nrole = \"nurse\"\nsubjects = [\"bed-5\", \"bed-6\", \"bed-7\", \"bed-8\"]\n\n[[staff]]\nid = \"grace\"\nname = \"Grace\"\nrole = \"charge_nurse\"\n"
    );
    for bed in beds() {
        let mut devices: Vec<String> = bed
            .devices
            .iter()
            .map(|d| format!("\"bed-{}-{}\"", bed.n, d.suffix()))
            .collect();
        if let Some(pump) = bed.pump {
            devices.push(format!("\"pump-{pump}\""));
        }
        let _ = writeln!(
            t,
            "[[subjects]]\nid = \"bed-{n}\"\nkind = \"bed\"\nname = \"Bed {n}\"\ndevices = [{}]\n",
            devices.join(", "),
            n = bed.n
        );
        for d in &bed.devices {
            let id = format!("bed-{}-{}", bed.n, d.suffix());
            match d {
                DeviceSpec::Synthetic(_, interval, signals) => {
                    let _ = writeln!(
                        t,
                        "[[devices]]\nid = \"{id}\"\ntype = \"synthetic\"\ninterval = \"{interval}\"\nsignals = [\n  {}\n]\n",
                        signals.join(",\n  "),
                    );
                }
                DeviceSpec::Ble(..) => {
                    if let Some((_, address, sim)) = p.ble.iter().find(|(i, _, _)| *i == id) {
                        let _ = writeln!(
                            t,
                            "[[devices]]\nid = \"{id}\"\ntype = \"ble\"\naddresses = [\"{address}\"]\nsimulator = \"{sim}\"\n",
                        );
                    }
                }
            }
        }
    }
    for (i, path) in p.pumps.iter().enumerate() {
        let _ = writeln!(
            t,
            "[[devices]]\nid = \"pump-{}\"\ntype = \"pump\"\nport = {}\npoll_interval = \"1s\"\n",
            i + 1,
            toml_str(&path.display().to_string())
        );
    }
    let _ = writeln!(
        t,
        r#"[[subjects]]
id = "bay-1"
kind = "room"
name = "Bay 1"
devices = ["bay-1-env"]

[[subjects]]
id = "bay-2"
kind = "room"
name = "Bay 2"
devices = ["bay-2-env"]

[[subjects]]
id = "med-fridge"
kind = "room"
name = "Medicines fridge"
devices = ["fridge-7"]

[[devices]]
id = "bay-1-env"
type = "modbus"
address = {room}
unit_id = 1
poll_interval = "5s"
[[devices.registers]]
table = "input_register"
address = 0
type = "i16"
scale = 0.1
metric = "room_temp"
[[devices.registers]]
table = "input_register"
address = 1
type = "u16"
scale = 0.1
metric = "humidity"

[[devices]]
id = "fridge-7"
type = "modbus"
port = {rtu}
baud_rate = 9600
parity = "even"
unit_id = 1
poll_interval = "5s"
timeout = "300ms"
[[devices.registers]]
table = "input_register"
address = 0
type = "i16"
scale = 0.01
metric = "fridge_temp"

# Slave 2 of the bus never answers: a device that is offline from the start.
[[devices]]
id = "bay-2-env"
type = "modbus"
port = {rtu}
baud_rate = 9600
parity = "even"
unit_id = 2
poll_interval = "5s"
timeout = "300ms"
[[devices.registers]]
table = "input_register"
address = 0
type = "i16"
scale = 0.1
metric = "room_temp"

[[sinks]]
type = "jsonl"
path = {jsonl}
"#,
        room = toml_str(&p.room_tcp.to_string()),
        rtu = toml_str(&p.rtu_port),
        jsonl = toml_str(&p.dir.join("events.jsonl").display().to_string()),
    );
    if let Some(mqtt) = p.mqtt {
        let (host, port) = mqtt.rsplit_once(':').unwrap_or((mqtt, "1883"));
        let _ = writeln!(
            t,
            "[[sinks]]\ntype = \"mqtt\"\nbroker = {{ host = {}, port = {} }}\n",
            toml_str(host),
            port.parse::<u16>().unwrap_or(1883)
        );
    }
    if let Some(url) = p.influx {
        let token = if std::env::var_os("WARDGATE_INFLUX_TOKEN").is_some() {
            "token = { env = \"WARDGATE_INFLUX_TOKEN\" }\n"
        } else {
            ""
        };
        let _ = writeln!(
            t,
            "[[sinks]]\ntype = \"influxdb\"\nurl = {}\norg = \"demo\"\nbucket = \"wardgate\"\n{token}",
            toml_str(url)
        );
    }
    t
}

/// Pump programs: pump 3 is near the end of its infusion (10 mL left at
/// 100 mL/h: 6 minutes) from the start.
fn pump_program(i: u8) -> PumpProgram {
    let mut p = PumpProgram {
        serial: format!("8002-5174{i}"),
        ..PumpProgram::default()
    };
    if i == 3 {
        p.vtbi = Some(10.0);
        p.near_end = Duration::from_secs(10 * 60);
    }
    p
}

/// Pump 2 occludes after 30 s for two minutes; pump 4 stops answering after
/// 60 s (the driver marks it offline) and comes back 3 minutes later.
fn pump_script(i: u8) -> Vec<ScriptStep> {
    let s = Duration::from_secs;
    match i {
        2 => vec![
            ScriptStep {
                after: s(30),
                action: Action::Alarm(SimAlarm::OcclusionDownstream, true),
            },
            ScriptStep {
                after: s(120),
                action: Action::Alarm(SimAlarm::OcclusionDownstream, false),
            },
        ],
        4 => vec![
            ScriptStep {
                after: s(60),
                action: Action::Silent(true),
            },
            ScriptStep {
                after: s(180),
                action: Action::Silent(false),
            },
        ],
        _ => Vec::new(),
    }
}

/// A token for the demo's nurse station: 128 random bits as hex.
fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Runs the demo until `shutdown` is cancelled.
pub async fn run(opts: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<Summary> {
    let dir = tempfile::Builder::new()
        .prefix("wardgate-demo-")
        .tempdir()
        .context("creating the demo's temporary directory")?;
    let token = new_token();
    let token_file = dir.path().join("station.token");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        // A secret file must be private to the gateway's user.
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&token_file)
            .and_then(|mut f| f.write_all(token.as_bytes()))
            .context("writing the demo token")?;
    }
    std::fs::write(dir.path().join("rules.toml"), include_str!("rules.toml"))
        .context("writing the demo rules")?;

    let sims = shutdown.child_token();
    let mut modbus = SimConfig::ward_scenario();
    for t in &mut modbus.tcp {
        t.listen.set_port(0);
    }
    let modbus = wardgate_sim::modbus::start(modbus, sims.clone())
        .await
        .context("starting the Modbus simulator")?;
    let room_tcp = modbus
        .tcp
        .iter()
        .find(|(name, _)| name == "room-7-1")
        .map(|(_, s)| s.addr)
        .context("the Modbus scenario has no room-7-1")?;
    let rtu_port = modbus
        .rtu
        .first()
        .map(|(_, s)| s.path.clone())
        .context("the Modbus scenario has no RTU bus")?;

    let mut pumps: Vec<PumpSim> = Vec::new();
    let mut links = Vec::new();
    for i in 1..=4u8 {
        let link = dir.path().join(format!("pump-{i}"));
        let sim = wardgate_sim::pump::spawn(PumpSimConfig {
            program: pump_program(i),
            link: Some(link.clone()),
            time_scale: 1.0,
        })
        .with_context(|| format!("starting pump simulator {i}"))?;
        let handle = sim.handle.clone();
        let steps = pump_script(i);
        let stop = sims.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                r = wardgate_sim::pump::run_script(&handle, &steps) => if let Err(e) = r {
                    tracing::warn!(pump = i, error = %e, "pump script stopped");
                },
            }
        });
        pumps.push(sim);
        links.push(link);
    }

    // One BLE simulator per BLE device, each on its own loopback socket.
    let mut ble = Vec::new();
    let mut ble_tasks = tokio::task::JoinSet::new();
    for bed in beds() {
        for d in &bed.devices {
            let DeviceSpec::Ble(suffix, scenario, speed, repeat) = d else {
                continue;
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding a BLE simulator socket")?;
            let addr = listener.local_addr().context("BLE simulator socket")?;
            let k = ble.len() as u8;
            let address = [0xAA, 0xBB, 0xCC, 0x00, bed.n, k];
            let text = address
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":");
            ble.push((format!("bed-{}-{suffix}", bed.n), text, addr));
            let config = BleSimConfig {
                scenario: *scenario,
                address,
                speed: *speed,
                start: chrono::Utc::now().naive_utc(),
                repeat: *repeat,
            };
            ble_tasks.spawn(async move {
                if let Err(e) = wardgate_sim::ble::serve(listener, config).await {
                    tracing::warn!(error = %e, "BLE simulator stopped");
                }
            });
        }
    }

    let text = config_text(&Peers {
        dir: dir.path(),
        ble,
        pumps: links,
        room_tcp,
        rtu_port,
        mqtt: opts.mqtt.as_deref(),
        influx: opts.influx.as_deref(),
        listen: opts.listen,
        token_file,
    });
    let config_path = dir.path().join("wardgate.toml");
    std::fs::write(&config_path, &text).context("writing the demo configuration")?;
    let config = crate::config::parse(&config_path, &text)
        .map_err(|e| anyhow::anyhow!("the demo configuration is invalid (a bug):\n{e}"))?;

    tracing::info!(
        beds = 8,
        pumps = 4,
        "demo ward: BLE wearables, oximeters and cuffs simulated in-process (read by the BLE driver over its simulator transport); routine cuffs, thermometers and charted observations synthetic; pumps on pseudo-terminals; Modbus room and fridge sensors simulated in-process"
    );
    tracing::info!(
        config = %config_path.display(),
        jsonl = %dir.path().join("events.jsonl").display(),
        spool = %dir.path().join("spool.redb").display(),
        "demo files (removed when the demo stops)"
    );
    tracing::info!(
        "scripted: bed 3 desaturates with a rising heart rate (NEWS2 up to high), bed 5 hypertensive (182/112), bed 7 chest-strap battery draining to 10 %, pump 2 occlusion at 30 s (with Nurse Ada, bed 2's nurse; handed to the charge nurse 30 s later unless acknowledged), pump 3 near end of infusion, pump 4 offline at 60 s, bay 2 sensor offline, fridge warming past 8 °C after about 3 minutes"
    );
    if opts.mqtt.is_none() && opts.influx.is_none() {
        tracing::info!("no --mqtt or --influx given: events go to the JSONL file only");
    }
    let (running_tx, running_rx) = tokio::sync::oneshot::channel();
    let pipeline = crate::pipeline::run(config, shutdown, Some(running_tx));
    tokio::pin!(pipeline);
    // The URL is printed only once the page is really there.
    let result = tokio::select! {
        result = &mut pipeline => result,
        running = running_rx => {
            if let Ok(running) = running {
                println!(
                    "wardgate demo: open http://{}/ — to acknowledge alerts enter this token: {token}",
                    running.http.unwrap_or(opts.listen)
                );
            }
            pipeline.await
        }
    };
    sims.cancel();
    for p in pumps {
        p.stop().await;
    }
    ble_tasks.abort_all();
    drop(modbus);
    match result {
        Ok(summary) => Ok(summary),
        Err(PipelineError::Http(e)) if e.is_address_in_use() => {
            let mut next = opts.listen;
            next.set_port(next.port().wrapping_add(1).max(1));
            Err(anyhow::anyhow!("{e}; try `--listen {next}`"))
        }
        Err(e) => Err(e.into()),
    }
}
