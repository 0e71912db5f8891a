//! Pure FHIR R4 encoding: charted readings → Observations (the vital-signs
//! profile where one applies), blood pressure as one panel, the NEWS2 score
//! with its parameter scores, and the transaction Bundle that carries them
//! with a conditional create per Observation, so a retried bundle never
//! makes a second copy. No I/O, no clock.

use serde_json::{Value, json};
use wardgate_model::{Metric, Reading, Timestamp};
use wardgate_rules::news2::News2Score;

const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
/// IEEE 11073-10101 (MDC), as FHIR names the code system.
const MDC: &str = "urn:iso:std:iso:11073:10101";
const UCUM: &str = "http://unitsofmeasure.org";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const PROFILE: &str = "http://hl7.org/fhir/StructureDefinition/";
/// SNOMED CT: Royal College of Physicians NEWS2 total score.
const NEWS2_SNOMED: &str = "1104051000000101";
/// LOINC: blood pressure panel with all children optional (the vital-signs
/// `bp` profile's code).
const BP_PANEL: &str = "85354-9";
/// LOINC: oxygen saturation in arterial blood, which the `oxygensat`
/// profile requires beside the pulse-oximetry code 59408-5.
const O2_SAT: &str = "2708-6";

/// What names the gateway's own resources: the system of the Observation
/// identifiers (the key of the conditional create), the device identifiers
/// and the NEWS2 parameter codes.
#[derive(Debug, Clone)]
pub struct Naming {
    /// e.g. `urn:wardgate:st-example:gw-ward-7`.
    pub base: String,
    /// The gateway's id, first in every Observation identifier.
    pub gateway: String,
}

impl Naming {
    fn observation_system(&self) -> String {
        format!("{}:observation", self.base)
    }
    fn device_system(&self) -> String {
        format!("{}:device", self.base)
    }
    fn news2_system(&self) -> String {
        format!("{}:news2-parameter", self.base)
    }
}

/// The patient an Observation is about, by the hospital's identifier.
#[derive(Debug, Clone, Copy)]
pub struct Patient<'a> {
    pub system: &'a str,
    pub mrn: &'a str,
}

/// One Observation to chart.
#[derive(Debug, Clone)]
pub enum Chart {
    /// One reading of a metric with a LOINC or MDC code.
    Single(Reading),
    /// Systolic and diastolic (and mean when measured) of one measurement.
    BloodPressure {
        systolic: Reading,
        diastolic: Reading,
        mean: Option<Reading>,
    },
    /// The NEWS2 score; its parameter scores when the stream showed the
    /// inputs it was computed from.
    News2 {
        score: Reading,
        parameters: Option<News2Score>,
    },
}

impl Chart {
    /// The reading that stands for the whole (time, subject, device).
    pub fn first(&self) -> &Reading {
        match self {
            Chart::Single(r) | Chart::News2 { score: r, .. } => r,
            Chart::BloodPressure { systolic, .. } => systolic,
        }
    }

    /// The identifier value: the same for the same measurement, whatever
    /// batch or retry carries it.
    pub fn identifier(&self, naming: &Naming) -> String {
        let r = self.first();
        let what = match self {
            Chart::BloodPressure { .. } => "bp",
            _ => r.metric.name(),
        };
        format!("{}.{}.{}.{}", naming.gateway, r.subject, what, nanos(r.at))
    }
}

/// Whether a metric can be charted: it has a LOINC or MDC code (or is the
/// NEWS2 score). Device housekeeping (battery level) and room data are not
/// part of a patient record.
pub fn chartable(metric: &Metric) -> bool {
    *metric == Metric::News2Score
        || metric
            .info()
            .is_some_and(|i| i.loinc.is_some() || i.mdc.is_some())
}

fn nanos(at: Timestamp) -> i64 {
    at.timestamp_nanos_opt()
        .unwrap_or_else(|| at.timestamp().saturating_mul(1_000_000_000))
}

/// FHIR `dateTime`/`instant`: RFC 3339 in UTC, fractions only when present.
pub fn date_time(at: Timestamp) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

/// The metric's codings: LOINC first (the vital-signs profiles key on it),
/// then MDC.
fn codings(metric: &Metric) -> Vec<Value> {
    let mut out = Vec::new();
    let Some(info) = metric.info() else {
        return out;
    };
    if *metric == Metric::Spo2 {
        out.push(coding(LOINC, O2_SAT, "Oxygen saturation in Arterial blood"));
    }
    if let Some(loinc) = info.loinc {
        out.push(coding(LOINC, loinc, info.display_name));
    }
    if let Some(mdc) = info.mdc {
        out.push(coding(MDC, &mdc.code.to_string(), mdc.reference));
    }
    out
}

fn quantity(r: &Reading) -> Value {
    json!({
        "value": r.value,
        "unit": r.metric.unit(),
        "system": UCUM,
        "code": r.metric.unit(),
    })
}

/// The R4 vital-signs profile of a metric, if one applies.
fn vital_profile(metric: &Metric) -> Option<&'static str> {
    Some(match metric {
        Metric::HeartRate => "heartrate",
        Metric::Spo2 => "oxygensat",
        Metric::RespRate => "resprate",
        Metric::BodyTemp => "bodytemp",
        Metric::BodyWeight => "bodyweight",
        _ => return None,
    })
}

fn category(metric: &Metric) -> Option<(&'static str, &'static str)> {
    match metric {
        Metric::HeartRate
        | Metric::PulseRate
        | Metric::Spo2
        | Metric::RespRate
        | Metric::BpSystolic
        | Metric::BpDiastolic
        | Metric::BpMean
        | Metric::BodyTemp
        | Metric::BodyWeight => Some(("vital-signs", "Vital Signs")),
        Metric::Glucose | Metric::GlucoseCgm => Some(("laboratory", "Laboratory")),
        Metric::News2Score => Some(("survey", "Survey")),
        _ => None,
    }
}

/// The Observation for one chart item.
pub fn observation(chart: &Chart, patient: Patient<'_>, naming: &Naming) -> Value {
    let r = chart.first();
    let mut o = json!({
        "resourceType": "Observation",
        "identifier": [{
            "system": naming.observation_system(),
            "value": chart.identifier(naming),
        }],
        "status": "final",
        "subject": {
            "type": "Patient",
            "identifier": { "system": patient.system, "value": patient.mrn },
        },
        "effectiveDateTime": date_time(r.at),
    });
    if let Some(d) = &r.device {
        o["device"] = json!({
            "type": "Device",
            "identifier": { "system": naming.device_system(), "value": d.id.to_string() },
            "display": format!("{} ({})", d.id, d.kind.as_str()),
        });
    }
    let (profile, category_of) = match chart {
        Chart::Single(r) => {
            o["code"] = json!({ "coding": codings(&r.metric), "text": r.metric.display_name() });
            o["valueQuantity"] = quantity(r);
            (vital_profile(&r.metric), &r.metric)
        }
        Chart::BloodPressure {
            systolic,
            diastolic,
            mean,
        } => {
            o["code"] = json!({
                "coding": [coding(LOINC, BP_PANEL, "Blood pressure panel with all children optional")],
                "text": "Blood pressure",
            });
            let components: Vec<Value> = [Some(systolic), Some(diastolic), mean.as_ref()]
                .into_iter()
                .flatten()
                .map(|c| {
                    json!({
                        "code": { "coding": codings(&c.metric), "text": c.metric.display_name() },
                        "valueQuantity": quantity(c),
                    })
                })
                .collect();
            o["component"] = Value::Array(components);
            (Some("bp"), &systolic.metric)
        }
        Chart::News2 { score, parameters } => {
            o["code"] = json!({
                "coding": [coding(SNOMED, NEWS2_SNOMED, "Royal College of Physicians National Early Warning Score 2 (NEWS2) total score")],
                "text": "NEWS2 score",
            });
            // The score is a whole number by construction.
            #[allow(clippy::cast_possible_truncation)]
            let total = score.value.round() as i64;
            o["valueInteger"] = json!(total);
            if let Some(p) = parameters {
                o["component"] = Value::Array(news2_components(*p, naming));
            }
            (None, &score.metric)
        }
    };
    if let Some(profile) = profile {
        o["meta"] = json!({ "profile": [format!("{PROFILE}{profile}")] });
    }
    if let Some((code, display)) = category(category_of) {
        o["category"] = json!([{
            "coding": [{ "system": CATEGORY, "code": code, "display": display }],
        }]);
    }
    o
}

fn news2_components(p: News2Score, naming: &Naming) -> Vec<Value> {
    let system = naming.news2_system();
    [
        ("resp_rate", "NEWS2 respiration rate score", p.resp_rate),
        ("spo2", "NEWS2 SpO2 score", p.spo2),
        (
            "air_or_oxygen",
            "NEWS2 air or oxygen score",
            p.air_or_oxygen,
        ),
        (
            "bp_systolic",
            "NEWS2 systolic blood pressure score",
            p.bp_systolic,
        ),
        ("pulse", "NEWS2 pulse score", p.pulse),
        (
            "consciousness",
            "NEWS2 consciousness score",
            p.consciousness,
        ),
        ("temperature", "NEWS2 temperature score", p.temperature),
    ]
    .into_iter()
    .map(|(code, display, value)| {
        json!({
            "code": { "coding": [coding(&system, code, display)], "text": display },
            "valueInteger": value,
        })
    })
    .collect()
}

/// A transaction Bundle creating each Observation unless one with its
/// identifier exists (`ifNoneExist`): a retry or a resend after a lost
/// answer stores nothing twice.
pub fn transaction(observations: Vec<Value>) -> Value {
    let entries: Vec<Value> = observations
        .into_iter()
        .map(|o| {
            let id = &o["identifier"][0];
            let condition = format!(
                "identifier={}%7C{}",
                id["system"].as_str().unwrap_or_default(),
                id["value"].as_str().unwrap_or_default()
            );
            json!({
                "resource": o,
                "request": { "method": "POST", "url": "Observation", "ifNoneExist": condition },
            })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

/// Why a 2xx answer to a transaction is not a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the answer is not a transaction-response Bundle: {0}")]
    NotABundle(String),
    #[error("the answer has {got} entries for the {sent} sent")]
    Entries { sent: usize, got: usize },
    #[error("entry {index} was answered {status}")]
    EntryStatus { index: usize, status: String },
}

/// Checks a server's 2xx answer: a `transaction-response` Bundle with one
/// entry per request, each `201` (created) or `200` (it existed already).
pub fn check_response(body: &[u8], sent: usize) -> Result<(), ResponseError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ResponseError::NotABundle(e.to_string()))?;
    if v["resourceType"] != "Bundle" || v["type"] != "transaction-response" {
        return Err(ResponseError::NotABundle(format!(
            "resourceType {} type {}",
            v["resourceType"], v["type"]
        )));
    }
    let entries = v["entry"].as_array().map_or(&[][..], Vec::as_slice);
    if entries.len() != sent {
        return Err(ResponseError::Entries {
            sent,
            got: entries.len(),
        });
    }
    for (index, e) in entries.iter().enumerate() {
        let status = e["response"]["status"].as_str().unwrap_or_default();
        if !(status.starts_with("200") || status.starts_with("201")) {
            return Err(ResponseError::EntryStatus {
                index,
                status: status.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardgate_model::{DeviceKind, DeviceRef, TimeSource};

    fn at() -> Timestamp {
        "2026-11-30T10:15:00.250Z".parse().unwrap()
    }

    fn reading(metric: Metric, value: f64) -> Reading {
        Reading::new(
            at(),
            TimeSource::Device,
            "bed-1".into(),
            Some(DeviceRef::new("cuff-1".into(), DeviceKind::Ble)),
            metric,
            value,
        )
        .unwrap()
    }

    fn naming() -> Naming {
        Naming {
            base: "urn:wardgate:st:gw".into(),
            gateway: "gw".into(),
        }
    }

    const PATIENT: Patient<'static> = Patient {
        system: "urn:oid:2.16.840.1.113883.19.5",
        mrn: "000101",
    };

    #[test]
    fn spo2_is_an_oxygensat_vital_sign_with_loinc_and_mdc_codes() {
        let o = observation(
            &Chart::Single(reading(Metric::Spo2, 93.0)),
            PATIENT,
            &naming(),
        );
        assert_eq!(
            o,
            json!({
                "resourceType": "Observation",
                "meta": { "profile": ["http://hl7.org/fhir/StructureDefinition/oxygensat"] },
                "identifier": [{ "system": "urn:wardgate:st:gw:observation", "value": "gw.bed-1.spo2.1796033700250000000" }],
                "status": "final",
                "category": [{ "coding": [{ "system": CATEGORY, "code": "vital-signs", "display": "Vital Signs" }] }],
                "code": {
                    "coding": [
                        { "system": LOINC, "code": "2708-6", "display": "Oxygen saturation in Arterial blood" },
                        { "system": LOINC, "code": "59408-5", "display": "SpO\u{2082}" },
                        { "system": MDC, "code": "150456", "display": "MDC_PULS_OXIM_SAT_O2" },
                    ],
                    "text": "SpO\u{2082}",
                },
                "subject": { "type": "Patient", "identifier": { "system": PATIENT.system, "value": "000101" } },
                "effectiveDateTime": "2026-11-30T10:15:00.250Z",
                "device": {
                    "type": "Device",
                    "identifier": { "system": "urn:wardgate:st:gw:device", "value": "cuff-1" },
                    "display": "cuff-1 (ble)",
                },
                "valueQuantity": { "value": 93.0, "unit": "%", "system": UCUM, "code": "%" },
            })
        );
    }

    #[test]
    fn blood_pressure_is_one_panel_with_components() {
        let chart = Chart::BloodPressure {
            systolic: reading(Metric::BpSystolic, 128.0),
            diastolic: reading(Metric::BpDiastolic, 82.0),
            mean: Some(reading(Metric::BpMean, 97.0)),
        };
        let o = observation(&chart, PATIENT, &naming());
        assert_eq!(o["code"]["coding"][0]["code"], "85354-9");
        assert_eq!(o["meta"]["profile"][0], format!("{PROFILE}bp"));
        let parts: Vec<(String, f64)> = o["component"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["code"]["coding"][0]["code"].as_str().unwrap().to_owned(),
                    c["valueQuantity"]["value"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            parts,
            [
                ("8480-6".to_owned(), 128.0),
                ("8462-4".to_owned(), 82.0),
                ("8478-0".to_owned(), 97.0)
            ]
        );
        assert!(o.get("valueQuantity").is_none());
        assert_eq!(
            o["identifier"][0]["value"],
            "gw.bed-1.bp.1796033700250000000"
        );
    }

    #[test]
    fn news2_carries_its_parameter_scores() {
        let mut score = reading(Metric::News2Score, 5.0);
        score.device = None;
        let p = News2Score {
            resp_rate: 2,
            spo2: 1,
            air_or_oxygen: 0,
            bp_systolic: 0,
            pulse: 1,
            consciousness: 0,
            temperature: 1,
        };
        let o = observation(
            &Chart::News2 {
                score,
                parameters: Some(p),
            },
            PATIENT,
            &naming(),
        );
        assert_eq!(o["code"]["coding"][0]["code"], NEWS2_SNOMED);
        assert_eq!(o["valueInteger"], 5);
        assert_eq!(o["category"][0]["coding"][0]["code"], "survey");
        assert!(o.get("device").is_none());
        let sum: i64 = o["component"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["valueInteger"].as_i64().unwrap())
            .sum();
        assert_eq!(sum, 5);
    }

    #[test]
    fn the_bundle_creates_each_observation_only_if_its_identifier_is_new() {
        let o = observation(
            &Chart::Single(reading(Metric::HeartRate, 71.0)),
            PATIENT,
            &naming(),
        );
        let b = transaction(vec![o]);
        assert_eq!(b["type"], "transaction");
        assert_eq!(
            b["entry"][0]["request"],
            json!({
                "method": "POST",
                "url": "Observation",
                "ifNoneExist": "identifier=urn:wardgate:st:gw:observation%7Cgw.bed-1.heart_rate.1796033700250000000",
            })
        );
    }

    #[test]
    fn only_coded_metrics_are_charted() {
        assert!(chartable(&Metric::Spo2));
        assert!(chartable(&Metric::InfusionRate));
        assert!(chartable(&Metric::News2Score));
        assert!(!chartable(&Metric::BatteryLevel));
        assert!(!chartable(&Metric::RoomTemp));
        assert!(!chartable(&Metric::custom("co2", "ppm", None)));
    }

    proptest::proptest! {
        /// The server's answer is input from the network: any bytes give
        /// a verdict, never a panic.
        #[test]
        fn any_answer_gets_a_verdict(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512), sent in 0usize..4) {
            let _ = check_response(&body, sent);
        }

    }

    #[test]
    fn a_2xx_answer_must_account_for_every_entry() {
        let ok = br#"{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201 Created"}},{"response":{"status":"200 OK"}}]}"#;
        assert_eq!(check_response(ok, 2), Ok(()));
        assert_eq!(
            check_response(ok, 3),
            Err(ResponseError::Entries { sent: 3, got: 2 })
        );
        let bad = br#"{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"412 Precondition Failed"}}]}"#;
        assert!(matches!(
            check_response(bad, 1),
            Err(ResponseError::EntryStatus { index: 0, .. })
        ));
        assert!(matches!(
            check_response(b"<html>", 1),
            Err(ResponseError::NotABundle(_))
        ));
    }
}
