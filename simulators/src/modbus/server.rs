//! The servers: one tokio-modbus TCP server per device, one tokio-modbus RTU
//! server per pseudo-terminal bus. Each request is answered from the device's
//! scripted map at the current time, after its faults are applied.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_serial::SerialPort as _;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::encode::{encode_words, width};
use super::{Faults, SimDevice, SimTable};

/// One device's map and faults, with the instant its scripts started.
#[derive(Debug)]
struct Device {
    unit_id: u8,
    registers: Vec<super::SimRegister>,
    faults: Faults,
    start: Instant,
}

impl Device {
    fn new(d: SimDevice, start: Instant) -> Self {
        if d.initial_faults != super::FaultConfig::default() {
            d.faults.set(d.initial_faults.clone());
        }
        Self {
            unit_id: d.unit_id,
            registers: d.registers,
            faults: d.faults,
            start,
        }
    }

    fn words(&self, table: SimTable, start: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        check_range(start, count, 125)?;
        let t = self.start.elapsed();
        let mut out = vec![0u16; usize::from(count)];
        let (lo, hi) = (u32::from(start), u32::from(start) + u32::from(count));
        for r in self.registers.iter().filter(|r| r.table == table) {
            let value = r.script.value_at(t);
            let words = encode_words(r.data_type, &r.order, r.bit, value, r.scale, r.offset);
            for (i, w) in words.iter().enumerate() {
                let addr = u32::from(r.address) + i as u32;
                if (lo..hi).contains(&addr) {
                    // Several bools may share one register on different bits.
                    out[(addr - lo) as usize] |= *w;
                }
            }
            debug_assert_eq!(words.len(), usize::from(width(r.data_type, table)));
        }
        Ok(out)
    }

    fn bits(&self, table: SimTable, start: u16, count: u16) -> Result<Vec<bool>, ExceptionCode> {
        check_range(start, count, 2000)?;
        let t = self.start.elapsed();
        let mut out = vec![false; usize::from(count)];
        for r in self.registers.iter().filter(|r| r.table == table) {
            if let Some(i) = r.address.checked_sub(start).map(usize::from)
                && i < out.len()
            {
                out[i] = r.script.value_at(t) != 0.0;
            }
        }
        Ok(out)
    }

    fn answer(&self, request: &Request<'_>) -> Result<Response, ExceptionCode> {
        match *request {
            Request::ReadCoils(a, n) => self.bits(SimTable::Coil, a, n).map(Response::ReadCoils),
            Request::ReadDiscreteInputs(a, n) => self
                .bits(SimTable::DiscreteInput, a, n)
                .map(Response::ReadDiscreteInputs),
            Request::ReadInputRegisters(a, n) => self
                .words(SimTable::InputRegister, a, n)
                .map(Response::ReadInputRegisters),
            Request::ReadHoldingRegisters(a, n) => self
                .words(SimTable::HoldingRegister, a, n)
                .map(Response::ReadHoldingRegisters),
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

/// Quantity 1..=max (exception 3) and the range inside the address space (exception 2).
fn check_range(start: u16, count: u16, max: u16) -> Result<(), ExceptionCode> {
    if count == 0 || count > max {
        return Err(ExceptionCode::IllegalDataValue);
    }
    if u32::from(start) + u32::from(count) > 65_536 {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(())
}

/// Answers requests for the devices it holds: by unit id on an RTU bus; the
/// one device regardless of unit id on TCP.
#[derive(Debug, Clone)]
struct SimService {
    devices: Arc<Vec<Device>>,
    any_unit: bool,
    /// Requests answered with data (for the load simulator's summary).
    answered: Arc<AtomicU64>,
}

type Answer = Result<Option<Response>, ExceptionCode>;

impl Service for SimService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let devices = Arc::clone(&self.devices);
        let any_unit = self.any_unit;
        let answered = Arc::clone(&self.answered);
        Box::pin(async move {
            let Some(dev) = devices.iter().find(|d| any_unit || d.unit_id == req.slave) else {
                return Ok(None); // addressed to another slave on the bus
            };
            let faults = dev.faults.get();
            if faults.silent {
                return Ok(None);
            }
            if !faults.delay.is_zero() {
                tokio::time::sleep(faults.delay).await;
            }
            if let Some(code) = faults.exception {
                return Err(ExceptionCode::new(code));
            }
            let response = dev.answer(&req.request)?;
            answered.fetch_add(1, Ordering::Relaxed);
            Ok(Some(response))
        })
    }
}

/// A running TCP device.
#[derive(Debug)]
pub struct TcpSim {
    /// Where it listens (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Its faults, switchable while it runs.
    pub faults: Faults,
    connections: Arc<Mutex<CancellationToken>>,
    answered: Arc<AtomicU64>,
}

impl TcpSim {
    /// Requests answered with data so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Closes every open connection now (a device reboot, a switch flap);
    /// new connections are accepted as before.
    pub fn drop_connections(&self) {
        if let Ok(mut t) = self.connections.lock() {
            t.cancel();
            *t = CancellationToken::new();
        }
    }
}

/// A TCP stream the simulator can cut from outside.
struct Cuttable {
    inner: TcpStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Cuttable {
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "dropped by the simulator",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for Cuttable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Cuttable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `device` on `listen` (port 0 picks a free port) until `shutdown`.
pub async fn start_tcp(
    listen: SocketAddr,
    device: SimDevice,
    shutdown: CancellationToken,
) -> io::Result<TcpSim> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let faults = device.faults.clone();
    let answered = Arc::new(AtomicU64::new(0));
    let service = SimService {
        devices: Arc::new(vec![Device::new(device, Instant::now())]),
        any_unit: true,
        answered: Arc::clone(&answered),
    };
    let connections = Arc::new(Mutex::new(CancellationToken::new()));
    let conns = Arc::clone(&connections);
    tokio::spawn(async move {
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let on_connected = |stream: TcpStream, _peer: SocketAddr| {
            let service = service.clone();
            let cut = conns.lock().map(|t| t.clone()).unwrap_or_default();
            async move {
                Ok(Some((
                    service,
                    Cuttable {
                        inner: stream,
                        cut: Box::pin(cut.cancelled_owned()),
                    },
                )))
            }
        };
        let on_error =
            |e: io::Error| tracing::debug!(error = %e, "simulated modbus tcp connection ended");
        if let Err(e) = server
            .serve_until(&on_connected, on_error, shutdown.cancelled_owned())
            .await
        {
            tracing::warn!(error = %e, "simulated modbus tcp server stopped");
        }
    });
    Ok(TcpSim {
        addr,
        faults,
        connections,
        answered,
    })
}

/// A running RTU bus on a pseudo-terminal.
#[derive(Debug)]
pub struct RtuSim {
    /// The serial device path the gateway opens (`/dev/pts/N`).
    pub path: String,
    /// Each slave's unit id and faults.
    pub faults: Vec<(u8, Faults)>,
    /// Kept open so the master side never sees a hang-up while no driver has the port.
    _slave_end: tokio_serial::SerialStream,
}

/// Serves `devices` as slaves of one RTU bus on a new pseudo-terminal until `shutdown`.
pub async fn start_rtu(devices: Vec<SimDevice>, shutdown: CancellationToken) -> io::Result<RtuSim> {
    let (master, slave_end) = tokio_serial::SerialStream::pair().map_err(io::Error::other)?;
    let path = slave_end
        .name()
        .ok_or_else(|| io::Error::other("pseudo-terminal without a name"))?;
    let faults = devices
        .iter()
        .map(|d| (d.unit_id, d.faults.clone()))
        .collect();
    let now = Instant::now();
    let service = SimService {
        devices: Arc::new(devices.into_iter().map(|d| Device::new(d, now)).collect()),
        any_unit: false,
        answered: Arc::default(),
    };
    tokio::spawn(async move {
        let server = tokio_modbus::server::rtu::Server::new(master);
        if let Err(e) = server
            .serve_until(service, shutdown.cancelled_owned())
            .await
        {
            tracing::warn!(error = %e, "simulated modbus rtu bus stopped");
        }
    });
    Ok(RtuSim {
        path,
        faults,
        _slave_end: slave_end,
    })
}
