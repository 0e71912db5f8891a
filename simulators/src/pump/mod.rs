//! Asena-style infusion pumps on pseudo-terminals.
//!
//! [`spawn`] opens a pty pair and answers the protocol on its master as a pump
//! would (docs/devices/asena.md): a [`PumpModel`] infusing at a rate, volume
//! accumulating and VTBI counting down, near end, complete → KVO, and
//! switchable alarms. A [`PumpSimHandle`] scripts it and injects line faults:
//! garbage bytes, replies with bad CRCs, silence, and the port closing and
//! coming back. Spawn several for several pumps.
//!
//! This module encodes frames from the protocol description itself and never
//! uses the gateway's decoder, so a bug shared by both cannot pass the tests.

mod model;
mod pty;
mod wire;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use model::{EndAction, PumpModel, PumpProgram, SimAlarm};
use pty::Pty;
pub use wire::PumpWire;
use wire::encode;

/// One simulated pump.
#[derive(Clone, Debug)]
pub struct PumpSimConfig {
    pub program: PumpProgram,
    /// A stable path (symlink) to the current slave device, re-pointed when the
    /// port is reopened. Without it, read [`PumpSimHandle::path`].
    pub link: Option<PathBuf>,
    /// Pump seconds per real second (60: an hour of infusion in a minute).
    pub time_scale: f64,
}

impl Default for PumpSimConfig {
    fn default() -> Self {
        Self {
            program: PumpProgram::default(),
            link: None,
            time_scale: 1.0,
        }
    }
}

/// Something a script or test does to a running pump.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Switch an alarm condition on or off.
    Alarm(SimAlarm, bool),
    /// Pause or resume the infusion.
    Pause(bool),
    /// Write this many bytes of line noise (no valid frame among them) now.
    Garbage(usize),
    /// Send the next N replies with a wrong CRC. A corrupted status reply also
    /// claims `AIR_IN_LINE`, so a reader that acted on bad frames would show it.
    CorruptNext(u32),
    /// Stop answering (requests are read and dropped) or start again.
    Silent(bool),
    /// Close the pty (the driver's port goes away) and open a new one after
    /// this long, re-pointing the link.
    Reopen(Duration),
}

/// What the simulator has done, for tests and the CLI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub requests: u64,
    pub replies: u64,
    pub corrupted_replies: u64,
    pub garbage_bytes: u64,
    /// Lines that were not a valid request frame.
    pub rejected_requests: u64,
    /// Infusion-changing commands received (rate, start, stop, VTBI set).
    pub write_commands: u64,
    pub reopens: u64,
}

/// Why the simulator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot open a pseudo-terminal: {0}")]
    Pty(#[from] std::io::Error),
    #[error("the simulated pump has stopped")]
    Stopped,
}

#[derive(Debug)]
struct Control {
    action: Action,
    done: oneshot::Sender<()>,
}

/// Controls one running simulated pump. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PumpSimHandle {
    tx: mpsc::Sender<Control>,
    stats: Arc<Mutex<SimStats>>,
    path: watch::Receiver<PathBuf>,
    serial: Arc<str>,
}

impl PumpSimHandle {
    /// Applies `action` and returns once the pump has done it.
    pub async fn act(&self, action: Action) -> Result<(), SimError> {
        let (done, ack) = oneshot::channel();
        self.tx
            .send(Control { action, done })
            .await
            .map_err(|_| SimError::Stopped)?;
        ack.await.map_err(|_| SimError::Stopped)
    }

    pub async fn set_alarm(&self, alarm: SimAlarm, on: bool) -> Result<(), SimError> {
        self.act(Action::Alarm(alarm, on)).await
    }

    /// The path a driver should open: the link if configured, else the
    /// current slave device.
    pub fn path(&self) -> PathBuf {
        self.path.borrow().clone()
    }

    pub fn serial(&self) -> &str {
        &self.serial
    }

    pub fn stats(&self) -> SimStats {
        *self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running simulated pump: its handle and its task.
#[derive(Debug)]
pub struct PumpSim {
    pub handle: PumpSimHandle,
    pub task: JoinHandle<Result<(), SimError>>,
    link: Option<PathBuf>,
}

impl PumpSim {
    /// Stops the pump and removes its link.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// Opens the pty (and link) and starts answering. The port is ready when this
/// returns: a driver may open [`PumpSimHandle::path`] at once.
pub fn spawn(config: PumpSimConfig) -> Result<PumpSim, SimError> {
    let pty = Pty::open(config.link.as_deref())?;
    let shown = config
        .link
        .clone()
        .unwrap_or_else(|| pty.slave_path.clone());
    let (path_tx, path) = watch::channel(shown);
    let (tx, rx) = mpsc::channel(16);
    let stats = Arc::new(Mutex::new(SimStats::default()));
    let serial: Arc<str> = Arc::from(config.program.serial.as_str());
    let link = config.link.clone();
    let task = tokio::spawn(serve(config, pty, rx, Arc::clone(&stats), path_tx));
    Ok(PumpSim {
        handle: PumpSimHandle {
            tx,
            stats,
            path,
            serial,
        },
        task,
        link,
    })
}

/// Line noise that never contains a valid frame: no run of it ends in
/// `|` + 4 upper-case hex digits + `\r`.
fn garbage(n: usize) -> Vec<u8> {
    const PATTERN: &[u8] = b"\x00\xfe!~#^|noise\x07\n\r\xff!INF^";
    PATTERN.iter().copied().cycle().take(n).collect()
}

struct Server {
    config: PumpSimConfig,
    wire: PumpWire,
    last: Instant,
    silent: bool,
    corrupt: u32,
    stats: Arc<Mutex<SimStats>>,
}

impl Server {
    fn stats(&self, f: impl FnOnce(&mut SimStats)) {
        let mut s = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s);
        s.write_commands = self.wire.model.write_commands;
        s.rejected_requests = self.wire.rejected();
    }

    fn advance(&mut self) {
        let now = Instant::now();
        let dt = now
            .duration_since(self.last)
            .mul_f64(self.config.time_scale);
        self.last = now;
        self.wire.model.advance(dt);
    }

    /// Replies to the requests in `bytes`, as wire bytes.
    fn handle_bytes(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for request in self.wire.requests(bytes) {
            self.advance();
            self.stats(|s| s.requests += 1);
            if self.silent {
                continue;
            }
            let Some(mut fields) = self.wire.model.answer(&request) else {
                continue;
            };
            if self.corrupt > 0 {
                self.corrupt -= 1;
                if fields[0] == "INF" && fields.len() > 2 {
                    fields[2] = "AIR_IN_LINE".into();
                }
                let mut wire = encode(&fields);
                // Flip the last CRC digit: 0 <-> 1, anything else -> 0.
                let i = wire.len() - 2;
                wire[i] = if wire[i] == b'0' { b'1' } else { b'0' };
                out.extend(wire);
                self.stats(|s| s.corrupted_replies += 1);
            } else {
                out.extend(encode(&fields));
            }
            self.stats(|s| s.replies += 1);
        }
        self.stats(|_| {});
        out
    }
}

async fn serve(
    config: PumpSimConfig,
    mut pty: Pty,
    mut rx: mpsc::Receiver<Control>,
    stats: Arc<Mutex<SimStats>>,
    path_tx: watch::Sender<PathBuf>,
) -> Result<(), SimError> {
    let mut server = Server {
        wire: PumpWire::new(PumpModel::new(config.program.clone())),
        config,
        last: Instant::now(),
        silent: false,
        corrupt: 0,
        stats,
    };
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            control = rx.recv() => {
                let Some(Control { action, done }) = control else { return Ok(()) };
                server.advance();
                match action {
                    Action::Alarm(a, on) => server.wire.model.set_alarm(a, on),
                    Action::Pause(p) => server.wire.model.pause(p),
                    Action::Garbage(n) => {
                        pty.write_all(&garbage(n)).await?;
                        server.stats(|s| s.garbage_bytes += n as u64);
                    }
                    Action::CorruptNext(n) => server.corrupt = n,
                    Action::Silent(s) => server.silent = s,
                    Action::Reopen(down) => {
                        drop(pty);
                        if let Some(link) = &server.config.link {
                            let _ = std::fs::remove_file(link);
                        }
                        tokio::time::sleep(down).await;
                        pty = Pty::open(server.config.link.as_deref())?;
                        server.wire.reset_link();
                        let shown = server.config.link.clone().unwrap_or_else(|| pty.slave_path.clone());
                        path_tx.send_replace(shown);
                        server.stats(|s| s.reopens += 1);
                    }
                }
                let _ = done.send(());
            }
            read = pty.read(&mut buf) => {
                let n = read?;
                let reply = server.handle_bytes(&buf[..n]);
                if !reply.is_empty() {
                    pty.write_all(&reply).await?;
                }
            }
        }
    }
}

/// One step of a scripted scenario: wait `after`, then do `action`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptStep {
    pub after: Duration,
    pub action: Action,
}

/// Plays `steps` in order against a pump; returns when done or the pump stopped.
pub async fn run_script(handle: &PumpSimHandle, steps: &[ScriptStep]) -> Result<(), SimError> {
    for step in steps {
        tokio::time::sleep(step.after).await;
        handle.act(step.action.clone()).await?;
    }
    Ok(())
}

/// The built-in demo: every alarm and fault once, 10 s apart, then repeat.
pub fn demo_script() -> Vec<ScriptStep> {
    let s = Duration::from_secs;
    let step = |after, action| ScriptStep { after, action };
    vec![
        step(s(10), Action::Alarm(SimAlarm::OcclusionDownstream, true)),
        step(s(10), Action::Alarm(SimAlarm::OcclusionDownstream, false)),
        step(s(10), Action::Garbage(64)),
        step(s(10), Action::Alarm(SimAlarm::AirInLine, true)),
        step(s(10), Action::Alarm(SimAlarm::AirInLine, false)),
        step(s(10), Action::CorruptNext(1)),
        step(s(10), Action::Alarm(SimAlarm::DoorOpen, true)),
        step(s(10), Action::Alarm(SimAlarm::DoorOpen, false)),
        step(s(10), Action::Alarm(SimAlarm::LowBattery, true)),
        step(s(10), Action::Silent(true)),
        step(s(20), Action::Silent(false)),
        step(s(10), Action::Alarm(SimAlarm::LowBattery, false)),
        step(s(10), Action::Reopen(s(5))),
    ]
}

/// The gateway configuration fragment (`--config-out`) reading `pumps`:
/// pump `n` (from 1) is device `pump-{serial}` on subject `bed-{n}`, at its
/// port as the gateway opens it (the link when one was asked for). Poll
/// timing is left to the gateway's defaults.
pub fn config_fragment<'a>(pumps: impl IntoIterator<Item = &'a PumpSimHandle>) -> String {
    let mut f = crate::fragment::Fragment::new(
        "Written by `wardgate-sim pump`: one bed per simulated pump.",
    );
    for (n, pump) in pumps.into_iter().enumerate() {
        let subject = format!("bed-{}", n + 1);
        let device = format!("pump-{}", pump.serial());
        f.subject(&subject, "bed", &[&device]);
        f.pump(&device, &pump.path(), None);
    }
    f.finish()
}

/// Resolves a path the way a driver opening it would see it (for printing).
pub fn describe(path: &Path) -> String {
    match std::fs::read_link(path) {
        Ok(target) => format!("{} -> {}", path.display(), target.display()),
        Err(_) => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_holds_no_valid_frame() {
        let g = garbage(300);
        let mut reader = wire::RequestReader::default();
        assert!(reader.push(&g).is_empty());
    }
}
