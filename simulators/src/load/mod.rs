//! `wardgate-sim load`: many simulated devices at once, each speaking its
//! real transport so the gateway's real drivers read them — BLE vital-signs
//! patches on the simulator socket (`ble::server`'s link handling, `ble::encode`'s
//! payloads), Modbus TCP ward sensors (`modbus::start_tcp`, one listener
//! each) and infusion pumps on pseudo-terminals (`pump::spawn`) — plus
//! scripted alert-triggering events ([`Injector`]).
//!
//! [`LoadSim::start`] brings every device up and returns once each one is
//! listening; [`LoadSim::config_fragment`] is the gateway configuration that
//! reads them. This module builds nothing of its own on the wire: payloads
//! and frames come from the per-family simulators, so the load simulator is
//! exactly as spec-exact as they are.

mod ble;
mod fragment;
mod inject;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::modbus::{Script, SimDataType, SimDevice, SimRegister, SimTable, TcpSim, start_tcp};
use crate::pump::{self, PumpProgram, PumpSim, PumpSimConfig};

pub use inject::{EVENT_RULES, InjectedEvent, Injector, OCCLUSION_FOR};

/// The three device families the load is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoadKind {
    Ble,
    Modbus,
    Pump,
}

impl LoadKind {
    /// The name in device ids, `--mix` and the events file.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadKind::Ble => "ble",
            LoadKind::Modbus => "modbus",
            LoadKind::Pump => "pump",
        }
    }
}

impl fmt::Display for LoadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--mix ble=60,modbus=20,pump=20`: relative weights of the kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    pub ble: u32,
    pub modbus: u32,
    pub pump: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            ble: 60,
            modbus: 20,
            pump: 20,
        }
    }
}

/// Why a `--mix` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MixError {
    #[error("{0:?} is not kind=weight (kinds: ble, modbus, pump)")]
    Syntax(String),
    #[error("unknown kind {0:?} (kinds: ble, modbus, pump)")]
    UnknownKind(String),
    #[error("{0} is given twice")]
    Duplicate(&'static str),
    #[error("the weights add up to 0")]
    Empty,
}

impl FromStr for Mix {
    type Err = MixError;

    /// Kinds not named get weight 0.
    fn from_str(s: &str) -> Result<Self, MixError> {
        let mut seen = [None::<u32>; 3];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part
                .split_once('=')
                .ok_or_else(|| MixError::Syntax(part.to_owned()))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| MixError::Syntax(part.to_owned()))?;
            let (slot, name) = match kind.trim() {
                "ble" => (0, "ble"),
                "modbus" => (1, "modbus"),
                "pump" => (2, "pump"),
                other => return Err(MixError::UnknownKind(other.to_owned())),
            };
            if seen[slot].replace(weight).is_some() {
                return Err(MixError::Duplicate(name));
            }
        }
        let [ble, modbus, pump] = seen.map(Option::unwrap_or_default);
        if u64::from(ble) + u64::from(modbus) + u64::from(pump) == 0 {
            return Err(MixError::Empty);
        }
        Ok(Mix { ble, modbus, pump })
    }
}

impl Mix {
    /// How many of `n` devices are BLE, Modbus and pumps: each kind gets
    /// `n × weight / total` rounded down, the remainder goes to BLE (or, when
    /// BLE's weight is 0, to Modbus, else to pumps), so a kind of weight 0
    /// never appears.
    pub fn split(&self, n: usize) -> [usize; 3] {
        let total = u64::from(self.ble) + u64::from(self.modbus) + u64::from(self.pump);
        let share =
            |w: u32| usize::try_from(n as u64 * u64::from(w) / total.max(1)).unwrap_or(usize::MAX);
        let mut counts = [share(self.ble), share(self.modbus), share(self.pump)];
        let rest = n - counts.iter().sum::<usize>();
        let to = [self.ble, self.modbus, self.pump]
            .iter()
            .position(|w| *w > 0)
            .unwrap_or(0);
        counts[to] += rest;
        counts
    }
}

/// What to simulate.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Total number of devices.
    pub devices: usize,
    pub mix: Mix,
    /// Each device produces one batch of readings per interval.
    pub interval: Duration,
    /// Index of the first device (`load-{first_index}`), so that processes
    /// with disjoint ranges can feed one gateway.
    pub first_index: usize,
}

/// Where the gateway reaches a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The simulator socket and the Bluetooth address it announces.
    Ble {
        addr: SocketAddr,
        address: String,
    },
    Modbus(SocketAddr),
    /// The pseudo-terminal's slave device.
    Pump(PathBuf),
}

/// One simulated device.
#[derive(Clone, Debug)]
pub struct LoadDevice {
    pub index: usize,
    pub kind: LoadKind,
    /// `load-{index}`.
    pub subject: String,
    /// `load-{index}-{kind}`.
    pub device: String,
    pub endpoint: Endpoint,
}

/// Why the load could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}: cannot listen on 127.0.0.1: {1}")]
    Listen(String, std::io::Error),
    #[error("{0}: cannot open a pseudo-terminal: {1}")]
    Pty(String, pump::SimError),
    #[error("the interval must be at least 100 ms (the pump driver's shortest poll), got {0:?}")]
    Interval(Duration),
}

/// Counters shared by every device task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) notifications: AtomicU64,
    pub(crate) ble_links: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) events_missed: AtomicU64,
}

/// A snapshot of what the load has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// BLE notifications written (regular and injected).
    pub notifications: u64,
    /// BLE devices with a driver subscribed right now.
    pub ble_links: u64,
    /// Modbus requests answered with data.
    pub modbus_polls: u64,
    /// Pump requests answered (identification, handshake, status and VTBI).
    pub pump_replies: u64,
    /// Events injected (one events-file line each).
    pub events: u64,
    /// Events not injected because the BLE device had no driver subscribed.
    pub events_missed: u64,
}

/// The device-side handle the injector uses.
#[derive(Debug)]
enum Control {
    Ble(mpsc::Sender<ble::Inject>),
    Modbus(TcpSim),
    Pump(PumpSim, Arc<AtomicU64>),
}

/// Every simulated device, running.
#[derive(Debug)]
pub struct LoadSim {
    config: LoadConfig,
    devices: Vec<LoadDevice>,
    controls: Vec<Control>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
}

/// The regular values a BLE patch reports, and the scripted fever.
pub mod values {
    /// Heart Rate Measurement, /min.
    pub const HEART_RATE: u16 = 72;
    /// PLX Continuous SpO2, %, and pulse rate, /min.
    pub const SPO2: f64 = 97.0;
    pub const PULSE_RATE: f64 = 72.0;
    /// Temperature Measurement, °C.
    pub const BODY_TEMP: f64 = 36.8;
    /// The injected Temperature Measurement, °C: ≥ 38.3 raises `fever`.
    pub const FEVER_TEMP: f64 = 39.0;
    /// Modbus input register 0: room temperature, i16 in tenths of a °C.
    pub const ROOM_TEMP: f64 = 21.5;
    /// Modbus input register 1: relative humidity, u16 in tenths of a %.
    pub const HUMIDITY: f64 = 45.0;
    /// Pump rate, mL/h, and a VTBI that lasts 100 hours at that rate.
    pub const PUMP_RATE: f64 = 100.0;
    pub const PUMP_VTBI: f64 = 10_000.0;
}

/// The Modbus ward sensor's register map.
fn modbus_registers() -> Vec<SimRegister> {
    let reg = |address, data_type, value, metric: &str| SimRegister {
        table: SimTable::InputRegister,
        address,
        data_type,
        order: "ABCD".into(),
        scale: 0.1,
        offset: 0.0,
        bit: None,
        metric: Some(metric.into()),
        unit: None,
        script: Script::Constant { value },
    };
    vec![
        reg(0, SimDataType::I16, values::ROOM_TEMP, "room_temp"),
        reg(1, SimDataType::U16, values::HUMIDITY, "humidity"),
    ]
}

/// A locally administered Bluetooth address holding the device index.
fn ble_address(index: usize) -> [u8; 6] {
    let [.., a, b, c] = (index as u64).to_be_bytes();
    [0x4C, 0x4F, 0x41, a, b, c]
}

impl LoadSim {
    /// Starts every device; each is listening (BLE, Modbus) or has its port
    /// open (pumps) when this returns. Everything stops when `shutdown` is
    /// cancelled or the `LoadSim` is dropped.
    pub async fn start(config: LoadConfig, shutdown: CancellationToken) -> Result<Self, LoadError> {
        if config.interval < Duration::from_millis(100) {
            return Err(LoadError::Interval(config.interval));
        }
        // Ours to cancel on drop without touching the caller's token.
        let shutdown = shutdown.child_token();
        let [n_ble, n_modbus, _] = config.mix.split(config.devices);
        let counters = Arc::new(Counters::default());
        let payloads = Arc::new(ble::Payloads::new());
        let start = tokio::time::Instant::now();
        let mut devices = Vec::with_capacity(config.devices);
        let mut controls = Vec::with_capacity(config.devices);
        for n in 0..config.devices {
            let index = config.first_index + n;
            let kind = if n < n_ble {
                LoadKind::Ble
            } else if n < n_ble + n_modbus {
                LoadKind::Modbus
            } else {
                LoadKind::Pump
            };
            let subject = format!("load-{index}");
            let device = format!("{subject}-{kind}");
            let (endpoint, control) = match kind {
                LoadKind::Ble => {
                    let listener = TcpListener::bind("127.0.0.1:0")
                        .await
                        .map_err(|e| LoadError::Listen(device.clone(), e))?;
                    let addr = listener
                        .local_addr()
                        .map_err(|e| LoadError::Listen(device.clone(), e))?;
                    let address = crate::ble::server::address_text(ble_address(index));
                    // Phases spread evenly over the interval: smooth load.
                    let phase = config.interval.mul_f64(n as f64 / n_ble.max(1) as f64);
                    let (tx, rx) = mpsc::channel(1);
                    let dev = ble::LoadBle {
                        address: address.clone(),
                        interval: config.interval,
                        first: start + phase,
                        payloads: Arc::clone(&payloads),
                        counters: Arc::clone(&counters),
                        inject: rx,
                    };
                    tokio::spawn(ble::serve(listener, dev, shutdown.clone()));
                    (Endpoint::Ble { addr, address }, Control::Ble(tx))
                }
                LoadKind::Modbus => {
                    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
                    let sim = start_tcp(
                        listen,
                        SimDevice::new(1, modbus_registers()),
                        shutdown.clone(),
                    )
                    .await
                    .map_err(|e| LoadError::Listen(device.clone(), e))?;
                    (Endpoint::Modbus(sim.addr), Control::Modbus(sim))
                }
                LoadKind::Pump => {
                    let sim = pump::spawn(PumpSimConfig {
                        program: PumpProgram {
                            serial: pump_serial(index),
                            rate: values::PUMP_RATE,
                            vtbi: Some(values::PUMP_VTBI),
                            ..PumpProgram::default()
                        },
                        link: None,
                        time_scale: 1.0,
                    })
                    .map_err(|e| LoadError::Pty(device.clone(), e))?;
                    (
                        Endpoint::Pump(sim.handle.path()),
                        Control::Pump(sim, Arc::default()),
                    )
                }
            };
            devices.push(LoadDevice {
                index,
                kind,
                subject,
                device,
                endpoint,
            });
            controls.push(control);
        }
        Ok(Self {
            config,
            devices,
            controls,
            counters,
            shutdown,
        })
    }

    pub fn config(&self) -> &LoadConfig {
        &self.config
    }

    pub fn devices(&self) -> &[LoadDevice] {
        &self.devices
    }

    /// The gateway configuration that reads these devices: `[[subjects]]`
    /// and `[[devices]]` tables only.
    pub fn config_fragment(&self) -> Result<String, crate::FragmentError> {
        fragment::fragment(&self.devices, self.config.interval)
    }

    /// What the devices have done so far.
    pub fn stats(&self) -> LoadStats {
        let mut s = LoadStats {
            notifications: self.counters.notifications.load(Ordering::Relaxed),
            ble_links: self.counters.ble_links.load(Ordering::Relaxed),
            events: self.counters.events.load(Ordering::Relaxed),
            events_missed: self.counters.events_missed.load(Ordering::Relaxed),
            ..LoadStats::default()
        };
        for c in &self.controls {
            match c {
                Control::Ble(_) => {}
                Control::Modbus(sim) => s.modbus_polls += sim.answered(),
                Control::Pump(sim, _) => s.pump_replies += sim.handle.stats().replies,
            }
        }
        s
    }

    /// An injector that writes its events to `out` (when given).
    pub fn injector(&self, out: Option<std::fs::File>) -> Injector<'_> {
        Injector::new(self, out)
    }

    /// Stops every device (pumps close their ports); dropping does the same.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for LoadSim {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for c in &self.controls {
            if let Control::Pump(sim, _) = c {
                sim.task.abort();
            }
        }
    }
}

/// `LOAD-0000017`: unique per index, so the gateway identifies each pump.
fn pump_serial(index: usize) -> String {
    format!("LOAD-{index:07}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_splits() {
        let m: Mix = "ble=60,modbus=20,pump=20".parse().unwrap();
        assert_eq!(m, Mix::default());
        // 10 × 60/100 = 6, 10 × 20/100 = 2, 2.
        assert_eq!(m.split(10), [6, 2, 2]);
        // 7: 4.2 → 4, 1.4 → 1, 1.4 → 1; remainder 1 to BLE.
        assert_eq!(m.split(7), [5, 1, 1]);
        let pumps_only: Mix = "pump=1".parse().unwrap();
        assert_eq!(pumps_only.split(3), [0, 0, 3]);
        // 3 × 1/2 = 1 each; the remainder goes to Modbus since BLE is 0.
        let no_ble: Mix = "ble=0,modbus=1,pump=1".parse().unwrap();
        assert_eq!(no_ble.split(3), [0, 2, 1]);
        assert_eq!("ble=0".parse::<Mix>(), Err(MixError::Empty));
        assert_eq!(
            "ble=1,ble=2".parse::<Mix>(),
            Err(MixError::Duplicate("ble"))
        );
        assert!(matches!(
            "fridge=1".parse::<Mix>(),
            Err(MixError::UnknownKind(_))
        ));
        assert!(matches!("ble".parse::<Mix>(), Err(MixError::Syntax(_))));
    }

    proptest::proptest! {
        #[test]
        fn any_mix_text_parses_or_is_refused(text in ".{0,40}") {
            let _ = text.parse::<Mix>();
        }

        #[test]
        fn the_split_adds_up_and_skips_zero_weights(
            ble in 0u32..5, modbus in 0u32..5, pump in 1u32..5, n in 0usize..20_000
        ) {
            let mix = Mix { ble, modbus, pump };
            let counts = mix.split(n);
            proptest::prop_assert_eq!(counts.iter().sum::<usize>(), n);
            for (count, weight) in counts.iter().zip([ble, modbus, pump]) {
                if weight == 0 {
                    proptest::prop_assert_eq!(*count, 0);
                }
            }
        }
    }

    #[test]
    fn ble_addresses_hold_the_index() {
        assert_eq!(
            crate::ble::server::address_text(ble_address(0x01_02_03)),
            "4C:4F:41:01:02:03"
        );
    }
}
