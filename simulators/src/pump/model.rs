//! A pump as a sans-IO state machine: infusion physics advanced by the
//! caller's clock, and the answer to each request.

use std::collections::BTreeSet;
use std::time::Duration;

use super::wire::crc16;

/// Conditions a scenario or a test can switch on and off. Stopping ones
/// (occlusions, air, door, depleted battery, fault) halt the infusion while
/// active; it resumes when they clear (a real pump would need a nurse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimAlarm {
    OcclusionDownstream,
    OcclusionUpstream,
    AirInLine,
    DoorOpen,
    LowBattery,
    BatteryDepleted,
    PumpFault,
    CallBack,
}

impl SimAlarm {
    /// The alarm-notification token on the wire.
    pub fn token(self) -> &'static str {
        match self {
            SimAlarm::OcclusionDownstream => "OCCL_DOWN",
            SimAlarm::OcclusionUpstream => "OCCL_UP",
            SimAlarm::AirInLine => "AIR_IN_LINE",
            SimAlarm::DoorOpen => "DOOR_OPEN",
            SimAlarm::LowBattery => "LOW_BATT",
            SimAlarm::BatteryDepleted => "BATT_DEPLETED",
            SimAlarm::PumpFault => "PUMP_FAULT",
            SimAlarm::CallBack => "CALL_BACK",
        }
    }

    fn stops_infusion(self) -> bool {
        !matches!(self, SimAlarm::LowBattery | SimAlarm::CallBack)
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "occlusion" | "occlusion-downstream" => SimAlarm::OcclusionDownstream,
            "occlusion-upstream" => SimAlarm::OcclusionUpstream,
            "air-in-line" => SimAlarm::AirInLine,
            "door-open" => SimAlarm::DoorOpen,
            "low-battery" => SimAlarm::LowBattery,
            "battery-depleted" => SimAlarm::BatteryDepleted,
            "pump-fault" => SimAlarm::PumpFault,
            "call-back" => SimAlarm::CallBack,
            _ => return None,
        })
    }
}

/// What the pump does when the VTBI has been delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndAction {
    Kvo,
    Stop,
}

/// The programme a simulated pump starts with.
#[derive(Clone, Debug)]
pub struct PumpProgram {
    pub serial: String,
    /// mL/h
    pub rate: f64,
    /// mL; `None` runs without a VTBI.
    pub vtbi: Option<f64>,
    /// mL already infused at start.
    pub volume_infused: f64,
    pub end_action: EndAction,
    /// mL/h after the VTBI is delivered with `EndAction::Kvo`.
    pub kvo_rate: f64,
    /// NEAR_END is raised when this little time is left.
    pub near_end: Duration,
    /// mmHg while the line is clear.
    pub line_pressure: f64,
}

impl Default for PumpProgram {
    fn default() -> Self {
        Self {
            serial: "8002-51740".into(),
            rate: 100.0,
            vtbi: Some(250.0),
            volume_infused: 0.0,
            end_action: EndAction::Kvo,
            kvo_rate: 1.0,
            near_end: Duration::from_secs(5 * 60),
            line_pressure: 25.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Infusing,
    Paused,
    Kvo,
    Complete,
}

/// Commands this read-only simulator refuses because they change an infusion.
const WRITE_COMMANDS: &[&str] = &["INF_START", "INF_STOP", "INF_RATE", "INF_VTBI_SET"];

#[derive(Debug)]
pub struct PumpModel {
    program: PumpProgram,
    phase: Phase,
    volume_infused: f64,
    vtbi_remaining: f64,
    alarms: BTreeSet<SimAlarm>,
    remote: bool,
    log_entry: u32,
    /// Infusion-changing commands received (a read-only gateway sends none).
    pub write_commands: u64,
}

impl PumpModel {
    pub fn new(program: PumpProgram) -> Self {
        Self {
            phase: Phase::Infusing,
            volume_infused: program.volume_infused,
            vtbi_remaining: program.vtbi.unwrap_or(0.0),
            alarms: BTreeSet::new(),
            remote: false,
            log_entry: 1,
            write_commands: 0,
            program,
        }
    }

    pub fn serial(&self) -> &str {
        &self.program.serial
    }

    pub fn set_alarm(&mut self, alarm: SimAlarm, on: bool) {
        let changed = if on {
            self.alarms.insert(alarm)
        } else {
            self.alarms.remove(&alarm)
        };
        if changed {
            self.log_entry += 1;
        }
    }

    pub fn pause(&mut self, paused: bool) {
        match (paused, self.phase) {
            (true, Phase::Infusing) => self.phase = Phase::Paused,
            (false, Phase::Paused) => self.phase = Phase::Infusing,
            _ => {}
        }
    }

    /// A new connection must repeat the remote-control handshake.
    pub fn reset_link(&mut self) {
        self.remote = false;
    }

    fn halted(&self) -> bool {
        self.alarms.iter().any(|a| a.stops_infusion())
    }

    /// Lets `dt` of pump time pass.
    pub fn advance(&mut self, dt: Duration) {
        if self.halted() {
            return;
        }
        let hours = dt.as_secs_f64() / 3600.0;
        match self.phase {
            Phase::Infusing => {
                let mut dose = self.program.rate * hours;
                if self.program.vtbi.is_some() && dose >= self.vtbi_remaining {
                    let used = if self.program.rate > 0.0 {
                        self.vtbi_remaining / self.program.rate
                    } else {
                        0.0
                    };
                    dose = self.vtbi_remaining;
                    self.vtbi_remaining = 0.0;
                    self.volume_infused += dose;
                    self.log_entry += 1;
                    self.phase = match self.program.end_action {
                        EndAction::Kvo => Phase::Kvo,
                        EndAction::Stop => Phase::Complete,
                    };
                    let rest = (hours - used).max(0.0);
                    if self.phase == Phase::Kvo {
                        self.volume_infused += self.program.kvo_rate * rest;
                    }
                    return;
                }
                if self.program.vtbi.is_some() {
                    self.vtbi_remaining -= dose;
                }
                self.volume_infused += dose;
            }
            Phase::Kvo => self.volume_infused += self.program.kvo_rate * hours,
            Phase::Paused | Phase::Complete => {}
        }
    }

    fn rate(&self) -> f64 {
        match self.phase {
            Phase::Infusing if !self.halted() => self.program.rate,
            Phase::Kvo if !self.halted() => self.program.kvo_rate,
            _ => 0.0,
        }
    }

    fn minutes_left(&self) -> Option<f64> {
        (self.phase == Phase::Infusing && self.program.vtbi.is_some() && self.program.rate > 0.0)
            .then(|| self.vtbi_remaining / self.program.rate * 60.0)
    }

    fn alarm_field(&self) -> String {
        let mut tokens: Vec<&str> = self.alarms.iter().map(|a| a.token()).collect();
        let near = self.program.near_end.as_secs_f64() / 60.0;
        if self.minutes_left().is_some_and(|m| m <= near) {
            tokens.push("NEAR_END");
        }
        if matches!(self.phase, Phase::Kvo | Phase::Complete) {
            tokens.push("INF_COMPLETE");
        }
        if tokens.is_empty() {
            "NONE".into()
        } else {
            tokens.join(",")
        }
    }

    fn mode_field(&self) -> &'static str {
        if self.halted() {
            return "ALARM";
        }
        match self.phase {
            Phase::Infusing => "INFUSING",
            Phase::Paused => "PAUSED",
            Phase::Kvo => "KVO",
            Phase::Complete => "COMPLETE",
        }
    }

    fn pressure(&self) -> f64 {
        if self.alarms.contains(&SimAlarm::OcclusionDownstream) {
            // Well above any downstream occlusion threshold.
            450.0
        } else if self.alarms.contains(&SimAlarm::OcclusionUpstream) {
            0.0
        } else {
            self.program.line_pressure
        }
    }

    /// The status reply's fields, as documented in docs/devices/asena.md.
    pub fn status_fields(&self) -> Vec<String> {
        let time = self.minutes_left().map_or_else(
            || "--".to_owned(),
            |m| {
                let m = m.round() as u64;
                format!("{}:{:02}", m / 60, m % 60)
            },
        );
        vec![
            "INF".into(),
            self.program.serial.clone(),
            self.alarm_field(),
            self.mode_field().into(),
            format!("{:.2}", self.rate()),
            "ml/h".into(),
            "-".into(),
            format!("{:.3}", self.volume_infused),
            "ml".into(),
            format!("{:.0}", self.pressure()),
            "mmHg".into(),
            time,
            "EV".into(),
            self.log_entry.to_string(),
        ]
    }

    fn vtbi_fields(&self) -> Vec<String> {
        let (state, vtbi) = match self.program.vtbi {
            Some(v) => ("ACTIV", v),
            None => ("INACT", 0.0),
        };
        let end = match self.program.end_action {
            EndAction::Kvo => "KVO",
            EndAction::Stop => "STOP",
        };
        vec![
            "INF_VTBI".into(),
            state.into(),
            format!("{vtbi:.3}"),
            "ml".into(),
            end.into(),
            format!("{:.3}", self.vtbi_remaining),
            "ml".into(),
        ]
    }

    /// The reply to one request (its fields), or `None` to stay silent.
    pub fn answer(&mut self, request: &[String]) -> Option<Vec<String>> {
        let nak = |cmd: &str, why: &str| Some(vec!["NAK".into(), cmd.into(), why.into()]);
        let cmd = request.first()?.as_str();
        match cmd {
            "INST_SERIALNO" => Some(vec![cmd.into(), self.program.serial.clone()]),
            "COMMS_PROTOCOL" => Some(vec![cmd.into(), "ASENA".into(), "1".into()]),
            "REMOTE_CTRL" => {
                let key = format!("{:04X}", crc16(&self.program.serial));
                if request.get(1).map(String::as_str) == Some("ENABLED")
                    && request.get(2) == Some(&key)
                {
                    self.remote = true;
                    Some(vec![cmd.into(), "ENABLED".into()])
                } else {
                    nak(cmd, "BAD_KEY")
                }
            }
            "INF" | "INF_VTBI" if !self.remote => nak(cmd, "NOT_REMOTE"),
            "INF" => Some(self.status_fields()),
            "INF_VTBI" if request.len() == 1 => Some(self.vtbi_fields()),
            _ if WRITE_COMMANDS.contains(&cmd) || cmd == "INF_VTBI" => {
                self.write_commands += 1;
                nak(cmd, "READ_ONLY")
            }
            _ => nak(cmd, "UNKNOWN"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Vec<String> {
        text.split('^').map(str::to_owned).collect()
    }

    fn handshake(m: &mut PumpModel) {
        assert_eq!(
            m.answer(&req("REMOTE_CTRL^ENABLED^3CC1")),
            Some(req("REMOTE_CTRL^ENABLED"))
        );
    }

    #[test]
    fn refuses_status_before_the_handshake_and_with_a_wrong_key() {
        let mut m = PumpModel::new(PumpProgram::default());
        assert_eq!(m.answer(&req("INF")), Some(req("NAK^INF^NOT_REMOTE")));
        assert_eq!(
            m.answer(&req("REMOTE_CTRL^ENABLED^0000")),
            Some(req("NAK^REMOTE_CTRL^BAD_KEY"))
        );
        handshake(&mut m);
        assert_eq!(m.answer(&req("INF")).unwrap()[0], "INF");
    }

    #[test]
    fn infuses_counts_down_then_near_end_then_kvo() {
        let mut m = PumpModel::new(PumpProgram::default());
        handshake(&mut m);
        // 100 mL/h for 1 h of 250 mL: 100 infused, 150 left, 90 min to go.
        m.advance(Duration::from_secs(3600));
        let s = m.answer(&req("INF")).unwrap();
        assert_eq!(
            s[2..12],
            req("NONE^INFUSING^100.00^ml/h^-^100.000^ml^25^mmHg^1:30")[..]
        );
        // 1 h 26 min later: 6.667 mL (4 min) left, within the 5 min near-end.
        m.advance(Duration::from_secs(86 * 60));
        let s = m.answer(&req("INF")).unwrap();
        assert_eq!((s[2].as_str(), s[11].as_str()), ("NEAR_END", "0:04"));
        // 5 more minutes: VTBI done after 4, then 1 min of KVO at 1 mL/h.
        m.advance(Duration::from_secs(5 * 60));
        let s = m.answer(&req("INF")).unwrap();
        assert_eq!(
            s[2..12],
            req("INF_COMPLETE^KVO^1.00^ml/h^-^250.017^ml^25^mmHg^--")[..]
        );
        assert_eq!(
            m.answer(&req("INF_VTBI")),
            Some(req("INF_VTBI^ACTIV^250.000^ml^KVO^0.000^ml"))
        );
    }

    #[test]
    fn stopping_alarms_halt_the_infusion() {
        let mut m = PumpModel::new(PumpProgram::default());
        handshake(&mut m);
        m.set_alarm(SimAlarm::OcclusionDownstream, true);
        m.set_alarm(SimAlarm::LowBattery, true);
        m.advance(Duration::from_secs(3600));
        let s = m.answer(&req("INF")).unwrap();
        assert_eq!(
            s[2..11],
            req("OCCL_DOWN,LOW_BATT^ALARM^0.00^ml/h^-^0.000^ml^450^mmHg")[..]
        );
        m.set_alarm(SimAlarm::OcclusionDownstream, false);
        assert_eq!(m.answer(&req("INF")).unwrap()[3], "INFUSING");
    }

    #[test]
    fn infusion_changing_commands_are_refused_and_counted() {
        let mut m = PumpModel::new(PumpProgram::default());
        handshake(&mut m);
        assert_eq!(
            m.answer(&req("INF_STOP")),
            Some(req("NAK^INF_STOP^READ_ONLY"))
        );
        assert_eq!(
            m.answer(&req("INF_VTBI^ACTIV^10.000^ml^STOP")),
            Some(req("NAK^INF_VTBI^READ_ONLY"))
        );
        assert_eq!(m.write_commands, 2);
    }
}
