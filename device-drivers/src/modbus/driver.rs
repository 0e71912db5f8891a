//! The async shells around [`Poller`]: they own the connection (one TCP
//! connection per device; one serial port per RTU bus), read the clock,
//! enforce timeouts and turn poller events into pipeline events.
//!
//! Invariants: a reply is only ever handed to the poller that sent its
//! request; after a TCP timeout or an out-of-sync reply the connection is
//! dropped, so a late reply can never be read as the answer to a later
//! request (tokio-modbus checks the transaction id of each reply, but keeps
//! reading the same socket: the next request would get the stale reply);
//! on an RTU bus the port's input buffer is flushed before each request.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serialport::SerialPort as _;
use tokio::time::Instant;
use tokio_modbus::client::{Client as _, Context};
use tokio_modbus::slave::SlaveContext as _;
use tokio_modbus::{Request, Response, Slave};
use wardgate_model::{AlarmPhase, AlertKind, DeviceState, MetricRegistry, TimeSource};

use super::config::{Link, ModbusConfig, Parity};
use super::plan::{ReadBlock, plan};
use super::poller::{Counters, Entry, Outcome, Poller, PollerEvent, Timing, exception_name};
use super::register::Table;
use crate::metrics::DeviceTotals;
use crate::{DriverContext, PipelineClosed};

impl ModbusConfig {
    /// The schedule of the device `device`, its first cycle due at `now`
    /// plus its phase: the register map resolved and planned into as few
    /// requests as allowed.
    pub fn poller(
        &self,
        device: &str,
        metrics: &MetricRegistry,
        now: std::time::Instant,
    ) -> Result<Poller, String> {
        let mut entries = Vec::with_capacity(self.registers.len());
        for r in &self.registers {
            let Some(metric) = r.resolve_metric(metrics) else {
                return Err(format!("unknown metric {:?}", r.metric));
            };
            entries.push(Entry {
                metric,
                decoding: r.decoding(),
            });
        }
        let spans: Vec<_> = self
            .registers
            .iter()
            .map(super::RegisterConfig::span)
            .collect();
        let blocks = plan(&spans, self.plan_limits());
        if blocks.is_empty() {
            return Err("no registers to read".into());
        }
        let timing = Timing {
            poll_interval: self.poll_interval,
            phase: crate::jitter::phase(device, self.jitter, self.poll_interval),
            retries: self.retries,
            failures_before_unreachable: self.failures_before_unreachable.max(1),
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
            exceptions_alarm_after: self.exceptions_alarm_after,
        };
        Ok(Poller::new(entries, blocks, timing, now))
    }
}

/// The device alarm of a device that answers only with exceptions (the
/// technical pack's `device_exceptions` rule).
pub(crate) const EXCEPTIONS_ALARM: &str = "modbus_exceptions";

/// Why a Modbus driver stopped (it never stops for device errors).
#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    #[error(transparent)]
    PipelineClosed(#[from] PipelineClosed),
    /// The configuration did not pass [`wardgate_model::config::Validate`].
    #[error("invalid modbus configuration for {device}: {reason}")]
    InvalidConfig { device: String, reason: String },
}

/// A device's counters (requests, replies, timeouts, exceptions by code ...),
/// shared with whoever wants to show them. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ModbusStats(Arc<Mutex<Counters>>);

impl ModbusStats {
    pub fn snapshot(&self) -> Counters {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn store(&self, counters: &Counters) {
        if let Ok(mut c) = self.0.lock() {
            c.clone_from(counters);
        }
    }
}

/// One slave on an RTU bus, for [`run_bus`].
#[derive(Debug)]
pub struct BusDevice {
    pub config: ModbusConfig,
    pub ctx: DriverContext,
    pub stats: ModbusStats,
}

/// Polls one device until `ctx.shutdown()` is cancelled. A TCP device gets
/// its own connection; an RTU device is run as a bus of one (use
/// [`run_bus`] when several devices share a serial port).
pub async fn run(
    config: ModbusConfig,
    metrics: &MetricRegistry,
    ctx: DriverContext,
) -> Result<(), ModbusError> {
    run_with_stats(config, metrics, ctx, ModbusStats::default()).await
}

/// [`run`], publishing the device's counters into `stats`.
pub async fn run_with_stats(
    config: ModbusConfig,
    metrics: &MetricRegistry,
    ctx: DriverContext,
    stats: ModbusStats,
) -> Result<(), ModbusError> {
    match config.link() {
        Some(Link::Tcp(addr)) => {
            let addr = addr.to_owned();
            let mut dev = Device::new(&config, metrics, ctx, stats)?;
            run_tcp(&addr, &mut dev).await
        }
        Some(Link::Rtu(_)) => run_bus(vec![BusDevice { config, ctx, stats }], metrics).await,
        None => Err(invalid(&ctx, "neither address nor port (or both) given")),
    }
}

fn invalid(ctx: &DriverContext, reason: &str) -> ModbusError {
    ModbusError::InvalidConfig {
        device: ctx.device().id.to_string(),
        reason: reason.to_owned(),
    }
}

/// The shell-side state of one device.
struct Device {
    poller: Poller,
    ctx: DriverContext,
    stats: ModbusStats,
    unit_id: u8,
    timeout: Duration,
    /// Log each kind of trouble once, count the rest.
    logged: HashSet<String>,
    /// The poller's counters as last published to the device's metrics.
    published: DeviceTotals,
}

impl Device {
    fn new(
        config: &ModbusConfig,
        metrics: &MetricRegistry,
        ctx: DriverContext,
        stats: ModbusStats,
    ) -> Result<Self, ModbusError> {
        let poller = config
            .poller(ctx.device().id.as_str(), metrics, Instant::now().into_std())
            .map_err(|why| invalid(&ctx, &why))?;
        tracing::debug!(device = %ctx.device().id, requests = poller.plan().len(), "modbus read plan");
        Ok(Self {
            poller,
            ctx,
            stats,
            unit_id: config.unit_id,
            timeout: config.timeout,
            logged: HashSet::new(),
            published: DeviceTotals::default(),
        })
    }

    fn log_once(&mut self, key: String) -> bool {
        self.logged.insert(key)
    }

    /// Hands what the poller has to report to the pipeline: the values of
    /// one poll as one measurement, status changes and conditions as they come.
    async fn forward(&mut self) -> Result<(), PipelineClosed> {
        let mut measurement = Vec::new();
        while let Some(ev) = self.poller.poll_event() {
            let now = chrono::Utc::now();
            let id = self.ctx.device().id.clone();
            let single = match ev {
                PollerEvent::Value { metric, value, .. } => {
                    match self.ctx.reading(now, TimeSource::Gateway, metric, value) {
                        Ok(event) => measurement.push(event),
                        Err(e) => {
                            tracing::error!(device = %id, error = %e, "modbus value gave no reading");
                        }
                    }
                    None
                }
                PollerEvent::DecodeFailed { entry, error } => {
                    if self.log_once(format!("decode {entry}")) {
                        tracing::warn!(device = %id, register = entry, %error, "modbus register not decodable (logged once, counted)");
                    }
                    None
                }
                PollerEvent::Exception { table, start, code } => {
                    if self.log_once(format!("exception {code} {start}")) {
                        tracing::warn!(device = %id, table = table.as_str(), start, code, exception = exception_name(code), "modbus exception (logged once, counted)");
                    }
                    None
                }
                PollerEvent::ExceptionsOnly { last_code } => {
                    let raw = format!(
                        "exception 0x{last_code:02X} ({})",
                        exception_name(last_code)
                    );
                    tracing::warn!(device = %id, last = %raw, "modbus device answers only with exceptions: no readings");
                    Some(self.ctx.alarm(
                        now,
                        EXCEPTIONS_ALARM,
                        AlarmPhase::Start,
                        AlertKind::Technical,
                        Some(&raw),
                    ))
                }
                PollerEvent::ExceptionsEnded => {
                    tracing::info!(device = %id, "modbus device delivers values again");
                    Some(self.ctx.alarm(
                        now,
                        EXCEPTIONS_ALARM,
                        AlarmPhase::End,
                        AlertKind::Technical,
                        None,
                    ))
                }
                PollerEvent::Online => {
                    tracing::info!(device = %id, "modbus device online");
                    self.logged.clear();
                    Some(self.ctx.status(now, DeviceState::Online, None))
                }
                PollerEvent::Offline { reason } => {
                    tracing::warn!(device = %id, %reason, "modbus device offline");
                    Some(self.ctx.status(now, DeviceState::Offline, Some(&reason)))
                }
            };
            if let Some(event) = single {
                // In order: what was measured before the change goes first.
                self.ctx
                    .emit_measurement(std::mem::take(&mut measurement))
                    .await?;
                self.ctx.emit(event).await?;
            }
        }
        self.ctx.emit_measurement(measurement).await?;
        let counters = self.poller.counters();
        self.stats.store(counters);
        self.ctx
            .metrics()
            .publish(&mut self.published, counters.totals());
        Ok(())
    }
}

/// Sends one read and classifies what came back. Uses `call` rather than
/// the typed readers so a short reply is a value, not a debug assertion.
async fn read(client: &mut Context, block: &ReadBlock) -> Outcome {
    let (start, count) = (block.start, block.count);
    let request = match block.table {
        Table::Coil => Request::ReadCoils(start, count),
        Table::DiscreteInput => Request::ReadDiscreteInputs(start, count),
        Table::InputRegister => Request::ReadInputRegisters(start, count),
        Table::HoldingRegister => Request::ReadHoldingRegisters(start, count),
    };
    match client.call(request).await {
        Ok(Ok(Response::ReadCoils(mut bits) | Response::ReadDiscreteInputs(mut bits))) => {
            // Replies carry whole bytes of bits; the rest is padding.
            bits.truncate(usize::from(count));
            Outcome::Bits(bits)
        }
        Ok(Ok(Response::ReadInputRegisters(words) | Response::ReadHoldingRegisters(words))) => {
            Outcome::Words(words)
        }
        Ok(Ok(other)) => Outcome::OutOfSync(format!("unexpected reply {other:?}")),
        Ok(Err(code)) => Outcome::Exception(u8::from(code)),
        Err(tokio_modbus::Error::Protocol(e)) => Outcome::OutOfSync(e.to_string()),
        // A frame that fails its CRC or does not parse: noise on the line, not a dead link.
        Err(tokio_modbus::Error::Transport(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            Outcome::OutOfSync(format!("malformed reply: {e}"))
        }
        Err(tokio_modbus::Error::Transport(e)) => Outcome::Transport(e.to_string()),
    }
}

/// Races `fut` against the timeout; `None` on timeout.
async fn within<T>(timeout: Duration, fut: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(timeout, fut).await.ok()
}

/// Connects to `addr` (`host:port`): looked up now, each address it
/// resolves to tried in turn, all within `timeout`.
async fn connect(addr: &str, slave: Slave, timeout: Duration) -> Result<Context, Outcome> {
    within(timeout, async {
        let resolved = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| Outcome::Transport(format!("look up {addr}: {e}")))?;
        let mut last = format!("{addr} resolves to no address");
        for target in resolved {
            match tokio_modbus::client::tcp::connect_slave(target, slave).await {
                Ok(c) => return Ok(c),
                Err(e) => last = format!("connect to {addr} ({target}): {e}"),
            }
        }
        Err(Outcome::Transport(last))
    })
    .await
    .unwrap_or(Err(Outcome::Timeout))
}

async fn run_tcp(addr: &str, dev: &mut Device) -> Result<(), ModbusError> {
    let shutdown = dev.ctx.shutdown().clone();
    let mut conn: Option<Context> = None;
    let mut first_connect = true;
    loop {
        let now = Instant::now();
        let Some(block) = dev.poller.poll_request(now.into_std()).cloned() else {
            let wake = Instant::from_std(dev.poller.poll_timeout());
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(wake) => continue,
            }
        };
        if conn.is_none() && !std::mem::take(&mut first_connect) {
            dev.ctx.metrics().reconnect();
        }
        let attempt = async {
            if conn.is_none() {
                match connect(addr, Slave(dev.unit_id), dev.timeout).await {
                    Ok(c) => conn = Some(c),
                    Err(outcome) => return outcome,
                }
            }
            let Some(client) = conn.as_mut() else {
                return Outcome::Transport("not connected".into());
            };
            within(dev.timeout, read(client, &block))
                .await
                .unwrap_or(Outcome::Timeout)
        };
        let outcome = tokio::select! {
            () = shutdown.cancelled() => break,
            o = attempt => o,
        };
        if matches!(
            outcome,
            Outcome::Timeout | Outcome::Transport(_) | Outcome::OutOfSync(_)
        ) {
            // A late reply may still be on its way on this connection: never read it.
            conn = None;
        }
        dev.poller
            .handle_outcome(Instant::now().into_std(), outcome);
        dev.forward().await?;
    }
    tracing::debug!(device = %dev.ctx.device().id, "modbus tcp driver stopped");
    Ok(())
}

/// An open RTU port: the tokio-modbus client and a second (duplicated) handle
/// on the same port to flush its input.
struct Port {
    client: Context,
    flush: serialport::TTYPort,
}

fn open_port(config: &ModbusConfig, path: &str) -> Result<Port, String> {
    let port = serialport::new(path, config.baud_rate)
        .data_bits(serialport::DataBits::Eight)
        .parity(match config.parity {
            Parity::None => serialport::Parity::None,
            Parity::Even => serialport::Parity::Even,
            Parity::Odd => serialport::Parity::Odd,
        })
        .stop_bits(if config.stop_bits == 2 {
            serialport::StopBits::Two
        } else {
            serialport::StopBits::One
        })
        .open_native()
        .map_err(|e| format!("open {path}: {e}"))?;
    // tokio's handle cannot be cloned; the native one can, before conversion.
    let flush = port
        .try_clone_native()
        .map_err(|e| format!("duplicate handle of {path}: {e}"))?;
    let stream =
        tokio_serial::SerialStream::try_from(port).map_err(|e| format!("register {path}: {e}"))?;
    Ok(Port {
        client: tokio_modbus::client::rtu::attach(stream),
        flush,
    })
}

/// Polls every slave of one RTU bus (all `devices` have the same `port`, see
/// [`ModbusConfig::bus_key`] and [`super::validate_bus`]) through one task
/// that owns the port and sends one request at a time.
///
/// Each slave keeps its own schedule. The task always serves the slave whose
/// request is most overdue, and a slave that does not answer costs the bus
/// its own `timeout` per attempt and then gives up its cycle, so the other
/// slaves wait at most that long. An unreachable slave is polled with
/// backoff, not on its schedule. Stops when the first device's shutdown
/// token is cancelled (the gateway gives every device the same token).
pub async fn run_bus(devices: Vec<BusDevice>, metrics: &MetricRegistry) -> Result<(), ModbusError> {
    let Some(first) = devices.first() else {
        return Ok(());
    };
    let shutdown = first.ctx.shutdown().clone();
    let Some(path) = first.config.bus_key().map(str::to_owned) else {
        return Err(invalid(&first.ctx, "an RTU bus needs a port"));
    };
    let settings = first.config.clone();
    let mut devs = Vec::with_capacity(devices.len());
    for d in devices {
        devs.push(Device::new(&d.config, metrics, d.ctx, d.stats)?);
    }
    let mut port: Option<Port> = None;
    let mut first_open = true;
    loop {
        let now = Instant::now();
        let due = devs
            .iter()
            .enumerate()
            .filter(|(_, d)| Instant::from_std(d.poller.poll_timeout()) <= now)
            .min_by_key(|(_, d)| d.poller.poll_timeout())
            .map(|(i, _)| i);
        let Some(i) = due else {
            let wake = devs
                .iter()
                .map(|d| Instant::from_std(d.poller.poll_timeout()))
                .min()
                .unwrap_or(now + Duration::from_secs(1));
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(wake) => continue,
            }
        };
        let dev = &mut devs[i];
        let Some(block) = dev.poller.poll_request(now.into_std()).cloned() else {
            continue;
        };
        if port.is_none() {
            // The bus's reopening is counted on the slave it is opened for.
            if !std::mem::take(&mut first_open) {
                dev.ctx.metrics().reconnect();
            }
            match open_port(&settings, &path) {
                Ok(p) => port = Some(p),
                Err(e) => {
                    dev.poller
                        .handle_outcome(Instant::now().into_std(), Outcome::Transport(e));
                    dev.forward().await?;
                    continue;
                }
            }
        }
        let Some(p) = port.as_mut() else { continue };
        p.client.set_slave(Slave(dev.unit_id));
        // Whatever arrived since the last exchange (a late reply) is not ours.
        if let Err(e) = p.flush.clear(serialport::ClearBuffer::Input) {
            tracing::debug!(port = %path, error = %e, "could not flush serial input");
        }
        let outcome = tokio::select! {
            () = shutdown.cancelled() => break,
            o = within(dev.timeout, read(&mut p.client, &block)) => o.unwrap_or(Outcome::Timeout),
        };
        if matches!(outcome, Outcome::Transport(_)) {
            // The port itself failed: reopen it for the next request.
            port = None;
        }
        dev.poller
            .handle_outcome(Instant::now().into_std(), outcome);
        dev.forward().await?;
    }
    tracing::debug!(port = %path, "modbus rtu bus stopped");
    Ok(())
}
