//! HL7 v2.6 messages in ER7 (pipe-and-hat) encoding, as IHE Patient Care
//! Device profiles them: a reading becomes a PCD-01 `ORU^R01^ORU_R01`, an
//! alert transition a PCD-04 `ORU^R40^ORU_R40`. Pure functions of what they
//! are given (the record, its control id, the patient's identifiers): the
//! same record always gives the same bytes, so a message sent again after a
//! reconnect is the very message sent before.
//!
//! Every text taken from configuration or data is escaped ([`escape`]); the
//! separators are the default ones (`|^~\&`), segments end with `\r`.

use std::fmt::Write as _;

use wardgate_model::{
    Alert, AlertKind, AlertState, DeviceRef, Metric, Priority, Reading, Timestamp, Transition,
};

use crate::spool::Lane;

/// MSH-3: what sends the messages.
pub const SENDING_APPLICATION: &str = "WARDGATE";
/// The coding system of codes local to wardgate (HL7 table 0396: `99zzz`).
pub const LOCAL_CODING_SYSTEM: &str = "99WARDGATE";
/// MSH-21 of PCD-01 (IHE PCD TF-2, Device Enterprise Communication).
const PCD_01_PROFILE: &str = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO";
/// MSH-21 of PCD-04 (IHE PCD TF-2, Alarm Communication Management, Report Alert).
const PCD_04_PROFILE: &str = "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO";
/// OBR-4 of PCD-01: SNOMED CT "monitoring of patient", as IHE PCD's examples.
const MONITORING: &str = "182777000^monitoring of patient^SCT";
/// OBR-4 and the event identification row of PCD-04.
const MDC_EVT_ALARM: &str = "196616^MDC_EVT_ALARM^MDC";
/// The ACM alert facets (IHE PCD TF-2 PCD-04 OBX rows), by OBX-4's last part.
const ALERT_SOURCE: &str = "68480^MDC_ATTR_ALERT_SOURCE^MDC";
const EVENT_PHASE: &str = "68481^MDC_ATTR_EVENT_PHASE^MDC";
const ALARM_STATE: &str = "68482^MDC_ATTR_ALARM_STATE^MDC";
const INACTIVATION_STATE: &str = "68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC";
const ALARM_PRIORITY: &str = "68484^MDC_ATTR_ALARM_PRIORITY^MDC";
const ALERT_TYPE: &str = "68485^MDC_ATTR_ALERT_TYPE^MDC";
/// NEWS2 has no MDC or LOINC code; SNOMED CT has one (DESIGN.md).
const NEWS2_SNOMED: &str = "1104051000000101";

/// What every message's header and patient segments carry.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// MSH-4.
    pub sending_facility: &'a str,
    /// MSH-5 and MSH-6.
    pub receiving_application: &'a str,
    pub receiving_facility: &'a str,
    /// MSH-10, from [`control_id`].
    pub control_id: &'a str,
    /// MSH-7: when the record was committed (stable across resends).
    pub at: Timestamp,
    /// PID-3: the patient's MRN and its assigning authority.
    pub mrn: &'a str,
    pub authority: &'a str,
    /// PV1-2 (HL7 table 0004: `I` inpatient, `O` outpatient...).
    pub patient_class: &'a str,
    /// PV1-3.1 point of care (the ward) and PV1-3.3 bed (the subject).
    pub ward: &'a str,
    pub bed: &'a str,
}

/// MSH-10 of the message made from one spool record: the lane, its sequence
/// number and its commit time (nanoseconds, hexadecimal). The sequence number
/// makes it unique in one spool; the commit time keeps it unique after a
/// spool was set aside and numbering started again. Sending the record again
/// gives the same id, so the peer can drop the duplicate.
pub fn control_id(lane: Lane, seq: u64, committed_at: Timestamp) -> String {
    let lane = match lane {
        Lane::Alert => 'A',
        Lane::Telemetry => 'T',
    };
    let nanos = committed_at.timestamp_nanos_opt().unwrap_or_default();
    format!("{lane}{seq}-{nanos:x}")
}

/// Appends `text` escaped for an ER7 field: the separators as `\F\ \S\ \R\
/// \E\ \T\`, control characters (line breaks, the MLLP framing bytes) as
/// `\Xhh\`.
pub fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '~' => out.push_str("\\R\\"),
            '\\' => out.push_str("\\E\\"),
            '&' => out.push_str("\\T\\"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\X{:02X}\\", c as u32);
            }
            c => out.push(c),
        }
    }
}

fn esc(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    escape(text, &mut s);
    s
}

/// HL7 DTM in UTC: `YYYYMMDDHHMMSS[.ffff]+0000` (tenths of milliseconds at
/// most, as HL7 allows four fractional digits).
pub fn dtm(t: Timestamp) -> String {
    let mut s = t.format("%Y%m%d%H%M%S").to_string();
    let frac = t.timestamp_subsec_nanos() / 100_000;
    if frac != 0 {
        let _ = write!(s, ".{frac:04}");
    }
    s.push_str("+0000");
    s
}

/// OBX-3 of a metric: its MDC code, else its LOINC code, else a local code
/// (`news2_score`: its SNOMED CT code).
pub fn observation_identifier(metric: &Metric) -> String {
    let info = metric.info();
    if let Some(mdc) = info.and_then(|i| i.mdc) {
        return format!("{}^{}^MDC", mdc.code, mdc.reference);
    }
    let text = esc(metric.display_name());
    if let Some(loinc) = info.and_then(|i| i.loinc) {
        return format!("{loinc}^{text}^LN");
    }
    if *metric == Metric::News2Score {
        return format!("{NEWS2_SNOMED}^{text}^SCT");
    }
    format!("{}^{text}^{LOCAL_CODING_SYSTEM}", esc(metric.name()))
}

/// OBX-6: the UCUM code as identifier and text.
fn unit(metric: &Metric) -> String {
    let u = esc(metric.unit());
    format!("{u}^{u}^UCUM")
}

/// NM: decimal digits, never an exponent (Rust's `Display` of `f64` never
/// writes one).
fn number(v: f64) -> String {
    format!("{v}")
}

/// OBX-18: the device as an equipment instance identifier (EI), its id in
/// the namespace of the sending gateway.
fn equipment(device: Option<&DeviceRef>, env: &Envelope<'_>) -> String {
    device.map_or_else(String::new, |d| {
        format!("{}^{}", esc(d.id.as_str()), esc(env.sending_facility))
    })
}

fn header(env: &Envelope<'_>, kind: &str, profile: &str, out: &mut String) {
    // MSH-15/16 empty: original acknowledgement mode (docs/interop.md).
    let _ = write!(
        out,
        "MSH|^~\\&|{SENDING_APPLICATION}|{}|{}|{}|{}||{kind}|{}|P|2.6||||||UNICODE UTF-8|||{profile}\r",
        esc(env.sending_facility),
        esc(env.receiving_application),
        esc(env.receiving_facility),
        dtm(env.at),
        esc(env.control_id),
    );
    // PID-5 unknown (name type U): the gateway knows the MRN, never the name.
    let _ = write!(
        out,
        "PID|||{}^^^{}^MR||^^^^^^U\rPV1||{}|{}^^{}\r",
        esc(env.mrn),
        esc(env.authority),
        esc(env.patient_class),
        esc(env.ward),
        esc(env.bed),
    );
}

/// PCD-01: one reading as `ORU^R01^ORU_R01`.
pub fn reading(env: &Envelope<'_>, r: &Reading) -> String {
    let mut out = String::with_capacity(512);
    header(env, "ORU^R01^ORU_R01", PCD_01_PROFILE, &mut out);
    let id = esc(env.control_id);
    let at = dtm(r.at);
    let _ = write!(
        out,
        "OBR|1|{id}^{SENDING_APPLICATION}|{id}^{SENDING_APPLICATION}|{MONITORING}|||{at}\r\
         OBX|1|NM|{}|1.0.0.1|{}|{}|||||R|||{at}||||{}\r",
        observation_identifier(&r.metric),
        number(r.value),
        unit(&r.metric),
        equipment(r.device.as_ref(), env),
    );
    out
}

/// The IHE ACM facets of one transition: event phase, alarm state,
/// inactivation state.
pub fn facets(a: &Alert) -> (&'static str, &'static str, &'static str) {
    let phase = match a.transition {
        Transition::Raised => "start",
        Transition::Cleared => "end",
        Transition::Escalated
        | Transition::PriorityChanged
        | Transition::Acknowledged
        | Transition::Latched => "continue",
    };
    let state = match a.state {
        AlertState::Active | AlertState::Acknowledged => "active",
        AlertState::Latched => "latched",
        AlertState::Cleared => "inactive",
    };
    let inactivation = if a.acknowledged.is_some() {
        "alert-acknowledged"
    } else {
        "enabled"
    };
    (phase, state, inactivation)
}

/// The alert's priority (`PH`/`PM`/`PL`) and type (`SP` physiological,
/// `ST` technical, `SA` advisory), as IHE ACM codes them.
pub fn priority_and_type(a: &Alert) -> (&'static str, &'static str) {
    let priority = match a.priority {
        Priority::High => "PH",
        Priority::Medium => "PM",
        Priority::Low => "PL",
    };
    let kind = match a.kind {
        AlertKind::Physiological => "SP",
        AlertKind::Technical => "ST",
        AlertKind::Advisory => "SA",
    };
    (priority, kind)
}

/// PCD-04: one alert transition as `ORU^R40^ORU_R40`. OBR-2/3 carry the
/// alert's id, the same for every transition of one episode, so an alert
/// manager correlates them.
pub fn alert(env: &Envelope<'_>, a: &Alert) -> String {
    let mut out = String::with_capacity(768);
    header(env, "ORU^R40^ORU_R40", PCD_04_PROFILE, &mut out);
    let id = esc(&a.id.0);
    let at = dtm(a.at);
    let rule = esc(a.rule.as_str());
    let (phase, state, inactivation) = facets(a);
    let (priority, kind) = priority_and_type(a);
    // Facet 2, the source: the device the alert names, else the rule.
    let source = a
        .device
        .as_ref()
        .map_or_else(|| rule.clone(), |d| esc(d.id.as_str()));
    let _ = write!(
        out,
        "OBR|1|{id}^{SENDING_APPLICATION}|{id}^{SENDING_APPLICATION}|{MDC_EVT_ALARM}|||{}\r\
         OBX|1|ST|{MDC_EVT_ALARM}^{rule}^{rule}^{LOCAL_CODING_SYSTEM}|1.0.0.0.1|{}|||{priority}~{kind}|||R|||{at}||||{}\r",
        dtm(a.raised_at),
        esc(&a.message),
        equipment(a.device.as_ref(), env),
    );
    for (set, (code, facet, value)) in [
        (ALERT_SOURCE, 2, source.as_str()),
        (EVENT_PHASE, 3, phase),
        (ALARM_STATE, 4, state),
        (INACTIVATION_STATE, 5, inactivation),
        (ALARM_PRIORITY, 6, priority),
        (ALERT_TYPE, 7, kind),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = write!(
            out,
            "OBX|{}|ST|{code}|1.0.0.0.{facet}|{value}||||||R|||{at}\r",
            set + 2
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardgate_model::{AlertId, DeviceId, DeviceKind, TimeSource};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn env(control_id: &str) -> Envelope<'_> {
        Envelope {
            sending_facility: "gw-1",
            receiving_application: "EMR",
            receiving_facility: "HOSP",
            control_id,
            at: t("2026-11-27T10:15:31Z"),
            mrn: "MRN-0042",
            authority: "WARDHOSP",
            patient_class: "I",
            ward: "ward-a",
            bed: "bed-1",
        }
    }

    fn segments(msg: &str) -> Vec<&str> {
        assert!(msg.ends_with('\r'), "every segment ends with CR");
        msg.trim_end_matches('\r').split('\r').collect()
    }

    #[test]
    fn one_reading_is_one_pcd01_message() {
        let r = Reading::new(
            t("2026-11-27T10:15:30.1234Z"),
            TimeSource::Device,
            "bed-1".into(),
            Some(DeviceRef::new(DeviceId::from("ox-1"), DeviceKind::Ble)),
            Metric::Spo2,
            93.0,
        )
        .unwrap();
        let msg = reading(&env("T42-1"), &r);
        assert_eq!(
            segments(&msg),
            [
                "MSH|^~\\&|WARDGATE|gw-1|EMR|HOSP|20261127101531+0000||ORU^R01^ORU_R01|T42-1|P|2.6||||||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
                "PID|||MRN-0042^^^WARDHOSP^MR||^^^^^^U",
                "PV1||I|ward-a^^bed-1",
                "OBR|1|T42-1^WARDGATE|T42-1^WARDGATE|182777000^monitoring of patient^SCT|||20261127101530.1234+0000",
                "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.0.0.1|93|%^%^UCUM|||||R|||20261127101530.1234+0000||||ox-1^gw-1",
            ]
        );
    }

    #[test]
    fn metrics_without_mdc_use_loinc_then_snomed_then_a_local_code() {
        assert_eq!(
            observation_identifier(&Metric::GlucoseCgm),
            "99504-3^Glucose (CGM)^LN"
        );
        assert_eq!(
            observation_identifier(&Metric::News2Score),
            "1104051000000101^NEWS2 score^SCT"
        );
        assert_eq!(
            observation_identifier(&Metric::O2Flow),
            "o2_flow^O\u{2082} flow^99WARDGATE"
        );
        assert_eq!(
            observation_identifier(&Metric::custom("bed|load", "kg", Some("Bed & load"))),
            "bed\\F\\load^Bed \\T\\ load^99WARDGATE"
        );
    }

    /// docs/interop.md's table of every built-in metric's OBX-3 and
    /// OBX-6 is what the encoder writes.
    #[test]
    fn the_docs_table_is_the_code() {
        let doc = include_str!("../../../../docs/interop.md");
        let table = doc
            .split("#### Metric → OBX-3 and OBX-6")
            .nth(1)
            .and_then(|t| t.split("###").next())
            .expect("the table's section");
        let mut rows = 0;
        for line in table
            .lines()
            .filter(|l| l.starts_with("| ") && l.contains('`'))
        {
            let cells: Vec<&str> = line
                .split(" | ")
                .map(|c| c.trim_matches(['|', ' ', '`']))
                .collect();
            let metric = Metric::builtin(cells[0]).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(cells[1], observation_identifier(&metric), "{line}");
            assert_eq!(cells[2], unit(&metric), "{line}");
            rows += 1;
        }
        assert_eq!(rows, Metric::BUILTIN.len(), "one row per built-in metric");
    }

    #[test]
    fn numbers_never_use_an_exponent() {
        assert_eq!(number(37.25), "37.25");
        assert_eq!(number(-0.5), "-0.5");
        assert_eq!(number(1e-7), "0.0000001");
        assert_eq!(number(1e21), "1000000000000000000000");
    }

    fn raised() -> Alert {
        Alert {
            id: AlertId("bed-1/spo2_low/1".into()),
            rule: "spo2_low".into(),
            subject: "bed-1".into(),
            device: Some(DeviceRef::new(DeviceId::from("ox-1"), DeviceKind::Ble)),
            priority: Priority::High,
            kind: AlertKind::Physiological,
            state: AlertState::Active,
            transition: Transition::Raised,
            at: t("2026-11-27T10:15:30Z"),
            raised_at: t("2026-11-27T10:15:30Z"),
            message: "SpO2 88 % | falling & low\nrecheck".into(),
            escalation_level: 0,
            acknowledged: None,
            cleared_at: None,
            recipient: None,
        }
    }

    #[test]
    fn one_alert_transition_is_one_pcd04_message() {
        let msg = alert(&env("A7-1"), &raised());
        assert_eq!(
            segments(&msg),
            [
                "MSH|^~\\&|WARDGATE|gw-1|EMR|HOSP|20261127101531+0000||ORU^R40^ORU_R40|A7-1|P|2.6||||||UNICODE UTF-8|||IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO",
                "PID|||MRN-0042^^^WARDHOSP^MR||^^^^^^U",
                "PV1||I|ward-a^^bed-1",
                "OBR|1|bed-1/spo2_low/1^WARDGATE|bed-1/spo2_low/1^WARDGATE|196616^MDC_EVT_ALARM^MDC|||20261127101530+0000",
                "OBX|1|ST|196616^MDC_EVT_ALARM^MDC^spo2_low^spo2_low^99WARDGATE|1.0.0.0.1|SpO2 88 % \\F\\ falling \\T\\ low\\X0A\\recheck|||PH~SP|||R|||20261127101530+0000||||ox-1^gw-1",
                "OBX|2|ST|68480^MDC_ATTR_ALERT_SOURCE^MDC|1.0.0.0.2|ox-1||||||R|||20261127101530+0000",
                "OBX|3|ST|68481^MDC_ATTR_EVENT_PHASE^MDC|1.0.0.0.3|start||||||R|||20261127101530+0000",
                "OBX|4|ST|68482^MDC_ATTR_ALARM_STATE^MDC|1.0.0.0.4|active||||||R|||20261127101530+0000",
                "OBX|5|ST|68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC|1.0.0.0.5|enabled||||||R|||20261127101530+0000",
                "OBX|6|ST|68484^MDC_ATTR_ALARM_PRIORITY^MDC|1.0.0.0.6|PH||||||R|||20261127101530+0000",
                "OBX|7|ST|68485^MDC_ATTR_ALERT_TYPE^MDC|1.0.0.0.7|SP||||||R|||20261127101530+0000",
            ]
        );
    }

    #[test]
    fn transitions_map_to_acm_facets() {
        let mut a = raised();
        let mut check = |transition, state, ack: bool, expected| {
            a.transition = transition;
            a.state = state;
            a.acknowledged = ack.then(|| wardgate_model::Acknowledgement {
                by: "nurse".into(),
                at: a.at,
                via: None,
            });
            assert_eq!(facets(&a), expected, "{transition:?} {state:?}");
        };
        check(
            Transition::Raised,
            AlertState::Active,
            false,
            ("start", "active", "enabled"),
        );
        check(
            Transition::Escalated,
            AlertState::Active,
            false,
            ("continue", "active", "enabled"),
        );
        check(
            Transition::PriorityChanged,
            AlertState::Active,
            false,
            ("continue", "active", "enabled"),
        );
        check(
            Transition::Acknowledged,
            AlertState::Acknowledged,
            true,
            ("continue", "active", "alert-acknowledged"),
        );
        check(
            Transition::Latched,
            AlertState::Latched,
            false,
            ("continue", "latched", "enabled"),
        );
        check(
            Transition::Cleared,
            AlertState::Cleared,
            true,
            ("end", "inactive", "alert-acknowledged"),
        );
        let mut a = raised();
        a.priority = Priority::Low;
        a.kind = AlertKind::Technical;
        assert_eq!(priority_and_type(&a), ("PL", "ST"));
        a.priority = Priority::Medium;
        a.kind = AlertKind::Advisory;
        assert_eq!(priority_and_type(&a), ("PM", "SA"));
    }

    #[test]
    fn every_separator_and_control_character_is_escaped() {
        assert_eq!(esc("a|b^c~d\\e&f"), "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f");
        assert_eq!(esc("x\r\x0b\x1cy"), "x\\X0D\\\\X0B\\\\X1C\\y");
        assert_eq!(esc("O\u{2082} é"), "O\u{2082} é");
    }

    #[test]
    fn control_ids_are_stable_and_differ_by_lane_seq_and_spool() {
        let at = t("2026-11-27T10:15:30Z");
        assert_eq!(
            control_id(Lane::Telemetry, 42, at),
            control_id(Lane::Telemetry, 42, at)
        );
        assert_eq!(
            control_id(Lane::Alert, 7, at),
            format!("A7-{:x}", at.timestamp_nanos_opt().unwrap())
        );
        assert_ne!(
            control_id(Lane::Alert, 7, at),
            control_id(Lane::Telemetry, 7, at)
        );
        assert_ne!(
            control_id(Lane::Alert, 7, at),
            control_id(Lane::Alert, 7, t("2026-11-28T10:15:30Z"))
        );
    }

    #[test]
    fn times_are_utc_with_at_most_four_fraction_digits() {
        assert_eq!(dtm(t("2026-11-27T10:15:30Z")), "20261127101530+0000");
        assert_eq!(dtm(t("2026-11-27T10:15:30.5Z")), "20261127101530.5000+0000");
        assert_eq!(dtm(t("2026-11-27T10:15:30.000099Z")), "20261127101530+0000");
        assert_eq!(dtm(t("2026-11-27T11:15:30+01:00")), "20261127101530+0000");
    }
}
