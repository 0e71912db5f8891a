//! A Modbus TCP / RTU ward-sensor simulator: a tokio-modbus server whose
//! registers follow scripted signals (room temperature drifting, a fridge
//! warming past 8 °C, O2 flow steps, an isolation room losing pressure), with
//! fault injection (exceptions, delayed replies, dropped connections, a
//! silent slave) that tests and demos can switch at run time.
//!
//! It encodes registers itself from its own map (`encode`), never through
//! the driver's decoder. Usable in-process ([`start_tcp`], [`start_rtu`]) and
//! from `wardgate-sim modbus`.

pub mod cli;
mod encode;
mod server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::FragmentError;
use crate::fragment::{Fragment, ModbusLink};

pub use server::{RtuSim, TcpSim, start_rtu, start_tcp};

/// A whole scenario, running: each TCP device and each RTU bus by name.
#[derive(Debug)]
pub struct RunningScenario {
    pub tcp: Vec<(String, TcpSim)>,
    pub rtu: Vec<(String, RtuSim)>,
}

/// Starts every device of `config` (the demo calls this with
/// [`SimConfig::ward_scenario`]); everything stops when `shutdown` is cancelled.
pub async fn start(
    config: SimConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<RunningScenario> {
    let mut running = RunningScenario {
        tcp: Vec::new(),
        rtu: Vec::new(),
    };
    for d in config.tcp {
        let name = d.device.name.clone();
        let sim = start_tcp(d.listen, d.device, shutdown.clone())
            .await
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("listening on {} for {name}: {e}", d.listen),
                )
            })?;
        running.tcp.push((name, sim));
    }
    for bus in config.rtu {
        let sim = start_rtu(bus.slaves, shutdown.clone()).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("pseudo-terminal for {}: {e}", bus.name))
        })?;
        running.rtu.push((bus.name, sim));
    }
    Ok(running)
}

/// The gateway configuration fragment (`--config-out`) reading `running`,
/// started from `config`: one `room` subject per TCP device and per RTU
/// slave, each device with its real address or pseudo-terminal and its
/// register map. Device ids are the names (`{bus}-{unit_id}` for an unnamed
/// slave, `modbus-{n}` for an unnamed TCP device) with `-modbus` appended.
pub fn config_fragment(
    config: &SimConfig,
    running: &RunningScenario,
) -> Result<String, FragmentError> {
    let mut f = Fragment::new("Written by `wardgate-sim modbus`: one room per simulated device.");
    let add = |f: &mut Fragment, subject: String, link, device: &SimDevice| {
        let id = format!("{subject}-modbus");
        f.subject(&subject, "room", &[&id]);
        f.modbus(&id, link, device.unit_id, None, &device.registers)
    };
    for (n, (d, (_, sim))) in config.tcp.iter().zip(&running.tcp).enumerate() {
        let name = if d.device.name.is_empty() {
            format!("modbus-{n}")
        } else {
            d.device.name.clone()
        };
        add(&mut f, name, ModbusLink::Tcp(sim.addr), &d.device)?;
    }
    for (bus, (_, sim)) in config.rtu.iter().zip(&running.rtu) {
        for slave in &bus.slaves {
            let name = if slave.name.is_empty() {
                format!("{}-{}", bus.name, slave.unit_id)
            } else {
                slave.name.clone()
            };
            add(&mut f, name, ModbusLink::Rtu(&sim.path), slave)?;
        }
    }
    Ok(f.finish())
}

/// The four tables, named as in the gateway's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimTable {
    Coil,
    DiscreteInput,
    InputRegister,
    HoldingRegister,
}

impl SimTable {
    /// The name in the gateway's configuration (and the simulator's).
    pub fn as_str(self) -> &'static str {
        match self {
            SimTable::Coil => "coil",
            SimTable::DiscreteInput => "discrete_input",
            SimTable::InputRegister => "input_register",
            SimTable::HoldingRegister => "holding_register",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimDataType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl SimDataType {
    /// The name in the gateway's configuration (and the simulator's).
    pub fn as_str(self) -> &'static str {
        match self {
            SimDataType::Bool => "bool",
            SimDataType::U16 => "u16",
            SimDataType::I16 => "i16",
            SimDataType::U32 => "u32",
            SimDataType::I32 => "i32",
            SimDataType::U64 => "u64",
            SimDataType::I64 => "i64",
            SimDataType::F32 => "f32",
            SimDataType::F64 => "f64",
        }
    }
}

/// How a value changes over time since the simulator started.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Script {
    Constant {
        value: f64,
    },
    /// `base + amplitude * sin(2πt / period)`: a room drifting around its setpoint.
    Drift {
        base: f64,
        amplitude: f64,
        #[serde(with = "humantime_serde")]
        period: Duration,
    },
    /// Linear from `from` to `to` between `start` and `start + duration`:
    /// a fridge warming after its door was left open.
    Ramp {
        from: f64,
        to: f64,
        #[serde(with = "humantime_serde", default)]
        start: Duration,
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
    /// Holds each value from its time (seconds) on: O2 flow changes, a
    /// pressure loss when an isolation-room door opens.
    Steps {
        steps: Vec<(f64, f64)>,
    },
}

impl Script {
    /// The engineering value `t` after start.
    pub fn value_at(&self, t: Duration) -> f64 {
        let s = t.as_secs_f64();
        match self {
            Script::Constant { value } => *value,
            Script::Drift {
                base,
                amplitude,
                period,
            } => {
                base + amplitude
                    * (std::f64::consts::TAU * s / period.as_secs_f64().max(1e-3)).sin()
            }
            Script::Ramp {
                from,
                to,
                start,
                duration,
            } => {
                let k =
                    ((s - start.as_secs_f64()) / duration.as_secs_f64().max(1e-3)).clamp(0.0, 1.0);
                from + (to - from) * k
            }
            Script::Steps { steps } => steps
                .iter()
                .take_while(|(at, _)| *at <= s)
                .last()
                .or(steps.first())
                .map_or(0.0, |(_, v)| *v),
        }
    }
}

/// One value in a simulated device's tables.
#[derive(Debug, Clone, Deserialize)]
pub struct SimRegister {
    pub table: SimTable,
    pub address: u16,
    #[serde(rename = "type")]
    pub data_type: SimDataType,
    /// "ABCD" (default), "DCBA", "BADC" or "CDAB".
    #[serde(default = "default_order")]
    pub order: String,
    #[serde(default = "default_scale")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    #[serde(default)]
    pub bit: Option<u8>,
    /// The gateway metric this register is read as (`--config-out`): a
    /// built-in metric, or a custom one with `unit`.
    #[serde(default)]
    pub metric: Option<String>,
    /// UCUM unit of a custom `metric`, declared in the fragment's `[[metrics]]`.
    #[serde(default)]
    pub unit: Option<String>,
    pub script: Script,
}

fn default_order() -> String {
    "ABCD".into()
}
fn default_scale() -> f64 {
    1.0
}

/// Faults a simulated device shows, switchable while it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FaultConfig {
    /// Never reply (a dead slave on the bus, an unplugged sensor).
    #[serde(default)]
    pub silent: bool,
    /// Wait this long before each reply.
    #[serde(with = "humantime_serde", default)]
    pub delay: Duration,
    /// Answer every read with this Modbus exception code (2 = illegal data
    /// address, 6 = busy, 11 = gateway target failed to respond).
    #[serde(default)]
    pub exception: Option<u8>,
}

/// Shared handle on a device's faults. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<FaultConfig>>);

impl Faults {
    pub fn new(initial: FaultConfig) -> Self {
        Self(Arc::new(Mutex::new(initial)))
    }

    pub fn get(&self) -> FaultConfig {
        self.0.lock().map(|f| f.clone()).unwrap_or_default()
    }

    pub fn set(&self, faults: FaultConfig) {
        if let Ok(mut f) = self.0.lock() {
            *f = faults;
        }
    }

    pub fn set_silent(&self, silent: bool) {
        self.update(|f| f.silent = silent);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.update(|f| f.delay = delay);
    }

    pub fn set_exception(&self, code: Option<u8>) {
        self.update(|f| f.exception = code);
    }

    fn update(&self, change: impl FnOnce(&mut FaultConfig)) {
        if let Ok(mut f) = self.0.lock() {
            change(&mut f);
        }
    }
}

/// One simulated device: its unit/slave id, register map and faults.
#[derive(Debug, Clone, Deserialize)]
pub struct SimDevice {
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_unit_id")]
    pub unit_id: u8,
    pub registers: Vec<SimRegister>,
    #[serde(default, rename = "faults")]
    pub initial_faults: FaultConfig,
    #[serde(skip)]
    pub faults: Faults,
}

fn default_unit_id() -> u8 {
    1
}

impl SimDevice {
    pub fn new(unit_id: u8, registers: Vec<SimRegister>) -> Self {
        Self {
            name: String::new(),
            unit_id,
            registers,
            initial_faults: FaultConfig::default(),
            faults: Faults::default(),
        }
    }
}

/// `wardgate-sim modbus --config FILE`: devices on TCP listeners and on
/// pseudo-terminal RTU buses.
#[derive(Debug, Clone, Deserialize)]
pub struct SimConfig {
    #[serde(default)]
    pub tcp: Vec<TcpDeviceConfig>,
    #[serde(default)]
    pub rtu: Vec<RtuBusConfig>,
}

/// A device on its own TCP listener.
#[derive(Debug, Clone, Deserialize)]
pub struct TcpDeviceConfig {
    /// Loopback address to listen on; port 0 picks a free one.
    pub listen: std::net::SocketAddr,
    #[serde(flatten)]
    pub device: SimDevice,
}

/// Slaves sharing one pseudo-terminal.
#[derive(Debug, Clone, Deserialize)]
pub struct RtuBusConfig {
    pub name: String,
    pub slaves: Vec<SimDevice>,
}

impl SimConfig {
    /// The ward scenario the demo runs: a room sensor (temperature drifting,
    /// humidity), an O2 flow meter stepping 2 -> 4 -> 1 L/min, a medication
    /// fridge warming from 5 °C past 8 °C and an isolation room whose
    /// negative pressure is lost after 2 minutes, on TCP; plus the fridge and
    /// a silent slave on an RTU bus.
    pub fn ward_scenario() -> Self {
        toml::from_str(include_str!("ward_scenario.toml")).unwrap_or(SimConfig {
            tcp: Vec::new(),
            rtu: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_follow_their_shape() {
        let ramp = Script::Ramp {
            from: 5.0,
            to: 11.0,
            start: Duration::from_secs(60),
            duration: Duration::from_secs(120),
        };
        assert_eq!(ramp.value_at(Duration::ZERO), 5.0);
        assert_eq!(ramp.value_at(Duration::from_secs(120)), 8.0);
        assert_eq!(ramp.value_at(Duration::from_secs(600)), 11.0);
        let steps = Script::Steps {
            steps: vec![(0.0, 2.0), (30.0, 4.0)],
        };
        assert_eq!(steps.value_at(Duration::from_secs(29)), 2.0);
        assert_eq!(steps.value_at(Duration::from_secs(30)), 4.0);
        let drift = Script::Drift {
            base: 21.0,
            amplitude: 1.0,
            period: Duration::from_secs(40),
        };
        assert!((drift.value_at(Duration::from_secs(10)) - 22.0).abs() < 1e-9);
    }

    #[test]
    fn the_ward_scenario_parses() {
        let s = SimConfig::ward_scenario();
        assert_eq!((s.tcp.len(), s.rtu.len()), (4, 1));
        assert_eq!(s.rtu[0].slaves.len(), 2);
    }

    #[tokio::test]
    async fn the_ward_scenario_serves_its_registers_over_tcp_and_rtu() {
        use tokio_modbus::client::{Reader as _, rtu, tcp};
        use tokio_modbus::slave::SlaveContext as _;

        let mut config = SimConfig::ward_scenario();
        for d in &mut config.tcp {
            d.listen.set_port(0); // never fixed ports in tests
        }
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = start(config, shutdown.clone()).await.unwrap();

        // room-7-1 at t = 0: 22.0 Cel in tenths = 220 = 0x00DC; humidity 45.0 % = 450 = 0x01C2.
        let (_, room) = &running.tcp[0];
        let mut client = tcp::connect(room.addr).await.unwrap();
        let words = client.read_input_registers(0, 2).await.unwrap().unwrap();
        assert_eq!(words, [0x00DC, 0x01C2]);
        // o2-flow-7: 2.0 L/min as f32 0x40000000, CDAB -> words 0000 4000.
        let (_, o2) = &running.tcp[1];
        let mut client = tcp::connect(o2.addr).await.unwrap();
        assert_eq!(
            client
                .read_holding_registers(100, 2)
                .await
                .unwrap()
                .unwrap(),
            [0x0000, 0x4000]
        );
        // Faults switch at run time: exception 6 (busy).
        o2.faults.set_exception(Some(6));
        assert_eq!(
            client.read_holding_registers(100, 2).await.unwrap(),
            Err(tokio_modbus::ExceptionCode::ServerDeviceBusy)
        );

        // RTU bus: fridge (slave 1) at t = 0 is 5.00 Cel in hundredths = 500 = 0x01F4.
        let (_, bus) = &running.rtu[0];
        let port = tokio_serial::SerialStream::open(&tokio_serial::new(&bus.path, 9600)).unwrap();
        let mut client = rtu::attach_slave(port, tokio_modbus::Slave(1));
        assert_eq!(
            client.read_input_registers(0, 1).await.unwrap().unwrap(),
            [0x01F4]
        );
        // Slave 2 is configured silent: no reply.
        client.set_slave(tokio_modbus::Slave(2));
        let silent = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            client.read_input_registers(0, 1),
        )
        .await;
        assert!(silent.is_err(), "{silent:?}");
        shutdown.cancel();
    }
}
