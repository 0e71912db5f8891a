//! Driver supervision, in the manner of an Erlang/OTP supervisor: every
//! device's driver (one task per device, one per Modbus RTU bus) runs under
//! [`Drivers::supervise`], which notices a driver's end at once — not at
//! shutdown — and deals with it:
//!
//! - a driver that panics is logged at once with its devices and the panic
//!   message, its devices are reported offline (`driver crashed: …`), and it
//!   is restarted after a capped exponential backoff (1 s, 2 s, 4 s … 60 s);
//! - a driver that crashes [`REPEATED`] times within [`WINDOW`] raises the
//!   technical device alarm `driver_restarting` on its devices (the
//!   technical pack's `driver_restarting` rule), ended once it has run for
//!   [`WINDOW`] without a crash;
//! - a driver that returns on its own has reported why (a host without
//!   Bluetooth, for instance) and is not restarted;
//! - at shutdown, drivers ending because of it are not failures.
//!
//! Fault injection for tests and commissioning: the environment variable
//! `WARDGATE_FAULT_PANIC_DRIVER=<device id>[:<times>]` makes that device's
//! driver panic 300 ms after each of its first `times` (default 1) starts.
//!
//! Invariant: the supervisor only spawns, watches and reports; it never
//! touches a device itself.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wardgate_drivers::{CommitRequests, DriverContext, Emitted, ble, modbus, pump, synthetic};
use wardgate_model::{
    AlarmPhase, AlertKind, DeviceAlarm, DeviceState, DeviceStatus, Event, MetricRegistry,
};

use crate::config::{DeviceConfig, DriverConfig};

/// Crashes within [`WINDOW`] that make a driver "restarting repeatedly".
pub const REPEATED: usize = 3;
/// How long crashes count, and how long a driver must run to be trusted again.
pub const WINDOW: Duration = Duration::from_secs(600);
/// The device alarm of a driver that keeps crashing.
pub const RESTARTING_ALARM: &str = "driver_restarting";
/// How long drivers get to stop after shutdown is asked for.
const STOP_GRACE: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The wait before the `n`-th restart in a row (n ≥ 1): 1 s, 2 s, 4 s …
/// 60 s. Shared by the drivers' and the sinks' supervisors.
pub(crate) fn restart_backoff(n: u32) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(BACKOFF_MAX)
}
const FAULT_ENV: &str = "WARDGATE_FAULT_PANIC_DRIVER";

type DriverFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What one driver task serves.
#[derive(Debug, Clone)]
enum Unit {
    Device(DeviceConfig),
    /// The RTU devices sharing one serial port.
    Bus {
        port: String,
        members: Vec<DeviceConfig>,
    },
}

impl Unit {
    fn devices(&self) -> &[DeviceConfig] {
        match self {
            Unit::Device(d) => std::slice::from_ref(d),
            Unit::Bus { members, .. } => members,
        }
    }

    fn name(&self) -> String {
        match self {
            Unit::Device(d) => d.device.id.to_string(),
            Unit::Bus { port, .. } => format!("Modbus RTU bus {port}"),
        }
    }
}

/// One supervised driver and its history.
#[derive(Debug)]
struct Slot {
    unit: Unit,
    /// Times it was started (for fault injection).
    starts: u32,
    /// Crashes within the last [`WINDOW`].
    crashes: VecDeque<Instant>,
    started: Instant,
    /// `driver_restarting` is raised on its devices.
    alarmed: bool,
}

/// What every driver is given, kept to start them again.
#[derive(Debug, Clone)]
pub struct DriverEnv {
    pub metrics: Arc<MetricRegistry>,
    pub events: mpsc::Sender<Emitted>,
    pub commits: CommitRequests,
    pub shutdown: CancellationToken,
    pub clock_tolerance: chrono::TimeDelta,
    /// Where each device's frames, decode errors, timeouts and reconnects
    /// are counted (`/metrics`).
    pub device_metrics: wardgate_drivers::DriverMetrics,
}

/// The running drivers and those waiting to be restarted.
#[derive(Debug)]
pub struct Drivers {
    env: DriverEnv,
    tasks: JoinSet<()>,
    running: HashMap<Id, Slot>,
    waiting: Vec<(Instant, Slot)>,
    fault: Option<(String, u32)>,
    /// Driver crashes since start.
    pub crashes: u64,
}

impl Drivers {
    /// Starts a driver per device (one per RTU bus).
    pub fn start(devices: &[DeviceConfig], env: DriverEnv) -> Drivers {
        let fault = std::env::var(FAULT_ENV)
            .ok()
            .map(|v| match v.split_once(':') {
                Some((id, n)) => (id.to_owned(), n.parse().unwrap_or(1)),
                None => (v, 1),
            });
        if let Some((id, n)) = &fault {
            tracing::warn!(device = %id, times = n, "fault injection: this driver will panic ({FAULT_ENV})");
        }
        let mut drivers = Drivers {
            env,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            waiting: Vec::new(),
            fault,
            crashes: 0,
        };
        let mut buses: Vec<(String, Vec<DeviceConfig>)> = Vec::new();
        for device in devices {
            if let DriverConfig::Modbus(c) = &device.driver
                && let Some(port) = c.bus_key()
            {
                match buses.iter_mut().find(|(p, _)| p == port) {
                    Some((_, members)) => members.push(device.clone()),
                    None => buses.push((port.to_owned(), vec![device.clone()])),
                }
                continue;
            }
            tracing::info!(device = %device.device.id, kind = device.device.kind.as_str(), subject = %device.subject, "starting driver");
            drivers.spawn(Slot::new(Unit::Device(device.clone())));
        }
        for (port, members) in buses {
            tracing::info!(port = %port, slaves = members.len(), "starting Modbus RTU bus");
            drivers.spawn(Slot::new(Unit::Bus { port, members }));
        }
        drivers
    }

    fn spawn(&mut self, mut slot: Slot) {
        slot.starts += 1;
        slot.started = Instant::now();
        let mut driver = self.driver(&slot.unit);
        if let Some((id, times)) = &self.fault
            && slot.starts <= *times
            && slot
                .unit
                .devices()
                .iter()
                .any(|d| d.device.id.as_str() == id)
        {
            let id = id.clone();
            driver = Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                panic!("fault injection: driver of {id} panics ({FAULT_ENV})");
            });
        }
        let handle = self.tasks.spawn(driver);
        self.running.insert(handle.id(), slot);
    }

    fn context(&self, device: &DeviceConfig) -> DriverContext {
        DriverContext::new(
            device.device.clone(),
            device.subject.clone(),
            self.env.events.clone(),
            self.env.shutdown.child_token(),
        )
        .with_commits(self.env.commits.clone())
        .with_clock_tolerance(self.env.clock_tolerance)
        .with_metrics(self.env.device_metrics.device(device.device.id.as_str()))
    }

    /// The driver of a unit, with fresh contexts. Every driver returns only
    /// when the gateway stops (its one error is "the pipeline is closed") or
    /// on a condition it has reported; device errors are handled inside it.
    fn driver(&self, unit: &Unit) -> DriverFuture {
        let metrics = Arc::clone(&self.env.metrics);
        match unit {
            Unit::Bus { port, members } => {
                let members = members
                    .iter()
                    .filter_map(|d| match &d.driver {
                        DriverConfig::Modbus(c) => Some(modbus::BusDevice {
                            config: (**c).clone(),
                            ctx: self.context(d),
                            stats: modbus::ModbusStats::default(),
                        }),
                        _ => None,
                    })
                    .collect();
                let port = port.clone();
                Box::pin(async move {
                    let _ = modbus::run_bus(members, &metrics).await;
                    tracing::debug!(port = %port, "Modbus RTU bus stopped");
                })
            }
            Unit::Device(device) => {
                let ctx = self.context(device);
                let id = device.device.id.clone();
                let run: DriverFuture = match device.driver.clone() {
                    DriverConfig::Synthetic(c) => Box::pin(async move {
                        let _ = synthetic::run(c, &metrics, ctx).await;
                    }),
                    DriverConfig::Pump(c) => Box::pin(async move {
                        let _ = pump::run(c, ctx).await;
                    }),
                    // Without Bluetooth on the host the driver reports the
                    // device offline, logs once and returns; the other
                    // devices go on.
                    DriverConfig::Ble(c) => Box::pin(async move {
                        let _ = ble::driver::run(*c, ctx).await;
                    }),
                    DriverConfig::Modbus(c) => Box::pin(async move {
                        let _ = modbus::run(*c, &metrics, ctx).await;
                    }),
                };
                Box::pin(async move {
                    run.await;
                    tracing::debug!(device = %id, "driver stopped");
                })
            }
        }
    }

    /// Watches the drivers until `shutdown`, restarting crashed ones, then
    /// gives them a grace period to stop and releases the event sender so
    /// the forwarding loop can finish.
    pub async fn supervise(mut self, shutdown: CancellationToken) -> u64 {
        let mut quiet = tokio::time::interval(Duration::from_secs(60));
        loop {
            let next_restart = self.waiting.iter().map(|w| w.0).min();
            tokio::select! {
                // A stop asked for comes first: drivers ending because of it
                // are not failures.
                biased;
                () = shutdown.cancelled() => break,
                Some(joined) = self.tasks.join_next_with_id() => self.ended(joined).await,
                () = sleep_until(next_restart) => self.restart_due(),
                _ = quiet.tick() => self.trust_again().await,
            }
        }
        tracing::info!(drivers = self.tasks.len(), "stopping drivers");
        let drained = tokio::time::timeout(STOP_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = self.tasks.len(),
                grace_s = STOP_GRACE.as_secs(),
                "drivers did not stop in time; abandoning them"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        self.crashes
    }

    async fn ended(&mut self, joined: Result<(Id, ()), JoinError>) {
        let (id, panic) = match joined {
            Ok((id, ())) => (id, None),
            Err(e) => {
                let id = e.id();
                let message = if e.is_panic() {
                    panic_message(e.into_panic())
                } else {
                    "cancelled".to_owned()
                };
                (id, Some(message))
            }
        };
        let Some(mut slot) = self.running.remove(&id) else {
            return;
        };
        let Some(message) = panic else {
            tracing::warn!(driver = %slot.unit.name(), "a driver stopped before shutdown (it said why above); other devices continue");
            return;
        };
        self.crashes += 1;
        let now = Instant::now();
        slot.crashes.push_back(now);
        while slot
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            slot.crashes.pop_front();
        }
        let recent = slot.crashes.len();
        let backoff = restart_backoff(u32::try_from(recent).unwrap_or(u32::MAX));
        tracing::error!(
            driver = %slot.unit.name(),
            panic = %message,
            crashes_in_10_min = recent,
            restart_in_s = backoff.as_secs(),
            "driver crashed; its devices are offline until it is restarted"
        );
        let reason = format!(
            "driver crashed: {message}; restarting in {} s",
            backoff.as_secs()
        );
        let at = chrono::Utc::now();
        let mut events: Vec<Event> = slot
            .unit
            .devices()
            .iter()
            .map(|d| {
                Event::DeviceStatus(DeviceStatus {
                    at,
                    subject: d.subject.clone(),
                    device: d.device.clone(),
                    state: DeviceState::Offline,
                    reason: Some(reason.as_str().into()),
                })
            })
            .collect();
        if recent >= REPEATED && !slot.alarmed {
            slot.alarmed = true;
            events.extend(restarting(&slot, AlarmPhase::Start, Some(&message)));
        }
        for e in events {
            // A closed pipeline is shutting down: nothing to report to.
            let _ = self.env.events.send(Emitted::Event(e)).await;
        }
        self.waiting.push((now + backoff, slot));
    }

    fn restart_due(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.waiting = later;
        for (_, slot) in due {
            tracing::info!(driver = %slot.unit.name(), start = slot.starts + 1, "restarting driver");
            self.spawn(slot);
        }
    }

    /// Ends `driver_restarting` for drivers that ran a whole window.
    async fn trust_again(&mut self) {
        let now = Instant::now();
        let mut events = Vec::new();
        for slot in self.running.values_mut() {
            if slot.alarmed && now.duration_since(slot.started) >= WINDOW {
                slot.alarmed = false;
                slot.crashes.clear();
                tracing::info!(driver = %slot.unit.name(), "driver ran 10 minutes without a crash");
                events.extend(restarting(slot, AlarmPhase::End, None));
            }
        }
        for e in events {
            let _ = self.env.events.send(Emitted::Event(e)).await;
        }
    }
}

impl Slot {
    fn new(unit: Unit) -> Slot {
        Slot {
            unit,
            starts: 0,
            crashes: VecDeque::new(),
            started: Instant::now(),
            alarmed: false,
        }
    }
}

/// The `driver_restarting` alarm on every device of a slot.
fn restarting(slot: &Slot, phase: AlarmPhase, raw: Option<&str>) -> Vec<Event> {
    let at = chrono::Utc::now();
    slot.unit
        .devices()
        .iter()
        .map(|d| {
            Event::DeviceAlarm(DeviceAlarm {
                at,
                subject: d.subject.clone(),
                device: d.device.clone(),
                alarm: RESTARTING_ALARM.into(),
                phase,
                kind: AlertKind::Technical,
                raw: raw.map(Into::into),
            })
        })
        .collect()
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload.downcast::<&'static str>().map_or_else(
            |_| "a panic without a message".to_owned(),
            |s| (*s).to_owned(),
        ),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
