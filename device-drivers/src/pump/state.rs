//! What the pump's replies mean: status and VTBI replies parsed into a
//! [`PumpState`] in canonical units, and the alarm / mode vocabulary.
//!
//! Pure functions over [`Frame`]s. The dialect is documented in
//! `docs/devices/asena.md`; keep the two in step.

use std::collections::BTreeSet;
use std::fmt;

use wardgate_model::AlertKind;

use super::codec::Frame;

/// What the pump is doing with the infusion (status reply field 3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Infusing,
    /// Paused or stopped by the user (`PAUSED`, `STOPPED`).
    Stopped,
    /// Keep-vein-open: VTBI delivered, running at the KVO rate.
    Kvo,
    /// VTBI delivered and the pump stopped.
    Complete,
    /// Stopped by an alarm.
    Alarm,
    /// A token this dialect does not know, verbatim.
    Unknown(String),
}

impl Mode {
    pub fn parse(token: &str) -> Self {
        match token {
            "INFUSING" => Mode::Infusing,
            "PAUSED" | "STOPPED" => Mode::Stopped,
            "KVO" => Mode::Kvo,
            "COMPLETE" => Mode::Complete,
            "ALARM" => Mode::Alarm,
            other => Mode::Unknown(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Mode::Infusing => "infusing",
            Mode::Stopped => "stopped",
            Mode::Kvo => "kvo",
            Mode::Complete => "complete",
            Mode::Alarm => "alarm",
            Mode::Unknown(raw) => raw,
        }
    }
}

/// A condition the pump reports (status reply field 2), or one the gateway
/// detects about the pump (communication lost).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PumpAlarm {
    OcclusionDownstream,
    OcclusionUpstream,
    AirInLine,
    DoorOpen,
    NearEndOfInfusion,
    /// VTBI delivered; the pump is in KVO or stopped.
    InfusionComplete,
    LowBattery,
    BatteryDepleted,
    PumpFault,
    /// The pump was left paused/not infusing and asks for attention.
    CallBack,
    /// Detected by the gateway: the pump stopped answering (not a wire token).
    CommunicationLost,
    /// An alarm notification or infusion mode this dialect does not know, verbatim.
    Unknown(String),
}

impl PumpAlarm {
    /// One token of the alarm-notification field. `NONE` is no alarm.
    pub fn parse(token: &str) -> Option<Self> {
        Some(match token {
            "NONE" | "" => return None,
            "OCCL_DOWN" => PumpAlarm::OcclusionDownstream,
            "OCCL_UP" => PumpAlarm::OcclusionUpstream,
            "AIR_IN_LINE" => PumpAlarm::AirInLine,
            "DOOR_OPEN" => PumpAlarm::DoorOpen,
            "NEAR_END" => PumpAlarm::NearEndOfInfusion,
            "INF_COMPLETE" => PumpAlarm::InfusionComplete,
            "LOW_BATT" => PumpAlarm::LowBattery,
            "BATT_DEPLETED" => PumpAlarm::BatteryDepleted,
            "PUMP_FAULT" => PumpAlarm::PumpFault,
            "CALL_BACK" => PumpAlarm::CallBack,
            other => PumpAlarm::Unknown(other.to_owned()),
        })
    }

    /// The snake_case code `DeviceAlarm.alarm` carries.
    pub fn code(&self) -> &'static str {
        match self {
            PumpAlarm::OcclusionDownstream => "occlusion_downstream",
            PumpAlarm::OcclusionUpstream => "occlusion_upstream",
            PumpAlarm::AirInLine => "air_in_line",
            PumpAlarm::DoorOpen => "door_open",
            PumpAlarm::NearEndOfInfusion => "near_end_of_infusion",
            PumpAlarm::InfusionComplete => "infusion_complete",
            PumpAlarm::LowBattery => "low_battery",
            PumpAlarm::BatteryDepleted => "battery_depleted",
            PumpAlarm::PumpFault => "pump_fault",
            PumpAlarm::CallBack => "call_back",
            PumpAlarm::CommunicationLost => "communication_lost",
            PumpAlarm::Unknown(_) => "unknown",
        }
    }

    pub fn kind(&self) -> AlertKind {
        match self {
            PumpAlarm::NearEndOfInfusion | PumpAlarm::InfusionComplete => AlertKind::Advisory,
            _ => AlertKind::Technical,
        }
    }

    /// The device's own words, for `DeviceAlarm.raw`.
    pub fn raw(&self) -> Option<&str> {
        match self {
            PumpAlarm::Unknown(raw) => Some(raw),
            _ => None,
        }
    }
}

impl fmt::Display for PumpAlarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PumpAlarm::Unknown(raw) => write!(f, "unknown ({raw})"),
            other => f.write_str(other.code()),
        }
    }
}

/// Why a reply frame could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("expected a {expected} reply, got {got}")]
    WrongCommand { expected: &'static str, got: String },
    #[error("{command} reply has {got} fields, at least {needed} needed")]
    TooFewFields {
        command: &'static str,
        needed: usize,
        got: usize,
    },
    #[error("{field}: {value:?} is not a non-negative number")]
    BadNumber { field: &'static str, value: String },
    #[error("{field}: unit {unit:?} is not one of {allowed}")]
    UnknownUnit {
        field: &'static str,
        unit: String,
        allowed: &'static str,
    },
    #[error("{field}: {value:?} is not one of {allowed}")]
    BadToken {
        field: &'static str,
        value: String,
        allowed: &'static str,
    },
}

/// The status reply (`INF^...`), values in canonical units.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusReply {
    pub serial: String,
    pub alarms: BTreeSet<PumpAlarm>,
    pub mode: Mode,
    /// mL/h
    pub rate: Option<f64>,
    /// mL
    pub volume_infused: Option<f64>,
    /// mm[Hg]
    pub line_pressure: Option<f64>,
    /// min
    pub time_remaining: Option<f64>,
    pub log_type: Option<String>,
    pub log_entry: Option<String>,
}

/// The VTBI reply (`INF_VTBI^...`), volumes in mL.
#[derive(Clone, Debug, PartialEq)]
pub struct VtbiReply {
    /// False when no VTBI is programmed (`INACT`); the volumes are then `None`.
    pub active: bool,
    pub vtbi: Option<f64>,
    pub remaining: Option<f64>,
    /// What the pump does when the VTBI is delivered (`STOP` or `KVO`).
    pub end_action: String,
    /// Why the VTBI reply could not be used; its fields are then `None`.
    pub invalid: Option<ReplyError>,
}

impl VtbiReply {
    /// A VTBI reply that could not be used: every field unknown.
    pub fn missing(why: ReplyError) -> Self {
        Self {
            active: false,
            vtbi: None,
            remaining: None,
            end_action: String::new(),
            invalid: Some(why),
        }
    }
}

/// Everything the gateway knows about a pump after one poll cycle.
#[derive(Clone, Debug, PartialEq)]
pub struct PumpState {
    pub serial: String,
    pub mode: Mode,
    /// mL/h
    pub rate: Option<f64>,
    /// mL
    pub volume_infused: Option<f64>,
    /// mL; `None` when no VTBI is programmed.
    pub vtbi: Option<f64>,
    /// mL
    pub vtbi_remaining: Option<f64>,
    /// min
    pub time_remaining: Option<f64>,
    /// mm[Hg]
    pub line_pressure: Option<f64>,
    /// Active alarms; an unknown mode shows here as [`PumpAlarm::Unknown`].
    pub alarms: BTreeSet<PumpAlarm>,
    /// Why this poll's VTBI fields are missing, when its reply was unusable
    /// (boxed: the common case carries nothing).
    pub vtbi_invalid: Option<Box<ReplyError>>,
}

impl PumpState {
    pub fn new(status: &StatusReply, vtbi: &VtbiReply) -> Self {
        let mut alarms = status.alarms.clone();
        if let Mode::Unknown(raw) = &status.mode {
            alarms.insert(PumpAlarm::Unknown(raw.clone()));
        }
        Self {
            serial: status.serial.clone(),
            mode: status.mode.clone(),
            rate: status.rate,
            volume_infused: status.volume_infused,
            vtbi: vtbi.vtbi,
            vtbi_remaining: vtbi.remaining,
            time_remaining: status.time_remaining,
            line_pressure: status.line_pressure,
            alarms,
            vtbi_invalid: vtbi.invalid.clone().map(Box::new),
        }
    }
}

fn expect(frame: &Frame, command: &'static str, needed: usize) -> Result<(), ReplyError> {
    if frame.name() != command {
        return Err(ReplyError::WrongCommand {
            expected: command,
            got: frame.name().to_owned(),
        });
    }
    if frame.fields().len() < needed {
        return Err(ReplyError::TooFewFields {
            command,
            needed,
            got: frame.fields().len(),
        });
    }
    Ok(())
}

/// `--` or an empty field: the pump has no value.
fn absent(value: &str) -> bool {
    value.is_empty() || value == "--"
}

fn number(field: &'static str, value: &str) -> Result<Option<f64>, ReplyError> {
    if absent(value) {
        return Ok(None);
    }
    // Plain decimals only: `inf`, `1e3` and signs are not what a pump sends.
    let plain = value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && value.bytes().any(|b| b.is_ascii_digit());
    match value.parse::<f64>() {
        Ok(v) if plain && v.is_finite() => Ok(Some(v)),
        _ => Err(ReplyError::BadNumber {
            field,
            value: value.to_owned(),
        }),
    }
}

fn scaled(
    field: &'static str,
    value: &str,
    unit: &str,
    table: &[(&str, f64)],
    allowed: &'static str,
) -> Result<Option<f64>, ReplyError> {
    let Some(v) = number(field, value)? else {
        return Ok(None);
    };
    let factor = table
        .iter()
        .find(|(u, _)| u.eq_ignore_ascii_case(unit))
        .map(|&(_, f)| f)
        .ok_or_else(|| ReplyError::UnknownUnit {
            field,
            unit: unit.to_owned(),
            allowed,
        })?;
    Ok(Some(v * factor))
}

const RATE_UNITS: &[(&str, f64)] = &[("ml/h", 1.0), ("ml/min", 60.0), ("l/h", 1000.0)];
const RATE_ALLOWED: &str = "ml/h, ml/min, l/h";
const VOLUME_UNITS: &[(&str, f64)] = &[("ml", 1.0), ("l", 1000.0), ("ul", 0.001)];
const VOLUME_ALLOWED: &str = "ml, l, ul";
const PRESSURE_UNITS: &[(&str, f64)] = &[
    ("mmHg", 1.0),
    ("kPa", 7.500_62),
    ("cmH2O", 0.735_559),
    ("psi", 51.714_9),
];
const PRESSURE_ALLOWED: &str = "mmHg, kPa, cmH2O, psi";

/// `H:MM` (hours may exceed 24) or decimal minutes; `--` for none.
fn minutes(value: &str) -> Result<Option<f64>, ReplyError> {
    const FIELD: &str = "time remaining";
    if absent(value) {
        return Ok(None);
    }
    let bad = || ReplyError::BadNumber {
        field: FIELD,
        value: value.to_owned(),
    };
    match value.split_once(':') {
        Some((h, m)) => {
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(h) || m.len() != 2 || !digits(m) {
                return Err(bad());
            }
            let (h, m): (f64, f64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if m >= 60.0 {
                return Err(bad());
            }
            Ok(Some(h * 60.0 + m))
        }
        None => number(FIELD, value),
    }
}

/// Parses a status reply: `INF^serial^alarms^mode^rate^rate unit^-^volume^
/// volume unit^pressure^pressure unit^time remaining^log type^log entry`.
pub fn parse_status(frame: &Frame) -> Result<StatusReply, ReplyError> {
    expect(frame, "INF", 12)?;
    let f = |i: usize| frame.field(i).unwrap_or("");
    let alarms = f(2)
        .split(',')
        .filter_map(PumpAlarm::parse)
        .collect::<BTreeSet<_>>();
    let text = |i: usize| Some(f(i).to_owned()).filter(|s| !absent(s));
    Ok(StatusReply {
        serial: f(1).to_owned(),
        alarms,
        mode: Mode::parse(f(3)),
        rate: scaled("rate", f(4), f(5), RATE_UNITS, RATE_ALLOWED)?,
        volume_infused: scaled("volume infused", f(7), f(8), VOLUME_UNITS, VOLUME_ALLOWED)?,
        line_pressure: scaled(
            "line pressure",
            f(9),
            f(10),
            PRESSURE_UNITS,
            PRESSURE_ALLOWED,
        )?,
        time_remaining: minutes(f(11))?,
        log_type: text(12),
        log_entry: text(13),
    })
}

/// Parses a VTBI reply: `INF_VTBI^ACTIV|INACT^vtbi^unit^end action^remaining^unit`.
pub fn parse_vtbi(frame: &Frame) -> Result<VtbiReply, ReplyError> {
    expect(frame, "INF_VTBI", 7)?;
    let f = |i: usize| frame.field(i).unwrap_or("");
    let active = match f(1) {
        "ACTIV" => true,
        "INACT" => false,
        other => {
            return Err(ReplyError::BadToken {
                field: "VTBI state",
                value: other.to_owned(),
                allowed: "ACTIV, INACT",
            });
        }
    };
    let vtbi = scaled("vtbi", f(2), f(3), VOLUME_UNITS, VOLUME_ALLOWED)?;
    let remaining = scaled("vtbi remaining", f(5), f(6), VOLUME_UNITS, VOLUME_ALLOWED)?;
    Ok(VtbiReply {
        active,
        vtbi: vtbi.filter(|_| active),
        remaining: remaining.filter(|_| active),
        end_action: f(4).to_owned(),
        invalid: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Frame {
        Frame::new(text.split('^')).unwrap()
    }

    #[test]
    fn status_reply_fields_map_to_canonical_values() {
        let s = parse_status(&frame(concat!(
            "INF^",         // [0] command
            "8002-51740^",  // [1] serial number
            "OCCL_DOWN^",   // [2] alarm notification
            "ALARM^",       // [3] infusion mode
            "125.50^ml/h^", // [4] rate, [5] unit
            "-^",           // [6] reserved
            "42.125^ml^",   // [7] volume infused, [8] unit
            "310^mmHg^",    // [9] line pressure, [10] unit
            "1:05^",        // [11] time remaining, 1 h 05 min
            "EV^",          // [12] log type
            "1234"          // [13] log entry id
        )))
        .unwrap();
        assert_eq!(s.serial, "8002-51740");
        assert_eq!(s.alarms, BTreeSet::from([PumpAlarm::OcclusionDownstream]));
        assert_eq!(s.mode, Mode::Alarm);
        assert_eq!(s.rate, Some(125.5));
        assert_eq!(s.volume_infused, Some(42.125));
        assert_eq!(s.line_pressure, Some(310.0));
        assert_eq!(s.time_remaining, Some(65.0));
        assert_eq!(
            (s.log_type.as_deref(), s.log_entry.as_deref()),
            (Some("EV"), Some("1234"))
        );
    }

    #[test]
    fn units_are_converted() {
        // 2 ml/min = 120 ml/h; 0.25 l = 250 ml; 40 kPa = 300.0248 mmHg; 90 min.
        let s = parse_status(&frame("INF^X^NONE^INFUSING^2^ml/min^-^0.25^l^40^kPa^90^^")).unwrap();
        assert_eq!(s.rate, Some(120.0));
        assert_eq!(s.volume_infused, Some(250.0));
        assert!((s.line_pressure.unwrap() - 300.0248).abs() < 1e-9);
        assert_eq!(s.time_remaining, Some(90.0));
        assert!(s.alarms.is_empty());
        assert_eq!(s.log_type, None);
    }

    #[test]
    fn several_alarms_and_absent_values() {
        let s = parse_status(&frame(
            "INF^X^AIR_IN_LINE,LOW_BATT^STOPPED^--^ml/h^-^--^ml^--^mmHg^--",
        ))
        .unwrap();
        assert_eq!(
            s.alarms,
            BTreeSet::from([PumpAlarm::AirInLine, PumpAlarm::LowBattery])
        );
        assert_eq!(s.mode, Mode::Stopped);
        assert_eq!(
            (s.rate, s.volume_infused, s.line_pressure, s.time_remaining),
            (None, None, None, None)
        );
    }

    #[test]
    fn unknown_alarm_and_mode_are_kept_verbatim() {
        let s = parse_status(&frame(
            "INF^X^SYRINGE_EMPTY^PRIMING^1^ml/h^-^0^ml^0^mmHg^--",
        ))
        .unwrap();
        assert_eq!(
            s.alarms,
            BTreeSet::from([PumpAlarm::Unknown("SYRINGE_EMPTY".into())])
        );
        assert_eq!(s.mode, Mode::Unknown("PRIMING".into()));
        let v = parse_vtbi(&frame("INF_VTBI^INACT^0^ml^STOP^0^ml")).unwrap();
        let state = PumpState::new(&s, &v);
        assert!(state.alarms.contains(&PumpAlarm::Unknown("PRIMING".into())));
        assert_eq!(state.alarms.len(), 2);
        assert_eq!(PumpAlarm::Unknown("PRIMING".into()).code(), "unknown");
        assert_eq!(PumpAlarm::Unknown("PRIMING".into()).raw(), Some("PRIMING"));
    }

    #[test]
    fn every_documented_alarm_token_parses() {
        let tokens = [
            ("OCCL_DOWN", "occlusion_downstream"),
            ("OCCL_UP", "occlusion_upstream"),
            ("AIR_IN_LINE", "air_in_line"),
            ("DOOR_OPEN", "door_open"),
            ("NEAR_END", "near_end_of_infusion"),
            ("INF_COMPLETE", "infusion_complete"),
            ("LOW_BATT", "low_battery"),
            ("BATT_DEPLETED", "battery_depleted"),
            ("PUMP_FAULT", "pump_fault"),
            ("CALL_BACK", "call_back"),
        ];
        for (token, code) in tokens {
            assert_eq!(PumpAlarm::parse(token).unwrap().code(), code);
        }
        assert_eq!(PumpAlarm::parse("NONE"), None);
    }

    #[test]
    fn bad_values_are_typed_errors() {
        let bad = |text: &str| parse_status(&frame(text)).unwrap_err();
        assert_eq!(
            bad("INF^X^NONE^INFUSING^1^gal/h^-^0^ml^0^mmHg^--"),
            ReplyError::UnknownUnit {
                field: "rate",
                unit: "gal/h".into(),
                allowed: RATE_ALLOWED
            }
        );
        for value in ["-1", "1e3", "inf", "NaN", "."] {
            assert!(matches!(
                bad(&format!(
                    "INF^X^NONE^INFUSING^{value}^ml/h^-^0^ml^0^mmHg^--"
                )),
                ReplyError::BadNumber { field: "rate", .. }
            ));
        }
        for value in ["1:60", "1:5", ":05", "a:00"] {
            assert!(matches!(
                bad(&format!("INF^X^NONE^INFUSING^1^ml/h^-^0^ml^0^mmHg^{value}")),
                ReplyError::BadNumber {
                    field: "time remaining",
                    ..
                }
            ));
        }
        assert!(matches!(
            bad("INF^X^NONE"),
            ReplyError::TooFewFields {
                needed: 12,
                got: 3,
                ..
            }
        ));
        assert!(matches!(
            parse_status(&frame("INF_VTBI^ACTIV^1^ml^STOP^1^ml")),
            Err(ReplyError::WrongCommand { .. })
        ));
    }

    proptest::proptest! {
        /// Any frame content parses or is a typed error; values are finite
        /// and non-negative when present.
        #[test]
        fn arbitrary_fields_never_panic(fields in proptest::collection::vec("[ -~&&[^!^|]]{0,12}", 1..16), name in proptest::sample::select(vec!["INF", "INF_VTBI"])) {
            let mut all = vec![name.to_owned()];
            all.extend(fields);
            let frame = Frame::new(all).unwrap();
            if let Ok(s) = parse_status(&frame) {
                for v in [s.rate, s.volume_infused, s.line_pressure, s.time_remaining].into_iter().flatten() {
                    proptest::prop_assert!(v.is_finite() && v >= 0.0);
                }
            }
            if let Ok(v) = parse_vtbi(&frame) {
                for x in [v.vtbi, v.remaining].into_iter().flatten() {
                    proptest::prop_assert!(x.is_finite() && x >= 0.0);
                }
            }
        }
    }

    #[test]
    fn vtbi_reply() {
        // [1] state, [2] VTBI, [3] unit, [4] end action, [5] remaining, [6] unit
        let v = parse_vtbi(&frame("INF_VTBI^ACTIV^500.000^ml^KVO^0.125^l")).unwrap();
        assert_eq!(
            v,
            VtbiReply {
                active: true,
                vtbi: Some(500.0),
                remaining: Some(125.0),
                end_action: "KVO".into(),
                invalid: None
            }
        );
        let v = parse_vtbi(&frame("INF_VTBI^INACT^0.000^ml^STOP^0.000^ml")).unwrap();
        assert_eq!((v.active, v.vtbi, v.remaining), (false, None, None));
        assert!(matches!(
            parse_vtbi(&frame("INF_VTBI^MAYBE^0^ml^STOP^0^ml")),
            Err(ReplyError::BadToken { .. })
        ));
    }
}
