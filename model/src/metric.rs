//! The metric vocabulary: one row per metric of `DESIGN.md`, plus custom metrics
//! declared in configuration (Modbus registers, custom sensors).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IEEE 11073-10101 nomenclature code with its reference id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MdcCode {
    pub code: u32,
    pub reference: &'static str,
}

/// Static facts about a built-in metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricInfo {
    /// snake_case name used in JSON, topics, rules and InfluxDB fields.
    pub name: &'static str,
    /// UCUM unit code of the canonical unit every value is converted to.
    pub unit: &'static str,
    /// Human-readable name for the nurse-station page and logs.
    pub display_name: &'static str,
    pub mdc: Option<MdcCode>,
    pub loinc: Option<&'static str>,
}

macro_rules! metrics {
    ($(
        $(#[$doc:meta])*
        $variant:ident => $name:literal, $unit:literal, $display:literal,
            mdc: $mdc:expr, loinc: $loinc:expr;
    )*) => {
        /// A measured or derived quantity. Built-in metrics carry their unit and
        /// codes; [`Metric::Custom`] carries what the configuration declared.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Metric {
            $( $(#[$doc])* $variant, )*
            /// A metric declared in configuration (name + UCUM unit).
            Custom(CustomMetric),
        }

        impl Metric {
            /// Every built-in metric, in table order.
            pub const BUILTIN: &'static [Metric] = &[$(Metric::$variant),*];

            /// Static facts for a built-in metric; `None` for a custom one.
            pub fn info(&self) -> Option<&'static MetricInfo> {
                match self {
                    $( Metric::$variant => {
                        const INFO: MetricInfo = MetricInfo {
                            name: $name, unit: $unit, display_name: $display,
                            mdc: $mdc, loinc: $loinc,
                        };
                        Some(&INFO)
                    } )*
                    Metric::Custom(_) => None,
                }
            }

            /// The built-in metric with this name, if there is one.
            pub fn builtin(name: &str) -> Option<Metric> {
                match name {
                    $( $name => Some(Metric::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

#[allow(clippy::unnecessary_wraps)] // keeps the table rows uniform: `mdc: mdc(..)` or `mdc: None`
const fn mdc(code: u32, reference: &'static str) -> Option<MdcCode> {
    Some(MdcCode { code, reference })
}

metrics! {
    HeartRate => "heart_rate", "/min", "Heart rate", mdc: mdc(147_842, "MDC_ECG_HEART_RATE"), loinc: Some("8867-4");
    /// Pulse rate; the MDC code given is the oximeter's (149530); a cuff's is 149546.
    PulseRate => "pulse_rate", "/min", "Pulse rate", mdc: mdc(149_530, "MDC_PULS_OXIM_PULS_RATE"), loinc: Some("8889-8");
    Spo2 => "spo2", "%", "SpO\u{2082}", mdc: mdc(150_456, "MDC_PULS_OXIM_SAT_O2"), loinc: Some("59408-5");
    RespRate => "resp_rate", "/min", "Respiration rate", mdc: mdc(151_562, "MDC_RESP_RATE"), loinc: Some("9279-1");
    BpSystolic => "bp_systolic", "mm[Hg]", "Systolic BP", mdc: mdc(150_021, "MDC_PRESS_BLD_NONINV_SYS"), loinc: Some("8480-6");
    BpDiastolic => "bp_diastolic", "mm[Hg]", "Diastolic BP", mdc: mdc(150_022, "MDC_PRESS_BLD_NONINV_DIA"), loinc: Some("8462-4");
    BpMean => "bp_mean", "mm[Hg]", "Mean arterial pressure", mdc: mdc(150_023, "MDC_PRESS_BLD_NONINV_MEAN"), loinc: Some("8478-0");
    BodyTemp => "body_temp", "Cel", "Body temperature", mdc: mdc(150_364, "MDC_TEMP_BODY"), loinc: Some("8310-5");
    BodyWeight => "body_weight", "kg", "Body weight", mdc: mdc(188_736, "MDC_MASS_BODY_ACTUAL"), loinc: Some("29463-7");
    Glucose => "glucose", "mg/dL", "Glucose (capillary)", mdc: mdc(160_184, "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"), loinc: Some("2339-0");
    /// Interstitial glucose from a continuous glucose monitor (a sensor
    /// every few minutes, not a meter's spot check): rules treat its events
    /// by the CGM consensus definitions. LOINC as in the HL7 CGM guide.
    GlucoseCgm => "glucose_cgm", "mg/dL", "Glucose (CGM)", mdc: None, loinc: Some("99504-3");
    RrInterval => "rr_interval", "ms", "RR interval", mdc: None, loinc: None;
    EnergyExpended => "energy_expended", "kJ", "Energy expended", mdc: None, loinc: None;
    PulseAmplitudeIndex => "pulse_amplitude_index", "%", "Pulse amplitude index", mdc: None, loinc: None;
    BatteryLevel => "battery_level", "%", "Battery level", mdc: None, loinc: None;
    InfusionRate => "infusion_rate", "mL/h", "Infusion rate", mdc: mdc(157_784, "MDC_FLOW_FLUID_PUMP"), loinc: None;
    VolumeInfused => "volume_infused", "mL", "Volume infused", mdc: mdc(157_993, "MDC_VOL_FLUID_DELIV_TOTAL"), loinc: None;
    Vtbi => "vtbi", "mL", "Volume to be infused", mdc: mdc(157_884, "MDC_VOL_FLUID_TBI"), loinc: None;
    VtbiRemaining => "vtbi_remaining", "mL", "VTBI remaining", mdc: mdc(157_872, "MDC_VOL_FLUID_TBI_REMAIN"), loinc: None;
    InfusionTimeRemaining => "infusion_time_remaining", "min", "Infusion time remaining", mdc: mdc(157_916, "MDC_TIME_PD_REMAIN"), loinc: None;
    LinePressure => "line_pressure", "mm[Hg]", "Line pressure", mdc: None, loinc: None;
    O2Flow => "o2_flow", "L/min", "O\u{2082} flow", mdc: None, loinc: None;
    /// ACVPU coded as 0 = Alert, 1 = new Confusion, 2 = Voice, 3 = Pain, 4 = Unresponsive.
    Consciousness => "consciousness", "{ACVPU}", "Consciousness (ACVPU)", mdc: None, loinc: None;
    RoomTemp => "room_temp", "Cel", "Room temperature", mdc: None, loinc: None;
    FridgeTemp => "fridge_temp", "Cel", "Fridge temperature", mdc: None, loinc: None;
    Humidity => "humidity", "%", "Humidity", mdc: None, loinc: None;
    DiffPressure => "diff_pressure", "Pa", "Differential pressure", mdc: None, loinc: None;
    /// NEWS2 aggregate score; SNOMED CT 1104051000000101.
    News2Score => "news2_score", "{score}", "NEWS2 score", mdc: None, loinc: None;
}

impl Metric {
    /// The snake_case name.
    pub fn name(&self) -> &str {
        match self {
            Metric::Custom(c) => &c.0.name,
            builtin => builtin.info().map_or("", |i| i.name),
        }
    }

    /// The UCUM code of the canonical unit.
    pub fn unit(&self) -> &str {
        match self {
            Metric::Custom(c) => &c.0.unit,
            builtin => builtin.info().map_or("", |i| i.unit),
        }
    }

    pub fn display_name(&self) -> &str {
        match self {
            Metric::Custom(c) => &c.0.display_name,
            builtin => builtin.info().map_or("", |i| i.display_name),
        }
    }

    /// A custom metric as declared in configuration.
    pub fn custom(name: &str, unit: &str, display_name: Option<&str>) -> Metric {
        Metric::Custom(CustomMetric(Arc::new(CustomInner {
            name: name.to_owned(),
            unit: unit.to_owned(),
            display_name: display_name.unwrap_or(name).to_owned(),
        })))
    }
}

impl fmt::Debug for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.name(), self.unit())
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metric declared in configuration. Compared, ordered and hashed by name
/// alone: two declarations of one name are one metric (the loader rejects a
/// second declaration with another unit).
#[derive(Clone, Debug)]
pub struct CustomMetric(Arc<CustomInner>);

#[derive(Debug)]
struct CustomInner {
    name: String,
    unit: String,
    display_name: String,
}

impl PartialEq for CustomMetric {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}
impl Eq for CustomMetric {}
impl Hash for CustomMetric {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}
impl PartialOrd for CustomMetric {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for CustomMetric {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.name.cmp(&other.0.name)
    }
}

/// Serialised as its name; the unit travels beside it where it matters (see
/// [`crate::Reading`]).
impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A built-in name gives the built-in metric; any other name a custom metric
/// with an empty unit (use [`Metric::custom`] when the unit is known).
impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(Metric::builtin(&name).unwrap_or_else(|| Metric::custom(&name, "", None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_builtin() {
        for m in Metric::BUILTIN {
            assert_eq!(Metric::builtin(m.name()).as_ref(), Some(m));
        }
        // DESIGN.md's 27 rows and glucose from a continuous monitor.
        assert_eq!(Metric::BUILTIN.len(), 28);
    }

    #[test]
    fn table_rows_match_design() {
        let hr = Metric::HeartRate.info().unwrap();
        assert_eq!(
            (hr.unit, hr.mdc.unwrap().code, hr.loinc),
            ("/min", 147_842, Some("8867-4"))
        );
        let sys = Metric::BpSystolic.info().unwrap();
        assert_eq!(
            (sys.unit, sys.mdc.unwrap().code, sys.loinc),
            ("mm[Hg]", 150_021, Some("8480-6"))
        );
        let glu = Metric::Glucose.info().unwrap();
        assert_eq!((glu.unit, glu.mdc.unwrap().code), ("mg/dL", 160_184));
        let cgm = Metric::GlucoseCgm.info().unwrap();
        assert_eq!((cgm.unit, cgm.loinc), ("mg/dL", Some("99504-3")));
        assert_eq!(Metric::InfusionTimeRemaining.unit(), "min");
        assert_eq!(Metric::DiffPressure.unit(), "Pa");
    }

    #[test]
    fn custom_metrics_compare_by_name() {
        let a = Metric::custom("bed_load", "kg", Some("Bed load"));
        let b = Metric::custom("bed_load", "", None);
        assert_eq!(a, b);
        assert_eq!(a.unit(), "kg");
        assert_eq!(a.display_name(), "Bed load");
        assert_eq!(Metric::builtin("bed_load"), None);
    }
}

/// Resolves metric names used in configuration: every built-in metric plus
/// the custom metrics the configuration declares.
#[derive(Clone, Debug, Default)]
pub struct MetricRegistry {
    custom: std::collections::HashMap<String, Metric>,
}

impl MetricRegistry {
    /// Declares a custom metric; returns the existing one when the name is
    /// already taken (built-in or custom), so the caller can report the clash.
    pub fn declare(&mut self, metric: Metric) -> Result<(), Metric> {
        if let Some(existing) = self.resolve(metric.name()) {
            return Err(existing);
        }
        self.custom.insert(metric.name().to_owned(), metric);
        Ok(())
    }

    pub fn resolve(&self, name: &str) -> Option<Metric> {
        Metric::builtin(name).or_else(|| self.custom.get(name).cloned())
    }

    /// For error messages: what names would have been accepted.
    pub fn known_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Metric::BUILTIN.iter().map(Metric::name).collect();
        let mut custom: Vec<&str> = self.custom.keys().map(String::as_str).collect();
        custom.sort_unstable();
        names.extend(custom);
        names
    }
}
