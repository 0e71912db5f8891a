//! The demo's scripted ward on a simulated clock: 35 minutes of ward time in
//! well under a second, and exactly the alerts the script intends.
//!
//! Everything is what `wardgate demo` runs except the clock: the demo's own
//! configuration and rules, the simulators' own scripts (the BLE scenarios,
//! the pump models behind their serial framing, the Modbus register scripts)
//! and the drivers' own sans-IO parts (BLE tracker and decoders, pump and
//! Modbus pollers, the pump driver's poll-to-events translation), feeding the
//! rules engine as the pipeline does, one measurement at a time. Sockets,
//! pseudo-terminals and the wall clock are left out; the live demo is
//! exercised by the browser test and by `wardgate demo` itself.
//!
//! On top of the script, the noise a real ward has: a second thermometer
//! whose readings wander around the fever threshold, a wearable that drops
//! out for a few seconds, and measurements that arrive in pieces on the wire
//! (a cuff's intermediate pressures before its result, a pump's status and
//! VTBI replies of one poll).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wardgate_drivers::DriverContext;
use wardgate_drivers::ble::Characteristic;
use wardgate_drivers::ble::Tracker;
use wardgate_drivers::ble::transport::{Address, Notification};
use wardgate_drivers::modbus::Table;
use wardgate_drivers::modbus::poller::{Outcome, PollerEvent};
use wardgate_drivers::pump::{Poller, Translated, translate};
use wardgate_model::{Alert, DeviceState, Event, Metric, TimeSource, Transition};
use wardgate_sim::ble::scenario::Action as BleAction;
use wardgate_sim::modbus::{SimConfig, SimDataType, SimDevice, SimTable};
use wardgate_sim::pump::{Action as PumpAction, PumpModel, PumpWire};

use super::{DeviceSpec, Peers, beds, config_text, pump_program, pump_script};
use crate::config::{Config, DeviceConfig, DriverConfig};

/// Ward time simulated.
const WARD_TIME: Duration = Duration::from_secs(35 * 60);

/// Driver events in time order, one entry per measurement.
#[derive(Default)]
struct Timeline {
    groups: Vec<(DateTime<Utc>, u64, Vec<Event>)>,
}

impl Timeline {
    fn push(&mut self, at: DateTime<Utc>, events: Vec<Event>) {
        if !events.is_empty() {
            let n = self.groups.len() as u64;
            self.groups.push((at, n, events));
        }
    }
}

struct Ward {
    config: Config,
    t0: DateTime<Utc>,
    /// Keeps the drivers' event channel open (nothing is sent on it here).
    _rx: mpsc::Receiver<wardgate_drivers::Emitted>,
    tx: mpsc::Sender<wardgate_drivers::Emitted>,
    timeline: Timeline,
}

impl Ward {
    /// The demo's configuration, as `wardgate demo` writes it.
    fn new(dir: &std::path::Path) -> Ward {
        let token_file = dir.join("station.token");
        std::fs::write(&token_file, "0123456789abcdef").unwrap();
        std::fs::write(dir.join("rules.toml"), include_str!("rules.toml")).unwrap();
        let mut ble = Vec::new();
        for bed in beds() {
            for d in &bed.devices {
                if let DeviceSpec::Ble(suffix, ..) = d {
                    let k = ble.len();
                    ble.push((
                        format!("bed-{}-{suffix}", bed.n),
                        format!("AA:BB:CC:00:{:02X}:{k:02X}", bed.n),
                        "127.0.0.1:9".parse().unwrap(),
                    ));
                }
            }
        }
        let text = config_text(&Peers {
            dir,
            ble,
            pumps: (1..=4).map(|i| dir.join(format!("pump-{i}"))).collect(),
            room_tcp: "127.0.0.1:9".parse().unwrap(),
            rtu_port: dir.join("rtu").display().to_string(),
            mqtt: None,
            influx: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            token_file,
        });
        let path = dir.join("wardgate.toml");
        std::fs::write(&path, &text).unwrap();
        let config = crate::config::parse(&path, &text).unwrap();
        let (tx, rx) = mpsc::channel(1);
        Ward {
            config,
            // In the past, so the drivers' check for device clocks running
            // ahead of the real one never fires on simulated time.
            t0: "2026-11-01T08:00:00Z".parse().unwrap(),
            _rx: rx,
            tx,
            timeline: Timeline::default(),
        }
    }

    fn at(&self, elapsed: Duration) -> DateTime<Utc> {
        self.t0 + chrono::TimeDelta::from_std(elapsed).unwrap()
    }

    fn device(&self, id: &str) -> &DeviceConfig {
        self.config
            .devices
            .iter()
            .find(|d| d.device.id.as_str() == id)
            .unwrap_or_else(|| panic!("the demo has no device {id}"))
    }

    fn context(&self, id: &str) -> DriverContext {
        let d = self.device(id);
        DriverContext::new(
            d.device.clone(),
            d.subject.clone(),
            self.tx.clone(),
            CancellationToken::new(),
        )
    }

    /// Synthetic devices: every signal each interval, one tick one measurement.
    fn synthetic(&mut self) {
        let mut out = Vec::new();
        for d in &self.config.devices {
            let DriverConfig::Synthetic(c) = &d.driver else {
                continue;
            };
            let ctx = self.context(d.device.id.as_str());
            out.push((
                Duration::ZERO,
                vec![ctx.status(self.t0, DeviceState::Online, None)],
            ));
            let mut elapsed = Duration::ZERO;
            while elapsed <= WARD_TIME {
                let now = self.at(elapsed);
                let events = c
                    .signals
                    .iter()
                    .map(|s| {
                        let metric = self.config.metrics.resolve(&s.metric).unwrap();
                        ctx.reading(now, TimeSource::Gateway, metric, s.value_at(elapsed))
                            .unwrap()
                    })
                    .collect();
                out.push((elapsed, events));
                elapsed += c.interval;
            }
        }
        for (e, events) in out {
            self.timeline.push(self.at(e), events);
        }
    }

    /// BLE devices: the simulator's scenario scripts (repeating as in the
    /// demo) through the BLE driver's tracker and decoders. `dropout` leaves
    /// one device silent (disconnected) for a while.
    fn ble(&mut self, dropout: (&str, Duration, Duration)) {
        let mut out = Vec::new();
        for bed in beds() {
            for spec in &bed.devices {
                let DeviceSpec::Ble(suffix, scenario, speed, repeat) = spec else {
                    continue;
                };
                let id = format!("bed-{}-{suffix}", bed.n);
                let DriverConfig::Ble(c) = &self.device(&id).driver else {
                    panic!("{id} is not a BLE device")
                };
                let ctx = self.context(&id);
                let mut tracker = Tracker::new(f64::from(c.battery_low_percent));
                let script = scenario.script(self.t0.naive_utc());
                let speed = speed.unwrap_or(script.default_speed);
                let period = script
                    .steps
                    .last()
                    .map_or(Duration::ZERO, |s| s.at.div_f64(speed));
                let address = Address([0xAA, 0xBB, 0xCC, 0x00, bed.n, 0]);
                out.push((
                    Duration::ZERO,
                    vec![ctx.status(self.t0, DeviceState::Online, Some("connected"))],
                ));
                let (drop_id, drop_from, drop_to) = dropout;
                if id == drop_id {
                    out.push((
                        drop_from,
                        vec![ctx.status(
                            self.at(drop_from),
                            DeviceState::Offline,
                            Some("the device disconnected"),
                        )],
                    ));
                    out.push((
                        drop_to,
                        vec![ctx.status(self.at(drop_to), DeviceState::Online, Some("connected"))],
                    ));
                }
                let mut base = Duration::ZERO;
                'script: loop {
                    for step in &script.steps {
                        let e = base + step.at.div_f64(speed);
                        if e > WARD_TIME {
                            break 'script;
                        }
                        if id == drop_id && e >= drop_from && e < drop_to {
                            continue;
                        }
                        let BleAction::Notify {
                            characteristic,
                            payload,
                        } = &step.action
                        else {
                            continue;
                        };
                        let n = Notification {
                            address,
                            characteristic: Characteristic::from_uuid16(*characteristic).unwrap(),
                            bytes: payload.clone(),
                        };
                        let events = tracker
                            .handle_notification(&ctx, self.at(e), &n)
                            .unwrap_or_else(|err| panic!("{id} at {e:?}: {err}"));
                        out.push((e, events));
                    }
                    if !repeat || period.is_zero() {
                        break;
                    }
                    base += period;
                }
            }
        }
        for (e, events) in out {
            self.timeline.push(self.at(e), events);
        }
    }

    /// Pumps: each pump model behind its serial framing, polled by the pump
    /// driver's poller; the pump script (occlusion, silence) on time.
    fn pumps(&mut self) {
        let mut out = Vec::new();
        for i in 1..=4u8 {
            let id = format!("pump-{i}");
            let DriverConfig::Pump(c) = &self.device(&id).driver else {
                panic!("{id} is not a pump")
            };
            let ctx = self.context(&id);
            let mut wire = PumpWire::new(PumpModel::new(pump_program(i)));
            let mut poller = Poller::new(c.poll_settings(&id));
            let mut script: Vec<(Duration, PumpAction)> = Vec::new();
            let mut t = Duration::ZERO;
            for step in pump_script(i) {
                t += step.after;
                script.push((t, step.action));
            }
            script.reverse();
            let base = Instant::now();
            let mut e = Duration::ZERO;
            let mut silent = false;
            let mut cycle = Vec::new();
            poller.handle_connect(base);
            loop {
                while let Some(request) = poller.poll_transmit() {
                    if !silent {
                        let reply = wire.reply(&request);
                        if !reply.is_empty() {
                            poller.handle_input(base + e, &reply);
                        }
                    }
                }
                while let Some(event) = poller.poll_event() {
                    match translate(&ctx, self.at(e), event, &mut cycle) {
                        Translated::Gathering => {}
                        Translated::CycleDone => out.push((e, std::mem::take(&mut cycle))),
                        Translated::Alone(event) => {
                            out.push((e, std::mem::take(&mut cycle)));
                            out.push((e, vec![event]));
                        }
                    }
                }
                let next = poller
                    .poll_timeout()
                    .expect("connected")
                    .duration_since(base);
                if let Some((at, _)) = script.last()
                    && *at <= next
                {
                    let (at, action) = script.pop().unwrap();
                    wire.model.advance(at.saturating_sub(e));
                    e = at;
                    match action {
                        PumpAction::Alarm(alarm, on) => wire.model.set_alarm(alarm, on),
                        PumpAction::Silent(s) => silent = s,
                        other => panic!("the demo script has no {other:?}"),
                    }
                    continue;
                }
                if next > WARD_TIME {
                    break;
                }
                wire.model.advance(next.saturating_sub(e));
                e = next;
                poller.handle_timeout(base + e);
            }
        }
        for (e, events) in out {
            self.timeline.push(self.at(e), events);
        }
    }

    /// Modbus devices: the Modbus driver's poller asking the simulated
    /// registers of the ward scenario (the demo's bus slave 2 never answers).
    fn modbus(&mut self) {
        let sims = SimConfig::ward_scenario();
        let sim_of = |id: &str| -> SimDevice {
            match id {
                "bay-1-env" => sims.tcp.iter().find(|t| t.device.name == "room-7-1"),
                _ => None,
            }
            .map(|t| t.device.clone())
            .or_else(|| {
                let unit = if id == "fridge-7" { 1 } else { 2 };
                sims.rtu[0]
                    .slaves
                    .iter()
                    .find(|s| s.unit_id == unit)
                    .cloned()
            })
            .unwrap()
        };
        let mut out = Vec::new();
        for id in ["bay-1-env", "fridge-7", "bay-2-env"] {
            let DriverConfig::Modbus(c) = &self.device(id).driver else {
                panic!("{id} is not a Modbus device")
            };
            let sim = sim_of(id);
            let silent = sim.initial_faults.silent;
            let ctx = self.context(id);
            let base = Instant::now();
            let mut poller = c.poller(id, &self.config.metrics, base).unwrap();
            loop {
                let e = poller.poll_timeout().duration_since(base);
                if e > WARD_TIME {
                    break;
                }
                while let Some(block) = poller.poll_request(base + e) {
                    let (table, start, count) = (block.table, block.start, block.count);
                    let outcome = if silent {
                        Outcome::Timeout
                    } else {
                        Outcome::Words(words(&sim, table, start, count, e))
                    };
                    let done = if silent { e + c.timeout } else { e };
                    poller.handle_outcome(base + done, outcome);
                }
                let now = self.at(e);
                let mut group = Vec::new();
                while let Some(event) = poller.poll_event() {
                    match event {
                        PollerEvent::Value { metric, value, .. } => group.push(
                            ctx.reading(now, TimeSource::Gateway, metric, value)
                                .unwrap(),
                        ),
                        PollerEvent::Online => {
                            out.push((e, std::mem::take(&mut group)));
                            out.push((e, vec![ctx.status(now, DeviceState::Online, None)]));
                        }
                        PollerEvent::Offline { reason } => {
                            out.push((e, std::mem::take(&mut group)));
                            out.push((
                                e,
                                vec![ctx.status(now, DeviceState::Offline, Some(&reason))],
                            ));
                        }
                        other => panic!("{id}: unexpected {other:?}"),
                    }
                }
                out.push((e, group));
            }
        }
        for (e, events) in out {
            self.timeline.push(self.at(e), events);
        }
    }

    /// Noise: a second thermometer on bed 2 whose readings wander around
    /// the fever threshold (38.3 °C) every 30 s for 20 minutes.
    fn wandering_thermometer(&mut self) {
        let ctx = DriverContext::new(
            wardgate_model::DeviceRef::new(
                "bed-2-thermo".into(),
                wardgate_model::DeviceKind::Synthetic,
            ),
            "bed-2".into(),
            self.tx.clone(),
            CancellationToken::new(),
        );
        for k in 0..40u32 {
            let e = Duration::from_secs(300 + 30 * u64::from(k));
            let value = [38.2, 38.4, 38.1, 38.3, 38.5, 38.2][k as usize % 6];
            let r = ctx
                .reading(self.at(e), TimeSource::Gateway, Metric::BodyTemp, value)
                .unwrap();
            self.timeline.push(self.at(e), vec![r]);
        }
    }

    /// Runs the rules over the timeline as the pipeline does: ticks at every
    /// deadline the engine asks for, each measurement in one call.
    fn run(mut self) -> Vec<Alert> {
        let mut engine = self.config.engine().unwrap();
        for s in &self.config.subjects {
            let _ = engine.set_profile(self.t0, &s.id, s.profile.clone());
        }
        self.timeline.groups.sort_by_key(|g| (g.0, g.1));
        let mut out = Vec::new();
        let end = self.at(WARD_TIME);
        for (at, _, events) in &self.timeline.groups {
            while let Some(t) = engine.poll_timeout().filter(|t| t <= at) {
                out.extend(engine.poll_tick(t));
            }
            engine.handle_events_into(*at, events, &mut out);
        }
        while let Some(t) = engine.poll_timeout().filter(|t| *t <= end) {
            out.extend(engine.poll_tick(t));
        }
        out.into_iter()
            .filter_map(|e| match e {
                Event::Alert(a) => Some(a),
                _ => None,
            })
            .collect()
    }
}

/// The words the simulated device holds at `elapsed` for a read request.
fn words(sim: &SimDevice, table: Table, start: u16, count: u16, elapsed: Duration) -> Vec<u16> {
    let table = match table {
        Table::InputRegister => SimTable::InputRegister,
        Table::HoldingRegister => SimTable::HoldingRegister,
        other => panic!("the demo reads no {other:?}"),
    };
    (start..start + count)
        .map(|address| {
            let Some(r) = sim
                .registers
                .iter()
                .find(|r| r.table == table && r.address == address)
            else {
                return 0;
            };
            let raw = ((r.script.value_at(elapsed) - r.offset) / r.scale).round();
            match r.data_type {
                SimDataType::I16 => (raw as i16).cast_unsigned(),
                SimDataType::U16 => raw as u16,
                other => panic!("the demo's registers have no {other:?}"),
            }
        })
        .collect()
}

#[test]
fn the_demo_ward_raises_exactly_the_alerts_its_script_intends() {
    use Transition::{Cleared, Escalated, Latched, PriorityChanged, Raised};

    let dir = tempfile::tempdir().unwrap();
    let mut ward = Ward::new(dir.path());
    ward.synthetic();
    ward.ble((
        "bed-1-wearable",
        Duration::from_secs(600),
        Duration::from_secs(608),
    ));
    ward.pumps();
    ward.modbus();
    ward.wandering_thermometer();
    let alerts = ward.run();

    // Every message is a sentence: no value left out as `?` or "not measured".
    for a in &alerts {
        assert!(
            !a.message.contains('?') && !a.message.contains("not measured"),
            "{}: {}",
            a.rule,
            a.message
        );
    }
    let mut got: BTreeMap<(String, String, Transition), usize> = BTreeMap::new();
    for a in &alerts {
        *got.entry((a.subject.to_string(), a.rule.to_string(), a.transition))
            .or_default() += 1;
    }
    // Nobody acknowledges in this test, so open alerts escalate on their
    // rules' schedules — 15 min (offline, NEWS2 medium), 5 min (NEWS2
    // high), 10 min (hypertensive crisis), the demo's 30 s (occlusion) —
    // twice at most: the demo has staff, and the chain (bed's nurse, charge
    // nurse, everyone) ends there.
    let expected: BTreeMap<(String, String, Transition), usize> = [
        // Bay 2's sensor (bus slave 2) never answers: offline from the start.
        ("bay-2", "device_offline", Raised, 1),
        ("bay-2", "device_offline", Escalated, 2),
        // Pump 2 occludes at 30 s for two minutes: one latching episode,
        // latched when the pump ends its alarm, handed from bed 2's nurse to
        // the charge nurse after the demo's 30 s, then to everyone — and no
        // further: the chain of people ends there.
        ("bed-2", "pump_occlusion", Raised, 1),
        ("bed-2", "pump_occlusion", Latched, 1),
        ("bed-2", "pump_occlusion", Escalated, 2),
        // Noise: a thermometer wandering 38.1–38.5 °C for 20 minutes is one
        // fever episode, not one per crossing.
        ("bed-2", "fever", Raised, 1),
        // Bed 3 desaturates every 3 minutes with a rising pulse: one NEWS2
        // episode, medium then high, never back down within the hour.
        ("bed-3", "news2", Raised, 1),
        ("bed-3", "news2", PriorityChanged, 1),
        ("bed-3", "news2", Escalated, 2),
        // Pump 3 has 10 mL left at 100 mL/h: near end, then complete (KVO);
        // the near-end advisory ends 5 minutes after nothing is left.
        ("bed-4", "near_end_of_infusion", Raised, 1),
        ("bed-4", "near_end_of_infusion", Cleared, 1),
        ("bed-4", "infusion_complete", Raised, 1),
        // Bed 5's cuff reads 182/112 on every cycle.
        ("bed-5", "hypertensive_crisis", Raised, 1),
        ("bed-5", "hypertensive_crisis", Escalated, 2),
        // Pump 4 stops answering at 60 s and comes back at 240 s.
        ("bed-6", "device_offline", Raised, 1),
        ("bed-6", "device_offline", Cleared, 1),
        // Bed 7's chest strap battery drains to 10 %.
        ("bed-7", "battery_low", Raised, 1),
        // The medicines fridge warms past 8 °C.
        ("med-fridge", "fridge_out_of_range", Raised, 1),
        // Not here: bed 1's wearable dropping out for 8 s (shorter than the
        // 30 s before a device counts as offline).
    ]
    .into_iter()
    .map(|(s, r, t, n)| ((s.to_owned(), r.to_owned(), t), n))
    .collect();
    assert_eq!(got, expected, "alerts over 35 minutes of ward time");
    // One episode per condition: every raised alert has one id for its life.
    let raised: Vec<&Alert> = alerts.iter().filter(|a| a.transition == Raised).collect();
    for a in &alerts {
        assert!(
            raised.iter().any(|r| r.id == a.id),
            "{} {:?} belongs to no raised episode",
            a.id.0,
            a.transition
        );
    }
}
