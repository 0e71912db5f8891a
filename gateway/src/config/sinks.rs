//! `[[sinks]]`: each sink table's common keys (`type`, `name`, `required`),
//! the rest deserialised by its type's config and checked by its `Validate`.

use toml::de::DeValue;
use wardgate_model::MetricRegistry;
use wardgate_model::config::PathSeg;

use super::loader::{Loader, Spanned};
use crate::sinks::fhir::FhirConfig;
use crate::sinks::hl7v2::Hl7Config;
use crate::sinks::influxdb::InfluxDbConfig;
use crate::sinks::jsonl::JsonlConfig;
use crate::sinks::mqtt::MqttSinkConfig;

/// One `[[sinks]]` table.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Unique name (defaults to the type); names the sink in logs and metrics.
    pub name: String,
    /// Whether the gateway can do its job without it: a required sink that
    /// stalls makes `/readyz` say "not ready" (default: required).
    pub required: bool,
    pub kind: SinkKind,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Jsonl(JsonlConfig),
    Mqtt(Box<MqttSinkConfig>),
    InfluxDb(Box<InfluxDbConfig>),
    Fhir(Box<FhirConfig>),
    Hl7v2(Box<Hl7Config>),
}

impl SinkKind {
    const TYPES: &'static [&'static str] = &["jsonl", "mqtt", "influxdb", "fhir", "hl7v2"];

    /// Whether it charts into a patient record, so needs `[patients]`.
    pub fn charts(&self) -> bool {
        matches!(self, SinkKind::Fhir(_) | SinkKind::Hl7v2(_))
    }
}

impl Loader<'_> {
    pub(super) fn sinks(&mut self, metrics: &MetricRegistry) -> Vec<Option<SinkConfig>> {
        let mut out = Vec::new();
        for (i, v) in self.array_section("sinks").into_iter().enumerate() {
            let path = [PathSeg::from("sinks"), PathSeg::from(i)];
            let span = v.span();
            let DeValue::Table(mut table) = v.into_inner() else {
                self.error(span, "each [[sinks]] entry must be a table".into());
                out.push(None);
                continue;
            };
            let kind = self.take_string(&mut table, &path, "type", "[[sinks]]");
            let name = match table.remove_entry("name") {
                Some((_, v)) => match v.get_ref().as_str() {
                    Some(s) => Some(s.to_owned()),
                    None => {
                        self.error(v.span(), "`name` in [[sinks]] must be a string".into());
                        None
                    }
                },
                None => None,
            };
            let Some(kind) = kind else {
                out.push(None);
                continue;
            };
            let required = match table.remove_entry("required") {
                Some((_, v)) => match v.get_ref().as_bool() {
                    Some(b) => b,
                    None => {
                        self.error(
                            v.span(),
                            "`required` in [[sinks]] must be true or false".into(),
                        );
                        true
                    }
                },
                None => true,
            };
            let rest = Spanned::new(span, DeValue::Table(table));
            let what = format!("sink (type {})", kind.get_ref());
            let sink = match kind.get_ref().as_str() {
                "jsonl" => self
                    .checked(rest, &path, &what, metrics)
                    .map(SinkKind::Jsonl),
                "mqtt" => self
                    .checked(rest, &path, &what, metrics)
                    .map(|c| SinkKind::Mqtt(Box::new(c))),
                "influxdb" => self
                    .checked(rest, &path, &what, metrics)
                    .map(|c| SinkKind::InfluxDb(Box::new(c))),
                "fhir" => self
                    .checked(rest, &path, &what, metrics)
                    .map(|c| SinkKind::Fhir(Box::new(c))),
                "hl7v2" => self
                    .checked(rest, &path, &what, metrics)
                    .map(|c| SinkKind::Hl7v2(Box::new(c))),
                other => {
                    self.error(
                        kind.span(),
                        format!(
                            "unknown sink type `{other}`; allowed types: {}",
                            SinkKind::TYPES.join(", ")
                        ),
                    );
                    None
                }
            };
            out.push(sink.map(|kind_config| SinkConfig {
                name: name.unwrap_or_else(|| kind.get_ref().clone()),
                required,
                kind: kind_config,
            }));
        }
        self.duplicates(
            "sinks",
            out.iter().map(|s| s.as_ref().map(|s| s.name.clone())),
            "sink name",
        );
        out
    }
}
