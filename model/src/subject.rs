//! Subjects: the beds, patients and rooms that readings and alerts belong to.

use serde::{Deserialize, Serialize};

use crate::{DeviceId, SubjectId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A ward bed (whoever occupies it).
    Bed,
    /// A named patient (a home hub's one patient).
    Patient,
    /// A room or piece of equipment (isolation room, medication fridge).
    Room,
}

crate::wire::wire_names!(SubjectKind {
    Bed => "bed",
    Patient => "patient",
    Room => "room",
});

/// Which NEWS2 SpO2 scale applies (RCP 2017): scale 2 only for patients with a
/// prescribed 88–92 % target, e.g. hypercapnic respiratory failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Spo2Scale {
    #[default]
    Scale1,
    Scale2,
}

impl Serialize for Spo2Scale {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(match self {
            Spo2Scale::Scale1 => 1,
            Spo2Scale::Scale2 => 2,
        })
    }
}

impl<'de> Deserialize<'de> for Spo2Scale {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScaleVisitor;
        impl serde::de::Visitor<'_> for ScaleVisitor {
            type Value = Spo2Scale;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("SpO2 scale 1 or 2")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Spo2Scale, E> {
                match v {
                    1 => Ok(Spo2Scale::Scale1),
                    2 => Ok(Spo2Scale::Scale2),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Spo2Scale, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_i64(ScaleVisitor)
    }
}

/// Chronic conditions that select rule packs (`applies_to` in rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Copd,
    HeartFailure,
    Diabetes,
    Hypertension,
}

crate::wire::wire_names!(Condition {
    Copd => "copd",
    HeartFailure => "heart_failure",
    Diabetes => "diabetes",
    Hypertension => "hypertension",
});

/// What the rules need to know about a subject.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectProfile {
    #[serde(default)]
    pub spo2_scale: Spo2Scale,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A configured subject and the devices bound to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub id: SubjectId,
    pub kind: SubjectKind,
    /// Display name ("Bed 12", "Room 4 fridge"); never a patient's real name in logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub profile: SubjectProfile,
    #[serde(default)]
    pub devices: Vec<DeviceId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_profile_line_parses() {
        let p: SubjectProfile =
            serde_json::from_str(r#"{"spo2_scale": 2, "conditions": ["copd", "heart_failure"]}"#)
                .unwrap();
        assert_eq!(p.spo2_scale, Spo2Scale::Scale2);
        assert_eq!(p.conditions, vec![Condition::Copd, Condition::HeartFailure]);
        assert!(serde_json::from_str::<SubjectProfile>(r#"{"spo2_scale": 3}"#).is_err());
    }
}
