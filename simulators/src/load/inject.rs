//! Scripted alert-triggering events, round-robin over the BLE patches and
//! the pumps (alternating kinds when both exist): a BLE patch sends one
//! 39.0 °C Temperature Measurement at once (the built-in `fever` rule; its
//! next regular 36.8 °C reading clears it when the rule's hold time is off,
//! as the benchmark sets it), a pump reports a downstream
//! occlusion for [`OCCLUSION_FOR`] (the built-in `pump_occlusion` rule,
//! seen at the gateway's next poll). Each injected event is one JSON line
//! in the events file, written before the next event is injected.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::SecondsFormat;
use serde::Serialize;
use tokio::sync::oneshot;
use wardgate_model::Timestamp;

use super::{Control, LoadKind, LoadSim};
use crate::pump::{PumpSimHandle, SimAlarm};

/// How long an injected occlusion stays on.
pub const OCCLUSION_FOR: Duration = Duration::from_secs(3);

/// The rule each kind's event raises: `(kind, rule id)`.
pub const EVENT_RULES: [(LoadKind, &str); 2] =
    [(LoadKind::Ble, "fever"), (LoadKind::Pump, "pump_occlusion")];

fn rule_of(kind: LoadKind) -> &'static str {
    EVENT_RULES
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("", |(_, r)| r)
}

/// One injected event, as its events-file line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InjectedEvent {
    /// RFC 3339 UTC with nanoseconds: the wall clock just before the BLE
    /// bytes were written or the pump alarm was set.
    pub injected_at: String,
    pub subject: String,
    pub device: String,
    pub kind: &'static str,
    pub rule: &'static str,
}

impl InjectedEvent {
    fn new(at: Timestamp, subject: &str, device: &str, kind: LoadKind) -> Self {
        Self {
            injected_at: at.to_rfc3339_opts(SecondsFormat::Nanos, true),
            subject: subject.to_owned(),
            device: device.to_owned(),
            kind: kind.as_str(),
            rule: rule_of(kind),
        }
    }
}

/// Picks the next device and injects its event.
#[derive(Debug)]
pub struct Injector<'a> {
    sim: &'a LoadSim,
    ble: Vec<usize>,
    pumps: Vec<usize>,
    next_ble: usize,
    next_pump: usize,
    pump_turn: bool,
    out: Option<std::fs::File>,
}

impl<'a> Injector<'a> {
    pub(super) fn new(sim: &'a LoadSim, out: Option<std::fs::File>) -> Self {
        let of = |kind| {
            sim.devices
                .iter()
                .enumerate()
                .filter(|(_, d)| d.kind == kind)
                .map(|(i, _)| i)
                .collect()
        };
        Self {
            ble: of(LoadKind::Ble),
            pumps: of(LoadKind::Pump),
            sim,
            next_ble: 0,
            next_pump: 0,
            pump_turn: false,
            out,
        }
    }

    /// The position (in [`LoadSim::devices`]) of the next device whose turn it is.
    fn pick(&mut self) -> Option<usize> {
        let pump = match (self.ble.is_empty(), self.pumps.is_empty()) {
            (true, true) => return None,
            (false, true) => false,
            (true, false) => true,
            (false, false) => {
                self.pump_turn = !self.pump_turn;
                !self.pump_turn
            }
        };
        let (list, next) = if pump {
            (&self.pumps, &mut self.next_pump)
        } else {
            (&self.ble, &mut self.next_ble)
        };
        let i = list[*next % list.len()];
        *next = (*next + 1) % list.len();
        Some(i)
    }

    /// Injects the next event. `Ok(None)` when there is no BLE device or
    /// pump, or the BLE patch whose turn it was has no driver subscribed
    /// (counted as missed). The events-file line is written before this
    /// returns; a write error is returned after the event was injected.
    pub async fn inject_next(&mut self) -> std::io::Result<Option<InjectedEvent>> {
        let Some(i) = self.pick() else {
            return Ok(None);
        };
        let event = self.sim.inject(i).await;
        if event.is_none() {
            return Ok(None);
        }
        if let (Some(event), Some(out)) = (&event, self.out.as_mut()) {
            let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
            line.push(b'\n');
            // One write of the whole line to an unbuffered file: it is in
            // the file when this returns.
            out.write_all(&line)?;
        }
        Ok(event)
    }
}

impl LoadSim {
    /// Injects the event of the device at `position` (in [`LoadSim::devices`]).
    /// `None` for Modbus devices and for a BLE patch with no driver subscribed.
    pub async fn inject(&self, position: usize) -> Option<InjectedEvent> {
        let dev = self.devices.get(position)?;
        let at = match self.controls.get(position)? {
            Control::Ble(tx) => {
                let (reply, at) = oneshot::channel();
                tx.send(reply).await.ok()?;
                at.await.ok().flatten()
            }
            Control::Pump(sim, generation) => {
                let at = chrono::Utc::now();
                let handle = sim.handle.clone();
                handle
                    .set_alarm(SimAlarm::OcclusionDownstream, true)
                    .await
                    .ok()?;
                let mine = generation.fetch_add(1, Ordering::Relaxed) + 1;
                tokio::spawn(occlusion_off(
                    handle,
                    Arc::clone(generation),
                    mine,
                    self.shutdown.clone(),
                ));
                Some(at)
            }
            Control::Modbus(_) => return None,
        };
        let counter = if at.is_some() {
            &self.counters.events
        } else {
            &self.counters.events_missed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Some(InjectedEvent::new(at?, &dev.subject, &dev.device, dev.kind))
    }
}

/// Switches the occlusion off after [`OCCLUSION_FOR`], unless a later event
/// on the same pump has started a new one.
async fn occlusion_off(
    handle: PumpSimHandle,
    generation: Arc<AtomicU64>,
    mine: u64,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(OCCLUSION_FOR) => {
            if generation.load(Ordering::Relaxed) == mine {
                let _ = handle.set_alarm(SimAlarm::OcclusionDownstream, false).await;
            }
        }
    }
}
