//! `[patients]`: who each bed or patient subject is in the hospital's
//! records, for the sinks that chart into them (FHIR, HL7 v2). The gateway
//! knows beds and home patients by its own ids; an EMR knows patients by a
//! medical record number (MRN) issued by an authority. This section maps one
//! to the other:
//!
//! ```toml
//! [patients]
//! system = "urn:oid:2.16.840.1.113883.19.5"  # FHIR Identifier.system of the MRN
//! authority = "WARDHOSP"                      # HL7 v2 assigning authority (PID-3.4)
//! mrn = { bed-1 = "000101", bed-2 = "000102" }
//! ```
//!
//! A bed without an MRN is an empty bed (or one whose patient the EMR does
//! not know yet): its readings go to every other sink but not to the EMR.

use std::collections::BTreeMap;

use serde::Deserialize;
use wardgate_model::config::{ConfigIssue, PathSeg, Validate};
use wardgate_model::{MetricRegistry, Subject, SubjectId, SubjectKind};

use super::loader::Loader;
use super::sinks::SinkConfig;

/// The `[patients]` section.
#[derive(Debug, Clone, Deserialize)]
pub struct PatientsConfig {
    /// The URI naming the MRN's issuer, as FHIR `Identifier.system`
    /// (`urn:oid:…`, `urn:uuid:…` or `http(s)://…`).
    pub system: String,
    /// The same issuer as HL7 v2 names it: PID-3.4's namespace id.
    pub authority: String,
    /// Subject id → MRN.
    #[serde(default)]
    pub mrn: BTreeMap<SubjectId, String>,
}

impl PatientsConfig {
    /// The MRN of `subject`'s patient, if the EMR knows one.
    pub fn mrn(&self, subject: &SubjectId) -> Option<&str> {
        self.mrn.get(subject).map(String::as_str)
    }
}

/// Why `system` is not an identifier-system URI, if it is not.
fn system_problem(system: &str) -> Option<&'static str> {
    if let Some(oid) = system.strip_prefix("urn:oid:") {
        let arcs_ok = !oid.is_empty()
            && oid
                .split('.')
                .all(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()));
        return (!arcs_ok).then_some(
            "a urn:oid: system is dot-separated numbers, e.g. urn:oid:2.16.840.1.113883.19.5",
        );
    }
    if let Some(uuid) = system.strip_prefix("urn:uuid:") {
        let ok = uuid.len() == 36
            && uuid.bytes().enumerate().all(|(i, b)| {
                matches!(i, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
            });
        return (!ok).then_some("a urn:uuid: system is a UUID in its 8-4-4-4-12 form");
    }
    match reqwest::Url::parse(system) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => None,
        _ => Some(
            "system must be a URI: urn:oid:…, urn:uuid:… or an http(s):// address naming the MRN's issuer",
        ),
    }
}

/// Characters an identifier may hold: they pass through FHIR search
/// parameters and HL7 v2 components without escaping.
fn plain_id(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

impl Validate for PatientsConfig {
    fn validate(&self, _metrics: &MetricRegistry) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Some(problem) = system_problem(&self.system) {
            issues.push(ConfigIssue::new(
                [PathSeg::from("system")],
                format!("{problem}, got \"{}\"", self.system),
            ));
        }
        if !plain_id(&self.authority, 20) {
            issues.push(ConfigIssue::new(
                [PathSeg::from("authority")],
                "authority is 1 to 20 letters, digits or - . _ (HL7 v2 PID-3.4)",
            ));
        }
        for (subject, mrn) in &self.mrn {
            if !plain_id(mrn, 64) {
                issues.push(ConfigIssue::new(
                    [PathSeg::from("mrn"), PathSeg::from(subject.to_string())],
                    format!("the MRN of `{subject}` is 1 to 64 letters, digits or - . _"),
                ));
            }
        }
        issues
    }
}

impl Loader<'_> {
    /// `[patients]`, checked against the subjects (every key one, no room)
    /// and required when a sink charts into an EMR.
    pub(super) fn patients(
        &mut self,
        metrics: &MetricRegistry,
        subjects: &[Option<Subject>],
        sinks: &[Option<SinkConfig>],
    ) -> Option<PatientsConfig> {
        let section = [PathSeg::from("patients")];
        let Some(value) = self.table_section("patients") else {
            if let Some((i, s)) = sinks
                .iter()
                .enumerate()
                .find_map(|(i, s)| Some((i, s.as_ref()?)).filter(|(_, s)| s.kind.charts()))
            {
                self.error_at(
                    &[PathSeg::from("sinks"), PathSeg::from(i), PathSeg::from("type")],
                    format!(
                        "sink `{}` charts into a patient record and needs a [patients] section: `system` (the MRN's issuer URI), `authority` (its HL7 v2 name) and `mrn` (subject id → MRN)",
                        s.name
                    ),
                );
            }
            return None;
        };
        let config: PatientsConfig = self.checked(value, &section, "[patients]", metrics)?;
        if subjects.iter().all(Option::is_some) {
            for id in config.mrn.keys() {
                let at = [
                    PathSeg::from("patients"),
                    PathSeg::from("mrn"),
                    PathSeg::from(id.to_string()),
                ];
                match subjects.iter().flatten().find(|s| &s.id == id) {
                    None => self.error_at(
                        &at,
                        format!("patients.mrn.{id}: no [[subjects]] entry has id `{id}`"),
                    ),
                    Some(s) if s.kind == SubjectKind::Room => self.error_at(
                        &at,
                        format!("patients.mrn.{id}: `{id}` is a room; only beds and patients have an MRN"),
                    ),
                    Some(_) => {}
                }
            }
        }
        Some(config)
    }
}
